//! Kestrel's simulator: the in-memory cluster and the virtual cloud behind the core's edges, the
//! scenario format, the replay through the real controller (its commands carried out inline or
//! deferred on a virtual clock), the report and the chart. Every decision is the core's.
pub use kestrel_core::{
    api, clock, controller, disruption, interruption, label_fit, model, provisioning, scheduling,
};
/// The policy runtime (wasm registry and the core's policy traits it re-exports).
pub use kestrel_policy as policy;

/// The cloud edge: the core's types, and the virtual cloud.
pub mod cloud {
    pub use kestrel_core::cloud::*;
    pub mod sim;
}

/// The cluster edge: the core's types, and the in-memory cluster.
pub mod cluster {
    pub use kestrel_core::cluster::*;
    pub mod sim;
}

pub mod sim;
