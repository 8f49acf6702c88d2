//! The one integration-test binary: cross-crate tests, real wasm, real servers, the simulator end to end.
mod api;
mod deferred;
mod disruption;
mod interruption;
mod policy;
mod policy_contract;
mod provisioning;
mod report;
mod simulate;
