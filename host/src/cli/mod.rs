//! The `kestrel` command line: one module per command, each with its clap `Args` and a `run`.
pub mod bench;
pub mod bench_mix;
pub mod bench_pack;
pub mod bench_policy;
pub mod bench_sim;
pub mod convert;
pub mod generated_inputs;
pub mod policy;
pub mod policy_bench;
#[cfg(feature = "kube")]
pub mod record;
#[cfg(feature = "kube")]
pub mod run;
#[cfg(feature = "aws")]
pub mod run_aws;
pub mod simulate;
pub mod validate;
