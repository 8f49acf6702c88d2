//! The scheduling simulation: kube-scheduler's rules for what fits where ([`fit`]), and the cost-based
//! packer ([`packer`], over the fluid LP in [`lp`]).
pub mod fit;
pub mod lp;
pub mod packer;

pub use fit::{Failure, Slot};
