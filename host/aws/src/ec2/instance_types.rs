//! Instance types from DescribeInstanceTypes, with allocatable computed as Karpenter computes it:
//! max pods from the ENI limits (`enis × (IPv4 per ENI − 1) + 2`, or the kubelet's `maxPods`),
//! memory less the VM overhead (7.5 %, and the 64 MiB Graviton keeps), kube-reserved (CPU: 6 % of
//! the first core, 1 % of the second, 0.5 % of the next two, 0.25 % of the rest; memory: 11 MiB per
//! pod + 255 MiB), the `memory.available` 100 Mi hard eviction threshold, and ephemeral storage of
//! the 20 Gi root volume less 1 Gi kube-reserved and the 10 % `nodefs.available` threshold.

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::InstanceTypeInfo;
use kestrel_core::cloud::CloudError;

use super::error::cloud_error;

/// What allocatable is computed from, as DescribeInstanceTypes reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeFacts {
    pub name: String,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub enis: i64,
    pub ipv4_per_eni: i64,
    /// `amd64` or `arm64`.
    pub architecture: String,
}

/// What pods may use (CPU in millicores, memory and ephemeral storage in MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocatable {
    pub cpu_millis: i64,
    pub memory_mib: i64,
    pub ephemeral_mib: i64,
    pub pods: i64,
}

/// The VM overhead Karpenter subtracts by default, per mille of the instance memory.
const VM_MEMORY_OVERHEAD_PERMILLE: i64 = 75;
const ROOT_VOLUME_MIB: i64 = 20 * 1024;

impl TypeFacts {
    pub fn from_sdk(info: &InstanceTypeInfo) -> Option<TypeFacts> {
        let network = info.network_info()?;
        let architecture = info
            .processor_info()?
            .supported_architectures()
            .iter()
            .find_map(|a| match a.as_str() {
                "x86_64" => Some("amd64"),
                "arm64" => Some("arm64"),
                _ => None,
            })?;
        Some(TypeFacts {
            name: info.instance_type()?.as_str().to_string(),
            vcpus: i64::from(info.v_cpu_info()?.default_v_cpus()?),
            memory_mib: info.memory_info()?.size_in_mib()?,
            enis: i64::from(network.maximum_network_interfaces()?),
            ipv4_per_eni: i64::from(network.ipv4_addresses_per_interface()?),
            architecture: architecture.to_string(),
        })
    }

    /// ENI-limited max pods (the VPC CNI's formula), unless the kubelet sets `maxPods`.
    pub fn max_pods(&self, kubelet_max_pods: Option<i64>) -> i64 {
        kubelet_max_pods.unwrap_or(self.enis * (self.ipv4_per_eni - 1) + 2)
    }

    pub fn allocatable(&self, kubelet_max_pods: Option<i64>) -> Allocatable {
        let pods = self.max_pods(kubelet_max_pods);
        let memory = if self.architecture == "arm64" {
            self.memory_mib - 64
        } else {
            self.memory_mib
        };
        let overhead = (memory * VM_MEMORY_OVERHEAD_PERMILLE + 999) / 1000;
        let kube_reserved_memory = 11 * pods + 255;
        let eviction_memory = 100;
        Allocatable {
            cpu_millis: self.vcpus * 1000 - kube_reserved_cpu_millis(self.vcpus),
            memory_mib: memory - overhead - kube_reserved_memory - eviction_memory,
            ephemeral_mib: ROOT_VOLUME_MIB - 1024 - ROOT_VOLUME_MIB / 10,
            pods,
        }
    }
}

/// Karpenter's (and EKS's bootstrap) kube-reserved CPU, in millicores (2.5 per core past four).
fn kube_reserved_cpu_millis(vcpus: i64) -> i64 {
    // Tenths of a millicore per core keep the 0.25 % step exact.
    let tenths: i64 = (0..vcpus)
        .map(|core| match core {
            0 => 600,
            1 => 100,
            2 | 3 => 50,
            _ => 25,
        })
        .sum();
    tenths / 10
}

/// Every instance type the region offers (paginated).
pub async fn describe(client: &Client) -> Result<Vec<TypeFacts>, CloudError> {
    let mut facts = Vec::new();
    let mut pages = client.describe_instance_types().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| cloud_error("DescribeInstanceTypes", &e))?;
        facts.extend(page.instance_types().iter().filter_map(TypeFacts::from_sdk));
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn m5_large_matches_karpenters_figures() {
        let m5 = TypeFacts {
            name: "m5.large".into(),
            vcpus: 2,
            memory_mib: 8192,
            enis: 3,
            ipv4_per_eni: 10,
            architecture: "amd64".into(),
        };
        let a = m5.allocatable(None);
        assert_eq!((a.cpu_millis, a.memory_mib, a.pods), (1930, 6903, 29));
        assert_eq!(a.ephemeral_mib, 17 * 1024);
        assert_eq!(kube_reserved_cpu_millis(96), 310);
        assert_eq!(m5.allocatable(Some(110)).pods, 110);
    }
}
