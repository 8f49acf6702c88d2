//! Migrating older Karpenter manifests to the v1 API Kestrel serves, following Karpenter's v1 migration
//! guide and its conversion webhooks:
//!
//! - `karpenter.sh/v1beta1` NodePool → `karpenter.sh/v1`: `WhenUnderutilized` is `WhenEmptyOrUnderutilized`
//!   (with `consolidateAfter: 0s`, which v1 requires), `spec.disruption.expireAfter` moves to
//!   `spec.template.spec.expireAfter`, `nodeClassRef` gets `group` and `kind`, `kubelet` moves to the
//!   EC2NodeClass;
//! - `karpenter.k8s.aws/v1beta1` EC2NodeClass → `karpenter.k8s.aws/v1`: an `amiFamily` without
//!   `amiSelectorTerms` becomes an alias term (`al2023@latest`), Ubuntu becomes AL2 with explicit AMIs,
//!   the old IMDS hop-limit default (2) is written out;
//! - `karpenter.sh/v1alpha5` Provisioner → NodePool and `karpenter.k8s.aws/v1alpha1` AWSNodeTemplate →
//!   EC2NodeClass (the v1beta1 migration guide's renames, then the above), including the v1alpha5
//!   defaults (on-demand, amd64, linux, c/m/r families newer than generation 2) so the same nodes launch.
//!
//! Each conversion reports what it changed, what a person should review and what it could not carry
//! over ([`Note`]). [`convert_files`] converts whole files (manifests, or scenarios' `nodePools` and
//! `nodeClasses`), moves each NodePool's kubelet onto the EC2NodeClass it names when that class is among
//! the inputs, and validates the result as v1.
use serde_yaml_ng::{Mapping, Value};

use super::manifest::{Outcome, check_manifests, split_documents};

/// What a note says about a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoteKind {
    /// A mechanical change with the same behaviour.
    Changed,
    /// Carried over, but a person should check it (a default that changed, a value that needs filling in).
    Review,
    /// Not carried over: the field exists in no Karpenter version or has no v1 equivalent.
    Dropped,
}

/// One thing a conversion did or could not do, at a field path of the *source* object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub kind: NoteKind,
    pub path: String,
    pub message: String,
}

/// Why a document could not be converted at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MigrateError {
    #[error("{api_version} {kind} is not an older Karpenter resource")]
    NotOld { api_version: String, kind: String },
    #[error("`{0}` is not a mapping")]
    NotAMapping(String),
    #[error("YAML: {0}")]
    Yaml(String),
}

/// The older kinds Kestrel can convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    NodePoolV1beta1,
    EC2NodeClassV1beta1,
    ProvisionerV1alpha5,
    AwsNodeTemplateV1alpha1,
    /// NodeClaims (and v1alpha5 Machines) are written by Karpenter, not by people: not converted.
    NodeClaimOld,
}

impl Source {
    /// Which older kind `apiVersion`/`kind` is, if any. A Provisioner or AWSNodeTemplate under any
    /// version of its group is read as the only version that shipped (v1alpha5, v1alpha1).
    pub fn of(api_version: &str, kind: &str) -> Option<Source> {
        let group = api_version.split('/').next().unwrap_or("");
        match (api_version, group, kind) {
            ("karpenter.sh/v1beta1", _, "NodePool") => Some(Source::NodePoolV1beta1),
            ("karpenter.k8s.aws/v1beta1", _, "EC2NodeClass") => Some(Source::EC2NodeClassV1beta1),
            (_, "karpenter.sh", "Provisioner") => Some(Source::ProvisionerV1alpha5),
            (_, "karpenter.k8s.aws", "AWSNodeTemplate") => Some(Source::AwsNodeTemplateV1alpha1),
            ("karpenter.sh/v1beta1", _, "NodeClaim") | (_, "karpenter.sh", "Machine") => {
                Some(Source::NodeClaimOld)
            }
            _ => None,
        }
    }

    /// The v1 kind this converts to.
    pub fn target(self) -> &'static str {
        match self {
            Source::NodePoolV1beta1 | Source::ProvisionerV1alpha5 => "karpenter.sh/v1 NodePool",
            Source::EC2NodeClassV1beta1 | Source::AwsNodeTemplateV1alpha1 => {
                "karpenter.k8s.aws/v1 EC2NodeClass"
            }
            Source::NodeClaimOld => "karpenter.sh/v1 NodeClaim",
        }
    }
}

/// One converted object: the v1 objects it became (a Provisioner with an inline `provider` becomes a
/// NodePool and an EC2NodeClass) and the notes.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    pub source: Source,
    /// `karpenter.sh/v1beta1 NodePool`, as written in the input.
    pub from: String,
    pub name: String,
    pub objects: Vec<Value>,
    pub notes: Vec<Note>,
    /// A NodePool's kubelet settings, to be moved onto the EC2NodeClass it names.
    pub kubelet: Option<PendingKubelet>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PendingKubelet {
    pub node_class: String,
    pub kubelet: Value,
    /// Where it was in the source (`spec.template.spec.kubelet`).
    pub path: String,
}

const V1_POOL: &str = "karpenter.sh/v1";
const V1_CLASS: &str = "karpenter.k8s.aws/v1";

/// Hints for fields that are not where v1 has them or that exist in no Karpenter version, by the last
/// segments of their path.
const HINTS: &[(&str, &str)] = &[
    (
        "spec.replicas",
        "spec.replicas is Karpenter's static-capacity NodePool (alpha since v1.5); Kestrel does not serve it yet: remove it to autoscale the NodePool",
    ),
    (
        "disruption.maxUnavailable",
        "no Karpenter version has maxUnavailable; limit how many nodes are disrupted at once with budgets, e.g. `budgets: [{nodes: \"5%\"}]` (a count or a percentage of the NodePool's nodes)",
    ),
    (
        "disruption.maxSurge",
        "no Karpenter version has maxSurge; replacements are launched before a node is drained, and budgets (`budgets: [{nodes: \"5%\"}]`) bound how many nodes are disrupted at once",
    ),
    (
        "disruption.expireAfter",
        "v1 moved expireAfter to spec.template.spec.expireAfter",
    ),
    (
        "template.spec.kubelet",
        "v1 moved kubelet to the EC2NodeClass's spec.kubelet",
    ),
    (
        "nodeClassRef.apiVersion",
        "v1 names the group instead: `group: karpenter.k8s.aws` (with `kind: EC2NodeClass`)",
    ),
    (
        "spec.ttlSecondsAfterEmpty",
        "a v1alpha5 Provisioner field; v1 writes `disruption: {consolidationPolicy: WhenEmpty, consolidateAfter: 30s}`",
    ),
    (
        "spec.ttlSecondsUntilExpired",
        "a v1alpha5 Provisioner field; v1 writes spec.template.spec.expireAfter (e.g. 720h)",
    ),
    (
        "spec.consolidation",
        "a v1alpha5 Provisioner field; v1 writes `disruption: {consolidationPolicy: WhenEmptyOrUnderutilized}`",
    ),
    (
        "spec.providerRef",
        "a v1alpha5 Provisioner field; v1 writes spec.template.spec.nodeClassRef {group, kind, name}",
    ),
    (
        "spec.requirements",
        "NodePools keep requirements in spec.template.spec.requirements",
    ),
    (
        "spec.taints",
        "NodePools keep taints in spec.template.spec.taints",
    ),
    (
        "spec.labels",
        "NodePools keep labels in spec.template.metadata.labels",
    ),
    (
        "spec.subnetSelector",
        "an AWSNodeTemplate field; v1 writes subnetSelectorTerms: [{tags: {...}}] or [{id: subnet-...}]",
    ),
    (
        "spec.securityGroupSelector",
        "an AWSNodeTemplate field; v1 writes securityGroupSelectorTerms: [{tags: {...}}]",
    ),
    (
        "spec.amiSelector",
        "an AWSNodeTemplate field; v1 writes amiSelectorTerms: [{alias: al2023@latest}] or [{id: ami-...}]",
    ),
    (
        "spec.launchTemplate",
        "launch templates are not supported since v1beta1; set the EC2NodeClass's own fields (amiSelectorTerms, userData, blockDeviceMappings, securityGroupSelectorTerms, metadataOptions)",
    ),
];

/// A hint for a field path that Karpenter v1 does not have (or has elsewhere), and for values renamed
/// in v1 (`WhenUnderutilized`).
pub fn field_hint(path: &str, reason: &str) -> Option<&'static str> {
    // Values newer Karpenter releases accept and Kestrel does not implement yet: said so, with the
    // nearest value Kestrel has, never ignored.
    if path.ends_with("consolidationPolicy") && reason.contains("`Balanced`") {
        return Some(
            "Balanced is Karpenter v1.14's score-based policy (savings weighed against disruption); Kestrel does not implement it yet: use WhenEmptyOrUnderutilized, with a consolidator policy for the trade-off, or WhenEmpty",
        );
    }
    if path.ends_with("operator") && (reason.contains("`Gte`") || reason.contains("`Lte`")) {
        return Some(
            "Gte and Lte are Karpenter v1.9's NodePool-only operators; Kestrel does not serve them yet: write `Gte N` as `Gt N-1` and `Lte N` as `Lt N+1`",
        );
    }
    if path.ends_with("consolidationPolicy") && reason.contains("WhenUnderutilized") {
        return Some(
            "v1 renamed WhenUnderutilized to WhenEmptyOrUnderutilized (`kestrel convert` rewrites v1beta1 NodePools)",
        );
    }
    if !(reason.starts_with("unknown field") || reason.contains("unknown field")) {
        return None;
    }
    let clean: String = {
        // `spec.disruption.budgets[0].x` -> `spec.disruption.budgets.x`: hints are keyed by names.
        let mut out = String::new();
        let mut depth = 0;
        for c in path.chars() {
            match c {
                '[' => depth += 1,
                ']' => depth -= 1,
                c if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out
    };
    HINTS
        .iter()
        .find(|(suffix, _)| clean == *suffix || clean.ends_with(&format!(".{suffix}")))
        .map(|(_, hint)| *hint)
}

/// Notes and the reading of a source mapping: every key not taken is reported as not carried over.
struct Reader<'a> {
    map: &'a Mapping,
    path: String,
    taken: Vec<&'static str>,
}

impl<'a> Reader<'a> {
    fn new(map: &'a Mapping, path: &str) -> Self {
        Reader {
            map,
            path: path.to_string(),
            taken: Vec::new(),
        }
    }
    fn get(&mut self, key: &'static str) -> Option<&'a Value> {
        self.taken.push(key);
        self.map.get(key).filter(|v| !v.is_null())
    }
    fn at(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }
    /// Reports the keys nobody took.
    fn finish(self, what: &str, notes: &mut Vec<Note>) {
        for key in self.map.keys() {
            let name = key.as_str().unwrap_or("?");
            if self.taken.contains(&name) {
                continue;
            }
            let path = self.at(name);
            let hint = field_hint(&path, "unknown field")
                .map(|h| format!(": {h}"))
                .unwrap_or_default();
            notes.push(Note {
                kind: NoteKind::Dropped,
                message: format!("unknown field in {what}, not carried over{hint}"),
                path,
            });
        }
    }
}

fn note(
    notes: &mut Vec<Note>,
    kind: NoteKind,
    path: impl Into<String>,
    message: impl Into<String>,
) {
    notes.push(Note {
        kind,
        path: path.into(),
        message: message.into(),
    });
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

fn map_of(entries: Vec<(&str, Value)>) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        m.insert(s(k), v);
    }
    Value::Mapping(m)
}

fn mapping<'a>(v: &'a Value, path: &str) -> Result<&'a Mapping, MigrateError> {
    v.as_mapping()
        .ok_or_else(|| MigrateError::NotAMapping(path.to_string()))
}

/// An integer number of seconds (a YAML number or a numeric string).
fn seconds(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(t) => t.trim().parse().ok(),
        _ => None,
    }
}

/// Seconds as a Go duration in the largest whole unit (`2592000` → `720h`).
fn duration(secs: u64) -> String {
    if secs > 0 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs > 0 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// `metadata` with what a person writes (name, labels, annotations); server-set fields dropped.
fn metadata(value: &Mapping, notes: &mut Vec<Note>) -> (String, Value) {
    let mut out = Mapping::new();
    let mut name = String::new();
    if let Some(meta) = value.get("metadata").and_then(Value::as_mapping) {
        for (k, v) in meta {
            let key = k.as_str().unwrap_or("");
            match key {
                "name" => {
                    name = v.as_str().unwrap_or("").to_string();
                    out.insert(k.clone(), v.clone());
                }
                "labels" => {
                    out.insert(k.clone(), v.clone());
                }
                "annotations" => {
                    let mut kept = Mapping::new();
                    for (ak, av) in v.as_mapping().into_iter().flatten() {
                        if ak.as_str() == Some("kubectl.kubernetes.io/last-applied-configuration") {
                            note(
                                notes,
                                NoteKind::Changed,
                                "metadata.annotations",
                                "kubectl's last-applied-configuration (the old object) dropped",
                            );
                        } else {
                            kept.insert(ak.clone(), av.clone());
                        }
                    }
                    if !kept.is_empty() {
                        out.insert(k.clone(), Value::Mapping(kept));
                    }
                }
                "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "managedFields"
                | "selfLink"
                | "finalizers"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "ownerReferences" => {
                    note(
                        notes,
                        NoteKind::Changed,
                        format!("metadata.{key}"),
                        "set by the API server (or not meaningful for a cluster-scoped object); dropped",
                    );
                }
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
    (name, Value::Mapping(out))
}

fn header(api_version: &str, kind: &str, meta: Value) -> Mapping {
    let mut m = Mapping::new();
    m.insert(s("apiVersion"), s(api_version));
    m.insert(s("kind"), s(kind));
    m.insert(s("metadata"), meta);
    m
}

/// Converts one older Karpenter object.
pub fn convert_object(value: &Value) -> Result<Converted, MigrateError> {
    let root = mapping(value, "")?;
    let field = |k: &str| {
        root.get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let source = Source::of(&api_version, &kind).ok_or_else(|| MigrateError::NotOld {
        api_version: api_version.clone(),
        kind: kind.clone(),
    })?;
    let mut notes = Vec::new();
    let (name, meta) = metadata(root, &mut notes);
    if root.get("status").is_some() {
        note(
            &mut notes,
            NoteKind::Changed,
            "status",
            "set by the controller; dropped",
        );
    }
    let empty = Mapping::new();
    let spec = match root.get("spec") {
        Some(v) => mapping(v, "spec")?,
        None => &empty,
    };
    let from = format!("{api_version} {kind}");
    let mut converted = Converted {
        source,
        from: from.clone(),
        name: name.clone(),
        objects: Vec::new(),
        notes: Vec::new(),
        kubelet: None,
    };
    match source {
        Source::NodePoolV1beta1 => {
            let (spec, kubelet) = nodepool_v1beta1(spec, &mut notes)?;
            let mut out = header(V1_POOL, "NodePool", meta);
            out.insert(s("spec"), spec);
            converted.objects.push(Value::Mapping(out));
            converted.kubelet = kubelet;
        }
        Source::ProvisionerV1alpha5 => {
            let (spec, kubelet, inline_class) = provisioner(spec, &name, &mut notes)?;
            let mut out = header(V1_POOL, "NodePool", meta);
            out.insert(s("spec"), spec);
            converted.objects.push(Value::Mapping(out));
            if let Some(class_spec) = inline_class {
                let mut class = header(V1_CLASS, "EC2NodeClass", map_of(vec![("name", s(&name))]));
                class.insert(s("spec"), class_spec);
                converted.objects.push(Value::Mapping(class));
            }
            converted.kubelet = kubelet;
        }
        Source::EC2NodeClassV1beta1 => {
            let spec = ec2nodeclass_v1beta1(spec, "spec", &mut notes)?;
            let mut out = header(V1_CLASS, "EC2NodeClass", meta);
            out.insert(s("spec"), spec);
            converted.objects.push(Value::Mapping(out));
        }
        Source::AwsNodeTemplateV1alpha1 => {
            if api_version != "karpenter.k8s.aws/v1alpha1" {
                note(
                    &mut notes,
                    NoteKind::Changed,
                    "apiVersion",
                    format!(
                        "AWSNodeTemplate only shipped as karpenter.k8s.aws/v1alpha1; {api_version} read as that"
                    ),
                );
            }
            let spec = aws_node_template(spec, "spec", &mut notes)?;
            let mut out = header(V1_CLASS, "EC2NodeClass", meta);
            out.insert(s("spec"), spec);
            converted.objects.push(Value::Mapping(out));
        }
        Source::NodeClaimOld => {
            note(
                &mut notes,
                NoteKind::Dropped,
                "kind",
                format!(
                    "{kind}s are created by Karpenter for its NodePools, not written by hand: not converted (convert the NodePool or Provisioner instead)"
                ),
            );
        }
    }
    if !matches!(source, Source::NodeClaimOld) {
        note(
            &mut notes,
            NoteKind::Changed,
            "apiVersion",
            format!("{from} → {}", source.target()),
        );
        notes.rotate_right(1);
    }
    converted.notes = notes;
    Ok(converted)
}

/// The nodeClassRef of v1 from a v1beta1 `{apiVersion, kind, name}` (or a v1alpha5 providerRef).
fn node_class_ref(r: &Mapping, path: &str, notes: &mut Vec<Note>) -> Value {
    let mut rd = Reader::new(r, path);
    let name = rd.get("name").cloned().unwrap_or(Value::Null);
    let group = rd
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(|v| v.split('/').next().unwrap_or(v).to_string())
        .or_else(|| rd.get("group").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "karpenter.k8s.aws".to_string());
    let mut kind = rd
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("EC2NodeClass")
        .to_string();
    if kind == "AWSNodeTemplate" {
        kind = "EC2NodeClass".into();
    }
    rd.finish("nodeClassRef", notes);
    note(
        notes,
        NoteKind::Changed,
        path,
        format!("v1 requires group and kind: {{group: {group}, kind: {kind}, name: …}}"),
    );
    map_of(vec![
        ("group", s(&group)),
        ("kind", s(&kind)),
        ("name", name),
    ])
}

fn nodepool_v1beta1(
    spec: &Mapping,
    notes: &mut Vec<Note>,
) -> Result<(Value, Option<PendingKubelet>), MigrateError> {
    let mut rd = Reader::new(spec, "spec");
    let empty = Mapping::new();
    let template = match rd.get("template") {
        Some(v) => mapping(v, "spec.template")?,
        None => &empty,
    };
    let mut trd = Reader::new(template, "spec.template");
    let mut out_template = Mapping::new();
    if let Some(meta) = trd.get("metadata") {
        out_template.insert(s("metadata"), meta.clone());
    }
    let tspec = match trd.get("spec") {
        Some(v) => mapping(v, "spec.template.spec")?,
        None => &empty,
    };
    trd.finish("spec.template", notes);
    let mut srd = Reader::new(tspec, "spec.template.spec");
    let mut out_spec = Mapping::new();
    let mut class_name = String::new();
    match srd.get("nodeClassRef") {
        Some(r) => {
            let r = mapping(r, "spec.template.spec.nodeClassRef")?;
            class_name = r.get("name").and_then(Value::as_str).unwrap_or("").into();
            out_spec.insert(
                s("nodeClassRef"),
                node_class_ref(r, "spec.template.spec.nodeClassRef", notes),
            );
        }
        None => note(
            notes,
            NoteKind::Review,
            "spec.template.spec.nodeClassRef",
            "missing: v1 requires nodeClassRef {group: karpenter.k8s.aws, kind: EC2NodeClass, name: …}",
        ),
    }
    // expireAfter: from disruption (v1beta1) into the template (v1).
    let disruption = match rd.get("disruption") {
        Some(v) => Some(mapping(v, "spec.disruption")?),
        None => None,
    };
    let mut drd = disruption.map(|d| Reader::new(d, "spec.disruption"));
    if let Some(v) = drd.as_mut().and_then(|d| d.get("expireAfter")) {
        out_spec.insert(s("expireAfter"), v.clone());
        note(
            notes,
            NoteKind::Changed,
            "spec.disruption.expireAfter",
            "moved to spec.template.spec.expireAfter (v1 also treats a change of it as drift)",
        );
    }
    if let Some(v) = srd.get("expireAfter") {
        out_spec.insert(s("expireAfter"), v.clone());
    }
    for key in [
        "terminationGracePeriod",
        "requirements",
        "taints",
        "startupTaints",
    ] {
        if let Some(v) = srd.get(key) {
            out_spec.insert(s(key), v.clone());
        }
    }
    if srd.map.contains_key("kubelet") {
        note(
            notes,
            NoteKind::Changed,
            "spec.template.spec.kubelet",
            format!(
                "v1 keeps kubelet settings on the EC2NodeClass: moves to EC2NodeClass/{class_name} spec.kubelet"
            ),
        );
    }
    let kubelet = srd.get("kubelet").map(|k| PendingKubelet {
        node_class: class_name.clone(),
        kubelet: k.clone(),
        path: "spec.template.spec.kubelet".into(),
    });
    srd.finish("spec.template.spec", notes);
    out_template.insert(s("spec"), Value::Mapping(out_spec));

    let mut out = Mapping::new();
    out.insert(s("template"), Value::Mapping(out_template));
    let mut out_disruption = Mapping::new();
    let policy = drd
        .as_mut()
        .and_then(|d| d.get("consolidationPolicy"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let after = drd
        .as_mut()
        .and_then(|d| d.get("consolidateAfter"))
        .cloned();
    match policy.as_deref() {
        None | Some("WhenUnderutilized") => {
            out_disruption.insert(s("consolidationPolicy"), s("WhenEmptyOrUnderutilized"));
            out_disruption.insert(s("consolidateAfter"), s("0s"));
            let (path, what) = match policy {
                Some(_) => (
                    "spec.disruption.consolidationPolicy",
                    "WhenUnderutilized is WhenEmptyOrUnderutilized in v1",
                ),
                None => (
                    "spec.disruption",
                    "v1beta1's default policy WhenUnderutilized written as v1's WhenEmptyOrUnderutilized",
                ),
            };
            note(
                notes,
                NoteKind::Changed,
                path,
                format!(
                    "{what}, with consolidateAfter: 0s (v1 requires consolidateAfter; 0s is v1beta1's behaviour)"
                ),
            );
            if let Some(a) = after {
                note(
                    notes,
                    NoteKind::Review,
                    "spec.disruption.consolidateAfter",
                    format!(
                        "{} was not allowed with WhenUnderutilized in v1beta1 and is written as 0s (as Karpenter's conversion does); v1 honours it, set it again if you meant it",
                        serde_yaml_ng::to_string(&a).unwrap_or_default().trim()
                    ),
                );
            }
        }
        Some(other) => {
            out_disruption.insert(s("consolidationPolicy"), s(other));
            match after {
                Some(a) => {
                    out_disruption.insert(s("consolidateAfter"), a);
                }
                None => {
                    out_disruption.insert(s("consolidateAfter"), s("0s"));
                    note(
                        notes,
                        NoteKind::Review,
                        "spec.disruption",
                        format!(
                            "v1beta1 required consolidateAfter with {other}; v1 requires it too: written as 0s, set the delay you want"
                        ),
                    );
                }
            }
        }
    }
    if let Some(b) = drd.as_mut().and_then(|d| d.get("budgets")) {
        out_disruption.insert(s("budgets"), b.clone());
    }
    if let Some(d) = drd {
        d.finish("spec.disruption", notes);
    }
    out.insert(s("disruption"), Value::Mapping(out_disruption));
    for key in ["limits", "weight"] {
        if let Some(v) = rd.get(key) {
            out.insert(s(key), v.clone());
        }
    }
    rd.finish("a karpenter.sh/v1beta1 NodePool's spec", notes);
    Ok((Value::Mapping(out), kubelet))
}

type ProvisionerParts = (Value, Option<PendingKubelet>, Option<Value>);

fn provisioner(
    spec: &Mapping,
    name: &str,
    notes: &mut Vec<Note>,
) -> Result<ProvisionerParts, MigrateError> {
    let mut rd = Reader::new(spec, "spec");
    let mut tmeta = Mapping::new();
    for (from, to) in [("labels", "labels"), ("annotations", "annotations")] {
        if let Some(v) = rd.get(from) {
            tmeta.insert(s(to), v.clone());
            note(
                notes,
                NoteKind::Changed,
                format!("spec.{from}"),
                format!("moved to spec.template.metadata.{to}"),
            );
        }
    }
    let mut tspec = Mapping::new();
    let mut class_name = String::new();
    let mut inline_class = None;
    let provider_ref = rd.get("providerRef");
    let provider = rd.get("provider");
    match (provider_ref, provider) {
        (Some(r), other) => {
            let r = mapping(r, "spec.providerRef")?;
            class_name = r.get("name").and_then(Value::as_str).unwrap_or("").into();
            let mut ref_notes = Vec::new();
            let v = node_class_ref(r, "spec.providerRef", &mut ref_notes);
            tspec.insert(s("nodeClassRef"), v);
            note(
                notes,
                NoteKind::Changed,
                "spec.providerRef",
                "moved to spec.template.spec.nodeClassRef {group: karpenter.k8s.aws, kind: EC2NodeClass, name: …} (AWSNodeTemplate is EC2NodeClass)",
            );
            notes.extend(
                ref_notes
                    .into_iter()
                    .filter(|n| n.kind != NoteKind::Changed),
            );
            if other.is_some() {
                note(
                    notes,
                    NoteKind::Dropped,
                    "spec.provider",
                    "v1alpha5 refused provider together with providerRef; the providerRef is kept",
                );
            }
        }
        (None, Some(p)) => {
            let p = mapping(p, "spec.provider")?;
            class_name = name.to_string();
            inline_class = Some(aws_node_template(p, "spec.provider", notes)?);
            tspec.insert(
                s("nodeClassRef"),
                map_of(vec![
                    ("group", s("karpenter.k8s.aws")),
                    ("kind", s("EC2NodeClass")),
                    ("name", s(name)),
                ]),
            );
            note(
                notes,
                NoteKind::Changed,
                "spec.provider",
                format!(
                    "the inline provider became EC2NodeClass/{name} (written after the NodePool), named by spec.template.spec.nodeClassRef"
                ),
            );
        }
        (None, None) => note(
            notes,
            NoteKind::Review,
            "spec.providerRef",
            "missing: v1 requires spec.template.spec.nodeClassRef {group: karpenter.k8s.aws, kind: EC2NodeClass, name: …}",
        ),
    }
    match rd.get("ttlSecondsUntilExpired") {
        Some(v) => match seconds(v) {
            Some(n) => {
                tspec.insert(s("expireAfter"), s(&duration(n)));
                note(
                    notes,
                    NoteKind::Changed,
                    "spec.ttlSecondsUntilExpired",
                    format!("moved to spec.template.spec.expireAfter: {}", duration(n)),
                );
            }
            None => note(
                notes,
                NoteKind::Dropped,
                "spec.ttlSecondsUntilExpired",
                "not a whole number of seconds; not carried over",
            ),
        },
        None => {
            tspec.insert(s("expireAfter"), s("Never"));
            note(
                notes,
                NoteKind::Changed,
                "spec",
                "v1alpha5 nodes never expired without ttlSecondsUntilExpired: spec.template.spec.expireAfter: Never (v1's default is 720h)",
            );
        }
    }
    let mut requirements: Vec<Value> = match rd.get("requirements") {
        Some(Value::Sequence(r)) => {
            note(
                notes,
                NoteKind::Changed,
                "spec.requirements",
                "moved to spec.template.spec.requirements",
            );
            r.clone()
        }
        Some(_) => {
            note(
                notes,
                NoteKind::Dropped,
                "spec.requirements",
                "not a list; not carried over",
            );
            Vec::new()
        }
        None => Vec::new(),
    };
    let has = |reqs: &[Value], key: &str| {
        reqs.iter()
            .any(|r| r.get("key").and_then(Value::as_str) == Some(key))
    };
    let labels = spec.get("labels").and_then(Value::as_mapping);
    let labelled = |key: &str| labels.is_some_and(|l| l.contains_key(key));
    let requirement = |key: &str, op: &str, values: &[&str]| {
        map_of(vec![
            ("key", s(key)),
            ("operator", s(op)),
            (
                "values",
                Value::Sequence(values.iter().map(|v| s(v)).collect()),
            ),
        ])
    };
    let mut defaults = Vec::new();
    for (key, value) in [
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("karpenter.sh/capacity-type", "on-demand"),
    ] {
        if !has(&requirements, key) && !labelled(key) {
            requirements.push(requirement(key, "In", &[value]));
            defaults.push(format!("{key} In [{value}]"));
        }
    }
    if ![
        "node.kubernetes.io/instance-type",
        "karpenter.k8s.aws/instance-family",
        "karpenter.k8s.aws/instance-category",
        "karpenter.k8s.aws/instance-generation",
    ]
    .iter()
    .any(|k| has(&requirements, k))
    {
        requirements.push(requirement(
            "karpenter.k8s.aws/instance-category",
            "In",
            &["c", "m", "r"],
        ));
        requirements.push(requirement(
            "karpenter.k8s.aws/instance-generation",
            "Gt",
            &["2"],
        ));
        defaults.push("instance-category In [c, m, r] and instance-generation Gt 2".into());
    }
    if !defaults.is_empty() {
        note(
            notes,
            NoteKind::Changed,
            "spec.requirements",
            format!(
                "v1alpha5 defaulted {}; written out so the same instances launch (v1 has no such defaults)",
                defaults.join(", ")
            ),
        );
    }
    tspec.insert(s("requirements"), Value::Sequence(requirements));
    for key in ["taints", "startupTaints"] {
        if let Some(v) = rd.get(key) {
            tspec.insert(s(key), v.clone());
            note(
                notes,
                NoteKind::Changed,
                format!("spec.{key}"),
                format!("moved to spec.template.spec.{key}"),
            );
        }
    }
    let kubelet = match rd.get("kubeletConfiguration") {
        Some(k) => {
            let mut k = mapping(k, "spec.kubeletConfiguration")?.clone();
            if k.remove("containerRuntime").is_some() {
                note(
                    notes,
                    NoteKind::Changed,
                    "spec.kubeletConfiguration.containerRuntime",
                    "dropped: containerd is the only runtime since v1beta1",
                );
            }
            note(
                notes,
                NoteKind::Changed,
                "spec.kubeletConfiguration",
                format!(
                    "v1 keeps kubelet settings on the EC2NodeClass: moves to EC2NodeClass/{class_name} spec.kubelet"
                ),
            );
            Some(PendingKubelet {
                node_class: class_name.clone(),
                kubelet: Value::Mapping(k),
                path: "spec.kubeletConfiguration".into(),
            })
        }
        None => None,
    };
    let mut template = Mapping::new();
    if !tmeta.is_empty() {
        template.insert(s("metadata"), Value::Mapping(tmeta));
    }
    template.insert(s("spec"), Value::Mapping(tspec));
    let mut out = Mapping::new();
    out.insert(s("template"), Value::Mapping(template));

    let consolidation = rd
        .get("consolidation")
        .and_then(|c| c.get("enabled"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let empty_ttl = rd.get("ttlSecondsAfterEmpty");
    let (policy, after, why) = match (consolidation, empty_ttl) {
        (true, ttl) => {
            if ttl.is_some() {
                note(
                    notes,
                    NoteKind::Dropped,
                    "spec.ttlSecondsAfterEmpty",
                    "v1alpha5 refused it together with consolidation.enabled; WhenEmptyOrUnderutilized also removes empty nodes",
                );
            }
            (
                "WhenEmptyOrUnderutilized",
                "0s".to_string(),
                ("spec.consolidation", "consolidation.enabled: true is consolidationPolicy: WhenEmptyOrUnderutilized, consolidateAfter: 0s".to_string()),
            )
        }
        (false, Some(ttl)) => match seconds(ttl) {
            Some(n) => (
                "WhenEmpty",
                duration(n),
                (
                    "spec.ttlSecondsAfterEmpty",
                    format!("is consolidationPolicy: WhenEmpty, consolidateAfter: {}", duration(n)),
                ),
            ),
            None => (
                "WhenEmpty",
                "Never".to_string(),
                ("spec.ttlSecondsAfterEmpty", "not a whole number of seconds; written as consolidateAfter: Never".to_string()),
            ),
        },
        (false, None) => (
            "WhenEmpty",
            "Never".to_string(),
            (
                "spec",
                "v1alpha5 removed no nodes without consolidation or ttlSecondsAfterEmpty: consolidationPolicy: WhenEmpty, consolidateAfter: Never".to_string(),
            ),
        ),
    };
    note(notes, NoteKind::Changed, why.0, why.1);
    out.insert(
        s("disruption"),
        map_of(vec![
            ("consolidationPolicy", s(policy)),
            ("consolidateAfter", s(&after)),
        ]),
    );
    if let Some(limits) = rd.get("limits") {
        let lim = mapping(limits, "spec.limits")?;
        match lim.get("resources") {
            Some(r) => {
                out.insert(s("limits"), r.clone());
                note(
                    notes,
                    NoteKind::Changed,
                    "spec.limits.resources",
                    "moved to spec.limits",
                );
            }
            None => {
                out.insert(s("limits"), limits.clone());
            }
        }
    }
    if let Some(w) = rd.get("weight") {
        out.insert(s("weight"), w.clone());
    }
    rd.finish("a karpenter.sh/v1alpha5 Provisioner's spec", notes);
    Ok((Value::Mapping(out), kubelet, inline_class))
}

const ALIAS_FAMILIES: &[&str] = &[
    "AL2",
    "AL2023",
    "Bottlerocket",
    "Windows2019",
    "Windows2022",
];

/// The amiFamily / amiSelectorTerms rules of Karpenter's EC2NodeClass conversion, applied to `out`.
fn ami_family(
    family: Option<&str>,
    terms: Option<Vec<Value>>,
    block_devices: bool,
    path: &str,
    out: &mut Mapping,
    notes: &mut Vec<Note>,
) {
    let at = |k: &str| format!("{path}.{k}");
    match family {
        Some(f) if ALIAS_FAMILIES.contains(&f) => match terms {
            None => {
                let alias = format!("{}@latest", f.to_lowercase());
                out.insert(
                    s("amiSelectorTerms"),
                    Value::Sequence(vec![map_of(vec![("alias", s(&alias))])]),
                );
                note(
                    notes,
                    NoteKind::Changed,
                    at("amiFamily"),
                    format!(
                        "amiFamily {f} without amiSelectorTerms is amiSelectorTerms: [{{alias: {alias}}}] in v1 (amiFamily dropped: the alias implies it)"
                    ),
                );
                note(
                    notes,
                    NoteKind::Review,
                    at("amiFamily"),
                    format!(
                        "{alias} follows each new AMI release (every release drifts the nodes); pin one such as {}@v20240807 (a release of yours) to roll AMIs deliberately",
                        f.to_lowercase()
                    ),
                );
            }
            Some(t) => {
                out.insert(s("amiFamily"), s(f));
                out.insert(s("amiSelectorTerms"), Value::Sequence(t));
            }
        },
        Some("Ubuntu") => {
            out.insert(s("amiFamily"), s("AL2"));
            note(
                notes,
                NoteKind::Changed,
                at("amiFamily"),
                "v1 dropped the Ubuntu family: amiFamily AL2 (the same UserData format) with your amiSelectorTerms",
            );
            match terms {
                Some(t) => {
                    out.insert(s("amiSelectorTerms"), Value::Sequence(t));
                }
                None => note(
                    notes,
                    NoteKind::Review,
                    at("amiSelectorTerms"),
                    "Ubuntu without amiSelectorTerms cannot be converted: select your Ubuntu AMIs with amiSelectorTerms (id, name or tags)",
                ),
            }
            if !block_devices {
                out.insert(
                    s("blockDeviceMappings"),
                    Value::Sequence(vec![map_of(vec![
                        ("deviceName", s("/dev/sda1")),
                        ("rootVolume", Value::Bool(true)),
                        (
                            "ebs",
                            map_of(vec![
                                ("encrypted", Value::Bool(true)),
                                ("volumeType", s("gp3")),
                                ("volumeSize", s("20Gi")),
                            ]),
                        ),
                    ])]),
                );
                note(
                    notes,
                    NoteKind::Changed,
                    at("blockDeviceMappings"),
                    "Ubuntu's default root volume written out (/dev/sda1, 20Gi gp3, encrypted): AL2's differs",
                );
            }
        }
        other => {
            out.insert(s("amiFamily"), s(other.unwrap_or("Custom")));
            if let Some(t) = terms {
                out.insert(s("amiSelectorTerms"), Value::Sequence(t));
            }
            if other == Some("Custom") {
                note(
                    notes,
                    NoteKind::Review,
                    at("userData"),
                    "with amiFamily Custom your UserData must add the karpenter.sh/unregistered:NoExecute taint at registration (v1)",
                );
            }
        }
    }
}

/// The old IMDS default (hop limit 2) written out, since v1's default is 1.
fn metadata_options(v: Option<&Value>, path: &str, notes: &mut Vec<Note>) -> Value {
    let mut m = v.and_then(Value::as_mapping).cloned().unwrap_or_default();
    if !m.contains_key("httpPutResponseHopLimit") {
        m.insert(s("httpPutResponseHopLimit"), Value::Number(2.into()));
        note(
            notes,
            NoteKind::Review,
            format!("{path}.metadataOptions"),
            "httpPutResponseHopLimit: 2 written out (the old default; v1's is 1, which keeps pods without hostNetwork from reaching IMDS); drop it if your pods do not need the instance role",
        );
    }
    Value::Mapping(m)
}

fn ec2nodeclass_v1beta1(
    spec: &Mapping,
    path: &str,
    notes: &mut Vec<Note>,
) -> Result<Value, MigrateError> {
    let mut rd = Reader::new(spec, path);
    let mut out = Mapping::new();
    for key in [
        "subnetSelectorTerms",
        "securityGroupSelectorTerms",
        "associatePublicIPAddress",
    ] {
        if let Some(v) = rd.get(key) {
            out.insert(s(key), v.clone());
        }
    }
    let terms = rd
        .get("amiSelectorTerms")
        .and_then(Value::as_sequence)
        .filter(|t| !t.is_empty())
        .cloned();
    let family = rd.get("amiFamily").and_then(Value::as_str);
    if family.is_none() {
        note(
            notes,
            NoteKind::Review,
            format!("{path}.amiFamily"),
            "v1beta1 required amiFamily; without it Karpenter's conversion treats the class as Custom",
        );
    }
    let has_bdm = spec.get("blockDeviceMappings").is_some();
    ami_family(family, terms, has_bdm, path, &mut out, notes);
    for key in [
        "userData",
        "role",
        "instanceProfile",
        "tags",
        "blockDeviceMappings",
        "instanceStorePolicy",
        "detailedMonitoring",
        "context",
    ] {
        if let Some(v) = rd.get(key) {
            out.insert(s(key), v.clone());
        }
    }
    out.insert(
        s("metadataOptions"),
        metadata_options(rd.get("metadataOptions"), path, notes),
    );
    rd.finish("a karpenter.k8s.aws/v1beta1 EC2NodeClass's spec", notes);
    Ok(Value::Mapping(out))
}

/// `{aws-ids: "a,b", tag: v}` selectors → v1 terms: ids become id terms (an id alone identifies the
/// resource), the other keys a tags term.
fn selector_terms(sel: &Mapping, path: &str, notes: &mut Vec<Note>) -> Vec<Value> {
    let mut ids = Vec::new();
    let mut tags = Mapping::new();
    for (k, v) in sel {
        let key = k.as_str().unwrap_or("");
        let value = match v {
            Value::String(t) => t.clone(),
            other => serde_yaml_ng::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        if key == "aws-ids" || key == "aws::ids" {
            ids.extend(
                value
                    .split(',')
                    .map(|i| i.trim().to_string())
                    .filter(|i| !i.is_empty()),
            );
        } else {
            tags.insert(s(key), s(&value));
        }
    }
    if !ids.is_empty() {
        if !tags.is_empty() {
            note(
                notes,
                NoteKind::Review,
                path,
                "the ids and the tags were both required of each resource; v1 selects by id alone, so the tags are dropped",
            );
        }
        return ids.iter().map(|i| map_of(vec![("id", s(i))])).collect();
    }
    if tags.is_empty() {
        Vec::new()
    } else {
        vec![map_of(vec![("tags", Value::Mapping(tags))])]
    }
}

/// AMI selectors: `aws::ids`, `aws::name` and `aws::owners` (comma lists) and tags.
fn ami_terms(sel: &Mapping, path: &str, notes: &mut Vec<Note>) -> Vec<Value> {
    let list = |v: &Value| -> Vec<String> {
        v.as_str()
            .unwrap_or("")
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    };
    let (mut ids, mut names, mut owners, mut tags) =
        (Vec::new(), Vec::new(), Vec::new(), Mapping::new());
    for (k, v) in sel {
        match k.as_str().unwrap_or("") {
            "aws-ids" | "aws::ids" => ids = list(v),
            "aws::name" => names = list(v),
            "aws::owners" => owners = list(v),
            key => {
                tags.insert(s(key), v.clone());
            }
        }
    }
    let mut terms: Vec<Value> = ids.iter().map(|i| map_of(vec![("id", s(i))])).collect();
    if !ids.is_empty() && (!names.is_empty() || !owners.is_empty() || !tags.is_empty()) {
        note(
            notes,
            NoteKind::Review,
            path,
            "v1 selects an AMI by id alone; the name, owner and tag conditions next to the ids are written as terms of their own (any term matches): check the result",
        );
    }
    if names.is_empty() && owners.is_empty() && tags.is_empty() {
        return terms;
    }
    let names: Vec<Option<&String>> = if names.is_empty() {
        vec![None]
    } else {
        names.iter().map(Some).collect()
    };
    let owners: Vec<Option<&String>> = if owners.is_empty() {
        vec![None]
    } else {
        owners.iter().map(Some).collect()
    };
    for n in &names {
        for o in &owners {
            let mut t = Mapping::new();
            if let Some(n) = n {
                t.insert(s("name"), s(n));
            }
            if let Some(o) = o {
                t.insert(s("owner"), s(o));
            }
            if !tags.is_empty() {
                t.insert(s("tags"), Value::Mapping(tags.clone()));
            }
            terms.push(Value::Mapping(t));
        }
    }
    terms
}

fn aws_node_template(
    spec: &Mapping,
    path: &str,
    notes: &mut Vec<Note>,
) -> Result<Value, MigrateError> {
    let mut rd = Reader::new(spec, path);
    let mut out = Mapping::new();
    let at = |k: &str| format!("{path}.{k}");
    for (from, to) in [
        ("subnetSelector", "subnetSelectorTerms"),
        ("securityGroupSelector", "securityGroupSelectorTerms"),
    ] {
        match rd.get(from) {
            Some(sel) => {
                let sel = mapping(sel, &at(from))?;
                out.insert(
                    s(to),
                    Value::Sequence(selector_terms(sel, &at(from), notes)),
                );
                note(notes, NoteKind::Changed, at(from), format!("is {to} in v1"));
            }
            None => note(
                notes,
                NoteKind::Review,
                at(from),
                format!("missing: v1 requires {to}"),
            ),
        }
    }
    let terms = match rd.get("amiSelector") {
        Some(sel) => {
            let sel = mapping(sel, &at("amiSelector"))?;
            note(
                notes,
                NoteKind::Changed,
                at("amiSelector"),
                "is amiSelectorTerms in v1",
            );
            Some(ami_terms(sel, &at("amiSelector"), notes)).filter(|t| !t.is_empty())
        }
        None => None,
    };
    let family = rd.get("amiFamily").and_then(Value::as_str);
    if family.is_none() {
        note(
            notes,
            NoteKind::Changed,
            at("amiFamily"),
            "unset meant AL2 for an AWSNodeTemplate",
        );
    }
    let has_bdm = spec.get("blockDeviceMappings").is_some();
    ami_family(
        Some(family.unwrap_or("AL2")),
        terms,
        has_bdm,
        path,
        &mut out,
        notes,
    );
    for key in [
        "userData",
        "tags",
        "blockDeviceMappings",
        "detailedMonitoring",
        "context",
        "instanceStorePolicy",
        "associatePublicIPAddress",
    ] {
        if let Some(v) = rd.get(key) {
            out.insert(s(key), v.clone());
        }
    }
    match rd.get("instanceProfile") {
        Some(p) => {
            out.insert(s("instanceProfile"), p.clone());
            note(
                notes,
                NoteKind::Review,
                at("instanceProfile"),
                "kept; v1 can also manage the instance profile itself from `role` (the node IAM role's name)",
            );
        }
        None => note(
            notes,
            NoteKind::Review,
            at("role"),
            "an AWSNodeTemplate without instanceProfile used the controller's aws.defaultInstanceProfile setting; v1 needs spec.role (the node IAM role, e.g. KarpenterNodeRole-<cluster>) or spec.instanceProfile: set one",
        ),
    }
    if rd.get("launchTemplate").is_some() {
        note(
            notes,
            NoteKind::Dropped,
            at("launchTemplate"),
            "launch templates are not supported since v1beta1; not carried over: set amiSelectorTerms, userData, blockDeviceMappings and metadataOptions on the EC2NodeClass instead",
        );
    }
    out.insert(
        s("metadataOptions"),
        metadata_options(rd.get("metadataOptions"), path, notes),
    );
    rd.finish("a karpenter.k8s.aws/v1alpha1 AWSNodeTemplate's spec", notes);
    Ok(Value::Mapping(out))
}

/// One input file.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub name: String,
    pub text: String,
}

/// What converting one document of a file did.
#[derive(Debug, Clone, PartialEq)]
pub struct DocumentConversion {
    /// 0-based document index in the file.
    pub index: usize,
    pub first_line: usize,
    /// What was converted (`karpenter.sh/v1beta1 NodePool/default`, or `nodePools[0]: ...` in a
    /// scenario); empty for a document left as it was.
    pub subjects: Vec<Subject>,
    /// A YAML error that stopped the document from being read (left as it was).
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    /// `karpenter.sh/v1beta1 NodePool/default`.
    pub what: String,
    /// The path of the object in the document (`nodePools[0]` in a scenario; empty for a manifest).
    pub at: String,
    pub notes: Vec<Note>,
    /// Problems `kestrel validate` finds in the v1 output (`path: reason`).
    pub invalid: Vec<String>,
}

impl Subject {
    /// Whether this object needs a person before it is valid v1 (something dropped or invalid).
    pub fn needs_attention(&self) -> bool {
        !self.invalid.is_empty() || self.notes.iter().any(|n| n.kind == NoteKind::Dropped)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileConversion {
    pub name: String,
    /// The converted text: documents without older objects verbatim, the others rewritten as v1.
    pub text: String,
    pub documents: Vec<DocumentConversion>,
}

impl FileConversion {
    pub fn changed(&self) -> bool {
        self.documents.iter().any(|d| !d.subjects.is_empty())
    }
}

/// Where a converted object ends up: a manifest document, or a scenario's list.
struct Slot {
    file: usize,
    doc: usize,
    /// `None`: the document itself; `Some((list, i))`: entry `i` of the scenario's `list`.
    entry: Option<(&'static str, usize)>,
    scope: usize,
    converted: Converted,
}

/// Converts the older Karpenter objects in `files` to v1 (other documents are left exactly as written)
/// and moves NodePool kubelet settings onto the EC2NodeClasses they name when those are among the inputs
/// (manifests across all files; a scenario within itself).
pub fn convert_files(files: &[InputFile]) -> Vec<FileConversion> {
    struct Doc {
        first_line: usize,
        text: String,
        value: Option<Value>,
        error: Option<String>,
    }
    let mut docs: Vec<Vec<Doc>> = Vec::new();
    let mut slots: Vec<Slot> = Vec::new();
    let mut scope_count = 1; // scope 0: the manifests of all files
    for (fi, file) in files.iter().enumerate() {
        let mut file_docs = Vec::new();
        for (di, d) in split_documents(&file.text).into_iter().enumerate() {
            let (value, mut error) = match serde_yaml_ng::from_str::<Value>(&d.text) {
                Ok(v) => (Some(v), None),
                Err(e) => (None, Some(e.to_string())),
            };
            if let Some(v) = &value {
                // An older kind that cannot be read is reported on its document, not skipped.
                let old = |v: &Value| {
                    let field =
                        |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    Source::of(&field("apiVersion"), &field("kind"))
                        .map(|_| format!("{} {}", field("apiVersion"), field("kind")))
                };
                let mut failed = |what: String, e: MigrateError| {
                    error.get_or_insert_with(|| format!("{what} could not be converted: {e}"));
                };
                if let Some(what) = old(v) {
                    match convert_object(v) {
                        Ok(c) => slots.push(Slot {
                            file: fi,
                            doc: di,
                            entry: None,
                            scope: 0,
                            converted: c,
                        }),
                        Err(e) => failed(what, e),
                    }
                } else if v.get("apiVersion").is_none() && v.get("nodePools").is_some() {
                    let scope = scope_count;
                    scope_count += 1;
                    for list in ["nodePools", "nodeClasses"] {
                        for (i, entry) in v
                            .get(list)
                            .and_then(Value::as_sequence)
                            .into_iter()
                            .flatten()
                            .enumerate()
                        {
                            let Some(what) = old(entry) else { continue };
                            match convert_object(entry) {
                                Ok(c) => slots.push(Slot {
                                    file: fi,
                                    doc: di,
                                    entry: Some((list, i)),
                                    scope,
                                    converted: c,
                                }),
                                Err(e) => failed(format!("{list}[{i}] ({what})"), e),
                            }
                        }
                    }
                }
            }
            file_docs.push(Doc {
                first_line: d.first_line,
                text: d.text,
                value,
                error,
            });
        }
        docs.push(file_docs);
    }
    place_kubelets(
        &mut slots,
        &docs
            .iter()
            .map(|f| f.iter().map(|d| d.value.as_ref()).collect())
            .collect::<Vec<Vec<_>>>(),
    );

    let mut out = Vec::new();
    for (fi, file) in files.iter().enumerate() {
        let mut texts = Vec::new();
        let mut conversions = Vec::new();
        for (di, doc) in docs[fi].iter().enumerate() {
            let mine: Vec<&Slot> = slots
                .iter()
                .filter(|s| s.file == fi && s.doc == di)
                .collect();
            let mut subjects = Vec::new();
            let text = if mine.is_empty() {
                doc.text.clone()
            } else if mine[0].entry.is_none() {
                let c = &mine[0].converted;
                subjects.push(subject(c, ""));
                if c.objects.is_empty() {
                    doc.text.clone()
                } else {
                    c.objects
                        .iter()
                        .map(to_yaml)
                        .collect::<Vec<_>>()
                        .join("---\n")
                }
            } else {
                // A scenario: replace its entries, append extra node classes.
                let mut value = doc.value.clone().unwrap_or(Value::Null);
                let mut extra_classes = Vec::new();
                for slot in &mine {
                    let Some((list, i)) = slot.entry else {
                        continue;
                    };
                    let c = &slot.converted;
                    subjects.push(subject(c, &format!("{list}[{i}]")));
                    if let Some(first) = c.objects.first()
                        && let Some(entry) = value.get_mut(list).and_then(|l| l.get_mut(i))
                    {
                        *entry = first.clone();
                    }
                    extra_classes.extend(c.objects.iter().skip(1).cloned());
                }
                if !extra_classes.is_empty()
                    && let Some(root) = value.as_mapping_mut()
                {
                    let classes = root
                        .entry(s("nodeClasses"))
                        .or_insert_with(|| Value::Sequence(Vec::new()));
                    if let Value::Sequence(list) = classes {
                        list.extend(extra_classes);
                    }
                }
                to_yaml(&value)
            };
            texts.push(text);
            conversions.push(DocumentConversion {
                index: di,
                first_line: doc.first_line,
                subjects,
                error: doc.error.clone(),
            });
        }
        out.push(FileConversion {
            name: file.name.clone(),
            text: join_documents(&texts),
            documents: conversions,
        });
    }
    out
}

fn join_documents(texts: &[String]) -> String {
    let mut out = String::new();
    for (i, t) in texts.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(t);
        if !t.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

fn to_yaml(v: &Value) -> String {
    serde_yaml_ng::to_string(v).unwrap_or_default()
}

/// The notes of `c` and what `kestrel validate` says about its v1 output.
fn subject(c: &Converted, at: &str) -> Subject {
    let mut invalid = Vec::new();
    for object in &c.objects {
        for report in check_manifests(&to_yaml(object)) {
            if let Outcome::Invalid {
                kind,
                name,
                problems,
            } = report.outcome
            {
                for p in problems {
                    let path = if p.path.is_empty() {
                        String::new()
                    } else {
                        format!("{}: ", p.path)
                    };
                    invalid.push(format!("{kind}/{name}: {path}{}", p.reason));
                }
            }
        }
    }
    Subject {
        what: format!("{}/{}", c.from, c.name),
        at: at.to_string(),
        notes: c.notes.clone(),
        invalid,
    }
}

/// Moves each pending kubelet onto the v1 EC2NodeClass of its name in the same scope: converted ones,
/// and v1 ones already in the inputs (which are then rewritten too, by adding a slot for them).
fn place_kubelets(slots: &mut Vec<Slot>, docs: &[Vec<Option<&Value>>]) {
    let pending: Vec<(usize, PendingKubelet)> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.converted.kubelet.clone().map(|k| (i, k)))
        .collect();
    for (pool_slot, k) in pending {
        let scope = slots[pool_slot].scope;
        let pool_name = slots[pool_slot].converted.name.clone();
        // A converted EC2NodeClass of that name in scope?
        let target = slots.iter().enumerate().find_map(|(si, slot)| {
            (slot.scope == scope)
                .then(|| {
                    slot.converted.objects.iter().position(|o| {
                        o.get("kind").and_then(Value::as_str) == Some("EC2NodeClass")
                            && o.pointer_name() == Some(k.node_class.as_str())
                    })
                })
                .flatten()
                .map(|oi| (si, oi))
        });
        let target = target.or_else(|| adopt_v1_class(slots, docs, scope, &k.node_class));
        let Some((si, oi)) = target else {
            let block = serde_json::to_string(&k.kubelet).unwrap_or_default();
            note(
                &mut slots[pool_slot].converted.notes,
                NoteKind::Review,
                &k.path,
                format!(
                    "v1 keeps kubelet settings on the EC2NodeClass; EC2NodeClass/{} is not among the inputs: add `kubelet: {block}` to its spec (convert the NodePool and its EC2NodeClass together to have it moved)",
                    k.node_class
                ),
            );
            continue;
        };
        let existing = slots[si].converted.objects[oi]
            .get("spec")
            .and_then(|sp| sp.get("kubelet"))
            .cloned();
        match existing {
            Some(e) if e != k.kubelet => {
                note(
                    &mut slots[pool_slot].converted.notes,
                    NoteKind::Review,
                    &k.path,
                    format!(
                        "EC2NodeClass/{} already has different kubelet settings (from another NodePool, or its own): v1 has one kubelet per EC2NodeClass; give this NodePool an EC2NodeClass of its own with `kubelet: {}`",
                        k.node_class,
                        serde_json::to_string(&k.kubelet).unwrap_or_default()
                    ),
                );
            }
            Some(_) => {}
            None => {
                if let Some(spec) = slots[si].converted.objects[oi]
                    .get_mut("spec")
                    .and_then(Value::as_mapping_mut)
                {
                    let mut with = Mapping::new();
                    with.insert(s("kubelet"), k.kubelet.clone());
                    with.extend(std::mem::take(spec));
                    *spec = with;
                }
                note(
                    &mut slots[si].converted.notes,
                    NoteKind::Changed,
                    "spec.kubelet",
                    format!("the kubelet settings of NodePool/{pool_name} (v1 keeps them here)"),
                );
            }
        }
    }
}

/// A v1 EC2NodeClass already among the inputs, taken into a slot so it can receive a kubelet.
fn adopt_v1_class(
    slots: &mut Vec<Slot>,
    docs: &[Vec<Option<&Value>>],
    scope: usize,
    name: &str,
) -> Option<(usize, usize)> {
    let is_class = |v: &Value| {
        v.get("apiVersion").and_then(Value::as_str) == Some(V1_CLASS)
            && v.get("kind").and_then(Value::as_str) == Some("EC2NodeClass")
            && v.pointer_name() == Some(name)
    };
    let mut found = None;
    for (fi, file) in docs.iter().enumerate() {
        for (di, doc) in file.iter().enumerate() {
            let Some(doc) = doc else { continue };
            if scope == 0 && is_class(doc) {
                found = Some((fi, di, None, (*doc).clone()));
            } else if scope != 0
                && slots
                    .iter()
                    .any(|s| s.scope == scope && s.file == fi && s.doc == di)
            {
                for (i, entry) in doc
                    .get("nodeClasses")
                    .and_then(Value::as_sequence)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    if is_class(entry) {
                        found = Some((fi, di, Some(("nodeClasses", i)), entry.clone()));
                    }
                }
            }
            if found.is_some() {
                break;
            }
        }
        if found.is_some() {
            break;
        }
    }
    let (file, doc, entry, value) = found?;
    slots.push(Slot {
        file,
        doc,
        entry,
        scope,
        converted: Converted {
            source: Source::EC2NodeClassV1beta1,
            from: V1_CLASS.to_string() + " EC2NodeClass",
            name: name.to_string(),
            objects: vec![value],
            notes: Vec::new(),
            kubelet: None,
        },
    });
    Some((slots.len() - 1, 0))
}

trait NameOf {
    fn pointer_name(&self) -> Option<&str>;
}

impl NameOf for Value {
    fn pointer_name(&self) -> Option<&str> {
        self.get("metadata")?.get("name")?.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> InputFile {
        let path = format!(
            "{}/src/api/testdata/migrate/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        InputFile {
            name: name.into(),
            text: std::fs::read_to_string(&path).unwrap(),
        }
    }

    fn docs(text: &str) -> Vec<Value> {
        split_documents(text)
            .iter()
            .map(|d| serde_yaml_ng::from_str(&d.text).unwrap())
            .collect()
    }

    fn notes_of(c: &FileConversion) -> Vec<Note> {
        c.documents
            .iter()
            .flat_map(|d| d.subjects.iter().flat_map(|s| s.notes.clone()))
            .collect()
    }

    fn has_note(notes: &[Note], kind: NoteKind, path: &str, text: &str) -> bool {
        notes
            .iter()
            .any(|n| n.kind == kind && n.path == path && n.message.contains(text))
    }

    fn all_valid(text: &str) -> Vec<Outcome> {
        check_manifests(text)
            .into_iter()
            .map(|r| r.outcome)
            .filter(|o| !matches!(o, Outcome::Valid { .. }))
            .collect()
    }

    #[test]
    fn a_v1beta1_nodepool_of_the_articles_becomes_valid_v1() {
        let out = convert_files(&[testdata("v1beta1-nodepool.yaml")]);
        let text = &out[0].text;
        assert_eq!(all_valid(text), vec![], "{text}");
        let d = docs(text);
        let pool = &d[0];
        assert_eq!(pool["apiVersion"], s("karpenter.sh/v1"));
        assert_eq!(
            pool["spec"]["disruption"]["consolidationPolicy"],
            s("WhenEmptyOrUnderutilized")
        );
        assert_eq!(pool["spec"]["disruption"]["consolidateAfter"], s("0s"));
        assert!(pool["spec"]["disruption"].get("expireAfter").is_none());
        assert_eq!(pool["spec"]["template"]["spec"]["expireAfter"], s("720h"));
        let r = &pool["spec"]["template"]["spec"]["nodeClassRef"];
        assert_eq!(
            (&r["group"], &r["kind"], &r["name"]),
            (&s("karpenter.k8s.aws"), &s("EC2NodeClass"), &s("default"))
        );
        assert!(pool["spec"]["template"]["spec"].get("kubelet").is_none());
        // The kubelet moved onto the EC2NodeClass it names, which lost amiFamily for an alias.
        let class = &d[1];
        assert_eq!(class["apiVersion"], s("karpenter.k8s.aws/v1"));
        assert_eq!(
            class["spec"]["kubelet"]["maxPods"],
            Value::Number(110.into())
        );
        assert_eq!(
            class["spec"]["amiSelectorTerms"][0]["alias"],
            s("al2@latest")
        );
        assert!(class["spec"].get("amiFamily").is_none());
        assert_eq!(
            class["spec"]["metadataOptions"]["httpPutResponseHopLimit"],
            Value::Number(2.into())
        );
        let notes = notes_of(&out[0]);
        assert!(has_note(
            &notes,
            NoteKind::Changed,
            "spec.disruption.expireAfter",
            "spec.template.spec.expireAfter"
        ));
        assert!(has_note(
            &notes,
            NoteKind::Changed,
            "spec.disruption.consolidationPolicy",
            "WhenEmptyOrUnderutilized"
        ));
        assert!(has_note(
            &notes,
            NoteKind::Changed,
            "spec.template.spec.kubelet",
            "EC2NodeClass/default"
        ));
        assert!(has_note(&notes, NoteKind::Review, "spec.amiFamily", "pin"));
        assert!(
            !out[0]
                .documents
                .iter()
                .flat_map(|d| &d.subjects)
                .any(Subject::needs_attention)
        );
    }

    #[test]
    fn kubelet_goes_to_a_v1_class_among_the_inputs_and_conflicts_are_reported() {
        let pool = |name: &str, pods: u32| {
            format!(
                "apiVersion: karpenter.sh/v1beta1\nkind: NodePool\nmetadata: {{name: {name}}}\nspec:\n  template:\n    spec:\n      nodeClassRef: {{name: shared}}\n      kubelet: {{maxPods: {pods}}}\n"
            )
        };
        let class = "apiVersion: karpenter.k8s.aws/v1\nkind: EC2NodeClass\nmetadata: {name: shared}\nspec:\n  role: R\n  amiSelectorTerms: [{alias: al2023@latest}]\n  subnetSelectorTerms: [{tags: {a: b}}]\n  securityGroupSelectorTerms: [{tags: {a: b}}]\n";
        let files = [
            InputFile {
                name: "a.yaml".into(),
                text: format!("{}---\n{}", pool("a", 50), pool("b", 60)),
            },
            InputFile {
                name: "class.yaml".into(),
                text: class.into(),
            },
        ];
        let out = convert_files(&files);
        let class_out = docs(&out[1].text);
        assert_eq!(
            class_out[0]["spec"]["kubelet"]["maxPods"],
            Value::Number(50.into()),
            "{}",
            out[1].text
        );
        assert_eq!(all_valid(&out[1].text), vec![]);
        let notes = notes_of(&out[0]);
        assert!(
            has_note(
                &notes,
                NoteKind::Review,
                "spec.template.spec.kubelet",
                "different kubelet settings"
            ),
            "{notes:?}"
        );
        // Alone, the pool says where its kubelet must go.
        let out = convert_files(&[InputFile {
            name: "p.yaml".into(),
            text: pool("a", 50),
        }]);
        let notes = notes_of(&out[0]);
        assert!(
            has_note(
                &notes,
                NoteKind::Review,
                "spec.template.spec.kubelet",
                "add `kubelet: {\"maxPods\":50}`"
            ),
            "{notes:?}"
        );
    }

    #[test]
    fn an_aws_node_template_and_a_provisioner_become_an_ec2nodeclass_and_a_nodepool() {
        let out = convert_files(&[testdata("awsnodetemplate.yaml")]);
        let d = docs(&out[0].text);
        let class = &d[0];
        assert_eq!(
            (&class["apiVersion"], &class["kind"]),
            (&s("karpenter.k8s.aws/v1"), &s("EC2NodeClass"))
        );
        assert_eq!(
            class["spec"]["subnetSelectorTerms"][0]["tags"]["karpenter.sh/discovery"],
            s("my-cluster")
        );
        assert_eq!(
            class["spec"]["amiSelectorTerms"][0]["alias"],
            s("al2@latest")
        );
        assert_eq!(
            class["spec"]["kubelet"]["maxPods"],
            Value::Number(58.into())
        );
        let subjects: Vec<&Subject> = out[0].documents.iter().flat_map(|d| &d.subjects).collect();
        // The role cannot be carried over: said, and the output does not validate until it is set.
        assert!(has_note(
            &subjects[0].notes,
            NoteKind::Review,
            "spec.role",
            "aws.defaultInstanceProfile"
        ));
        assert!(
            subjects[0].invalid.iter().any(|p| p.contains("role")),
            "{:?}",
            subjects[0].invalid
        );
        assert!(subjects[0].needs_attention());
        assert!(has_note(
            &subjects[0].notes,
            NoteKind::Changed,
            "apiVersion",
            "only shipped as karpenter.k8s.aws/v1alpha1"
        ));

        let pool = &d[1];
        let t = &pool["spec"]["template"];
        assert_eq!(t["metadata"]["labels"]["team"], s("web"));
        assert_eq!(t["spec"]["expireAfter"], s("720h"));
        assert_eq!(t["spec"]["nodeClassRef"]["kind"], s("EC2NodeClass"));
        assert_eq!(
            pool["spec"]["disruption"]["consolidationPolicy"],
            s("WhenEmptyOrUnderutilized")
        );
        assert_eq!(pool["spec"]["limits"]["memory"], s("1000Gi"));
        let keys: Vec<&str> = t["spec"]["requirements"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|r| r["key"].as_str().unwrap())
            .collect();
        // v1alpha5's defaults are written out; the capacity type given is kept, not defaulted.
        assert_eq!(
            keys,
            [
                "karpenter.sh/capacity-type",
                "kubernetes.io/os",
                "kubernetes.io/arch",
                "karpenter.k8s.aws/instance-category",
                "karpenter.k8s.aws/instance-generation"
            ]
        );
        assert!(subjects[1].invalid.is_empty(), "{:?}", subjects[1].invalid);
        assert!(has_note(
            &subjects[1].notes,
            NoteKind::Changed,
            "spec.kubeletConfiguration.containerRuntime",
            "containerd"
        ));
    }

    #[test]
    fn a_provisioner_with_an_inline_provider_and_emptiness_ttl() {
        let text = "apiVersion: karpenter.sh/v1alpha5\nkind: Provisioner\nmetadata: {name: ci}\nspec:\n  ttlSecondsAfterEmpty: 30\n  provider:\n    instanceProfile: KarpenterNodeInstanceProfile\n    subnetSelector: {aws-ids: 'subnet-1, subnet-2'}\n    securityGroupSelector: {karpenter.sh/discovery: c}\n    amiFamily: Bottlerocket\n    launchTemplate: lt\n";
        let out = convert_files(&[InputFile {
            name: "p.yaml".into(),
            text: text.into(),
        }]);
        let d = docs(&out[0].text);
        assert_eq!(d.len(), 2, "{}", out[0].text);
        assert_eq!(
            d[0]["spec"]["disruption"]["consolidationPolicy"],
            s("WhenEmpty")
        );
        assert_eq!(d[0]["spec"]["disruption"]["consolidateAfter"], s("30s"));
        assert_eq!(d[0]["spec"]["template"]["spec"]["expireAfter"], s("Never"));
        assert_eq!(
            d[0]["spec"]["template"]["spec"]["nodeClassRef"]["name"],
            s("ci")
        );
        assert_eq!(d[1]["metadata"]["name"], s("ci"));
        assert_eq!(d[1]["spec"]["subnetSelectorTerms"][1]["id"], s("subnet-2"));
        assert_eq!(
            d[1]["spec"]["amiSelectorTerms"][0]["alias"],
            s("bottlerocket@latest")
        );
        assert_eq!(all_valid(&out[0].text), vec![], "{}", out[0].text);
        let notes = notes_of(&out[0]);
        assert!(has_note(
            &notes,
            NoteKind::Dropped,
            "spec.provider.launchTemplate",
            "not supported"
        ));
    }

    #[test]
    fn fields_in_no_karpenter_version_are_named_with_the_real_one() {
        let out = convert_files(&[testdata("v1beta1-when-empty.yaml")]);
        let notes = notes_of(&out[0]);
        assert!(
            has_note(
                &notes,
                NoteKind::Dropped,
                "spec.disruption.maxUnavailable",
                "budgets: [{nodes: \"5%\"}]"
            ),
            "{notes:?}"
        );
        assert!(out[0].documents[0].subjects[0].needs_attention());
        let d = docs(&out[0].text);
        assert_eq!(d[0]["spec"]["disruption"]["consolidateAfter"], s("30s"));
        assert_eq!(
            d[0]["spec"]["template"]["spec"]["nodeClassRef"]["group"],
            s("karpenter.k8s.aws")
        );
        assert_eq!(all_valid(&out[0].text), vec![]);
        // And validate says the same of a v1 NodePool carrying it.
        let v1 = "apiVersion: karpenter.sh/v1\nkind: NodePool\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: x}\n  disruption:\n    maxUnavailable: 5%\n";
        let Outcome::Invalid { problems, .. } = &check_manifests(v1)[0].outcome else {
            panic!()
        };
        assert!(
            problems[0].reason.contains("budgets: [{nodes: \"5%\"}]"),
            "{problems:?}"
        );
    }

    #[test]
    fn objects_that_cannot_be_read_are_reported_not_skipped() {
        let text =
            "apiVersion: karpenter.sh/v1beta1\nkind: NodePool\nmetadata: {name: p}\nspec: 5\n";
        let out = convert_files(&[InputFile {
            name: "p.yaml".into(),
            text: text.into(),
        }]);
        let e = out[0].documents[0].error.as_deref().unwrap_or("");
        assert!(
            e.contains(
                "karpenter.sh/v1beta1 NodePool could not be converted: `spec` is not a mapping"
            ),
            "{e}"
        );
        assert_eq!(out[0].text, text);
    }

    proptest::proptest! {
        /// Whatever is spliced into a real manifest, conversion answers (converted, or an error on the
        /// document) and never panics.
        #[test]
        fn conversion_never_panics(at in 0usize..4000, junk in "[ -~\n]{0,40}", which in 0usize..3) {
            let name = ["v1beta1-nodepool.yaml", "awsnodetemplate.yaml", "v1beta1-when-empty.yaml"][which];
            let mut text = testdata(name).text;
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.insert_str(at, &junk);
            let out = convert_files(&[InputFile { name: name.into(), text }]);
            proptest::prop_assert_eq!(out.len(), 1);
        }
    }

    #[test]
    fn other_documents_are_left_exactly_as_written() {
        let text = "# keep me\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}  # and me\n";
        let out = convert_files(&[InputFile {
            name: "c.yaml".into(),
            text: text.into(),
        }]);
        assert_eq!(out[0].text, text);
        assert!(!out[0].changed());
        let out = convert_files(&[InputFile {
            name: "bad.yaml".into(),
            text: "a: [\n".into(),
        }]);
        assert!(out[0].documents[0].error.is_some());
        assert_eq!(out[0].text, "a: [\n");
    }
}
