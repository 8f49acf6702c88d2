//! The scheduling simulation: kube-scheduler's rules for what fits where ([`fit`]), and the cost-based
//! packer ([`packer`], over the fluid LP in [`lp`]), and the exact solve of small mixed batches with
//! Karpenter's greedy as its floor ([`exact`]).
pub mod exact;
pub mod fit;
pub mod lp;
pub mod packer;

pub use fit::{Failure, Slot};
