//! Why a policy module was refused (loading, pinning, compiling, canary, annotations).
use super::{FallbackKind, PolicyKind};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("sha256 pin mismatch: expected {expected}, the module's digest is {actual}")]
    Sha256Mismatch { expected: String, actual: String },
    #[error(
        "invalid sha256 pin {pin:?}: expected 64 hex digits (optionally prefixed by `sha256:`)"
    )]
    InvalidPin { pin: String },
    #[error(
        "not a wasm component: {detail} (policies are components built with `kestrel policy build`; precompiled modules are never accepted)"
    )]
    NotAComponent { detail: String },
    #[error("compiling the component failed: {detail}")]
    Compile { detail: String },
    #[error(
        "the component does not implement the {kind} world of kestrel:policy@0.2.0 or @0.1.0: {detail}"
    )]
    WrongWorld { kind: PolicyKind, detail: String },
    #[error("the policy was built against contract {reported:?}, this host speaks {expected:?}")]
    ContractMismatch { reported: String, expected: String },
    #[error("canary call of {policy} on the built-in fixture failed ({kind:?}): {detail}")]
    Canary {
        policy: String,
        kind: FallbackKind,
        detail: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The policy refused its settings (its own message), or the settings are not JSON/YAML.
    #[error("settings refused by {policy}: {message}")]
    Settings { policy: String, message: String },
    #[error("annotation {key}={value:?}: {detail}")]
    Annotation {
        key: String,
        value: String,
        detail: String,
    },
    #[error("creating the policy engine failed: {detail}")]
    Engine { detail: String },
}
