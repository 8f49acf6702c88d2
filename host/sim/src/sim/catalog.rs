//! The instance types the simulated region offers: the core's embedded EC2 catalog, narrowed to what a
//! scenario allows (`controller::assemble::embedded_region`, which `kestrel run` uses too).

use std::collections::HashMap;

use crate::controller::InstanceTypeInfo;
pub use crate::controller::assemble::info_of;
use crate::model::Catalog;

/// The priced types a scenario allows (names or families; empty = all), sorted by name, as the core's
/// catalog (on-demand offerings in `zones`; spot prices come from the cloud) and in compact form.
pub fn select(
    allowed: &[String],
    zones: &[String],
) -> (Catalog, Vec<InstanceTypeInfo>, HashMap<String, f64>) {
    crate::controller::assemble::embedded_region(allowed, zones).expect("embedded catalog parses")
}
