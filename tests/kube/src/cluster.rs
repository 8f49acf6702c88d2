//! A real control plane for one test: etcd + kube-apiserver + kube-scheduler on free loopback ports,
//! from the binaries `tests/k8s/build.sh` builds (or reuses from its cache). Stopped on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

const TOKEN: &str = "kestrel-test-admin";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The control-plane binaries' directory (built once per machine, then cached).
fn binaries() -> Result<PathBuf> {
    static ROOT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo_root().join("tests/k8s/build.sh"))
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("running tests/k8s/build.sh: {e}"))?;
        if !out.status.success() {
            return Err(format!("tests/k8s/build.sh failed: {}", out.status));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("bin"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// A loopback port free at the time of asking.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub struct TestCluster {
    dir: PathBuf,
    bin: PathBuf,
    api_port: u16,
    etcd_port: u16,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    scheduler: Option<Child>,
}

impl TestCluster {
    /// Starts etcd, the API server (ready) and the scheduler.
    pub fn start() -> Result<TestCluster> {
        static N: AtomicU32 = AtomicU32::new(0);
        let bin = binaries()?;
        let dir = std::env::temp_dir().join(format!(
            "kestrel-kube-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let status = Command::new("bash")
            .arg(repo_root().join("tests/k8s/pki.sh"))
            .arg(dir.join("pki"))
            .status()
            .context("running tests/k8s/pki.sh")?;
        if !status.success() {
            bail!("tests/k8s/pki.sh failed: {status}");
        }
        let mut cluster = TestCluster {
            api_port: free_port()?,
            etcd_port: free_port()?,
            dir,
            bin,
            etcd: None,
            apiserver: None,
            scheduler: None,
        };
        cluster.start_etcd()?;
        cluster.start_apiserver()?;
        std::fs::write(cluster.kubeconfig_path(), cluster.kubeconfig())?;
        cluster.start_scheduler()?;
        Ok(cluster)
    }

    fn log(&self, name: &str) -> Result<std::fs::File> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{name}.log")))?)
    }

    fn start_etcd(&mut self) -> Result<()> {
        let peer = free_port()?;
        let client_url = format!("http://127.0.0.1:{}", self.etcd_port);
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new(self.bin.join("etcd"))
            .args(["--name", "test", "--data-dir"])
            .arg(self.dir.join("etcd-data"))
            .args([
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .arg(format!("--initial-cluster=test={peer_url}"))
            .arg("--listen-metrics-urls=")
            .stdout(self.log("etcd")?)
            .stderr(self.log("etcd")?)
            .spawn()
            .context("starting etcd")?;
        self.etcd = Some(child);
        Ok(())
    }

    fn start_apiserver(&mut self) -> Result<()> {
        // Every request a ServiceAccount makes is audited (the RBAC tests read which calls of the
        // controller's own account were refused); the test's admin requests are not, to keep it small.
        let audit_policy = self.dir.join("audit-policy.yaml");
        std::fs::write(
            &audit_policy,
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n\
             - level: Metadata\n  userGroups: [\"system:serviceaccounts\"]\n- level: None\n",
        )?;
        let pki = self.dir.join("pki");
        let p = |f: &str| pki.join(f).display().to_string();
        let child = Command::new(self.bin.join("kube-apiserver"))
            .arg(format!(
                "--etcd-servers=http://127.0.0.1:{}",
                self.etcd_port
            ))
            .args([
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--insecure-port=0",
            ])
            .arg(format!("--secure-port={}", self.api_port))
            .arg("--endpoint-reconciler-type=none")
            .arg(format!("--tls-cert-file={}", p("apiserver.crt")))
            .arg(format!("--tls-private-key-file={}", p("apiserver.key")))
            .arg(format!("--client-ca-file={}", p("ca.crt")))
            .arg(format!("--token-auth-file={}", p("tokens.csv")))
            .args(["--anonymous-auth=false", "--authorization-mode=RBAC"])
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg(format!("--service-account-key-file={}", p("sa.pub")))
            .arg(format!(
                "--service-account-signing-key-file={}",
                p("sa.key")
            ))
            .args([
                "--service-cluster-ip-range=10.96.0.0/16",
                "--disable-admission-plugins=ServiceAccount",
            ])
            .arg(format!("--cert-dir={}", self.dir.join("certs").display()))
            .arg(format!("--audit-policy-file={}", audit_policy.display()))
            .arg(format!("--audit-log-path={}", self.audit_log().display()))
            .stdout(self.log("apiserver")?)
            .stderr(self.log("apiserver")?)
            .spawn()
            .context("starting kube-apiserver")?;
        self.apiserver = Some(child);
        self.wait_ready()
    }

    fn start_scheduler(&mut self) -> Result<()> {
        let child = Command::new(self.bin.join("kube-scheduler"))
            .arg(format!("--kubeconfig={}", self.kubeconfig_path().display()))
            .args(["--leader-elect=false", "--port=0", "--secure-port=0"])
            .stdout(self.log("scheduler")?)
            .stderr(self.log("scheduler")?)
            .spawn()
            .context("starting kube-scheduler")?;
        self.scheduler = Some(child);
        Ok(())
    }

    /// Polls `/readyz` (with curl: the harness needs no HTTP client of its own) for up to 60 s.
    fn wait_ready(&mut self) -> Result<()> {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            let ok = Command::new("curl")
                .args(["-sf", "-o", "/dev/null", "--cacert"])
                .arg(self.dir.join("pki/ca.crt"))
                .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
                .arg(format!("https://127.0.0.1:{}/readyz", self.api_port))
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            if let Some(child) = &mut self.apiserver
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "kube-apiserver exited with {status}; see {}",
                    self.dir.join("apiserver.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "kube-apiserver not ready after 60 s; see {}",
            self.dir.join("apiserver.log").display()
        )
    }

    /// Restarts the API server (same etcd): every watch breaks and is re-established.
    pub fn restart_apiserver(&mut self) -> Result<()> {
        stop(&mut self.apiserver);
        self.start_apiserver()
    }

    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    fn kubeconfig(&self) -> String {
        self.kubeconfig_with_token(TOKEN)
    }

    fn kubeconfig_with_token(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"https://127.0.0.1:{}\", certificate-authority: \"{}\"}}\nusers:\n- name: user\n  user: {{token: \"{token}\"}}\ncontexts:\n- name: test\n  context: {{cluster: test, user: user}}\ncurrent-context: test\n",
            self.api_port,
            self.dir.join("pki/ca.crt").display()
        )
    }

    /// A kubeconfig that authenticates with `token` (e.g. a ServiceAccount's, from the TokenRequest
    /// API), written beside the admin's as `kubeconfig-NAME`.
    pub fn kubeconfig_for(&self, name: &str, token: &str) -> Result<PathBuf> {
        let path = self.dir.join(format!("kubeconfig-{name}"));
        std::fs::write(&path, self.kubeconfig_with_token(token))?;
        Ok(path)
    }

    fn audit_log(&self) -> PathBuf {
        self.dir.join("audit.log")
    }

    /// The audit events of every ServiceAccount's requests so far (one JSON object per request).
    pub fn service_account_audit(&self) -> Result<Vec<serde_json::Value>> {
        let text = match std::fs::read_to_string(self.audit_log()) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(err).context("reading the API server's audit log"),
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).context("an audit log line that is not JSON"))
            .collect()
    }

    /// A client for the test's API server, as its admin.
    pub async fn client(&self) -> Result<Client> {
        client_from(&self.kubeconfig_path()).await
    }
}

/// A client from a kubeconfig file of the test's API server.
pub async fn client_from(path: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    kestrel_kube::install_tls_provider();
    Ok(Client::try_from(config)?)
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        // Our own child process, by handle.
        if let Err(err) = c.kill() {
            eprintln!("stopping a test server: {err}");
        }
        if let Err(err) = c.wait() {
            eprintln!("reaping a test server: {err}");
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        stop(&mut self.scheduler);
        stop(&mut self.apiserver);
        stop(&mut self.etcd);
        if std::env::var_os("KESTREL_KEEP_TEST_CLUSTER").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
