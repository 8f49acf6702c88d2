use clap::{Parser, Subcommand};
use kestrel::cli;

/// Kestrel: just-in-time EC2 nodes for Kubernetes, with the judgement calls made by WebAssembly policies.
#[derive(Debug, Parser)]
#[command(name = "kestrel", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay a scenario through the real controller loops on a virtual cluster, cloud and clock.
    Simulate(cli::simulate::Args),
    /// Check NodePool / EC2NodeClass manifests; exits non-zero if any is invalid.
    Validate(cli::validate::Args),
    /// Rewrite older Karpenter manifests (v1beta1, v1alpha5 Provisioner, v1alpha1 AWSNodeTemplate) as v1.
    Convert(cli::convert::Args),
    /// Benchmarks, printed as one JSON line per case.
    #[command(subcommand)]
    Bench(cli::bench::Command),
    /// Build and test policy modules.
    #[command(subcommand)]
    Policy(cli::policy::Command),
    /// Run the controller in (or against) a cluster until SIGTERM or ctrl-c.
    #[cfg(feature = "kube")]
    Run(cli::run::Args),
    /// Record a live cluster's NodePools and workloads over a window as a scenario to simulate.
    #[cfg(feature = "kube")]
    Record(cli::record::Args),
}

fn main() -> anyhow::Result<()> {
    let command = Cli::parse().command;
    // `kestrel run` sets up its own logging (LOG_LEVEL, as Karpenter's).
    #[cfg(feature = "kube")]
    if let Command::Run(args) = command {
        return cli::run::run(args);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match command {
        Command::Simulate(args) => {
            cli::convert::explain_old_scenario(args.scenario.as_deref())?;
            cli::simulate::run(args)
        }
        Command::Convert(args) => cli::convert::run(args),
        Command::Validate(args) => cli::validate::run(args),
        Command::Bench(command) => cli::bench::run(command),
        Command::Policy(command) => cli::policy::run(command),
        #[cfg(feature = "kube")]
        Command::Run(_) => unreachable!("handled above"),
        #[cfg(feature = "kube")]
        Command::Record(args) => cli::record::run(args),
    }
}
