//! The in-cluster controller against a real kube-apiserver + kube-scheduler (v1.20, built by
//! `tests/k8s/build.sh`), with the simulated cloud behind the production cloud edge.
mod catalog;
mod common;
mod drain;
mod helm;
mod hotswap;
mod interruption;
mod leader;
mod lease;
mod lifecycle;
mod manifests;
mod process;
mod provisioning;
mod record;
mod restart;
mod scale;
