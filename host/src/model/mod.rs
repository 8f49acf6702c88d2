//! The vocabulary of the core: quantities, resources, requirements, labels, instance types, offerings,
//! pods, nodes and the [`Snapshot`](self) the decisions read (owner: provisioning core).
pub mod quantity;
