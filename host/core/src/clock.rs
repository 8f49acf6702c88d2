//! Time as an input: the core never reads a clock, the loops ask a [`Clock`] and pass the instant on.

/// Milliseconds since the Unix epoch (UTC). The simulator's virtual clock starts wherever a scenario says.
pub type Millis = i64;

/// The source of "now" for the controller loops: the real clock in production, a virtual one in the simulator.
pub trait Clock: Send + Sync {
    fn now(&self) -> Millis;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        since_epoch.as_millis() as Millis
    }
}
