//! AL2023: a nodeadm `NodeConfig` part after the user's parts (nodeadm merges the NodeConfigs in
//! order, so the cluster settings Kestrel writes win over the user's).

use super::mime::{self, Part};
use super::{Bootstrap, UserDataError, label_flag, taint_flag};

const NODE_CONFIG: &str = "application/node.eks.aws";

pub fn render(bootstrap: &Bootstrap, user: Option<&str>) -> Result<String, UserDataError> {
    let mut parts = match user {
        Some(user) => mime::parts(user, NODE_CONFIG)?,
        None => Vec::new(),
    };
    let mut config = format!(
        "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    \
         name: {}\n    apiServerEndpoint: {}\n    certificateAuthority: {}\n    cidr: {}\n  \
         kubelet:\n    config:\n",
        bootstrap.cluster_name,
        bootstrap.api_server_endpoint,
        bootstrap.ca_bundle,
        bootstrap.service_cidr
    );
    if let Some(max_pods) = bootstrap.max_pods {
        config.push_str(&format!("      maxPods: {max_pods}\n"));
    }
    if !bootstrap.cluster_dns.is_empty() {
        config.push_str("      clusterDNS:\n");
        for dns in &bootstrap.cluster_dns {
            config.push_str(&format!("      - {dns}\n"));
        }
    }
    config.push_str("    flags:\n");
    if !bootstrap.labels.is_empty() {
        config.push_str(&format!(
            "    - --node-labels=\"{}\"\n",
            label_flag(&bootstrap.labels)
        ));
    }
    if !bootstrap.taints.is_empty() {
        config.push_str(&format!(
            "    - --register-with-taints=\"{}\"\n",
            taint_flag(&bootstrap.taints)
        ));
    }
    parts.push(Part {
        content_type: NODE_CONFIG.to_string(),
        body: config,
    });
    Ok(mime::document(&parts))
}
