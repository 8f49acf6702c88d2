//! The requirements algebra: Kubernetes node-selector operators over label values, as Karpenter uses them.
//!
//! A [`Requirement`] is what a manifest says (`key`, `operator`, `values`, `minValues`). For reasoning,
//! each key's requirements are folded into a [`ValueSet`]: a set of allowed values, possibly complemented
//! ("anything but"), with optional integer bounds (`Gt`/`Lt`). Intersection of two sets is exact, so a
//! NodePool's requirements, a pod's affinity term and an instance type's labels can be combined and
//! checked for compatibility without enumerating values.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::label_map::LabelLookup;
use super::labels;

/// The operator of a node selector requirement.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

impl Operator {
    pub fn parse(s: &str) -> Option<Operator> {
        Some(match s {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            "Gt" => Operator::Gt,
            "Lt" => Operator::Lt,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
            Operator::Gt => "Gt",
            Operator::Lt => "Lt",
        }
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One requirement as written in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    pub values: Vec<String>,
    /// Karpenter's `minValues`: the launch must keep at least this many distinct values of `key` open.
    pub min_values: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequirementError {
    #[error("requirement on {key:?}: unknown operator {operator:?}")]
    UnknownOperator { key: String, operator: String },
    #[error("requirement on {key:?}: operator {operator} needs at least one value")]
    MissingValues { key: String, operator: Operator },
    #[error("requirement on {key:?}: operator {operator} takes no values")]
    UnexpectedValues { key: String, operator: Operator },
    #[error(
        "requirement on {key:?}: operator {operator} takes exactly one integer value, got {values:?}"
    )]
    NotOneInteger {
        key: String,
        operator: Operator,
        values: Vec<String>,
    },
    #[error("requirement on {key:?}: minValues {min} exceeds the {count} values listed")]
    MinValuesTooLarge { key: String, min: u32, count: usize },
}

impl Requirement {
    /// A validated requirement (the Kubernetes rules for values per operator).
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, RequirementError> {
        let key = key.into();
        let values: Vec<String> = values.into_iter().map(Into::into).collect();
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(RequirementError::MissingValues { key, operator });
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(RequirementError::UnexpectedValues { key, operator });
            }
            Operator::Gt | Operator::Lt
                if values.len() != 1 || values[0].parse::<i64>().is_err() =>
            {
                return Err(RequirementError::NotOneInteger {
                    key,
                    operator,
                    values,
                });
            }
            _ => {}
        }
        Ok(Requirement {
            key,
            operator,
            values,
            min_values: None,
        })
    }

    /// Parses the operator from its manifest spelling.
    pub fn parse(key: &str, operator: &str, values: &[String]) -> Result<Self, RequirementError> {
        let op = Operator::parse(operator).ok_or_else(|| RequirementError::UnknownOperator {
            key: key.to_string(),
            operator: operator.to_string(),
        })?;
        Requirement::new(key, op, values.iter().cloned())
    }

    pub fn with_min_values(mut self, min: u32) -> Result<Self, RequirementError> {
        if self.operator == Operator::In && min as usize > self.values.len() {
            return Err(RequirementError::MinValuesTooLarge {
                key: self.key,
                min,
                count: self.values.len(),
            });
        }
        self.min_values = Some(min);
        Ok(self)
    }

    pub fn value_set(&self) -> ValueSet {
        ValueSet::from_operator(self.operator, &self.values)
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.key, self.operator)?;
        if !self.values.is_empty() {
            write!(f, " [{}]", self.values.join(","))?;
        }
        if let Some(min) = self.min_values {
            write!(f, " minValues={min}")?;
        }
        Ok(())
    }
}

/// The values one key may take.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ValueSet {
    /// When true, the set is "every value except `values`".
    complement: bool,
    values: BTreeSet<String>,
    /// Exclusive integer bounds (values must parse as integers when a bound is set).
    greater_than: Option<i64>,
    less_than: Option<i64>,
}

impl ValueSet {
    pub fn from_operator(operator: Operator, values: &[String]) -> ValueSet {
        let set: BTreeSet<String> = values.iter().cloned().collect();
        let bound = || values.first().and_then(|v| v.parse::<i64>().ok());
        match operator {
            Operator::In => ValueSet {
                values: set,
                ..ValueSet::default()
            },
            Operator::NotIn => ValueSet {
                complement: true,
                values: set,
                ..ValueSet::default()
            },
            Operator::Exists => ValueSet::any(),
            Operator::DoesNotExist => ValueSet::default(),
            Operator::Gt => ValueSet {
                complement: true,
                greater_than: bound(),
                ..ValueSet::default()
            },
            Operator::Lt => ValueSet {
                complement: true,
                less_than: bound(),
                ..ValueSet::default()
            },
        }
    }

    /// Any value (Exists).
    pub fn any() -> ValueSet {
        ValueSet {
            complement: true,
            ..ValueSet::default()
        }
    }

    pub fn single(value: impl Into<String>) -> ValueSet {
        ValueSet {
            values: BTreeSet::from([value.into()]),
            ..ValueSet::default()
        }
    }

    fn within_bounds(&self, value: &str) -> bool {
        if self.greater_than.is_none() && self.less_than.is_none() {
            return true;
        }
        let Ok(n) = value.parse::<i64>() else {
            return false;
        };
        self.greater_than.is_none_or(|gt| n > gt) && self.less_than.is_none_or(|lt| n < lt)
    }

    /// Whether a label with this value satisfies the set.
    pub fn allows(&self, value: &str) -> bool {
        self.within_bounds(value) && (self.values.contains(value) != self.complement)
    }

    /// Whether a node *without* this label satisfies the set (NotIn and DoesNotExist do).
    pub fn allows_absent(&self) -> bool {
        let bounded = self.greater_than.is_some() || self.less_than.is_some();
        if self.complement {
            !self.values.is_empty() && !bounded
        } else {
            self.values.is_empty()
        }
    }

    /// Whether at least one value satisfies the set.
    pub fn has_any_value(&self) -> bool {
        if !self.complement {
            return !self.values.is_empty();
        }
        match (self.greater_than, self.less_than) {
            (Some(gt), Some(lt)) => {
                // Integers strictly between the bounds, minus the excluded ones.
                let span = (lt as i128) - (gt as i128) - 1;
                let excluded = self
                    .values
                    .iter()
                    .filter_map(|v| v.parse::<i64>().ok())
                    .filter(|n| *n > gt && *n < lt)
                    .count() as i128;
                span > excluded
            }
            _ => true,
        }
    }

    /// The explicitly listed values, when the set is finite.
    pub fn finite_values(&self) -> Option<&BTreeSet<String>> {
        (!self.complement).then_some(&self.values)
    }

    pub fn intersect(&self, other: &ValueSet) -> ValueSet {
        let greater_than = match (self.greater_than, other.greater_than) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        let less_than = match (self.less_than, other.less_than) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut result = match (self.complement, other.complement) {
            (false, false) => ValueSet {
                values: self.values.intersection(&other.values).cloned().collect(),
                ..ValueSet::default()
            },
            (true, false) => ValueSet {
                values: other.values.difference(&self.values).cloned().collect(),
                ..ValueSet::default()
            },
            (false, true) => ValueSet {
                values: self.values.difference(&other.values).cloned().collect(),
                ..ValueSet::default()
            },
            (true, true) => ValueSet {
                complement: true,
                values: self.values.union(&other.values).cloned().collect(),
                ..ValueSet::default()
            },
        };
        result.greater_than = greater_than;
        result.less_than = less_than;
        if !result.complement {
            let keep: BTreeSet<String> = result
                .values
                .iter()
                .filter(|v| result.within_bounds(v))
                .cloned()
                .collect();
            result.values = keep;
            result.greater_than = None;
            result.less_than = None;
        }
        result
    }

    /// The operator and values that describe this set (for explanations and NodeClaim requirements).
    pub fn to_requirements(&self, key: &str) -> Vec<Requirement> {
        let mk = |operator, values: Vec<String>| Requirement {
            key: key.to_string(),
            operator,
            values,
            min_values: None,
        };
        if !self.complement {
            if self.values.is_empty() {
                return vec![mk(Operator::DoesNotExist, vec![])];
            }
            return vec![mk(Operator::In, self.values.iter().cloned().collect())];
        }
        let mut out = Vec::new();
        if !self.values.is_empty() {
            out.push(mk(Operator::NotIn, self.values.iter().cloned().collect()));
        }
        if let Some(gt) = self.greater_than {
            out.push(mk(Operator::Gt, vec![gt.to_string()]));
        }
        if let Some(lt) = self.less_than {
            out.push(mk(Operator::Lt, vec![lt.to_string()]));
        }
        if out.is_empty() {
            out.push(mk(Operator::Exists, vec![]));
        }
        out
    }
}

/// Why two requirement sets cannot hold together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatible {
    pub key: String,
    pub reason: String,
}

impl fmt::Display for Incompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.reason)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Entry {
    set: ValueSet,
    min_values: Option<u32>,
}

/// The conjunction of requirements, one [`ValueSet`] per key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Requirements {
    entries: BTreeMap<String, Entry>,
}

impl Requirements {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_requirements<'a>(reqs: impl IntoIterator<Item = &'a Requirement>) -> Self {
        let mut out = Requirements::new();
        for r in reqs {
            out.add(r);
        }
        out
    }

    /// Each label as `key In [value]`.
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Self {
        let mut out = Requirements::new();
        for (k, v) in labels {
            out.add_set(k, ValueSet::single(v.clone()));
        }
        out
    }

    pub fn add(&mut self, requirement: &Requirement) {
        self.add_set(&requirement.key, requirement.value_set());
        if let Some(min) = requirement.min_values
            && let Some(entry) = self.entries.get_mut(labels::normalize(&requirement.key))
        {
            entry.min_values = Some(entry.min_values.map_or(min, |m| m.max(min)));
        }
    }

    /// Adds `key`'s set (a deprecated key is read as its stable one, [`labels::normalize`]).
    pub fn add_set(&mut self, key: &str, set: ValueSet) {
        let key = labels::normalize(key);
        match self.entries.get_mut(key) {
            Some(entry) => entry.set = entry.set.intersect(&set),
            None => {
                self.entries.insert(
                    key.to_string(),
                    Entry {
                        set,
                        min_values: None,
                    },
                );
            }
        }
    }

    /// The conjunction of both sets.
    pub fn intersect(&self, other: &Requirements) -> Requirements {
        let mut out = self.clone();
        for (key, entry) in &other.entries {
            out.add_set(key, entry.set.clone());
            if let Some(min) = entry.min_values {
                let e = out
                    .entries
                    .get_mut(labels::normalize(key))
                    .expect("just added");
                e.min_values = Some(e.min_values.map_or(min, |m| m.max(min)));
            }
        }
        out
    }

    pub fn get(&self, key: &str) -> Option<&ValueSet> {
        self.entries.get(labels::normalize(key)).map(|e| &e.set)
    }

    pub fn min_values(&self, key: &str) -> Option<u32> {
        self.entries
            .get(labels::normalize(key))
            .and_then(|e| e.min_values)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The keys with a `minValues`, and the minimum.
    pub fn min_values_entries(&self) -> impl Iterator<Item = (&str, u32)> {
        self.entries
            .iter()
            .filter_map(|(k, e)| e.min_values.map(|m| (k.as_str(), m)))
    }

    /// Whether a node with exactly these labels satisfies every requirement: [`Self::matches_labels`]
    /// without building the explanation (label selectors over every placed pod and offering filters
    /// ask this on hot paths where most answers are "no").
    pub fn allows_labels<L: LabelLookup + ?Sized>(&self, labels: &L) -> bool {
        self.entries
            .iter()
            .all(|(key, entry)| entry_allows(entry, labels.label(key)))
    }

    /// Whether a node with exactly these labels satisfies every requirement, and if not, why.
    pub fn matches_labels<L: LabelLookup + ?Sized>(&self, labels: &L) -> Result<(), Incompatible> {
        for (key, entry) in &self.entries {
            if !entry_allows(entry, labels.label(key)) {
                return Err(Incompatible {
                    key: key.clone(),
                    reason: match labels.label(key) {
                        Some(v) => format!(
                            "label value {v:?} not allowed by {}",
                            describe(key, &entry.set)
                        ),
                        None => format!("label missing, required {}", describe(key, &entry.set)),
                    },
                });
            }
        }
        Ok(())
    }

    /// Whether `other` (e.g. a pod's term) can hold together with `self` (e.g. a NodePool's requirements).
    ///
    /// A key `other` constrains but `self` leaves open is compatible only if `other` allows the label to
    /// be absent, or if `defined_elsewhere(key)` says something else (an instance type) defines it.
    pub fn compatible(
        &self,
        other: &Requirements,
        defined_elsewhere: impl Fn(&str) -> bool,
    ) -> Result<(), Incompatible> {
        for (key, theirs) in &other.entries {
            match self.entries.get(key) {
                Some(ours) => {
                    let both = ours.set.intersect(&theirs.set);
                    let absent_ok = ours.set.allows_absent() && theirs.set.allows_absent();
                    if !(both.has_any_value() || absent_ok) {
                        return Err(Incompatible {
                            key: key.clone(),
                            reason: format!(
                                "{} conflicts with {}",
                                describe(key, &theirs.set),
                                describe(key, &ours.set)
                            ),
                        });
                    }
                }
                None => {
                    if !theirs.set.allows_absent() && !defined_elsewhere(key) {
                        return Err(Incompatible {
                            key: key.clone(),
                            reason: format!(
                                "{} but the label is not defined",
                                describe(key, &theirs.set)
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The requirements back in manifest form (one or more per key).
    pub fn to_requirements(&self) -> Vec<Requirement> {
        let mut out = Vec::new();
        for (key, entry) in &self.entries {
            let mut reqs = entry.set.to_requirements(key);
            if let Some(min) = entry.min_values
                && let Some(first) = reqs.first_mut()
            {
                first.min_values = Some(min);
            }
            out.extend(reqs);
        }
        out
    }

    /// The labels these requirements pin to one value (`key In [v]`), as a node created from them carries.
    pub fn single_values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().filter_map(|(k, e)| {
            let values = e.set.finite_values()?;
            (values.len() == 1).then(|| (k.as_str(), values.iter().next().unwrap().as_str()))
        })
    }
}

fn entry_allows(entry: &Entry, value: Option<&str>) -> bool {
    match value {
        Some(value) => entry.set.allows(value),
        None => entry.set.allows_absent(),
    }
}

fn describe(key: &str, set: &ValueSet) -> String {
    set.to_requirements(key)
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(" and ")
}

impl fmt::Display for Requirements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .to_requirements()
            .iter()
            .map(|r| r.to_string())
            .collect();
        write!(f, "{}", parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, op: Operator, values: &[&str]) -> Requirement {
        Requirement::new(key, op, values.iter().copied()).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn validates_values_per_operator() {
        assert!(Requirement::new("k", Operator::In, Vec::<String>::new()).is_err());
        assert!(Requirement::new("k", Operator::Exists, ["a"]).is_err());
        assert!(Requirement::new("k", Operator::Gt, ["x"]).is_err());
        assert!(Requirement::new("k", Operator::Gt, ["1", "2"]).is_err());
        assert!(Requirement::parse("k", "Like", &[]).is_err());
        assert!(req("k", Operator::In, &["a"]).with_min_values(2).is_err());
    }

    #[test]
    fn each_operator_matches_labels() {
        let node = labels(&[("gen", "5"), ("cat", "m")]);
        let check = |r: Requirement| {
            let reqs = Requirements::from_requirements([&r]);
            let explained = reqs.matches_labels(&node);
            // The fast answer and the explained one never disagree.
            assert_eq!(reqs.allows_labels(&node), explained.is_ok(), "{r}");
            explained
        };
        assert!(check(req("cat", Operator::In, &["c", "m"])).is_ok());
        assert!(check(req("cat", Operator::In, &["c"])).is_err());
        assert!(check(req("cat", Operator::NotIn, &["c"])).is_ok());
        assert!(check(req("cat", Operator::NotIn, &["m"])).is_err());
        assert!(check(req("missing", Operator::NotIn, &["m"])).is_ok());
        assert!(check(req("cat", Operator::Exists, &[])).is_ok());
        assert!(check(req("missing", Operator::Exists, &[])).is_err());
        assert!(check(req("missing", Operator::DoesNotExist, &[])).is_ok());
        assert!(check(req("cat", Operator::DoesNotExist, &[])).is_err());
        assert!(check(req("gen", Operator::Gt, &["4"])).is_ok());
        assert!(check(req("gen", Operator::Gt, &["5"])).is_err());
        assert!(check(req("gen", Operator::Lt, &["6"])).is_ok());
        assert!(check(req("cat", Operator::Gt, &["1"])).is_err());
        assert!(check(req("missing", Operator::Gt, &["1"])).is_err());
    }

    #[test]
    fn intersection_and_compatibility() {
        let pool = Requirements::from_requirements(&[
            req("cat", Operator::In, &["c", "m", "r"]),
            req("gen", Operator::Gt, &["4"]),
        ]);
        let pod = Requirements::from_requirements(&[req("cat", Operator::NotIn, &["c", "m"])]);
        assert!(pool.compatible(&pod, |_| false).is_ok());
        let both = pool.intersect(&pod);
        assert_eq!(
            both.get("cat").unwrap().finite_values().unwrap(),
            &BTreeSet::from(["r".to_string()])
        );
        let bad = Requirements::from_requirements(&[req("cat", Operator::In, &["t"])]);
        let err = pool.compatible(&bad, |_| false).unwrap_err();
        assert_eq!(err.key, "cat");
        let bounded = Requirements::from_requirements(&[req("gen", Operator::Lt, &["5"])]);
        assert!(pool.compatible(&bounded, |_| false).is_err());
        let bounded = Requirements::from_requirements(&[req("gen", Operator::Lt, &["7"])]);
        assert!(pool.compatible(&bounded, |_| false).is_ok());
        // A custom label the pool does not define is only fine if the pod allows it absent.
        let custom = Requirements::from_requirements(&[req("team", Operator::In, &["a"])]);
        assert!(pool.compatible(&custom, |_| false).is_err());
        assert!(pool.compatible(&custom, |k| k == "team").is_ok());
        let absent = Requirements::from_requirements(&[req("team", Operator::DoesNotExist, &[])]);
        assert!(pool.compatible(&absent, |_| false).is_ok());
    }

    #[test]
    fn deprecated_keys_are_read_as_stable_ones() {
        // (deprecated key, value, node label it must match)
        let cases = [
            (
                "beta.kubernetes.io/arch",
                "arm64",
                ("kubernetes.io/arch", "arm64"),
            ),
            (
                "beta.kubernetes.io/os",
                "linux",
                ("kubernetes.io/os", "linux"),
            ),
            (
                "beta.kubernetes.io/instance-type",
                "m5.large",
                ("node.kubernetes.io/instance-type", "m5.large"),
            ),
            (
                "failure-domain.beta.kubernetes.io/zone",
                "z1",
                ("topology.kubernetes.io/zone", "z1"),
            ),
            (
                "failure-domain.beta.kubernetes.io/region",
                "r1",
                ("topology.kubernetes.io/region", "r1"),
            ),
            (
                "topology.ebs.csi.aws.com/zone",
                "z1",
                ("topology.kubernetes.io/zone", "z1"),
            ),
        ];
        for (key, value, (stable, v)) in cases {
            let r = Requirements::from_requirements(&[req(key, Operator::In, &[value])]);
            assert_eq!(r.keys().collect::<Vec<_>>(), vec![stable], "{key}");
            assert!(r.matches_labels(&labels(&[(stable, v)])).is_ok(), "{key}");
            assert!(
                r.matches_labels(&labels(&[(stable, "other")])).is_err(),
                "{key}"
            );
            assert!(r.get(key).is_some(), "{key}");
        }
        // Both spellings in one term intersect.
        let both = Requirements::from_requirements(&[
            req("beta.kubernetes.io/arch", Operator::In, &["arm64", "amd64"]),
            req("kubernetes.io/arch", Operator::In, &["amd64"]),
        ]);
        assert_eq!(
            both.get("kubernetes.io/arch")
                .unwrap()
                .finite_values()
                .unwrap(),
            &BTreeSet::from(["amd64".to_string()])
        );
    }

    #[test]
    fn round_trips_to_manifest_form() {
        let r = Requirements::from_requirements(&[
            req("gen", Operator::Gt, &["4"]),
            req("cat", Operator::In, &["c"]).with_min_values(1).unwrap(),
        ]);
        let back = Requirements::from_requirements(&r.to_requirements());
        assert_eq!(back, r);
        assert_eq!(r.single_values().collect::<Vec<_>>(), vec![("cat", "c")]);
    }
}
