//! The instance types the simulated region offers, from the embedded EC2 data.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::Deserialize;

use crate::cluster::Resources;
use crate::controller::InstanceTypeInfo;
use crate::model::quantity::Quantity;

#[derive(Deserialize)]
struct TypesFile {
    #[serde(rename = "instanceTypes")]
    instance_types: Vec<TypeEntry>,
}

#[derive(Deserialize)]
struct TypeEntry {
    name: String,
    labels: BTreeMap<String, String>,
    allocatable: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct PricesFile {
    #[serde(rename = "onDemand")]
    on_demand: BTreeMap<String, f64>,
}

/// Every instance type with an on-demand price, sorted by name.
pub fn ec2_instance_types() -> &'static [InstanceTypeInfo] {
    static TYPES: OnceLock<Vec<InstanceTypeInfo>> = OnceLock::new();
    TYPES.get_or_init(|| {
        let types: TypesFile =
            serde_json::from_str(include_str!("../../data/ec2-instance-types.json"))
                .expect("embedded instance types parse");
        let prices: PricesFile =
            serde_json::from_str(include_str!("../../data/ec2-on-demand-prices-us-east-1.json"))
                .expect("embedded prices parse");
        let q = |m: &BTreeMap<String, String>, k: &str| {
            m.get(k)
                .and_then(|v| Quantity::parse(v).ok())
                .unwrap_or(Quantity::ZERO)
        };
        let mut out: Vec<InstanceTypeInfo> = types
            .instance_types
            .into_iter()
            .filter_map(|t| {
                let price = *prices.on_demand.get(&t.name)?;
                let a = &t.allocatable;
                Some(InstanceTypeInfo {
                    allocatable: Resources {
                        cpu_millis: q(a, "cpu").millis() as i64,
                        memory_bytes: q(a, "memory").units_ceil() as i64,
                        gpus: (q(a, "nvidia.com/gpu").units_ceil() + q(a, "amd.com/gpu").units_ceil())
                            as i64,
                        pods: q(a, "pods").units_ceil() as i64,
                    },
                    name: t.name,
                    labels: t.labels,
                    on_demand_price: price,
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    })
}

/// The types a scenario allows (names or families; empty = all), and their on-demand prices.
pub fn select(allowed: &[String]) -> (Vec<InstanceTypeInfo>, HashMap<String, f64>) {
    let types: Vec<InstanceTypeInfo> = ec2_instance_types()
        .iter()
        .filter(|t| {
            allowed.is_empty() || {
                let family = t.name.split('.').next().unwrap_or(&t.name);
                allowed.iter().any(|a| a == &t.name || a == family)
            }
        })
        .cloned()
        .collect();
    let prices = types
        .iter()
        .map(|t| (t.name.clone(), t.on_demand_price))
        .collect();
    (types, prices)
}
