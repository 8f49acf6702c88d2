//! The Karpenter v1 API Kestrel serves: `karpenter.sh/v1` [`NodePool`] and [`NodeClaim`],
//! `karpenter.k8s.aws/v1` [`EC2NodeClass`], with Karpenter's defaults exposed as accessors, the value
//! helpers the core needs ([`duration`], [`budget`]), and validation with field-pathed errors.
//!
//! Kestrel's own settings are annotations (see `docs/api.md`), never new fields in this schema.
pub mod budget;
pub mod common;
pub mod crd;
pub mod duration;
pub mod ec2nodeclass;
pub mod labels;
pub mod manifest;
pub mod migrate;
pub mod nodeclaim;
pub mod nodepool;
pub mod validate;

pub use budget::{BudgetNodes, BudgetSchedule};
pub use common::{
    NodeClassReference, NodeSelectorRequirement, NodeSelectorRequirementWithMinValues, Operator,
    ResourceList,
};
pub use duration::{parse_duration, parse_nillable_duration};
pub use ec2nodeclass::{EC2NodeClass, EC2NodeClassSpec, EC2NodeClassStatus};
pub use nodeclaim::{NodeClaim, NodeClaimSpec, NodeClaimStatus};
pub use nodepool::{
    Budget, ConsolidationPolicy, Disruption, DisruptionReason, NodeClaimTemplate,
    NodeClaimTemplateSpec, NodePool, NodePoolSpec, NodePoolStatus,
};
