//! Expiration: a node older than its NodePool's `expireAfter` is replaced, whatever the budgets say.
//!
//! It is forceful in Karpenter v1's sense: budgets do not hold it back. PodDisruptionBudgets and
//! `do-not-disrupt` pods do, until the NodePool's `terminationGracePeriod` has passed since the node
//! started draining; then the drain no longer waits for them. Without a grace period they hold it back
//! forever, as in Karpenter.

use super::{ClusterView, NodeView, PoolSettings};
use crate::clock::Millis;

/// What expiry asks of a node now.
#[derive(Debug, Clone, PartialEq)]
pub enum Expiry {
    /// Not expired, or already draining and not yet past its grace period.
    Nothing,
    /// Start draining (respecting PDBs; pods without a controller go too, as the node goes).
    Drain { age: Millis },
    /// Draining for longer than the grace period: stop waiting for PDBs and do-not-disrupt pods.
    Force { draining_for: Millis },
    /// Expired, but a do-not-disrupt pod holds it and there is no grace period to end the wait.
    Held { reason: String },
}

pub fn expiry(node: &NodeView, pool: &PoolSettings, view: &ClusterView) -> Expiry {
    let Some(ttl) = pool.expire_after else {
        return Expiry::Nothing;
    };
    let age = view.now - node.node.created_at;
    if age < ttl {
        return Expiry::Nothing;
    }
    if let Some(since) = node.expiring_since {
        return match pool.termination_grace_period {
            Some(grace) if view.now - since >= grace => Expiry::Force {
                draining_for: view.now - since,
            },
            _ => Expiry::Nothing,
        };
    }
    if view.disrupting.contains(node.name()) {
        // Already going for another reason.
        return Expiry::Nothing;
    }
    if let Some(p) = node.pods.iter().find(|p| p.facts.do_not_disrupt()) {
        let expired_at = node.node.created_at + ttl;
        return match pool.termination_grace_period {
            Some(grace) if view.now - expired_at >= grace => Expiry::Force {
                draining_for: view.now - expired_at,
            },
            _ => Expiry::Held {
                reason: format!("pod {} has karpenter.sh/do-not-disrupt", p.key),
            },
        };
    }
    Expiry::Drain { age }
}
