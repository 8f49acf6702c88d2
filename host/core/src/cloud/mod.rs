//! The cloud edge: launching, terminating and listing instances, and reading spot prices.
//!
//! [`CloudProvider`] (inline: the simulator's) and [`CloudApi`] (async: the production adapters')
//! are shaped after EC2 (CreateFleet with the ranked offerings as overrides, TerminateInstances,
//! DescribeInstances filtered by Kestrel's tags, DescribeSpotPriceHistory), so the AWS adapter
//! (`kestrel-aws`) implements them without the controller changing. Every launch is idempotent by its
//! NodeClaim name (EC2's client token).

use crate::clock::Millis;

/// How an offering is paid for: the model's type (one vocabulary from the scheduler to EC2).
pub use crate::model::CapacityType;

/// One launchable offering: an instance type in a zone, bought one way, at a price (USD/hour).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Offering {
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: CapacityType,
    pub price: f64,
}

/// A NodeClaim to launch: the offerings the core ranked, best first. The provider tries them in order
/// and launches the first one with capacity (CreateFleet's `lowest-price`/`prioritized` fall-through).
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchRequest {
    /// The NodeClaim's name; the idempotency token (a second create with the same name returns the
    /// instance the first one launched).
    pub claim: String,
    pub node_pool: String,
    /// Shared with the claim's record (a burst of launches holds thousands of these).
    pub offerings: std::sync::Arc<[Offering]>,
    /// The NodePool's `spec.template` as the claim was made from it: the EC2NodeClass to launch
    /// with (`spec.nodeClassRef`), and the labels, taints and startup taints the node registers with
    /// (the AWS adapter renders them into userData). Shared with the pool and the claim's record.
    pub template: std::sync::Arc<crate::api::NodeClaimTemplate>,
}

/// EC2's instance lifecycle, as much of it as the controller needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Terminated,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Instance {
    pub id: String,
    /// The `karpenter.sh/nodeclaim` tag: the claim that launched it. Empty for an instance Kestrel did
    /// not launch (a managed node group's, another autoscaler's): such an instance is never Kestrel's
    /// to terminate.
    pub claim: String,
    pub node_pool: String,
    pub offering: Offering,
    pub launched_at: Millis,
    pub state: InstanceState,
}

/// Why one offering could not be launched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
pub enum OfferingError {
    #[error("InsufficientInstanceCapacity")]
    InsufficientCapacity,
    #[error("offering is not available in this region/zone")]
    Unsupported,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OfferingFailure {
    pub offering: Offering,
    pub error: OfferingError,
}

/// A successful launch, with the offerings skipped on the way (the controller marks them unavailable
/// for a while, as Karpenter's unavailable-offerings cache does).
#[derive(Debug, Clone, PartialEq)]
pub struct Launched {
    pub instance: Instance,
    pub skipped: Vec<OfferingFailure>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CloudError {
    #[error("no offering of claim {claim} could be launched ({} tried)", failures.len())]
    NoCapacity {
        claim: String,
        failures: Vec<OfferingFailure>,
    },
    #[error("claim {claim} has no offerings to launch")]
    NoOfferings { claim: String },
    #[error("instance {id} not found")]
    NotFound { id: String },
    /// The API refused the call for its rate (EC2's `RequestLimitExceeded`): nothing happened, try
    /// again later.
    #[error("throttled: {0}")]
    Throttled(String),
    /// Any other failure. The call may or may not have taken effect, so a launch is retried only
    /// with the same client token.
    #[error("cloud API error: {0}")]
    Api(String),
}

impl CloudError {
    /// Whether the same call, repeated later, may succeed (with the same idempotency token).
    pub fn is_retryable(&self) -> bool {
        matches!(self, CloudError::Throttled(_) | CloudError::Api(_))
    }
}

/// One answer to "which instances has Kestrel launched": complete only if every page was read. A
/// listing that is not complete must never be read as "the others are gone".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Listing {
    pub instances: Vec<Instance>,
    pub complete: bool,
}

/// A spot price sample (DescribeSpotPriceHistory's row).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SpotPrice {
    pub instance_type: String,
    pub zone: String,
    pub price: f64,
}

/// The cloud's calls, as an executor of the controller's commands makes them
/// (`controller::command`). The controller itself never calls a cloud: it emits commands and applies
/// their completions, so an answer that takes seconds, fails or comes back stale is a completion like
/// any other.
pub trait CloudProvider {
    /// Launches one instance for the claim from its ranked offerings.
    fn create(&mut self, request: &LaunchRequest, now: Millis) -> Result<Launched, CloudError>;
    /// Starts terminating an instance; terminating an already terminated one is not an error.
    fn delete(&mut self, instance_id: &str, now: Millis) -> Result<(), CloudError>;
    /// The instances tagged for this cluster that are not yet terminated (for garbage collection).
    fn list(&mut self, now: Millis) -> Result<Listing, CloudError>;
    /// Current spot prices for the given instance types, every zone.
    fn spot_prices(
        &mut self,
        instance_types: &[String],
        now: Millis,
    ) -> Result<Vec<SpotPrice>, CloudError>;
}

/// A boxed future of a cloud call (the async edge is object-safe without an async-trait crate).
pub type CloudCall<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, CloudError>> + Send + 'a>>;

/// The cloud's calls as the production adapters make them: asynchronously, shared between the tasks
/// that execute commands concurrently (`&self`, `Send + Sync`). The wall clock is the adapter's own.
/// [`execute_cloud`] runs one of the controller's cloud commands through it; the simulator's
/// [`CloudProvider`] is the same edge, called inline on the virtual clock.
pub trait CloudApi: Send + Sync {
    /// Launches one instance for the claim from its ranked offerings (CreateFleet `instant`).
    fn create<'a>(&'a self, request: &'a LaunchRequest) -> CloudCall<'a, Launched>;
    /// Starts terminating an instance; terminating an already terminated one is not an error.
    fn delete<'a>(&'a self, instance_id: &'a str) -> CloudCall<'a, ()>;
    /// The instances tagged for this cluster that are not yet terminated.
    fn list(&self) -> CloudCall<'_, Listing>;
    /// Current spot prices for the given instance types, every zone.
    fn spot_prices<'a>(&'a self, instance_types: &'a [String]) -> CloudCall<'a, Vec<SpotPrice>>;
}

/// Executes one of the controller's cloud commands ([`crate::controller::Command::is_cloud`])
/// through an async cloud edge; `None` for a command that is the cluster's.
pub async fn execute_cloud(
    api: &dyn CloudApi,
    command: &crate::controller::Command,
) -> Option<crate::controller::Outcome> {
    use crate::controller::{Command, Outcome};
    Some(match command {
        Command::Launch(request) => Outcome::Launched(api.create(request).await),
        Command::Terminate { instance_id } => Outcome::Cloud(api.delete(instance_id).await),
        Command::ListInstances => Outcome::Listed(api.list().await),
        Command::ReadSpotPrices { instance_types } => {
            Outcome::SpotPrices(api.spot_prices(instance_types).await)
        }
        _ => return None,
    })
}
