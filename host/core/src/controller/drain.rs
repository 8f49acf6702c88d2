//! Drains and terminations: cordon, evictions with per-pod backoff, terminate (interruption notices
//! start drains in `interruption`).
//!
//! A drain starts once its replacement claims have registered (or at its deadline). Each pod is
//! evicted through the Eviction API; a refusal (a PDB's 429, the API server unavailable) backs that pod
//! off exponentially (`command::backoff_ms`) instead of re-evicting every pod on every tick. When no
//! pod but DaemonSet pods is left, the instance is terminated and the Node deleted. A termination that
//! is throttled is retried until the cloud confirms it.

use super::{Action, Command, Controller, Drain, Reason};
use crate::clock::Millis;
use crate::cloud::CloudError;
use crate::cluster::{ClusterError, ClusterState, OwnerKind, PodKey, PodState};

impl Controller {
    /// Cordons the node, records the drain in its claim record and starts tracking it.
    pub(super) fn begin_drain(&mut self, now: Millis, node: &str, drain: Drain) {
        let reason = drain.reason;
        let detail = drain.detail.clone();
        let pool = self
            .records
            .get(&drain.claim)
            .map_or_else(|| "unknown".to_string(), |r| r.node_pool.clone());
        *self
            .stats
            .disrupted
            .entry(pool)
            .or_default()
            .entry(reason)
            .or_default() += 1;
        self.write_drain(&drain.claim.clone(), Some(&drain));
        self.draining.insert(node.to_string(), drain);
        self.outbox.push(Command::Cordon {
            node: node.to_string(),
        });
        self.record(
            now,
            Action::Cordon {
                node: node.to_string(),
            },
            reason,
            detail,
        );
    }

    pub(super) fn progress_drains(&mut self, now: Millis, cluster: &dyn ClusterState) {
        let names: Vec<String> = self.draining.keys().cloned().collect();
        for name in names {
            let drain = &self.draining[&name];
            if !(self.replacements_ready(drain) || now >= drain.drain_by) {
                continue;
            }
            let force = drain.forceful;
            let pods: Vec<PodState> = cluster
                .pods_on(&name)
                .into_iter()
                .filter(|p| p.facts.owner != OwnerKind::DaemonSet)
                .collect();
            let in_flight = self
                .evictions
                .iter()
                .any(|((n, _), r)| *n == name && r.in_flight);
            if pods.is_empty() && !in_flight {
                self.finish_drain(now, &name);
                continue;
            }
            for pod in pods {
                let retry = self
                    .evictions
                    .entry((name.clone(), pod.key.clone()))
                    .or_default();
                if retry.due(now) {
                    retry.in_flight = true;
                    self.outbox.push(Command::Evict {
                        pod: pod.key.clone(),
                        node: name.clone(),
                        force,
                    });
                }
            }
        }
    }

    /// Every evictable pod is gone: terminate the instance and delete the Node.
    fn finish_drain(&mut self, now: Millis, node: &str) {
        let Some(drain) = self.draining.get(node).cloned() else {
            return;
        };
        self.terminate(&drain.instance_id);
        self.forget_node(node, &drain.instance_id, &drain.claim);
        self.record(
            now,
            Action::Terminate {
                node: Some(node.to_string()),
                instance_id: drain.instance_id,
            },
            drain.reason,
            "drained".into(),
        );
    }

    /// The node is going (drained, or its instance gone): delete the Node and its claim record, and
    /// stop tracking its drain and evictions.
    pub(super) fn forget_node(&mut self, node: &str, instance_id: &str, claim: &str) {
        self.draining.remove(node);
        self.evictions.retain(|(n, _), _| n != node);
        self.node_by_instance.remove(instance_id);
        self.delete_record(claim);
        self.outbox.push(Command::DeleteNode {
            node: node.to_string(),
        });
    }

    pub(super) fn eviction_answered(
        &mut self,
        now: Millis,
        pod: PodKey,
        node: String,
        result: Result<(), ClusterError>,
    ) {
        let key = (node, pod);
        let reason = self.draining.get(&key.0).map(|d| d.reason);
        match result {
            Ok(()) | Err(ClusterError::PodNotFound(_)) => {
                self.evictions.remove(&key);
                if result.is_ok() {
                    let (node, pod) = key;
                    self.record(
                        now,
                        Action::Evict {
                            pod: pod.to_string(),
                            node,
                        },
                        reason.unwrap_or(Reason::InstanceGone),
                        "draining".into(),
                    );
                }
            }
            Err(err) => {
                self.stats.evictions_refused += 1;
                tracing::debug!(pod = %key.1, %err, "eviction refused; backing off");
                if let Some(retry) = self.evictions.get_mut(&key) {
                    retry.refused(now);
                }
            }
        }
    }

    /// Issues a termination and tracks it until the cloud confirms it (or a listing shows it gone).
    pub(super) fn terminate(&mut self, instance_id: &str) {
        let retry = self.terminating.entry(instance_id.to_string()).or_default();
        if !retry.in_flight {
            retry.in_flight = true;
            self.outbox.push(Command::Terminate {
                instance_id: instance_id.to_string(),
            });
        }
    }

    pub(super) fn retry_terminations(&mut self, now: Millis) {
        let due: Vec<String> = self
            .terminating
            .iter()
            .filter(|(_, r)| r.due(now) && r.attempts > 0)
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            self.terminate(&id);
        }
    }

    pub(super) fn terminate_answered(
        &mut self,
        now: Millis,
        instance_id: &str,
        result: Result<(), CloudError>,
    ) {
        match result {
            // Terminating a terminated (or unknown) instance is done, not an error.
            Ok(()) | Err(CloudError::NotFound { .. }) => {
                if let Some(retry) = self.terminating.get_mut(instance_id) {
                    // Kept (not in flight) until a listing no longer shows the instance, so garbage
                    // collection does not count it as an orphan meanwhile.
                    retry.in_flight = false;
                    retry.attempts = 0;
                    retry.next_at = Millis::MAX;
                }
            }
            Err(err) => {
                tracing::warn!(instance_id, %err, "terminate failed; retrying with backoff");
                if let Some(retry) = self.terminating.get_mut(instance_id) {
                    retry.refused(now);
                }
            }
        }
    }
}
