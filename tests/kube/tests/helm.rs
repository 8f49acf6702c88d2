//! The Helm chart (`deploy/helm/kestrel`), rendered and linted by Helm's own engine (helm-python-sdk,
//! see `tests/kube/helm/helm.py`), applied to the real API server, and the controller run under the
//! chart's ServiceAccount and RBAC alone: every call it makes is allowed (the API server's audit log
//! shows no refusal), and calls outside its role are refused.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kestrel_core::api::NodeClaim;
use kestrel_kube_tests::{cluster, kubelet};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::{Value, json};

use crate::common::{self, RunningController};
use crate::provisioning::{bound_node, pod, setup};

const NAMESPACE: &str = "kestrel";
/// The release name the plain manifests are rendered with (so the objects are named `kestrel`).
const RELEASE: &str = "kestrel";

fn chart_dir() -> PathBuf {
    common::repo_root().join("deploy/helm/kestrel")
}

/// The plain manifests for people without Helm: the chart rendered with these values.
fn plain_manifest_values() -> Value {
    json!({"clusterName": "my-cluster"})
}

fn plain_manifests_path() -> PathBuf {
    common::repo_root().join("deploy/manifests/kestrel.yaml")
}

/// Runs Helm's engine: `render` or `lint` of the chart with `values`.
fn helm(mode: &str, values: &Value) -> Result<Value> {
    let python = kestrel_test_pyenv::python(&kestrel_test_pyenv::HELM)?;
    let script = common::repo_root().join("tests/kube/helm/helm.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {} with {}", script.display(), python.display()))?;
    let request =
        json!({"chart": chart_dir(), "values": values, "name": RELEASE, "namespace": NAMESPACE});
    child
        .stdin
        .take()
        .context("helm.py's stdin")?
        .write_all(request.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "helm.py {mode} exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("helm.py's answer is not JSON")
}

/// The chart's templates rendered with `values`, in template order, or Helm's error.
fn render(values: &Value) -> Result<Result<String, String>> {
    let answer = helm("render", values)?;
    if let Some(error) = answer.get("error").and_then(Value::as_str) {
        return Ok(Err(error.to_string()));
    }
    let manifests = answer
        .get("manifests")
        .and_then(Value::as_object)
        .context("no manifests in helm.py's answer")?;
    // Template paths sort the output the way `helm template` prints it (by name); NOTES.txt is text
    // for the installer, not a manifest.
    let yaml = manifests
        .iter()
        .filter(|(path, _)| path.ends_with(".yaml"))
        .map(|(path, text)| {
            let source = path.trim_start_matches(&format!("{RELEASE}/"));
            format!(
                "---\n# Source: {source}\n{}\n",
                text.as_str().unwrap_or("").trim()
            )
        })
        .filter(|doc| doc.lines().any(|l| l.starts_with("kind:")))
        .collect();
    Ok(Ok(yaml))
}

fn documents(yaml: &str) -> Result<Vec<Value>> {
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let value: Value = serde_json::to_value(
            <serde_yaml_ng::Value as serde::Deserialize>::deserialize(doc)?,
        )?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Option<&'a Value> {
    docs.iter().find(|d| d["kind"] == kind)
}

fn env_of(deployment: &Value, name: &str) -> Option<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)
        .and_then(|e| e["value"].as_str().map(str::to_string))
}

#[test]
fn the_chart_lints_clean_and_renders_what_its_values_say() -> Result<()> {
    // Lint (strict: warnings count) with the defaults and with every optional part switched on.
    let full = json!({
        "clusterName": "prod-east",
        "interruptionQueue": "prod-east-interruptions",
        "replicas": 3,
        "kubeVersion": "1.20.2",
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/Kestrel"}},
        "metrics": {"serviceMonitor": {"enabled": true, "additionalLabels": {"release": "prom"}}},
        "podDisruptionBudget": {"enabled": true, "maxUnavailable": 1},
    });
    for values in [json!({"clusterName": "c"}), full.clone()] {
        let lint = helm("lint", &values)?;
        let messages = lint["messages"].as_array().cloned().unwrap_or_default();
        let errors = lint["errors"].as_array().cloned().unwrap_or_default();
        assert!(
            messages.is_empty() && errors.is_empty(),
            "helm lint with {values}: {lint}"
        );
    }

    let defaults = documents(&render(&json!({"clusterName": "c"}))?.map_err(anyhow::Error::msg)?)?;
    let kinds: BTreeSet<&str> = defaults.iter().filter_map(|d| d["kind"].as_str()).collect();
    let expected: BTreeSet<&str> = [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    .into();
    assert_eq!(kinds, expected, "the default install's objects");
    let deployment = of_kind(&defaults, "Deployment").context("a Deployment")?;
    let pod_spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(deployment["spec"]["replicas"], 2, "two replicas by default");
    assert_eq!(env_of(deployment, "CLUSTER_NAME").as_deref(), Some("c"));
    assert_eq!(env_of(deployment, "MALLOC_ARENA_MAX").as_deref(), Some("2"));
    assert_eq!(pod_spec["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        pod_spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0],
        json!({"key": "karpenter.sh/nodepool", "operator": "DoesNotExist"}),
        "never on the capacity it manages"
    );
    let spread = &pod_spec["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(
        spread["labelSelector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"],
        "the replicas' spread selects the replicas"
    );
    assert_eq!(
        of_kind(&defaults, "PodDisruptionBudget").context("a PDB")?["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    let all = documents(&render(&full)?.map_err(anyhow::Error::msg)?)?;
    let deployment = of_kind(&all, "Deployment").context("a Deployment")?;
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        env_of(deployment, "INTERRUPTION_QUEUE").as_deref(),
        Some("prod-east-interruptions")
    );
    assert_eq!(
        of_kind(&all, "ServiceAccount").context("a ServiceAccount")?["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::111122223333:role/Kestrel",
        "the IRSA annotation"
    );
    let monitor = of_kind(&all, "ServiceMonitor").context("a ServiceMonitor when enabled")?;
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(
        of_kind(&all, "PodDisruptionBudget").context("a PDB")?["apiVersion"],
        "policy/v1beta1",
        "a 1.20 cluster has no policy/v1"
    );

    // Bad values are refused with an error that names what is wrong.
    for (values, says) in [
        (json!({}), "clusterName is required"),
        (json!({"clusterName": "c", "replicas": "two"}), "/replicas"),
        (json!({"clusterName": "c", "replica": 2}), "replica"),
        (
            json!({"clusterName": "c", "logFormat": "xml"}),
            "/logFormat",
        ),
    ] {
        match render(&values)? {
            Ok(_) => bail!("values {values} rendered"),
            Err(error) => assert!(error.contains(says), "{values}: {error}"),
        }
    }

    // The plain manifests (deploy/manifests/) are this chart's rendering, not a copy kept by hand.
    let plain = render(&plain_manifest_values())?.map_err(anyhow::Error::msg)?;
    let plain = format!(
        "# The Helm chart deploy/helm/kestrel rendered for people without Helm (release `{RELEASE}`,\n\
         # namespace `{NAMESPACE}`, values {}). Generated by the test\n\
         # `KESTREL_BLESS=1 cargo test -p kestrel-kube-tests --test kube helm`; do not edit.\n\
         # Edit clusterName (CLUSTER_NAME) before applying; the CRDs are in deploy/crds/.\n{plain}",
        plain_manifest_values()
    );
    if std::env::var_os("KESTREL_BLESS").is_some() {
        std::fs::create_dir_all(plain_manifests_path().parent().context("a parent")?)?;
        std::fs::write(plain_manifests_path(), &plain)?;
    }
    let committed = std::fs::read_to_string(plain_manifests_path())
        .context("deploy/manifests/kestrel.yaml (KESTREL_BLESS=1 writes it)")?;
    assert!(
        committed == plain,
        "deploy/manifests/kestrel.yaml differs from the chart's rendering; rewrite it with KESTREL_BLESS=1"
    );
    Ok(())
}

fn is_forbidden<T>(result: kube::Result<T>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_applies_and_the_controller_works_under_its_service_account_alone() -> Result<()>
{
    let (cluster, admin) = setup().await?;
    Api::<Namespace>::all(admin.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?,
        )
        .await?;
    let rendered = render(&json!({"clusterName": "kestrel-test", "kubeVersion": "1.20.2"}))?
        .map_err(anyhow::Error::msg)?;
    let applied = common::apply_yaml(&admin, &rendered).await?;
    assert!(applied.len() >= 8, "every rendered object applied");

    // The chart's ServiceAccount token, as the pod would mount it (TokenRequest API).
    let request: TokenRequest = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec!["https://kubernetes.default.svc.cluster.local".into()],
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = Api::<ServiceAccount>::namespaced(admin.clone(), NAMESPACE)
        .create_token_request(RELEASE, &PostParams::default(), &request)
        .await?
        .status
        .context("a token")?
        .token;
    let kubeconfig = cluster.kubeconfig_for("kestrel", &token)?;
    let own = cluster::client_from(&kubeconfig).await?;

    // The whole lifecycle under the chart's RBAC: provisioning, registration, a drain through the
    // Eviction API, termination.
    let cloud = common::sim_cloud()?;
    let kubelet = kubelet::spawn(admin.clone(), cloud.clone(), common::instance_types()?);
    // As the chart runs it: policies (and the lease) in the release's namespace (SYSTEM_NAMESPACE).
    let mut settings = common::settings();
    settings.policy_namespace = NAMESPACE.into();
    let controller = RunningController::start_as(kubeconfig, &cloud, settings);
    let pods = Api::<Pod>::namespaced(admin.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1", "500m"))
        .await?;
    let node = common::eventually(Duration::from_secs(60), "web-1 bound", || {
        bound_node(&admin, "web-1")
    })
    .await?;
    let claims = Api::<NodeClaim>::all(admin.clone());
    let claim = claims
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .next()
        .and_then(|c| c.metadata.name)
        .context("the NodeClaim")?;
    claims.delete(&claim, &DeleteParams::default()).await?;
    let nodes = Api::<Node>::all(admin.clone());
    common::eventually(
        Duration::from_secs(60),
        "the node and its claim gone",
        || async {
            let gone =
                nodes.get_opt(&node).await?.is_none() && claims.get_opt(&claim).await?.is_none();
            Ok(gone.then_some(()))
        },
    )
    .await?;
    controller.stop()?;
    kubelet.abort();

    // Every request of the controller's account was allowed.
    let user = format!("system:serviceaccount:{NAMESPACE}:{RELEASE}");
    let audit = cluster.service_account_audit()?;
    let own_requests: Vec<&Value> = audit
        .iter()
        .filter(|e| e["user"]["username"] == user.as_str())
        .collect();
    let refused: Vec<String> = own_requests
        .iter()
        .filter(|e| e["responseStatus"]["code"] == 403)
        .map(|e| format!("{} {}", e["verb"], e["requestURI"]))
        .collect();
    assert!(refused.is_empty(), "the chart's role refused: {refused:?}");
    // The lifecycle's writes were made by this account (a NodeClaim is created by server-side apply).
    for (verb, resource) in [
        ("patch", "nodeclaims"),
        ("patch", "nodeclaims/status"),
        ("patch", "nodes"),
        ("create", "pods/eviction"),
        ("delete", "nodes"),
    ] {
        let made = own_requests.iter().any(|e| {
            let subresource = e["objectRef"]["subresource"].as_str();
            let name = match subresource {
                Some(sub) => format!(
                    "{}/{sub}",
                    e["objectRef"]["resource"].as_str().unwrap_or("")
                ),
                None => e["objectRef"]["resource"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            };
            e["verb"] == verb && name == resource
        });
        assert!(
            made,
            "the controller's account made no {verb} on {resource} (audited: {})",
            own_requests.len()
        );
    }

    // And what is outside its role is refused.
    assert!(
        is_forbidden(
            Api::<Secret>::all(own.clone())
                .list(&ListParams::default())
                .await
        ),
        "read Secrets"
    );
    assert!(
        is_forbidden(
            Api::<ConfigMap>::namespaced(own.clone(), NAMESPACE)
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": "x"}}))?,
                )
                .await
        ),
        "write a ConfigMap"
    );
    assert!(
        is_forbidden(
            Api::<ConfigMap>::namespaced(own.clone(), "default")
                .list(&ListParams::default())
                .await
        ),
        "read ConfigMaps outside its namespace"
    );
    assert!(
        is_forbidden(
            Api::<Namespace>::all(own.clone())
                .delete("default", &DeleteParams::default())
                .await
        ),
        "delete a Namespace"
    );
    assert!(
        is_forbidden(
            Api::<ClusterRoleBinding>::all(own.clone())
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({
                        "metadata": {"name": "escalate"},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                        "subjects": [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}]
                    }))?,
                )
                .await
        ),
        "grant itself cluster-admin"
    );
    assert!(
        is_forbidden(
            Api::<Pod>::namespaced(own.clone(), "default")
                .create(&PostParams::default(), &pod("intruder", "100m"))
                .await
        ),
        "create a workload"
    );
    Ok(())
}
