//! A NodePool's settings for its policies: where they come from and the JSON text a policy receives.
//!
//! Each NodePool may give each of its policies settings with the annotation `kestrel.dev/<kind>-settings`
//! (`kestrel.dev/ranker-settings`, ...), holding JSON or YAML. The host parses the text (YAML is a
//! superset of JSON) and hands the policy canonical JSON through `validate-settings`, so that a policy
//! needs only a JSON parser; `null` means none were given. The policy itself decides what is valid.
use super::PolicyKind;
use super::registry::annotation;
use super::sandbox::NO_SETTINGS;
use std::collections::BTreeMap;

/// Suffix of the settings annotations: `kestrel.dev/ranker-settings`, ...
pub const SETTINGS_SUFFIX: &str = "-settings";

/// The annotation holding the settings of the policy of `kind`.
pub fn settings_annotation(kind: PolicyKind) -> String {
    format!("{}{SETTINGS_SUFFIX}", annotation(kind))
}

/// JSON or YAML settings → the canonical JSON text a policy receives. Empty text means none (`null`).
pub fn to_json(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Ok(NO_SETTINGS.into());
    }
    let value: serde_json::Value =
        serde_yaml_ng::from_str(text).map_err(|e| format!("not JSON or YAML: {e}"))?;
    serde_json::to_string(&value).map_err(|e| format!("not representable as JSON: {e}"))
}

/// The settings of each kind from a NodePool's annotations (`null` for a kind without them).
pub fn from_annotations(
    annotations: &BTreeMap<String, String>,
) -> Result<[String; 3], super::PolicyError> {
    let one = |kind: PolicyKind| {
        let key = settings_annotation(kind);
        match annotations.get(&key) {
            None => Ok(NO_SETTINGS.to_string()),
            Some(text) => to_json(text).map_err(|detail| super::PolicyError::Annotation {
                key: key.clone(),
                value: text.clone(),
                detail,
            }),
        }
    };
    Ok([
        one(PolicyKind::Ranker)?,
        one(PolicyKind::Consolidator)?,
        one(PolicyKind::Budgeter)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_become_the_same_json() {
        let yaml = "discounts:\n  m5: 0.3\nfallback: 0\n";
        let json = r#"{"discounts": {"m5": 0.3}, "fallback": 0}"#;
        assert_eq!(to_json(yaml).unwrap(), to_json(json).unwrap());
        assert_eq!(
            to_json(json).unwrap(),
            r#"{"discounts":{"m5":0.3},"fallback":0}"#
        );
        assert_eq!(to_json("  ").unwrap(), "null");
        assert!(
            to_json("a: [1, 2")
                .unwrap_err()
                .starts_with("not JSON or YAML")
        );
    }

    #[test]
    fn annotations_name_the_settings_of_each_kind() {
        let ann: BTreeMap<String, String> = [(
            "kestrel.dev/budgeter-settings".to_string(),
            "freezes: []".to_string(),
        )]
        .into();
        let s = from_annotations(&ann).unwrap();
        assert_eq!(s[PolicyKind::Ranker as usize], "null");
        assert_eq!(s[PolicyKind::Budgeter as usize], r#"{"freezes":[]}"#);
        let bad: BTreeMap<String, String> = [(
            "kestrel.dev/ranker-settings".to_string(),
            "{unclosed".to_string(),
        )]
        .into();
        assert!(matches!(
            from_annotations(&bad),
            Err(super::super::PolicyError::Annotation { key, .. }) if key == "kestrel.dev/ranker-settings"
        ));
    }
}
