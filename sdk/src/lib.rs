//! The crate Kestrel policy authors depend on.
//!
//! Each policy kind has a module with the generated types of its WIT interface, its `Guest` trait and an
//! export macro. Implement the trait on a unit struct, call the macro under
//! `#[cfg(target_arch = "wasm32")]`, and call the trait's functions from plain `#[test]`s: that is the
//! native test harness (see `docs/policies.md`). Feature `serde` derives `Serialize`/`Deserialize` on the
//! contract types (used by the host's fixture files).
//!
#![doc = include_str!("../README.md")]

/// The contract version this SDK implements; policies report it from `info()`.
pub const CONTRACT: &str = "kestrel:policy@0.2.0";

/// The previous contract version: components built against it keep loading (the host keeps its bindings);
/// they take no settings and give no reasons.
pub const CONTRACT_0_1_0: &str = "kestrel:policy@0.1.0";

/// The longest reason (in bytes) an answer may carry per choice; a longer one makes the answer invalid.
pub const MAX_REASON_BYTES: usize = 200;

/// This crate's version: what `kestrel policy new` writes as the scaffold's dependency.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod ranker {
    #[cfg(not(feature = "serde"))]
    wit_bindgen::generate!({
        path: "wit",
        world: "ranker",
        pub_export_macro: true,
        export_macro_name: "export_ranker",
        default_bindings_module: "kestrel_policy_sdk::ranker",
        additional_derives: [PartialEq],
    });
    #[cfg(feature = "serde")]
    wit_bindgen::generate!({
        path: "wit",
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
        path: "wit",
        world: "consolidator",
        pub_export_macro: true,
        export_macro_name: "export_consolidator",
        default_bindings_module: "kestrel_policy_sdk::consolidator",
        additional_derives: [PartialEq],
    });
    #[cfg(feature = "serde")]
    wit_bindgen::generate!({
        path: "wit",
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
        path: "wit",
        world: "budgeter",
        pub_export_macro: true,
        export_macro_name: "export_budgeter",
        default_bindings_module: "kestrel_policy_sdk::budgeter",
        additional_derives: [PartialEq],
    });
    #[cfg(feature = "serde")]
    wit_bindgen::generate!({
        path: "wit",
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

/// A policy's settings, typed with serde.
///
/// The host hands a policy its NodePool's settings (annotation `kestrel.dev/<kind>-settings`, JSON or
/// YAML) as JSON text through `validate-settings`; `null` means the NodePool gave none. Parse them into
/// your own type, refuse them with a message the NodePool's owner can act on, and keep them for the
/// decisions that follow:
///
/// ```
/// #[derive(serde::Deserialize, Default, Debug, PartialEq)]
/// #[serde(default, deny_unknown_fields)]
/// struct Settings {
///     max_premium_percent: f64,
/// }
///
/// let s: Settings = kestrel_policy_sdk::settings::parse(r#"{"max_premium_percent": 15}"#)?;
/// assert_eq!(s.max_premium_percent, 15.0);
/// // No settings: the type's default.
/// assert_eq!(kestrel_policy_sdk::settings::parse::<Settings>("null")?, Settings::default());
/// // A typo is refused with serde's message.
/// let err = kestrel_policy_sdk::settings::parse::<Settings>(r#"{"max_premium": 15}"#).unwrap_err();
/// assert!(err.contains("unknown field `max_premium`"), "{err}");
/// # Ok::<(), String>(())
/// ```
pub mod settings {
    /// Parses settings JSON into `T`; `null` (no settings given) is `T::default()`.
    pub fn parse<T: serde::de::DeserializeOwned + Default>(json: &str) -> Result<T, String> {
        if json.trim() == "null" {
            return Ok(T::default());
        }
        serde_json::from_str(json).map_err(|e| format!("invalid settings: {e}"))
    }

    /// Parses settings JSON into `T`, refusing `null`: for policies that cannot work without settings.
    pub fn require<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, String> {
        if json.trim() == "null" {
            return Err(
                "this policy needs settings (annotation kestrel.dev/<kind>-settings)".into(),
            );
        }
        serde_json::from_str(json).map_err(|e| format!("invalid settings: {e}"))
    }
}

/// Builds a reason that fits [`MAX_REASON_BYTES`]: longer text is cut at a character boundary, with `…`.
///
/// ```
/// let r = kestrel_policy_sdk::reason(&"x".repeat(500));
/// assert!(r.len() <= kestrel_policy_sdk::MAX_REASON_BYTES);
/// assert!(r.ends_with('…'));
/// assert_eq!(kestrel_policy_sdk::reason("short"), "short");
/// ```
pub fn reason(text: &str) -> String {
    if text.len() <= MAX_REASON_BYTES {
        return text.to_string();
    }
    let ellipsis = '…';
    let mut end = MAX_REASON_BYTES - ellipsis.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &text[..end])
}

/// Typed helpers over the ranker's columnar inputs.
pub mod helpers {
    use crate::ranker::{Catalog, Offerings, PodShape, RankInput};

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
    ///
    /// ```
    /// use kestrel_policy_sdk::helpers::offerings;
    /// use kestrel_policy_sdk::ranker::Offerings;
    ///
    /// let columns = Offerings {
    ///     instance_type: vec![0, 1],
    ///     zone: vec![0, 0],
    ///     capacity_type: vec![kestrel_policy_sdk::capacity_type::ON_DEMAND, kestrel_policy_sdk::capacity_type::SPOT],
    ///     price: vec![0.096, 0.031],
    ///     interruption: vec![0.0, -1.0], // negative: unknown
    ///     capacity_score: vec![-1.0, 0.8],
    ///     pods_per_node: vec![4, 4],
    /// };
    /// let cheapest = offerings(&columns)?
    ///     .min_by(|a, b| a.price.total_cmp(&b.price))
    ///     .unwrap();
    /// assert_eq!(cheapest.index, 1);
    /// assert_eq!(cheapest.interruption, None);
    /// assert_eq!(cheapest.capacity_score, Some(0.8));
    ///
    /// let mut ragged = columns.clone();
    /// ragged.price.pop();
    /// assert!(offerings(&ragged).is_err());
    /// # Ok::<(), String>(())
    /// ```
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

    /// How many distinct values of label `key` the offerings `order` carry (offerings whose instance type
    /// lacks the label count for none).
    pub fn distinct_values(
        catalog: &Catalog,
        offerings: &Offerings,
        order: &[u32],
        key: u32,
    ) -> usize {
        let mut seen: Vec<u32> = order
            .iter()
            .filter_map(|&i| offerings.instance_type.get(i as usize))
            .filter_map(|&it| label_value(catalog, it, key))
            .collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    /// Checks the NodePool's `minValues` on the entries of `order` the host launches from (the first
    /// [`LAUNCH_WINDOW`](crate::LAUNCH_WINDOW)); the error names the first requirement missed.
    pub fn check_min_values(
        catalog: &Catalog,
        input: &RankInput,
        order: &[u32],
    ) -> Result<(), String> {
        let window = &order[..order.len().min(crate::LAUNCH_WINDOW)];
        for mv in &input.min_values {
            let have = distinct_values(catalog, &input.offerings, window, mv.key);
            if have < mv.min as usize {
                let key = catalog
                    .label_keys
                    .get(mv.key as usize)
                    .map_or("?", String::as_str);
                return Err(format!(
                    "minValues of {key}: {have} distinct values in the first {} offerings, {} required",
                    window.len(),
                    mv.min
                ));
            }
        }
        Ok(())
    }

    /// Total requests of a batch of pod shapes: (cpu millis, memory MiB, gpus, pods).
    pub fn batch_totals(pods: &[PodShape]) -> (u64, u64, u64, u64) {
        pods.iter().fold((0, 0, 0, 0), |(c, m, g, n), p| {
            let k = u64::from(p.count);
            (
                c + p.cpu_millis * k,
                m + p.memory_mib * k,
                g + u64::from(p.gpus) * k,
                n + k,
            )
        })
    }

    /// Whether one pod of `shape` fits an empty node of instance type `it` (allocatable capacities).
    pub fn fits(catalog: &Catalog, it: u32, shape: &PodShape) -> bool {
        catalog.instance_types.get(it as usize).is_some_and(|t| {
            t.cpu_millis >= shape.cpu_millis
                && t.memory_mib >= shape.memory_mib
                && t.gpus >= shape.gpus
                && t.pods >= 1
        })
    }

    /// The string value of label `key` on instance type `it`.
    ///
    /// ```
    /// use kestrel_policy_sdk::helpers::label;
    /// use kestrel_policy_sdk::ranker::{Catalog, InstanceType};
    ///
    /// let catalog = Catalog {
    ///     revision: 1,
    ///     label_keys: vec!["kubernetes.io/arch".into()],
    ///     label_values: vec!["amd64".into(), "arm64".into()],
    ///     zones: vec!["us-east-1a".into()],
    ///     instance_types: vec![InstanceType {
    ///         name: "m7g.large".into(),
    ///         cpu_millis: 1930,
    ///         memory_mib: 7134,
    ///         pods: 29,
    ///         gpus: 0,
    ///         labels: vec![(0, 1)], // (key index, value index)
    ///     }],
    /// };
    /// assert_eq!(label(&catalog, 0, "kubernetes.io/arch"), Some("arm64"));
    /// assert_eq!(label(&catalog, 0, "karpenter.k8s.aws/instance-family"), None);
    /// ```
    pub fn label<'c>(catalog: &'c Catalog, it: u32, key: &str) -> Option<&'c str> {
        let k = label_key(catalog, key)?;
        let v = label_value(catalog, it, k)?;
        catalog.label_values.get(v as usize).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use crate::helpers::{label, offerings, offerings_len};
    use crate::ranker::{Catalog, InstanceType, Offerings};

    fn offers() -> Offerings {
        Offerings {
            instance_type: vec![0, 0],
            zone: vec![0, 1],
            capacity_type: vec![0, 1],
            price: vec![0.1, 0.03],
            interruption: vec![0.0, -1.0],
            capacity_score: vec![-1.0, 0.7],
            pods_per_node: vec![2, 2],
        }
    }

    #[test]
    fn offerings_are_read_across_columns() {
        let o = offers();
        let all: Vec<_> = offerings(&o).unwrap().collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].price, 0.03);
        assert_eq!(all[1].interruption, None);
        assert_eq!(all[1].capacity_score, Some(0.7));
        let mut bad = offers();
        bad.zone.pop();
        assert!(offerings_len(&bad).unwrap_err().contains("zone"));
    }

    #[test]
    fn labels_are_looked_up_by_name() {
        let c = Catalog {
            revision: 1,
            label_keys: vec!["kubernetes.io/arch".into()],
            label_values: vec!["amd64".into(), "arm64".into()],
            zones: vec![],
            instance_types: vec![InstanceType {
                name: "m6g.large".into(),
                cpu_millis: 2000,
                memory_mib: 8192,
                pods: 29,
                gpus: 0,
                labels: vec![(0, 1)],
            }],
        };
        assert_eq!(label(&c, 0, "kubernetes.io/arch"), Some("arm64"));
        assert_eq!(label(&c, 0, "missing"), None);
        assert_eq!(label(&c, 9, "kubernetes.io/arch"), None);
        let shape = crate::ranker::PodShape {
            count: 3,
            cpu_millis: 500,
            memory_mib: 1024,
            gpus: 0,
        };
        assert!(crate::helpers::fits(&c, 0, &shape));
        assert!(!crate::helpers::fits(
            &c,
            0,
            &crate::ranker::PodShape {
                cpu_millis: 4000,
                ..shape
            }
        ));
        assert_eq!(crate::helpers::batch_totals(&[shape]), (1500, 3072, 0, 3));
        let input = crate::ranker::RankInput {
            node_pool: "p".into(),
            now: 0,
            seed: 0,
            pods: vec![],
            offerings: Offerings {
                instance_type: vec![0],
                zone: vec![0],
                capacity_type: vec![0],
                price: vec![0.1],
                interruption: vec![0.0],
                capacity_score: vec![-1.0],
                pods_per_node: vec![1],
            },
            min_values: vec![crate::ranker::MinValues { key: 0, min: 2 }],
        };
        let err = crate::helpers::check_min_values(&c, &input, &[0]).unwrap_err();
        assert!(err.contains("kubernetes.io/arch: 1 distinct"), "{err}");
    }
}
