//! Kestrel's AWS adapter: the production side of `kestrel_core::cloud`'s async edge.
//!
//! - [`config`]: the SDK configuration from the standard chain (environment, profile, IRSA web
//!   identity; the endpoint from `AWS_ENDPOINT_URL`);
//! - [`ec2`]: EC2NodeClass discovery, launch templates, CreateFleet launches, listing, termination
//!   and spot prices ([`ec2::Ec2Cloud`] implements `kestrel_core::cloud::CloudApi`).
//! - [`iam`]: the instance profiles of NodeClasses that name a `role`.
//! - [`sqs`]: the interruption queue's long-polling consumer (a shell around the core's `Inbox`).
pub mod config;
pub mod ec2;
pub mod iam;
pub mod sqs;
