//! Pods no NodePool could take, remembered across batches until something that could change that
//! answer changes.
//!
//! A pending pod that fits no offering of any NodePool (a limit reached, nothing large enough, no
//! offering left) stays pending, and every batch planned it again at full cost: 100,000 replicas over
//! a NodePool limit cost a planning pass of 100,000 pods per batch (Karpenter's users meet the same
//! wall: aws#7658). The answer for such a pod depends on the offerings (catalog, prices, the
//! unavailable cache), the NodePools and their usage (nodes and claims), and the pod's own spec. The
//! NodePools are fixed for a controller's life (a change builds a new controller); the rest is the
//! [`World`]. While the world and the pod's spec stay the same, a batch leaves the pod out of the
//! plan and keeps its reason.
//!
//! Only pods without inter-pod constraints are remembered: other pods can change the answer of a
//! pod with pod affinity (a pod it must join appears) or topology spread (other pods' placement
//! moves the skew), so those are planned again with every batch.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cluster::{PodKey, PodState};
use crate::model::PodSpec;

use super::ClaimPhase;

/// What an unplaceable pod's answer depends on, besides its spec and the (fixed) NodePools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct World {
    /// The launchable offerings' revision (prices, the unavailable cache).
    pub offerings_revision: u64,
    /// The nodes, by name (their pools' usage; sorted).
    pub nodes: Vec<Arc<str>>,
    /// The claims in flight and where each is in its launch (sorted by name).
    pub claims: Vec<(String, ClaimPhase)>,
}

/// The pods the last plan could not place, with the world it saw.
#[derive(Debug, Default)]
pub(super) struct UnplacedMemo {
    world: Option<World>,
    pods: HashMap<PodKey, (Arc<PodSpec>, String)>,
}

impl UnplacedMemo {
    /// Splits a batch's pending pods: those to plan, and those whose answer is remembered (with its
    /// reason), because the world and their spec are what they were when it was given.
    pub fn split(
        &self,
        world: &World,
        pending: Vec<PodState>,
    ) -> (Vec<PodState>, Vec<(PodKey, String)>) {
        if self.world.as_ref() != Some(world) || self.pods.is_empty() {
            return (pending, Vec::new());
        }
        let mut plan = Vec::with_capacity(pending.len());
        let mut remembered = Vec::new();
        for pod in pending {
            match self.pods.get(&pod.key) {
                Some((spec, why)) if same_spec(spec, &pod.facts.compiled) => {
                    remembered.push((pod.key, why.clone()));
                }
                _ => plan.push(pod),
            }
        }
        (plan, remembered)
    }

    /// After a batch as of `world`: remembers the pods it planned and found unplaceable (those
    /// without inter-pod constraints; `unplaceable` by key, with the reason) and keeps the ones it
    /// left out as remembered (`kept`); forgets every other pod.
    pub fn update(
        &mut self,
        world: World,
        planned: &[PodState],
        unplaceable: &HashMap<&PodKey, &str>,
        kept: &[PodKey],
    ) {
        let mut pods: HashMap<PodKey, (Arc<PodSpec>, String)> = kept
            .iter()
            .filter_map(|k| self.pods.remove_entry(k))
            .collect();
        pods.extend(
            planned
                .iter()
                .filter(|p| !p.facts.compiled.has_pod_constraints())
                .filter_map(|p| {
                    let why = unplaceable.get(&p.key)?;
                    Some((
                        p.key.clone(),
                        (p.facts.compiled.clone(), (*why).to_string()),
                    ))
                }),
        );
        *self = UnplacedMemo {
            world: Some(world),
            pods,
        };
    }

    /// How many pods are remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pods.len()
    }
}

fn same_spec(a: &Arc<PodSpec>, b: &Arc<PodSpec>) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{OwnerKind, facts_from_yaml};

    fn pod(name: &str, cpu: &str, spread: bool) -> PodState {
        let spread = if spread {
            ", topologySpreadConstraints: [{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, \
             whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: x}}}]"
        } else {
            ""
        };
        PodState {
            key: format!("default/{name}").into(),
            facts: facts_from_yaml(
                name,
                OwnerKind::Deployment,
                &format!(
                    "spec: {{containers: [{{name: app, resources: {{requests: {{cpu: '{cpu}'}}}}}}]{spread}}}\n"
                ),
            ),
            created_at: 0,
            node: None,
            bound_at: None,
            nominated: None,
        }
    }

    fn world(revision: u64) -> World {
        World {
            offerings_revision: revision,
            nodes: vec!["n1".into()],
            claims: vec![("pool-1".into(), ClaimPhase::Launched)],
        }
    }

    fn keys(pods: &[PodState]) -> Vec<&str> {
        pods.iter()
            .map(|p| p.key.strip_prefix("default/").unwrap_or(&p.key))
            .collect()
    }

    #[test]
    fn unplaceable_pods_are_left_out_while_the_world_and_their_spec_stay_the_same() {
        let (big, small, spread) = (
            pod("big", "64", false),
            pod("small", "1", false),
            pod("spread", "64", true),
        );
        let unplaceable: HashMap<&PodKey, &str> =
            [(&big.key, "limit cpu reached"), (&spread.key, "no room")]
                .into_iter()
                .collect();
        let mut memo = UnplacedMemo::default();
        memo.update(
            world(1),
            &[big.clone(), small.clone(), spread.clone()],
            &unplaceable,
            &[],
        );
        // The spread pod is not remembered: other pods' placement can change its answer.
        assert_eq!(memo.len(), 1);

        let (plan, remembered) =
            memo.split(&world(1), vec![big.clone(), small.clone(), spread.clone()]);
        assert_eq!(keys(&plan), ["small", "spread"]);
        assert_eq!(
            remembered,
            vec![(big.key.clone(), "limit cpu reached".to_string())]
        );

        // Another world (offerings, nodes or claims changed): everything is planned again.
        let (plan, remembered) = memo.split(&world(2), vec![big.clone(), small.clone()]);
        assert_eq!(keys(&plan), ["big", "small"]);
        assert!(remembered.is_empty());
        let mut moved = world(1);
        moved.claims[0].1 = ClaimPhase::Launching;
        assert_eq!(memo.split(&moved, vec![big.clone()]).0.len(), 1);

        // The same pod with another spec (its volume bound, say): planned again.
        let changed = PodState {
            facts: pod("big", "2", false).facts,
            ..big.clone()
        };
        let (plan, remembered) = memo.split(&world(1), vec![changed]);
        assert_eq!(keys(&plan), ["big"]);
        assert!(remembered.is_empty());

        // A batch that left `big` out keeps it; one that neither planned nor kept it forgets it.
        let other = pod("other", "64", false);
        let unplaceable: HashMap<&PodKey, &str> =
            [(&other.key, "limit cpu reached")].into_iter().collect();
        memo.update(
            world(1),
            std::slice::from_ref(&other),
            &unplaceable,
            std::slice::from_ref(&big.key),
        );
        assert_eq!(memo.len(), 2);
        memo.update(world(1), &[], &HashMap::new(), &[]);
        assert_eq!(memo.len(), 0);
    }
}
