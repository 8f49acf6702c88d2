//! Kestrel: a Kubernetes node autoscaler for EC2 whose judgement calls run as WebAssembly policies.
//!
//! The crate is a functional core with adapters at the edge (see `docs/architecture.md`):
//! - core (pure, deterministic): [`model`], [`scheduling`], [`provisioning`], [`disruption`],
//!   [`interruption`], decided over a [`model::Snapshot`] and returning actions with explanations;
//! - policies: [`policy`] runs the ranker, consolidator and budgeter (wasm or native defaults);
//! - edges: [`cloud`], [`cluster`] and [`clock`], each with a simulated implementation;
//! - wiring: [`controller`] (snapshot -> core -> actions) and [`sim`] (the offline simulator).
pub mod api;
pub mod cli;
pub mod clock;
pub mod cloud;
pub mod cluster;
pub mod controller;
pub mod disruption;
pub mod interruption;
pub mod model;
pub mod policy;
pub mod provisioning;
pub mod scheduling;
pub mod sim;
