//! Which label keys a NodePool may constrain or set, following Karpenter's rules: the well-known labels
//! are allowed, other keys in Kubernetes', Karpenter's and Karpenter-AWS's domains are reserved for the
//! system that sets them.

/// Labels Karpenter (core and AWS provider) knows and sets on nodes, so NodePools may use them.
pub const WELL_KNOWN_LABELS: &[&str] = &[
    "karpenter.sh/nodepool",
    "karpenter.sh/capacity-type",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "node.kubernetes.io/windows-build",
    "topology.k8s.aws/zone-id",
    "karpenter.k8s.aws/instance-hypervisor",
    "karpenter.k8s.aws/instance-encryption-in-transit-supported",
    "karpenter.k8s.aws/instance-category",
    "karpenter.k8s.aws/instance-family",
    "karpenter.k8s.aws/instance-generation",
    "karpenter.k8s.aws/instance-local-nvme",
    "karpenter.k8s.aws/instance-size",
    "karpenter.k8s.aws/instance-cpu",
    "karpenter.k8s.aws/instance-cpu-manufacturer",
    "karpenter.k8s.aws/instance-cpu-sustained-clock-speed-mhz",
    "karpenter.k8s.aws/instance-memory",
    "karpenter.k8s.aws/instance-ebs-bandwidth",
    "karpenter.k8s.aws/instance-network-bandwidth",
    "karpenter.k8s.aws/instance-gpu-name",
    "karpenter.k8s.aws/instance-gpu-manufacturer",
    "karpenter.k8s.aws/instance-gpu-count",
    "karpenter.k8s.aws/instance-gpu-memory",
    "karpenter.k8s.aws/instance-accelerator-name",
    "karpenter.k8s.aws/instance-accelerator-manufacturer",
    "karpenter.k8s.aws/instance-accelerator-count",
    "karpenter.k8s.aws/instance-capability-flex",
    "karpenter.k8s.aws/capacity-reservation-id",
    "karpenter.k8s.aws/capacity-reservation-type",
];

/// Deprecated beta labels Karpenter accepts and reads as their stable equivalent.
pub const NORMALIZED_LABELS: &[(&str, &str)] = &[
    (
        "failure-domain.beta.kubernetes.io/zone",
        "topology.kubernetes.io/zone",
    ),
    (
        "failure-domain.beta.kubernetes.io/region",
        "topology.kubernetes.io/region",
    ),
    ("beta.kubernetes.io/arch", "kubernetes.io/arch"),
    ("beta.kubernetes.io/os", "kubernetes.io/os"),
    (
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
    ),
];

/// Domains whose labels only the system sets (a suffix match: `foo.kubernetes.io` is restricted too).
pub const RESTRICTED_LABEL_DOMAINS: &[&str] = &[
    "kubernetes.io",
    "k8s.io",
    "karpenter.sh",
    "karpenter.k8s.aws",
];

/// Subdomains of restricted domains that users may label with.
pub const LABEL_DOMAIN_EXCEPTIONS: &[&str] = &[
    "kops.k8s.io",
    "node.kubernetes.io",
    "node-restriction.kubernetes.io",
];

/// The stable name of `key` (beta labels mapped to their stable form).
pub fn normalize(key: &str) -> &str {
    NORMALIZED_LABELS
        .iter()
        .find(|(beta, _)| *beta == key)
        .map_or(key, |(_, stable)| stable)
}

/// Why a NodePool may not use `key` in its requirements or template labels, if it may not.
pub fn restriction(key: &str) -> Option<String> {
    let key = normalize(key);
    match key {
        "kubernetes.io/hostname" => {
            return Some(
                "label kubernetes.io/hostname is restricted: it is unique to each node".into(),
            );
        }
        "karpenter.sh/nodepool" => {
            return Some(
                "label karpenter.sh/nodepool is restricted: Kestrel sets it to the NodePool's name"
                    .into(),
            );
        }
        _ => {}
    }
    if WELL_KNOWN_LABELS.contains(&key) {
        return None;
    }
    let domain = key.split_once('/').map_or("", |(prefix, _)| prefix);
    let in_domain = |d: &str| domain == d || domain.ends_with(&format!(".{d}"));
    if LABEL_DOMAIN_EXCEPTIONS.iter().any(|d| in_domain(d)) {
        return None;
    }
    RESTRICTED_LABEL_DOMAINS.iter().find(|d| in_domain(d)).map(|d| {
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
