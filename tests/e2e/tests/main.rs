//! End to end: `kestrel run --cloud aws` as a process, configured as in a pod (the standard AWS
//! environment pointed at moto, the cluster's settings as flags), against a real kube-apiserver and
//! kube-scheduler, with moto as EC2 and SQS and a test kubelet that registers a Node for each
//! instance EC2 runs.
//!
//! A pending pod gets an instance from CreateFleet with the NodeClass's subnets, security group,
//! AMI and a userData that joins this cluster; its Node registers and the scheduler binds the pod.
//! A spot interruption warning sent to the queue drains that node: cordoned, the message deleted
//! once the drain is recorded, the instance terminated in EC2; the empty replacement is then
//! consolidated away. A process SIGKILLed right after
//! CreateFleet answered resumes the launch after a restart: the same claim, the same instance.
//! Offerings without capacity (CreateFleet's `Errors[]`) fall through to the next ranked one. The
//! metrics Prometheus scrapes say what happened. A leader SIGKILLed mid-launch is replaced by its
//! standby once the lease runs out, which finishes the launch (one claim, one instance). A deleted
//! EC2NodeClass stays (Karpenter's finalizer) while a NodeClaim names it, then goes with the instance
//! profile Kestrel made for its role. A standby writes nothing for the classes (no finalizer, status
//! or profile) until it takes the lease, and then at once.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use aws_config::BehaviorVersion;
use aws_config::Region;
use aws_sdk_ec2::config::Credentials;
use aws_sdk_ec2::types::{Filter, InstanceStateName, ResourceType, Tag, TagSpecification};
use base64::Engine;
use k8s_openapi::api::core::v1::{Node, Pod};
use kestrel_aws_tests::MotoServer;
use kestrel_core::api::EC2NodeClass;
use kestrel_core::clock::{Clock, SystemClock};
use kestrel_core::cloud::{CapacityType, Instance, InstanceState, Offering};
use kestrel_kube_tests::binary::Process;
use kestrel_kube_tests::cluster::TestCluster;
use kestrel_kube_tests::kubelet;
use kestrel_kube_tests::setup::{apply_yaml, eventually, install_crds};
use kube::api::PostParams;
use kube::{Api, Client};

const CLUSTER: &str = "kestrel-e2e";
const QUEUE: &str = "kestrel-e2e-interruptions";
const NODE_ROLE: &str = "KestrelNodeRole";
const ZONES: [&str; 2] = ["us-east-1a", "us-east-1b"];
const FAMILIES: [&str; 2] = ["m5", "c5"];
/// What the nodes are told to join (the userData carries it; nothing connects to it here).
const ENDPOINT: &str = "https://10.0.0.1:443";

/// The SDK configuration of the test's own calls (the process gets the same through its
/// environment).
async fn sdk_config(moto: &MotoServer) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(moto.endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await
}

fn tags(resource: ResourceType) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(resource)
        .tags(
            Tag::builder()
                .key("karpenter.sh/discovery")
                .value(CLUSTER)
                .build(),
        )
        .build()
}

/// A VPC with a discoverable subnet per zone and a security group; returns a stock AL2023 AMI.
async fn network(ec2: &aws_sdk_ec2::Client) -> Result<String> {
    let vpc = ec2
        .create_vpc()
        .cidr_block("10.0.0.0/16")
        .send()
        .await?
        .vpc
        .and_then(|v| v.vpc_id)
        .context("no vpc id")?;
    for (i, zone) in ZONES.iter().enumerate() {
        ec2.create_subnet()
            .vpc_id(&vpc)
            .cidr_block(format!("10.0.{}.0/24", i + 1))
            .availability_zone(*zone)
            .tag_specifications(tags(ResourceType::Subnet))
            .send()
            .await?;
    }
    ec2.create_security_group()
        .group_name("nodes")
        .description("nodes")
        .vpc_id(&vpc)
        .tag_specifications(tags(ResourceType::SecurityGroup))
        .send()
        .await?;
    ec2.describe_images()
        .owners("amazon")
        .filters(
            Filter::builder()
                .name("architecture")
                .values("x86_64")
                .build(),
        )
        .filters(
            Filter::builder()
                .name("name")
                .values("al2023-ami-2023*")
                .build(),
        )
        .send()
        .await?
        .images
        .unwrap_or_default()
        .into_iter()
        .find_map(|i| i.image_id)
        .context("moto has no x86_64 AL2023 image")
}

fn manifests(ami: &str) -> String {
    format!(
        r#"
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {{name: default}}
spec:
  amiFamily: AL2023
  amiSelectorTerms: [{{id: {ami}}}]
  subnetSelectorTerms: [{{tags: {{karpenter.sh/discovery: {CLUSTER}}}}}]
  securityGroupSelectorTerms: [{{tags: {{karpenter.sh/discovery: {CLUSTER}}}}}]
  role: {NODE_ROLE}
---
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {{name: default}}
spec:
  template:
    metadata:
      labels: {{team: web}}
    spec:
      nodeClassRef: {{group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}
      requirements:
        - {{key: karpenter.sh/capacity-type, operator: In, values: [on-demand]}}
        - {{key: karpenter.k8s.aws/instance-category, operator: In, values: [m, c]}}
"#
    )
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9",
                            "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}}}]
        }
    }))
    .expect("a valid pod")
}

/// `kestrel run --cloud aws`, its log appended to `log`; killed on drop.
fn kestrel_run(
    cluster: &TestCluster,
    moto: &MotoServer,
    log: &Path,
    metrics_port: u16,
    identity: &str,
) -> Result<Process> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut command = Command::new(kestrel_kube_tests::binary::kestrel()?);
    command
        .arg("run")
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .args([
            "--cloud",
            "aws",
            "--cluster-name",
            CLUSTER,
            "--cluster-endpoint",
            ENDPOINT,
            "--service-cidr",
            "10.100.0.0/16",
            "--interruption-queue",
            QUEUE,
            "--zones",
            &ZONES.join(","),
            "--instance-types",
            &FAMILIES.join(","),
            "--default-policies",
            "native",
            "--policy-namespace",
            "default",
            "--identity",
            identity,
            // NodeClasses resolved (and deleted ones finished) every 2 s, not every 5 minutes.
            "--resolve-interval",
            "2s",
            "--health-probe-port",
            "0",
            "--log-level",
            "kestrel=info,kestrel_kube=info,kestrel_aws=info,warn",
        ])
        .arg("--metrics-port")
        .arg(metrics_port.to_string())
        // As in a pod: the standard chain (here static keys), the endpoint from the environment.
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("CLUSTER_CA_BUNDLE")
        .stdout(Stdio::null())
        .stderr(log);
    Process::spawn(command)
}

/// Kestrel's instances as EC2 reports them (tagged with a NodeClaim), with their state.
async fn claimed_instances(
    ec2: &aws_sdk_ec2::Client,
) -> Result<Vec<(Instance, InstanceStateName, Option<String>)>> {
    let answer = ec2
        .describe_instances()
        .filters(
            Filter::builder()
                .name("tag-key")
                .values("karpenter.sh/nodeclaim")
                .build(),
        )
        .send()
        .await?;
    let mut out = Vec::new();
    for i in answer
        .reservations()
        .iter()
        .flat_map(|r| r.instances().iter())
    {
        let tag = |key: &str| {
            i.tags()
                .iter()
                .find(|t| t.key() == Some(key))
                .and_then(|t| t.value())
                .unwrap_or_default()
                .to_string()
        };
        let state = i
            .state()
            .and_then(|s| s.name())
            .cloned()
            .unwrap_or(InstanceStateName::Pending);
        let instance = Instance {
            id: i.instance_id().unwrap_or_default().to_string(),
            claim: tag("karpenter.sh/nodeclaim"),
            node_pool: tag("karpenter.sh/nodepool"),
            offering: Offering {
                instance_type: i
                    .instance_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                zone: i
                    .placement()
                    .and_then(|p| p.availability_zone())
                    .unwrap_or_default()
                    .to_string(),
                capacity_type: CapacityType::OnDemand,
                price: 0.0,
            },
            launched_at: SystemClock.now(),
            state: InstanceState::Running,
        };
        out.push((instance, state, i.image_id().map(str::to_string)));
    }
    Ok(out)
}

/// A kubelet per EC2 instance: registers the Node of each running instance of Kestrel's, deletes
/// the Node of a terminated one, and starts the pods bound to its nodes.
fn spawn_kubelet(client: Client, ec2: aws_sdk_ec2::Client) -> Result<tokio::task::JoinHandle<()>> {
    let zones: Vec<String> = ZONES.iter().map(|z| z.to_string()).collect();
    let families: Vec<String> = FAMILIES.iter().map(|f| f.to_string()).collect();
    let types = kestrel_kube::assemble::catalog(&families, &zones)?.1;
    Ok(tokio::spawn(async move {
        let mut registered: BTreeSet<String> = BTreeSet::new();
        let mut gone: BTreeSet<String> = BTreeSet::new();
        loop {
            match claimed_instances(&ec2).await {
                Ok(instances) => {
                    for (instance, state, _) in instances {
                        let running = state == InstanceStateName::Running;
                        if running && !registered.contains(&instance.id) {
                            match kubelet::register_instance(&client, &types, &instance).await {
                                Ok(()) => {
                                    registered.insert(instance.id.clone());
                                }
                                Err(err) => {
                                    eprintln!("test kubelet: registering {}: {err}", instance.id)
                                }
                            }
                        }
                        let stopped = matches!(
                            state,
                            InstanceStateName::ShuttingDown | InstanceStateName::Terminated
                        );
                        if stopped
                            && registered.contains(&instance.id)
                            && !gone.contains(&instance.id)
                        {
                            match kubelet::delete_node_of(&client, &instance.id).await {
                                Ok(()) => {
                                    gone.insert(instance.id.clone());
                                }
                                Err(err) => {
                                    eprintln!("test kubelet: deleting {}: {err}", instance.id)
                                }
                            }
                        }
                    }
                }
                Err(err) => eprintln!("test kubelet: DescribeInstances: {err}"),
            }
            let names: Vec<String> = registered
                .iter()
                .filter(|id| !gone.contains(*id))
                .map(|id| kubelet::node_name(id))
                .collect();
            if let Err(err) = kubelet::clear_not_ready(&client, &names).await {
                eprintln!("test kubelet: clearing not-ready: {err}");
            }
            if let Err(err) = kubelet::start_pods(&client, &names).await {
                eprintln!("test kubelet: starting pods: {err}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }))
}

/// An EventBridge spot interruption warning for `instance`, sent now.
/// Waits until `pod` is bound while `kestrel` runs (its exit fails the wait at once); the node's name.
async fn bound(pods: &Api<Pod>, pod: &str, kestrel: &Process, timeout: Duration) -> Result<String> {
    eventually(timeout, &format!("{pod} bound"), || async {
        kestrel.check_alive()?;
        Ok(pods.get(pod).await?.spec.and_then(|s| s.node_name))
    })
    .await
}

/// Waits until the class `default` carries Karpenter's finalizer and its status names the instance
/// profile Kestrel made (while `kestrel` runs); the profile's name.
async fn finalized_with_profile(classes: &Api<EC2NodeClass>, kestrel: &Process) -> Result<String> {
    eventually(
        Duration::from_secs(60),
        "the class finalized and its profile made",
        || async {
            kestrel.check_alive()?;
            let class = classes.get("default").await?;
            let finalized = class
                .metadata
                .finalizers
                .unwrap_or_default()
                .iter()
                .any(|f| f == "karpenter.k8s.aws/termination");
            Ok(class
                .status
                .and_then(|s| s.instance_profile)
                .filter(|_| finalized))
        },
    )
    .await
}

fn spot_warning(instance: &str) -> String {
    serde_json::json!({
        "version": "0",
        "id": "e2e-spot-warning",
        "detail-type": "EC2 Spot Instance Interruption Warning",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": "us-east-1",
        "resources": [format!("arn:aws:ec2:us-east-1a:instance/{instance}")],
        "detail": {"instance-id": instance, "instance-action": "terminate"}
    })
    .to_string()
}

/// Messages in the queue, visible or being handled.
async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<u64> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let answer = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await?;
    let attrs = answer.attributes().cloned().unwrap_or_default();
    let count = |a: A| {
        attrs
            .get(&a)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(count(A::ApproximateNumberOfMessages) + count(A::ApproximateNumberOfMessagesNotVisible))
}

/// moto with a network and a queue, a control plane with Kestrel's CRDs, a NodeClass and a NodePool.
struct Env {
    /// Dropped last: the clients talk to it.
    moto: MotoServer,
    ec2: aws_sdk_ec2::Client,
    sqs: aws_sdk_sqs::Client,
    ami: String,
    queue_url: String,
    cluster: TestCluster,
    client: Client,
    log: std::path::PathBuf,
}

impl Env {
    async fn new(name: &str) -> Result<Env> {
        let bin = tokio::task::spawn_blocking(kestrel_kube_tests::binary::kestrel).await??;
        eprintln!("kestrel binary: {}", bin.display());
        let moto = MotoServer::start()?;
        let config = sdk_config(&moto).await;
        let ec2 = aws_sdk_ec2::Client::new(&config);
        let sqs = aws_sdk_sqs::Client::new(&config);
        let ami = network(&ec2).await?;
        // The NodeClass names a role, as most Karpenter users' do: Kestrel makes its profile.
        aws_sdk_iam::Client::new(&config)
            .create_role()
            .role_name(NODE_ROLE)
            .assume_role_policy_document(kestrel_aws_tests::EC2_TRUST_POLICY)
            .send()
            .await?;
        let queue_url = sqs
            .create_queue()
            .queue_name(QUEUE)
            .send()
            .await?
            .queue_url
            .context("no queue url")?;
        let cluster = TestCluster::start()?;
        let client = cluster.client().await?;
        install_crds(&client).await?;
        apply_yaml(&client, &manifests(&ami)).await?;
        let dir = std::env::temp_dir().join(format!(
            "kestrel-e2e-{name}-{}-{}",
            std::process::id(),
            SystemClock.now()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(Env {
            moto,
            ec2,
            sqs,
            ami,
            queue_url,
            cluster,
            client,
            log: dir.join("kestrel.log"),
        })
    }

    fn kestrel(&self) -> Result<Process> {
        // One identity: a restarted process holds its own lease again at once.
        kestrel_run(&self.cluster, &self.moto, &self.log, 0, "kestrel-e2e")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kestrel_run_on_aws_launches_for_a_pending_pod_and_drains_on_a_spot_warning() -> Result<()>
{
    let env = Env::new("launch").await?;
    let (ec2, sqs, client, ami, url, log) = (
        &env.ec2,
        &env.sqs,
        &env.client,
        &env.ami,
        &env.queue_url,
        &env.log,
    );
    let metrics_port = kestrel_kube_tests::cluster::free_port()?;
    let kestrel = kestrel_run(&env.cluster, &env.moto, log, metrics_port, "kestrel-e2e")?;
    let kubelet = spawn_kubelet(client.clone(), ec2.clone())?;
    let context = || format!("log: {}", log.display());

    // The NodeClass resolves and says so.
    let classes = Api::<EC2NodeClass>::all(client.clone());
    let status = eventually(
        Duration::from_secs(60),
        "the EC2NodeClass Ready",
        || async {
            kestrel.check_alive()?;
            let class = classes.get("default").await?;
            Ok(class.status.filter(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            }))
        },
    )
    .await
    .with_context(context)?;
    assert_eq!(status.subnets.len(), 2, "{status:?}");
    assert_eq!(status.security_groups.len(), 1, "{status:?}");
    // The instance profile Kestrel made for the role, holding it.
    let profile = status
        .instance_profile
        .clone()
        .context("status.instanceProfile")?;
    assert!(profile.starts_with(&format!("{CLUSTER}_")), "{profile}");
    let roles: Vec<String> = aws_sdk_iam::Client::new(&sdk_config(&env.moto).await)
        .get_instance_profile()
        .instance_profile_name(&profile)
        .send()
        .await?
        .instance_profile
        .map(|p| p.roles.into_iter().map(|r| r.role_name).collect())
        .unwrap_or_default();
    assert_eq!(roles, [NODE_ROLE]);
    assert_eq!(
        status
            .amis
            .iter()
            .map(|a| a.id.as_str())
            .collect::<Vec<_>>(),
        [ami.as_str()]
    );

    let pods = Api::<Pod>::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1")).await?;
    let node = bound(&pods, "web-1", &kestrel, Duration::from_secs(90))
        .await
        .with_context(context)?;
    let instances = claimed_instances(ec2).await?;
    assert_eq!(instances.len(), 1, "one instance for one pod");
    let (instance, _, image) = &instances[0];
    assert_eq!(
        image.as_deref(),
        Some(ami.as_str()),
        "launched from the NodeClass's AMI"
    );
    assert_eq!(instance.node_pool, "default");
    assert_eq!(node, kubelet::node_name(&instance.id));
    // The launch template carries a userData that joins this cluster, with the pool's labels.
    let templates = ec2
        .describe_launch_template_versions()
        .launch_template_id(
            ec2.describe_launch_templates()
                .send()
                .await?
                .launch_templates()
                .first()
                .and_then(|t| t.launch_template_id())
                .context("a launch template")?,
        )
        .send()
        .await?;
    let data = templates
        .launch_template_versions()
        .first()
        .and_then(|v| v.launch_template_data());
    assert_eq!(
        data.and_then(|d| d.iam_instance_profile())
            .and_then(|p| p.name()),
        Some(profile.as_str()),
        "the nodes launch with the role's profile"
    );
    let user_data = data
        .and_then(|d| d.user_data())
        .context("the launch template has userData")?;
    let user_data =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(user_data)?)?;
    for expected in [
        CLUSTER,
        ENDPOINT,
        "10.100.0.0/16",
        "team=web",
        "karpenter.sh/nodepool=default",
    ] {
        assert!(
            user_data.contains(expected),
            "userData without {expected}:\n{user_data}"
        );
    }

    // A spot interruption warning for it: the node drains and the message goes once recorded.
    sqs.send_message()
        .queue_url(url.as_str())
        .message_body(spot_warning(&instance.id))
        .send()
        .await?;
    let nodes = Api::<Node>::all(client.clone());
    eventually(Duration::from_secs(60), "the node cordoned", || async {
        kestrel.check_alive()?;
        let spec = nodes.get(&node).await?.spec.unwrap_or_default();
        let tainted = spec
            .taints
            .unwrap_or_default()
            .iter()
            .any(|t| t.key == "karpenter.sh/disrupted");
        Ok((spec.unschedulable == Some(true) && tainted).then_some(()))
    })
    .await
    .with_context(context)?;
    eventually(Duration::from_secs(60), "the message deleted", || async {
        Ok((queue_depth(sqs, url).await? == 0).then_some(()))
    })
    .await
    .with_context(context)?;
    eventually(
        Duration::from_secs(120),
        "the interrupted instance terminated",
        || async {
            kestrel.check_alive()?;
            let state = claimed_instances(ec2)
                .await?
                .into_iter()
                .find(|(i, _, _)| i.id == instance.id)
                .map(|(_, s, _)| s);
            Ok(matches!(
                state,
                Some(InstanceStateName::ShuttingDown | InstanceStateName::Terminated)
            )
            .then_some(()))
        },
    )
    .await
    .with_context(context)?;
    eventually(Duration::from_secs(30), "the Node gone", || async {
        Ok(nodes.get_opt(&node).await?.is_none().then_some(()))
    })
    .await
    .with_context(context)?;
    // The replacement is empty (the bare pod is gone with its eviction): consolidation removes it.
    let consolidated = std::time::Instant::now();
    eventually(
        Duration::from_secs(120),
        "the empty replacement consolidated",
        || async {
            kestrel.check_alive()?;
            let live = claimed_instances(ec2)
                .await?
                .into_iter()
                .filter(|(_, s, _)| {
                    !matches!(
                        s,
                        InstanceStateName::ShuttingDown | InstanceStateName::Terminated
                    )
                })
                .count();
            let claims = Api::<kestrel_core::api::NodeClaim>::all(client.clone())
                .list(&Default::default())
                .await?
                .items
                .len();
            Ok((live == 0 && claims == 0).then_some(()))
        },
    )
    .await
    .with_context(context)?;
    eprintln!(
        "the empty replacement was consolidated {:.1} s after the interrupted node went",
        consolidated.elapsed().as_secs_f64()
    );
    // What happened, as Prometheus scrapes it (the names docs/metrics.md documents). The last
    // termination's answer may still be on its way when EC2 already shows it: scraped until it is in.
    let expected = [
        "karpenter_nodeclaims_created_total{nodepool=\"default\"} 2",
        "karpenter_nodeclaims_terminated_total{nodepool=\"default\"} 2",
        "karpenter_interruption_received_messages_total{message_type=\"spot_interrupted\"} 1",
        "karpenter_interruption_deleted_messages_total 1",
        "karpenter_nodeclaims_disrupted_total{nodepool=\"default\",reason=\"spot-interruption\"} 1",
        // The spot warning's wait in the queue, from moto's SentTimestamp.
        "karpenter_interruption_message_queue_duration_seconds_count 1",
        "kestrel_cloudprovider_calls_total{method=\"create\",outcome=\"ok\"} 2",
        "kestrel_interruption_queue_available 1",
        "kestrel_leader 1",
    ];
    let mut text = String::new();
    let complete = eventually(Duration::from_secs(10), "the metrics", || {
        let scraped = scrape(metrics_port);
        let done = scraped.as_ref().is_ok_and(|t| {
            expected
                .iter()
                .all(|series| t.lines().any(|l| l == *series))
        });
        if let Ok(t) = scraped {
            text = t;
        }
        async move { Ok(done.then_some(())) }
    })
    .await;
    if complete.is_err() {
        let missing: Vec<&&str> = expected
            .iter()
            .filter(|series| !text.lines().any(|l| l == **series))
            .collect();
        panic!("/metrics lacks {missing:?}:\n{text}");
    }
    kestrel.check_alive()?;
    kubelet.abort();
    drop(kestrel);
    drop(env);
    Ok(())
}

/// `GET /metrics`: the body of a 200 answer.
fn scrape(port: u16) -> Result<String> {
    let (status, body) = kestrel_kube_tests::binary::http_get(port, "/metrics")?;
    anyhow::ensure!(status == 200, "GET /metrics: {status} {body}");
    Ok(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kestrel_run_on_aws_falls_through_offerings_without_capacity() -> Result<()> {
    let env = Env::new("ice").await?;
    // No capacity for the two smallest general-purpose types, in any zone (moto's fault layer
    // reports them in CreateFleet's Errors[], as EC2 does).
    let out = ["c5.large", "m5.large"];
    env.moto.arm(serde_json::json!({
        "ice": out.iter().map(|t| serde_json::json!({"instance_type": t})).collect::<Vec<_>>()
    }))?;
    let kestrel = env.kestrel()?;
    let kubelet = spawn_kubelet(env.client.clone(), env.ec2.clone())?;
    let pods = Api::<Pod>::namespaced(env.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1")).await?;
    bound(&pods, "web-1", &kestrel, Duration::from_secs(90))
        .await
        .with_context(|| format!("log: {}", env.log.display()))?;
    let instances = claimed_instances(&env.ec2).await?;
    assert_eq!(instances.len(), 1);
    let launched = &instances[0].0.offering.instance_type;
    assert!(
        !out.contains(&launched.as_str()),
        "launched {launched}, which has no capacity"
    );
    // The refused offerings were in the request, ahead of the one that launched.
    let request = env.moto.last_request("CreateFleet")?;
    let asked: Vec<&String> = request
        .iter()
        .filter(|(k, _)| k.ends_with(".InstanceType"))
        .map(|(_, v)| v)
        .collect();
    assert!(
        out.iter().all(|t| asked.iter().any(|a| a.as_str() == *t)),
        "the ICE'd types were not asked for: {asked:?}"
    );
    kubelet.abort();
    drop(kestrel);
    drop(env);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kestrel_run_on_aws_killed_after_create_fleet_resumes_without_a_second_instance()
-> Result<()> {
    let env = Env::new("kill").await?;
    let first = env.kestrel()?;
    let pods = Api::<Pod>::namespaced(env.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1")).await?;
    // SIGKILL as soon as EC2 has the instance: no Node yet (no kubelet), the claim's record may or
    // may not have heard of it.
    eventually(Duration::from_secs(90), "the instance launched", || async {
        first.check_alive()?;
        Ok((!claimed_instances(&env.ec2).await?.is_empty()).then_some(()))
    })
    .await
    .with_context(|| format!("log: {}", env.log.display()))?;
    drop(first);
    let claims = Api::<kestrel_core::api::NodeClaim>::all(env.client.clone());
    let before: Vec<String> = claims
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(before.len(), 1, "{before:?}");

    // The restarted process decides before any Node registers (longer than the batch window): only
    // its recovery (the record, the instance found by its claim tag) keeps it from a second launch.
    let second = env.kestrel()?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let kubelet = spawn_kubelet(env.client.clone(), env.ec2.clone())?;
    bound(&pods, "web-1", &second, Duration::from_secs(90))
        .await
        .with_context(|| format!("log: {}", env.log.display()))?;
    let instances = claimed_instances(&env.ec2).await?;
    assert_eq!(
        instances.len(),
        1,
        "a second instance: {:?}",
        instances.iter().map(|(i, _, _)| &i.id).collect::<Vec<_>>()
    );
    assert_eq!(instances[0].0.claim, before[0]);
    let after: Vec<String> = claims
        .list(&Default::default())
        .await?
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(after, before, "the restarted process made another claim");
    kubelet.abort();
    drop(second);
    drop(env);
    Ok(())
}

/// Whether a process's log has a line saying `message` (the text format: `… module: message …`).
fn logged(log: &Path, message: &str) -> Result<bool> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let needle = format!(": {message}");
    Ok(text.lines().any(|l| l.contains(&needle)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kestrel_run_on_aws_leader_killed_mid_launch_the_standby_finishes_it() -> Result<()> {
    let env = Env::new("failover").await?;
    let (log_a, log_b) = (
        env.log.with_file_name("leader.log"),
        env.log.with_file_name("standby.log"),
    );
    let leader = kestrel_run(&env.cluster, &env.moto, &log_a, 0, "kestrel-a")?;
    eventually(Duration::from_secs(60), "kestrel-a leading", || async {
        leader.check_alive()?;
        Ok(logged(&log_a, "leading")?.then_some(()))
    })
    .await
    .with_context(|| format!("log: {}", log_a.display()))?;
    let standby = kestrel_run(&env.cluster, &env.moto, &log_b, 0, "kestrel-b")?;
    eventually(Duration::from_secs(60), "kestrel-b standing by", || async {
        standby.check_alive()?;
        Ok(logged(&log_b, "waiting for the leader lease")?.then_some(()))
    })
    .await
    .with_context(|| format!("log: {}", log_b.display()))?;
    // The kubelet runs throughout: the Node registers, but only a leader makes it the claim's.
    let kubelet = spawn_kubelet(env.client.clone(), env.ec2.clone())?;
    let pods = Api::<Pod>::namespaced(env.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1")).await?;
    eventually(Duration::from_secs(90), "the instance launched", || async {
        leader.check_alive()?;
        Ok((!claimed_instances(&env.ec2).await?.is_empty()).then_some(()))
    })
    .await
    .with_context(|| format!("log: {}", log_a.display()))?;
    drop(leader); // SIGKILL: the lease is not released, it runs out.
    let killed = std::time::Instant::now();
    eventually(Duration::from_secs(60), "kestrel-b leading", || async {
        standby.check_alive()?;
        Ok(logged(&log_b, "leading")?.then_some(()))
    })
    .await
    .with_context(|| format!("log: {}", log_b.display()))?;
    let took_over = killed.elapsed();
    bound(&pods, "web-1", &standby, Duration::from_secs(60))
        .await
        .with_context(|| format!("log: {}", log_b.display()))?;
    let bound = killed.elapsed();
    eprintln!(
        "failover: the standby led {:.1} s after the leader was SIGKILLed (lease 15 s), web-1 bound after {:.1} s",
        took_over.as_secs_f64(),
        bound.as_secs_f64()
    );
    let instances = claimed_instances(&env.ec2).await?;
    assert_eq!(
        instances.len(),
        1,
        "a second instance: {:?}",
        instances.iter().map(|(i, _, _)| &i.id).collect::<Vec<_>>()
    );
    let claims = Api::<kestrel_core::api::NodeClaim>::all(env.client.clone())
        .list(&Default::default())
        .await?
        .items;
    assert_eq!(claims.len(), 1, "one claim");
    assert_eq!(
        claims[0].metadata.name.as_deref(),
        Some(instances[0].0.claim.as_str())
    );
    kubelet.abort();
    drop(standby);
    drop(env);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kestrel_run_on_aws_deleting_a_node_class_waits_for_its_claims_then_deletes_its_instance_profile()
-> Result<()> {
    let env = Env::new("class-deletion").await?;
    let kestrel = env.kestrel()?;
    let kubelet = spawn_kubelet(env.client.clone(), env.ec2.clone())?;
    let context = || format!("log: {}", env.log.display());
    let classes = Api::<EC2NodeClass>::all(env.client.clone());
    let iam = aws_sdk_iam::Client::new(&sdk_config(&env.moto).await);
    // Ready, with its profile and Karpenter's finalizer.
    let profile = finalized_with_profile(&classes, &kestrel)
        .await
        .with_context(context)?;
    let pods = Api::<Pod>::namespaced(env.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("web-1")).await?;
    bound(&pods, "web-1", &kestrel, Duration::from_secs(90))
        .await
        .with_context(context)?;
    let claims = Api::<kestrel_core::api::NodeClaim>::all(env.client.clone());
    let claim = claims
        .list(&Default::default())
        .await?
        .items
        .first()
        .map(kube::ResourceExt::name_any)
        .context("a NodeClaim")?;

    // Deleted while a NodeClaim names it: it stays, says what it waits for, keeps its profile.
    classes.delete("default", &Default::default()).await?;
    let events =
        Api::<k8s_openapi::api::core::v1::Event>::namespaced(env.client.clone(), "default");
    let message = eventually(Duration::from_secs(30), "the waiting Event", || async {
        kestrel.check_alive()?;
        Ok(events
            .list(&Default::default())
            .await?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("WaitingOnNodeClaimTermination"))
            .and_then(|e| e.message))
    })
    .await
    .with_context(context)?;
    assert!(message.contains(&claim), "{message}");
    let class = classes.get("default").await?;
    assert!(class.metadata.deletion_timestamp.is_some());
    iam.get_instance_profile()
        .instance_profile_name(&profile)
        .send()
        .await
        .context("the profile stays while a claim names the class")?;

    // The claim goes (its instance terminated), then the class and its profile.
    claims.delete(&claim, &Default::default()).await?;
    eventually(Duration::from_secs(120), "the class gone", || async {
        kestrel.check_alive()?;
        Ok(classes.get_opt("default").await?.is_none().then_some(()))
    })
    .await
    .with_context(context)?;
    let gone = iam
        .get_instance_profile()
        .instance_profile_name(&profile)
        .send()
        .await
        .err()
        .and_then(|e| aws_sdk_iam::error::ProvideErrorMetadata::code(&e).map(str::to_string));
    assert_eq!(
        gone.as_deref(),
        Some("NoSuchEntity"),
        "the profile is deleted"
    );
    assert!(
        claimed_instances(&env.ec2)
            .await?
            .iter()
            .all(|(_, s, _)| matches!(
                s,
                InstanceStateName::ShuttingDown | InstanceStateName::Terminated
            )),
        "no instance left running"
    );
    // The role itself is the user's: it stays.
    iam.get_role().role_name(NODE_ROLE).send().await?;
    kestrel.check_alive()?;
    kubelet.abort();
    drop(kestrel);
    drop(env);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kestrel_run_on_aws_a_standby_writes_nothing_for_node_classes_until_it_leads() -> Result<()>
{
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    let env = Env::new("standby").await?;
    let context = || format!("log: {}", env.log.display());
    // Another replica holds the lease and keeps renewing it.
    let leases = Api::<Lease>::namespaced(env.client.clone(), "default");
    let held = |renewed: k8s_openapi::jiff::Timestamp| -> Result<Lease> {
        Ok(serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kestrel-leader-election", "namespace": "default"},
            "spec": {"holderIdentity": "another-replica", "leaseDurationSeconds": 15,
                     "acquireTime": MicroTime(renewed), "renewTime": MicroTime(renewed)}
        }))?)
    };
    leases
        .create(
            &PostParams::default(),
            &held(k8s_openapi::jiff::Timestamp::now())?,
        )
        .await?;
    let renewing = tokio::spawn({
        let leases = leases.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let renewed = MicroTime(k8s_openapi::jiff::Timestamp::now());
                let patch = serde_json::json!({"spec": {"renewTime": renewed}});
                if let Err(err) = leases
                    .patch(
                        "kestrel-leader-election",
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(patch),
                    )
                    .await
                {
                    eprintln!("renewing the other replica's lease: {err}");
                }
            }
        }
    });
    let kestrel = env.kestrel()?;
    let classes = Api::<EC2NodeClass>::all(env.client.clone());
    let iam = aws_sdk_iam::Client::new(&sdk_config(&env.moto).await);
    // Five resolution intervals as a standby: the class resolved and bound, but nothing written.
    eventually(Duration::from_secs(60), "the standby waiting", || async {
        kestrel.check_alive()?;
        Ok(logged(&env.log, "waiting for the leader lease")?.then_some(()))
    })
    .await
    .with_context(context)?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    kestrel.check_alive()?;
    let class = classes.get("default").await?;
    assert_eq!(
        class.metadata.finalizers.unwrap_or_default(),
        Vec::<String>::new(),
        "a standby adds no finalizer ({})",
        context()
    );
    assert!(
        class.status.is_none(),
        "a standby writes no status ({})",
        context()
    );
    let profiles = iam.list_instance_profiles().send().await?;
    assert!(
        profiles.instance_profiles().is_empty(),
        "a standby makes no instance profile: {:?}",
        profiles.instance_profiles()
    );

    // The other replica goes: this one leads and writes at once, not an interval later.
    renewing.abort();
    leases
        .delete("kestrel-leader-election", &Default::default())
        .await?;
    let released = std::time::Instant::now();
    finalized_with_profile(&classes, &kestrel)
        .await
        .with_context(context)?;
    eprintln!(
        "standby: the class written {:.1} s after the other replica's lease was deleted",
        released.elapsed().as_secs_f64()
    );
    assert_eq!(
        iam.list_instance_profiles()
            .send()
            .await?
            .instance_profiles()
            .len(),
        1
    );
    drop(kestrel);
    drop(env);
    Ok(())
}
