//! Interruption notices through the core: what a spot warning, a capacity reservation's reclaim, a
//! scheduled change, a state change or a rebalance recommendation does to the node it names.
//!
//! [`crate::interruption::respond`] decides; this carries it out with the controller's own steps:
//! - a reclaim (spot or reservation warning, scheduled change, an instance stopping or shutting
//!   down): taint `karpenter.sh/disrupted:NoSchedule` and cordon, mark the offering unavailable (spot
//!   and reservations), launch replacement capacity for the node's pods at once (not at the next
//!   batch window), drain when it is ready or at the deadline, honouring PDBs until
//!   [`crate::interruption::PDB_GRACE_MS`] past it, then terminate and delete the claim;
//! - an instance stopped or terminated: delete its node and claim now (terminate a stopped one);
//! - a rebalance recommendation: counted, its offering avoided; replaced like a reclaim (but PDBs
//!   always honoured, and aborted if the replacement cannot launch) only when its NodePool opts in.
//!
//! A duplicate delivery changes nothing; a notice for an instance Kestrel does not own is counted and
//! dropped. A notice from a queue is acknowledged ([`Controller::take_acks`]) only once its action is
//! durable: the drain written into the claim record (Karpenter's `Disrupting` condition and taint) or
//! the claim deleted, as the cluster confirmed. A notice acted on but never acknowledged (a crash, a
//! failed write) is delivered again, finds the drain under way and writes it again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::{Action, Controller, Drain, Reason};
use crate::clock::Millis;
use crate::cloud::Offering;
use crate::cluster::{ClusterState, NodeState, OwnerKind, PodState};
use crate::interruption::{self, Notice, PDB_GRACE_MS, Response};

/// What became of a notice (the queue consumer's metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoticeOutcome {
    /// Its action is durably started (or, for a claim without a record, issued).
    Acted,
    /// Recorded only: a rebalance recommendation whose offering is now avoided.
    Recorded,
    /// What it asks for is under way already.
    Duplicate,
    /// Not an instance Kestrel launched.
    NotOwned,
}

impl NoticeOutcome {
    pub fn label(self) -> &'static str {
        match self {
            NoticeOutcome::Acted => "acted",
            NoticeOutcome::Recorded => "recorded",
            NoticeOutcome::Duplicate => "duplicate",
            NoticeOutcome::NotOwned => "not-owned",
        }
    }
}

/// A notice whose queue message may be deleted now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeAck {
    /// [`Notice::ack`]: the message's id.
    pub token: String,
    pub instance_id: String,
    pub outcome: NoticeOutcome,
}

/// The controller's memory of notices (lost with it on a restart, which only means re-deliveries).
#[derive(Debug, Default)]
pub(super) struct Interruptions {
    /// Claims whose drain (or deletion) a notice started and whose record write the cluster has not
    /// confirmed, with the acknowledgements waiting for it. A failed write leaves the entry, empty:
    /// the re-delivered notice finds it and writes the record again.
    unconfirmed: BTreeMap<String, Vec<NoticeAck>>,
    ready: Vec<NoticeAck>,
    /// Instances whose rebalance recommendation was counted (a repeat is a duplicate).
    rebalanced: BTreeSet<String>,
    /// Owned instances a notice acted on, and when: a notice that finds one of them gone later is a
    /// late or repeated delivery, not a stranger's (kept [`REMEMBER_MS`]).
    acted_on: HashMap<String, Millis>,
    /// Nodes whose drain began while handling this tick's notices: their pods are planned together
    /// once every one of them is cordoned, so no node's pods are planned onto another going away.
    replacing: Vec<String>,
}

/// A drain that is never due by time: it waits for its replacements.
const NO_DEADLINE: Millis = Millis::MAX / 4;

/// How long an instance a notice acted on is remembered (well past SQS's redelivery of an
/// unacknowledged message and EventBridge's duplicate deliveries).
const REMEMBER_MS: Millis = 3_600_000;

impl Controller {
    /// Notices whose action is durably started, or that needed none: their queue messages may be
    /// deleted. A notice that never shows here must be delivered again.
    pub fn take_acks(&mut self) -> Vec<NoticeAck> {
        std::mem::take(&mut self.interruptions.ready)
    }

    pub(super) fn handle_notices(&mut self, now: Millis, cluster: &dyn ClusterState) {
        self.force_overdue_drains(now);
        if self.notices.is_empty() {
            return;
        }
        let nodes = cluster.nodes();
        let by_name: HashMap<&str, &Arc<NodeState>> = nodes.iter().map(|n| (&*n.name, n)).collect();
        for notice in std::mem::take(&mut self.notices) {
            let node = self
                .node_by_instance
                .get(&notice.instance_id)
                .and_then(|name| by_name.get(name.as_str()))
                .map(|n| Arc::clone(n));
            self.handle_notice(now, cluster, node, &notice);
        }
        self.launch_replacements(now, cluster);
        let known = &self.node_by_instance;
        self.interruptions
            .rebalanced
            .retain(|id| known.contains_key(id));
        self.interruptions
            .acted_on
            .retain(|_, at| now - *at < REMEMBER_MS);
    }

    fn handle_notice(
        &mut self,
        now: Millis,
        cluster: &dyn ClusterState,
        node: Option<Arc<NodeState>>,
        notice: &Notice,
    ) {
        // The offering: from the node, or from the claim if the node has not registered yet.
        let offering = node
            .as_ref()
            .map(|n| Offering {
                instance_type: n.instance_type.clone(),
                zone: n.zone.clone(),
                capacity_type: n.capacity_type,
                price: n.price,
            })
            .or_else(|| {
                self.claims
                    .values()
                    .find(|c| c.instance_id.as_deref() == Some(notice.instance_id.as_str()))
                    .and_then(|c| c.offering.clone())
            });
        let owned = node.is_some()
            || self
                .claims
                .values()
                .any(|c| c.instance_id.as_deref() == Some(notice.instance_id.as_str()));
        if owned {
            self.interruptions
                .acted_on
                .insert(notice.instance_id.clone(), now);
        }
        match interruption::respond(notice, now) {
            Response::Rebalance { avoid_until } => {
                self.rebalance(now, node, offering, avoid_until, notice)
            }
            Response::Replace {
                drain_by,
                force_now,
                avoid_offering,
                reason,
                detail,
            } => {
                let reclaim = Reclaim {
                    drain_by,
                    force_now,
                    reason,
                    detail,
                    avoid: offering.filter(|_| avoid_offering),
                };
                match node {
                    Some(node) => self.reclaim_node(now, &node, reclaim, notice),
                    None => self.reclaim_unregistered(now, reclaim, notice),
                }
            }
            Response::Gone { terminate, detail } => {
                self.instance_gone(now, cluster, node, terminate, detail, notice)
            }
        }
    }

    fn reclaim_node(&mut self, now: Millis, node: &NodeState, r: Reclaim, notice: &Notice) {
        if let Some(drain) = self.draining.get_mut(&*node.name) {
            let covered = interruption::is_reclaim(drain.reason)
                && drain.drain_by <= r.drain_by
                && (drain.forceful || !r.force_now);
            if covered {
                let claim = drain.claim.clone();
                if self.interruptions.unconfirmed.contains_key(&claim) {
                    // Its drain was never confirmed written: write it again, acknowledge after.
                    let drain = drain.clone();
                    self.stats.notices_duplicate += 1;
                    self.write_drain(&claim, Some(&drain));
                    self.ack_after_record(notice, &claim, NoticeOutcome::Duplicate);
                } else {
                    self.ack_now(notice, NoticeOutcome::Duplicate);
                }
                return;
            }
            // A reclaim overtakes a voluntary disruption (or a later deadline): the drain goes ahead
            // without its replacement, by the earlier deadline.
            if !interruption::is_reclaim(drain.reason) || r.drain_by < drain.drain_by {
                drain.reason = r.reason;
                drain.detail = r.detail.to_string();
            }
            drain.drain_by = drain.drain_by.min(r.drain_by);
            drain.forceful |= r.force_now;
            drain.abort_without_replacement = false;
            let drain = drain.clone();
            tracing::info!(node = %node.name, reason = r.detail, "drain under way now reclaims");
            self.stats.interruptions_handled += 1;
            self.avoid_reclaimed(now, &r);
            self.write_drain(&drain.claim, Some(&drain));
            self.ack_after_record(notice, &drain.claim, NoticeOutcome::Acted);
            return;
        }
        self.stats.interruptions_handled += 1;
        self.avoid_reclaimed(now, &r);
        self.begin_replacement(
            now,
            node,
            ReplacementDrain {
                reason: r.reason,
                drain_by: r.drain_by,
                forceful: r.force_now,
                abort_without_replacement: false,
                detail: r.detail.to_string(),
            },
        );
        self.ack_after_record(notice, &node.claim, NoticeOutcome::Acted);
    }

    /// A reclaim of an instance whose node has not registered: give the claim up (its pods are
    /// planned again) and terminate the instance.
    fn reclaim_unregistered(&mut self, now: Millis, r: Reclaim, notice: &Notice) {
        let lost = self.claims_of_instance(&notice.instance_id);
        let Some(first) = lost.first().cloned() else {
            return self.not_ours(notice);
        };
        self.stats.interruptions_handled += 1;
        self.avoid_reclaimed(now, &r);
        let durable = self.records.contains_key(&first);
        for name in &lost {
            self.claim_lost(now, name);
        }
        self.terminate(&notice.instance_id);
        self.record(
            now,
            Action::Terminate {
                node: None,
                instance_id: notice.instance_id.clone(),
            },
            r.reason,
            format!("{} before the node registered", r.detail),
        );
        self.ack_after_delete(notice, &first, durable);
    }

    /// The instance is stopped or terminated: its node and claim go now, so its pods reschedule.
    fn instance_gone(
        &mut self,
        now: Millis,
        cluster: &dyn ClusterState,
        node: Option<Arc<NodeState>>,
        terminate: bool,
        detail: &'static str,
        notice: &Notice,
    ) {
        let id = &notice.instance_id;
        let lost = self.claims_of_instance(id);
        let Some(claim) = node
            .as_ref()
            .map(|n| n.claim.clone())
            .or_else(|| lost.first().cloned())
        else {
            return self.not_ours(notice);
        };
        let durable = self.records.contains_key(&claim);
        for name in &lost {
            self.claim_lost(now, name);
        }
        if let Some(node) = &node {
            let pods = cluster
                .pods_on(&node.name)
                .iter()
                .filter(|p| p.facts.owner != OwnerKind::DaemonSet)
                .count();
            self.forget_node(&node.name, id, &node.claim);
            self.record(
                now,
                Action::Terminate {
                    node: Some(node.name.to_string()),
                    instance_id: id.clone(),
                },
                Reason::InstanceGone,
                format!("{detail}; {pods} pods were still on the node"),
            );
        }
        if terminate {
            self.terminate(id);
        }
        self.ack_after_delete(notice, &claim, durable);
    }

    fn rebalance(
        &mut self,
        now: Millis,
        node: Option<Arc<NodeState>>,
        offering: Option<Offering>,
        avoid_until: Millis,
        notice: &Notice,
    ) {
        if node.is_none() && self.claims_of_instance(&notice.instance_id).is_empty() {
            return self.not_ours(notice);
        }
        if !self
            .interruptions
            .rebalanced
            .insert(notice.instance_id.clone())
        {
            return self.ack_now(notice, NoticeOutcome::Duplicate);
        }
        self.stats.rebalance_recommendations += 1;
        if let Some(o) = &offering {
            self.avoid(
                now,
                o,
                avoid_until,
                Reason::Rebalance,
                "rebalance recommendation",
            );
        }
        let opted_in = node.filter(|n| {
            !self.draining.contains_key(&*n.name)
                && self
                    .pools
                    .iter()
                    .any(|p| p.name == n.node_pool && p.replace_on_rebalance)
        });
        let Some(node) = opted_in else {
            return self.ack_now(notice, NoticeOutcome::Recorded);
        };
        self.stats.rebalance_replacements += 1;
        // Voluntary: no deadline, PDBs always honoured, given up if the replacement cannot launch.
        // The spot warning, if it comes, turns it into a reclaim.
        self.begin_replacement(
            now,
            &node,
            ReplacementDrain {
                reason: Reason::Rebalance,
                drain_by: NO_DEADLINE,
                forceful: false,
                abort_without_replacement: true,
                detail: "rebalance recommendation (NodePool opts in to replacement)".into(),
            },
        );
        self.ack_after_record(notice, &node.claim, NoticeOutcome::Acted);
    }

    fn avoid_reclaimed(&mut self, now: Millis, r: &Reclaim) {
        if let Some(o) = &r.avoid {
            self.avoid(
                now,
                o,
                now + interruption::AVOID_OFFERING_MS,
                r.reason,
                r.detail,
            );
        }
    }

    fn not_ours(&mut self, notice: &Notice) {
        // An instance Kestrel acted on or terminated is still its own (a late or repeated notice).
        let id = &notice.instance_id;
        let outcome =
            if self.terminating.contains_key(id) || self.interruptions.acted_on.contains_key(id) {
                NoticeOutcome::Duplicate
            } else {
                tracing::info!(
                    instance_id = %notice.instance_id,
                    "notice for an instance Kestrel does not own; dropped"
                );
                NoticeOutcome::NotOwned
            };
        self.ack_now(notice, outcome);
    }

    fn ack_now(&mut self, notice: &Notice, outcome: NoticeOutcome) {
        match outcome {
            NoticeOutcome::Duplicate => self.stats.notices_duplicate += 1,
            NoticeOutcome::NotOwned => self.stats.notices_not_owned += 1,
            NoticeOutcome::Acted | NoticeOutcome::Recorded => {}
        }
        if let Some(token) = &notice.ack {
            self.interruptions.ready.push(NoticeAck {
                token: token.clone(),
                instance_id: notice.instance_id.clone(),
                outcome,
            });
        }
    }

    /// The notice is acknowledged once the claim's record, written just now, is confirmed (at once
    /// if the claim has no record to write).
    fn ack_after_record(&mut self, notice: &Notice, claim: &str, outcome: NoticeOutcome) {
        if !self.records.contains_key(claim) {
            return self.ack_now(notice, outcome);
        }
        let waiting = self
            .interruptions
            .unconfirmed
            .entry(claim.to_string())
            .or_default();
        if let Some(token) = &notice.ack {
            waiting.push(NoticeAck {
                token: token.clone(),
                instance_id: notice.instance_id.clone(),
                outcome,
            });
        }
    }

    /// The notice is acknowledged once the claim's record deletion (issued just now if `durable`)
    /// is confirmed.
    fn ack_after_delete(&mut self, notice: &Notice, claim: &str, durable: bool) {
        if !durable {
            return self.ack_now(notice, NoticeOutcome::Acted);
        }
        let waiting = self
            .interruptions
            .unconfirmed
            .entry(claim.to_string())
            .or_default();
        if let Some(token) = &notice.ack {
            waiting.push(NoticeAck {
                token: token.clone(),
                instance_id: notice.instance_id.clone(),
                outcome: NoticeOutcome::Acted,
            });
        }
    }

    /// A claim record's write (`durable`: one carrying a drain) or deletion answered.
    pub(super) fn record_answered(&mut self, claim: &str, durable: bool, ok: bool) {
        if !durable {
            return;
        }
        let Some(waiting) = self.interruptions.unconfirmed.get_mut(claim) else {
            return;
        };
        if ok {
            let acks = self
                .interruptions
                .unconfirmed
                .remove(claim)
                .unwrap_or_default();
            self.interruptions.ready.extend(acks);
        } else {
            // Not acknowledged: the queue delivers the notice again, which writes the drain again.
            waiting.clear();
        }
    }

    /// Reclaim drains past their deadline by [`PDB_GRACE_MS`] stop honouring PDBs, so the pods still
    /// there get their termination signal before the instance dies.
    fn force_overdue_drains(&mut self, now: Millis) {
        let due: Vec<String> = self
            .draining
            .iter()
            .filter(|(_, d)| Self::force_at(d).is_some_and(|at| now >= at))
            .map(|(node, _)| node.clone())
            .collect();
        for node in due {
            let drain = self.draining.get_mut(&node).expect("listed above");
            drain.forceful = true;
            let drain = drain.clone();
            self.write_drain(&drain.claim, Some(&drain));
            for ((n, _), retry) in self.evictions.iter_mut() {
                if *n == node && !retry.in_flight {
                    retry.next_at = now;
                }
            }
            tracing::info!(%node, "reclaim deadline near: evictions no longer wait for PDBs");
        }
    }

    fn force_at(drain: &Drain) -> Option<Millis> {
        (!drain.forceful && interruption::is_reclaim(drain.reason) && drain.drain_by < NO_DEADLINE)
            .then(|| drain.drain_by.saturating_add(PDB_GRACE_MS))
    }

    /// When the next reclaim drain stops honouring PDBs.
    pub(super) fn interruption_wake(&self) -> Option<Millis> {
        self.draining.values().filter_map(Self::force_at).min()
    }

    /// The unregistered claims whose launch answered with this instance.
    fn claims_of_instance(&self, instance_id: &str) -> Vec<String> {
        self.claims
            .iter()
            .filter(|(_, c)| c.instance_id.as_deref() == Some(instance_id))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Taints and cordons the node and starts its drain; its replacement capacity is launched at
    /// the end of this tick's notices ([`Self::launch_replacements`]). The drain goes ahead once
    /// that capacity is ready (or at `drain_by`).
    fn begin_replacement(&mut self, now: Millis, node: &NodeState, d: ReplacementDrain) {
        let name = node.name.to_string();
        self.begin_drain(
            now,
            &name,
            Drain {
                instance_id: node.instance_id.clone(),
                claim: node.claim.clone(),
                detail: d.detail,
                reason: d.reason,
                drain_by: d.drain_by,
                waiting_for: Vec::new(),
                forceful: d.forceful,
                abort_without_replacement: d.abort_without_replacement,
            },
        );
        self.interruptions.replacing.push(name);
    }

    /// Launches capacity now, in one plan, for the pods of every node whose drain this tick's
    /// notices began (they are all cordoned by now, so none of their pods is planned onto another
    /// of them); each of those drains waits for all of it.
    fn launch_replacements(&mut self, now: Millis, cluster: &dyn ClusterState) {
        let nodes = std::mem::take(&mut self.interruptions.replacing);
        if nodes.is_empty() {
            return;
        }
        let displaced: Vec<PodState> = nodes
            .iter()
            .flat_map(|n| cluster.pods_on(n))
            .filter(|p| p.facts.owner != OwnerKind::DaemonSet)
            // Planned as the pending pods they are about to be (the planner places only pods
            // without a node).
            .map(|mut p| {
                p.node = None;
                p.bound_at = None;
                p.nominated = None;
                p
            })
            .collect();
        if displaced.is_empty() {
            return;
        }
        let reason = self
            .draining
            .get(&nodes[0])
            .map_or(Reason::SpotInterruption, |d| d.reason);
        let plan = self.plan(now, &displaced, cluster);
        let waiting_for = self.launch(now, plan.claims, reason, false);
        if waiting_for.is_empty() {
            return;
        }
        for node in nodes {
            if let Some(drain) = self.draining.get_mut(&node) {
                drain.waiting_for = waiting_for.clone();
                let drain = drain.clone();
                self.write_drain(&drain.claim, Some(&drain));
            }
        }
    }

    /// The replacement claims a node's drain waits for (None: the node is not draining), for
    /// observers such as the simulator's interruption report.
    pub fn drain_replacements(&self, node: &str) -> Option<&[String]> {
        self.draining.get(node).map(|d| d.waiting_for.as_slice())
    }
}

/// A reclaim as [`Controller::reclaim_node`] carries it out.
struct Reclaim {
    drain_by: Millis,
    force_now: bool,
    reason: Reason,
    detail: &'static str,
    /// The offering to mark unavailable.
    avoid: Option<Offering>,
}

/// The drain a replacement starts.
struct ReplacementDrain {
    reason: Reason,
    drain_by: Millis,
    forceful: bool,
    abort_without_replacement: bool,
    detail: String,
}
