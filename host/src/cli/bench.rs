//! `kestrel bench ...`: measurements printed as one JSON line per case.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Pack benchmark workloads (shared/data/bench format) and compare with their cost lower bound.
    Pack(super::bench_pack::Args),
    /// Time the policy runtime: rank through wasm and natively, compile, instantiate, swap.
    Policy(super::bench_policy::Args),
    /// Time the simulator: a 24 h diurnal day (disruption on and off), 5,000 nodes and 50,000 pods.
    Sim(super::bench_sim::Args),
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Pack(args) => super::bench_pack::run(args),
        Command::Policy(args) => super::bench_policy::run(args),
        Command::Sim(args) => super::bench_sim::run(args),
    }
}
