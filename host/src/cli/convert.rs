//! `kestrel convert FILE...`: older Karpenter manifests (v1beta1 NodePools and EC2NodeClasses, v1alpha5
//! Provisioners, v1alpha1 AWSNodeTemplates) rewritten as the v1 Kestrel serves, with what changed and
//! what could not be carried over.
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::api::migrate::{FileConversion, InputFile, NoteKind, convert_files};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Manifests or scenarios (YAML, several documents per file allowed). NodePools and the
    /// EC2NodeClasses they name are best converted together, so kubelet settings can move.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Rewrite the files in place instead of printing the result on stdout.
    #[arg(long)]
    pub in_place: bool,
}

/// Bytes read from one input at most: manifests are small; this keeps `/dev/zero` from filling memory.
pub const MAX_INPUT_BYTES: u64 = 16 << 20;

/// Reads a text file of at most `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> anyhow::Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > limit {
        bail!("{}: larger than {} MiB", path.display(), limit >> 20);
    }
    String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8 text", path.display()))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut inputs = Vec::new();
    for file in &args.files {
        inputs.push(InputFile {
            name: file.display().to_string(),
            text: read_bounded(file, MAX_INPUT_BYTES)?,
        });
    }
    let results = convert_files(&inputs);
    let mut stderr = std::io::stderr();
    let attention = report(&results, &mut stderr)?;
    if args.in_place {
        for (result, path) in results.iter().zip(&args.files) {
            if result.changed() {
                std::fs::write(path, &result.text)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("{}: rewritten as v1", path.display());
            }
        }
    } else {
        let texts: Vec<&str> = results.iter().map(|r| r.text.as_str()).collect();
        print!("{}", texts.join("---\n"));
    }
    if !results.iter().any(FileConversion::changed) {
        eprintln!(
            "nothing to convert: no v1beta1, v1alpha5 or v1alpha1 Karpenter objects in the input"
        );
    }
    if attention > 0 {
        eprintln!(
            "{attention} object(s) need changes by hand before they are valid v1 (see above); `kestrel validate` checks the result"
        );
        std::process::exit(1);
    }
    Ok(())
}

/// Writes what each conversion did; returns how many objects need a person.
pub fn report(results: &[FileConversion], out: &mut dyn std::io::Write) -> anyhow::Result<usize> {
    let mut attention = 0;
    for file in results {
        for doc in &file.documents {
            if let Some(e) = &doc.error {
                attention += 1;
                writeln!(
                    out,
                    "{}:{}: document {}: left as it is: {e}",
                    file.name,
                    doc.first_line,
                    doc.index + 1
                )?;
            }
            for subject in &doc.subjects {
                if subject.needs_attention() {
                    attention += 1;
                }
                let at = if subject.at.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", subject.at)
                };
                writeln!(
                    out,
                    "{}:{}: {}{at}:",
                    file.name, doc.first_line, subject.what
                )?;
                let mut notes = subject.notes.clone();
                notes.sort_by_key(|n| std::cmp::Reverse(n.kind));
                for n in notes {
                    let tag = match n.kind {
                        NoteKind::Changed => "changed",
                        NoteKind::Review => "review ",
                        NoteKind::Dropped => "DROPPED",
                    };
                    writeln!(out, "  {tag} {}: {}", n.path, n.message)?;
                }
                for problem in &subject.invalid {
                    writeln!(out, "  INVALID as v1: {problem}")?;
                }
            }
        }
    }
    Ok(attention)
}

/// Before a scenario runs: if its NodePools or EC2NodeClasses are older Karpenter versions, fail with
/// what `kestrel convert` would change instead of a parse error about a missing field.
pub fn explain_old_scenario(path: Option<&Path>) -> anyhow::Result<()> {
    let Some(path) = path else { return Ok(()) };
    // Unreadable or huge files are left to the scenario loader, which reports them.
    let Ok(text) = read_bounded(path, MAX_INPUT_BYTES) else {
        return Ok(());
    };
    if !(text.contains("v1beta1") || text.contains("v1alpha")) {
        return Ok(());
    }
    let results = convert_files(&[InputFile {
        name: path.display().to_string(),
        text,
    }]);
    if !results.iter().any(FileConversion::changed) {
        return Ok(());
    }
    let mut explanation = Vec::new();
    report(&results, &mut explanation)?;
    bail!(
        "{} holds older Karpenter objects; Kestrel serves karpenter.sh/v1 NodePools and karpenter.k8s.aws/v1 EC2NodeClasses. `kestrel convert {} --in-place` rewrites them; it would change:\n{}",
        path.display(),
        path.display(),
        String::from_utf8_lossy(&explanation).trim_end()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("core/src/api/testdata/migrate")
    }

    /// Each input in `src/api/testdata/migrate/` converts to `golden/NAME.v1.yaml` with the report in
    /// `golden/NAME.report`; `KESTREL_BLESS=1` rewrites them (review the diff).
    #[test]
    fn conversions_match_their_golden_files() {
        let bless = std::env::var_os("KESTREL_BLESS").is_some();
        let mut inputs: Vec<PathBuf> = std::fs::read_dir(dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        inputs.sort();
        assert!(inputs.len() >= 3, "{inputs:?}");
        let mut stale = Vec::new();
        for input in inputs {
            let name = input.file_stem().unwrap().to_str().unwrap().to_string();
            let results = convert_files(&[InputFile {
                name: format!("{name}.yaml"),
                text: std::fs::read_to_string(&input).unwrap(),
            }]);
            let mut report_text = Vec::new();
            report(&results, &mut report_text).unwrap();
            for (ext, got) in [
                ("v1.yaml", results[0].text.clone()),
                ("report", String::from_utf8(report_text).unwrap()),
            ] {
                let golden = dir().join("golden").join(format!("{name}.{ext}"));
                if bless {
                    std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
                    std::fs::write(&golden, &got).unwrap();
                } else if std::fs::read_to_string(&golden).ok().as_deref() != Some(got.as_str()) {
                    stale.push(format!("{}:\n{got}", golden.display()));
                }
            }
        }
        assert!(
            stale.is_empty(),
            "differs from the golden file (KESTREL_BLESS=1 cargo test -p kestrel --lib cli::convert rewrites them):\n{}",
            stale.join("\n")
        );
    }

    #[test]
    fn simulate_explains_a_scenario_with_old_node_pools() {
        let path =
            std::env::temp_dir().join(format!("kestrel-old-scenario-{}.yaml", std::process::id()));
        std::fs::write(
            &path,
            "name: old\nduration: 10m\nnodePools:\n  - apiVersion: karpenter.sh/v1beta1\n    kind: NodePool\n    metadata: {name: default}\n    spec:\n      template: {spec: {nodeClassRef: {name: default}}}\n      disruption: {consolidationPolicy: WhenUnderutilized, expireAfter: 24h}\nworkloads: []\n",
        )
        .unwrap();
        let err = explain_old_scenario(Some(&path)).unwrap_err().to_string();
        let _ = std::fs::remove_file(&path);
        assert!(err.contains("kestrel convert"), "{err}");
        assert!(err.contains("(nodePools[0])"), "{err}");
        assert!(err.contains("WhenEmptyOrUnderutilized"), "{err}");
        assert!(err.contains("spec.template.spec.expireAfter"), "{err}");
        // A v1 scenario (the built-in examples) passes untouched.
        let example = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/scenarios/spot-interruption-storm.yaml");
        explain_old_scenario(Some(&example)).unwrap();
        explain_old_scenario(None).unwrap();
    }

    #[test]
    fn inputs_are_bounded() {
        let path = std::env::temp_dir().join(format!("kestrel-big-{}.yaml", std::process::id()));
        std::fs::write(&path, vec![b'a'; 2048]).unwrap();
        let err = read_bounded(&path, 1024).unwrap_err().to_string();
        assert!(err.contains("larger than"), "{err}");
        assert_eq!(read_bounded(&path, 4096).unwrap().len(), 2048);
        let _ = std::fs::remove_file(&path);
    }
}
