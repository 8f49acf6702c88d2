//! EC2NodeClass discovery: the subnets, security groups and AMIs its selector terms resolve to, and
//! the status (resolved values and the `Ready` condition) that follows from them.
//!
//! Terms are OR'ed (one Describe call per term, results unioned); within a term the tags are AND'ed
//! (EC2 filters within one call are AND'ed); a tag value `*` matches any value of that key
//! (`tag-key` filter), as Karpenter allows.

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::Filter;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kestrel_core::api::common::{NodeSelectorRequirement, Operator};
use kestrel_core::api::ec2nodeclass::{
    AMI, AMISelectorTerm, EC2NodeClassSpec, EC2NodeClassStatus, SecurityGroup, Subnet,
};
use kestrel_core::clock::Millis;
use kestrel_core::cloud::CloudError;
use kestrel_core::model::labels;

use super::error::cloud_error;

/// A subnet a NodeClass resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSubnet {
    pub id: String,
    pub zone: String,
    pub zone_id: Option<String>,
    /// Free IPv4 addresses: the subnets of a zone are tried most-free first.
    pub available_ips: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedSecurityGroup {
    pub id: String,
    pub name: Option<String>,
}

/// An AMI a NodeClass resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedAmi {
    pub id: String,
    pub name: Option<String>,
    /// `amd64` or `arm64` (the `kubernetes.io/arch` value).
    pub architecture: String,
    /// ISO 8601, as EC2 reports it (sorts as time).
    pub creation_date: String,
    pub deprecated: bool,
}

/// Everything a NodeClass's selectors resolved to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Most free addresses first.
    pub subnets: Vec<ResolvedSubnet>,
    pub security_groups: Vec<ResolvedSecurityGroup>,
    /// Newest first within each architecture.
    pub amis: Vec<ResolvedAmi>,
    /// The instance profile nodes launch with: `spec.instanceProfile`, or the one Kestrel keeps for
    /// `spec.role` (None until it is made; the class is not ready then).
    pub instance_profile: Option<String>,
}

impl Resolution {
    /// The AMI a launch for this architecture boots: the newest non-deprecated one, else the newest.
    pub fn ami_for(&self, architecture: &str) -> Option<&ResolvedAmi> {
        let mut candidates = self.amis.iter().filter(|a| a.architecture == architecture);
        let first = candidates.clone().next();
        candidates.find(|a| !a.deprecated).or(first)
    }
}

/// What discovery needs to know beyond the NodeClass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoverySettings {
    /// The cluster's Kubernetes version (`1.33`), for alias AMI names; `None` matches any version.
    pub kubernetes_version: Option<String>,
    /// Who publishes the alias AMIs (`amazon` in the commercial partitions; an account id where the
    /// EKS AMIs are mirrored or copied).
    pub alias_owners: Vec<String>,
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        DiscoverySettings {
            kubernetes_version: None,
            alias_owners: vec!["amazon".to_string()],
        }
    }
}

/// Resolves a NodeClass's subnets, security groups and AMIs.
pub async fn resolve(
    client: &Client,
    spec: &EC2NodeClassSpec,
    settings: &DiscoverySettings,
) -> Result<Resolution, CloudError> {
    Ok(Resolution {
        subnets: subnets(client, spec).await?,
        security_groups: security_groups(client, spec).await?,
        amis: amis(client, spec, settings).await?,
        instance_profile: spec.instance_profile.clone(),
    })
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// One term's tags as EC2 filters (AND'ed by EC2).
fn tag_filters(tags: &BTreeMap<String, String>) -> Vec<Filter> {
    tags.iter()
        .map(|(key, value)| {
            if value == "*" {
                filter("tag-key", key)
            } else {
                filter(&format!("tag:{key}"), value)
            }
        })
        .collect()
}

async fn subnets(
    client: &Client,
    spec: &EC2NodeClassSpec,
) -> Result<Vec<ResolvedSubnet>, CloudError> {
    let mut found = BTreeMap::new();
    for term in &spec.subnet_selector_terms {
        let mut filters = tag_filters(&term.tags);
        if let Some(id) = &term.id {
            filters.push(filter("subnet-id", id));
        }
        let mut pages = client
            .describe_subnets()
            .set_filters(Some(filters))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| cloud_error("DescribeSubnets", &e))?;
            for subnet in page.subnets() {
                let (Some(id), Some(zone)) = (subnet.subnet_id(), subnet.availability_zone())
                else {
                    continue;
                };
                found.insert(
                    id.to_string(),
                    ResolvedSubnet {
                        id: id.to_string(),
                        zone: zone.to_string(),
                        zone_id: subnet.availability_zone_id().map(str::to_string),
                        available_ips: subnet.available_ip_address_count().unwrap_or(0),
                    },
                );
            }
        }
    }
    let mut subnets: Vec<_> = found.into_values().collect();
    subnets.sort_by(|a, b| {
        b.available_ips
            .cmp(&a.available_ips)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(subnets)
}

async fn security_groups(
    client: &Client,
    spec: &EC2NodeClassSpec,
) -> Result<Vec<ResolvedSecurityGroup>, CloudError> {
    let mut found = BTreeMap::new();
    for term in &spec.security_group_selector_terms {
        let mut filters = tag_filters(&term.tags);
        if let Some(id) = &term.id {
            filters.push(filter("group-id", id));
        }
        if let Some(name) = &term.name {
            filters.push(filter("group-name", name));
        }
        let mut pages = client
            .describe_security_groups()
            .set_filters(Some(filters))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| cloud_error("DescribeSecurityGroups", &e))?;
            for group in page.security_groups() {
                let Some(id) = group.group_id() else { continue };
                found.insert(
                    id.to_string(),
                    ResolvedSecurityGroup {
                        id: id.to_string(),
                        name: group.group_name().map(str::to_string),
                    },
                );
            }
        }
    }
    Ok(found.into_values().collect())
}

/// The DescribeImages name patterns of an alias, per EC2 architecture, after the names the EKS
/// optimized AMIs are published under. Karpenter reads the public SSM parameters instead; Kestrel
/// uses DescribeImages so that one API (and one IAM action) serves every selector term.
fn alias_patterns(
    family: &str,
    version: &str,
    kubernetes: &str,
) -> Option<Vec<(&'static str, String)>> {
    let version = if version == "latest" { "*" } else { version };
    Some(match family.to_ascii_lowercase().as_str() {
        "al2023" => ["x86_64", "arm64"]
            .into_iter()
            .map(|arch| {
                let name = format!("amazon-eks-node-al2023-{arch}-standard-{kubernetes}-{version}");
                (arch, name)
            })
            .collect(),
        "al2" => vec![
            ("x86_64", format!("amazon-eks-node-{kubernetes}-{version}")),
            (
                "arm64",
                format!("amazon-eks-arm64-node-{kubernetes}-{version}"),
            ),
        ],
        "bottlerocket" => ["x86_64", "arm64"]
            .into_iter()
            .map(|arch| {
                let name = format!("bottlerocket-aws-k8s-{kubernetes}-{arch}-{version}*");
                (arch, name)
            })
            .collect(),
        "windows2019" | "windows2022" => {
            let year = &family[7..];
            vec![(
                "x86_64",
                format!("Windows_Server-{year}-English-Core-EKS_Optimized-{kubernetes}-{version}"),
            )]
        }
        _ => return None,
    })
}

fn k8s_arch(ec2_arch: &str) -> Option<&'static str> {
    match ec2_arch {
        "x86_64" => Some("amd64"),
        "arm64" => Some("arm64"),
        _ => None,
    }
}

async fn amis(
    client: &Client,
    spec: &EC2NodeClassSpec,
    settings: &DiscoverySettings,
) -> Result<Vec<ResolvedAmi>, CloudError> {
    let kubernetes = settings.kubernetes_version.as_deref().unwrap_or("*");
    let mut found: BTreeMap<String, ResolvedAmi> = BTreeMap::new();
    for term in &spec.ami_selector_terms {
        for (owners, filters, latest_only) in ami_queries(term, kubernetes, settings) {
            let mut images = Vec::new();
            let mut pages = client
                .describe_images()
                .set_owners(owners)
                .set_filters(Some(filters))
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| cloud_error("DescribeImages", &e))?;
                for image in page.images() {
                    let (Some(id), Some(arch)) = (
                        image.image_id(),
                        image.architecture().and_then(|a| k8s_arch(a.as_str())),
                    ) else {
                        continue;
                    };
                    images.push(ResolvedAmi {
                        id: id.to_string(),
                        name: image.name().map(str::to_string),
                        architecture: arch.to_string(),
                        creation_date: image.creation_date().unwrap_or_default().to_string(),
                        deprecated: image.deprecation_time().is_some_and(|t| !t.is_empty()),
                    });
                }
            }
            newest_first(&mut images);
            if latest_only {
                images.truncate(1);
            }
            for image in images {
                found.insert(image.id.clone(), image);
            }
        }
    }
    let mut amis: Vec<_> = found.into_values().collect();
    newest_first(&mut amis);
    Ok(amis)
}

fn newest_first(amis: &mut [ResolvedAmi]) {
    amis.sort_by(|a, b| {
        a.architecture
            .cmp(&b.architecture)
            .then_with(|| b.creation_date.cmp(&a.creation_date))
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// One term's DescribeImages calls: (owners, filters, keep only the newest).
fn ami_queries(
    term: &AMISelectorTerm,
    kubernetes: &str,
    settings: &DiscoverySettings,
) -> Vec<(Option<Vec<String>>, Vec<Filter>, bool)> {
    if let Some((family, version)) = term.alias_parts() {
        let latest = version == "latest";
        return alias_patterns(family, version, kubernetes)
            .unwrap_or_default()
            .into_iter()
            .map(|(arch, name)| {
                let filters = vec![filter("name", &name), filter("architecture", arch)];
                (Some(settings.alias_owners.clone()), filters, latest)
            })
            .collect();
    }
    let mut filters = tag_filters(&term.tags);
    if let Some(id) = &term.id {
        filters.push(filter("image-id", id));
    }
    if let Some(name) = &term.name {
        filters.push(filter("name", name));
    }
    // Karpenter's default for a name without an owner: the account's own images and Amazon's, so a
    // name cannot pick up a look-alike image someone else published.
    let owners = match (&term.owner, &term.name) {
        (Some(owner), _) => Some(vec![owner.clone()]),
        (None, Some(_)) => Some(vec!["self".to_string(), "amazon".to_string()]),
        (None, None) => None,
    };
    vec![(owners, filters, false)]
}

/// The `Ready` condition's type.
pub const READY: &str = "Ready";

/// How a selector's terms read in a message (`karpenter.sh/discovery=my-cluster or id=subnet-1`).
fn describe_terms<'a>(terms: impl Iterator<Item = Vec<(&'a str, &'a str)>>) -> String {
    terms
        .map(|fields| {
            fields
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The NodeClass status for a resolution: the resolved values, and `Ready` true only when subnets,
/// security groups and AMIs all resolved (a NodeClass that is not ready launches nothing; the
/// condition's message says which selector matched nothing). `generation` is the NodeClass's
/// `metadata.generation` the status describes.
pub fn status(
    spec: &EC2NodeClassSpec,
    resolution: &Resolution,
    generation: Option<i64>,
    now: Millis,
) -> EC2NodeClassStatus {
    let subnets = resolution
        .subnets
        .iter()
        .map(|s| Subnet {
            id: s.id.clone(),
            zone: s.zone.clone(),
            zone_id: s.zone_id.clone(),
        })
        .collect();
    let security_groups = resolution
        .security_groups
        .iter()
        .map(|g| SecurityGroup {
            id: g.id.clone(),
            name: g.name.clone(),
        })
        .collect();
    let amis = resolution
        .amis
        .iter()
        .map(|a| AMI {
            id: a.id.clone(),
            name: a.name.clone(),
            requirements: vec![NodeSelectorRequirement {
                key: labels::ARCH.to_string(),
                operator: Operator::In,
                values: vec![a.architecture.clone()],
            }],
            deprecated: a.deprecated,
        })
        .collect();
    let problem = if resolution.subnets.is_empty() {
        let terms = spec.subnet_selector_terms.iter().map(|t| {
            let mut fields: Vec<_> = t
                .tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            fields.extend(t.id.as_deref().map(|id| ("id", id)));
            fields
        });
        Some((
            "SubnetsNotFound",
            format!("no subnets matched {}", describe_terms(terms)),
        ))
    } else if resolution.security_groups.is_empty() {
        let terms = spec.security_group_selector_terms.iter().map(|t| {
            let mut fields: Vec<_> = t
                .tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            fields.extend(t.id.as_deref().map(|id| ("id", id)));
            fields.extend(t.name.as_deref().map(|name| ("name", name)));
            fields
        });
        let message = format!("no security groups matched {}", describe_terms(terms));
        Some(("SecurityGroupsNotFound", message))
    } else if resolution.amis.is_empty() {
        let terms = spec.ami_selector_terms.iter().map(|t| {
            let mut fields: Vec<_> = t
                .tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            fields.extend(t.alias.as_deref().map(|alias| ("alias", alias)));
            fields.extend(t.id.as_deref().map(|id| ("id", id)));
            fields.extend(t.name.as_deref().map(|name| ("name", name)));
            fields
        });
        Some((
            "AMINotFound",
            format!("no AMIs matched {}", describe_terms(terms)),
        ))
    } else if resolution.instance_profile.is_none() {
        let message = match &spec.role {
            Some(role) => format!("no instance profile holds role {role} yet"),
            None => "neither spec.role nor spec.instanceProfile is set".to_string(),
        };
        Some(("InstanceProfileNotReady", message))
    } else {
        None
    };
    let (condition_status, reason, message) = match problem {
        Some((reason, message)) => ("False", reason, message),
        // Said even when ready: an empty message is refused by some API servers (1.20 validates
        // `""` against the CRD's `type: string` as null), and the counts help anyway.
        None => (
            "True",
            "Ready",
            format!(
                "resolved {} subnet(s), {} security group(s), {} AMI(s)",
                resolution.subnets.len(),
                resolution.security_groups.len(),
                resolution.amis.len()
            ),
        ),
    };
    let transition = k8s_openapi::jiff::Timestamp::from_millisecond(now)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    EC2NodeClassStatus {
        subnets,
        security_groups,
        capacity_reservations: Vec::new(),
        amis,
        instance_profile: resolution.instance_profile.clone(),
        conditions: vec![Condition {
            type_: READY.to_string(),
            status: condition_status.to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time: Time(transition),
            observed_generation: generation,
        }],
    }
}

/// Whether a status says the NodeClass may launch, and if not, why.
pub fn readiness(status: &EC2NodeClassStatus) -> Result<(), String> {
    match status.conditions.iter().find(|c| c.type_ == READY) {
        Some(c) if c.status == "True" => Ok(()),
        Some(c) => Err(format!("{}: {}", c.reason, c.message)),
        None => Err("the NodeClass has not been resolved".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_core::api::ec2nodeclass::{SecurityGroupSelectorTerm, SubnetSelectorTerm};

    fn spec() -> EC2NodeClassSpec {
        let discovery = BTreeMap::from([(
            "karpenter.sh/discovery".to_string(),
            "my-cluster".to_string(),
        )]);
        serde_json::from_value(serde_json::json!({
            "subnetSelectorTerms": [{"tags": discovery}],
            "securityGroupSelectorTerms": [{"tags": discovery}],
            "amiSelectorTerms": [{"alias": "al2023@latest"}],
            "role": "KarpenterNodeRole",
        }))
        .expect("a valid spec")
    }

    #[test]
    fn nothing_resolved_names_the_selector_that_matched_nothing() {
        let status = status(&spec(), &Resolution::default(), Some(3), 0);
        let ready = &status.conditions[0];
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, "SubnetsNotFound");
        assert_eq!(
            ready.message,
            "no subnets matched karpenter.sh/discovery=my-cluster"
        );
        assert_eq!(ready.observed_generation, Some(3));
        assert!(readiness(&status).is_err());
    }

    #[test]
    fn terms_are_listed_as_alternatives() {
        let mut spec = spec();
        spec.security_group_selector_terms
            .push(SecurityGroupSelectorTerm {
                id: Some("sg-1".into()),
                ..Default::default()
            });
        spec.subnet_selector_terms = vec![SubnetSelectorTerm {
            id: Some("subnet-1".into()),
            ..Default::default()
        }];
        let resolution = Resolution {
            subnets: vec![ResolvedSubnet {
                id: "subnet-1".into(),
                zone: "us-east-1a".into(),
                zone_id: None,
                available_ips: 10,
            }],
            ..Default::default()
        };
        let status = status(&spec, &resolution, None, 0);
        assert_eq!(
            status.conditions[0].message,
            "no security groups matched karpenter.sh/discovery=my-cluster or id=sg-1"
        );
    }

    #[test]
    fn ready_when_everything_resolved() {
        let resolution = Resolution {
            subnets: vec![ResolvedSubnet {
                id: "subnet-1".into(),
                zone: "us-east-1a".into(),
                zone_id: Some("use1-az6".into()),
                available_ips: 10,
            }],
            security_groups: vec![ResolvedSecurityGroup {
                id: "sg-1".into(),
                name: None,
            }],
            amis: vec![ResolvedAmi {
                id: "ami-1".into(),
                name: None,
                architecture: "arm64".into(),
                creation_date: "2024-08-07T00:00:00.000Z".into(),
                deprecated: false,
            }],
            instance_profile: None,
        };
        // A role-only class is not ready until its instance profile is made.
        let status_now = status(&spec(), &resolution, None, 0);
        assert_eq!(status_now.conditions[0].reason, "InstanceProfileNotReady");
        assert_eq!(
            status_now.conditions[0].message,
            "no instance profile holds role KarpenterNodeRole yet"
        );
        let resolution = Resolution {
            instance_profile: Some("cluster_0123".into()),
            ..resolution
        };
        let status = status(&spec(), &resolution, None, 0);
        assert_eq!(status.instance_profile.as_deref(), Some("cluster_0123"));
        assert_eq!(status.conditions[0].status, "True");
        assert_eq!(status.amis[0].requirements[0].values, vec!["arm64"]);
        assert_eq!(status.subnets[0].zone_id.as_deref(), Some("use1-az6"));
        assert!(readiness(&status).is_ok());
    }

    #[test]
    fn the_newest_non_deprecated_ami_of_the_architecture_is_chosen() {
        let ami = |id: &str, arch: &str, date: &str, deprecated| ResolvedAmi {
            id: id.into(),
            name: None,
            architecture: arch.into(),
            creation_date: date.into(),
            deprecated,
        };
        let mut amis = vec![
            ami("ami-old", "amd64", "2024-01-01", false),
            ami("ami-dep", "amd64", "2024-09-01", true),
            ami("ami-new", "amd64", "2024-08-01", false),
            ami("ami-arm", "arm64", "2024-02-01", false),
        ];
        newest_first(&mut amis);
        let resolution = Resolution {
            amis,
            ..Default::default()
        };
        assert_eq!(
            resolution.ami_for("amd64").map(|a| a.id.as_str()),
            Some("ami-new")
        );
        assert_eq!(
            resolution.ami_for("arm64").map(|a| a.id.as_str()),
            Some("ami-arm")
        );
        assert_eq!(resolution.ami_for("s390x"), None);
    }
}
