//! `karpenter.sh/v1` NodePool: the template for the nodes Kestrel may launch and how they may be disrupted.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::budget::{BudgetNodes, BudgetNodesError, BudgetSchedule, ScheduleError};
use super::common::{NodeClassReference, NodeSelectorRequirementWithMinValues, ResourceList};
use super::duration::{DurationError, parse_duration, parse_nillable_duration};

/// Karpenter's default `expireAfter`: 30 days.
pub const DEFAULT_EXPIRE_AFTER: &str = "720h";
/// Karpenter's default `consolidateAfter`.
pub const DEFAULT_CONSOLIDATE_AFTER: &str = "0s";
/// Karpenter's default budget when a NodePool lists none.
pub const DEFAULT_BUDGET_NODES: &str = "10%";

/// NodePool describes the nodes Kestrel may launch for pending pods and when it may disrupt them.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "karpenter.sh",
    version = "v1",
    kind = "NodePool",
    doc = "NodePool (karpenter.sh/v1): the template for the nodes Kestrel may launch and how they may be disrupted.",
    plural = "nodepools",
    singular = "nodepool",
    shortname = "np",
    shortname = "nps",
    category = "karpenter",
    status = "NodePoolStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"NodeClass","type":"string","jsonPath":".spec.template.spec.nodeClassRef.name"}"#,
    printcolumn = r#"{"name":"Nodes","type":"string","jsonPath":".status.resources.nodes"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Weight","type":"integer","jsonPath":".spec.weight","priority":1}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodePoolSpec {
    /// The NodeClaims this NodePool creates.
    pub template: NodeClaimTemplate,
    /// How and when nodes of this NodePool may be disrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption: Option<Disruption>,
    /// Upper bounds on the total resources of this NodePool's nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceList>,
    /// Priority among NodePools (1..=100, higher first); unset ranks below every weighted pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub weight: Option<i32>,
}

/// The metadata and spec every NodeClaim of a NodePool starts from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeClaimTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    pub spec: NodeClaimTemplateSpec,
}

/// Labels and annotations copied onto each node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The NodeClaim spec of a NodePool's template (a NodeClaim spec without `resources`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeClaimTemplateSpec {
    /// Taints applied to every node; pods must tolerate them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// Taints present at startup that something else (a CNI, an agent) removes; pods need not tolerate them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub startup_taints: Vec<Taint>,
    /// Constraints on the instance types, zones, capacity types, ... a node may have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub requirements: Vec<NodeSelectorRequirementWithMinValues>,
    /// The cloud-provider node class (EC2NodeClass) the nodes use.
    pub node_class_ref: NodeClassReference,
    /// How long a node lives before it is replaced (Go duration or `Never`; default `720h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^(([0-9]+(s|m|h))+|Never)$"))]
    pub expire_after: Option<String>,
    /// How long a draining node waits for its pods before it is forcibly terminated (unset: forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([0-9]+(s|m|h))+$"))]
    pub termination_grace_period: Option<String>,
}

impl NodeClaimTemplateSpec {
    /// `expireAfter` with Karpenter's default (720h); `None` means `Never`.
    pub fn expire_after(&self) -> Result<Option<Duration>, DurationError> {
        parse_nillable_duration(self.expire_after.as_deref().unwrap_or(DEFAULT_EXPIRE_AFTER))
    }

    /// `terminationGracePeriod`; `None` when unset (wait for pods indefinitely).
    pub fn termination_grace_period(&self) -> Result<Option<Duration>, DurationError> {
        self.termination_grace_period
            .as_deref()
            .map(parse_duration)
            .transpose()
    }
}

/// Which nodes consolidation may remove or replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConsolidationPolicy {
    /// Only nodes with no workload pods.
    WhenEmpty,
    /// Empty nodes, and nodes whose pods fit elsewhere or on a cheaper replacement.
    WhenEmptyOrUnderutilized,
}

/// `spec.disruption`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Disruption {
    /// Default `WhenEmptyOrUnderutilized`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consolidation_policy: Option<ConsolidationPolicy>,
    /// How long after the last pod change a node may be consolidated (Go duration or `Never`; default `0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^(([0-9]+(s|m|h))+|Never)$"))]
    pub consolidate_after: Option<String>,
    /// How many nodes may be disrupted at once, and when; default `[{nodes: "10%"}]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 50))]
    pub budgets: Option<Vec<Budget>>,
}

/// Why a node is being disrupted; a budget may apply to some reasons only.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum DisruptionReason {
    Underutilized,
    Empty,
    Drifted,
}

/// One disruption budget: at most `nodes` at once, for `reasons` (all if unset), during the window that
/// `schedule` opens for `duration` (always, if unset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Budget {
    /// A count (`"5"`) or a percentage of the pool's nodes (`"10%"`).
    #[serde(default = "default_budget_nodes")]
    #[schemars(pattern(r"^((100|[0-9]{1,2})%|[0-9]+)$"))]
    pub nodes: String,
    /// Cron schedule in UTC (5 fields or @daily, @hourly, ...); needs `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// How long the window opened by `schedule` lasts (hours and minutes); needs `schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^((([0-9]+(h|m))|([0-9]+h[0-9]+m))(0s)?)$"))]
    pub duration: Option<String>,
    /// The disruption reasons this budget limits; all if unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<DisruptionReason>>,
}

fn default_budget_nodes() -> String {
    DEFAULT_BUDGET_NODES.to_string()
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            nodes: default_budget_nodes(),
            schedule: None,
            duration: None,
            reasons: None,
        }
    }
}

impl Budget {
    pub fn nodes(&self) -> Result<BudgetNodes, BudgetNodesError> {
        BudgetNodes::parse(&self.nodes)
    }

    pub fn schedule(&self) -> Result<Option<BudgetSchedule>, ScheduleError> {
        self.schedule
            .as_deref()
            .map(BudgetSchedule::parse)
            .transpose()
    }

    pub fn duration(&self) -> Result<Option<Duration>, DurationError> {
        self.duration.as_deref().map(parse_duration).transpose()
    }

    /// Whether this budget applies to `reason` (an unset `reasons` applies to all).
    pub fn applies_to(&self, reason: DisruptionReason) -> bool {
        // No reasons, or an empty list, means every reason (Karpenter: `len(Reasons) == 0 || ...`).
        self.reasons
            .as_ref()
            .is_none_or(|r| r.is_empty() || r.contains(&reason))
    }

    /// Whether the budget is in force at `now` (ms since the epoch): always without a schedule.
    /// An unparsable schedule or duration counts as active, the cautious reading (validation
    /// reports it).
    pub fn is_active_at_millis(&self, now: crate::clock::Millis) -> bool {
        match (self.schedule(), self.duration()) {
            (Ok(Some(schedule)), Ok(Some(duration))) => schedule.is_active_at_millis(now, duration),
            (Ok(None), Ok(None)) => true,
            _ => true,
        }
    }
}

impl Disruption {
    pub fn consolidation_policy(&self) -> ConsolidationPolicy {
        self.consolidation_policy
            .unwrap_or(ConsolidationPolicy::WhenEmptyOrUnderutilized)
    }

    /// `consolidateAfter` with Karpenter's default (0s); `None` means `Never`.
    pub fn consolidate_after(&self) -> Result<Option<Duration>, DurationError> {
        parse_nillable_duration(
            self.consolidate_after
                .as_deref()
                .unwrap_or(DEFAULT_CONSOLIDATE_AFTER),
        )
    }

    /// The budgets in force, Karpenter's default (`[{nodes: "10%"}]`) when none are listed.
    pub fn budgets(&self) -> Vec<Budget> {
        match &self.budgets {
            Some(budgets) => budgets.clone(),
            None => vec![Budget::default()],
        }
    }
}

impl NodePoolSpec {
    /// `spec.disruption` with every default filled in by the accessors.
    pub fn disruption(&self) -> Disruption {
        self.disruption.clone().unwrap_or_default()
    }

    pub fn consolidation_policy(&self) -> ConsolidationPolicy {
        self.disruption().consolidation_policy()
    }

    pub fn consolidate_after(&self) -> Result<Option<Duration>, DurationError> {
        self.disruption().consolidate_after()
    }

    pub fn budgets(&self) -> Vec<Budget> {
        self.disruption().budgets()
    }

    pub fn expire_after(&self) -> Result<Option<Duration>, DurationError> {
        self.template.spec.expire_after()
    }

    /// Labels of the template (empty when unset).
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.template
            .metadata
            .as_ref()
            .map(|m| m.labels.clone())
            .unwrap_or_default()
    }
}

/// `status` of a NodePool, written by the controller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodePoolStatus {
    /// Total resources of the pool's nodes (and `nodes`: their count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceList>,
    /// The generation of the node class the pool last observed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_class_observed_generation: Option<i64>,
    /// How many nodes the pool has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}
