//! Builds the controller from the NodePools, EC2NodeClasses and DaemonSets the API server holds,
//! through the core's assembly (`kestrel_core::controller::assemble`, the simulator's too), with the
//! region's catalog narrowed to the configured zones and instance families.

use std::sync::Arc;

use kestrel_core::api::{EC2NodeClass, NodePool};
use kestrel_core::clock::Millis;
use kestrel_core::cluster::PodSpecFacts;
use kestrel_core::controller::assemble::Setup;
use kestrel_core::controller::disruption::Disruptor;
use kestrel_core::controller::{Controller, ControllerConfig};
use kestrel_core::disruption::RegistryPolicies;
use kestrel_core::policy::PolicyProvider;

/// What the controller is built from, besides the API objects.
#[derive(Debug, Clone)]
pub struct Assembly {
    pub config: ControllerConfig,
    /// The zones the cluster launches into.
    pub zones: Vec<String>,
    /// Instance types or families the region offers (empty: the whole catalog).
    pub instance_types: Vec<String>,
    pub seed: u64,
    /// The region's instance types as the cloud describes them, offered in their zones (None: the
    /// embedded catalog, every type in every zone).
    pub described: Option<Arc<DescribedTypes>>,
}

/// Why the controller could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("the instance-type catalog: {0}")]
    Catalog(String),
    #[error("a NodePool cannot be planned for")]
    Pool(#[source] kestrel_core::controller::convert::PoolError),
}

/// The core's catalog, the controller's instance types and the on-demand prices of a region.
pub use kestrel_core::controller::assemble::{DescribedTypes, Region};

/// The priced instance types allowed, sorted by name: the core's catalog, the controller's compact
/// form and the on-demand prices (a simulated cloud is built from the same prices).
pub fn catalog(allowed: &[String], zones: &[String]) -> Result<Region, AssembleError> {
    kestrel_core::controller::assemble::embedded_region(allowed, zones)
        .map_err(|e| AssembleError::Catalog(e.to_string()))
}

/// The region the controller plans with: the described types where the cloud has described them,
/// else the embedded catalog.
pub fn region(assembly: &Assembly) -> Result<Region, AssembleError> {
    match &assembly.described {
        Some(described) => kestrel_core::controller::assemble::described_region(
            described,
            &assembly.instance_types,
            &assembly.zones,
        )
        .map_err(|e| AssembleError::Catalog(e.to_string())),
        None => catalog(&assembly.instance_types, &assembly.zones),
    }
}

/// The controller for these objects: each NodePool ranks, consolidates and budgets with its policies
/// from `policies` (the hot-swapped registry: its handles follow swaps), and the built-in disruptor
/// runs behind the deletion step.
pub fn controller(
    assembly: &Assembly,
    pools: &[NodePool],
    classes: &[EC2NodeClass],
    daemonsets: &[Arc<PodSpecFacts>],
    now: Millis,
    deleting: crate::deletion::Deleting,
    policies: Arc<dyn PolicyProvider>,
) -> Result<Controller, AssembleError> {
    let (core_catalog, types, _) = region(assembly)?;
    let setup = Setup {
        config: assembly.config,
        node_pools: pools,
        node_classes: classes,
        daemonsets,
        catalog: &core_catalog,
        instance_types: types,
        zones: assembly.zones.clone(),
        seed: assembly.seed,
        start: now,
    };
    let disruption = Box::new(crate::deletion::DeletionStep::new(
        Box::new(
            Disruptor::from_manifests(pools, classes, now)
                .with_policies(Box::new(RegistryPolicies::new(policies.clone())))
                .labelled("each NodePool's consolidator and budgeter".into()),
        ),
        deleting,
    ));
    kestrel_core::controller::assemble::controller(
        &setup,
        policies,
        "each NodePool's ranker (kestrel.dev/ranker)".into(),
        None,
        Some(disruption),
    )
    .map_err(AssembleError::Pool)
}
