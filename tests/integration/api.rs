//! Integration tests: api (owner: api). Every example manifest validates; broken variants of them fail
//! naming the field and the reason.
use std::path::{Path, PathBuf};

use kestrel::api::manifest::{Outcome, Problem, check_manifests};

fn examples() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files = Vec::new();
    for dir in ["nodepools", "nodeclasses"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn example(name: &str) -> String {
    let path = examples()
        .into_iter()
        .find(|p| p.file_name().unwrap() == name)
        .unwrap_or_else(|| panic!("no example {name}"));
    std::fs::read_to_string(path).unwrap()
}

fn problems(text: &str) -> Vec<Problem> {
    check_manifests(text)
        .into_iter()
        .flat_map(|r| match r.outcome {
            Outcome::Invalid { problems, .. } => problems,
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn every_example_is_valid() {
    let files = examples();
    assert!(
        files.len() >= 7,
        "expected the example set, found {files:?}"
    );
    let mut kinds = std::collections::BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for report in check_manifests(&text) {
            match report.outcome {
                Outcome::Valid { kind, .. } => {
                    kinds.insert(kind);
                }
                other => panic!("{}: document {}: {other:?}", file.display(), report.index),
            }
        }
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["EC2NodeClass", "NodePool"]
    );
}

/// (example, text to replace, replacement, expected field path, words the reason must contain)
const BROKEN: &[(&str, &str, &str, &str, &str)] = &[
    (
        "default.yaml",
        "operator: Gt\n          values: [\"2\"]",
        "operator: Gt\n          values: [\"a\"]",
        "spec.template.spec.requirements[4].values",
        "operator Gt needs exactly one non-negative integer value, got [\"a\"]",
    ),
    (
        "default.yaml",
        "operator: Gt\n          values: [\"2\"]",
        "operator: Lt\n          values: [\"2\", \"3\"]",
        "spec.template.spec.requirements[4].values",
        "operator Lt needs exactly one",
    ),
    (
        "default.yaml",
        "values: [\"linux\"]",
        "values: []",
        "spec.template.spec.requirements[1].values",
        "operator In needs at least one value",
    ),
    (
        "spot-with-on-demand-fallback.yaml",
        "operator: Exists\n          minValues: 5",
        "operator: Exists\n          values: [\"c5\"]\n          minValues: 5",
        "spec.template.spec.requirements[2].values",
        "operator Exists takes no values",
    ),
    (
        "spot-with-on-demand-fallback.yaml",
        "values: [\"c\", \"m\", \"r\"]\n        - key: karpenter.k8s.aws/instance-family",
        "values: [\"c\", \"m\", \"r\"]\n          minValues: 4\n        - key: karpenter.k8s.aws/instance-family",
        "spec.template.spec.requirements[1].minValues",
        "minValues 4 needs at least that many values for operator In, got 3",
    ),
    (
        "spot-with-on-demand-fallback.yaml",
        "minValues: 10",
        "minValues: 0",
        "spec.template.spec.requirements[3].minValues",
        "between 1 and 50",
    ),
    (
        "default.yaml",
        "key: kubernetes.io/os",
        "key: kubernetes.io/hostname",
        "spec.template.spec.requirements[1].key",
        "kubernetes.io/hostname is restricted",
    ),
    (
        "default.yaml",
        "key: kubernetes.io/os",
        "key: karpenter.sh/nodepool",
        "spec.template.spec.requirements[1].key",
        "karpenter.sh/nodepool is restricted",
    ),
    (
        "default.yaml",
        "key: kubernetes.io/os",
        "key: karpenter.k8s.aws/made-up",
        "spec.template.spec.requirements[1].key",
        "label domain \"karpenter.k8s.aws\" is restricted",
    ),
    (
        "default.yaml",
        "operator: In\n          values: [\"on-demand\"]",
        "operator: Within\n          values: [\"on-demand\"]",
        "spec.template.spec.requirements[2].operator",
        "unknown variant `Within`",
    ),
    (
        "gpu.yaml",
        "effect: NoSchedule",
        "effect: NoScheduling",
        "spec.template.spec.taints[0].effect",
        "must be one of NoSchedule, PreferNoSchedule, NoExecute",
    ),
    (
        "gpu.yaml",
        "example.com/accelerator: nvidia",
        "kubernetes.io/hostname: gpu-1",
        "spec.template.metadata.labels[\"kubernetes.io/hostname\"]",
        "restricted",
    ),
    (
        "budgets.yaml",
        "nodes: \"10%\"",
        "nodes: \"110%\"",
        "spec.disruption.budgets[0].nodes",
        "between 0% and 100%",
    ),
    (
        "budgets.yaml",
        "nodes: \"10%\"",
        "nodes: \"ten\"",
        "spec.disruption.budgets[0].nodes",
        "whole number of nodes",
    ),
    (
        "budgets.yaml",
        "        duration: 8h\n",
        "",
        "spec.disruption.budgets[2].duration",
        "a budget with a schedule needs a duration",
    ),
    (
        "budgets.yaml",
        "schedule: \"0 9 * * mon-fri\"",
        "schedule: \"0 9 * mon-fri\"",
        "spec.disruption.budgets[2].schedule",
        "expected 5 fields",
    ),
    (
        "budgets.yaml",
        "schedule: \"0 9 * * mon-fri\"",
        "schedule: \"0 25 * * *\"",
        "spec.disruption.budgets[2].schedule",
        "invalid cron",
    ),
    (
        "budgets.yaml",
        "duration: 8h",
        "duration: 30s",
        "spec.disruption.budgets[2].duration",
        "whole hours and/or minutes",
    ),
    (
        "budgets.yaml",
        "reasons: [\"Drifted\"]",
        "reasons: [\"Expired\"]",
        "spec.disruption.budgets[1].reasons[0]",
        "unknown variant `Expired`",
    ),
    (
        "budgets.yaml",
        "expireAfter: 336h",
        "expireAfter: 14d",
        "spec.template.spec.expireAfter",
        "\"14d\"",
    ),
    (
        "budgets.yaml",
        "consolidateAfter: 15m",
        "consolidateAfter: never",
        "spec.disruption.consolidateAfter",
        "or \"Never\"",
    ),
    (
        "budgets.yaml",
        "terminationGracePeriod: 1h30m",
        "terminationGracePeriod: Never",
        "spec.template.spec.terminationGracePeriod",
        "\"Never\" is not allowed here",
    ),
    (
        "budgets.yaml",
        "weight: 20",
        "weight: 101",
        "spec.weight",
        "between 1 and 100, got 101",
    ),
    (
        "budgets.yaml",
        "memory: 1200Gi",
        "memory: 1200GB",
        "spec.limits.memory",
        "\"1200GB\"",
    ),
    (
        "budgets.yaml",
        "consolidationPolicy: WhenEmptyOrUnderutilized",
        "consolidationPolicy: WhenUnderutilized",
        "spec.disruption.consolidationPolicy",
        "unknown variant `WhenUnderutilized`",
    ),
    (
        "graviton.yaml",
        "  limits:",
        "  limit:",
        "spec.limit",
        "unknown field",
    ),
    (
        "gpu.yaml",
        "      startupTaints:\n        - key: example.com/gpu-driver-not-ready",
        "      startupTaints:\n        - key: example.com/gpu-driver-not-ready\n          vaule: x",
        "spec.template.spec.startupTaints[0].vaule",
        "unknown field",
    ),
    (
        "default.yaml",
        "kind: EC2NodeClass\n        name: default",
        "kind: EC2NodeClass\n        name: \"\"",
        "spec.template.spec.nodeClassRef.name",
        "must not be empty",
    ),
    (
        "default.yaml",
        "  role: \"KarpenterNodeRole-my-cluster\"",
        "  role: \"KarpenterNodeRole-my-cluster\"\n  instanceProfile: other",
        "spec",
        "exactly one of role and instanceProfile",
    ),
    (
        "default.yaml",
        "alias: \"al2023@latest\"",
        "alias: \"al2023\"",
        "spec.amiSelectorTerms[0].alias",
        "expected <family>@<version>",
    ),
    (
        "default.yaml",
        "alias: \"al2023@latest\"",
        "alias: \"ubuntu@latest\"",
        "spec.amiSelectorTerms[0].alias",
        "unknown family \"ubuntu\"",
    ),
    (
        "default.yaml",
        "    - alias: \"al2023@latest\"",
        "    - alias: \"al2023@latest\"\n      id: ami-0123456789abcdef0",
        "spec.amiSelectorTerms[0].alias",
        "alias is exclusive",
    ),
    (
        "al2023-custom.yaml",
        "  amiFamily: AL2023\n",
        "",
        "spec.amiFamily",
        "required when amiSelectorTerms has no alias",
    ),
    (
        "default.yaml",
        "  subnetSelectorTerms:\n    - tags:\n        karpenter.sh/discovery: \"my-cluster\"",
        "  subnetSelectorTerms:\n    - {}",
        "spec.subnetSelectorTerms[0]",
        "a term needs tags or id",
    ),
    (
        "al2023-custom.yaml",
        "    - name: eks-cluster-sg-my-cluster",
        "    - name: eks-cluster-sg-my-cluster\n      id: sg-0123",
        "spec.securityGroupSelectorTerms[1]",
        "id is exclusive",
    ),
    (
        "al2023-custom.yaml",
        "httpTokens: required",
        "httpTokens: sometimes",
        "spec.metadataOptions.httpTokens",
        "unknown variant `sometimes`",
    ),
    (
        "al2023-custom.yaml",
        "httpPutResponseHopLimit: 1",
        "httpPutResponseHopLimit: 65",
        "spec.metadataOptions.httpPutResponseHopLimit",
        "between 1 and 64",
    ),
    (
        "gpu.yaml",
        "    - deviceName: /dev/xvda\n      ebs:",
        "    - deviceName: /dev/xvda\n      rootVolume: true\n      ebs:",
        "spec.blockDeviceMappings",
        "at most one mapping may set rootVolume, got 2",
    ),
    (
        "al2023-custom.yaml",
        "volumeSize: 100Gi",
        "volumeSize: 100 gigs",
        "spec.blockDeviceMappings[0].ebs.volumeSize",
        "\"100 gigs\"",
    ),
    (
        "al2023-custom.yaml",
        "      memory: 100Mi\n      ephemeral-storage: 1Gi",
        "      memory: lots\n      ephemeral-storage: 1Gi",
        "spec.kubelet.systemReserved.memory",
        "\"lots\"",
    ),
    (
        "al2023-custom.yaml",
        "      nodefs.available: 1m30s",
        "",
        "spec.kubelet.evictionSoft[\"nodefs.available\"]",
        "needs a matching evictionSoftGracePeriod",
    ),
    (
        "al2023-custom.yaml",
        "imageGCLowThresholdPercent: 80",
        "imageGCLowThresholdPercent: 90",
        "spec.kubelet.imageGCLowThresholdPercent",
        "lower than imageGCHighThresholdPercent (85), got 90",
    ),
    (
        "al2023-custom.yaml",
        "    team: platform",
        "    team: platform\n    kubernetes.io/cluster/my-cluster: owned",
        "spec.tags[\"kubernetes.io/cluster/my-cluster\"]",
        "restricted",
    ),
    (
        "bottlerocket-pinned.yaml",
        "alias: bottlerocket@v1.40.0",
        "alias: windows2022@v1.2",
        "spec.amiSelectorTerms[0].alias",
        "only support version \"latest\"",
    ),
    (
        "bottlerocket-pinned.yaml",
        "ownerID: \"123456789012\"",
        "ownerID: \"1234\"",
        "spec.capacityReservationSelectorTerms[0].ownerID",
        "12-digit",
    ),
];

#[test]
fn broken_variants_name_the_field_and_reason() {
    let mut failures = Vec::new();
    for (file, from, to, path, reason) in BROKEN {
        let original = example(file);
        assert!(
            original.contains(from),
            "{file}: test text {from:?} not found"
        );
        let broken = original.replacen(from, to, 1);
        let found = problems(&broken);
        let hit = found
            .iter()
            .any(|p| p.path == *path && p.reason.contains(reason));
        if !hit {
            failures.push(format!(
                "{file}: {from:?} -> {to:?}: want {path}: {reason}; got {found:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn broken_field_lines_point_into_the_file() {
    let broken = example("default.yaml").replace("values: [\"2\"]", "values: [\"a\"]");
    let found = problems(&broken);
    let line = found[0].line.expect("a line");
    let text_line = broken.lines().nth(line - 1).unwrap();
    assert!(
        text_line.contains("values: [\"a\"]"),
        "line {line}: {text_line:?}"
    );
}

#[test]
fn defaults_are_karpenters() {
    use kestrel::api::{BudgetNodes, ConsolidationPolicy, NodePool};
    let pool: NodePool = serde_yaml_ng::from_str(
        "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {name: p}\nspec:\n  template:\n    spec:\n      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}\n",
    )
    .unwrap();
    assert_eq!(
        pool.spec.expire_after().unwrap(),
        Some(std::time::Duration::from_secs(720 * 3600))
    );
    assert_eq!(
        pool.spec.consolidate_after().unwrap(),
        Some(std::time::Duration::ZERO)
    );
    assert_eq!(
        pool.spec.consolidation_policy(),
        ConsolidationPolicy::WhenEmptyOrUnderutilized
    );
    let budgets = pool.spec.budgets();
    assert_eq!(budgets.len(), 1);
    assert_eq!(budgets[0].nodes().unwrap(), BudgetNodes::Percent(10));
    assert_eq!(pool.spec.weight, None);
}
