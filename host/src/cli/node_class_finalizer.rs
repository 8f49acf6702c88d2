//! The EC2NodeClass finalizer, as Karpenter keeps it (`karpenter.k8s.aws/termination`): Kestrel adds
//! it to every class it resolves, so that a deleted class stays until what Kestrel made for it is
//! gone. A class being deleted launches nothing more (its NodePools are unbound); while NodeClaims
//! still name it, it waits (their instances may still need its launch templates and profile, and a
//! record naming it must be able to finish); once none does, the instance profile Kestrel made for a
//! `spec.role` class is deleted, then the finalizer is removed and the API server lets the class go.
//! The launch templates only it produced are collected by the adapter's garbage collection once no
//! pool is bound to it.
//!
//! Every write carries the resourceVersion it was decided on: a class changed meanwhile (another
//! writer's finalizer, a new spec) makes the write fail, and the next pass decides again.

use kestrel_core::api::ec2nodeclass::EC2NodeClass;
use kestrel_core::api::nodeclaim::NodeClaim;
use kestrel_kube::kube::api::{Api, Patch, PatchParams};
use kestrel_kube::kube::{self, ResourceExt};

/// Karpenter's finalizer on EC2NodeClasses.
pub const NODE_CLASS_FINALIZER: &str = "karpenter.k8s.aws/termination";

/// What one pass does about a class's finalizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A live class without the finalizer: add it.
    Add,
    /// A live class with it, or a deleted one without it (someone else's to finish): nothing.
    Keep,
    /// A deleted class still named by these NodeClaims: wait for them to go.
    Wait(Vec<String>),
    /// A deleted class no NodeClaim names: delete what Kestrel made for it, then remove the finalizer.
    Finish,
}

/// The step for `class`, given every NodeClaim in the cluster.
pub fn step(class: &EC2NodeClass, claims: &[NodeClaim]) -> Step {
    let has = class.finalizers().iter().any(|f| f == NODE_CLASS_FINALIZER);
    if class.metadata.deletion_timestamp.is_none() {
        return if has { Step::Keep } else { Step::Add };
    }
    if !has {
        return Step::Keep;
    }
    let name = class.name_any();
    let mut waiting: Vec<String> = claims
        .iter()
        .filter(|c| c.spec.node_class_ref.name == name)
        .map(|c| c.name_any())
        .collect();
    waiting.sort();
    if waiting.is_empty() {
        Step::Finish
    } else {
        Step::Wait(waiting)
    }
}

/// The class's finalizers with Kestrel's added (`add`) or removed, written with the resourceVersion
/// read: a class changed since fails with a conflict instead of losing another writer's finalizer.
pub async fn write(client: &kube::Client, class: &EC2NodeClass, add: bool) -> kube::Result<()> {
    let mut finalizers: Vec<String> = class
        .finalizers()
        .iter()
        .filter(|f| f.as_str() != NODE_CLASS_FINALIZER)
        .cloned()
        .collect();
    if add {
        finalizers.push(NODE_CLASS_FINALIZER.to_string());
    }
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": class.resource_version()},
    });
    Api::<EC2NodeClass>::all(client.clone())
        .patch(
            &class.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(finalizer: bool, deleted: bool) -> EC2NodeClass {
        let mut c: EC2NodeClass = serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.k8s.aws/v1", "kind": "EC2NodeClass",
            "metadata": {"name": "default"},
            "spec": {"role": "KarpenterNodeRole", "amiSelectorTerms": [{"alias": "al2023@latest"}],
                     "subnetSelectorTerms": [{"id": "subnet-1"}],
                     "securityGroupSelectorTerms": [{"id": "sg-1"}]},
        }))
        .unwrap();
        if finalizer {
            c.metadata.finalizers = Some(vec!["other".into(), NODE_CLASS_FINALIZER.into()]);
        }
        if deleted {
            c.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
        }
        c
    }

    fn claim(name: &str, class: &str) -> NodeClaim {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "karpenter.sh/v1", "kind": "NodeClaim",
            "metadata": {"name": name},
            "spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": class},
                     "requirements": []},
        }))
        .unwrap()
    }

    #[test]
    fn a_live_class_gets_the_finalizer_once() {
        assert_eq!(step(&class(false, false), &[]), Step::Add);
        assert_eq!(step(&class(true, false), &[]), Step::Keep);
    }

    #[test]
    fn a_deleted_class_waits_for_the_claims_naming_it_then_finishes() {
        let claims = [
            claim("default-b", "default"),
            claim("gpu-a", "gpu"),
            claim("default-a", "default"),
        ];
        assert_eq!(
            step(&class(true, true), &claims),
            Step::Wait(vec!["default-a".into(), "default-b".into()])
        );
        assert_eq!(step(&class(true, true), &claims[1..2]), Step::Finish);
        // Without Kestrel's finalizer there is nothing of Kestrel's to finish.
        assert_eq!(step(&class(false, true), &[]), Step::Keep);
    }
}
