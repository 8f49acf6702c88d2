//! Disruption cost, Karpenter style: what evicting a node's pods costs, so cheap moves go first.

use super::NodeView;
use crate::clock::Millis;
use crate::cluster::PodState;

/// One pod's eviction cost: 1, plus its `pod-deletion-cost` scaled by 2^-27, plus its priority scaled by
/// 2^-25, clamped to [-10, 10] (Karpenter's `EvictionCost`).
pub fn eviction_cost(pod: &PodState) -> f64 {
    let deletion_cost = f64::from(pod.facts.deletion_cost());
    let priority = pod.facts.priority();
    let cost = 1.0 + deletion_cost / 2f64.powi(27) + f64::from(priority) / 2f64.powi(25);
    cost.clamp(-10.0, 10.0)
}

/// A node's disruption cost: its pods' eviction costs, weighted by the fraction of its life left before
/// it expires anyway (Karpenter's `lifetimeRemaining`: a node about to expire is cheap to disrupt).
pub fn node_disruption_cost(node: &NodeView, expire_after: Option<Millis>, now: Millis) -> f64 {
    let pods: f64 = node.pods.iter().map(eviction_cost).sum();
    pods * lifetime_remaining(node.node.created_at, expire_after, now)
}

pub fn lifetime_remaining(created_at: Millis, expire_after: Option<Millis>, now: Millis) -> f64 {
    match expire_after {
        Some(ttl) if ttl > 0 => {
            let age = (now - created_at).max(0) as f64;
            (1.0 - age / ttl as f64).clamp(0.0, 1.0)
        }
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetime_remaining_falls_with_age() {
        assert_eq!(lifetime_remaining(0, None, 1_000), 1.0);
        assert_eq!(lifetime_remaining(0, Some(1_000), 250), 0.75);
        assert_eq!(lifetime_remaining(0, Some(1_000), 5_000), 0.0);
    }

    fn pod_with(deletion_cost: i32, priority: Option<i32>) -> PodState {
        use crate::cluster::{OwnerKind, facts_from_yaml};
        let priority = priority
            .map(|p| format!("priority: {p}"))
            .unwrap_or_default();
        PodState {
            key: "default/p".into(),
            facts: facts_from_yaml(
                "w",
                OwnerKind::Deployment,
                &format!(
                    "metadata: {{annotations: {{controller.kubernetes.io/pod-deletion-cost: '{deletion_cost}'}}}}\nspec: {{containers: [], {priority}}}\n"
                ),
            ),
            created_at: 0,
            node: None,
            bound_at: None,
            nominated: None,
        }
    }

    #[test]
    fn deletion_cost_and_priority_raise_the_eviction_cost() {
        let plain = eviction_cost(&pod_with(0, None));
        assert_eq!(plain, 1.0);
        assert!(eviction_cost(&pod_with(1 << 27, None)) > plain);
        assert!(eviction_cost(&pod_with(-(1 << 27), None)) < plain);
        assert!(eviction_cost(&pod_with(0, Some(1 << 25))) > plain);
        // Karpenter clamps to [-10, 10].
        assert_eq!(eviction_cost(&pod_with(i32::MAX, Some(i32::MAX))), 10.0);
    }
}
