//! userData for the AMI families: what a node needs to join the cluster (endpoint, CA, DNS, max pods,
//! the claim's labels and taints), merged with the NodeClass's own userData as each family expects
//! (AL2023: nodeadm `NodeConfig` parts in a MIME multipart; Bottlerocket: TOML settings; AL2: a
//! bootstrap.sh part in a MIME multipart). Custom passes the user's data through unchanged.

mod al2;
mod al2023;
mod bottlerocket;
mod mime;

use std::collections::BTreeMap;

use base64::Engine;
use kestrel_core::api::ec2nodeclass::AMIFamily;
use kestrel_core::model::taints::Taint;

/// The cluster and node settings every family's bootstrap takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrap {
    pub cluster_name: String,
    pub api_server_endpoint: String,
    /// Base64 PEM, as EKS's DescribeCluster returns it.
    pub ca_bundle: String,
    /// The service CIDR (nodeadm needs it; AL2 and Bottlerocket take the DNS address instead).
    pub service_cidr: String,
    /// `kubelet.clusterDNS`; empty: the AMI's default.
    pub cluster_dns: Vec<String>,
    pub max_pods: Option<i32>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserDataError {
    #[error("the NodeClass's userData is a MIME multipart without a boundary")]
    NoBoundary,
    #[error("the NodeClass's userData is not valid TOML: {0}")]
    Toml(String),
    #[error("the NodeClass's userData key {0} is not a table")]
    NotATable(String),
}

/// The userData for a family, as plain text.
pub fn render(
    family: AMIFamily,
    bootstrap: &Bootstrap,
    user: Option<&str>,
) -> Result<String, UserDataError> {
    match family {
        AMIFamily::AL2023 => al2023::render(bootstrap, user),
        AMIFamily::Bottlerocket => bottlerocket::render(bootstrap, user),
        AMIFamily::AL2 => al2::render(bootstrap, user),
        // Windows bootstraps through its own PowerShell script; Custom is the user's alone.
        AMIFamily::Custom | AMIFamily::Windows2019 | AMIFamily::Windows2022 => {
            Ok(user.unwrap_or_default().to_string())
        }
    }
}

/// The userData for a launch template (base64, as EC2 takes it).
pub fn encode(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// `k=v,k=v` for kubelet's `--node-labels`.
fn label_flag(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `k=v:Effect,k:Effect` for kubelet's `--register-with-taints`.
fn taint_flag(taints: &[Taint]) -> String {
    taints
        .iter()
        .map(|t| match &t.value {
            Some(v) => format!("{}={}:{}", t.key, v, t.effect.as_str()),
            None => format!("{}:{}", t.key, t.effect.as_str()),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod golden;
