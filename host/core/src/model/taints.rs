//! Taints and tolerations (the kube-scheduler `TaintToleration` rule).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn parse(s: &str) -> Option<TaintEffect> {
        Some(match s {
            "NoSchedule" => TaintEffect::NoSchedule,
            "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
            "NoExecute" => TaintEffect::NoExecute,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: TaintEffect,
}

impl Taint {
    pub fn new(key: &str, value: Option<&str>, effect: TaintEffect) -> Taint {
        Taint {
            key: key.to_string(),
            value: value.map(str::to_string),
            effect,
        }
    }
}

impl fmt::Display for Taint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={}:{}", self.key, v, self.effect.as_str()),
            None => write!(f, "{}:{}", self.key, self.effect.as_str()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TolerationOperator {
    Equal,
    Exists,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Toleration {
    /// `None` with `Exists` tolerates every taint.
    pub key: Option<String>,
    pub operator: TolerationOperator,
    pub value: Option<String>,
    /// `None` matches every effect.
    pub effect: Option<TaintEffect>,
}

impl Toleration {
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if self.effect.is_some_and(|e| e != taint.effect) {
            return false;
        }
        match (&self.key, self.operator) {
            (None, TolerationOperator::Exists) => true,
            (None, TolerationOperator::Equal) => false,
            (Some(k), _) if *k != taint.key => false,
            (Some(_), TolerationOperator::Exists) => true,
            (Some(_), TolerationOperator::Equal) => {
                self.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
            }
        }
    }
}

/// The first taint with a scheduling effect (NoSchedule / NoExecute) that no toleration tolerates.
pub fn untolerated<'a>(taints: &'a [Taint], tolerations: &[Toleration]) -> Option<&'a Taint> {
    taints.iter().find(|t| {
        t.effect != TaintEffect::PreferNoSchedule && !tolerations.iter().any(|tol| tol.tolerates(t))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toleration_rules() {
        let gpu = Taint::new("nvidia.com/gpu", Some("true"), TaintEffect::NoSchedule);
        let equal = Toleration {
            key: Some("nvidia.com/gpu".into()),
            operator: TolerationOperator::Equal,
            value: Some("true".into()),
            effect: None,
        };
        assert!(equal.tolerates(&gpu));
        let wrong_value = Toleration {
            value: Some("false".into()),
            ..equal.clone()
        };
        assert!(!wrong_value.tolerates(&gpu));
        let everything = Toleration {
            key: None,
            operator: TolerationOperator::Exists,
            value: None,
            effect: None,
        };
        assert!(everything.tolerates(&gpu));
        let other_effect = Toleration {
            effect: Some(TaintEffect::NoExecute),
            ..equal
        };
        assert!(!other_effect.tolerates(&gpu));
        assert_eq!(untolerated(std::slice::from_ref(&gpu), &[]), Some(&gpu));
        let soft = Taint::new("x", None, TaintEffect::PreferNoSchedule);
        assert_eq!(untolerated(&[soft], &[]), None);
    }
}
