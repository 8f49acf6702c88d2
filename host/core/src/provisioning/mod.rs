//! Provisioning: a batch of pending pods -> bindings to existing capacity and new NodeClaims to launch.
//!
//! [`plan`] is the entry point. It is pure: it reads a [`Snapshot`] and asks each NodePool's ranker (one
//! `rank` call per NodePool per batch) to order and score the offerings; the packer in
//! [`crate::scheduling`] then decides instance types and counts by the scores.

pub mod check;
pub mod plan;
mod planner;
pub mod ranking;

pub use plan::{
    Binding, BindingTarget, PlannedClaim, PoolRanking, ProvisioningPlan, RankedOffering,
    Unschedulable,
};
pub use planner::{Planner, plan};
pub use ranking::{RankerProvider, RegistryRankers, SingleRanker};
