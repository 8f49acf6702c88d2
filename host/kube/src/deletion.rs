//! A NodeClaim or Node deleted by hand (`kubectl delete`) goes through the same drain as a decided
//! disruption: the core's drain (cordon with `karpenter.sh/disrupted`, evictions honouring PDBs,
//! terminate, delete the Node and the NodeClaim, whose finalizer holds it until then).
//!
//! It plugs in at the core's disruption seam: this step wraps the built-in disruptor, runs it at its
//! own interval, and in between turns every node whose NodeClaim (or Node) is being deleted into a
//! drain command, checked every second. Only nodes Kestrel launched (they have a claim) are drained:
//! a Node Kestrel does not own is never touched.
//!
//! `terminationGracePeriod` (the NodeClaim's, copied from its NodePool's template): once that long
//! has passed since the deletion was asked, the drain turns forceful: the pods still there are
//! deleted whatever their PodDisruptionBudgets say, and the node goes (Karpenter's rule).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use kestrel_core::clock::Millis;
use kestrel_core::controller::{DisruptionCommand, DisruptionInput, DisruptionStep, Reason};

/// How often deletions by hand are looked for.
const INTERVAL_MS: Millis = 1_000;

/// A deletion asked by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deletion {
    /// When the Node or NodeClaim got its deletion timestamp (the earlier of the two).
    pub since: Millis,
    /// The NodeClaim's terminationGracePeriod (None: PDBs may hold the drain forever).
    pub grace_ms: Option<Millis>,
}

impl Deletion {
    /// Whether the grace period is over at `now`.
    pub fn past_grace(&self, now: Millis) -> bool {
        self.grace_ms
            .is_some_and(|g| now >= self.since.saturating_add(g))
    }
}

/// The nodes being deleted, as the loop last saw them (it fills this from the snapshot).
pub type Deleting = Arc<Mutex<BTreeMap<String, Deletion>>>;

pub struct DeletionStep {
    inner: Box<dyn DisruptionStep>,
    inner_next_at: Millis,
    deleting: Deleting,
    /// Nodes whose drain was made forceful already (the command is sent once).
    forced: BTreeSet<String>,
}

impl DeletionStep {
    pub fn new(inner: Box<dyn DisruptionStep>, deleting: Deleting) -> DeletionStep {
        DeletionStep {
            inner,
            inner_next_at: 0,
            deleting,
            forced: BTreeSet::new(),
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
        self.forced.retain(|n| deleting.contains_key(n));
        let mut commands = Vec::new();
        for n in input.nodes.iter().filter(|n| !n.claim.is_empty()) {
            let Some(deletion) = deleting.get(&*n.name) else {
                continue;
            };
            let past_grace = deletion.past_grace(input.now);
            let draining = input.disrupting.contains(&*n.name);
            if draining && (!past_grace || self.forced.contains(&*n.name)) {
                continue;
            }
            if past_grace {
                self.forced.insert(n.name.to_string());
            }
            commands.push(DisruptionCommand {
                // The core has no reason for "deleted by hand"; expiry is the closest: the node
                // goes whatever the savings, without a replacement first (and, past the grace
                // period, whatever the PDBs say: the core makes a draining node's drain forceful).
                reason: Reason::Expired,
                nodes: vec![n.name.to_string()],
                replacement: None,
                forceful: past_grace,
                explanation: if past_grace {
                    format!(
                        "deleted by hand (NodeClaim {}); terminationGracePeriod over: remaining pods deleted",
                        n.claim
                    )
                } else {
                    format!("deleted by hand (NodeClaim {})", n.claim)
                },
            });
        }
        if input.now >= self.inner_next_at {
            self.inner_next_at = input.now.saturating_add(self.inner.interval_ms());
            // Nodes being deleted are not the inner step's to decide about.
            commands.extend(
                self.inner
                    .decide(input)
                    .into_iter()
                    .filter(|c| !c.nodes.iter().any(|n| deleting.contains_key(n))),
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
        self.forced.clear();
    }
}
