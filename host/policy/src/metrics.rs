//! Counters of policy calls and fallbacks, per (NodePool, policy kind).
use super::FallbackKind;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct PolicyMetrics {
    calls: AtomicU64,
    fallbacks: [AtomicU64; FallbackKind::ALL.len()],
    clamped: AtomicU64,
    degraded: AtomicU64,
    swaps: AtomicU64,
    rejected_swaps: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSnapshot {
    pub calls: u64,
    /// Fallbacks by kind (`trap`, `timeout`, `memoryLimit`, `invalidAnswer`, `policyError`, `degraded`).
    pub fallbacks: std::collections::BTreeMap<&'static str, u64>,
    /// Budget answers above the NodePool's own budgets, clamped.
    pub clamped: u64,
    /// Times a policy was marked degraded.
    pub degraded: u64,
    pub swaps: u64,
    pub rejected_swaps: u64,
}

impl PolicyMetrics {
    pub fn call(&self) {
        self.calls.fetch_add(1, Relaxed);
    }
    pub fn fallback(&self, kind: FallbackKind) {
        self.fallbacks[kind as usize].fetch_add(1, Relaxed);
    }
    pub fn clamped(&self) {
        self.clamped.fetch_add(1, Relaxed);
    }
    pub fn degraded(&self) {
        self.degraded.fetch_add(1, Relaxed);
    }
    pub fn swapped(&self, ok: bool) {
        if ok {
            &self.swaps
        } else {
            &self.rejected_swaps
        }
        .fetch_add(1, Relaxed);
    }
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            calls: self.calls.load(Relaxed),
            fallbacks: FallbackKind::ALL
                .iter()
                .map(|&k| (k.as_str(), self.fallbacks[k as usize].load(Relaxed)))
                .collect(),
            clamped: self.clamped.load(Relaxed),
            degraded: self.degraded.load(Relaxed),
            swaps: self.swaps.load(Relaxed),
            rejected_swaps: self.rejected_swaps.load(Relaxed),
        }
    }
}

impl MetricsSnapshot {
    pub fn fallbacks_of(&self, kind: FallbackKind) -> u64 {
        self.fallbacks.get(kind.as_str()).copied().unwrap_or(0)
    }
}
