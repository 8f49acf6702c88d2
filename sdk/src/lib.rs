//! The crate Kestrel policy authors depend on.
//!
//! Each policy kind has a module with the generated types of its WIT interface and an export macro.

/// The contract version this SDK implements; policies report it from `info()`.
pub const CONTRACT: &str = "kestrel:policy@0.1.0";

pub mod ranker {
    wit_bindgen::generate!({
        path: "../wit",
        world: "ranker",
        pub_export_macro: true,
        export_macro_name: "export_ranker",
        default_bindings_module: "kestrel_policy_sdk::ranker",
    });
    pub use exports::kestrel::policy::ranking::*;
}

pub mod consolidator {
    wit_bindgen::generate!({
        path: "../wit",
        world: "consolidator",
        pub_export_macro: true,
        export_macro_name: "export_consolidator",
        default_bindings_module: "kestrel_policy_sdk::consolidator",
    });
    pub use exports::kestrel::policy::consolidation::*;
}

pub mod budgeter {
    wit_bindgen::generate!({
        path: "../wit",
        world: "budgeter",
        pub_export_macro: true,
        export_macro_name: "export_budgeter",
        default_bindings_module: "kestrel_policy_sdk::budgeter",
    });
    pub use exports::kestrel::policy::budgeting::*;
}
