//! Builds the controller from the NodePools, EC2NodeClasses and DaemonSets the API server holds.
//!
//! The same assembly as the simulator's (`kestrel_sim::sim::replay`: pool specs, DaemonSet overhead,
//! the core planner, the built-in disruptor), over the live objects instead of a scenario. The lead is
//! moving that assembly into kestrel-core; this module goes away when it lands.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::NodeSelectorRequirement;
use kestrel_core::api::{EC2NodeClass, NodePool};
use kestrel_core::clock::Millis;
use kestrel_core::cloud::CapacityType;
use kestrel_core::cluster::{PodSpecFacts, ResourceList, Taint};
use kestrel_core::controller::disruption::Disruptor;
use kestrel_core::controller::planner::CorePlanner;
use kestrel_core::controller::{Controller, ControllerConfig, InstanceTypeInfo, PoolSpec};
use kestrel_core::model::catalog::{ec2_instance_types, ec2_on_demand_prices};
use kestrel_core::model::{Catalog, InstanceType, Offering};

/// What the controller is built from, besides the API objects.
#[derive(Debug, Clone)]
pub struct Assembly {
    pub config: ControllerConfig,
    /// The zones the cluster launches into.
    pub zones: Vec<String>,
    /// Instance types or families the region offers (empty: the whole embedded catalog).
    pub instance_types: Vec<String>,
    pub seed: u64,
}

/// Why the controller could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("the embedded EC2 catalog does not parse: {0}")]
    Catalog(String),
    #[error("NodePool {name}: {source}")]
    Pool {
        name: String,
        #[source]
        source: kestrel_core::controller::convert::PoolError,
    },
}

/// The core's catalog, the controller's instance types and the on-demand prices of a region.
pub type Region = (Catalog, Vec<InstanceTypeInfo>, HashMap<String, f64>);

/// The priced instance types allowed, sorted by name: the core's catalog, the controller's compact
/// form and the on-demand prices (a simulated cloud is built from the same prices).
pub fn catalog(allowed: &[String], zones: &[String]) -> Result<Region, AssembleError> {
    let types = ec2_instance_types().map_err(|e| AssembleError::Catalog(e.to_string()))?;
    let prices = ec2_on_demand_prices().map_err(|e| AssembleError::Catalog(e.to_string()))?;
    let mut chosen: Vec<(&InstanceType, f64)> = types
        .iter()
        .filter_map(|t| Some((t, *prices.get(&t.name)?)))
        .filter(|(t, _)| {
            allowed.is_empty() || {
                let family = t.name.split('.').next().unwrap_or(&t.name);
                allowed.iter().any(|a| a == &t.name || a == family)
            }
        })
        .collect();
    chosen.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let mut offerings = Vec::new();
    for (i, (_, price)) in chosen.iter().enumerate() {
        for zone in zones {
            offerings.push(Offering {
                instance_type: i,
                zone: zone.clone(),
                capacity_type: kestrel_core::model::CapacityType::OnDemand,
                price: *price,
                available: true,
                interruption: 0.0,
                capacity_score: -1.0,
            });
        }
    }
    let catalog = Catalog::new(
        chosen.iter().map(|(t, _)| (*t).clone()).collect(),
        offerings,
    )
    .map_err(|e| AssembleError::Catalog(e.to_string()))?;
    let infos = chosen
        .iter()
        .map(|(t, p)| InstanceTypeInfo {
            name: t.name.clone(),
            labels: t.labels.clone(),
            allocatable: t.allocatable.clone(),
            on_demand_price: *p,
        })
        .collect();
    let price_map = chosen.iter().map(|(t, p)| (t.name.clone(), *p)).collect();
    Ok((catalog, infos, price_map))
}

/// The loop's view of a NodePool.
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
        labels: pool
            .spec
            .template
            .metadata
            .as_ref()
            .map(|m| m.labels.clone())
            .unwrap_or_default(),
        taints: spec
            .taints
            .iter()
            .filter_map(|t| {
                Some(Taint::new(
                    &t.key,
                    t.value.as_deref(),
                    kestrel_core::model::TaintEffect::parse(&t.effect)?,
                ))
            })
            .collect(),
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
    }
}

/// The controller for these objects, with the built-in ranker and disruptor.
pub fn controller(
    assembly: &Assembly,
    pools: &[NodePool],
    classes: &[EC2NodeClass],
    daemonsets: &[Arc<PodSpecFacts>],
    now: Millis,
    deleting: crate::deletion::Deleting,
) -> Result<Controller, AssembleError> {
    let (core_catalog, types, _) = catalog(&assembly.instance_types, &assembly.zones)?;
    let contract_catalog = kestrel_core::provisioning::ranking::contract_catalog(&core_catalog);
    let core_pools = pools
        .iter()
        .map(|p| {
            kestrel_core::controller::convert::node_pool(p).map_err(|source| AssembleError::Pool {
                name: p.metadata.name.clone().unwrap_or_default(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let planner = CorePlanner::new(
        Arc::new(kestrel_core::policy::PolicyRegistry::native()),
        kestrel_core::policy::defaults::NativeRanker::label(),
        core_pools,
        daemonsets,
        core_catalog.instance_types,
    );
    let ds = daemonsets.to_vec();
    // The DaemonSets a new node of the pool will run (they size the node), as the simulator does.
    let overhead = Box::new(move |pool: &PoolSpec, it: &InstanceTypeInfo| {
        ds.iter()
            .filter(|d| {
                kestrel_core::scheduling::fit::check_taints(&d.compiled, &pool.taints).is_ok()
            })
            .filter(|d| {
                kestrel_core::label_fit::labels_fit(&d.spec, |k| {
                    pool.label(it, "", CapacityType::OnDemand, k)
                })
                .is_ok()
            })
            .fold(ResourceList::default(), |mut acc, d| {
                acc.add(d.requests());
                acc
            })
    });
    Ok(Controller::new(
        assembly.config,
        pools.iter().map(pool_spec).collect(),
        types,
        contract_catalog,
        assembly.seed,
        assembly.zones.clone(),
        overhead,
        Box::new(planner),
        Box::new(crate::deletion::DeletionStep::new(
            Box::new(Disruptor::from_manifests(pools, classes, now)),
            deleting,
        )),
    ))
}
