//! A simulated cloud whose state is a JSON file (`kestrel run --cloud simulated --cloud-state FILE`):
//! it outlives the `kestrel run` process, so a controller killed and started again meets the
//! instances its predecessor launched, and a test "kubelet" in another process can boot them into
//! Nodes. It is for trying and testing the controller, not for running a cluster.
//!
//! It keeps EC2's contract where recovery depends on it: a create with a client token (the claim's
//! name) that was seen before answers with the instance the first create launched; a terminate is
//! idempotent; a listing is complete. Every call is one read-modify-write under an exclusive lock
//! on `FILE.lock`, written to a temporary file and renamed, so concurrent processes never see half
//! a state.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use kestrel_core::clock::{Clock, Millis, SystemClock};
use kestrel_core::cloud::{
    CapacityType, CloudApi, CloudCall, CloudError, Instance, InstanceState, LaunchRequest,
    Launched, Listing, Offering, SpotPrice,
};
use serde::{Deserialize, Serialize};

/// One instance as the file holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredInstance {
    pub id: String,
    /// The client token (claim name) it was launched with.
    pub claim: String,
    pub node_pool: String,
    pub instance_type: String,
    pub zone: String,
    pub capacity_type: String,
    pub price: f64,
    pub launched_at: Millis,
    /// `pending`, `running`, `terminated` (the kubelet side marks it running when it boots).
    pub state: String,
}

impl StoredInstance {
    pub fn to_instance(&self) -> Instance {
        Instance {
            id: self.id.clone(),
            claim: self.claim.clone(),
            node_pool: self.node_pool.clone(),
            offering: Offering {
                instance_type: self.instance_type.clone(),
                zone: self.zone.clone(),
                capacity_type: CapacityType::from_label(&self.capacity_type)
                    .unwrap_or(CapacityType::OnDemand),
                price: self.price,
            },
            launched_at: self.launched_at,
            state: match self.state.as_str() {
                "running" => InstanceState::Running,
                "terminated" => InstanceState::Terminated,
                _ => InstanceState::Pending,
            },
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CloudState {
    pub instances: Vec<StoredInstance>,
    /// Every create call, including those answered from the client token (for tests).
    pub creates: u64,
    pub next_id: u64,
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FileCloudError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a cloud state file")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The cloud edge over a state file.
#[derive(Debug, Clone)]
pub struct FileCloud {
    path: PathBuf,
}

impl FileCloud {
    /// Uses `path` (created empty on the first call if absent).
    pub fn new(path: impl Into<PathBuf>) -> FileCloud {
        FileCloud { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the state under the file's lock and writes the result back.
    pub fn update<T>(&self, f: impl FnOnce(&mut CloudState) -> T) -> Result<T, FileCloudError> {
        let io = |source| FileCloudError::Io {
            path: self.path.clone(),
            source,
        };
        let lock_path = self.path.with_extension("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        // Released when `lock` is dropped (closing the file), also if the process dies.
        lock.lock().map_err(io)?;
        let mut state = match std::fs::read(&self.path) {
            Ok(bytes) if bytes.is_empty() => CloudState::default(),
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| FileCloudError::Parse {
                    path: self.path.clone(),
                    source,
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => CloudState::default(),
            Err(e) => return Err(io(e)),
        };
        let out = f(&mut state);
        let tmp = self.path.with_extension("tmp");
        let mut file = File::create(&tmp).map_err(io)?;
        let bytes = serde_json::to_vec_pretty(&state).map_err(|source| FileCloudError::Parse {
            path: self.path.clone(),
            source,
        })?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        Ok(out)
    }

    /// The state as of now.
    pub fn read(&self) -> Result<CloudState, FileCloudError> {
        self.update(|s| s.clone())
    }

    fn create_now(&self, request: &LaunchRequest, now: Millis) -> Result<Launched, CloudError> {
        let unavailable = |e: FileCloudError| CloudError::Api(e.to_string());
        self.update(|state| {
            state.creates += 1;
            // EC2's client token: the same token answers with the instance it launched.
            if let Some(i) = state.instances.iter().find(|i| i.claim == request.claim) {
                return Ok(Launched {
                    instance: i.to_instance(),
                    skipped: Vec::new(),
                });
            }
            let Some(o) = request.offerings.first() else {
                return Err(CloudError::NoOfferings {
                    claim: request.claim.clone(),
                });
            };
            state.next_id += 1;
            let stored = StoredInstance {
                id: format!(
                    "i-{:017x}",
                    (now.max(0) as u64) << 16 | (state.next_id & 0xffff)
                ),
                claim: request.claim.clone(),
                node_pool: request.node_pool.clone(),
                instance_type: o.instance_type.clone(),
                zone: o.zone.clone(),
                capacity_type: o.capacity_type.label().to_string(),
                price: o.price,
                launched_at: now,
                state: "pending".into(),
            };
            let instance = stored.to_instance();
            state.instances.push(stored);
            Ok(Launched {
                instance,
                skipped: Vec::new(),
            })
        })
        .map_err(unavailable)?
    }
}

impl CloudApi for FileCloud {
    fn create<'a>(&'a self, request: &'a LaunchRequest) -> CloudCall<'a, Launched> {
        let out = self.create_now(request, SystemClock.now());
        Box::pin(async move { out })
    }

    fn delete<'a>(&'a self, instance_id: &'a str) -> CloudCall<'a, ()> {
        // Terminating a terminated or unknown instance is done already (idempotent).
        let out = self
            .update(|state| {
                for i in state.instances.iter_mut().filter(|i| i.id == instance_id) {
                    i.state = "terminated".into();
                }
            })
            .map_err(|e| CloudError::Api(e.to_string()));
        Box::pin(async move { out })
    }

    fn list(&self) -> CloudCall<'_, Listing> {
        let out = self
            .read()
            .map(|state| Listing {
                instances: state.instances.iter().map(|i| i.to_instance()).collect(),
                complete: true,
            })
            .map_err(|e| CloudError::Api(e.to_string()));
        Box::pin(async move { out })
    }

    fn spot_prices<'a>(&'a self, _instance_types: &'a [String]) -> CloudCall<'a, Vec<SpotPrice>> {
        // On-demand only: no spot market in this cloud.
        Box::pin(async move { Ok(Vec::new()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(claim: &str) -> LaunchRequest {
        LaunchRequest {
            claim: claim.into(),
            node_pool: "default".into(),
            offerings: vec![Offering {
                instance_type: "m5.large".into(),
                zone: "us-east-1a".into(),
                capacity_type: CapacityType::OnDemand,
                price: 0.096,
            }]
            .into(),
            template: Default::default(),
        }
    }

    #[test]
    fn a_client_token_seen_before_answers_with_the_first_instance_across_handles() {
        let dir = std::env::temp_dir().join(format!(
            "kestrel-file-cloud-{}-{}",
            std::process::id(),
            SystemClock.now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cloud.json");
        let a = FileCloud::new(&path)
            .create_now(&request("c-1"), 10)
            .unwrap();
        // Another process's handle (a restarted controller) on the same file.
        let b = FileCloud::new(&path)
            .create_now(&request("c-1"), 20)
            .unwrap();
        assert_eq!(a.instance.id, b.instance.id);
        let c = FileCloud::new(&path)
            .create_now(&request("c-2"), 30)
            .unwrap();
        assert_ne!(a.instance.id, c.instance.id);
        let state = FileCloud::new(&path).read().unwrap();
        assert_eq!((state.instances.len(), state.creates), (2, 3));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
