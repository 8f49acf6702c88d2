//! Drift: a node is drifted when it is no longer what its NodePool and EC2NodeClass would launch now.
//!
//! As in Karpenter, a node carries a stamp of what it was launched with (the NodePool template hash, the
//! EC2NodeClass hash, its image, subnet and security groups); drift compares the stamp with what the pool
//! resolves to now, and the node's labels with the pool's requirements.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use super::{NodeView, PoolSettings};
use crate::api::{EC2NodeClass, NodeClaimTemplate, NodePool};

/// Karpenter's annotation on a NodeClaim and its Node: the hash of the NodePool template it was made
/// from. It lives on the cluster's objects, so a restarted controller still knows what each node was
/// launched with.
pub const NODEPOOL_HASH_ANNOTATION: &str = "karpenter.sh/nodepool-hash";

/// The hash of a NodePool template's static fields (what `karpenter.sh/nodepool-hash` records).
pub fn node_pool_hash(template: &NodeClaimTemplate) -> String {
    digest(&serde_json::json!({
        "metadata": template.metadata,
        "taints": template.spec.taints,
        "startupTaints": template.spec.startup_taints,
        "nodeClassRef": template.spec.node_class_ref,
        "expireAfter": template.spec.expire_after,
        "terminationGracePeriod": template.spec.termination_grace_period,
    }))
}
use crate::label_fit::requirement_matches;

/// What a node was launched with, or what a pool resolves to now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DriftStamp {
    /// Hash of the NodePool template's static fields (labels, annotations, taints, startup taints,
    /// kubelet-affecting fields); Karpenter's `karpenter.sh/nodepool-hash`.
    pub node_pool_hash: String,
    /// Hash of the EC2NodeClass's static fields (role, userData, tags, block devices, metadata options,
    /// kubelet); Karpenter's `karpenter.k8s.aws/ec2nodeclass-hash`.
    pub node_class_hash: String,
    /// For a node: its image. For a pool: every image its selector terms resolve to now.
    pub images: BTreeSet<String>,
    pub subnets: BTreeSet<String>,
    pub security_groups: BTreeSet<String>,
}

fn digest(value: &serde_json::Value) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}

impl DriftStamp {
    /// What the pool resolves to now. Without a cloud to resolve selector terms, an image is named by
    /// its selector terms (an alias like `al2023@v20260201`, or the ids/names/tags written), and subnets
    /// and security groups likewise: changing a term is what makes a node's image no longer resolved.
    pub fn resolve(pool: &NodePool, node_class: Option<&EC2NodeClass>) -> DriftStamp {
        let node_pool_hash = node_pool_hash(&pool.spec.template);
        let Some(class) = node_class else {
            return DriftStamp {
                node_pool_hash,
                ..DriftStamp::default()
            };
        };
        let spec = serde_json::to_value(&class.spec).unwrap_or_default();
        let mut static_fields = spec.clone();
        if let Some(map) = static_fields.as_object_mut() {
            // Selector terms drift through what they resolve to, not through the hash (as in Karpenter).
            for k in [
                "amiSelectorTerms",
                "subnetSelectorTerms",
                "securityGroupSelectorTerms",
                "capacityReservationSelectorTerms",
            ] {
                map.remove(k);
            }
        }
        let terms = |key: &str| -> BTreeSet<String> {
            spec.get(key)
                .and_then(|v| v.as_array())
                .map(|a| a.iter().map(|t| format!("{key}:{t}")).collect())
                .unwrap_or_default()
        };
        DriftStamp {
            node_pool_hash,
            node_class_hash: digest(&static_fields),
            images: terms("amiSelectorTerms"),
            subnets: terms("subnetSelectorTerms"),
            security_groups: terms("securityGroupSelectorTerms"),
        }
    }

    /// A node's stamp: what its pool resolved to when it was created, with the template hash its
    /// Node carries (`karpenter.sh/nodepool-hash`, written at registration from its claim's record)
    /// taking precedence, so drift from a template change survives a controller restart.
    pub fn of_node(
        launched_with: DriftStamp,
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> DriftStamp {
        match annotations.get(NODEPOOL_HASH_ANNOTATION) {
            Some(hash) => DriftStamp {
                node_pool_hash: hash.clone(),
                ..launched_with
            },
            None => launched_with,
        }
    }

    /// The stamp a node launched now would carry: one image, one subnet, its security groups.
    pub fn for_new_node(&self) -> DriftStamp {
        DriftStamp {
            node_pool_hash: self.node_pool_hash.clone(),
            node_class_hash: self.node_class_hash.clone(),
            images: self.images.iter().next().cloned().into_iter().collect(),
            subnets: self.subnets.iter().next().cloned().into_iter().collect(),
            security_groups: self.security_groups.clone(),
        }
    }
}

/// Why `node` is drifted from `pool`, if it is.
pub fn drifted(node: &NodeView, pool: &PoolSettings) -> Option<String> {
    let now = &pool.drift;
    let stamp = &node.stamp;
    if !stamp.node_pool_hash.is_empty() && stamp.node_pool_hash != now.node_pool_hash {
        return Some(format!(
            "NodePool template changed (hash {} -> {})",
            stamp.node_pool_hash, now.node_pool_hash
        ));
    }
    if !stamp.node_class_hash.is_empty() && stamp.node_class_hash != now.node_class_hash {
        return Some(format!(
            "EC2NodeClass changed (hash {} -> {})",
            stamp.node_class_hash, now.node_class_hash
        ));
    }
    if let Some(image) = stamp.images.iter().find(|i| !now.images.contains(*i)) {
        return Some(format!(
            "image {image} is no longer resolved by amiSelectorTerms"
        ));
    }
    if let Some(s) = stamp.subnets.iter().find(|s| !now.subnets.contains(*s)) {
        return Some(format!(
            "subnet {s} is no longer resolved by subnetSelectorTerms"
        ));
    }
    if let Some(sg) = stamp
        .security_groups
        .iter()
        .find(|s| !now.security_groups.contains(*s))
    {
        return Some(format!(
            "security group {sg} is no longer resolved by securityGroupSelectorTerms"
        ));
    }
    let labels = &node.node.labels;
    if let Some(r) = pool
        .spec
        .requirements
        .iter()
        .find(|r| !requirement_matches(r, |k| labels.get(k).map(String::as_str)))
    {
        return Some(format!(
            "node no longer satisfies requirement {} {} {:?}",
            r.key,
            r.operator,
            r.values.as_deref().unwrap_or_default()
        ));
    }
    if let Some((k, v)) = pool
        .spec
        .labels
        .iter()
        .find(|(k, v)| labels.get(*k) != Some(*v))
    {
        return Some(format!("template label {k}={v} missing on the node"));
    }
    None
}
