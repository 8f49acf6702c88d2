//! Which label keys a NodePool may constrain or set, following Karpenter's rules: the well-known labels
//! are allowed, other keys in Kubernetes', Karpenter's and Karpenter-AWS's domains are reserved for the
//! system that sets them. The label names themselves live in [`crate::model::labels`].

use crate::model::labels::{
    self as known, BETA_EQUIVALENTS, KNOWN_NOT_SET, RESTRICTED_DOMAIN_EXCEPTIONS,
    RESTRICTED_DOMAINS,
};

/// The stable name of `key` (beta labels mapped to their stable form).
pub fn normalize(key: &str) -> &str {
    BETA_EQUIVALENTS
        .iter()
        .find(|(beta, _)| *beta == key)
        .map_or(key, |(_, stable)| stable)
}

/// Why a NodePool may not use `key` in its requirements or template labels, if it may not.
pub fn restriction(key: &str) -> Option<String> {
    let key = normalize(key);
    if key == known::HOSTNAME {
        return Some(format!(
            "label {key} is restricted: it is unique to each node"
        ));
    }
    if key == known::NODE_POOL {
        return Some(format!(
            "label {key} is restricted: Kestrel sets it to the NodePool's name"
        ));
    }
    if known::is_well_known(key) || KNOWN_NOT_SET.contains(&key) {
        return None;
    }
    let domain = key.split_once('/').map_or("", |(prefix, _)| prefix);
    let in_domain = |d: &str| domain == d || domain.ends_with(&format!(".{d}"));
    if RESTRICTED_DOMAIN_EXCEPTIONS.iter().any(|d| in_domain(d)) {
        return None;
    }
    RESTRICTED_DOMAINS.iter().find(|d| in_domain(d)).map(|d| {
        format!(
            "label domain {d:?} is restricted; use a well-known label (e.g. karpenter.sh/capacity-type, \
             node.kubernetes.io/instance-type, karpenter.k8s.aws/instance-family) or a custom domain"
        )
    })
}

/// Checks Kubernetes' qualified-name syntax for a label key (`[prefix/]name`).
pub fn check_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty() || prefix.len() > 253 || !prefix.split('.').all(is_dns_label))
    {
        return Err(format!(
            "invalid label key {key:?}: the prefix must be a DNS subdomain"
        ));
    }
    if name.is_empty() || name.len() > 63 || !is_label_name(name) {
        return Err(format!(
            "invalid label key {key:?}: the name must be 1-63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"
        ));
    }
    Ok(())
}

/// Checks Kubernetes' label-value syntax (empty, or up to 63 characters like a label name).
pub fn check_value(value: &str) -> Result<(), String> {
    if value.is_empty() || (value.len() <= 63 && is_label_name(value)) {
        Ok(())
    } else {
        Err(format!(
            "invalid label value {value:?}: at most 63 alphanumerics, '-', '_' or '.', starting and ending alphanumeric"
        ))
    }
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restrictions() {
        assert!(restriction("kubernetes.io/hostname").is_some());
        assert!(restriction("karpenter.sh/nodepool").is_some());
        assert!(restriction("karpenter.sh/capacity-type").is_none());
        assert!(restriction("karpenter.k8s.aws/instance-family").is_none());
        assert!(restriction("karpenter.k8s.aws/something").is_some());
        assert!(restriction("example.kubernetes.io/x").is_some());
        assert!(restriction("node.kubernetes.io/lifecycle").is_none());
        assert!(restriction("kops.k8s.io/instancegroup").is_none());
        assert!(restriction("beta.kubernetes.io/arch").is_none());
        assert!(restriction("team").is_none());
        assert!(restriction("example.com/team").is_none());
    }

    #[test]
    fn key_and_value_syntax() {
        assert!(check_key("example.com/team").is_ok());
        assert!(check_key("team").is_ok());
        assert!(check_key("Example.com/team").is_err());
        assert!(check_key("/team").is_err());
        assert!(check_key("team-").is_err());
        assert!(check_value("").is_ok());
        assert!(check_value("c5.large").is_ok());
        assert!(check_value("a b").is_err());
        assert!(check_value(&"a".repeat(64)).is_err());
    }
}
