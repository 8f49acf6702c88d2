//! Bottlerocket: TOML settings. The user's TOML is kept, and the keys the node needs to join are set
//! over it under `settings.kubernetes` (the user's node labels and taints are merged with the
//! claim's, the claim's winning on the same key).

use toml_edit::{Array, DocumentMut, Item, Table, value};

use super::{Bootstrap, UserDataError};

pub fn render(bootstrap: &Bootstrap, user: Option<&str>) -> Result<String, UserDataError> {
    let mut document: DocumentMut = user
        .unwrap_or_default()
        .parse()
        .map_err(|e: toml_edit::TomlError| UserDataError::Toml(e.to_string()))?;
    let kubernetes = table(table(document.as_table_mut(), "settings")?, "kubernetes")?;
    kubernetes["cluster-name"] = value(&bootstrap.cluster_name);
    kubernetes["api-server"] = value(&bootstrap.api_server_endpoint);
    kubernetes["cluster-certificate"] = value(&bootstrap.ca_bundle);
    if !bootstrap.cluster_dns.is_empty() {
        let dns: Array = bootstrap.cluster_dns.iter().map(String::as_str).collect();
        kubernetes["cluster-dns-ip"] = value(dns);
    }
    if let Some(max_pods) = bootstrap.max_pods {
        kubernetes["max-pods"] = value(i64::from(max_pods));
    }
    if !bootstrap.labels.is_empty() {
        let labels = table(kubernetes, "node-labels")?;
        for (k, v) in &bootstrap.labels {
            labels[k.as_str()] = value(v);
        }
    }
    if !bootstrap.taints.is_empty() {
        let taints = table(kubernetes, "node-taints")?;
        for taint in &bootstrap.taints {
            let entry = format!(
                "{}:{}",
                taint.value.as_deref().unwrap_or_default(),
                taint.effect.as_str()
            );
            taints[taint.key.as_str()] = value(Array::from_iter([entry]));
        }
    }
    Ok(document.to_string())
}

/// The table under `key`, created (as a `[section]`) when absent.
fn table<'a>(parent: &'a mut Table, key: &str) -> Result<&'a mut Table, UserDataError> {
    let item = parent.entry(key).or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    item.as_table_mut()
        .ok_or_else(|| UserDataError::NotATable(key.to_string()))
}
