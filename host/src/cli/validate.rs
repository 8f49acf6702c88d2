//! `kestrel validate FILE...`: checks NodePool / NodeClaim / EC2NodeClass manifests.
use std::path::PathBuf;

use crate::api::manifest::{Outcome, ReadError, check_manifests, read_bounded_text};
use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// YAML files (multi-document allowed); other kinds in them are skipped with a note.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The most bytes read from one file (a larger file is refused before it is parsed).
    #[arg(long, default_value_t = crate::api::manifest::DEFAULT_MAX_FILE_BYTES)]
    pub max_bytes: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let invalid = check_files(&args)?;
    if invalid > 0 {
        eprintln!("{invalid} invalid object(s)");
        // A verdict, not a failure of the command: no error chain or backtrace to print.
        std::process::exit(1);
    }
    Ok(())
}

/// Checks every file, printing a line per object; the number of invalid objects (an empty or
/// oversized file counts as one).
pub fn check_files(args: &Args) -> anyhow::Result<usize> {
    let mut invalid = 0;
    for file in &args.files {
        let f = file.display();
        let text = match read_bounded_text(file, args.max_bytes) {
            Ok(text) => text,
            Err(ReadError::TooLarge { limit }) => {
                println!("{f}: larger than the limit of {limit} bytes (raise it with --max-bytes)");
                invalid += 1;
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("reading {f}")),
        };
        let reports = check_manifests(&text);
        if reports.is_empty() {
            println!("{f}: no YAML document in the file (nothing to check)");
            invalid += 1;
        }
        for report in reports {
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
                    // Karpenter kinds Kestrel does not serve are named as such, not as foreign.
                    let karpenter = api_version.starts_with("karpenter.sh/")
                        || api_version.starts_with("karpenter.k8s.aws/");
                    if karpenter {
                        println!(
                            "{f}: {kind}/{name}: skipped ({api_version} {kind} is a Karpenter resource Kestrel does not serve; see docs/api.md)"
                        )
                    } else {
                        println!(
                            "{f}: {kind}/{name}: skipped ({api_version} {kind} is not a Karpenter resource)"
                        )
                    }
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
    Ok(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_not_a_success() {
        let path = std::env::temp_dir().join(format!("kestrel-empty-{}.yaml", std::process::id()));
        std::fs::write(&path, "# nothing here\n").unwrap();
        let args = Args {
            files: vec![path.clone()],
            max_bytes: crate::api::manifest::DEFAULT_MAX_FILE_BYTES,
        };
        let invalid = check_files(&args);
        std::fs::remove_file(&path).ok();
        assert_eq!(invalid.unwrap(), 1);
    }
}
