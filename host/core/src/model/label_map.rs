//! Reading a node's labels without owning a copy of them: a map, or a small map of its own laid over a
//! map it shares (a NodePool's view of an offering: the pool's, zone's and capacity type's labels over
//! the instance type's). Thousands of offerings per NodePool otherwise each carried ~40 copied labels.
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where label values can be looked up by key.
pub trait LabelLookup {
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelLookup for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<T: LabelLookup + ?Sized> LabelLookup for Arc<T> {
    fn label(&self, key: &str) -> Option<&str> {
        (**self).label(key)
    }
}

/// `own` labels laid over `shared` ones: a key in `own` hides the same key in `shared`.
#[derive(Debug, Clone, PartialEq)]
pub struct LayeredLabels {
    pub own: Arc<BTreeMap<String, String>>,
    pub shared: Arc<BTreeMap<String, String>>,
}

impl LayeredLabels {
    /// Every label, as one map (for the rare reader that needs them all).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut all = (*self.shared).clone();
        all.extend(self.own.iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    }
}

impl LabelLookup for LayeredLabels {
    fn label(&self, key: &str) -> Option<&str> {
        self.own
            .get(key)
            .or_else(|| self.shared.get(key))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> Arc<BTreeMap<String, String>> {
        Arc::new(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn own_labels_hide_shared_ones() {
        let l = LayeredLabels {
            own: map(&[("zone", "b"), ("pool", "p")]),
            shared: map(&[("zone", "a"), ("arch", "amd64")]),
        };
        assert_eq!(l.label("zone"), Some("b"));
        assert_eq!(l.label("arch"), Some("amd64"));
        assert_eq!(l.label("pool"), Some("p"));
        assert_eq!(l.label("missing"), None);
        assert_eq!(
            *map(&[("zone", "b"), ("pool", "p"), ("arch", "amd64")]),
            l.to_map()
        );
    }
}
