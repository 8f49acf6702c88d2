//! The simulator: a virtual clock, the scenario format, the replay through the real controller loop, and
//! the report.
pub mod clock;
pub mod fit;
pub mod catalog;
pub mod replay;
pub mod scenario;
pub mod workload;
pub mod report;
pub mod chart;
