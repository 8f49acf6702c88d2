//! Safety rules a voluntary move must pass before any policy sees it.
//!
//! - a node annotated `karpenter.sh/do-not-disrupt`, or running a pod so annotated, is not a candidate;
//! - a pod without a controller (nothing would recreate it) blocks voluntary disruption;
//! - the evictions of a move must fit in every PodDisruptionBudget's allowance right now.

use std::collections::BTreeMap;

use super::{NodeView, PdbView};
use crate::cluster::OwnerKind;

/// Why the node may not be disrupted voluntarily, if it may not.
pub fn blocker(node: &NodeView) -> Option<String> {
    if node.do_not_disrupt {
        return Some("node has karpenter.sh/do-not-disrupt".into());
    }
    if let Some(p) = node.pods.iter().find(|p| p.facts.do_not_disrupt()) {
        return Some(format!("pod {} has karpenter.sh/do-not-disrupt", p.key));
    }
    if let Some(p) = node.pods.iter().find(|p| p.facts.owner == OwnerKind::None) {
        return Some(format!("pod {} has no controller", p.key));
    }
    if !node.node.ready {
        return Some("node is not ready".into());
    }
    None
}

/// The PDB that forbids an eviction the move needs, if any. As in Karpenter, a move is held back when
/// a PDB covering one of its pods allows no eviction now; a PDB that allows some lets the drain go at its
/// pace (the Eviction API refuses the rest until the evicted pods run again elsewhere).
pub fn pdb_violation<'a>(
    nodes: impl Iterator<Item = &'a NodeView>,
    pdbs: &[PdbView],
) -> Option<String> {
    let mut evictions: BTreeMap<&str, i64> = BTreeMap::new();
    for node in nodes {
        for pod in &node.pods {
            for pdb in pdbs.iter().filter(|b| b.selects(pod)) {
                *evictions.entry(pdb.name.as_str()).or_default() += 1;
            }
        }
    }
    pdbs.iter().find_map(|pdb| {
        let needed = evictions.get(pdb.name.as_str()).copied().unwrap_or(0);
        (needed > 0 && pdb.allowed < 1).then(|| {
            format!(
                "PodDisruptionBudget {} allows no eviction now, the move needs {needed}",
                pdb.name
            )
        })
    })
}

/// Uses up the PDB allowance of the pods on `nodes` (after a move is taken in a pass).
pub fn spend_pdbs<'a>(nodes: impl Iterator<Item = &'a NodeView>, pdbs: &mut [PdbView]) {
    for node in nodes {
        for pod in &node.pods {
            for pdb in pdbs.iter_mut().filter(|b| b.selects(pod)) {
                pdb.allowed -= 1;
            }
        }
    }
}
