//! Karpenter's provisioning batch window: start on the first new pending pod, close after `idle` without
//! another new pod or after `max` in total, whichever comes first.

use crate::clock::Millis;

pub const DEFAULT_IDLE_MS: Millis = 1_000;
pub const DEFAULT_MAX_MS: Millis = 10_000;

#[derive(Debug, Clone)]
pub struct Batcher {
    idle_ms: Millis,
    max_ms: Millis,
    opened_at: Option<Millis>,
    last_pod_at: Millis,
}

impl Default for Batcher {
    fn default() -> Self {
        Batcher::new(DEFAULT_IDLE_MS, DEFAULT_MAX_MS)
    }
}

impl Batcher {
    pub fn new(idle_ms: Millis, max_ms: Millis) -> Self {
        Batcher {
            idle_ms,
            max_ms,
            opened_at: None,
            last_pod_at: 0,
        }
    }

    /// New pending pods were seen at `now`.
    pub fn observe(&mut self, now: Millis) {
        if self.opened_at.is_none() {
            self.opened_at = Some(now);
        }
        self.last_pod_at = now;
    }

    /// When the open batch closes, if one is open.
    pub fn closes_at(&self) -> Option<Millis> {
        self.opened_at
            .map(|open| (self.last_pod_at + self.idle_ms).min(open + self.max_ms))
    }

    /// Closes the batch if its window is over; true means "provision now".
    pub fn take_if_due(&mut self, now: Millis) -> bool {
        match self.closes_at() {
            Some(at) if now >= at => {
                self.opened_at = None;
                true
            }
            _ => false,
        }
    }

    pub fn window_ms(&self) -> Millis {
        self.max_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_after_idle_or_max() {
        let mut b = Batcher::default();
        assert!(!b.take_if_due(0));
        b.observe(0);
        b.observe(800);
        assert_eq!(b.closes_at(), Some(1_800));
        assert!(!b.take_if_due(1_799));
        assert!(b.take_if_due(1_800));
        assert_eq!(b.closes_at(), None);
        // A steady trickle is cut at the max window.
        for t in (0..20_000).step_by(500) {
            b.observe(10_000 + t);
            if b.take_if_due(10_000 + t) {
                assert_eq!(t, 10_000);
                return;
            }
        }
        panic!("batch never closed");
    }
}
