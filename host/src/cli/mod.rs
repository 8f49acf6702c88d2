//! The `kestrel` command line: one module per command group, each with its clap `Args` and a `run`.
pub mod bench;
pub mod policy;
pub mod simulate;
pub mod validate;
