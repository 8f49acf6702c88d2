//! Well-known labels: the keys Karpenter (and so Kestrel) sets on nodes and that pods may select on. The
//! one source of these names: `crate::api::labels` builds its validation rules from them.

pub const CAPACITY_TYPE: &str = "karpenter.sh/capacity-type";
pub const NODE_POOL: &str = "karpenter.sh/nodepool";
pub const NODE_INITIALIZED: &str = "karpenter.sh/initialized";
pub const NODE_REGISTERED: &str = "karpenter.sh/registered";
pub const DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
pub const NODE_CLASS: &str = "karpenter.k8s.aws/ec2nodeclass";

pub const INSTANCE_CATEGORY: &str = "karpenter.k8s.aws/instance-category";
pub const INSTANCE_FAMILY: &str = "karpenter.k8s.aws/instance-family";
pub const INSTANCE_GENERATION: &str = "karpenter.k8s.aws/instance-generation";
pub const INSTANCE_SIZE: &str = "karpenter.k8s.aws/instance-size";
pub const INSTANCE_CPU: &str = "karpenter.k8s.aws/instance-cpu";
pub const INSTANCE_CPU_MANUFACTURER: &str = "karpenter.k8s.aws/instance-cpu-manufacturer";
pub const INSTANCE_MEMORY: &str = "karpenter.k8s.aws/instance-memory";
pub const INSTANCE_HYPERVISOR: &str = "karpenter.k8s.aws/instance-hypervisor";
pub const INSTANCE_NETWORK_BANDWIDTH: &str = "karpenter.k8s.aws/instance-network-bandwidth";
pub const INSTANCE_EBS_BANDWIDTH: &str = "karpenter.k8s.aws/instance-ebs-bandwidth";
pub const INSTANCE_LOCAL_NVME: &str = "karpenter.k8s.aws/instance-local-nvme";
pub const INSTANCE_GPU_NAME: &str = "karpenter.k8s.aws/instance-gpu-name";
pub const INSTANCE_GPU_MANUFACTURER: &str = "karpenter.k8s.aws/instance-gpu-manufacturer";
pub const INSTANCE_GPU_COUNT: &str = "karpenter.k8s.aws/instance-gpu-count";
pub const INSTANCE_GPU_MEMORY: &str = "karpenter.k8s.aws/instance-gpu-memory";
pub const INSTANCE_ACCELERATOR_NAME: &str = "karpenter.k8s.aws/instance-accelerator-name";
pub const INSTANCE_ACCELERATOR_MANUFACTURER: &str =
    "karpenter.k8s.aws/instance-accelerator-manufacturer";
pub const INSTANCE_ACCELERATOR_COUNT: &str = "karpenter.k8s.aws/instance-accelerator-count";
pub const INSTANCE_ENCRYPTION_IN_TRANSIT: &str =
    "karpenter.k8s.aws/instance-encryption-in-transit-supported";
pub const INSTANCE_CPU_SUSTAINED_CLOCK: &str =
    "karpenter.k8s.aws/instance-cpu-sustained-clock-speed-mhz";
pub const INSTANCE_CAPABILITY_FLEX: &str = "karpenter.k8s.aws/instance-capability-flex";
pub const CAPACITY_RESERVATION_ID: &str = "karpenter.k8s.aws/capacity-reservation-id";
pub const CAPACITY_RESERVATION_TYPE: &str = "karpenter.k8s.aws/capacity-reservation-type";
pub const ZONE_ID: &str = "topology.k8s.aws/zone-id";
pub const INSTANCE_TENANCY: &str = "karpenter.k8s.aws/instance-tenancy";
/// The tenancy of every offering the catalog holds (shared hardware).
pub const TENANCY_DEFAULT: &str = "default";
pub const WINDOWS_BUILD: &str = "node.kubernetes.io/windows-build";

pub const INSTANCE_TYPE: &str = "node.kubernetes.io/instance-type";
pub const ZONE: &str = "topology.kubernetes.io/zone";
pub const REGION: &str = "topology.kubernetes.io/region";
pub const ARCH: &str = "kubernetes.io/arch";
pub const OS: &str = "kubernetes.io/os";
pub const HOSTNAME: &str = "kubernetes.io/hostname";

/// Capacity-type label values.
pub const CAPACITY_ON_DEMAND: &str = "on-demand";
pub const CAPACITY_SPOT: &str = "spot";
pub const CAPACITY_RESERVED: &str = "reserved";

/// Labels every launched node gets from its offering, so a pod may require them even when a NodePool
/// does not mention them (Karpenter's "well-known labels").
pub const WELL_KNOWN: &[&str] = &[
    CAPACITY_TYPE,
    NODE_POOL,
    INSTANCE_CATEGORY,
    INSTANCE_FAMILY,
    INSTANCE_GENERATION,
    INSTANCE_SIZE,
    INSTANCE_CPU,
    INSTANCE_CPU_MANUFACTURER,
    INSTANCE_MEMORY,
    INSTANCE_HYPERVISOR,
    INSTANCE_NETWORK_BANDWIDTH,
    INSTANCE_EBS_BANDWIDTH,
    INSTANCE_LOCAL_NVME,
    INSTANCE_GPU_NAME,
    INSTANCE_GPU_MANUFACTURER,
    INSTANCE_GPU_COUNT,
    INSTANCE_GPU_MEMORY,
    INSTANCE_ACCELERATOR_NAME,
    INSTANCE_ACCELERATOR_MANUFACTURER,
    INSTANCE_ACCELERATOR_COUNT,
    INSTANCE_TENANCY,
    INSTANCE_TYPE,
    ZONE,
    REGION,
    ZONE_ID,
    ARCH,
    OS,
    HOSTNAME,
];

pub fn is_well_known(key: &str) -> bool {
    WELL_KNOWN.contains(&key)
}

/// Labels Karpenter knows that Kestrel's catalog does not set (yet): NodePools may still constrain them.
pub const KNOWN_NOT_SET: &[&str] = &[
    INSTANCE_ENCRYPTION_IN_TRANSIT,
    INSTANCE_CPU_SUSTAINED_CLOCK,
    INSTANCE_CAPABILITY_FLEX,
    CAPACITY_RESERVATION_ID,
    CAPACITY_RESERVATION_TYPE,
    WINDOWS_BUILD,
];

/// Deprecated beta labels Karpenter accepts and reads as their stable equivalent.
pub const BETA_EQUIVALENTS: &[(&str, &str)] = &[
    ("failure-domain.beta.kubernetes.io/zone", ZONE),
    ("failure-domain.beta.kubernetes.io/region", REGION),
    ("beta.kubernetes.io/arch", ARCH),
    ("beta.kubernetes.io/os", OS),
    ("beta.kubernetes.io/instance-type", INSTANCE_TYPE),
];

/// Keys Karpenter reads as another wherever a requirement names them (its `NormalizedLabels`, with the
/// AWS provider's EBS CSI zone key): the deprecated beta labels and `topology.ebs.csi.aws.com/zone`.
pub const NORMALIZED: &[(&str, &str)] = &[
    ("failure-domain.beta.kubernetes.io/zone", ZONE),
    ("failure-domain.beta.kubernetes.io/region", REGION),
    ("beta.kubernetes.io/arch", ARCH),
    ("beta.kubernetes.io/os", OS),
    ("beta.kubernetes.io/instance-type", INSTANCE_TYPE),
    ("topology.ebs.csi.aws.com/zone", ZONE),
];

/// The key a requirement on `key` is read as (see [`NORMALIZED`]).
pub fn normalize(key: &str) -> &str {
    NORMALIZED
        .iter()
        .find(|(old, _)| *old == key)
        .map_or(key, |(_, stable)| stable)
}

/// The region of an AWS zone name: `us-east-1a` and the local zone `us-west-2-lax-1a` are in
/// `us-east-1` and `us-west-2` (the tokens up to the first that starts with a digit, with its digits).
/// `None` for a name that does not look like one.
pub fn region_of_zone(zone: &str) -> Option<String> {
    let tokens: Vec<&str> = zone.split('-').collect();
    let at = tokens
        .iter()
        .position(|t| t.starts_with(|c: char| c.is_ascii_digit()))?;
    if at < 2
        || !tokens[..at]
            .iter()
            .all(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_lowercase()))
    {
        return None;
    }
    let digits: String = tokens[at]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some(format!("{}-{digits}", tokens[..at].join("-")))
}

/// The zone ID AWS's naming convention gives an availability zone (`us-east-1a` → `use1-az1`,
/// `ap-northeast-1c` → `apne1-az3`): a stand-in for when the cloud did not report the real one (each
/// account maps zone letters to IDs its own way). `None` for names that are not `<region><letter>`.
pub fn conventional_zone_id(zone: &str) -> Option<String> {
    let region = region_of_zone(zone)?;
    let letter = zone.strip_prefix(region.as_str())?;
    let mut chars = letter.chars();
    let (Some(l), None) = (chars.next(), chars.next()) else {
        return None;
    };
    if !l.is_ascii_lowercase() {
        return None;
    }
    let tokens: Vec<&str> = region.split('-').collect();
    let (number, parts) = tokens.split_last()?;
    let mut code = String::from(parts[0]);
    // One letter per word, two for a compound direction (`northeast` → `ne`).
    for part in &parts[1..] {
        let compound = ["north", "south"]
            .iter()
            .find_map(|c| part.strip_prefix(c).filter(|rest| !rest.is_empty()));
        match compound {
            Some(rest) => {
                code.push_str(&part[..1]);
                code.push_str(&rest[..1]);
            }
            None => code.push_str(&part[..1]),
        }
    }
    Some(format!(
        "{code}{number}-az{}",
        u32::from(l) - u32::from('a') + 1
    ))
}

/// The labels a node in `zone` carries for it without a cloud-reported zone ID: the zone, its region
/// and the conventional zone ID (the last two when the name is AWS-shaped).
pub fn zone_labels(zone: &str) -> Vec<(String, String)> {
    let mut out = vec![(ZONE.to_string(), zone.to_string())];
    if let Some(region) = region_of_zone(zone) {
        out.push((REGION.to_string(), region));
    }
    if let Some(id) = conventional_zone_id(zone) {
        out.push((ZONE_ID.to_string(), id));
    }
    out
}

/// Label domains Karpenter reserves: a NodePool may not set these in its template (a suffix match:
/// `foo.kubernetes.io` is restricted too).
pub const RESTRICTED_DOMAINS: &[&str] = &[
    "kubernetes.io",
    "k8s.io",
    "karpenter.sh",
    "karpenter.k8s.aws",
];

/// Subdomains of restricted domains that users may label with.
pub const RESTRICTED_DOMAIN_EXCEPTIONS: &[&str] = &[
    "kops.k8s.io",
    "node.kubernetes.io",
    "node-restriction.kubernetes.io",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_and_zone_ids_from_zone_names() {
        let cases = [
            ("us-east-1a", Some("us-east-1"), Some("use1-az1")),
            ("us-east-1c", Some("us-east-1"), Some("use1-az3")),
            ("ap-northeast-1d", Some("ap-northeast-1"), Some("apne1-az4")),
            ("eu-central-1b", Some("eu-central-1"), Some("euc1-az2")),
            ("us-gov-west-1a", Some("us-gov-west-1"), Some("usgw1-az1")),
            ("us-west-2-lax-1a", Some("us-west-2"), None),
            ("zone-a", None, None),
            ("", None, None),
        ];
        for (zone, region, id) in cases {
            assert_eq!(region_of_zone(zone).as_deref(), region, "{zone}");
            assert_eq!(conventional_zone_id(zone).as_deref(), id, "{zone}");
        }
    }

    #[test]
    fn deprecated_keys_normalize() {
        assert_eq!(normalize("beta.kubernetes.io/arch"), ARCH);
        assert_eq!(normalize("topology.ebs.csi.aws.com/zone"), ZONE);
        assert_eq!(
            normalize("failure-domain.beta.kubernetes.io/region"),
            REGION
        );
        assert_eq!(normalize(ZONE), ZONE);
        assert_eq!(normalize("team"), "team");
    }
}
