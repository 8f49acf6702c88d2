//! The controller's IAM policy grants exactly the EC2, SQS and IAM actions the adapter's code calls,
//! plus the ones AWS authorizes on those calls' behalf.

use std::collections::BTreeSet;
use std::path::Path;

/// Actions EC2 checks for a call the code makes without the code calling them: CreateFleet
/// launches through RunInstances and tags through CreateTags (also for CreateLaunchTemplate's tag
/// specifications), an instance profile is passed (and a role added to one) with iam:PassRole, and
/// CreateInstanceProfile's tags need iam:TagInstanceProfile.
const AUTHORIZED_ON_BEHALF: &[&str] = &[
    "ec2:RunInstances",
    "ec2:CreateTags",
    "iam:PassRole",
    "iam:TagInstanceProfile",
];

/// SDK operations whose IAM action has another name: SQS authorizes a batch delete as DeleteMessage.
const ACTION_OF_OPERATION: &[(&str, &str)] = &[("sqs:DeleteMessageBatch", "sqs:DeleteMessage")];

/// The SDK operations `host/aws/src` calls, as IAM actions (`.describe_subnets()` ->
/// `ec2:DescribeSubnets`; calls under `sqs/` are SQS's, in `iam.rs` IAM's).
fn called_actions() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../host/aws/src");
    let mut actions = BTreeSet::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("host/aws/src is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let source = std::fs::read_to_string(&path).expect("a source file");
            let service = if path.components().any(|c| c.as_os_str() == "sqs") {
                "sqs"
            } else if path.file_name().is_some_and(|f| f == "iam.rs") {
                "iam"
            } else {
                "ec2"
            };
            // An operation is a zero-argument method named after an EC2 verb, called on a client.
            for (index, _) in source.match_indices("()") {
                let head = &source[..index];
                let start = head
                    .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map_or(0, |i| i + 1);
                if !head[..start].ends_with('.') {
                    continue;
                }
                let name = &head[start..];
                let verbs = [
                    "describe_",
                    "create_",
                    "delete_",
                    "terminate_",
                    "run_",
                    "get_",
                    "receive_",
                    "add_",
                    "remove_",
                ];
                if !verbs.iter().any(|v| name.starts_with(v)) {
                    continue;
                }
                let action: String = name
                    .split('_')
                    .map(|w| {
                        let mut c = w.chars();
                        c.next()
                            .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                            .unwrap_or_default()
                    })
                    .collect();
                let action = format!("{service}:{action}");
                let action = ACTION_OF_OPERATION
                    .iter()
                    .find(|(operation, _)| *operation == action)
                    .map_or(action, |(_, iam)| iam.to_string());
                actions.insert(action);
            }
        }
    }
    actions
}

fn policy_actions() -> BTreeSet<String> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/iam/controller-policy.json");
    let policy: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the policy file"))
            .expect("the policy is JSON");
    let mut actions = BTreeSet::new();
    for statement in policy["Statement"].as_array().expect("statements") {
        assert_eq!(statement["Effect"], "Allow");
        match &statement["Action"] {
            serde_json::Value::String(a) => {
                actions.insert(a.clone());
            }
            serde_json::Value::Array(list) => {
                actions.extend(list.iter().filter_map(|a| a.as_str().map(str::to_string)));
            }
            other => panic!("unexpected Action {other}"),
        }
    }
    assert!(
        actions.iter().all(|a| !a.contains('*')),
        "no wildcard actions"
    );
    actions
}

#[test]
fn the_policy_grants_exactly_the_actions_the_code_calls() {
    let called = called_actions();
    assert!(
        called.contains("ec2:CreateFleet")
            && called.contains("sqs:ReceiveMessage")
            && called.contains("iam:CreateInstanceProfile"),
        "the scan finds the calls: {called:?}"
    );
    let mut expected = called.clone();
    expected.extend(AUTHORIZED_ON_BEHALF.iter().map(|a| a.to_string()));
    let granted = policy_actions();
    let missing: Vec<_> = expected.difference(&granted).collect();
    let unused: Vec<_> = granted.difference(&expected).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "called but not granted: {missing:?}; granted but not called: {unused:?}"
    );
}
