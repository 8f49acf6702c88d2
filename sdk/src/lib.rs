//! The crate Kestrel policy authors depend on.
//!
//! Each policy kind has a module with the generated types of its WIT interface, its `Guest` trait and an
//! export macro. Implement the trait on a unit struct, call the macro under
//! `#[cfg(target_arch = "wasm32")]`, and call the trait's functions from plain `#[test]`s: that is the
//! native test harness (see `docs/policies.md`). Feature `serde` derives `Serialize`/`Deserialize` on the
//! contract types (used by the host's fixture files).

/// The contract version this SDK implements; policies report it from `info()`.
pub const CONTRACT: &str = "kestrel:policy@0.1.0";

pub mod ranker {
    #[cfg(not(feature = "serde"))]
    wit_bindgen::generate!({
        path: "../wit",
        world: "ranker",
        pub_export_macro: true,
        export_macro_name: "export_ranker",
        default_bindings_module: "kestrel_policy_sdk::ranker",
        additional_derives: [PartialEq],
    });
    #[cfg(feature = "serde")]
    wit_bindgen::generate!({
        path: "../wit",
        world: "ranker",
        pub_export_macro: true,
        export_macro_name: "export_ranker",
        default_bindings_module: "kestrel_policy_sdk::ranker",
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    });
    pub use exports::kestrel::policy::ranking::*;
}

pub mod consolidator {
    #[cfg(not(feature = "serde"))]
    wit_bindgen::generate!({
        path: "../wit",
        world: "consolidator",
        pub_export_macro: true,
        export_macro_name: "export_consolidator",
        default_bindings_module: "kestrel_policy_sdk::consolidator",
        additional_derives: [PartialEq],
    });
    #[cfg(feature = "serde")]
    wit_bindgen::generate!({
        path: "../wit",
        world: "consolidator",
        pub_export_macro: true,
        export_macro_name: "export_consolidator",
        default_bindings_module: "kestrel_policy_sdk::consolidator",
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    });
    pub use exports::kestrel::policy::consolidation::*;
}

pub mod budgeter {
    #[cfg(not(feature = "serde"))]
    wit_bindgen::generate!({
        path: "../wit",
        world: "budgeter",
        pub_export_macro: true,
        export_macro_name: "export_budgeter",
        default_bindings_module: "kestrel_policy_sdk::budgeter",
        additional_derives: [PartialEq],
    });
    #[cfg(feature = "serde")]
    wit_bindgen::generate!({
        path: "../wit",
        world: "budgeter",
        pub_export_macro: true,
        export_macro_name: "export_budgeter",
        default_bindings_module: "kestrel_policy_sdk::budgeter",
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    });
    pub use exports::kestrel::policy::budgeting::*;
}

/// Capacity-type codes used in `offerings.capacity-type` and `node-info.capacity-type`.
pub mod capacity_type {
    pub const ON_DEMAND: u8 = 0;
    pub const SPOT: u8 = 1;
    pub const RESERVED: u8 = 2;
}

/// How many entries of a ranking the host launches from (like EC2 CreateFleet's 60 overrides): a ranker
/// must make these first entries satisfy the NodePool's `minValues`.
pub const LAUNCH_WINDOW: usize = 60;

/// Typed helpers over the ranker's columnar inputs.
pub mod helpers {
    use crate::ranker::{Catalog, Offerings};

    /// One offering, read across the columns of [`Offerings`].
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Offering {
        pub index: u32,
        pub instance_type: u32,
        pub zone: u32,
        pub capacity_type: u8,
        pub price: f64,
        /// `None` when unknown.
        pub interruption: Option<f32>,
        /// `None` when unknown.
        pub capacity_score: Option<f32>,
        pub pods_per_node: u32,
    }

    /// Checks that every column has the same length; returns it.
    pub fn offerings_len(o: &Offerings) -> Result<usize, String> {
        let n = o.instance_type.len();
        let lens = [
            ("zone", o.zone.len()),
            ("capacity-type", o.capacity_type.len()),
            ("price", o.price.len()),
            ("interruption", o.interruption.len()),
            ("capacity-score", o.capacity_score.len()),
            ("pods-per-node", o.pods_per_node.len()),
        ];
        for (name, len) in lens {
            if len != n {
                return Err(format!(
                    "offerings.{name} has {len} entries, offerings.instance-type has {n}"
                ));
            }
        }
        Ok(n)
    }

    /// The offering at `i` (the caller checked the columns with [`offerings_len`]).
    pub fn offering(o: &Offerings, i: usize) -> Offering {
        let known = |v: f32| (v >= 0.0).then_some(v);
        Offering {
            index: i as u32,
            instance_type: o.instance_type[i],
            zone: o.zone[i],
            capacity_type: o.capacity_type[i],
            price: o.price[i],
            interruption: known(o.interruption[i]),
            capacity_score: known(o.capacity_score[i]),
            pods_per_node: o.pods_per_node[i],
        }
    }

    /// Iterates the offerings (checks the columns first).
    pub fn offerings(o: &Offerings) -> Result<impl Iterator<Item = Offering> + '_, String> {
        let n = offerings_len(o)?;
        Ok((0..n).map(move |i| offering(o, i)))
    }

    /// The value index of label `key` (index into `label-keys`) on instance type `it`, if it has one.
    pub fn label_value(catalog: &Catalog, it: u32, key: u32) -> Option<u32> {
        let ty = catalog.instance_types.get(it as usize)?;
        ty.labels.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// The index of a label key by name, e.g. `"kubernetes.io/arch"`.
    pub fn label_key(catalog: &Catalog, name: &str) -> Option<u32> {
        catalog
            .label_keys
            .iter()
            .position(|k| k == name)
            .map(|i| i as u32)
    }

    /// The string value of label `key` on instance type `it`.
    pub fn label<'c>(catalog: &'c Catalog, it: u32, key: &str) -> Option<&'c str> {
        let k = label_key(catalog, key)?;
        let v = label_value(catalog, it, k)?;
        catalog.label_values.get(v as usize).map(String::as_str)
    }
}
