//! Golden files for every family, each with and without the user's own userData. `KESTREL_BLESS=1`
//! rewrites them (read the diff before committing one).

use std::collections::BTreeMap;
use std::path::PathBuf;

use kestrel_core::api::ec2nodeclass::AMIFamily;
use kestrel_core::model::taints::{Taint, TaintEffect};

use super::{Bootstrap, UserDataError, render};

fn bootstrap() -> Bootstrap {
    Bootstrap {
        cluster_name: "my-cluster".into(),
        api_server_endpoint: "https://ABCDEF.gr7.us-east-1.eks.amazonaws.com".into(),
        ca_bundle: "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t".into(),
        service_cidr: "10.100.0.0/16".into(),
        cluster_dns: vec!["10.100.0.10".into()],
        max_pods: Some(29),
        labels: BTreeMap::from([
            ("karpenter.sh/nodepool".into(), "general".into()),
            ("team".into(), "platform".into()),
        ]),
        taints: vec![
            Taint::new("dedicated", Some("gpu"), TaintEffect::NoSchedule),
            Taint::new("karpenter.sh/unregistered", None, TaintEffect::NoExecute),
        ],
    }
}

const AL2023_USER: &str = "MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=\"BOUNDARY\"

--BOUNDARY
Content-Type: application/node.eks.aws

apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  kubelet:
    config:
      shutdownGracePeriod: 30s

--BOUNDARY
Content-Type: text/x-shellscript; charset=\"us-ascii\"

#!/bin/bash
echo hello > /etc/motd

--BOUNDARY--
";

const AL2_USER: &str = "#!/bin/bash
echo 'vm.max_map_count=262144' >> /etc/sysctl.conf
";

const BOTTLEROCKET_USER: &str = "[settings.kubernetes]
cluster-name = 'overridden'
image-gc-high-threshold-percent = 80

[settings.kubernetes.node-labels]
'example.com/disk' = 'nvme'

[settings.host-containers.admin]
enabled = true
";

fn check(name: &str, family: AMIFamily, user: Option<&str>) {
    let rendered = render(family, &bootstrap(), user).expect("renders");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}"));
    if std::env::var_os("KESTREL_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("golden dir");
        std::fs::write(&path, &rendered).expect("write golden");
    }
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (KESTREL_BLESS=1 writes it)", path.display()));
    assert_eq!(rendered, golden, "{name} differs from its golden file");
}

#[test]
fn al2023() {
    check("al2023.txt", AMIFamily::AL2023, None);
    check("al2023-merged.txt", AMIFamily::AL2023, Some(AL2023_USER));
}

#[test]
fn al2() {
    check("al2.txt", AMIFamily::AL2, None);
    check("al2-merged.txt", AMIFamily::AL2, Some(AL2_USER));
}

#[test]
fn bottlerocket() {
    check("bottlerocket.toml", AMIFamily::Bottlerocket, None);
    check(
        "bottlerocket-merged.toml",
        AMIFamily::Bottlerocket,
        Some(BOTTLEROCKET_USER),
    );
}

#[test]
fn custom_is_the_users_alone() {
    assert_eq!(
        render(AMIFamily::Custom, &bootstrap(), Some("x"))
            .ok()
            .as_deref(),
        Some("x")
    );
}

#[test]
fn broken_user_data_is_refused() {
    let no_boundary = "MIME-Version: 1.0\nContent-Type: multipart/mixed\n\n--x\n";
    assert_eq!(
        render(AMIFamily::AL2023, &bootstrap(), Some(no_boundary)),
        Err(UserDataError::NoBoundary)
    );
    assert!(matches!(
        render(AMIFamily::Bottlerocket, &bootstrap(), Some("[settings")),
        Err(UserDataError::Toml(_))
    ));
    assert_eq!(
        render(AMIFamily::Bottlerocket, &bootstrap(), Some("settings = 1")),
        Err(UserDataError::NotATable("settings".into()))
    );
}
