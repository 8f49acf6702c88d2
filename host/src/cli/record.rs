//! `kestrel record`: a live cluster's own traffic as a scenario `kestrel simulate` replays.
//!
//! Over a window, the pods are listed every `--every` and counted per workload (a Deployment through
//! its ReplicaSet, a StatefulSet, a Job, a bare pod); at the end the NodePools, EC2NodeClasses,
//! DaemonSets and PodDisruptionBudgets are read. The scenario holds the NodePools and NodeClasses
//! verbatim (spec, labels, annotations), each workload with the scheduling part of its pod template
//! and its replica count over time (`replicas` then `scale` steps), each DaemonSet, and the PDB that
//! selects a workload. Only what scheduling needs is written: container names and resources, host
//! ports, node selectors, affinities, tolerations, topology spread, priority; never an environment
//! variable, a command, a volume, an image or a Secret.
//!
//! StatefulSets are replayed as Deployments (the simulator has no ordinal identity); a Job's
//! `runFor` is the longest a pod of it was seen running.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kestrel_core::api::ec2nodeclass::EC2NodeClass;
use kestrel_core::api::nodepool::NodePool;
use kestrel_kube::kube::{self, Api, ResourceExt, api::ListParams};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kubeconfig to use outside a cluster (default: `KUBECONFIG`, then the in-cluster config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// How long to record.
    #[arg(long, default_value = "10m")]
    pub duration: String,
    /// How often the pods are counted.
    #[arg(long, default_value = "30s")]
    pub every: String,
    /// Where to write the scenario (default: standard output).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// The scenario's name.
    #[arg(long, default_value = "recorded")]
    pub name: String,
    /// How long the replay runs past the recorded window, so its last changes settle (nodes boot
    /// in about a minute, consolidation follows).
    #[arg(long, default_value = "15m")]
    pub settle: String,
}

/// A workload as the samples saw it.
#[derive(Debug, Default)]
struct Seen {
    kind: &'static str,
    namespace: String,
    /// The scheduling part of its first pod's template.
    template: Value,
    /// (seconds since the start, pods counted) at each sample.
    counts: Vec<(u64, u32)>,
    /// Every pod name seen, and the first and last sample (seconds) it was seen at.
    pods: BTreeMap<String, (u64, u64)>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let duration = kestrel_core::api::parse_duration(&args.duration)
        .with_context(|| format!("--duration {:?}", args.duration))?;
    let every = kestrel_core::api::parse_duration(&args.every)
        .with_context(|| format!("--every {:?}", args.every))?;
    if every.is_zero() || every > duration {
        bail!("--every must be positive and at most --duration");
    }
    let settle = kestrel_core::api::parse_duration(&args.settle)
        .with_context(|| format!("--settle {:?}", args.settle))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let scenario = runtime.block_on(record(&args, duration, every, settle))?;
    let text = format!(
        "# Recorded by `kestrel record` over {}: replay it with `kestrel simulate FILE`.\n{}",
        args.duration,
        serde_yaml_ng::to_string(&scenario).context("writing the scenario")?
    );
    // The result must be a scenario the simulator takes.
    kestrel_sim::sim::scenario::Scenario::parse(&text, "recorded.yaml")
        .map_err(|e| anyhow::anyhow!("the recorded scenario does not parse: {e}"))?;
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(())
}

async fn client(kubeconfig: &Option<PathBuf>) -> anyhow::Result<kube::Client> {
    let config = super::run::kube_config(kubeconfig.as_deref()).await?;
    kube::Client::try_from(config).context("building the kube client")
}

async fn record(
    args: &Args,
    duration: Duration,
    every: Duration,
    settle: Duration,
) -> anyhow::Result<Value> {
    let client = client(&args.kubeconfig).await?;
    let mut workloads: BTreeMap<String, Seen> = BTreeMap::new();
    let started = Instant::now();
    loop {
        let at = started.elapsed().as_secs();
        let pods: Vec<Pod> = list_all(&client, "pods").await?;
        let counted = sample(&mut workloads, &pods, at);
        // Progress on stderr (the scenario may be going to stdout).
        eprintln!(
            "kestrel record: {at} s: {counted} pods in {} workloads",
            workloads.len()
        );
        if started.elapsed() + every > duration {
            break;
        }
        tokio::time::sleep(every).await;
    }
    let pools: Vec<NodePool> = list_all(&client, "NodePools").await?;
    let classes: Vec<EC2NodeClass> = list_all(&client, "EC2NodeClasses").await?;
    let daemonsets: Vec<DaemonSet> = list_all(&client, "DaemonSets").await?;
    let nodes: Vec<Node> = list_all(&client, "Nodes").await?;
    let pdbs = pdbs(&client).await?;
    Ok(scenario(
        &args.name,
        duration.as_secs().max(1),
        settle.as_secs(),
        &workloads,
        &pools,
        &classes,
        &daemonsets,
        &nodes,
        &pdbs,
    ))
}

/// Every object of a kind, in every namespace.
async fn list_all<K>(client: &kube::Client, what: &str) -> anyhow::Result<Vec<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    Ok(Api::<K>::all(client.clone())
        .list(&ListParams::default())
        .await
        .with_context(|| format!("listing {what}"))?
        .items)
}

/// Every PDB (its data, with its namespace), in the version the server serves (the controller's
/// discovery).
async fn pdbs(client: &kube::Client) -> anyhow::Result<Vec<Value>> {
    let ar = kestrel_kube::watch::PolicyVersion::discover(client)
        .await
        .context("discovering the PodDisruptionBudget version")?
        .pdb_resource();
    let list = Api::<kube::api::DynamicObject>::all_with(client.clone(), &ar)
        .list(&ListParams::default())
        .await
        .context("listing PodDisruptionBudgets")?;
    Ok(list
        .items
        .into_iter()
        .map(|o| {
            let ns = o.namespace().unwrap_or_default();
            let mut v = o.data;
            v["namespace"] = json!(ns);
            v
        })
        .collect())
}

/// A workload's scenario name: its own in `default`, `<namespace>-<name>` elsewhere.
fn workload_name(namespace: &str, name: &str) -> String {
    if namespace == "default" {
        name.to_string()
    } else {
        format!("{namespace}-{name}")
    }
}

/// The workload a pod belongs to: (name, kind), or None for a DaemonSet's (recorded from the
/// DaemonSet itself) and a static pod's.
fn workload_of(pod: &Pod) -> Option<(String, &'static str)> {
    let ns = pod.namespace().unwrap_or_else(|| "default".into());
    let prefix = |name: &str| workload_name(&ns, name);
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    match owner {
        None => Some((prefix(&pod.name_any()), "Deployment")),
        Some(o) => match o.kind.as_str() {
            "DaemonSet" | "Node" => None,
            "ReplicaSet" => {
                // A Deployment's ReplicaSet is named `<deployment>-<pod-template-hash>`.
                let name = pod
                    .labels()
                    .get("pod-template-hash")
                    .and_then(|h| o.name.strip_suffix(&format!("-{h}")))
                    .unwrap_or(&o.name);
                Some((prefix(name), "Deployment"))
            }
            "Job" => Some((prefix(&o.name), "Job")),
            _ => Some((prefix(&o.name), "Deployment")),
        },
    }
}

/// Counts the pods of each workload at `at`; returns how many were counted.
fn sample(workloads: &mut BTreeMap<String, Seen>, pods: &[Pod], at: u64) -> u32 {
    let mut counts: BTreeMap<String, u32> = BTreeMap::new();
    for pod in pods {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed"))
            || pod.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let Some((name, kind)) = workload_of(pod) else {
            continue;
        };
        let seen = workloads.entry(name.clone()).or_insert_with(|| Seen {
            kind,
            namespace: pod.namespace().unwrap_or_else(|| "default".into()),
            template: template_of(pod),
            ..Seen::default()
        });
        let span = seen.pods.entry(pod.name_any()).or_insert((at, at));
        span.1 = at;
        *counts.entry(name).or_default() += 1;
    }
    for (name, seen) in workloads.iter_mut() {
        seen.counts
            .push((at, counts.get(name).copied().unwrap_or(0)));
    }
    counts.values().sum()
}

/// Labels that name a pod's instance, not its workload.
const INSTANCE_LABELS: [&str; 5] = [
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
];

/// The annotations scheduling and disruption read.
const KEPT_ANNOTATIONS: [&str; 2] = [
    "karpenter.sh/do-not-disrupt",
    "controller.kubernetes.io/pod-deletion-cost",
];

/// The scheduling part of a pod (or a pod template): what Kestrel and kube-scheduler read, nothing
/// that could carry a secret.
fn template_of(pod: &Pod) -> Value {
    let labels: BTreeMap<&String, &String> = pod
        .labels()
        .iter()
        .filter(|(k, _)| !INSTANCE_LABELS.contains(&k.as_str()))
        .collect();
    let annotations: BTreeMap<&String, &String> = pod
        .annotations()
        .iter()
        .filter(|(k, _)| KEPT_ANNOTATIONS.contains(&k.as_str()))
        .collect();
    let spec = pod.spec.as_ref().map(scheduling_spec).unwrap_or(json!({}));
    json!({"metadata": {"labels": labels, "annotations": annotations}, "spec": spec})
}

fn scheduling_spec(spec: &k8s_openapi::api::core::v1::PodSpec) -> Value {
    let container = |c: &k8s_openapi::api::core::v1::Container| {
        let mut v = json!({"name": c.name, "image": "recorded"});
        if let Some(r) = &c.resources {
            v["resources"] = json!({"requests": r.requests, "limits": r.limits});
        }
        let host_ports: Vec<Value> = c
            .ports
            .iter()
            .flatten()
            .filter(|p| p.host_port.is_some())
            .map(|p| json!({"containerPort": p.container_port, "hostPort": p.host_port, "protocol": p.protocol}))
            .collect();
        if !host_ports.is_empty() {
            v["ports"] = json!(host_ports);
        }
        if let Some(policy) = &c.restart_policy {
            v["restartPolicy"] = json!(policy);
        }
        v
    };
    let mut v = json!({
        "containers": spec.containers.iter().map(container).collect::<Vec<_>>(),
    });
    let init: Vec<Value> = spec
        .init_containers
        .iter()
        .flatten()
        .map(container)
        .collect();
    if !init.is_empty() {
        v["initContainers"] = json!(init);
    }
    let mut copy = |key: &str, value: Value| {
        if !value.is_null() {
            v[key] = value;
        }
    };
    copy("nodeSelector", json!(spec.node_selector));
    copy("affinity", json!(spec.affinity));
    copy("tolerations", json!(spec.tolerations));
    copy(
        "topologySpreadConstraints",
        json!(spec.topology_spread_constraints),
    );
    copy("priority", json!(spec.priority));
    copy("overhead", json!(spec.overhead));
    copy("hostNetwork", json!(spec.host_network));
    copy(
        "terminationGracePeriodSeconds",
        json!(spec.termination_grace_period_seconds),
    );
    v
}

/// A Karpenter object as the scenario holds it: apiVersion, kind, name, labels, annotations, spec.
fn manifest(api_version: &str, kind: &str, meta: &kube::api::ObjectMeta, spec: Value) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": meta.name,
            "labels": meta.labels.clone().unwrap_or_default(),
            "annotations": meta.annotations.clone().unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| k != "kubectl.kubernetes.io/last-applied-configuration")
                .collect::<BTreeMap<_, _>>(),
        },
        "spec": spec,
    })
}

/// The PDB of a workload: the first in its namespace whose matchLabels its labels satisfy.
fn pdb_for(template: &Value, namespace: &str, pdbs: &[Value]) -> Option<Value> {
    let labels = template["metadata"]["labels"].as_object()?;
    pdbs.iter().find_map(|p| {
        if p["namespace"].as_str() != Some(namespace) {
            return None;
        }
        let wanted = p["spec"]["selector"]["matchLabels"].as_object()?;
        if wanted.is_empty() || !wanted.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return None;
        }
        let spec = &p["spec"];
        let mut out = json!({});
        for key in ["minAvailable", "maxUnavailable"] {
            // Only whole numbers (the simulator's PDBs take counts).
            if let Some(n) = spec[key].as_i64() {
                out[key] = json!(n);
            }
        }
        (out.as_object()?.len() == 1).then_some(out)
    })
}

#[allow(clippy::too_many_arguments)]
fn scenario(
    name: &str,
    seconds: u64,
    settle: u64,
    workloads: &BTreeMap<String, Seen>,
    pools: &[NodePool],
    classes: &[EC2NodeClass],
    daemonsets: &[DaemonSet],
    nodes: &[Node],
    pdbs: &[Value],
) -> Value {
    let mut out = Vec::new();
    for (workload, seen) in workloads {
        let mut w = json!({"name": workload, "kind": seen.kind, "template": seen.template});
        match seen.kind {
            "Job" => {
                let mut concurrent = 0;
                for (_, n) in &seen.counts {
                    concurrent = concurrent.max(*n);
                }
                let longest = seen
                    .pods
                    .values()
                    .map(|(first, last)| last - first)
                    .max()
                    .unwrap_or(0)
                    .max(1);
                w["completions"] = json!(seen.pods.len());
                w["parallelism"] = json!(concurrent.max(1));
                w["runFor"] = json!(format!("{longest}s"));
                let first = seen.counts.iter().find(|(_, n)| *n > 0).map(|(at, _)| *at);
                w["at"] = json!(format!("{}s", first.unwrap_or(0)));
            }
            _ => {
                let start = seen.counts.first().map(|(_, n)| *n).unwrap_or(0);
                w["replicas"] = json!(start);
                let mut steps = Vec::new();
                let mut last = start;
                for (at, n) in seen.counts.iter().skip(1) {
                    if *n != last {
                        steps.push(json!({"at": format!("{at}s"), "replicas": n}));
                        last = *n;
                    }
                }
                if !steps.is_empty() {
                    w["scale"] = json!(steps);
                }
            }
        }
        if let Some(pdb) = pdb_for(&seen.template, &seen.namespace, pdbs) {
            w["podDisruptionBudget"] = pdb;
        }
        out.push(w);
    }
    for ds in daemonsets {
        let Some(template) = ds.spec.as_ref().map(|s| &s.template) else {
            continue;
        };
        let pod = Pod {
            metadata: template.metadata.clone().unwrap_or_default(),
            spec: template.spec.clone(),
            status: None,
        };
        let name = workload_name(
            &ds.namespace().unwrap_or_else(|| "default".into()),
            &ds.name_any(),
        );
        out.push(json!({"name": name, "kind": "DaemonSet", "template": template_of(&pod)}));
    }
    let zones: BTreeSet<&String> = nodes
        .iter()
        .filter_map(|n| n.labels().get("topology.kubernetes.io/zone"))
        .collect();
    let mut scenario = json!({
        "name": name,
        "description": format!(
            "{} workloads recorded over {seconds} s, replayed {settle} s past it",
            workloads.len()
        ),
        "duration": format!("{}s", seconds + settle),
        "nodePools": pools.iter().map(|p| manifest("karpenter.sh/v1", "NodePool", &p.metadata, json!(p.spec))).collect::<Vec<_>>(),
        "nodeClasses": classes.iter().map(|c| manifest("karpenter.k8s.aws/v1", "EC2NodeClass", &c.metadata, json!(c.spec))).collect::<Vec<_>>(),
        "workloads": out,
    });
    if !zones.is_empty() {
        scenario["zones"] = json!(zones);
    }
    scenario
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, owner: Option<(&str, &str)>, labels: Value) -> Pod {
        let owners = owner.map(|(kind, name)| {
            json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u", "controller": true}])
        });
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default", "labels": labels, "ownerReferences": owners},
            "spec": {"containers": [{"name": "app", "image": "secret.registry/app:1",
                "env": [{"name": "TOKEN", "value": "hunter2"}],
                "command": ["/bin/app", "--password=hunter2"],
                "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}],
                "nodeSelector": {"karpenter.sh/capacity-type": "spot"}}
        }))
        .unwrap()
    }

    #[test]
    fn samples_become_replicas_and_scale_steps_and_no_secret_is_written() {
        let mut w = BTreeMap::new();
        let web = |i: u32| {
            pod(
                &format!("web-5d8f7c-{i}"),
                Some(("ReplicaSet", "web-5d8f7c")),
                json!({"app": "web", "pod-template-hash": "5d8f7c"}),
            )
        };
        sample(&mut w, &[web(1), web(2)], 0);
        sample(&mut w, &[web(1), web(2)], 30);
        sample(&mut w, &[web(1), web(2), web(3), web(4)], 60);
        let pdb = json!({"namespace": "default", "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}});
        let s = scenario("t", 90, 0, &w, &[], &[], &[], &[], &[pdb]);
        let web = &s["workloads"][0];
        assert_eq!(web["name"], "web");
        assert_eq!(web["kind"], "Deployment");
        assert_eq!(web["replicas"], 2);
        assert_eq!(web["scale"], json!([{"at": "60s", "replicas": 4}]));
        assert_eq!(web["podDisruptionBudget"], json!({"minAvailable": 1}));
        assert_eq!(web["template"]["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(
            web["template"]["spec"]["nodeSelector"],
            json!({"karpenter.sh/capacity-type": "spot"})
        );
        let text = serde_json::to_string(&s).unwrap();
        for secret in ["hunter2", "TOKEN", "secret.registry", "--password"] {
            assert!(!text.contains(secret), "{secret} written: {text}");
        }
    }

    #[test]
    fn jobs_and_bare_pods_and_daemonset_pods() {
        let mut w = BTreeMap::new();
        let job = |i: u32| pod(&format!("batch-{i}"), Some(("Job", "batch")), json!({}));
        let ds = pod("agent-x", Some(("DaemonSet", "agent")), json!({}));
        let bare = pod("debug", None, json!({}));
        sample(&mut w, &[job(1), job(2), ds.clone(), bare.clone()], 0);
        sample(&mut w, &[job(2), job(3), ds, bare], 40);
        assert!(
            !w.contains_key("agent"),
            "DaemonSet pods come from their DaemonSet"
        );
        let s = scenario("t", 60, 0, &w, &[], &[], &[], &[], &[]);
        let batch = s["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "batch")
            .unwrap();
        assert_eq!(batch["kind"], "Job");
        assert_eq!(batch["completions"], 3);
        assert_eq!(batch["parallelism"], 2);
        assert_eq!(batch["runFor"], "40s");
        let debug = s["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == "debug")
            .unwrap();
        assert_eq!(debug["replicas"], 1);
    }
}
