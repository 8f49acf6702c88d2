//! Kestrel: a Kubernetes node autoscaler for EC2 whose judgement calls run as WebAssembly policies.
//!
//! The workspace is a functional core with adapters at the edge (see `docs/architecture.md`), one
//! crate each, so Cargo enforces the layering:
//! - `kestrel-core` (pure, no I/O crate): [`api`], [`model`], [`scheduling`], [`provisioning`],
//!   [`disruption`], [`interruption`], [`controller`], and the edge traits [`cloud`], [`cluster`];
//! - `kestrel-policy`: [`policy`], the wasm sandbox and the native default policies;
//! - `kestrel-sim`: [`sim`] and the simulated cloud and cluster (`cloud::sim`, `cluster::sim`);
//! - this crate: the `kestrel` binary's commands ([`cli`]), re-exporting the others.
pub use kestrel_core::{
    api, clock, controller, disruption, interruption, label_fit, model, provisioning, scheduling,
};
pub use kestrel_policy as policy;
pub use kestrel_sim::{cloud, cluster, sim};

pub mod cli;
