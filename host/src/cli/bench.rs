//! `kestrel bench ...`: measurements printed as one JSON line per case.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Pack the benchmark workloads and compare with their cost lower bound (owner: provisioning).
    Pack(PackArgs),
    /// Time the policy runtime: rank through wasm and natively, compile, instantiate, swap (owner: policy).
    Policy(PolicyArgs),
}

#[derive(Debug, clap::Args)]
pub struct PackArgs {}

#[derive(Debug, clap::Args)]
pub struct PolicyArgs {}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Pack(_) => anyhow::bail!("not implemented yet"),
        Command::Policy(_) => anyhow::bail!("not implemented yet"),
    }
}
