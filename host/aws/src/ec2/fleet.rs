//! CreateFleet `instant`: the overrides a claim's ranked offerings become, and what the answer means
//! (the launched instance, and the offerings EC2 refused on the way).
//!
//! One fleet request buys one capacity type, so the ranked offerings are grouped by capacity type in
//! the order the ranker put them (the best offering's type first); within a request the overrides
//! are the offerings × the subnets of their zone (most free addresses first), at most
//! [`MAX_OVERRIDES`] as Karpenter, with priorities in the ranker's order (`prioritized` on-demand,
//! `capacity-optimized-prioritized` spot).

use std::collections::BTreeMap;

use aws_sdk_ec2::operation::create_fleet::CreateFleetOutput;
use aws_sdk_ec2::types::FleetLaunchTemplateOverrides;
use kestrel_core::cloud::{CapacityType, Offering, OfferingError, OfferingFailure};

use super::discovery::ResolvedSubnet;

/// EC2 accepts more, but Karpenter caps a fleet request's overrides here (the request size, and
/// the time EC2 takes to evaluate them).
pub const MAX_OVERRIDES: usize = 60;

/// One override: an offering (by its rank in the claim) in one subnet.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub rank: usize,
    pub instance_type: String,
    pub zone: String,
    pub subnet_id: String,
    /// Lower is preferred; the offering's rank.
    pub priority: f64,
}

/// One CreateFleet request's overrides, grouped by architecture (one launch template each: an
/// architecture's AMI).
#[derive(Debug, Clone, PartialEq)]
pub struct FleetPlan {
    pub capacity_type: CapacityType,
    pub by_architecture: BTreeMap<String, Vec<Override>>,
}

/// The fleet requests for a claim's ranked offerings, best capacity type first, and the offerings
/// that cannot be requested at all (no subnet in their zone, an architecture without an AMI, a
/// capacity type CreateFleet is not used for).
pub fn plan(
    offerings: &[Offering],
    subnets: &[ResolvedSubnet],
    architecture_of: impl Fn(&str) -> Option<String>,
) -> (Vec<FleetPlan>, Vec<OfferingFailure>) {
    let mut plans: Vec<FleetPlan> = Vec::new();
    let mut counts: BTreeMap<CapacityType, usize> = BTreeMap::new();
    let mut unusable = Vec::new();
    for (rank, offering) in offerings.iter().enumerate() {
        let fail = |error| OfferingFailure {
            offering: offering.clone(),
            error,
        };
        // Reserved capacity is launched against a capacity reservation, which this adapter does
        // not target yet.
        if offering.capacity_type == CapacityType::Reserved {
            unusable.push(fail(OfferingError::Unsupported));
            continue;
        }
        let Some(architecture) = architecture_of(&offering.instance_type) else {
            unusable.push(fail(OfferingError::Unsupported));
            continue;
        };
        let zone_subnets: Vec<_> = subnets.iter().filter(|s| s.zone == offering.zone).collect();
        if zone_subnets.is_empty() {
            unusable.push(fail(OfferingError::Unsupported));
            continue;
        }
        let index = match plans
            .iter()
            .position(|p| p.capacity_type == offering.capacity_type)
        {
            Some(index) => index,
            None => {
                plans.push(FleetPlan {
                    capacity_type: offering.capacity_type,
                    by_architecture: BTreeMap::new(),
                });
                plans.len() - 1
            }
        };
        let count = counts.entry(offering.capacity_type).or_default();
        for subnet in zone_subnets {
            if *count == MAX_OVERRIDES {
                break;
            }
            *count += 1;
            plans[index]
                .by_architecture
                .entry(architecture.clone())
                .or_default()
                .push(Override {
                    rank,
                    instance_type: offering.instance_type.clone(),
                    zone: offering.zone.clone(),
                    subnet_id: subnet.id.clone(),
                    priority: rank as f64,
                });
        }
    }
    plans.retain(|p| !p.by_architecture.is_empty());
    (plans, unusable)
}

/// The instance a fleet answer launched: its id and the offering it took.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetInstance {
    pub id: String,
    pub offering: Offering,
}

/// Reads a CreateFleet answer: the first instance launched (if any) and one failure per refused
/// offering (the same offering refused in several subnets counts once).
pub fn read_answer(
    answer: &CreateFleetOutput,
    capacity_type: CapacityType,
    offerings: &[Offering],
    subnets: &[ResolvedSubnet],
) -> (Option<FleetInstance>, Vec<OfferingFailure>) {
    let find = |overrides: Option<&FleetLaunchTemplateOverrides>| -> Option<Offering> {
        let overrides = overrides?;
        let instance_type = overrides.instance_type()?.as_str();
        let zone = overrides
            .availability_zone()
            .map(str::to_string)
            .or_else(|| {
                let subnet = overrides.subnet_id()?;
                subnets
                    .iter()
                    .find(|s| s.id == subnet)
                    .map(|s| s.zone.clone())
            })?;
        offerings
            .iter()
            .find(|o| {
                o.capacity_type == capacity_type
                    && o.instance_type == instance_type
                    && o.zone == zone
            })
            .cloned()
    };
    let launched = answer.instances().iter().find_map(|instance| {
        let id = instance.instance_ids().first()?.clone();
        let overrides = instance
            .launch_template_and_overrides()
            .and_then(|l| l.overrides());
        let offering = find(overrides).or_else(|| {
            // The answer did not say which override it took: the instance type and the
            // best-ranked offering of that type stand in (EC2 always reports the type).
            let instance_type = instance.instance_type()?.as_str();
            offerings
                .iter()
                .find(|o| o.capacity_type == capacity_type && o.instance_type == instance_type)
                .cloned()
        })?;
        Some(FleetInstance { id, offering })
    });
    let mut failures: Vec<OfferingFailure> = Vec::new();
    for error in answer.errors() {
        let overrides = error
            .launch_template_and_overrides()
            .and_then(|l| l.overrides());
        let Some(offering) = find(overrides) else {
            continue;
        };
        if failures.iter().any(|f| f.offering == offering) {
            continue;
        }
        failures.push(OfferingFailure {
            offering,
            error: offering_error(error.error_code().unwrap_or("Unknown")),
        });
    }
    (launched, failures)
}

/// A per-override fleet error code as the core's offering error.
pub fn offering_error(code: &str) -> OfferingError {
    match code {
        "InsufficientInstanceCapacity" => OfferingError::InsufficientCapacity,
        "Unsupported" | "UnsupportedOperation" | "InvalidFleetConfiguration" => {
            OfferingError::Unsupported
        }
        other => OfferingError::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offering(instance_type: &str, zone: &str, capacity_type: CapacityType) -> Offering {
        Offering {
            instance_type: instance_type.into(),
            zone: zone.into(),
            capacity_type,
            price: 0.1,
        }
    }

    fn subnet(id: &str, zone: &str) -> ResolvedSubnet {
        ResolvedSubnet {
            id: id.into(),
            zone: zone.into(),
            zone_id: None,
            available_ips: 100,
        }
    }

    fn arch(instance_type: &str) -> Option<String> {
        match instance_type {
            "m6g.large" => Some("arm64".into()),
            "bogus" => None,
            _ => Some("amd64".into()),
        }
    }

    #[test]
    fn offerings_become_overrides_per_capacity_type_in_rank_order() {
        let offerings = [
            offering("m5.large", "a", CapacityType::Spot),
            offering("m6g.large", "b", CapacityType::Spot),
            offering("m5.large", "a", CapacityType::OnDemand),
            offering("c5.large", "c", CapacityType::Spot),
            offering("bogus", "a", CapacityType::Spot),
        ];
        let subnets = [subnet("s-a1", "a"), subnet("s-a2", "a"), subnet("s-b", "b")];
        let (plans, unusable) = plan(&offerings, &subnets, arch);
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].capacity_type, CapacityType::Spot);
        let amd: Vec<_> = plans[0].by_architecture["amd64"]
            .iter()
            .map(|o| (o.subnet_id.as_str(), o.priority))
            .collect();
        assert_eq!(amd, vec![("s-a1", 0.0), ("s-a2", 0.0)]);
        assert_eq!(plans[0].by_architecture["arm64"][0].priority, 1.0);
        assert_eq!(plans[1].capacity_type, CapacityType::OnDemand);
        // c5.large in zone c has no subnet; bogus has no architecture.
        let refused: Vec<_> = unusable
            .iter()
            .map(|f| f.offering.instance_type.as_str())
            .collect();
        assert_eq!(refused, vec!["c5.large", "bogus"]);
    }

    #[test]
    fn at_most_sixty_overrides_per_request() {
        let offerings: Vec<_> = (0..40)
            .map(|i| offering(&format!("m5.{i}xlarge"), "a", CapacityType::Spot))
            .collect();
        let subnets = [subnet("s-1", "a"), subnet("s-2", "a")];
        let (plans, _) = plan(&offerings, &subnets, arch);
        let overrides = &plans[0].by_architecture["amd64"];
        assert_eq!(overrides.len(), MAX_OVERRIDES);
        assert!(overrides.windows(2).all(|w| w[0].priority <= w[1].priority));
    }

    #[test]
    fn fleet_error_codes_map_to_offering_errors() {
        assert_eq!(
            offering_error("InsufficientInstanceCapacity"),
            OfferingError::InsufficientCapacity
        );
        assert_eq!(
            offering_error("VcpuLimitExceeded"),
            OfferingError::Other("VcpuLimitExceeded".into())
        );
    }
}
