//! Commands out, completions back: the controller's only way to touch the world.
//!
//! [`super::Controller::tick`] reads a snapshot and returns [`Command`]s; whoever executes them (the
//! simulator inline or deferred, the kube and AWS adapters in production) hands each result back as a
//! [`Completion`] through [`super::Controller::complete`], whenever it arrives. The controller never
//! waits on the network, and a command whose answer is slow, throttled, refused or lost is a state the
//! controller is in, not a call it is blocked in.
//!
//! Every command is idempotent: a launch carries the claim's unique name as the client token, a
//! terminate of a terminated instance succeeds, an eviction of a gone pod is "not found". So an
//! executor may retry, and a restarted controller may re-issue what it cannot prove was done.

use crate::clock::Millis;
use crate::cloud::{CloudError, LaunchRequest, Launched, Listing, SpotPrice};
use crate::cluster::{ClaimRecord, ClusterError, ClusterWriter, PodKey};

/// One thing the controller wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Create or update the claim's durable record (the NodeClaim). A launch is issued only after
    /// its claim's record is written.
    WriteClaim(Box<ClaimRecord>),
    DeleteClaim {
        name: String,
    },
    /// CreateFleet for the claim (its name is the client token; the claim record exists already).
    Launch(LaunchRequest),
    /// TerminateInstances.
    Terminate {
        instance_id: String,
    },
    /// DescribeInstances filtered by Kestrel's tags (garbage collection reads it).
    ListInstances,
    /// DescribeSpotPriceHistory for these types, every zone.
    ReadSpotPrices {
        instance_types: Vec<String>,
    },
    /// The pod is expected on the claim's node (an Event; the scheduler's hint).
    Nominate {
        pod: PodKey,
        claim: String,
    },
    /// Taint `karpenter.sh/disrupted:NoSchedule` and mark unschedulable.
    Cordon {
        node: String,
    },
    Uncordon {
        node: String,
    },
    /// The Eviction API (PDBs apply unless `force`).
    Evict {
        pod: PodKey,
        node: String,
        force: bool,
    },
    DeleteNode {
        node: String,
    },
}

impl Command {
    /// Whether the command calls the cloud (the rest call the API server).
    pub fn is_cloud(&self) -> bool {
        matches!(
            self,
            Command::Launch(_)
                | Command::Terminate { .. }
                | Command::ListInstances
                | Command::ReadSpotPrices { .. }
        )
    }
}

/// What a command's call answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Launched(Result<Launched, CloudError>),
    Listed(Result<Listing, CloudError>),
    SpotPrices(Result<Vec<SpotPrice>, CloudError>),
    /// Terminate.
    Cloud(Result<(), CloudError>),
    /// Claim records, nominate, cordon, uncordon, evict, delete node.
    Cluster(Result<(), ClusterError>),
}

/// A command's answer, handed back to the controller when it arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub command: Command,
    /// When the command was issued (a listing describes the world as of then, not as of its arrival).
    pub issued_at: Millis,
    pub outcome: Outcome,
}

/// Carries out one command synchronously against a cluster writer and a cloud (the simulator's
/// executor; the production adapters run the same calls asynchronously).
pub fn execute(
    command: &Command,
    now: Millis,
    cluster: &mut dyn ClusterWriter,
    cloud: &mut dyn crate::cloud::CloudProvider,
) -> Outcome {
    match command {
        Command::Launch(request) => Outcome::Launched(cloud.create(request, now)),
        Command::Terminate { instance_id } => Outcome::Cloud(cloud.delete(instance_id, now)),
        Command::ListInstances => Outcome::Listed(cloud.list(now)),
        Command::ReadSpotPrices { instance_types } => {
            Outcome::SpotPrices(cloud.spot_prices(instance_types, now))
        }
        Command::WriteClaim(record) => Outcome::Cluster(cluster.write_claim(record)),
        Command::DeleteClaim { name } => Outcome::Cluster(cluster.delete_claim(name)),
        Command::Nominate { pod, claim } => Outcome::Cluster(cluster.nominate(pod, claim)),
        Command::Cordon { node } => Outcome::Cluster(cluster.cordon(node)),
        Command::Uncordon { node } => Outcome::Cluster(cluster.uncordon(node)),
        Command::Evict { pod, force, .. } => Outcome::Cluster(cluster.evict(pod, *force, now)),
        Command::DeleteNode { node } => Outcome::Cluster(cluster.delete_node(node, now)),
    }
}

/// Exponential backoff for a call that keeps being refused: 1 s, 2 s, 4 s … capped at 60 s. A
/// blocked eviction or a throttled call waits this long before it is tried again, per pod or per
/// claim, so a drain held by a PDB costs one call per pod per backoff step, not one per tick.
pub fn backoff_ms(attempts: u32) -> Millis {
    const BASE_MS: Millis = 1_000;
    const MAX_MS: Millis = 60_000;
    BASE_MS.saturating_mul(1 << attempts.min(16)).min(MAX_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff_ms(0), 1_000);
        assert_eq!(backoff_ms(1), 2_000);
        assert_eq!(backoff_ms(5), 32_000);
        assert_eq!(backoff_ms(6), 60_000);
        assert_eq!(backoff_ms(u32::MAX), 60_000);
    }
}
