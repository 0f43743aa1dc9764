//! `trailwatch run` against moto: rule reloads while running, suppression roll-ups, OCSF
//! findings on a FIFO topic.

mod live;

use live::*;
use serde_json::{json, Value};

fn rule(n: u32, title: &str, event_name: &str) -> String {
    format!(
        "title: {title}\nid: 00000000-0000-4000-8000-{n:012}\nlevel: high\nlogsource: {{product: aws, service: cloudtrail}}\ndetection:\n  sel:\n    eventName: {event_name}\n  condition: sel\n",
    )
}

/// A rule file that changes is reloaded, a broken one is rejected with its reason while the
/// running rules go on, and SIGHUP reloads too.
#[tokio::test(flavor = "multi_thread")]
async fn rules_reload_on_change_and_sighup_and_broken_sets_are_rejected() {
    let Some(url) = moto() else { return };
    let (sqs, sns) = clients(&url);
    let q = queues(&sqs, &sns, &format!("reload-{}", std::process::id())).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("a.yml"), rule(1, "Trail stopped", "StopLogging")).unwrap();
    let log = dir.path().join("log");
    let extra = Extra {
        rules: Some(&rules),
        log: Some(&log),
        ..Extra::default()
    };
    let (service, metrics) = start_with(&url, &q, dir.path(), extra);
    send(
        &sqs,
        &q.events,
        api_event("ev-r1", "cloudtrail", "StopLogging", "u1"),
    )
    .await;
    let first = receive(&sqs, &q.alerts, 1).await;
    assert!(first[0].contains("Trail stopped"), "{first:?}");

    // A broken file: rejected, and the running set still alerts.
    std::fs::write(rules.join("b.yml"), "title: Broken\ndetection: [\n").unwrap();
    let text = metrics_with(
        &metrics,
        &["trailwatch_rule_reloads_total{result=\"rejected\"} 1".to_string()],
    );
    assert!(text.contains("result=\"rejected\"} 1"), "{text}");
    send(
        &sqs,
        &q.events,
        api_event("ev-r2", "cloudtrail", "StopLogging", "u2"),
    )
    .await;
    assert!(receive(&sqs, &q.alerts, 1).await[0].contains("Trail stopped"));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("rule reload rejected") && logged.contains("b.yml"),
        "the reason names the file: {logged}"
    );

    // Fixed: the new rule runs.
    std::fs::write(rules.join("b.yml"), rule(2, "Trail deleted", "DeleteTrail")).unwrap();
    metrics_with(
        &metrics,
        &["trailwatch_rule_reloads_total{result=\"ok\"} 1".to_string()],
    );
    send(
        &sqs,
        &q.events,
        api_event("ev-r3", "cloudtrail", "DeleteTrail", "u3"),
    )
    .await;
    assert!(receive(&sqs, &q.alerts, 1).await[0].contains("Trail deleted"));

    // SIGHUP reloads as well.
    std::process::Command::new("kill")
        .args(["-HUP", &service.0.id().to_string()])
        .status()
        .unwrap();
    let text = metrics_with(
        &metrics,
        &["trailwatch_rule_reloads_total{result=\"ok\"} 2".to_string()],
    );
    assert!(text.contains("result=\"ok\"} 2"), "{text}");
    assert!(text.contains("trailwatch_rules_loaded 2"), "{text}");
    stop_service(service);
}

/// On a FIFO topic alerts arrive as OCSF findings; a principal's repeats within the rule's
/// suppression window come as one finding and a roll-up once event time passes the window.
#[tokio::test(flavor = "multi_thread")]
async fn fifo_topic_gets_ocsf_findings_and_rollups() {
    let Some(url) = moto() else { return };
    let (sqs, sns) = clients(&url);
    let q = queues_with(&sqs, &sns, &format!("fifo-{}", std::process::id()), true).await;
    let dir = tempfile::tempdir().unwrap();
    let extra = Extra {
        alerts: "format = \"ocsf\"\n",
        ..Extra::default()
    };
    let (service, metrics) = start_with(&url, &q, dir.path(), extra);
    for (id, time) in [
        ("ev-f1", "10:00:00"),
        ("ev-f2", "10:20:00"),
        ("ev-f3", "10:40:00"),
    ] {
        let event = api_event_at(
            id,
            "cloudtrail",
            "StopLogging",
            "mallory",
            &format!("2026-11-01T{time}Z"),
        );
        send(&sqs, &q.events, event).await;
    }
    // Two shipped rules see a stopped trail: one finding each.
    let firsts: Vec<Value> = receive(&sqs, &q.alerts, 2)
        .await
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(firsts.len(), 2);
    for f in &firsts {
        assert_eq!(f["class_uid"], 2004, "{f}");
        assert_eq!(f["activity_id"], 1);
        assert_eq!(f["evidences"][0]["api"]["request"]["uid"], "ev-f1");
    }
    metrics_with(
        &metrics,
        &["trailwatch_alerts_suppressed_total 4".to_string()],
    );

    // Event time moves past the hour (and the 5 minute lateness): the windows close.
    let later = api_event_at(
        "ev-f4",
        "s3",
        "ListBuckets",
        "someone",
        "2026-11-01T11:06:00Z",
    );
    send(&sqs, &q.events, later).await;
    let rollups: Vec<Value> = receive(&sqs, &q.alerts, 2)
        .await
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(rollups.len(), 2);
    for r in &rollups {
        assert_eq!(r["activity_id"], 2, "{r}");
        assert_eq!(r["count"], 3);
        let first = firsts
            .iter()
            .find(|f| f["finding_info"]["analytic"]["uid"] == r["finding_info"]["analytic"]["uid"])
            .expect("the roll-up's rule alerted first");
        assert_eq!(
            r["unmapped"]["related_alert_id"],
            first["finding_info"]["uid"]
        );
    }
    assert_eq!(
        json!(one_more_look(&sqs, &q.alerts).await),
        json!([] as [String; 0])
    );
    stop_service(service);
}
