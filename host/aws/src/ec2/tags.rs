//! The tags Kestrel puts on what it launches, and reads back to find it again.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use kestrel_core::model::labels;

/// The claim that launched an instance (Karpenter's key, so its tooling reads Kestrel's nodes).
pub const NODE_CLAIM: &str = "karpenter.sh/nodeclaim";
pub const NODE_POOL: &str = labels::NODE_POOL;
pub const NODE_CLASS: &str = labels::NODE_CLASS;
pub const EKS_CLUSTER_NAME: &str = "eks:eks-cluster-name";

/// `kubernetes.io/cluster/<name>`: EKS's ownership tag, the key listings filter on.
pub fn cluster_key(cluster: &str) -> String {
    format!("kubernetes.io/cluster/{cluster}")
}

/// The tags every resource of a node pool gets: the NodeClass's own first, Kestrel's on top (a
/// NodeClass cannot forge the keys listings and garbage collection rely on).
pub fn node_tags(
    cluster: &str,
    node_pool: &str,
    node_class: &str,
    node_class_tags: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut tags = node_class_tags.clone();
    tags.insert(cluster_key(cluster), "owned".to_string());
    tags.insert(EKS_CLUSTER_NAME.to_string(), cluster.to_string());
    tags.insert(NODE_POOL.to_string(), node_pool.to_string());
    tags.insert(NODE_CLASS.to_string(), node_class.to_string());
    tags
}

pub fn to_sdk(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub fn specification(resource: ResourceType, tags: &BTreeMap<String, String>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .set_tags(Some(to_sdk(tags)))
        .build()
}

/// An SDK tag list as a map (absent keys or values read as empty).
pub fn from_sdk(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}
