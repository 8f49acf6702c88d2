//! Types shared by NodePool and NodeClaim (`karpenter.sh/v1`) and EC2NodeClass status.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A resource list (`cpu: "4"`, `memory: 16Gi`, `nvidia.com/gpu: 1`) as Kubernetes writes it.
pub type ResourceList = BTreeMap<String, Quantity>;

/// Which node class a NodePool or NodeClaim uses (`group: karpenter.k8s.aws, kind: EC2NodeClass`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeClassReference {
    /// API group of the node class, e.g. `karpenter.k8s.aws`.
    #[schemars(length(min = 1), pattern(r"^[^/]*$"))]
    pub group: String,
    /// Kind of the node class, e.g. `EC2NodeClass`.
    #[schemars(length(min = 1))]
    pub kind: String,
    /// Name of the node class.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// The operator of a node selector requirement: the core's own type, so a manifest's operator is the one
/// the requirements algebra evaluates.
pub use crate::model::requirements::Operator;

/// A node selector requirement with Karpenter's `minValues` (the least number of distinct values of
/// `key` the chosen instance types must span, e.g. at least 5 instance families for spot diversity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelectorRequirementWithMinValues {
    /// The label key the requirement applies to.
    #[schemars(length(max = 316))]
    pub key: String,
    /// How `key` relates to `values`.
    pub operator: Operator,
    /// Values for In/NotIn (one or more), one integer for Gt/Lt, none for Exists/DoesNotExist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// The least number of distinct values of `key` the launch must be able to choose among (1..=50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 50))]
    pub min_values: Option<i64>,
}

/// A plain node selector requirement, as reported in EC2NodeClass status for each AMI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelectorRequirement {
    pub key: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}
