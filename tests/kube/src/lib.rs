//! The real-apiserver test harness for the in-cluster controller: a control plane per test
//! ([`cluster`]), the simulated cloud behind the production cloud edge ([`sim_cloud`]) and a test
//! kubelet that registers a Node for each instance it boots ([`kubelet`]).
pub mod cluster;
pub mod kubelet;
pub mod sim_cloud;
