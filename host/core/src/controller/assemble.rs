//! Assembling a controller from what a cluster declares: the Karpenter v1 NodePools and EC2NodeClasses,
//! the DaemonSets, the instance-type catalog and the policies.
//!
//! The simulator (from a scenario) and `kestrel run` (from the API server's objects and the cloud's
//! catalog) build their controller here, so both run the same provisioner, disruption step, pool views and
//! DaemonSet overhead. What differs between them is only where the inputs come from.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::NodeSelectorRequirement;

use super::convert::{self, PoolError};
use super::disruption::Disruptor;
use super::planner::CorePlanner;
use super::provision::Provisioner;
use super::{
    Controller, ControllerConfig, DaemonOverhead, DisruptionStep, InstanceTypeInfo, PoolSpec,
};
use crate::api::{EC2NodeClass, NodePool};
use crate::clock::Millis;
use crate::cloud::CapacityType;
use crate::cluster::registration::{model_taints, template_labels};
use crate::cluster::{PodSpecFacts, ResourceList};
use crate::model::catalog::{ec2_instance_types, ec2_on_demand_prices};
use crate::model::{Catalog, InstanceType, Offering};
use crate::policy::PolicyProvider;

/// Everything a controller is built from.
pub struct Setup<'a> {
    pub config: ControllerConfig,
    pub node_pools: &'a [NodePool],
    pub node_classes: &'a [EC2NodeClass],
    /// The DaemonSets' pod templates (their pods land on every node they tolerate and select).
    pub daemonsets: &'a [Arc<PodSpecFacts>],
    /// The instance types in the core's form, with their on-demand offerings per zone.
    pub catalog: &'a Catalog,
    /// The same types in the controller's compact form (with on-demand prices).
    pub instance_types: Vec<InstanceTypeInfo>,
    pub zones: Vec<String>,
    pub seed: u64,
    /// When the controller starts (drift and expiry timers count from here for existing nodes).
    pub start: Millis,
}

/// Builds the controller. `provisioner` and `disruption` replace the built-in ones when given (the
/// simulator's `--compare` and its tests); otherwise provisioning ranks with each NodePool's ranker from
/// `registry` and disruption runs the built-in consolidator and budgeter.
pub fn controller(
    setup: &Setup<'_>,
    registry: Arc<dyn PolicyProvider>,
    ranker_label: String,
    provisioner: Option<Box<dyn Provisioner>>,
    disruption: Option<Box<dyn DisruptionStep>>,
) -> Result<Controller, PoolError> {
    let provisioner = match provisioner {
        Some(p) => p,
        None => planner(setup, registry, ranker_label)?,
    };
    let disruption = disruption.unwrap_or_else(|| {
        Box::new(Disruptor::from_manifests(
            setup.node_pools,
            setup.node_classes,
            setup.start,
        ))
    });
    Ok(Controller::new(
        setup.config,
        setup.node_pools.iter().map(pool_spec).collect(),
        setup.instance_types.clone(),
        crate::provisioning::ranking::contract_catalog(setup.catalog),
        setup.seed,
        setup.zones.clone(),
        daemon_overhead(setup.daemonsets),
        provisioner,
        disruption,
    ))
}

/// The provisioning core over the setup's NodePools, each ranking with its ranker from `registry`.
pub fn planner(
    setup: &Setup<'_>,
    registry: Arc<dyn PolicyProvider>,
    ranker_label: String,
) -> Result<Box<dyn Provisioner>, PoolError> {
    let pools = setup
        .node_pools
        .iter()
        .map(convert::node_pool)
        .collect::<Result<_, _>>()?;
    Ok(Box::new(CorePlanner::new(
        registry,
        ranker_label,
        pools,
        setup.daemonsets,
        setup.catalog.instance_types.clone(),
    )))
}

/// The DaemonSet requests a new node of a pool and instance type carries: those of the DaemonSets that
/// tolerate the pool's taints and select its labels.
pub fn daemon_overhead(daemonsets: &[Arc<PodSpecFacts>]) -> DaemonOverhead {
    let daemonsets = daemonsets.to_vec();
    Box::new(move |pool: &PoolSpec, it: &InstanceTypeInfo| {
        daemonsets
            .iter()
            .filter(|ds| crate::scheduling::fit::check_taints(&ds.compiled, &pool.taints).is_ok())
            .filter(|ds| {
                crate::label_fit::labels_fit(&ds.spec, |k| {
                    pool.label(it, "", CapacityType::OnDemand, k)
                })
                .is_ok()
            })
            .fold(ResourceList::default(), |mut acc, ds| {
                acc.add(ds.requests());
                acc
            })
    })
}

/// The loop's view of a NodePool from its Karpenter v1 manifest.
pub fn pool_spec(pool: &NodePool) -> PoolSpec {
    let spec = &pool.spec.template.spec;
    let disruption = pool.spec.disruption.clone().unwrap_or_default();
    PoolSpec {
        name: pool.metadata.name.clone().unwrap_or_default(),
        weight: pool.spec.weight.unwrap_or(0),
        requirements: spec
            .requirements
            .iter()
            .map(|r| NodeSelectorRequirement {
                key: r.key.clone(),
                operator: r.operator.as_str().to_string(),
                values: Some(r.values.clone()),
            })
            .collect(),
        labels: template_labels(&pool.spec.template),
        taints: model_taints(&spec.taints),
        consolidation_policy: format!("{:?}", disruption.consolidation_policy()),
        consolidate_after_ms: disruption
            .consolidate_after()
            .ok()
            .flatten()
            .map(|d| d.as_millis() as Millis),
        expire_after_ms: spec
            .expire_after()
            .ok()
            .flatten()
            .map(|d| d.as_millis() as Millis),
        replace_on_rebalance: pool
            .metadata
            .annotations
            .as_ref()
            .is_some_and(crate::interruption::replaces_on_rebalance),
        template: Arc::new(pool.spec.template.clone()),
    }
}

/// A region's instance types: the core's catalog (on-demand offerings in each zone; spot prices come
/// from the cloud), the controller's compact form, and the on-demand prices by type.
pub type Region = (Catalog, Vec<InstanceTypeInfo>, HashMap<String, f64>);

/// The embedded catalog could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the embedded EC2 catalog: {0}")]
pub struct CatalogError(String);

/// Instance types as the cloud describes them (DescribeInstanceTypes), with the zones each is
/// offered in (DescribeInstanceTypeOfferings): what `kestrel run --cloud aws` plans with instead of
/// the embedded catalog.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DescribedTypes {
    pub types: Vec<InstanceType>,
    /// The zones each type is offered in; a type missing here is offered nowhere.
    pub zones: BTreeMap<String, BTreeSet<String>>,
}

/// The embedded EC2 catalog's priced types that `allowed` names (types or families; empty: all),
/// sorted by name, offered on demand in `zones` — the simulator's region, and `kestrel run`'s when
/// the instance types do not come from the cloud.
pub fn embedded_region(allowed: &[String], zones: &[String]) -> Result<Region, CatalogError> {
    let types = ec2_instance_types().map_err(|e| CatalogError(e.to_string()))?;
    region(types, None, allowed, zones)
}

/// The described types that `allowed` names and the embedded on-demand price table prices (a type
/// without a known price is left out: it must never look free), each offered on demand in those of
/// `zones` the cloud offers it in.
pub fn described_region(
    described: &DescribedTypes,
    allowed: &[String],
    zones: &[String],
) -> Result<Region, CatalogError> {
    region(&described.types, Some(&described.zones), allowed, zones)
}

fn region(
    types: &[InstanceType],
    offered: Option<&BTreeMap<String, BTreeSet<String>>>,
    allowed: &[String],
    zones: &[String],
) -> Result<Region, CatalogError> {
    let prices = ec2_on_demand_prices().map_err(|e| CatalogError(e.to_string()))?;
    let mut chosen: Vec<(&InstanceType, f64, Option<BTreeSet<String>>)> = types
        .iter()
        .filter_map(|t| {
            let offered_zones = match offered {
                None => None,
                Some(offered) => {
                    let in_zones: BTreeSet<String> = offered
                        .get(&t.name)?
                        .iter()
                        .filter(|z| zones.contains(z))
                        .cloned()
                        .collect();
                    if in_zones.is_empty() {
                        return None; // offered in none of the zones launched into
                    }
                    Some(in_zones)
                }
            };
            Some((t, *prices.get(&t.name)?, offered_zones))
        })
        .filter(|(t, _, _)| {
            allowed.is_empty() || {
                let family = t.name.split('.').next().unwrap_or(&t.name);
                allowed.iter().any(|a| a == &t.name || a == family)
            }
        })
        .collect();
    chosen.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let mut offerings = Vec::new();
    for (i, (_, price, offered_zones)) in chosen.iter().enumerate() {
        let in_type_zones = |z: &&String| offered_zones.as_ref().is_none_or(|o| o.contains(*z));
        for zone in zones.iter().filter(in_type_zones) {
            offerings.push(Offering {
                instance_type: i,
                zone: zone.clone(),
                capacity_type: CapacityType::OnDemand,
                price: *price,
                available: true,
                interruption: 0.0,
                capacity_score: -1.0,
            });
        }
    }
    let catalog = Catalog::new(
        chosen.iter().map(|(t, _, _)| (*t).clone()).collect(),
        offerings,
    )
    .map_err(|e| CatalogError(e.to_string()))?;
    let infos = chosen
        .iter()
        .map(|(t, p, zones)| InstanceTypeInfo {
            offered_zones: zones.clone(),
            ..info_of(t, *p)
        })
        .collect();
    let price_map = chosen
        .iter()
        .map(|(t, p, _)| (t.name.clone(), *p))
        .collect();
    Ok((catalog, infos, price_map))
}

/// The controller's view of a catalog instance type.
pub fn info_of(t: &InstanceType, on_demand_price: f64) -> InstanceTypeInfo {
    InstanceTypeInfo {
        allocatable: t.allocatable.clone(),
        name: t.name.clone(),
        labels: t.labels.clone(),
        on_demand_price,
        offered_zones: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones(z: &[&str]) -> Vec<String> {
        z.iter().map(|z| z.to_string()).collect()
    }

    #[test]
    fn a_described_type_is_offered_only_in_its_zones_and_an_unpriced_or_unoffered_one_not_at_all() {
        let embedded = ec2_instance_types().expect("embedded catalog");
        let pick = |name: &str| {
            let mut t = embedded.iter().find(|t| t.name == name).unwrap().clone();
            Arc::make_mut(&mut t.labels).insert("probe".into(), name.into());
            t
        };
        let mut unpriced = pick("m5.large");
        unpriced.name = "m5.unpriced".into();
        let described = DescribedTypes {
            types: vec![
                pick("m5.large"),
                pick("c5.large"),
                pick("r5.large"),
                unpriced,
            ],
            zones: BTreeMap::from([
                (
                    "m5.large".into(),
                    BTreeSet::from(["us-east-1a".into(), "us-east-1b".into()]),
                ),
                ("c5.large".into(), BTreeSet::from(["us-east-1e".into()])),
                ("m5.unpriced".into(), BTreeSet::from(["us-east-1a".into()])),
            ]),
        };
        let (catalog, infos, prices) =
            described_region(&described, &[], &zones(&["us-east-1a", "us-east-1c"])).unwrap();
        // c5.large only in a zone not launched into, r5.large offered nowhere, no price for the third.
        assert_eq!(
            infos.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["m5.large"]
        );
        assert_eq!(
            infos[0].labels["probe"], "m5.large",
            "the described labels are kept"
        );
        assert!(infos[0].offered_in("us-east-1a") && !infos[0].offered_in("us-east-1c"));
        let offered: Vec<_> = catalog.offerings.iter().map(|o| o.zone.as_str()).collect();
        assert_eq!(offered, ["us-east-1a"]);
        assert_eq!(prices.len(), 1);

        // The embedded region offers every type in every zone.
        let (catalog, infos, _) =
            embedded_region(&["m5.large".into()], &zones(&["a", "b"])).unwrap();
        assert_eq!(catalog.offerings.len(), 2);
        assert!(infos[0].offered_in("b"));
    }
}
