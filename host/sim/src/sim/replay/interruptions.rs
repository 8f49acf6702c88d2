//! What became of each interrupted instance, for the report: when the warning came, when the
//! replacement capacity the controller launched for its pods was ready, and how many pods were still
//! on the node when the cloud reclaimed it.
//!
//! Observed from outside the controller (the virtual cloud's events and the controller's public
//! view of its drains), so the report measures the reaction rather than trusting it.

use std::collections::HashMap;

use crate::clock::Millis;
use crate::cluster::sim::SimCluster;
use crate::cluster::{ClusterState, OwnerKind};
use crate::controller::Controller;

/// One interruption, as the report shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InterruptionTrace {
    pub instance_id: String,
    /// The node at the warning (None: the instance had not registered yet, or was gone already).
    pub node: Option<String>,
    /// Kestrel had replaced and terminated the instance before the warning (a rebalance
    /// recommendation's proactive replacement).
    pub replaced_before_warning: bool,
    pub warned_at: Millis,
    /// When the instance is reclaimed.
    pub reclaim_at: Millis,
    /// The claims the controller launched for the node's pods (None: it started no drain).
    pub replacements: Option<Vec<String>>,
    /// When every replacement had registered (the warning itself when none was needed).
    pub replacement_ready_at: Option<Millis>,
    /// When the cloud reclaimed it, and the non-DaemonSet pods still on its node then.
    pub reclaimed_at: Option<Millis>,
    pub pods_at_reclaim: Option<usize>,
}

#[derive(Debug, Default)]
pub struct Tracker {
    traces: Vec<InterruptionTrace>,
    by_instance: HashMap<String, usize>,
    /// Replacement claims not registered yet -> the traces waiting for them (one plan serves every
    /// node warned at the same instant).
    replacement_of: HashMap<String, Vec<usize>>,
    /// Per trace, its replacements not registered yet.
    waiting: HashMap<usize, usize>,
    /// Traces whose drain has not been looked up yet.
    unresolved: Vec<usize>,
}

impl Tracker {
    /// A spot warning for `instance_id`; `terminated` if the instance was terminated already.
    pub fn warned(
        &mut self,
        cluster: &SimCluster,
        instance_id: &str,
        terminated: bool,
        now: Millis,
        reclaim_at: Millis,
    ) {
        if self.by_instance.contains_key(instance_id) {
            return;
        }
        let node = cluster
            .nodes_iter()
            .find(|n| n.instance_id == instance_id)
            .map(|n| n.name.to_string());
        self.by_instance
            .insert(instance_id.to_string(), self.traces.len());
        if node.is_some() {
            self.unresolved.push(self.traces.len());
        }
        self.traces.push(InterruptionTrace {
            instance_id: instance_id.to_string(),
            node,
            replaced_before_warning: terminated,
            warned_at: now,
            reclaim_at,
            replacements: None,
            replacement_ready_at: None,
            reclaimed_at: None,
            pods_at_reclaim: None,
        });
    }

    /// After the controller acted at `now`: which replacements the warned nodes' drains wait for.
    pub fn observe(&mut self, controller: &Controller, now: Millis) {
        if self.unresolved.is_empty() {
            return;
        }
        let replacement_of = &mut self.replacement_of;
        let waiting = &mut self.waiting;
        let traces = &mut self.traces;
        self.unresolved.retain(|&i| {
            let t = &mut traces[i];
            let Some(claims) = t
                .node
                .as_deref()
                .and_then(|n| controller.drain_replacements(n))
            else {
                return true;
            };
            if claims.is_empty() {
                t.replacement_ready_at = Some(now);
            }
            for c in claims {
                replacement_of.entry(c.clone()).or_default().push(i);
            }
            waiting.insert(i, claims.len());
            t.replacements = Some(claims.to_vec());
            false
        });
    }

    /// A claim's node registered.
    pub fn registered(&mut self, claim: &str, now: Millis) {
        for i in self.replacement_of.remove(claim).unwrap_or_default() {
            let left = self.waiting.entry(i).or_default();
            *left = left.saturating_sub(1);
            if *left == 0 {
                self.waiting.remove(&i);
                self.traces[i].replacement_ready_at = Some(now);
            }
        }
    }

    /// An instance terminated: at an interrupted one's reclaim time, the cloud took it (whether or
    /// not the controller terminated it first).
    pub fn terminated(&mut self, cluster: &SimCluster, instance_id: &str, now: Millis) {
        let Some(&i) = self.by_instance.get(instance_id) else {
            return;
        };
        let t = &mut self.traces[i];
        if t.reclaimed_at.is_some() || now < t.reclaim_at {
            return;
        }
        t.reclaimed_at = Some(now);
        // The node is gone already when the drain finished in time.
        let pods = cluster
            .nodes_iter()
            .find(|n| n.instance_id == instance_id)
            .map(|n| {
                cluster
                    .pods_on(&n.name)
                    .iter()
                    .filter(|p| p.facts.owner != OwnerKind::DaemonSet)
                    .count()
            })
            .unwrap_or(0);
        t.pods_at_reclaim = Some(pods);
    }

    pub fn into_traces(self) -> Vec<InterruptionTrace> {
        self.traces
    }
}
