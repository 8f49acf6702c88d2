//! The provisioning core (`crate::provisioning::plan`) behind the loop's [`Provisioner`] seam.
//!
//! Each batch becomes a [`Snapshot`]: the catalog with the offerings launchable now (spot prices from
//! the cloud, offerings in the unavailable cache left out), the NodePools, the registered nodes with
//! their pods, the DaemonSets, and the claims still launching. The plan's claims become launch
//! requests (offerings in the ranker's order); pods it binds to a launching claim are nominated to it.

use std::collections::HashMap;
use std::sync::Arc;

use super::convert;
use super::provision::{PlannedClaim, ProvisionInput, ProvisionPlan, Provisioner};
use crate::cloud::Offering;
use crate::cluster::{PodKey, PodSpecFacts};
use crate::model::{self, Catalog, Snapshot};
use crate::policy::PolicyProvider;
use crate::provisioning::{self, BindingTarget, RegistryRankers};

pub struct CorePlanner {
    /// Each NodePool's ranker from the registry.
    rankers: RegistryRankers,
    /// What the plans reuse across batches (pool views), keyed by catalog revision and NodePool.
    planner: provisioning::Planner,
    ranker_label: String,
    pools: Vec<model::NodePool>,
    daemonsets: Vec<model::DaemonSet>,
    instance_types: Vec<model::InstanceType>,
    /// The catalog of the last batch and its offerings revision, reused while the launchable offerings stay the same (the NodePools
    /// are fixed for the planner's life, like `pools`).
    catalog: Option<(u64, Arc<Catalog>)>,
}

impl CorePlanner {
    /// `registry` gives each NodePool its ranker (`registry.ranker(pool)`); `ranker_label` names the
    /// ranker(s) in reports.
    pub fn new(
        registry: Arc<dyn PolicyProvider>,
        ranker_label: String,
        pools: Vec<model::NodePool>,
        daemonsets: &[Arc<PodSpecFacts>],
        instance_types: Vec<model::InstanceType>,
    ) -> CorePlanner {
        let daemonsets = daemonsets
            .iter()
            .map(|ds| model::DaemonSet {
                namespace: "default".into(),
                name: ds.workload.to_string(),
                pod: ds.compiled.clone(),
            })
            .collect();
        CorePlanner {
            rankers: RegistryRankers::new(registry),
            planner: provisioning::Planner::new(),
            ranker_label,
            pools,
            daemonsets,
            instance_types,
            catalog: None,
        }
    }

    /// The catalog of the offerings some NodePool allows (the others cannot matter to the plan, and
    /// the planner's per-pool work grows with the catalog).
    fn catalog(&mut self, input: &ProvisionInput<'_>) -> Arc<Catalog> {
        let key = input.offerings_revision;
        if let Some((k, c)) = &self.catalog
            && *k == key
        {
            return c.clone();
        }
        let type_info: HashMap<&str, &super::InstanceTypeInfo> = input
            .instance_types
            .iter()
            .map(|t| (t.name.as_str(), t))
            .collect();
        let offerings: Vec<&Offering> = input
            .offerings
            .iter()
            .filter(|o| {
                type_info.get(o.instance_type.as_str()).is_some_and(|it| {
                    input
                        .pools
                        .iter()
                        .any(|p| p.allows(it, &o.zone, o.capacity_type))
                })
            })
            .collect();
        // Only the instance types some offering uses, in catalog order.
        let used: std::collections::BTreeSet<&str> =
            offerings.iter().map(|o| o.instance_type.as_str()).collect();
        let types: Vec<model::InstanceType> = self
            .instance_types
            .iter()
            .filter(|t| used.contains(t.name.as_str()))
            .cloned()
            .collect();
        let index: HashMap<&str, usize> = types
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i))
            .collect();
        let offerings = offerings
            .iter()
            .filter_map(|o| {
                Some(model::Offering {
                    instance_type: *index.get(o.instance_type.as_str())?,
                    zone: o.zone.clone(),
                    capacity_type: o.capacity_type,
                    price: o.price,
                    available: true,
                    interruption: if o.capacity_type == crate::cloud::CapacityType::Spot {
                        -1.0
                    } else {
                        0.0
                    },
                    capacity_score: -1.0,
                })
            })
            .collect();
        let catalog = Arc::new(Catalog::new(types, offerings).expect("offerings index the types"));
        self.catalog = Some((key, catalog.clone()));
        catalog
    }
}

impl Provisioner for CorePlanner {
    fn name(&self) -> String {
        format!("provisioning core, ranker {}", self.ranker_label)
    }

    fn needs_bound_pods(&self) -> bool {
        true
    }

    fn plan(&mut self, input: &ProvisionInput<'_>) -> ProvisionPlan {
        let catalog = self.catalog(input);
        let mut snapshot = Snapshot::new(input.now, catalog);
        snapshot.node_pools = self.pools.clone();
        snapshot.daemonsets = self.daemonsets.clone();
        snapshot.nodes = input.nodes.iter().map(|n| convert::node(n)).collect();
        snapshot.node_claims = input.in_flight.to_vec();
        let mut out = ProvisionPlan::default();
        let mut keys: Vec<PodKey> = Vec::new();
        for pod in input.pending.iter().chain(input.bound.iter()) {
            snapshot.pods.push(model::Pod {
                name: pod.key.to_string(),
                uid: pod.key.to_string(),
                spec: pod.facts.compiled.clone(),
                node_name: pod.node.as_ref().map(|n| n.to_string()),
                terminating: false,
            });
            keys.push(pod.key.clone());
        }
        let plan = self.planner.plan(&snapshot, &mut self.rankers);
        for r in &plan.rankings {
            if let Some(f) = &r.fallback {
                out.policy_fallbacks.push(format!(
                    "{} ({}): {:?}: {}",
                    f.policy, r.node_pool, f.kind, f.detail
                ));
            }
        }
        for b in &plan.bindings {
            if let BindingTarget::NodeClaim(claim) = &b.target {
                out.nominations.push((keys[b.pod].clone(), claim.clone()));
            }
        }
        for u in &plan.unschedulable {
            out.unplaceable.push((keys[u.pod].clone(), u.to_string()));
        }
        for c in plan.claims {
            let offerings = c
                .offerings
                .iter()
                .map(|o| Offering {
                    instance_type: o.instance_type.clone(),
                    zone: o.zone.clone(),
                    capacity_type: o.capacity_type,
                    price: o.price,
                })
                .collect();
            let pods = c.pods.iter().map(|&i| keys[i].clone()).collect();
            let template = model::NodeClaim {
                name: String::new(),
                node_pool: c.node_pool.clone(),
                requirements: c.requirements.clone(),
                requests: c.requests.clone(),
                labels: c.labels.clone(),
                taints: c.taints.clone(),
                startup_taints: c.startup_taints.clone(),
                created_at: input.now,
                launched: None,
                node_name: None,
                marked_for_deletion: false,
            };
            out.claims.push(PlannedClaim {
                node_pool: c.node_pool,
                offerings,
                pods,
                explanation: c.explanation,
                core: Some(template),
            });
        }
        out
    }
}
