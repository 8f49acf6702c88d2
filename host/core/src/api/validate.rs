//! Semantic validation of NodePools, NodeClaims and EC2NodeClasses, with errors that name the field
//! (`spec.template.spec.requirements[2].values`) and say what is wrong. It covers what Karpenter's CRD
//! schema and CEL rules enforce, so `kestrel validate` rejects what the API server would.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;

use super::budget::{BudgetNodes, BudgetSchedule};
use super::common::{NodeClassReference, NodeSelectorRequirementWithMinValues, Operator};
use super::duration::{DurationShape, check_karpenter_duration, parse_duration};
use super::ec2nodeclass::{
    AMIFamily, AMISelectorTerm, BlockDeviceMapping, EC2NodeClassSpec, KubeletConfiguration,
};
use super::labels;
use super::nodeclaim::NodeClaimSpec;
use super::nodepool::{Budget, NodePoolSpec};
use super::{EC2NodeClass, NodeClaim, NodePool};
use crate::model::quantity::Quantity;

/// One problem with one field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct FieldError {
    /// Dotted path from the document root, with `[i]` for list items and `["key"]` for map keys
    /// that are not plain words.
    pub path: String,
    pub reason: String,
}

/// Every problem found in one object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

// Every check below is the one path both `kestrel validate` and the scenario checker
// (`sim::scenario`) go through: metadata as the API server checks it, then the spec as Karpenter's CRD
// schema and CEL rules check it.

impl NodePool {
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = validate_object_meta(&self.metadata);
        errors.extend(validate_nodepool_spec(&self.spec));
        into_result(errors)
    }
}

impl NodeClaim {
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = validate_object_meta(&self.metadata);
        errors.extend(validate_nodeclaim_spec(&self.spec));
        into_result(errors)
    }
}

impl EC2NodeClass {
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = validate_object_meta(&self.metadata);
        errors.extend(validate_ec2nodeclass_spec(&self.spec));
        into_result(errors)
    }
}

/// The most bytes an object's annotations (keys and values together) may hold: the API server's
/// `TotalAnnotationSizeLimitB`.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;
/// The longest object name the API server accepts (a DNS-1123 subdomain).
pub const MAX_NAME_LEN: usize = 253;

/// `metadata` as the API server checks it for a cluster-scoped custom resource: a name (or
/// generateName) that is a DNS-1123 subdomain, label keys and values, annotation keys, and at most
/// [`MAX_ANNOTATIONS_BYTES`] of annotations.
pub fn validate_object_meta(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Vec<FieldError> {
    let mut e = Errors::default();
    match (&meta.name, &meta.generate_name) {
        (Some(name), _) => {
            if let Err(reason) = check_dns_subdomain(name) {
                e.add("metadata.name", reason);
            }
        }
        (None, Some(prefix)) => {
            // The API server appends 5 characters to the prefix.
            let trimmed = prefix.trim_end_matches('-');
            if let Err(reason) =
                check_dns_subdomain(if trimmed.is_empty() { prefix } else { trimmed }).and_then(
                    |()| {
                        (prefix.len() + 5 <= MAX_NAME_LEN)
                            .then_some(())
                            .ok_or_else(|| format!("at most {} characters", MAX_NAME_LEN - 5))
                    },
                )
            {
                e.add("metadata.generateName", reason);
            }
        }
        (None, None) => e.add("metadata.name", "required"),
    }
    if let Some(labels) = &meta.labels {
        for (key, value) in labels {
            let p = key_path("metadata.labels", key);
            if let Err(reason) = labels::check_key(key) {
                e.add(&p, reason);
            }
            if let Err(reason) = labels::check_value(value) {
                e.add(&p, reason);
            }
        }
    }
    if let Some(annotations) = &meta.annotations {
        let mut total = 0usize;
        for (key, value) in annotations {
            total = total.saturating_add(key.len()).saturating_add(value.len());
            if let Err(reason) = labels::check_key(key) {
                e.add(
                    key_path("metadata.annotations", key),
                    reason.replace("label key", "annotation key"),
                );
            }
        }
        if total > MAX_ANNOTATIONS_BYTES {
            e.add(
                "metadata.annotations",
                format!(
                    "annotations hold {total} bytes, over the API server's limit of {MAX_ANNOTATIONS_BYTES} bytes"
                ),
            );
        }
    }
    e.0
}

/// A DNS-1123 subdomain: at most 253 characters, lowercase alphanumerics, '-' and '.', starting and
/// ending alphanumeric (what the API server requires of a custom resource's name).
pub fn check_dns_subdomain(name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    if b.is_empty() {
        return Err("must not be empty".into());
    }
    if b.len() > MAX_NAME_LEN {
        return Err(format!(
            "at most {MAX_NAME_LEN} characters (a DNS-1123 subdomain), got {}",
            b.len()
        ));
    }
    let ok = b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        let shown: String = name.chars().take(80).collect();
        Err(format!(
            "{shown:?} is not a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        ))
    }
}

fn into_result(errors: Vec<FieldError>) -> Result<(), ValidationErrors> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

/// `base.key`, or `base["key"]` when the key is not a plain word (label keys, resource names).
pub fn key_path(base: &str, key: &str) -> String {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        format!("{base}.{key}")
    } else {
        format!("{base}[{key:?}]")
    }
}

/// Collects errors under paths.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            reason: reason.into(),
        });
    }
}

pub fn validate_nodepool_spec(spec: &NodePoolSpec) -> Vec<FieldError> {
    let mut e = Errors::default();
    let t = "spec.template";
    if let Some(meta) = &spec.template.metadata {
        labels_map(&mut e, &format!("{t}.metadata.labels"), &meta.labels);
        for key in meta.annotations.keys() {
            if let Err(reason) = labels::check_key(key) {
                e.add(
                    key_path(&format!("{t}.metadata.annotations"), key),
                    reason.replace("label key", "annotation key"),
                );
            }
        }
    }
    let s = format!("{t}.spec");
    taints(&mut e, &format!("{s}.taints"), &spec.template.spec.taints);
    taints(
        &mut e,
        &format!("{s}.startupTaints"),
        &spec.template.spec.startup_taints,
    );
    requirements(
        &mut e,
        &format!("{s}.requirements"),
        &spec.template.spec.requirements,
    );
    node_class_ref(
        &mut e,
        &format!("{s}.nodeClassRef"),
        &spec.template.spec.node_class_ref,
    );
    duration_field(
        &mut e,
        &format!("{s}.expireAfter"),
        spec.template.spec.expire_after.as_deref(),
        DurationShape::SecondsMinutesHoursOrNever,
    );
    duration_field(
        &mut e,
        &format!("{s}.terminationGracePeriod"),
        spec.template.spec.termination_grace_period.as_deref(),
        DurationShape::SecondsMinutesHours,
    );
    if let Some(d) = &spec.disruption {
        duration_field(
            &mut e,
            "spec.disruption.consolidateAfter",
            d.consolidate_after.as_deref(),
            DurationShape::SecondsMinutesHoursOrNever,
        );
        if let Some(budgets) = &d.budgets {
            if budgets.len() > 50 {
                e.add(
                    "spec.disruption.budgets",
                    format!("at most 50 budgets, got {}", budgets.len()),
                );
            }
            for (i, b) in budgets.iter().enumerate() {
                budget(&mut e, &format!("spec.disruption.budgets[{i}]"), b);
            }
        }
    }
    if let Some(limits) = &spec.limits {
        resource_list(&mut e, "spec.limits", limits);
    }
    if let Some(w) = spec.weight
        && !(1..=100).contains(&w)
    {
        e.add("spec.weight", format!("must be between 1 and 100, got {w}"));
    }
    e.0
}

pub fn validate_nodeclaim_spec(spec: &NodeClaimSpec) -> Vec<FieldError> {
    let mut e = Errors::default();
    taints(&mut e, "spec.taints", &spec.taints);
    taints(&mut e, "spec.startupTaints", &spec.startup_taints);
    requirements(&mut e, "spec.requirements", &spec.requirements);
    node_class_ref(&mut e, "spec.nodeClassRef", &spec.node_class_ref);
    if let Some(requests) = spec.resources.as_ref().and_then(|r| r.requests.as_ref()) {
        resource_list(&mut e, "spec.resources.requests", requests);
    }
    duration_field(
        &mut e,
        "spec.expireAfter",
        spec.expire_after.as_deref(),
        DurationShape::SecondsMinutesHoursOrNever,
    );
    duration_field(
        &mut e,
        "spec.terminationGracePeriod",
        spec.termination_grace_period.as_deref(),
        DurationShape::SecondsMinutesHours,
    );
    e.0
}

fn labels_map(e: &mut Errors, path: &str, map: &BTreeMap<String, String>) {
    for (key, value) in map {
        let p = key_path(path, key);
        if let Err(reason) = labels::check_key(key) {
            e.add(&p, reason);
        } else if let Some(reason) = labels::restriction(key) {
            e.add(&p, reason);
        }
        if let Err(reason) = labels::check_value(value) {
            e.add(&p, reason);
        }
    }
}

fn taints(e: &mut Errors, path: &str, taints: &[Taint]) {
    for (i, t) in taints.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if let Err(reason) = labels::check_key(&t.key) {
            e.add(format!("{p}.key"), reason.replace("label key", "taint key"));
        }
        if let Some(v) = &t.value
            && let Err(reason) = labels::check_value(v)
        {
            e.add(
                format!("{p}.value"),
                reason.replace("label value", "taint value"),
            );
        }
        if !matches!(
            t.effect.as_str(),
            "NoSchedule" | "PreferNoSchedule" | "NoExecute"
        ) {
            e.add(
                format!("{p}.effect"),
                format!(
                    "must be one of NoSchedule, PreferNoSchedule, NoExecute, got {:?}",
                    t.effect
                ),
            );
        }
    }
}

fn requirements(e: &mut Errors, path: &str, reqs: &[NodeSelectorRequirementWithMinValues]) {
    if reqs.len() > 100 {
        e.add(
            path,
            format!("at most 100 requirements, got {}", reqs.len()),
        );
    }
    for (i, r) in reqs.iter().enumerate() {
        requirement(e, &format!("{path}[{i}]"), r);
    }
}

fn requirement(e: &mut Errors, p: &str, r: &NodeSelectorRequirementWithMinValues) {
    match labels::check_key(&r.key) {
        Err(reason) => e.add(format!("{p}.key"), reason),
        Ok(()) => {
            if let Some(reason) = labels::restriction(&r.key) {
                e.add(format!("{p}.key"), reason);
            }
        }
    }
    let values = format!("{p}.values");
    let op = r.operator;
    match op {
        Operator::In if r.values.is_empty() => {
            e.add(&values, "operator In needs at least one value");
        }
        Operator::Exists | Operator::DoesNotExist if !r.values.is_empty() => {
            e.add(
                &values,
                format!("operator {op} takes no values, got {:?}", r.values),
            );
        }
        Operator::Gt | Operator::Lt => {
            let one_integer = r.values.len() == 1 && r.values[0].parse::<u64>().is_ok();
            if !one_integer {
                e.add(
                    &values,
                    format!(
                        "operator {op} needs exactly one non-negative integer value, got {:?}",
                        r.values
                    ),
                );
            }
        }
        _ => {}
    }
    if matches!(op, Operator::In | Operator::NotIn) {
        for (j, v) in r.values.iter().enumerate() {
            if let Err(reason) = labels::check_value(v) {
                e.add(format!("{values}[{j}]"), reason);
            }
        }
    }
    if let Some(min) = r.min_values {
        let mp = format!("{p}.minValues");
        if !(1..=50).contains(&min) {
            e.add(&mp, format!("must be between 1 and 50, got {min}"));
        } else if op == Operator::In && (r.values.len() as i64) < min {
            e.add(
                &mp,
                format!(
                    "minValues {min} needs at least that many values for operator In, got {}",
                    r.values.len()
                ),
            );
        }
    }
}

fn node_class_ref(e: &mut Errors, p: &str, r: &NodeClassReference) {
    for (field, value) in [("group", &r.group), ("kind", &r.kind), ("name", &r.name)] {
        if value.is_empty() {
            e.add(format!("{p}.{field}"), "must not be empty");
        }
    }
    if r.group.contains('/') {
        e.add(
            format!("{p}.group"),
            format!(
                "a group has no '/', got {:?} (the version is not part of it)",
                r.group
            ),
        );
    }
}

fn duration_field(e: &mut Errors, path: &str, value: Option<&str>, shape: DurationShape) {
    if let Some(v) = value
        && let Err(err) = check_karpenter_duration(v, shape)
    {
        e.add(path, format!("{:?}: {}", v, err.reason));
    }
}

fn budget(e: &mut Errors, p: &str, b: &Budget) {
    if let Err(err) = BudgetNodes::parse(&b.nodes) {
        e.add(
            format!("{p}.nodes"),
            format!("{:?}: {}", b.nodes, err.reason),
        );
    }
    match (&b.schedule, &b.duration) {
        (Some(_), None) => e.add(
            format!("{p}.duration"),
            "a budget with a schedule needs a duration",
        ),
        (None, Some(_)) => e.add(
            format!("{p}.schedule"),
            "a budget with a duration needs a schedule",
        ),
        _ => {}
    }
    if let Some(s) = &b.schedule
        && let Err(err) = BudgetSchedule::parse(s)
    {
        e.add(format!("{p}.schedule"), err.to_string());
    }
    duration_field(
        e,
        &format!("{p}.duration"),
        b.duration.as_deref(),
        DurationShape::HoursMinutes,
    );
}

fn resource_list(e: &mut Errors, path: &str, list: &BTreeMap<String, K8sQuantity>) {
    for (name, q) in list {
        let p = key_path(path, name);
        match Quantity::parse(&q.0) {
            Err(err) => e.add(p, format!("{:?}: {}", q.0, err.reason)),
            Ok(v) if v < Quantity::ZERO => e.add(p, format!("must not be negative, got {:?}", q.0)),
            Ok(_) => {}
        }
    }
}

// ---------------------------------------------------------------- EC2NodeClass

const RESTRICTED_TAG_PREFIXES: &[&str] = &["kubernetes.io/cluster/"];
const RESTRICTED_TAGS: &[&str] = &[
    "karpenter.sh/nodepool",
    "karpenter.sh/nodeclaim",
    "karpenter.k8s.aws/ec2nodeclass",
    "eks:eks-cluster-name",
];

pub fn validate_ec2nodeclass_spec(spec: &EC2NodeClassSpec) -> Vec<FieldError> {
    let mut e = Errors::default();
    selector_terms(&mut e, spec);
    ami_terms(&mut e, spec);
    match (&spec.role, &spec.instance_profile) {
        (Some(_), Some(_)) | (None, None) => e.add(
            "spec",
            "must specify exactly one of role and instanceProfile",
        ),
        (Some(r), None) if r.is_empty() => e.add("spec.role", "must not be empty"),
        (None, Some(p)) if p.is_empty() => e.add("spec.instanceProfile", "must not be empty"),
        _ => {}
    }
    for (key, value) in &spec.tags {
        let p = key_path("spec.tags", key);
        if key.is_empty() || value.is_empty() {
            e.add(&p, "empty tag keys or values are not supported");
        }
        if RESTRICTED_TAGS.contains(&key.as_str())
            || RESTRICTED_TAG_PREFIXES
                .iter()
                .any(|pre| key.starts_with(pre))
        {
            e.add(&p, format!("tag {key:?} is restricted: Kestrel sets it"));
        }
    }
    if let Some(k) = &spec.kubelet {
        kubelet(&mut e, "spec.kubelet", k);
    }
    block_devices(&mut e, &spec.block_device_mappings);
    if let Some(m) = &spec.metadata_options
        && let Some(h) = m.http_put_response_hop_limit
        && !(1..=64).contains(&h)
    {
        e.add(
            "spec.metadataOptions.httpPutResponseHopLimit",
            format!("must be between 1 and 64, got {h}"),
        );
    }
    e.0
}

fn tags(e: &mut Errors, path: &str, tags: &BTreeMap<String, String>) {
    for (k, v) in tags {
        if k.is_empty() || v.is_empty() {
            e.add(
                key_path(path, k),
                "empty tag keys or values are not supported",
            );
        }
    }
}

fn selector_terms(e: &mut Errors, spec: &EC2NodeClassSpec) {
    let p = "spec.subnetSelectorTerms";
    if spec.subnet_selector_terms.is_empty() {
        e.add(p, "at least one term is required");
    }
    for (i, t) in spec.subnet_selector_terms.iter().enumerate() {
        let tp = format!("{p}[{i}]");
        tags(e, &format!("{tp}.tags"), &t.tags);
        match (&t.id, t.tags.is_empty()) {
            (None, true) => e.add(&tp, "a term needs tags or id"),
            (Some(_), false) => e.add(&tp, "id is exclusive: a term with id has no other fields"),
            _ => {}
        }
        id_prefix(e, &format!("{tp}.id"), t.id.as_deref(), "subnet-");
    }
    let p = "spec.securityGroupSelectorTerms";
    if spec.security_group_selector_terms.is_empty() {
        e.add(p, "at least one term is required");
    }
    for (i, t) in spec.security_group_selector_terms.iter().enumerate() {
        let tp = format!("{p}[{i}]");
        tags(e, &format!("{tp}.tags"), &t.tags);
        let set = usize::from(!t.tags.is_empty())
            + usize::from(t.id.is_some())
            + usize::from(t.name.is_some());
        if set == 0 {
            e.add(&tp, "a term needs tags, id or name");
        } else if set > 1 && t.id.is_some() {
            e.add(&tp, "id is exclusive: a term with id has no other fields");
        } else if set > 1 && t.name.is_some() {
            e.add(
                &tp,
                "name is exclusive: a term with name has no other fields",
            );
        }
        id_prefix(e, &format!("{tp}.id"), t.id.as_deref(), "sg-");
    }
    let p = "spec.capacityReservationSelectorTerms";
    for (i, t) in spec.capacity_reservation_selector_terms.iter().enumerate() {
        let tp = format!("{p}[{i}]");
        tags(e, &format!("{tp}.tags"), &t.tags);
        if t.id.is_none() && t.tags.is_empty() {
            e.add(&tp, "a term needs tags or id");
        } else if t.id.is_some() && (!t.tags.is_empty() || t.owner_id.is_some()) {
            e.add(&tp, "id is exclusive: a term with id has no other fields");
        }
        if let Some(owner) = &t.owner_id
            && (owner.len() != 12 || !owner.bytes().all(|b| b.is_ascii_digit()))
        {
            e.add(
                format!("{tp}.ownerID"),
                format!("must be a 12-digit AWS account id, got {owner:?}"),
            );
        }
        id_prefix(e, &format!("{tp}.id"), t.id.as_deref(), "cr-");
    }
}

fn id_prefix(e: &mut Errors, path: &str, id: Option<&str>, prefix: &str) {
    if let Some(id) = id {
        let rest = id.strip_prefix(prefix).unwrap_or("");
        if rest.is_empty()
            || !rest
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        {
            e.add(path, format!("expected {prefix}<hex>, got {id:?}"));
        }
    }
}

fn ami_terms(e: &mut Errors, spec: &EC2NodeClassSpec) {
    let p = "spec.amiSelectorTerms";
    let terms = &spec.ami_selector_terms;
    if terms.is_empty() {
        e.add(p, "at least one term is required");
    }
    let mut alias_family = None;
    for (i, t) in terms.iter().enumerate() {
        let tp = format!("{p}[{i}]");
        tags(e, &format!("{tp}.tags"), &t.tags);
        let others = usize::from(!t.tags.is_empty())
            + usize::from(t.id.is_some())
            + usize::from(t.name.is_some())
            + usize::from(t.owner.is_some())
            + usize::from(t.ssm_parameter.is_some());
        if let Some(alias) = &t.alias {
            if others > 0 || terms.len() > 1 {
                e.add(
                    format!("{tp}.alias"),
                    "alias is exclusive: it cannot be combined with other fields or other amiSelectorTerms",
                );
            }
            match check_alias(alias) {
                Ok(family) => alias_family = Some(family),
                Err(reason) => e.add(format!("{tp}.alias"), reason),
            }
        } else if others == 0 || (others == 1 && t.owner.is_some()) {
            e.add(&tp, "a term needs alias, tags, id, name or ssmParameter");
        } else if t.id.is_some() && others > 1 {
            e.add(&tp, "id is exclusive: a term with id has no other fields");
        }
        id_prefix(e, &format!("{tp}.id"), t.id.as_deref(), "ami-");
    }
    match (spec.ami_family, alias_family) {
        (None, None) if !terms.is_empty() && terms.iter().all(|t| t.alias.is_none()) => e.add(
            "spec.amiFamily",
            "required when amiSelectorTerms has no alias (one of AL2, AL2023, Bottlerocket, Custom, Windows2019, Windows2022)",
        ),
        (Some(family), Some(from_alias)) if family != from_alias => e.add(
            "spec.amiFamily",
            format!("{family:?} does not match the alias family {from_alias:?}; leave amiFamily unset with an alias"),
        ),
        _ => {}
    }
}

/// `al2023@latest`, `al2@v20240807`, `bottlerocket@v1.20.3`, `windows2022@latest`.
fn check_alias(alias: &str) -> Result<AMIFamily, String> {
    let Some((family_name, version)) = AMISelectorTerm {
        alias: Some(alias.to_string()),
        ..Default::default()
    }
    .alias_parts()
    .map(|(f, v)| (f.to_string(), v.to_string())) else {
        return Err(format!(
            "expected <family>@<version> (e.g. al2023@latest), got {alias:?}"
        ));
    };
    if alias.len() > 30 {
        return Err(format!("at most 30 characters, got {alias:?}"));
    }
    let family = AMIFamily::from_alias_family(&family_name).ok_or_else(|| {
        format!("unknown family {family_name:?} in {alias:?} (al2, al2023, bottlerocket, windows2019, windows2022)")
    })?;
    let windows = matches!(family, AMIFamily::Windows2019 | AMIFamily::Windows2022);
    let pinned = version
        .strip_prefix('v')
        .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
    if version == "latest" || (pinned && !windows) {
        Ok(family)
    } else if windows {
        Err(format!(
            "Windows families only support version \"latest\", got {alias:?}"
        ))
    } else {
        Err(format!(
            "version must be \"latest\" or a pinned version like v20240807 (AL2/AL2023) or v1.20.3 (Bottlerocket), got {version:?}"
        ))
    }
}

const RESERVED_KEYS: &[&str] = &["cpu", "memory", "ephemeral-storage", "pid"];
const EVICTION_SIGNALS: &[&str] = &[
    "memory.available",
    "nodefs.available",
    "nodefs.inodesFree",
    "imagefs.available",
    "imagefs.inodesFree",
    "pid.available",
];

/// A map key that must be one of `allowed` (the kubelet's resource names or eviction signals).
fn known_key(e: &mut Errors, path: &str, key: &str, allowed: &[&str], what: &str) {
    if !allowed.contains(&key) {
        e.add(
            path,
            format!("unknown {what} {key:?} (one of {})", allowed.join(", ")),
        );
    }
}

fn kubelet(e: &mut Errors, p: &str, k: &KubeletConfiguration) {
    for (field, map) in [
        ("systemReserved", &k.system_reserved),
        ("kubeReserved", &k.kube_reserved),
    ] {
        for (key, value) in map {
            let kp = key_path(&format!("{p}.{field}"), key);
            known_key(e, &kp, key, RESERVED_KEYS, "resource");
            quantity_value(e, &kp, value);
        }
    }
    for (field, map) in [
        ("evictionHard", &k.eviction_hard),
        ("evictionSoft", &k.eviction_soft),
    ] {
        for (key, value) in map {
            let kp = key_path(&format!("{p}.{field}"), key);
            known_key(e, &kp, key, EVICTION_SIGNALS, "eviction signal");
            match value.strip_suffix('%') {
                Some(pct) => match pct.parse::<f64>() {
                    Ok(x) if (0.0..=100.0).contains(&x) => {}
                    _ => e.add(
                        &kp,
                        format!("a percentage must be between 0% and 100%, got {value:?}"),
                    ),
                },
                None => quantity_value(e, &kp, value),
            }
        }
    }
    for (key, value) in &k.eviction_soft_grace_period {
        let kp = key_path(&format!("{p}.evictionSoftGracePeriod"), key);
        known_key(e, &kp, key, EVICTION_SIGNALS, "eviction signal");
        if let Err(err) = parse_duration(value) {
            e.add(&kp, format!("{value:?}: {}", err.reason));
        }
        if !k.eviction_soft.contains_key(key) {
            e.add(
                &kp,
                format!("a grace period for {key:?} needs a matching evictionSoft threshold"),
            );
        }
    }
    for key in k.eviction_soft.keys() {
        if !k.eviction_soft_grace_period.contains_key(key) {
            e.add(
                key_path(&format!("{p}.evictionSoft"), key),
                format!("a soft threshold needs a matching evictionSoftGracePeriod for {key:?}"),
            );
        }
    }
    for (field, v) in [
        ("maxPods", k.max_pods),
        ("podsPerCore", k.pods_per_core),
        ("evictionMaxPodGracePeriod", k.eviction_max_pod_grace_period),
    ] {
        if let Some(v) = v.filter(|v| *v < 0) {
            e.add(
                format!("{p}.{field}"),
                format!("must not be negative, got {v}"),
            );
        }
    }
    for (field, v) in [
        (
            "imageGCHighThresholdPercent",
            k.image_gc_high_threshold_percent,
        ),
        (
            "imageGCLowThresholdPercent",
            k.image_gc_low_threshold_percent,
        ),
    ] {
        if let Some(v) = v.filter(|v| !(0..=100).contains(v)) {
            e.add(
                format!("{p}.{field}"),
                format!("must be between 0 and 100, got {v}"),
            );
        }
    }
    if let (Some(high), Some(low)) = (
        k.image_gc_high_threshold_percent,
        k.image_gc_low_threshold_percent,
    ) && low >= high
    {
        e.add(
            format!("{p}.imageGCLowThresholdPercent"),
            format!("must be lower than imageGCHighThresholdPercent ({high}), got {low}"),
        );
    }
    for (i, ip) in k.cluster_dns.iter().enumerate() {
        if ip.parse::<std::net::IpAddr>().is_err() {
            e.add(
                format!("{p}.clusterDNS[{i}]"),
                format!("not an IP address: {ip:?}"),
            );
        }
    }
}

fn quantity_value(e: &mut Errors, path: &str, value: &str) {
    match Quantity::parse(value) {
        Err(err) => e.add(path, format!("{value:?}: {}", err.reason)),
        Ok(q) if q < Quantity::ZERO => e.add(path, format!("must not be negative, got {value:?}")),
        Ok(_) => {}
    }
}

fn block_devices(e: &mut Errors, mappings: &[BlockDeviceMapping]) {
    let p = "spec.blockDeviceMappings";
    let roots = mappings.iter().filter(|m| m.root_volume).count();
    if roots > 1 {
        e.add(
            p,
            format!("at most one mapping may set rootVolume, got {roots}"),
        );
    }
    let max_size = Quantity::parse("64Ti").expect("constant");
    for (i, m) in mappings.iter().enumerate() {
        let mp = format!("{p}[{i}]");
        if m.device_name.as_deref().is_none_or(str::is_empty) {
            e.add(format!("{mp}.deviceName"), "required (e.g. /dev/xvda)");
        }
        let Some(ebs) = &m.ebs else {
            e.add(format!("{mp}.ebs"), "required");
            continue;
        };
        if let Some(size) = &ebs.volume_size {
            let sp = format!("{mp}.ebs.volumeSize");
            match Quantity::parse(size) {
                Err(err) => e.add(sp, format!("{size:?}: {}", err.reason)),
                Ok(q) if q <= Quantity::ZERO || q > max_size => e.add(
                    sp,
                    format!("must be more than 0 and at most 64Ti, got {size:?}"),
                ),
                Ok(_) => {}
            }
        }
        if ebs.volume_size.is_none() && ebs.snapshot_id.is_none() {
            e.add(format!("{mp}.ebs"), "needs volumeSize or snapshotID");
        }
        if let Some(iops) = ebs.iops.filter(|v| !(100..=256_000).contains(v)) {
            e.add(
                format!("{mp}.ebs.iops"),
                format!("must be between 100 and 256000, got {iops}"),
            );
        }
        if let Some(t) = ebs.throughput.filter(|v| !(125..=2000).contains(v)) {
            e.add(
                format!("{mp}.ebs.throughput"),
                format!("must be between 125 and 2000 MiB/s, got {t}"),
            );
        }
    }
}

// ---------------------------------------------------------------- unknown fields

/// Fields of Kubernetes' ObjectMeta a manifest may set.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
    "ownerReferences",
    "managedFields",
    "selfLink",
];

/// Every field of `doc` the CRD `schema` (an `openAPIV3Schema` as JSON) does not define, so a typo is
/// reported instead of silently dropped.
pub fn unknown_fields(doc: &serde_json::Value, schema: &serde_json::Value) -> Vec<FieldError> {
    let mut e = Errors::default();
    walk(&mut e, "", doc, schema);
    if let Some(meta) = doc.get("metadata").and_then(|m| m.as_object()) {
        for key in meta.keys() {
            if !OBJECT_META_FIELDS.contains(&key.as_str()) {
                e.add(key_path("metadata", key), "unknown field");
            }
        }
    }
    e.0
}

fn walk(e: &mut Errors, path: &str, value: &serde_json::Value, schema: &serde_json::Value) {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            key_path(path, key)
        }
    };
    match value {
        serde_json::Value::Object(map) => {
            if schema.get("x-kubernetes-preserve-unknown-fields")
                == Some(&serde_json::Value::Bool(true))
            {
                return;
            }
            if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
                for (key, child) in map {
                    // The CRD schema leaves the envelope to the API server.
                    if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata")
                    {
                        continue;
                    }
                    match props.get(key) {
                        Some(child_schema) => walk(e, &join(key), child, child_schema),
                        None => {
                            let known: Vec<&str> = props.keys().map(String::as_str).collect();
                            e.add(
                                join(key),
                                format!("unknown field (expected one of: {})", known.join(", ")),
                            );
                        }
                    }
                }
            } else if let Some(values) = schema.get("additionalProperties") {
                for (key, child) in map {
                    walk(e, &join(key), child, values);
                }
            }
        }
        serde_json::Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(e, &format!("{path}[{i}]"), item, item_schema);
                }
            }
        }
        _ => {}
    }
}
