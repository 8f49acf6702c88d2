//! The vocabulary of the core: quantities, resources, requirements, labels, instance types, offerings,
//! pods, nodes and the [`Snapshot`] the decisions read (owner: provisioning core).
pub mod catalog;
pub mod label_map;
pub mod labels;
pub mod node;
pub mod node_pool;
pub mod pod;
pub mod quantity;
pub mod requirements;
pub mod resources;
pub mod snapshot;
pub mod taints;

pub use catalog::{CapacityType, Catalog, CatalogError, InstanceType, Offering, SpotQuote};
pub use label_map::{LabelLookup, LayeredLabels};
pub use node::{Launched, Node, NodeClaim};
pub use node_pool::{
    Budget, BudgetNodes, ConsolidationPolicy, Disruption, DisruptionReason, NodePool, PolicyRefs,
};
pub use pod::{
    HostPort, LabelSelector, Owner, Pod, PodAffinityTerm, PodError, PodSpec, TopologySpread,
    WeightedPodAffinityTerm, WhenUnsatisfiable,
};
pub use quantity::Quantity;
pub use requirements::{
    Incompatible, Operator, Requirement, RequirementError, Requirements, ValueSet,
};
pub use resources::{ResourceList, RoomCache};
pub use snapshot::{DaemonSet, IntOrPercent, PodDisruptionBudget, Snapshot};
pub use taints::{Taint, TaintEffect, Toleration, TolerationOperator};
