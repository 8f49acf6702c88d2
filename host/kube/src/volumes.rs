//! The zones a pod's persistent volumes pin it to, from its PersistentVolumeClaims: a bound claim's
//! PersistentVolume (its node affinity's zone terms, as EBS volumes carry), an unbound claim's
//! StorageClass when it binds at the first consumer (its `allowedTopologies` zones). The core keeps
//! the pod (and its new node) in those zones (`model::PodSpec::volume_zones`), as kube-scheduler's
//! VolumeBinding and VolumeZone filters will.
//!
//! A claim that does not exist yet, an unbound claim of an `Immediate` class, or a volume whose
//! affinity names no zone constrain nothing here (the scheduler waits for the first, the second
//! is bound by the PV controller wherever it likes, the third fits every zone).

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    NodeSelectorTerm, PersistentVolume, PersistentVolumeClaim, Pod, TopologySelectorTerm,
};
use k8s_openapi::api::storage::v1::StorageClass;

/// The labels a zone is named by in volume affinities and class topologies (the well-known one,
/// its deprecated beta, and the EBS CSI driver's own).
pub const ZONE_KEYS: [&str; 3] = [
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
    "topology.ebs.csi.aws.com/zone",
];

/// Where the objects a pod's volumes name are looked up (the reflectors' stores in production).
pub trait VolumeObjects {
    fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>>;
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>>;
    fn class(&self, name: &str) -> Option<Arc<StorageClass>>;
}

/// The zones every zonal volume of the pod allows (their intersection; empty: no zone fits them
/// all), or None when no volume constrains the zone.
pub fn zones(pod: &Pod, objects: &dyn VolumeObjects) -> Option<BTreeSet<String>> {
    let spec = pod.spec.as_ref()?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut allowed: Option<BTreeSet<String>> = None;
    for volume in spec.volumes.iter().flatten() {
        let zones = if let Some(claim) = &volume.persistent_volume_claim {
            objects
                .claim(namespace, &claim.claim_name)
                .and_then(|c| claim_zones(&c, objects))
        } else if let Some(ephemeral) = &volume.ephemeral {
            // The ephemeral volume controller names the claim `<pod>-<volume>`; until it exists,
            // its template's class says where it will be made.
            match objects.claim(namespace, &format!("{pod_name}-{}", volume.name)) {
                Some(c) => claim_zones(&c, objects),
                None => ephemeral
                    .volume_claim_template
                    .as_ref()
                    .and_then(|t| t.spec.storage_class_name.as_deref())
                    .and_then(|class| objects.class(class))
                    .and_then(|c| class_zones(&c)),
            }
        } else {
            None
        };
        if let Some(zones) = zones {
            allowed = Some(match allowed {
                Some(a) => a.intersection(&zones).cloned().collect(),
                None => zones,
            });
        }
    }
    allowed
}

fn claim_zones(
    claim: &PersistentVolumeClaim,
    objects: &dyn VolumeObjects,
) -> Option<BTreeSet<String>> {
    let spec = claim.spec.as_ref()?;
    match spec.volume_name.as_deref().filter(|v| !v.is_empty()) {
        Some(volume) => objects.volume(volume).and_then(|v| volume_zones(&v)),
        None => spec
            .storage_class_name
            .as_deref()
            .and_then(|class| objects.class(class))
            .filter(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"))
            .and_then(|c| class_zones(&c)),
    }
}

/// A volume's zones: the union over its required node-affinity terms (ORed); a term without a
/// zone expression allows every zone.
fn volume_zones(volume: &PersistentVolume) -> Option<BTreeSet<String>> {
    let terms = &volume
        .spec
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required
        .as_ref()?
        .node_selector_terms;
    union_of(terms.iter().map(term_zones))
}

fn term_zones(term: &NodeSelectorTerm) -> Option<BTreeSet<String>> {
    intersect_zones(
        term.match_expressions
            .iter()
            .flatten()
            .filter(|e| e.operator == "In")
            .map(|e| (e.key.as_str(), e.values.iter().flatten())),
    )
}

/// The zones every zone expression of one term allows (expressions within a term are ANDed);
/// None when the term names no zone.
fn intersect_zones<'a, V: Iterator<Item = &'a String>>(
    expressions: impl Iterator<Item = (&'a str, V)>,
) -> Option<BTreeSet<String>> {
    let mut zones: Option<BTreeSet<String>> = None;
    for (key, values) in expressions {
        if ZONE_KEYS.contains(&key) {
            let these: BTreeSet<String> = values.cloned().collect();
            zones = Some(match zones {
                Some(z) => z.intersection(&these).cloned().collect(),
                None => these,
            });
        }
    }
    zones
}

/// A class's zones when it binds at the first consumer: its `allowedTopologies` (ORed terms).
fn class_zones(class: &StorageClass) -> Option<BTreeSet<String>> {
    let terms = class.allowed_topologies.as_ref()?;
    union_of(terms.iter().map(topology_zones))
}

fn topology_zones(term: &TopologySelectorTerm) -> Option<BTreeSet<String>> {
    intersect_zones(
        term.match_label_expressions
            .iter()
            .flatten()
            .map(|e| (e.key.as_str(), e.values.iter())),
    )
}

/// The union of ORed terms' zones; None (every zone) as soon as one term allows every zone.
fn union_of(terms: impl Iterator<Item = Option<BTreeSet<String>>>) -> Option<BTreeSet<String>> {
    let mut all = BTreeSet::new();
    let mut any = false;
    for zones in terms {
        any = true;
        all.extend(zones?);
    }
    any.then_some(all)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[derive(Default)]
    struct Objects {
        claims: HashMap<String, PersistentVolumeClaim>,
        volumes: HashMap<String, PersistentVolume>,
        classes: HashMap<String, StorageClass>,
    }

    impl VolumeObjects for Objects {
        fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
            self.claims
                .get(&format!("{namespace}/{name}"))
                .cloned()
                .map(Arc::new)
        }
        fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
            self.volumes.get(name).cloned().map(Arc::new)
        }
        fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
            self.classes.get(name).cloned().map(Arc::new)
        }
    }

    fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).expect("a valid object")
    }

    fn pod(volumes: serde_json::Value) -> Pod {
        from(serde_json::json!({
            "metadata": {"name": "db-0", "namespace": "data"},
            "spec": {"containers": [{"name": "db"}], "volumes": volumes}
        }))
    }

    fn claim(name: &str, volume: Option<&str>, class: &str) -> PersistentVolumeClaim {
        from(serde_json::json!({
            "metadata": {"name": name, "namespace": "data"},
            "spec": {"volumeName": volume, "storageClassName": class}
        }))
    }

    fn volume(name: &str, key: &str, zones: &[&str]) -> PersistentVolume {
        from(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": key, "operator": "In", "values": zones}]}
            ]}}}
        }))
    }

    fn class(name: &str, mode: &str, zones: Option<&[&str]>) -> StorageClass {
        from(serde_json::json!({
            "metadata": {"name": name},
            "provisioner": "ebs.csi.aws.com",
            "volumeBindingMode": mode,
            "allowedTopologies": zones.map(|z| vec![serde_json::json!({"matchLabelExpressions": [
                {"key": "topology.ebs.csi.aws.com/zone", "values": z}
            ]})]),
        }))
    }

    fn set(zones: &[&str]) -> Option<BTreeSet<String>> {
        Some(zones.iter().map(|z| z.to_string()).collect())
    }

    fn objects() -> Objects {
        let mut o = Objects::default();
        o.claims
            .insert("data/bound".into(), claim("bound", Some("pv-1"), "gp3"));
        o.claims
            .insert("data/waiting".into(), claim("waiting", None, "gp3-wffc"));
        o.claims
            .insert("data/immediate".into(), claim("immediate", None, "gp3"));
        o.volumes.insert(
            "pv-1".into(),
            volume("pv-1", "topology.ebs.csi.aws.com/zone", &["us-east-1b"]),
        );
        o.classes
            .insert("gp3".into(), class("gp3", "Immediate", None));
        o.classes.insert(
            "gp3-wffc".into(),
            class(
                "gp3-wffc",
                "WaitForFirstConsumer",
                Some(&["us-east-1a", "us-east-1b"]),
            ),
        );
        o
    }

    #[test]
    fn a_bound_claim_pins_its_volumes_zone_and_claims_intersect() {
        let o = objects();
        let bound = pod(
            serde_json::json!([{"name": "d", "persistentVolumeClaim": {"claimName": "bound"}}]),
        );
        assert_eq!(zones(&bound, &o), set(&["us-east-1b"]));
        let both = pod(serde_json::json!([
            {"name": "d", "persistentVolumeClaim": {"claimName": "bound"}},
            {"name": "w", "persistentVolumeClaim": {"claimName": "waiting"}}
        ]));
        assert_eq!(zones(&both, &o), set(&["us-east-1b"]));
    }

    #[test]
    fn an_unbound_claim_follows_its_class_only_when_it_waits_for_the_consumer() {
        let o = objects();
        let waiting = pod(
            serde_json::json!([{"name": "w", "persistentVolumeClaim": {"claimName": "waiting"}}]),
        );
        assert_eq!(zones(&waiting, &o), set(&["us-east-1a", "us-east-1b"]));
        let immediate = pod(
            serde_json::json!([{"name": "i", "persistentVolumeClaim": {"claimName": "immediate"}}]),
        );
        assert_eq!(zones(&immediate, &o), None);
        let missing =
            pod(serde_json::json!([{"name": "m", "persistentVolumeClaim": {"claimName": "nope"}}]));
        assert_eq!(zones(&missing, &o), None);
        let no_volumes = pod(serde_json::json!([{"name": "e", "emptyDir": {}}]));
        assert_eq!(zones(&no_volumes, &o), None);
    }

    #[test]
    fn an_ephemeral_volume_uses_its_claim_or_its_templates_class() {
        let mut o = objects();
        let eph = pod(
            serde_json::json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
            "spec": {"storageClassName": "gp3-wffc", "accessModes": ["ReadWriteOnce"]}}}}]),
        );
        assert_eq!(zones(&eph, &o), set(&["us-east-1a", "us-east-1b"]));
        o.claims.insert(
            "data/db-0-scratch".into(),
            claim("db-0-scratch", Some("pv-1"), "gp3-wffc"),
        );
        assert_eq!(zones(&eph, &o), set(&["us-east-1b"]));
    }

    #[test]
    fn volume_terms_are_ored_and_a_term_without_a_zone_allows_every_zone() {
        let mut o = objects();
        let mut two: PersistentVolume =
            volume("pv-2", "topology.kubernetes.io/zone", &["us-east-1a"]);
        let extra: NodeSelectorTerm = from(serde_json::json!({"matchExpressions": [
            {"key": "failure-domain.beta.kubernetes.io/zone", "operator": "In", "values": ["us-east-1c"]}
        ]}));
        two.spec
            .as_mut()
            .unwrap()
            .node_affinity
            .as_mut()
            .unwrap()
            .required
            .as_mut()
            .unwrap()
            .node_selector_terms
            .push(extra);
        o.volumes.insert("pv-2".into(), two.clone());
        o.claims
            .insert("data/two".into(), claim("two", Some("pv-2"), "gp3"));
        let p =
            pod(serde_json::json!([{"name": "t", "persistentVolumeClaim": {"claimName": "two"}}]));
        assert_eq!(zones(&p, &o), set(&["us-east-1a", "us-east-1c"]));
        let anywhere: NodeSelectorTerm = from(serde_json::json!({"matchExpressions": [
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
        ]}));
        two.spec
            .as_mut()
            .unwrap()
            .node_affinity
            .as_mut()
            .unwrap()
            .required
            .as_mut()
            .unwrap()
            .node_selector_terms
            .push(anywhere);
        o.volumes.insert("pv-2".into(), two);
        assert_eq!(zones(&p, &o), None);
    }
}
