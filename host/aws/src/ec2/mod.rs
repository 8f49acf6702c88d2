//! EC2: NodeClass discovery, launch templates, CreateFleet launches, listing, termination and spot
//! prices behind the core's async cloud edge.
pub mod cloud;
pub mod discovery;
pub mod error;
pub mod fleet;
pub mod instance_types;
pub mod launch_template;
pub mod tags;
pub mod user_data;

pub use cloud::{BoundNodeClass, Ec2Cloud, Ec2Settings};
pub use discovery::{DiscoverySettings, Resolution, resolve, status};
