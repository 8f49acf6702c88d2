//! The scheduling simulation: kube-scheduler's rules for what fits where, and the cost-based packer.
pub mod lp;
pub mod packer;
