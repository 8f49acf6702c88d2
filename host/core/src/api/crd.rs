//! The CustomResourceDefinitions Kestrel installs, generated from the types in this module.
//!
//! `deploy/crds/` holds the generated YAML; a test checks it matches the code. Regenerate with
//! `KESTREL_BLESS=1 cargo test -p kestrel-core --lib api::crd`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::{EC2NodeClass, NodeClaim, NodePool};

/// Each CRD with the file name Karpenter uses for it (`<group>_<plural>.yaml`).
pub fn crds() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("karpenter.sh_nodepools.yaml", NodePool::crd()),
        ("karpenter.sh_nodeclaims.yaml", NodeClaim::crd()),
        ("karpenter.k8s.aws_ec2nodeclasses.yaml", EC2NodeClass::crd()),
    ]
}

/// The YAML of one CRD as committed under `deploy/crds/`.
pub fn to_yaml(crd: &CustomResourceDefinition) -> String {
    let body = serde_yaml_ng::to_string(crd).expect("a CRD always serializes");
    format!(
        "# Generated from host/core/src/api by `KESTREL_BLESS=1 cargo test -p kestrel-core --lib api::crd`; do not edit.\n{body}"
    )
}

/// The `openAPIV3Schema` of the CRD for `kind`, as JSON (used to report unknown fields).
pub fn schema_for_kind(kind: &str) -> Option<serde_json::Value> {
    crds().into_iter().find_map(|(_, crd)| {
        (crd.spec.names.kind == kind).then(|| {
            let schema = crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("derived CRDs carry a schema");
            serde_json::to_value(schema).expect("a schema always serializes")
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn crd_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/crds")
    }

    #[test]
    fn committed_crds_match_the_code() {
        let bless = std::env::var_os("KESTREL_BLESS").is_some();
        let mut stale = Vec::new();
        for (file, crd) in crds() {
            let path = crd_dir().join(file);
            let want = to_yaml(&crd);
            if bless {
                std::fs::create_dir_all(crd_dir()).unwrap();
                std::fs::write(&path, &want).unwrap();
            } else if std::fs::read_to_string(&path).ok().as_deref() != Some(want.as_str()) {
                stale.push(path.display().to_string());
            }
        }
        assert!(
            stale.is_empty(),
            "CRDs out of date with host/core/src/api: {stale:?}\n\
             regenerate with: KESTREL_BLESS=1 cargo test -p kestrel-core --lib api::crd"
        );
    }

    #[test]
    fn schemas_are_cluster_scoped_and_structural() {
        for (_, crd) in crds() {
            assert_eq!(crd.spec.scope, "Cluster", "{}", crd.spec.names.kind);
            let schema = schema_for_kind(&crd.spec.names.kind).unwrap();
            // Kubernetes rejects non-structural schemas: no $ref, anyOf/oneOf only under a type.
            let text = schema.to_string();
            assert!(!text.contains("$ref"), "{}", crd.spec.names.kind);
            assert!(!text.contains("\"additionalProperties\":false"));
        }
    }
}
