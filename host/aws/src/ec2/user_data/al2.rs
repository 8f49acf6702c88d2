//! AL2: the user's parts, then a shell part that runs `/etc/eks/bootstrap.sh` with the cluster and
//! kubelet settings.

use super::mime::{self, Part};
use super::{Bootstrap, UserDataError, label_flag, taint_flag};

pub fn render(bootstrap: &Bootstrap, user: Option<&str>) -> Result<String, UserDataError> {
    let mut parts = match user {
        Some(user) => mime::parts(user, "text/x-shellscript; charset=\"us-ascii\"")?,
        None => Vec::new(),
    };
    let mut script = format!(
        "#!/bin/bash -xe\nexec > >(tee /var/log/user-data.log|logger -t user-data -s 2>/dev/console) 2>&1\n\
         /etc/eks/bootstrap.sh '{}' --apiserver-endpoint '{}' --b64-cluster-ca '{}'",
        bootstrap.cluster_name, bootstrap.api_server_endpoint, bootstrap.ca_bundle
    );
    if let Some(dns) = bootstrap.cluster_dns.first() {
        script.push_str(&format!(" \\\n--dns-cluster-ip '{dns}'"));
    }
    let mut kubelet = Vec::new();
    if !bootstrap.labels.is_empty() {
        kubelet.push(format!(
            "--node-labels=\"{}\"",
            label_flag(&bootstrap.labels)
        ));
    }
    if !bootstrap.taints.is_empty() {
        kubelet.push(format!(
            "--register-with-taints=\"{}\"",
            taint_flag(&bootstrap.taints)
        ));
    }
    if let Some(max_pods) = bootstrap.max_pods {
        // bootstrap.sh would compute its own from the ENI table; Kestrel's figure is the one it
        // scheduled against.
        script.push_str(" \\\n--use-max-pods false");
        kubelet.push(format!("--max-pods={max_pods}"));
    }
    if !kubelet.is_empty() {
        script.push_str(&format!(
            " \\\n--kubelet-extra-args '{}'",
            kubelet.join(" ")
        ));
    }
    script.push('\n');
    parts.push(Part {
        content_type: "text/x-shellscript; charset=\"us-ascii\"".to_string(),
        body: script,
    });
    Ok(mime::document(&parts))
}
