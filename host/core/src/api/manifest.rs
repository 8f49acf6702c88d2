//! Checking manifest files: split multi-document YAML, dispatch on apiVersion/kind, parse strictly and
//! validate, reporting each problem with its document, line (where the parser knows it) and field path.

use serde::de::DeserializeOwned;

use super::crd::schema_for_kind;
use super::migrate::{self, NoteKind};
use super::validate::{FieldError, unknown_fields};
use super::{EC2NodeClass, NodeClaim, NodePool};

/// The most bytes `kestrel validate` reads from one file unless told otherwise (`--max-bytes`).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("not UTF-8 text (byte {valid_up_to})")]
    NotUtf8 { valid_up_to: usize },
}

/// Reads at most `limit` bytes of `path` as UTF-8: a larger file (or an endless one such as
/// `/dev/zero`) is an error after `limit + 1` bytes, never an unbounded allocation.
pub fn read_bounded(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge { limit });
    }
    Ok(bytes)
}

/// [`read_bounded`], as text.
pub fn read_bounded_text(path: &std::path::Path, limit: u64) -> Result<String, ReadError> {
    String::from_utf8(read_bounded(path, limit)?).map_err(|e| ReadError::NotUtf8 {
        valid_up_to: e.utf8_error().valid_up_to(),
    })
}

/// One YAML document of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// 0-based position in the file.
    pub index: usize,
    /// 1-based line of the document's first line in the file.
    pub first_line: usize,
    pub text: String,
}

/// Splits a multi-document YAML stream on `---` lines, keeping where each document starts.
pub fn split_documents(text: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut first_line = 1;
    for (i, line) in text.lines().enumerate() {
        let is_separator = line == "---" || line.starts_with("--- ") || line == "...";
        if is_separator {
            docs.push((first_line, std::mem::take(&mut current)));
            first_line = i + 2;
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs.push((first_line, current));
    docs.into_iter()
        .filter(|(_, text)| {
            text.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .enumerate()
        .map(|(index, (first_line, text))| Document {
            index,
            first_line,
            text,
        })
        .collect()
}

/// A problem in a document: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// Field path (`spec.template.spec.requirements[2].values`); empty for the document as a whole.
    pub path: String,
    pub reason: String,
}

/// What checking one document found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Valid {
        kind: String,
        name: String,
    },
    Invalid {
        kind: String,
        name: String,
        problems: Vec<Problem>,
    },
    /// Not a Karpenter resource (a Deployment, a ConfigMap, ...): not checked.
    Skipped {
        api_version: String,
        kind: String,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentReport {
    pub index: usize,
    pub first_line: usize,
    pub outcome: Outcome,
}

/// Checks every document of a YAML file's text.
pub fn check_manifests(text: &str) -> Vec<DocumentReport> {
    split_documents(text).iter().map(check_document).collect()
}

pub fn check_document(doc: &Document) -> DocumentReport {
    let report = |outcome| DocumentReport {
        index: doc.index,
        first_line: doc.first_line,
        outcome,
    };
    // Duplicate mapping keys are an error, as the API server and kubectl make them (a JSON value keeps
    // the last one silently; a YAML value refuses them, with the line).
    if let Err(err) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&doc.text) {
        return report(Outcome::Invalid {
            kind: String::new(),
            name: String::new(),
            problems: vec![yaml_problem(doc, &err)],
        });
    }
    let value: serde_json::Value = match serde_yaml_ng::from_str(&doc.text) {
        Ok(v) => v,
        Err(err) => {
            return report(Outcome::Invalid {
                kind: String::new(),
                name: String::new(),
                problems: vec![yaml_problem(doc, &err)],
            });
        }
    };
    let field = |key: &str| {
        value
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let name = value
        .pointer("/metadata/name")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let problems = match (api_version.as_str(), kind.as_str()) {
        ("karpenter.sh/v1", "NodePool") => {
            with_hints(check::<NodePool>(doc, &value, &kind, |o| o.validate()))
        }
        ("karpenter.sh/v1", "NodeClaim") => {
            with_hints(check::<NodeClaim>(doc, &value, &kind, |o| o.validate()))
        }
        ("karpenter.k8s.aws/v1", "EC2NodeClass") => {
            with_hints(check::<EC2NodeClass>(doc, &value, &kind, |o| o.validate()))
        }
        (v, k) if migrate::Source::of(v, k).is_some() => explain_old_version(doc),
        (v, "NodePool" | "NodeClaim" | "EC2NodeClass") => vec![Problem {
            line: Some(doc.first_line),
            path: "apiVersion".into(),
            reason: format!(
                "{v:?} is not served; Kestrel serves karpenter.sh/v1 (NodePool, NodeClaim) and karpenter.k8s.aws/v1 (EC2NodeClass) — migrate v1beta1 manifests to v1"
            ),
        }],
        ("", _) | (_, "") => vec![Problem {
            line: Some(doc.first_line),
            path: String::new(),
            reason: "not a Kubernetes object: apiVersion and kind are required".into(),
        }],
        _ => {
            return report(Outcome::Skipped {
                api_version,
                kind,
                name,
            });
        }
    };
    if name.is_empty() && problems.is_empty() {
        return report(Outcome::Invalid {
            kind,
            name,
            problems: vec![Problem {
                line: Some(doc.first_line),
                path: "metadata.name".into(),
                reason: "required".into(),
            }],
        });
    }
    report(if problems.is_empty() {
        Outcome::Valid { kind, name }
    } else {
        Outcome::Invalid {
            kind,
            name,
            problems,
        }
    })
}

/// A field v1 does not have, or a value it renamed, gets the v1 spelling (`maxUnavailable` → budgets).
fn with_hints(problems: Vec<Problem>) -> Vec<Problem> {
    problems
        .into_iter()
        .map(|mut p| {
            if let Some(hint) = migrate::field_hint(&p.path, &p.reason) {
                p.reason = format!("{} ({hint})", p.reason);
            }
            p
        })
        .collect()
}

/// An older Karpenter object (v1beta1, a Provisioner, an AWSNodeTemplate): not served; what
/// `kestrel convert` would change, one problem per change at the field it concerns.
fn explain_old_version(doc: &Document) -> Vec<Problem> {
    let converted = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&doc.text)
        .map_err(|e| e.to_string())
        .and_then(|v| migrate::convert_object(&v).map_err(|e| e.to_string()));
    let c = match converted {
        Ok(c) => c,
        Err(e) => {
            return vec![Problem {
                line: Some(doc.first_line),
                path: "apiVersion".into(),
                reason: format!("an older Karpenter version, not served, and not convertible: {e}"),
            }];
        }
    };
    let mut problems = vec![Problem {
        line: locate(doc, "apiVersion").or(Some(doc.first_line)),
        path: "apiVersion".into(),
        reason: format!(
            "{} is not served (Kestrel serves {}); `kestrel convert FILE` writes the v1 equivalent — what it changes follows",
            c.from,
            c.source.target()
        ),
    }];
    for n in c.notes.iter().filter(|n| n.path != "apiVersion") {
        let prefix = match n.kind {
            NoteKind::Changed => "convert",
            NoteKind::Review => "convert (review)",
            NoteKind::Dropped => "convert cannot carry this over",
        };
        // A field the conversion adds is found by its nearest written parent.
        let mut at = n.path.as_str();
        let mut line = locate(doc, at);
        while line.is_none() && !at.is_empty() {
            at = at.rfind('.').map_or("", |i| &at[..i]);
            line = locate(doc, at);
        }
        problems.push(Problem {
            line: line.or(Some(doc.first_line)),
            path: n.path.clone(),
            reason: format!("{prefix}: {}", n.message),
        });
    }
    problems
}

/// The CRD schema of a served kind, built once per process (building it costs milliseconds, and a
/// file may hold thousands of documents).
fn cached_schema(kind: &str) -> &'static serde_json::Value {
    static SCHEMAS: std::sync::OnceLock<Vec<(&'static str, serde_json::Value)>> =
        std::sync::OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        ["NodePool", "NodeClaim", "EC2NodeClass"]
            .into_iter()
            .map(|k| (k, schema_for_kind(k).expect("served kinds have a schema")))
            .collect()
    });
    &schemas
        .iter()
        .find(|(k, _)| *k == kind)
        .expect("served kinds have a schema")
        .1
}

/// Unknown fields first (all of them, from the schema), then the strict parse, then semantic rules.
fn check<T: DeserializeOwned>(
    doc: &Document,
    value: &serde_json::Value,
    kind: &str,
    validate: impl Fn(&T) -> Result<(), super::validate::ValidationErrors>,
) -> Vec<Problem> {
    let schema = cached_schema(kind);
    let unknown = unknown_fields(value, schema);
    if !unknown.is_empty() {
        return unknown.into_iter().map(|e| field_problem(doc, e)).collect();
    }
    let object: T = match serde_yaml_ng::from_str(&doc.text) {
        Ok(o) => o,
        Err(err) => return vec![yaml_problem(doc, &err)],
    };
    match validate(&object) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .0
            .into_iter()
            .map(|e| field_problem(doc, e))
            .collect(),
    }
}

fn field_problem(doc: &Document, e: FieldError) -> Problem {
    Problem {
        line: locate(doc, &e.path),
        path: e.path,
        reason: e.reason,
    }
}

/// The parser places a duplicate-key error at the start of its mapping (`line`, `column`, both 1-based);
/// this finds the line of the key's second occurrence in that block mapping, when it is block style.
pub fn duplicate_key_line(text: &str, line: usize, column: usize, message: &str) -> Option<usize> {
    let key = message
        .split_once("duplicate entry with key \"")?
        .1
        .split_once('"')?
        .0;
    let col = column.checked_sub(1)?;
    let mut seen = 0;
    for (i, l) in text.lines().enumerate().skip(line.checked_sub(1)?) {
        let t = l.trim_start();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let mut body = t;
        while let Some(rest) = body.strip_prefix("- ") {
            body = rest.trim_start();
        }
        let indent = l.len() - body.len();
        if i + 1 > line && l.len() - t.len() < col {
            break; // left of the mapping (or the next item of its list): its block has ended
        }
        if indent == col
            && [
                format!("{key}:"),
                format!("\"{key}\":"),
                format!("'{key}':"),
            ]
            .iter()
            .any(|q| body.starts_with(q.as_str()))
        {
            seen += 1;
            if seen == 2 {
                return Some(i + 1);
            }
        }
    }
    None
}

/// A parse error: serde_yaml_ng reports `path: message at line L column C`; keep the path and the
/// message, and turn the line into a file line.
fn yaml_problem(doc: &Document, err: &serde_yaml_ng::Error) -> Problem {
    let line = err.location().map(|l| {
        let in_doc = duplicate_key_line(&doc.text, l.line(), l.column(), &err.to_string())
            .unwrap_or(l.line());
        doc.first_line + in_doc - 1
    });
    let mut message = err.to_string();
    if let Some(at) = message.rfind(" at line ") {
        message.truncate(at);
    }
    let (path, reason) = match message.split_once(": ") {
        Some((path, reason)) if !path.contains(' ') => (path.to_string(), reason.to_string()),
        _ => (String::new(), message),
    };
    Problem { line, path, reason }
}

/// Best-effort line of a field path in the document: follows the path's keys down the indentation
/// (list indices count the `- ` items of that list only, not those of lists nested in its items).
/// When the path goes further than the block layout (flow style, a default), the deepest field found.
fn locate(doc: &Document, path: &str) -> Option<usize> {
    locate_in(&doc.text, &path_segments(path)).map(|line| doc.first_line + line - 1)
}

/// The 1-based line of `path` in the YAML `text` (the deepest field of it found), by the rules of
/// [`locate`]; the scenario checker locates its fields with it too.
pub fn locate_in(text: &str, path: &[Segment]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let content = |l: &str| {
        let t = l.trim_start();
        !t.is_empty() && !t.starts_with('#')
    };
    let raw_indent = |l: &str| l.len() - l.trim_start().len();
    let mut from = 0;
    let mut min_indent = 0usize;
    // The line of the list item the current node starts on, if any (its keys follow its `- `).
    let mut item_line: Option<usize> = None;
    let mut found = None;
    for segment in path {
        let hit = match segment {
            Segment::Key(key) => {
                let quoted = [
                    format!("{key}:"),
                    format!("\"{key}\":"),
                    format!("'{key}':"),
                ];
                let mut hit = None;
                for (i, l) in lines.iter().enumerate().skip(from) {
                    if !content(l) {
                        continue;
                    }
                    // The node's block ends at the first line left of its children (its item line
                    // excepted, whose first key follows the dash).
                    if Some(i) != item_line && raw_indent(l) < min_indent {
                        break;
                    }
                    let mut body = l.trim_start();
                    while let Some(rest) = body.strip_prefix("- ") {
                        body = rest.trim_start();
                    }
                    let indent = l.len() - body.len();
                    if indent >= min_indent && quoted.iter().any(|q| body.starts_with(q.as_str())) {
                        hit = Some((i, indent));
                        break;
                    }
                }
                hit.map(|(i, indent)| {
                    from = i + 1;
                    min_indent = indent + 1;
                    item_line = None;
                    i
                })
            }
            Segment::Index(n) => {
                let mut item_indent = None;
                let mut seen = 0;
                let mut hit = None;
                for (i, l) in lines.iter().enumerate().skip(from) {
                    if !content(l) {
                        continue;
                    }
                    let body = l.trim_start();
                    let indent = l.len() - body.len();
                    let is_item = body.starts_with("- ") || body == "-";
                    match item_indent {
                        // The first line of the list must be an item (else the list is flow style).
                        None if is_item && indent + 1 >= min_indent => item_indent = Some(indent),
                        None => break,
                        Some(ii) if indent < ii || (indent == ii && !is_item) => break,
                        Some(ii) if indent > ii || !is_item => continue,
                        Some(_) => {}
                    }
                    if seen == *n {
                        hit = Some((i, indent));
                        break;
                    }
                    seen += 1;
                }
                hit.map(|(i, indent)| {
                    from = i;
                    min_indent = indent + 2;
                    item_line = Some(i);
                    i
                })
            }
        };
        match hit {
            Some(i) => found = Some(i),
            None => break,
        }
    }
    found.map(|i| i + 1)
}

/// One step of a field path: a mapping key or a list index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

fn path_segments(path: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            rest = r;
        } else if let Some(r) = rest.strip_prefix("[\"") {
            let end = r.find("\"]").unwrap_or(r.len());
            out.push(Segment::Key(r[..end].to_string()));
            rest = r.get(end + 2..).unwrap_or("");
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            if let Ok(n) = r[..end].parse() {
                out.push(Segment::Index(n));
            }
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            out.push(Segment::Key(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = "\
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: default
spec:
  template:
    spec:
      nodeClassRef:
        group: karpenter.k8s.aws
        kind: EC2NodeClass
        name: default
      requirements:
        - key: kubernetes.io/arch
          operator: In
          values: [amd64]
        - key: karpenter.k8s.aws/instance-cpu
          operator: Gt
          values: [\"a\"]
";

    #[test]
    fn splits_documents_with_lines() {
        let docs = split_documents("# c\n---\na: 1\n---\n\n---\nb: 2\nc: 3\n");
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].index, docs[0].first_line), (0, 3));
        assert_eq!((docs[1].index, docs[1].first_line), (1, 7));
    }

    #[test]
    fn reports_path_reason_and_line() {
        let reports = check_manifests(&format!("---\n{POOL}"));
        let Outcome::Invalid { problems, name, .. } = &reports[0].outcome else {
            panic!("{reports:?}")
        };
        assert_eq!(name, "default");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].path,
            "spec.template.spec.requirements[1].values"
        );
        assert!(
            problems[0].reason.contains("operator Gt needs exactly one"),
            "{}",
            problems[0].reason
        );
        assert_eq!(problems[0].line, Some(19));
    }

    #[test]
    fn unknown_fields_are_named() {
        let text = POOL.replace("      requirements:", "      requirement:");
        let reports = check_manifests(&text);
        let Outcome::Invalid { problems, .. } = &reports[0].outcome else {
            panic!("{reports:?}")
        };
        assert_eq!(problems[0].path, "spec.template.spec.requirement");
        assert!(problems[0].reason.starts_with("unknown field"));
        assert_eq!(problems[0].line, Some(12));
    }

    #[test]
    fn other_kinds_are_skipped_and_old_versions_rejected() {
        let reports = check_manifests("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
        assert!(matches!(reports[0].outcome, Outcome::Skipped { .. }));
        let reports = check_manifests(&POOL.replace("karpenter.sh/v1", "karpenter.sh/v1beta1"));
        let Outcome::Invalid { problems, .. } = &reports[0].outcome else {
            panic!("{reports:?}")
        };
        assert_eq!(problems[0].path, "apiVersion");
    }

    #[test]
    fn old_versions_are_explained_with_what_convert_changes() {
        let text = "apiVersion: karpenter.sh/v1beta1\nkind: NodePool\nmetadata: {name: p}\nspec:\n  template:\n    spec:\n      nodeClassRef: {name: default}\n  disruption:\n    consolidationPolicy: WhenUnderutilized\n    expireAfter: 720h\n---\napiVersion: karpenter.k8s.aws/v1alpha1\nkind: AWSNodeTemplate\nmetadata: {name: t}\nspec:\n  subnetSelector: {a: b}\n";
        let reports = check_manifests(text);
        let Outcome::Invalid { problems, .. } = &reports[0].outcome else {
            panic!("{reports:?}")
        };
        assert!(
            problems[0].reason.contains("`kestrel convert FILE`"),
            "{problems:?}"
        );
        let expire = problems
            .iter()
            .find(|p| p.path == "spec.disruption.expireAfter")
            .expect("the expireAfter move is explained");
        assert!(expire.reason.contains("spec.template.spec.expireAfter"));
        assert_eq!(expire.line, Some(10));
        assert!(
            problems
                .iter()
                .any(|p| p.reason.contains("WhenEmptyOrUnderutilized"))
        );
        // An AWSNodeTemplate is an older Karpenter resource, not a foreign one.
        let Outcome::Invalid { problems, .. } = &reports[1].outcome else {
            panic!("{reports:?}")
        };
        assert!(
            problems[0]
                .reason
                .contains("karpenter.k8s.aws/v1 EC2NodeClass"),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.path == "spec.role" && p.reason.contains("review"))
        );
    }

    #[test]
    fn type_errors_carry_path_and_line() {
        let text = POOL.replace("operator: In", "operator: Inn");
        let reports = check_manifests(&text);
        let Outcome::Invalid { problems, .. } = &reports[0].outcome else {
            panic!("{reports:?}")
        };
        assert!(
            problems[0].reason.contains("unknown variant `Inn`"),
            "{problems:?}"
        );
        assert!(
            problems[0].path.contains("requirements[0].operator"),
            "{problems:?}"
        );
        assert_eq!(problems[0].line, Some(14));
    }

    fn invalid(text: &str) -> Vec<Problem> {
        match check_manifests(text).remove(0).outcome {
            Outcome::Invalid { problems, .. } => problems,
            other => panic!("accepted: {other:?}"),
        }
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_line() {
        let text = POOL.replace(
            "      requirements:",
            "      requirements: []\n      requirements:",
        );
        let problems = invalid(&text);
        assert!(
            problems[0]
                .reason
                .contains("duplicate entry with key \"requirements\""),
            "{problems:?}"
        );
        assert_eq!(problems[0].line, Some(13), "{problems:?}");
        // A second `kind` does not turn the object into something that is skipped.
        let text = POOL.replace("kind: NodePool\n", "kind: NodePool\nkind: ConfigMap\n");
        assert!(invalid(&text)[0].reason.contains("duplicate entry"));
    }

    #[test]
    fn metadata_is_checked_as_the_api_server_does() {
        let valid = POOL.replace("values: [\"a\"]", "values: [\"2\"]");
        assert!(matches!(
            check_manifests(&valid)[0].outcome,
            Outcome::Valid { .. }
        ));
        let long = valid.replace(
            "name: default\nspec",
            &format!("name: {}\nspec", "a".repeat(300)),
        );
        assert_eq!(invalid(&long)[0].path, "metadata.name");
        let odd = valid.replace("name: default\nspec", "name: My_Pool!/x\nspec");
        let problems = invalid(&odd);
        assert_eq!(problems[0].path, "metadata.name", "{problems:?}");
        assert_eq!(problems[0].line, Some(4), "{problems:?}");
        let big = valid.replace(
            "name: default\nspec",
            &format!(
                "name: default\n  annotations:\n    note: {}\nspec",
                "x".repeat(300 * 1024)
            ),
        );
        let problems = invalid(&big);
        assert_eq!(problems[0].path, "metadata.annotations", "{problems:?}");
        assert!(problems[0].reason.contains("262144"), "{problems:?}");
    }

    #[test]
    fn lines_inside_block_lists_follow_the_items() {
        // The second requirement's values come after a block list inside the first requirement: the
        // line is the value's own, not the document's first.
        let text = "\
apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: default
spec:
  template:
    spec:
      nodeClassRef:
        group: karpenter.k8s.aws
        kind: EC2NodeClass
        name: default
      requirements:
      - key: kubernetes.io/arch
        operator: In
        values:
        - amd64
      - key: karpenter.k8s.aws/instance-cpu
        operator: Gt
        values:
        - a
";
        let problems = invalid(text);
        assert_eq!(
            problems[0].path,
            "spec.template.spec.requirements[1].values"
        );
        assert_eq!(problems[0].line, Some(19), "{problems:?}");
    }

    #[test]
    fn an_endless_file_is_refused_after_the_byte_limit() {
        let err = read_bounded_text(std::path::Path::new("/dev/zero"), 1024).unwrap_err();
        assert!(matches!(err, ReadError::TooLarge { limit: 1024 }), "{err}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 256,
            failure_persistence: None,
            ..Default::default()
        })]

        /// Arbitrary text, and a valid NodePool with one line replaced by arbitrary text: every
        /// document gets a verdict, never a panic.
        #[test]
        fn checking_never_panics(
            text in "[ -~\n]{0,300}",
            line in 0usize..20,
            replacement in "[ -~]{0,40}",
        ) {
            let _ = check_manifests(&text);
            let lines: Vec<&str> = POOL.lines().collect();
            let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            let i = line % lines.len();
            let indent = lines[i].len() - lines[i].trim_start().len();
            edited[i] = format!("{}{replacement}", " ".repeat(indent));
            let reports = check_manifests(&edited.join("\n"));
            for r in reports {
                if let Outcome::Invalid { problems, .. } = r.outcome {
                    for p in problems {
                        proptest::prop_assert!(p.line.is_none_or(|l| l >= 1 && l <= lines.len() + 1));
                    }
                }
            }
        }
    }
}
