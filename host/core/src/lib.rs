//! Kestrel's decision core: pure decisions over a snapshot and a clock (see `docs/architecture.md`).
//!
//! - [`api`]: the Karpenter v1 resources (NodePool, NodeClaim, EC2NodeClass) and their validation;
//! - [`model`], [`scheduling`], [`provisioning`], [`disruption`], [`interruption`]: the decisions;
//! - [`controller`]: the state machine that turns a snapshot into commands and applies their
//!   completions; [`cloud`] and [`cluster`] are the edges it speaks to, as traits and types only.
//!
//! This crate does no I/O and depends on no I/O crate (no tokio, no kube client, no AWS SDK) and on no
//! wasm engine; CI keeps it that way. Policies are asked through [`policy`]'s traits: the native
//! defaults here, the sandboxed wasm runtime (`kestrel-policy`) behind the same [`policy::PolicyProvider`].
pub mod api;
pub mod clock;
pub mod cloud;
pub mod cluster;
pub mod controller;
pub mod disruption;
pub mod interruption;
pub mod label_fit;
pub mod model;
pub mod provisioning;
pub mod scheduling;

pub mod policy;
