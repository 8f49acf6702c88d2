//! The real-apiserver test harness for the in-cluster controller: a control plane per test
//! ([`cluster`]), the simulated cloud behind the production cloud edge ([`sim_cloud`]) and a test
//! kubelet that registers a Node for each instance it boots ([`kubelet`]), and an interruption queue
//! in memory ([`notice_queue`]); the steps every suite takes ([`setup`]), what they create
//! ([`workload`]) and the `kestrel` binary the process suites and the scale benchmark run ([`binary`]).
pub mod binary;
pub mod cluster;
pub mod kubelet;
pub mod notice_queue;
pub mod setup;
pub mod sim_cloud;
pub mod workload;
