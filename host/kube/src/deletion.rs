//! A NodeClaim or Node deleted by hand (`kubectl delete`) goes through the same drain as a decided
//! disruption: the core's drain (cordon with `karpenter.sh/disrupted`, evictions honouring PDBs,
//! terminate, delete the Node and the NodeClaim, whose finalizer holds it until then).
//!
//! It plugs in at the core's disruption seam: this step wraps the built-in disruptor, runs it at its
//! own interval, and in between turns every node whose NodeClaim (or Node) is being deleted into a
//! drain command, checked every second.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use kestrel_core::clock::Millis;
use kestrel_core::controller::{DisruptionCommand, DisruptionInput, DisruptionStep, Reason};

/// How often deletions by hand are looked for.
const INTERVAL_MS: Millis = 1_000;

/// The nodes being deleted, as the loop last saw them (it fills this from the snapshot).
pub type Deleting = Arc<Mutex<BTreeSet<String>>>;

pub struct DeletionStep {
    inner: Box<dyn DisruptionStep>,
    inner_next_at: Millis,
    deleting: Deleting,
}

impl DeletionStep {
    pub fn new(inner: Box<dyn DisruptionStep>, deleting: Deleting) -> DeletionStep {
        DeletionStep {
            inner,
            inner_next_at: 0,
            deleting,
        }
    }
}

impl DisruptionStep for DeletionStep {
    fn name(&self) -> String {
        format!("{} + deletions by hand", self.inner.name())
    }

    fn interval_ms(&self) -> Millis {
        INTERVAL_MS.min(self.inner.interval_ms())
    }

    fn decide(&mut self, input: &DisruptionInput<'_>) -> Vec<DisruptionCommand> {
        let deleting = self
            .deleting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut commands: Vec<DisruptionCommand> = input
            .nodes
            .iter()
            .filter(|n| deleting.contains(&*n.name) && !input.disrupting.contains(&*n.name))
            .filter(|n| !n.claim.is_empty())
            .map(|n| DisruptionCommand {
                // The core has no reason for "deleted by hand"; expiry is the closest: the node
                // goes whatever the savings, without a replacement first.
                reason: Reason::Expired,
                nodes: vec![n.name.to_string()],
                replacement: None,
                forceful: false,
                explanation: format!("NodeClaim {} deleted", n.claim),
            })
            .collect();
        if input.now >= self.inner_next_at {
            self.inner_next_at = input.now.saturating_add(self.inner.interval_ms());
            // Nodes being deleted are not the inner step's to decide about.
            commands.extend(
                self.inner
                    .decide(input)
                    .into_iter()
                    .filter(|c| !c.nodes.iter().any(|n| deleting.contains(n))),
            );
        }
        commands
    }

    fn take_policy_fallbacks(&mut self) -> Vec<String> {
        self.inner.take_policy_fallbacks()
    }

    fn forget(&mut self) {
        self.inner.forget();
        self.inner_next_at = 0;
    }
}
