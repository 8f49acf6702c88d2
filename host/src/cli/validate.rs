//! `kestrel validate FILE...`: checks NodePool / NodeClaim / EC2NodeClass manifests.
use std::path::PathBuf;

use crate::api::manifest::{Outcome, check_manifests};
use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// YAML files (multi-document allowed); other kinds in them are skipped with a note.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut invalid = 0;
    for file in &args.files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let f = file.display();
        for report in check_manifests(&text) {
            let what = |kind: &str, name: &str| {
                if kind.is_empty() {
                    format!("document {}", report.index + 1)
                } else {
                    format!("{kind}/{name}")
                }
            };
            match report.outcome {
                Outcome::Valid { kind, name } => println!("{f}: {}: ok", what(&kind, &name)),
                Outcome::Skipped {
                    api_version,
                    kind,
                    name,
                } => {
                    println!(
                        "{f}: {kind}/{name}: skipped ({api_version} {kind} is not a Karpenter resource)"
                    )
                }
                Outcome::Invalid {
                    kind,
                    name,
                    problems,
                } => {
                    invalid += 1;
                    let subject = what(&kind, &name);
                    for p in problems {
                        let line = p.line.unwrap_or(report.first_line);
                        let path = if p.path.is_empty() {
                            String::new()
                        } else {
                            format!("{}: ", p.path)
                        };
                        println!(
                            "{f}:{line}: {subject} (document {}): {path}{}",
                            report.index + 1,
                            p.reason
                        );
                    }
                }
            }
        }
    }
    if invalid > 0 {
        eprintln!("{invalid} invalid object(s)");
        // A verdict, not a failure of the command: no error chain or backtrace to print.
        std::process::exit(1);
    }
    Ok(())
}
