//! Registration: the Node a claim's instance joins the cluster as.
//!
//! The controller does not invent nodes: it writes the claim's record (the NodeClaim, carrying its
//! NodePool's template), launches it, and then waits to see a Node of that claim in its snapshot
//! ([`super::ClusterState::node_of_claim`]). In production the kubelet registers the Node — with the
//! labels and taints the AWS adapter rendered into its userData — and the kube adapter matches it to
//! its NodeClaim by providerID and applies what is missing; in the simulator the simulated kubelet
//! builds it with [`registered_node`]. Both read the claim's record, so a node's labels and taints are
//! its claim's, whoever registers it.

use std::collections::BTreeMap;

use crate::api::NodeClaimTemplate;
use crate::clock::Millis;
use crate::cloud::{CapacityType, Instance};
use crate::controller::{CAPACITY_TYPE_LABEL, InstanceTypeInfo, NODEPOOL_LABEL};
use crate::model::{Taint, TaintEffect};

use super::{ClaimRecord, NodeState, ResourceList};

/// The labels a node of `node_pool` launched from this offering carries: the instance type's
/// well-known labels, the template's own labels over them, then the zone's labels (zone, region, zone
/// id), the capacity type and the NodePool — the ones Karpenter sets on its NodeClaims and nodes.
pub fn node_labels(
    template_labels: &BTreeMap<String, String>,
    node_pool: &str,
    instance_type: &InstanceTypeInfo,
    zone: &str,
    capacity_type: CapacityType,
) -> BTreeMap<String, String> {
    let mut labels = (*instance_type.labels).clone();
    labels.extend(template_labels.clone());
    labels.extend(crate::model::labels::zone_labels(zone));
    labels.insert(CAPACITY_TYPE_LABEL.into(), capacity_type.label().into());
    labels.insert(NODEPOOL_LABEL.into(), node_pool.to_string());
    labels
}

/// The template's labels (`spec.template.metadata.labels`).
pub fn template_labels(template: &NodeClaimTemplate) -> BTreeMap<String, String> {
    template
        .metadata
        .as_ref()
        .map(|m| m.labels.clone())
        .unwrap_or_default()
}

/// Taints in the model's form; a taint with an effect Kubernetes does not know is dropped (the
/// API's validation refuses such a NodePool before it gets here).
pub fn model_taints(taints: &[k8s_openapi::api::core::v1::Taint]) -> Vec<Taint> {
    taints
        .iter()
        .filter_map(|t| {
            Some(Taint::new(
                &t.key,
                t.value.as_deref(),
                TaintEffect::parse(&t.effect)?,
            ))
        })
        .collect()
}

/// The annotations a claim's Node carries: its template's, and the template's hash
/// (`karpenter.sh/nodepool-hash`, what drift compares with the pool's template now).
pub fn node_annotations(template: &NodeClaimTemplate) -> BTreeMap<String, String> {
    let mut annotations = template
        .metadata
        .as_ref()
        .map(|m| m.annotations.clone())
        .unwrap_or_default();
    annotations.insert(
        crate::disruption::drift::NODEPOOL_HASH_ANNOTATION.into(),
        crate::disruption::drift::node_pool_hash(template),
    );
    annotations
}

/// The Node the claim's instance registers as, named `name` (the kubelet's hostname), ready. Its
/// startup taints are taken as already removed (the agent that removes them is the cluster's, not
/// Kestrel's; the kube adapter waits for it, the simulator does not model it).
pub fn registered_node(
    record: &ClaimRecord,
    instance: &Instance,
    instance_type: &InstanceTypeInfo,
    name: &str,
    now: Millis,
) -> NodeState {
    let offering = &instance.offering;
    let mut labels = node_labels(
        &template_labels(&record.template),
        &record.node_pool,
        instance_type,
        &offering.zone,
        offering.capacity_type,
    );
    labels.insert(crate::label_fit::HOSTNAME.into(), name.to_string());
    NodeState {
        name: name.into(),
        instance_id: instance.id.clone(),
        claim: record.name.clone(),
        node_pool: record.node_pool.clone(),
        instance_type: instance_type.name.clone(),
        zone: offering.zone.clone(),
        capacity_type: offering.capacity_type,
        price: offering.price,
        labels: std::sync::Arc::new(labels),
        annotations: std::sync::Arc::new(node_annotations(&record.template)),
        taints: model_taints(&record.template.spec.taints),
        allocatable: instance_type.allocatable.clone(),
        requested: ResourceList::default(),
        pods: 0,
        created_at: now,
        ready: true,
        cordoned: false,
        deleting: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disruption::DriftStamp;
    use crate::disruption::drift::NODEPOOL_HASH_ANNOTATION;

    fn pool(yaml_taints: &str) -> crate::api::NodePool {
        serde_yaml_ng::from_str(&format!(
            r#"
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {{name: default}}
spec:
  template:
    metadata:
      labels: {{team: checkout}}
      annotations: {{example.com/owner: checkout}}
    spec:
      nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
      taints: {yaml_taints}
"#
        ))
        .expect("pool parses")
    }

    #[test]
    fn a_node_carries_its_templates_annotations_and_hash_and_drifts_when_the_pool_changes() {
        let v1 = pool("[]");
        let annotations = node_annotations(&v1.spec.template);
        assert_eq!(
            annotations.get("example.com/owner").map(String::as_str),
            Some("checkout")
        );
        // What the pool resolves to now, after a restart that forgot everything: the node's own
        // annotation says it was made from v1, so a v2 pool sees it drifted.
        let v2 = pool("[{key: dedicated, value: checkout, effect: NoSchedule}]");
        let stamp = DriftStamp::of_node(DriftStamp::resolve(&v2, None), &annotations);
        assert_eq!(
            stamp.node_pool_hash,
            DriftStamp::resolve(&v1, None).node_pool_hash
        );
        assert_ne!(
            stamp.node_pool_hash,
            DriftStamp::resolve(&v2, None).node_pool_hash
        );
        // A node without the annotation (registered by someone else) keeps the pool's stamp.
        let bare = DriftStamp::of_node(DriftStamp::resolve(&v2, None), &BTreeMap::new());
        assert_eq!(bare, DriftStamp::resolve(&v2, None));
        assert!(annotations.contains_key(NODEPOOL_HASH_ANNOTATION));
    }
}
