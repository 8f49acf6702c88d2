//! The simulator: a virtual clock, the scenario format, the replay through the real controller loop, and
//! the report.
pub mod catalog;
pub mod chart;
pub mod clock;
pub mod deferred;
pub mod replay;
pub mod report;
pub mod scenario;
pub mod workload;
