//! Launching claims: the claim record first, then CreateFleet, then the answer.
//!
//! A claim is recorded (with its unique name, which is the launch's client token) before its launch
//! command leaves, so a pod nominated to it is never planned twice and a launch whose answer is lost
//! is re-sent with the same token rather than launched again under a new name. A throttled or
//! unanswered launch is retried with backoff; a launch that fails for good gives its claim up, its
//! pods are planned again, and a disruption waiting for it as its replacement is aborted (the node is
//! uncordoned and keeps its pods), unless the node is going away anyway (interruption, expiry).

use super::command::backoff_ms;
use super::provision::PlannedClaim;
use super::{Action, ClaimPhase, ClaimState, Command, Controller, MAX_LAUNCH_ATTEMPTS, Reason};
use crate::clock::Millis;
use crate::cloud::{CloudError, LaunchRequest, Launched};
use crate::cluster::{ClaimRecord, ClusterError, ClusterState, DrainRecord};
use crate::interruption;

impl Controller {
    /// Records the planned claims and issues their launches; returns their names.
    pub(super) fn launch(
        &mut self,
        now: Millis,
        claims: Vec<PlannedClaim>,
        reason: Reason,
        nominate: bool,
    ) -> Vec<String> {
        let mut names = Vec::with_capacity(claims.len());
        for planned in claims {
            let name = self.claim_name(&planned.node_pool);
            let offerings: std::sync::Arc<[crate::cloud::Offering]> = planned.offerings.into();
            let template = self.pool_template(&planned.node_pool);
            let request = LaunchRequest {
                claim: name.clone(),
                node_pool: planned.node_pool.clone(),
                offerings: offerings.clone(),
                template: template.clone(),
            };
            let core = planned.core.map(|mut c| {
                c.name = name.clone();
                c
            });
            let record = ClaimRecord {
                name: name.clone(),
                node_pool: planned.node_pool.clone(),
                template,
                created_at: now,
                offerings,
                reason,
                pods: planned.pods.clone(),
                instance_id: None,
                offering: None,
                drain: None,
            };
            self.records.insert(name.clone(), record.clone());
            // The record first: the launch is issued when its write is confirmed.
            self.outbox.push(Command::WriteClaim(Box::new(record)));
            self.claims.insert(
                name.clone(),
                ClaimState {
                    node_pool: planned.node_pool,
                    created_at: now,
                    request,
                    phase: ClaimPhase::Writing,
                    instance_id: None,
                    offering: None,
                    launched_seen_at: None,
                    missing_since: None,
                    core,
                    pods: planned.pods.clone(),
                    reason,
                    explanation: planned.explanation,
                    attempts: 0,
                    retry_at: None,
                },
            );
            if nominate {
                for pod in planned.pods {
                    self.outbox.push(Command::Nominate {
                        pod,
                        claim: name.clone(),
                    });
                }
            }
            names.push(name);
        }
        names
    }

    /// Claims whose node has registered (the snapshot shows a node of the claim) are done launching.
    /// Pods nominated to such a node that it did not take (another pod got the room first) are
    /// pending with nothing coming for them: they are looked at again after a batch window
    /// (registrations arrive in bursts; one look serves the whole burst instead of one scan of every
    /// pending pod per node).
    pub(super) fn observe_registrations(&mut self, now: Millis, cluster: &dyn ClusterState) {
        let revision = cluster.nodes_revision();
        if self.claims.is_empty() || (revision.is_some() && revision == self.seen_nodes_revision) {
            self.seen_nodes_revision = revision;
            return;
        }
        self.seen_nodes_revision = revision;
        let registered: Vec<_> = self
            .claims
            .keys()
            .filter_map(|claim| cluster.node_of_claim(claim))
            .collect();
        if registered.is_empty() {
            return;
        }
        for node in registered {
            self.claims.remove(&node.claim);
            self.node_by_instance
                .insert(node.instance_id.clone(), node.name.to_string());
        }
        let at = now + self.config.batch_idle_ms;
        self.retry_at = Some(self.retry_at.map_or(at, |r| r.min(at)));
    }

    /// The pool's template, shared by its claims (an empty one for a pool that is gone).
    fn pool_template(&self, pool: &str) -> std::sync::Arc<crate::api::NodeClaimTemplate> {
        self.pools
            .iter()
            .find(|p| p.name == pool)
            .map(|p| p.template.clone())
            .unwrap_or_default()
    }

    /// A claim name no claim of this controller has had (the launch's idempotency token).
    fn claim_name(&mut self, pool: &str) -> String {
        loop {
            let name = format!("{pool}-{:05}", self.next_claim);
            self.next_claim += 1;
            if !self.claims.contains_key(&name) {
                return name;
            }
        }
    }

    /// Re-sends record writes and launches whose backoff has passed (same request, same client
    /// token).
    pub(super) fn retry_launches(&mut self, now: Millis) {
        let due: Vec<String> = self
            .claims
            .iter()
            .filter(|(_, c)| c.retry_at.is_some_and(|at| at <= now))
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let claim = self.claims.get_mut(&name).expect("listed above");
            claim.retry_at = None;
            match claim.phase {
                ClaimPhase::Writing => {
                    if let Some(record) = self.records.get(&name) {
                        self.outbox
                            .push(Command::WriteClaim(Box::new(record.clone())));
                    }
                }
                ClaimPhase::Launching => self.outbox.push(Command::Launch(claim.request.clone())),
                ClaimPhase::Launched => {}
            }
        }
    }

    /// A claim record's write answered: a claim waiting for it launches now.
    pub(super) fn claim_written(
        &mut self,
        now: Millis,
        name: &str,
        result: Result<(), ClusterError>,
    ) {
        let Some(claim) = self.claims.get_mut(name) else {
            return;
        };
        match result {
            Ok(()) if claim.phase == ClaimPhase::Writing => {
                claim.phase = ClaimPhase::Launching;
                self.outbox.push(Command::Launch(claim.request.clone()));
            }
            Ok(()) => {}
            Err(err) => {
                // Nothing launches without its record: try the write again.
                tracing::warn!(claim = name, %err, "claim record write failed; retrying");
                claim.retry_at = Some(now.saturating_add(backoff_ms(claim.attempts)));
                claim.attempts = claim.attempts.saturating_add(1);
            }
        }
    }

    /// Writes the drain of a node's claim into its record (None: the drain ended or was aborted).
    pub(super) fn write_drain(&mut self, claim: &str, drain: Option<&super::Drain>) {
        let Some(record) = self.records.get_mut(claim) else {
            return;
        };
        record.drain = drain.map(|d| DrainRecord {
            reason: d.reason,
            drain_by: d.drain_by,
            waiting_for: d.waiting_for.clone(),
            forceful: d.forceful,
            abort_without_replacement: d.abort_without_replacement,
            detail: d.detail.clone(),
        });
        self.outbox
            .push(Command::WriteClaim(Box::new(record.clone())));
    }

    /// The claim's node is gone for good: its record goes too.
    pub(super) fn delete_record(&mut self, claim: &str) {
        if self.records.remove(claim).is_some() {
            self.outbox.push(Command::DeleteClaim {
                name: claim.to_string(),
            });
        }
    }

    pub(super) fn launch_answered(
        &mut self,
        now: Millis,
        name: &str,
        result: Result<Launched, CloudError>,
    ) {
        let Some(claim) = self.claims.get(name) else {
            // The claim was given up meanwhile (timed out, its instance reported gone): garbage
            // collection terminates whatever this launch started once it shows in a listing.
            tracing::info!(
                claim = name,
                "launch answered for a claim no longer tracked"
            );
            return;
        };
        let reason = claim.reason;
        match result {
            Ok(result) => {
                for skipped in &result.skipped {
                    self.stats.insufficient_capacity_fallthroughs += 1;
                    let o = skipped.offering.clone();
                    self.avoid(
                        now,
                        &o,
                        now + interruption::AVOID_OFFERING_MS,
                        reason,
                        "insufficient capacity",
                    );
                }
                let claim = self.claims.get_mut(name).expect("looked up above");
                let o = result.instance.offering.clone();
                claim.phase = ClaimPhase::Launched;
                claim.instance_id = Some(result.instance.id.clone());
                claim.offering = Some(o.clone());
                claim.launched_seen_at = Some(now);
                claim.retry_at = None;
                if let Some(c) = &mut claim.core {
                    c.launched = Some(crate::model::Launched {
                        instance_type: o.instance_type.clone(),
                        zone: o.zone.clone(),
                        capacity_type: o.capacity_type,
                        price: o.price,
                        provider_id: format!("aws:///{}/{}", o.zone, result.instance.id),
                    });
                }
                let (pool, pods, explanation) = (
                    claim.node_pool.clone(),
                    claim.pods.len(),
                    claim.explanation.clone(),
                );
                if let Some(record) = self.records.get_mut(name) {
                    record.instance_id = Some(result.instance.id.clone());
                    record.offering = Some(o.clone());
                    // Launched: the ranked offerings are no longer needed to resume (a record lives
                    // as long as its node; thousands of them should not each keep 60 offerings).
                    record.offerings = std::sync::Arc::from([]);
                    self.outbox
                        .push(Command::WriteClaim(Box::new(record.clone())));
                }
                self.stats.claims_launched += 1;
                self.record(
                    now,
                    Action::LaunchClaim {
                        claim: name.to_string(),
                        node_pool: pool,
                        offering: Some(o),
                        pods,
                    },
                    reason,
                    explanation,
                );
            }
            Err(err) if err.is_retryable() && claim.attempts + 1 < MAX_LAUNCH_ATTEMPTS => {
                let claim = self.claims.get_mut(name).expect("looked up above");
                claim.retry_at = Some(now.saturating_add(backoff_ms(claim.attempts)));
                claim.attempts += 1;
                self.stats.launch_retries += 1;
                tracing::info!(claim = name, %err, "launch retried with the same client token");
            }
            Err(err) => {
                let claim = self.claims.get(name).expect("looked up above").clone();
                self.stats.launch_failures += 1;
                if let CloudError::NoCapacity { failures, .. } = &err {
                    for f in failures {
                        self.avoid(
                            now,
                            &f.offering,
                            now + interruption::AVOID_OFFERING_MS,
                            reason,
                            "insufficient capacity",
                        );
                    }
                }
                self.record(
                    now,
                    Action::LaunchClaim {
                        claim: name.to_string(),
                        node_pool: claim.node_pool,
                        offering: None,
                        pods: claim.pods.len(),
                    },
                    reason,
                    format!("launch failed: {err}"),
                );
                // The pods stay pending and are planned again (`claim_lost`).
                self.retry_at = Some(now + self.config.batch_max_ms);
                self.claim_lost(now, name);
            }
        }
    }

    /// A claim is gone without registering (launch failed, timed out, instance vanished): its record
    /// is deleted, drains that waited for it as their replacement stop waiting, and a voluntary one
    /// is aborted.
    pub(super) fn claim_lost(&mut self, now: Millis, name: &str) {
        self.claims.remove(name);
        self.delete_record(name);
        // Its nominated pods are pending with nothing coming for them: plan them again.
        self.seen_revision = None;
        let waiting: Vec<String> = self
            .draining
            .iter()
            .filter(|(_, d)| d.waiting_for.iter().any(|c| c == name))
            .map(|(node, _)| node.clone())
            .collect();
        for node in waiting {
            let drain = self.draining.get_mut(&node).expect("listed above");
            drain.waiting_for.retain(|c| c != name);
            let drain = drain.clone();
            if drain.abort_without_replacement {
                let reason = drain.reason;
                self.draining.remove(&node);
                self.write_drain(&drain.claim, None);
                self.evictions.retain(|(n, _), _| *n != node);
                self.stats.disruptions_aborted += 1;
                self.outbox.push(Command::Uncordon { node: node.clone() });
                self.record(
                    now,
                    Action::Uncordon { node },
                    reason,
                    format!("replacement {name} could not be launched; disruption aborted"),
                );
            } else {
                self.write_drain(&drain.claim, Some(&drain));
            }
        }
    }
}

/// A provisioner that plans nothing: stands in for a moment while a controller restarts.
struct Restarting;

impl super::provision::Provisioner for Restarting {
    fn plan(&mut self, _: &super::ProvisionInput<'_>) -> super::provision::ProvisionPlan {
        super::provision::ProvisionPlan::default()
    }
    fn name(&self) -> String {
        "restarting".into()
    }
}

impl Controller {
    /// Throws away the controller's whole memory (a crash, a restart, a leader failover) and rebuilds
    /// it from what the cluster says: the claim records, the nodes and their pods. The provisioning
    /// and disruption steps forget their own state too. The decision log and the counters survive:
    /// they are the observer's, not the controller's.
    pub fn restart(&mut self, now: Millis, cluster: &dyn ClusterState) {
        let mut provisioner = std::mem::replace(&mut self.provisioner, Box::new(Restarting));
        let mut disruption = std::mem::replace(&mut self.disruption, Box::new(super::NoDisruption));
        provisioner.forget();
        disruption.forget();
        let overhead = std::mem::replace(
            &mut self.daemon_overhead,
            Box::new(|_: &super::PoolSpec, _: &super::InstanceTypeInfo| {
                crate::cluster::ResourceList::default()
            }),
        );
        let fresh = Controller::new(
            self.config,
            std::mem::take(&mut self.pools),
            std::mem::take(&mut self.instance_types),
            self.contract_catalog.clone(),
            self.seed,
            std::mem::take(&mut self.zones),
            overhead,
            provisioner,
            disruption,
        );
        let log = std::mem::take(&mut self.log);
        let stats = std::mem::take(&mut self.stats);
        *self = fresh;
        self.log = log;
        self.stats = stats;
        self.stats.restarts += 1;
        self.recover(now, cluster);
    }

    /// Rebuilds the controller's state from the cluster's claim records and nodes: registered nodes
    /// (and their drains under way), claims still launching (their launch is re-sent with the same
    /// client token: it answers with the instance the first call launched, if it did), and the
    /// claim-name counter past every name in use. What the cloud holds is reconciled by the next
    /// garbage-collection pass.
    pub fn recover(&mut self, now: Millis, cluster: &dyn ClusterState) {
        let nodes = cluster.nodes();
        let pending = cluster.pending_pods();
        let pending: std::collections::HashMap<&crate::cluster::PodKey, &crate::cluster::PodState> =
            pending.iter().map(|p| (&p.key, p)).collect();
        for record in cluster.claim_records() {
            if let Some(n) = record
                .name
                .rsplit('-')
                .next()
                .and_then(|suffix| suffix.parse::<u64>().ok())
            {
                self.next_claim = self.next_claim.max(n + 1);
            }
            match nodes.iter().find(|n| n.claim == record.name) {
                Some(node) => {
                    self.node_by_instance
                        .insert(node.instance_id.clone(), node.name.to_string());
                    if let Some(d) = &record.drain {
                        self.draining.insert(
                            node.name.to_string(),
                            super::Drain {
                                instance_id: node.instance_id.clone(),
                                claim: record.name.clone(),
                                detail: d.detail.clone(),
                                reason: d.reason,
                                drain_by: d.drain_by,
                                waiting_for: d.waiting_for.clone(),
                                forceful: d.forceful,
                                abort_without_replacement: d.abort_without_replacement,
                            },
                        );
                    }
                }
                None => {
                    let request = LaunchRequest {
                        claim: record.name.clone(),
                        node_pool: record.node_pool.clone(),
                        offerings: record.offerings.clone(),
                        template: record.template.clone(),
                    };
                    let phase = if record.instance_id.is_some() {
                        ClaimPhase::Launched
                    } else {
                        self.outbox.push(Command::Launch(request.clone()));
                        ClaimPhase::Launching
                    };
                    // Nominations the old process issued but a crash kept from landing.
                    if record.reason == Reason::Provisioning {
                        for pod in &record.pods {
                            if pending.get(pod).is_some_and(|p| {
                                p.nominated.as_deref() != Some(record.name.as_str())
                            }) {
                                self.outbox.push(Command::Nominate {
                                    pod: pod.clone(),
                                    claim: record.name.clone(),
                                });
                            }
                        }
                    }
                    self.claims.insert(
                        record.name.clone(),
                        ClaimState {
                            node_pool: record.node_pool.clone(),
                            created_at: record.created_at,
                            request,
                            phase,
                            instance_id: record.instance_id.clone(),
                            offering: record.offering.clone(),
                            launched_seen_at: record.instance_id.as_ref().map(|_| now),
                            missing_since: None,
                            core: super::convert::recovered_claim(&record),
                            pods: record.pods.clone(),
                            reason: record.reason,
                            explanation: "resumed after a restart".into(),
                            attempts: 0,
                            retry_at: None,
                        },
                    );
                }
            }
            self.records.insert(record.name.clone(), record);
        }
        // Pods nominated to a claim that no record backs are planned again at once.
        self.seen_revision = None;
    }
}
