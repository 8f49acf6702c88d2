//! Kestrel's Kubernetes adapter: what runs in the cluster.
//!
//! - [`watch`]: reflectors over the objects the controller reads, with a caches-synced gate;
//! - [`snapshot`]: one consistent [`kestrel_core::cluster::ClusterState`] per tick from those stores;
//! - [`record`]: the claim record as the NodeClaim object carries it;
//! - [`executor`]: the controller's cluster commands against the API server, its cloud commands
//!   through [`kestrel_core::cloud::execute_cloud`];
//! - [`registration`]: a launched instance's Node is matched to its NodeClaim by providerID and
//!   initialized with its NodePool's labels and taints;
//! - [`deletion`]: a NodeClaim or Node deleted by hand is drained like a decided disruption;
//! - [`volumes`]: the zones a pod's persistent volumes pin it to;
//! - [`status`]: NodePool status (nodes, resources);
//! - [`interruptions`]: interruption messages from a queue to the controller and, acknowledged,
//!   back to be deleted;
//! - [`hotswap`]: NodePools' policies from ConfigMaps, compiled off the decision thread and swapped;
//! - [`file_cloud`]: a simulated cloud kept in a file, outliving the process (`--cloud-state`);
//! - [`log_format`]: `--log-format json`, Karpenter-shaped JSON lines;
//! - [`run`]: the loop that ties them to the core's [`kestrel_core::controller::Controller`].
//!
//! The decisions are all the core's; this crate only reads, writes and waits.
pub mod assemble;
pub mod deletion;
pub mod executor;
pub mod file_cloud;
pub mod hotswap;
pub mod interruptions;
pub mod lease;
pub mod log_format;
pub mod metrics;
pub mod record;
pub mod registration;
pub mod run;
pub mod serve;
pub mod snapshot;
pub mod status;
pub mod volumes;
pub mod watch;

pub use run::{RunError, Settings, run};

/// The kube client this crate is built on (so the binary need not enable its features itself).
pub use kube;

/// Makes `ring` the process's TLS crypto provider unless one is installed already. Call it before
/// building a kube client: in a build that also links the AWS SDK, rustls has both `ring` and
/// `aws-lc-rs` compiled in and refuses to pick one by itself (it panics at the first handshake).
pub fn install_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none()
        && rustls::crypto::ring::default_provider()
            .install_default()
            .is_err()
    {
        // Another thread installed one between the check and the install: that one serves.
        tracing::debug!("a TLS crypto provider was installed concurrently");
    }
}
