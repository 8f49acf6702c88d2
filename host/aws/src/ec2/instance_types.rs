//! Instance types from DescribeInstanceTypes, with allocatable computed as Karpenter computes it:
//! max pods from the ENI limits (`enis × (IPv4 per ENI − 1) + 2`, or the kubelet's `maxPods`),
//! memory less the VM overhead (7.5 %, and the 64 MiB Graviton keeps), kube-reserved (CPU: 6 % of
//! the first core, 1 % of the second, 0.5 % of the next two, 0.25 % of the rest; memory: 11 MiB per
//! pod + 255 MiB), the `memory.available` 100 Mi hard eviction threshold, and ephemeral storage of
//! the 20 Gi root volume less 1 Gi kube-reserved and the 10 % `nodefs.available` threshold.
//!
//! The well-known labels are computed from the same answer, as Karpenter computes them (category
//! and generation from the name, CPU manufacturer and sustained clock, network and EBS bandwidth,
//! local NVMe, one GPU or accelerator kind); so are the extended resources (GPUs, Neuron devices and
//! cores, EFA interfaces). Only the branch-ENI count (`vpc.amazonaws.com/pod-eni`), which EC2 does
//! not report, comes from the embedded table. The zones each type is offered in come from
//! DescribeInstanceTypeOfferings.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{
    EbsOptimizedSupport, EphemeralNvmeSupport, InstanceTypeInfo, LocationType,
};
use kestrel_core::cloud::CloudError;
use kestrel_core::controller::assemble::DescribedTypes;
use kestrel_core::model::catalog::{self, InstanceType};
use kestrel_core::model::{Quantity, ResourceList, labels};

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

/// Every instance type the region offers, as EC2 describes it (paginated).
pub async fn describe(client: &Client) -> Result<Vec<InstanceTypeInfo>, CloudError> {
    let mut infos = Vec::new();
    let mut pages = client.describe_instance_types().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| cloud_error("DescribeInstanceTypes", &e))?;
        infos.extend(page.instance_types().iter().cloned());
    }
    Ok(infos)
}

/// The zones each instance type is offered in (DescribeInstanceTypeOfferings by zone, paginated).
pub async fn offered_zones(
    client: &Client,
) -> Result<BTreeMap<String, BTreeSet<String>>, CloudError> {
    let mut zones: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pages = client
        .describe_instance_type_offerings()
        .location_type(LocationType::AvailabilityZone)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| cloud_error("DescribeInstanceTypeOfferings", &e))?;
        for offering in page.instance_type_offerings() {
            if let (Some(t), Some(zone)) = (offering.instance_type(), offering.location()) {
                zones
                    .entry(t.as_str().to_string())
                    .or_default()
                    .insert(zone.to_string());
            }
        }
    }
    Ok(zones)
}

/// The region's instance types as the controller plans with them: labels and allocatable computed
/// from DescribeInstanceTypes, offered in the zones DescribeInstanceTypeOfferings lists. A type EC2
/// describes incompletely (no vCPU count, no network facts) is left out.
pub async fn described_types(client: &Client) -> Result<DescribedTypes, CloudError> {
    let infos = describe(client).await?;
    let zones = offered_zones(client).await?;
    let types = infos
        .iter()
        .filter_map(|info| {
            let known = catalog::ec2_instance_type(info.instance_type()?.as_str());
            instance_type(info, known)
        })
        .collect();
    Ok(DescribedTypes { types, zones })
}

/// One described type as the core's catalog holds it. `embedded` (the same type in the embedded
/// table) gives only what EC2 does not report: the branch-ENI count for pods with security groups.
pub fn instance_type(
    info: &InstanceTypeInfo,
    embedded: Option<&InstanceType>,
) -> Option<InstanceType> {
    let facts = TypeFacts::from_sdk(info)?;
    let a = facts.allocatable(None);
    let mut allocatable = ResourceList::new();
    allocatable.set("cpu", Quantity::from_millis(i128::from(a.cpu_millis)));
    allocatable.set("memory", Quantity::from_units(a.memory_mib << 20));
    allocatable.set(
        "ephemeral-storage",
        Quantity::from_units(a.ephemeral_mib << 20),
    );
    allocatable.set("pods", Quantity::from_units(a.pods));
    for (resource, count) in extended_resources(info) {
        allocatable.set(resource, Quantity::from_units(count));
    }
    if let Some(branch_enis) = embedded
        .map(|t| t.allocatable.get(POD_ENI))
        .filter(|q| !q.is_zero())
    {
        allocatable.set(POD_ENI, branch_enis);
    }
    Some(InstanceType {
        name: facts.name.clone(),
        labels: std::sync::Arc::new(well_known_labels(info, &facts)),
        allocatable,
    })
}

const POD_ENI: &str = "vpc.amazonaws.com/pod-eni";

/// Karpenter's label value form: lower case, spaces as dashes (`Radeon Pro V520` → `radeon-pro-v520`).
fn kebab(s: &str) -> String {
    s.to_lowercase().replace(' ', "-")
}

/// Category and generation from a type's name, as Karpenter's `(^[a-z]+)(-[0-9]+tb)?([0-9]+).*\.`
/// reads them: `m5.large` → (`m`, `5`), `u-6tb1.metal` → (`u`, `1`), `c7i-flex.large` → (`c`, `7`).
fn category_and_generation(name: &str) -> Option<(&str, &str)> {
    name.find('.')?;
    let letters = name.find(|c: char| !c.is_ascii_lowercase())?;
    let (category, mut rest) = name.split_at(letters);
    if category.is_empty() {
        return None;
    }
    // A high-memory type's `-6tb` size part sits between the category and the generation.
    if let Some(after) = rest.strip_prefix('-') {
        let digits = after
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(after.len());
        if digits > 0 && after[digits..].starts_with("tb") {
            rest = &after[digits + 2..];
        }
    }
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    (digits > 0).then(|| (category, &rest[..digits]))
}

/// The well-known labels Karpenter gives a node of this type (those that do not depend on the
/// offering: zone, capacity type and region are the offering's).
fn well_known_labels(info: &InstanceTypeInfo, facts: &TypeFacts) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        l.insert(k.to_string(), v);
    };
    let name = facts.name.as_str();
    set(labels::INSTANCE_TYPE, name.to_string());
    set(labels::ARCH, facts.architecture.clone());
    set(labels::OS, "linux".into());
    set(labels::INSTANCE_CPU, facts.vcpus.to_string());
    set(labels::INSTANCE_MEMORY, facts.memory_mib.to_string());
    if let Some((family, size)) = name.split_once('.') {
        set(labels::INSTANCE_FAMILY, family.to_string());
        set(labels::INSTANCE_SIZE, size.to_string());
        set(
            labels::INSTANCE_CAPABILITY_FLEX,
            family.contains("flex").to_string(),
        );
    }
    if let Some((category, generation)) = category_and_generation(name) {
        set(labels::INSTANCE_CATEGORY, category.to_string());
        set(labels::INSTANCE_GENERATION, generation.to_string());
    }
    // Launched with the default tenancy (Karpenter's label for dedicated hosts is the offering's).
    set(labels::INSTANCE_TENANCY, labels::TENANCY_DEFAULT.into());
    // Bare metal has no hypervisor: Karpenter's label is then empty, and the clock speed `0` where
    // EC2 does not say.
    let hypervisor = info.hypervisor().map(|h| h.as_str().to_string());
    set(labels::INSTANCE_HYPERVISOR, hypervisor.unwrap_or_default());
    if let Some(processor) = info.processor_info() {
        if let Some(m) = processor.manufacturer() {
            set(labels::INSTANCE_CPU_MANUFACTURER, kebab(m));
        }
        let ghz = processor.sustained_clock_speed_in_ghz().unwrap_or(0.0);
        set(
            labels::INSTANCE_CPU_SUSTAINED_CLOCK,
            ((ghz * 1000.0).round() as i64).to_string(),
        );
    }
    if let Some(network) = info.network_info() {
        set(
            labels::INSTANCE_ENCRYPTION_IN_TRANSIT,
            network
                .encryption_in_transit_supported()
                .unwrap_or(false)
                .to_string(),
        );
        // The baseline of all network cards together, in Mbit/s (the figures of Karpenter's
        // generated bandwidth table, which sums the cards of a multi-card type).
        let cards: Vec<f64> = network
            .network_cards()
            .iter()
            .filter_map(|c| c.baseline_bandwidth_in_gbps())
            .collect();
        if !cards.is_empty() {
            set(
                labels::INSTANCE_NETWORK_BANDWIDTH,
                ((cards.iter().sum::<f64>() * 1000.0).round() as i64).to_string(),
            );
        }
    }
    if let Some(ebs) = info.ebs_info()
        && ebs.ebs_optimized_support() == Some(&EbsOptimizedSupport::Default)
        && let Some(mbps) = ebs
            .ebs_optimized_info()
            .and_then(|e| e.maximum_bandwidth_in_mbps())
    {
        set(labels::INSTANCE_EBS_BANDWIDTH, mbps.to_string());
    }
    if let Some(storage) = info.instance_storage_info()
        && storage.nvme_support() != Some(&EphemeralNvmeSupport::Unsupported)
        && let Some(gb) = storage.total_size_in_gb()
    {
        set(labels::INSTANCE_LOCAL_NVME, gb.to_string());
    }
    // Karpenter labels a GPU or accelerator only where the type has exactly one kind.
    if let [gpu] = info.gpu_info().map(|g| g.gpus()).unwrap_or_default() {
        set(
            labels::INSTANCE_GPU_NAME,
            kebab(gpu.name().unwrap_or_default()),
        );
        set(
            labels::INSTANCE_GPU_MANUFACTURER,
            kebab(gpu.manufacturer().unwrap_or_default()),
        );
        set(
            labels::INSTANCE_GPU_COUNT,
            gpu.count().unwrap_or(0).to_string(),
        );
        let memory = gpu.memory_info().and_then(|m| m.size_in_mib()).unwrap_or(0);
        set(labels::INSTANCE_GPU_MEMORY, memory.to_string());
    }
    // One accelerator kind: a Neuron device (Inferentia, Trainium: AWS's), else an inference one.
    let neuron = match info.neuron_info().map(|n| n.neuron_devices()) {
        Some([device]) => Some((device.name(), Some("aws"), device.count())),
        _ => None,
    };
    let accelerator =
        neuron.or_else(
            || match info.inference_accelerator_info().map(|a| a.accelerators()) {
                Some([a]) => Some((a.name(), a.manufacturer(), a.count())),
                _ => None,
            },
        );
    if let Some((name, manufacturer, count)) = accelerator {
        set(
            labels::INSTANCE_ACCELERATOR_NAME,
            kebab(name.unwrap_or_default()),
        );
        set(
            labels::INSTANCE_ACCELERATOR_MANUFACTURER,
            kebab(manufacturer.unwrap_or_default()),
        );
        set(
            labels::INSTANCE_ACCELERATOR_COUNT,
            count.unwrap_or(0).to_string(),
        );
    }
    l
}

/// The device-plugin resources a node of this type advertises: NVIDIA and AMD GPUs, Neuron devices
/// and their cores, EFA interfaces.
fn extended_resources(info: &InstanceTypeInfo) -> Vec<(&'static str, i64)> {
    let mut resources = Vec::new();
    for gpu in info.gpu_info().map(|g| g.gpus()).unwrap_or_default() {
        let count = i64::from(gpu.count().unwrap_or(0));
        match gpu.manufacturer().map(str::to_lowercase).as_deref() {
            Some("nvidia") => resources.push(("nvidia.com/gpu", count)),
            Some("amd") => resources.push(("amd.com/gpu", count)),
            _ => {}
        }
    }
    let devices = info
        .neuron_info()
        .map(|n| n.neuron_devices())
        .unwrap_or_default();
    let neurons: i64 = devices
        .iter()
        .map(|d| i64::from(d.count().unwrap_or(0)))
        .sum();
    let cores: i64 = devices
        .iter()
        .map(|d| {
            i64::from(d.count().unwrap_or(0))
                * i64::from(d.core_info().and_then(|c| c.count()).unwrap_or(0))
        })
        .sum();
    if neurons > 0 {
        resources.push(("aws.amazon.com/neuron", neurons));
        resources.push(("aws.amazon.com/neuroncore", cores));
    }
    if let Some(efa) = info
        .network_info()
        .filter(|n| n.efa_supported().unwrap_or(false))
        .and_then(|n| n.efa_info())
        .and_then(|e| e.maximum_efa_interfaces())
    {
        resources.push(("vpc.amazonaws.com/efa", i64::from(efa)));
    }
    resources
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

    #[test]
    fn category_and_generation_are_read_from_the_name_as_karpenter_reads_them() {
        for (name, expected) in [
            ("m5.large", Some(("m", "5"))),
            ("c7i-flex.large", Some(("c", "7"))),
            ("u-6tb1.metal", Some(("u", "1"))),
            ("u7i-12tb.224xlarge", Some(("u", "7"))),
            ("mac2-m2.metal", Some(("mac", "2"))),
            ("x2iedn.xlarge", Some(("x", "2"))),
            ("nogeneration.large", None),
            ("m5", None),
        ] {
            assert_eq!(category_and_generation(name), expected, "{name}");
        }
        assert_eq!(kebab("Radeon Pro V520"), "radeon-pro-v520");
    }
}
