//! The message reader against real-shaped EventBridge payloads (`../testdata`).

use super::*;

fn fixture(name: &str) -> &'static str {
    match name {
        "spot" => include_str!("../testdata/spot-interruption-warning.json"),
        "rebalance" => include_str!("../testdata/rebalance-recommendation.json"),
        "pending" => include_str!("../testdata/state-change-pending.json"),
        "running" => include_str!("../testdata/state-change-running.json"),
        "stopping" => include_str!("../testdata/state-change-stopping.json"),
        "stopped" => include_str!("../testdata/state-change-stopped.json"),
        "shutting-down" => include_str!("../testdata/state-change-shutting-down.json"),
        "terminated" => include_str!("../testdata/state-change-terminated.json"),
        "health" => include_str!("../testdata/health-scheduled-change.json"),
        "health-rds" => include_str!("../testdata/health-other-service.json"),
        "reservation" => include_str!("../testdata/capacity-reservation-interruption.json"),
        other => panic!("no fixture {other}"),
    }
}

fn ms(rfc3339: &str) -> Millis {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .expect("test time")
        .timestamp_millis()
}

const INSTANCE: &str = "i-0abc1234def567890";

#[test]
fn a_spot_warning_reclaims_two_minutes_after_its_time() {
    let m = parse_message("m-1", fixture("spot")).unwrap();
    assert_eq!(m.kind, EventKind::SpotInterruptionWarning);
    assert_eq!(
        m.event_id.as_deref(),
        Some("7a1c4e2b-5d0f-4b8e-9c6a-1f2e3d4c5b6a")
    );
    assert_eq!(
        m.notices,
        vec![Notice {
            instance_id: INSTANCE.into(),
            kind: NoticeKind::SpotInterruptionWarning {
                terminate_at: ms("2026-03-02T10:17:00Z"),
            },
            ack: Some("m-1".into()),
        }]
    );
    assert_eq!(m.ignored, None);
}

#[test]
fn a_rebalance_recommendation_names_its_instance() {
    let m = parse_message("m-2", fixture("rebalance")).unwrap();
    assert_eq!(m.kind, EventKind::RebalanceRecommendation);
    assert_eq!(m.notices.len(), 1);
    assert_eq!(m.notices[0].instance_id, INSTANCE);
    assert_eq!(m.notices[0].kind, NoticeKind::RebalanceRecommendation);
}

#[test]
fn state_changes_are_read_by_their_state() {
    for (fixture_name, state) in [
        ("stopping", StateChange::Stopping),
        ("stopped", StateChange::Stopped),
        ("shutting-down", StateChange::ShuttingDown),
        ("terminated", StateChange::Terminated),
    ] {
        let m = parse_message("m-3", fixture(fixture_name)).unwrap();
        assert_eq!(m.kind, EventKind::StateChange);
        assert_eq!(
            m.notices,
            vec![Notice {
                instance_id: INSTANCE.into(),
                kind: NoticeKind::StateChange { state },
                ack: Some("m-3".into()),
            }],
            "{fixture_name}"
        );
    }
    // An instance starting up needs nothing: read, and ignored (not an error, so it is deleted).
    for fixture_name in ["pending", "running"] {
        let m = parse_message("m-4", fixture(fixture_name)).unwrap();
        assert!(m.notices.is_empty(), "{fixture_name}");
        assert!(m.ignored.is_some(), "{fixture_name}");
    }
}

#[test]
fn a_health_scheduled_change_affects_every_entity_from_its_start_time() {
    let m = parse_message("m-5", fixture("health")).unwrap();
    assert_eq!(m.kind, EventKind::ScheduledChange);
    let at = ms("2026-03-16T08:00:00Z");
    let ids: Vec<&str> = m.notices.iter().map(|n| n.instance_id.as_str()).collect();
    assert_eq!(ids, [INSTANCE, "i-0fed9876cba543210"]);
    assert!(
        m.notices
            .iter()
            .all(|n| n.kind == NoticeKind::ScheduledChange { at })
    );
    // Another service's maintenance is not ours to act on.
    let rds = parse_message("m-6", fixture("health-rds")).unwrap();
    assert!(rds.notices.is_empty());
    assert!(rds.ignored.is_some());
}

#[test]
fn a_capacity_reservation_interruption_reclaims_two_minutes_after_its_time() {
    let m = parse_message("m-7", fixture("reservation")).unwrap();
    assert_eq!(m.kind, EventKind::CapacityReservationInterruption);
    assert_eq!(
        m.notices[0].kind,
        NoticeKind::CapacityReservationInterruption {
            terminate_at: ms("2026-03-02T10:32:00Z"),
        }
    );
}

#[test]
fn malformed_and_unknown_messages_are_typed_errors_with_the_message_id() {
    type Expect = fn(&ParseErrorKind) -> bool;
    let cases: Vec<(String, Expect)> = vec![
        ("not json".into(), |k| matches!(k, ParseErrorKind::Json(_))),
        (
            fixture("spot").replace("\"detail-type\"", "\"detail_type\""),
            |k| matches!(k, ParseErrorKind::Missing("detail-type")),
        ),
        (fixture("spot").replace("instance-id", "instance"), |k| {
            matches!(k, ParseErrorKind::Missing("detail.instance-id"))
        }),
        (
            fixture("spot").replace("2026-03-02T10:15:00Z", "yesterday"),
            |k| matches!(k, ParseErrorKind::Malformed { field: "time", .. }),
        ),
        (
            fixture("health").replace("Mon, 16 Mar 2026 08:00:00 GMT", "soon"),
            |k| {
                matches!(
                    k,
                    ParseErrorKind::Malformed {
                        field: "detail.startTime",
                        ..
                    }
                )
            },
        ),
        (
            fixture("spot").replace(
                "EC2 Spot Instance Interruption Warning",
                "EC2 Instance Launch Successful",
            ),
            |k| matches!(k, ParseErrorKind::Unsupported { .. }),
        ),
        // The right detail-type from the wrong source is not trusted.
        (fixture("spot").replace("aws.ec2", "my.app"), |k| {
            matches!(k, ParseErrorKind::Unsupported { .. })
        }),
        (
            fixture("stopping").replace("\"state\": \"stopping\"", "\"state\": 3"),
            |k| matches!(k, ParseErrorKind::Missing("detail.state")),
        ),
    ];
    for (body, expected) in cases {
        let e = parse_message("m-bad", &body).expect_err(&body);
        assert_eq!(e.message_id, "m-bad");
        assert!(expected(&e.kind), "{body}: {e}");
        assert!(e.to_string().contains("m-bad"), "{e}");
    }
}
