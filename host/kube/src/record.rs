//! The claim record as the NodeClaim object carries it.
//!
//! The NodeClaim is the durable record: written before the launch and kept for the node's life. What
//! Karpenter's schema has a place for goes there (labels, finalizer, owner, status.providerID); what a
//! restarted controller needs beyond it (the ranked offerings of a launch in flight, the drain under
//! way) is Kestrel's own annotation, so the schema stays Karpenter's.

use kestrel_core::cloud::{CapacityType, Offering};
use kestrel_core::cluster::{ClaimRecord, DrainRecord};
use kestrel_core::controller::Reason;
use serde::{Deserialize, Serialize};

/// The annotation holding the parts of a [`ClaimRecord`] the NodeClaim schema has no field for.
pub const RECORD_ANNOTATION: &str = "kestrel.dev/claim-record";
/// Karpenter's finalizer: the NodeClaim stays until its instance is terminated.
pub const TERMINATION_FINALIZER: &str = "karpenter.sh/termination";
/// Karpenter's label naming a node's NodeClaim.
pub const NODECLAIM_LABEL: &str = "karpenter.sh/nodeclaim";

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("NodeClaim {0} has no {RECORD_ANNOTATION} annotation")]
    Missing(String),
    #[error("NodeClaim {name}: {RECORD_ANNOTATION} does not parse")]
    Parse {
        name: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("NodeClaim {name}: unknown reason {reason:?}")]
    Reason { name: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OfferingJson {
    instance_type: String,
    zone: String,
    capacity_type: CapacityType,
    price: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DrainJson {
    reason: String,
    drain_by: i64,
    #[serde(default)]
    waiting_for: Vec<String>,
    forceful: bool,
    abort_without_replacement: bool,
    #[serde(default)]
    detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordJson {
    created_at: i64,
    reason: String,
    /// The pods (`namespace/name`) it was launched for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    offerings: Vec<OfferingJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offering: Option<OfferingJson>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    drain: Option<DrainJson>,
    /// The NodePool template the claim was made from, exactly (drift compares its hash).
    template: kestrel_core::api::NodeClaimTemplate,
}

/// The reason's kebab-case name (as the decision log prints it).
pub fn reason_name(reason: Reason) -> String {
    match serde_json::to_value(reason) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{reason:?}"),
    }
}

/// A reason by its kebab-case name (every reason the controller writes reads back).
fn parse_reason(name: &str, s: &str) -> Result<Reason, RecordError> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        RecordError::Reason {
            name: name.to_string(),
            reason: s.to_string(),
        }
    })
}

fn offering_json(o: &Offering) -> OfferingJson {
    OfferingJson {
        instance_type: o.instance_type.clone(),
        zone: o.zone.clone(),
        capacity_type: o.capacity_type,
        price: o.price,
    }
}

fn offering(o: OfferingJson) -> Offering {
    Offering {
        instance_type: o.instance_type,
        zone: o.zone,
        capacity_type: o.capacity_type,
        price: o.price,
    }
}

/// The annotation's value for a record.
pub fn encode(record: &ClaimRecord) -> String {
    let json = RecordJson {
        created_at: record.created_at,
        reason: reason_name(record.reason),
        pods: record.pods.iter().map(|p| p.to_string()).collect(),
        offerings: record.offerings.iter().map(offering_json).collect(),
        instance_id: record.instance_id.clone(),
        offering: record.offering.as_ref().map(offering_json),
        drain: record.drain.as_ref().map(|d| DrainJson {
            reason: reason_name(d.reason),
            drain_by: d.drain_by,
            waiting_for: d.waiting_for.clone(),
            forceful: d.forceful,
            abort_without_replacement: d.abort_without_replacement,
            detail: d.detail.clone(),
        }),
        template: (*record.template).clone(),
    };
    serde_json::to_string(&json).expect("a claim record always serializes")
}

/// The record a NodeClaim carries.
pub fn decode(name: &str, node_pool: &str, annotation: &str) -> Result<ClaimRecord, RecordError> {
    let json: RecordJson =
        serde_json::from_str(annotation).map_err(|source| RecordError::Parse {
            name: name.to_string(),
            source,
        })?;
    let drain = match json.drain {
        Some(d) => Some(DrainRecord {
            reason: parse_reason(name, &d.reason)?,
            drain_by: d.drain_by,
            waiting_for: d.waiting_for,
            forceful: d.forceful,
            abort_without_replacement: d.abort_without_replacement,
            detail: d.detail,
        }),
        None => None,
    };
    Ok(ClaimRecord {
        name: name.to_string(),
        node_pool: node_pool.to_string(),
        created_at: json.created_at,
        offerings: json.offerings.into_iter().map(offering).collect(),
        reason: parse_reason(name, &json.reason)?,
        pods: json.pods.into_iter().map(std::sync::Arc::from).collect(),
        instance_id: json.instance_id,
        offering: json.offering.map(offering),
        drain,
        template: std::sync::Arc::new(json.template),
    })
}

/// `aws:///<zone>/<instance id>`, the providerID a node of this instance registers with.
pub fn provider_id(zone: &str, instance_id: &str) -> String {
    format!("aws:///{zone}/{instance_id}")
}

/// The instance id of a providerID (`aws:///us-east-1a/i-0abc` -> `i-0abc`).
pub fn instance_of_provider_id(provider_id: &str) -> Option<&str> {
    let rest = provider_id.strip_prefix("aws:///")?;
    let (_, id) = rest.rsplit_once('/')?;
    id.starts_with("i-").then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_through_the_annotation() {
        let record = ClaimRecord {
            name: "default-00007".into(),
            node_pool: "default".into(),
            created_at: 1_700_000_000_000,
            offerings: vec![Offering {
                instance_type: "m5.large".into(),
                zone: "us-east-1a".into(),
                capacity_type: CapacityType::Spot,
                price: 0.031,
            }]
            .into(),
            reason: Reason::Underutilized,
            pods: vec!["default/web-1".into(), "default/web-2".into()],
            instance_id: Some("i-0abc".into()),
            offering: None,
            drain: Some(DrainRecord {
                reason: Reason::Drifted,
                drain_by: 5,
                waiting_for: vec!["default-00008".into()],
                forceful: false,
                abort_without_replacement: true,
                detail: "drifted".into(),
            }),
            template: Default::default(),
        };
        let back = decode("default-00007", "default", &encode(&record)).expect("decodes");
        assert_eq!(back, record);
        // Every drain reason reads back, the interruption reasons included (a capacity
        // reservation's interruption once did not, and its claim's record would not decode).
        for reason in [
            Reason::SpotInterruption,
            Reason::ScheduledChange,
            Reason::CapacityReservationInterruption,
            Reason::Rebalance,
            Reason::Empty,
            Reason::Expired,
            Reason::InstanceGone,
            Reason::Orphan,
        ] {
            let mut r = record.clone();
            r.reason = reason;
            r.drain.as_mut().unwrap().reason = reason;
            assert_eq!(decode("default-00007", "default", &encode(&r)).unwrap(), r);
        }
        assert!(matches!(
            decode(
                "x",
                "default",
                &encode(&record).replace("drifted\"", "melted\"")
            ),
            Err(RecordError::Reason { .. })
        ));
    }

    #[test]
    fn provider_ids_parse() {
        assert_eq!(
            instance_of_provider_id(&provider_id("us-east-1a", "i-0abc")),
            Some("i-0abc")
        );
        assert_eq!(instance_of_provider_id("kind://docker/x"), None);
    }
}
