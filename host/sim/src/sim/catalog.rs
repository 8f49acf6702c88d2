//! The instance types the simulated region offers: the core's embedded EC2 catalog, narrowed to what a
//! scenario allows, in the controller's compact form.

use std::collections::HashMap;

use crate::controller::InstanceTypeInfo;
use crate::model::catalog::{ec2_instance_types, ec2_on_demand_prices};
use crate::model::{Catalog, InstanceType, Offering};

/// The controller's view of a catalog instance type.
pub fn info_of(t: &InstanceType, on_demand_price: f64) -> InstanceTypeInfo {
    InstanceTypeInfo {
        allocatable: t.allocatable.clone(),
        name: t.name.clone(),
        labels: t.labels.clone(),
        on_demand_price,
    }
}

/// The priced types a scenario allows (names or families; empty = all), sorted by name, as the core's
/// catalog (on-demand offerings in `zones`; spot prices come from the cloud) and in compact form.
pub fn select(
    allowed: &[String],
    zones: &[String],
) -> (Catalog, Vec<InstanceTypeInfo>, HashMap<String, f64>) {
    let types = ec2_instance_types().expect("embedded instance types parse");
    let prices = ec2_on_demand_prices().expect("embedded prices parse");
    let mut chosen: Vec<(&InstanceType, f64)> = types
        .iter()
        .filter_map(|t| Some((t, *prices.get(&t.name)?)))
        .filter(|(t, _)| {
            allowed.is_empty() || {
                let family = t.name.split('.').next().unwrap_or(&t.name);
                allowed.iter().any(|a| a == &t.name || a == family)
            }
        })
        .collect();
    chosen.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    let mut offerings = Vec::new();
    for (i, (_, price)) in chosen.iter().enumerate() {
        for zone in zones {
            offerings.push(Offering {
                instance_type: i,
                zone: zone.clone(),
                capacity_type: crate::model::CapacityType::OnDemand,
                price: *price,
                available: true,
                interruption: 0.0,
                capacity_score: -1.0,
            });
        }
    }
    let catalog = Catalog::new(
        chosen.iter().map(|(t, _)| (*t).clone()).collect(),
        offerings,
    )
    .expect("offerings index the chosen types");
    let infos = chosen.iter().map(|(t, p)| info_of(t, *p)).collect();
    let price_map = chosen.iter().map(|(t, p)| (t.name.clone(), *p)).collect();
    (catalog, infos, price_map)
}
