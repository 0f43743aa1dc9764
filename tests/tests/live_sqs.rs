//! `trailwatch run` against a real SQS/SNS server (moto, started by scripts/test.sh, which
//! sets MOTO_URL): EventBridge events in, deduplicated minimal alerts out, poison messages left
//! for redrive, a clean shutdown on SIGTERM.

mod live;

use live::*;
use serde_json::json;
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread")]
async fn eventbridge_events_become_minimal_deduplicated_alerts() {
    let Some(url) = moto() else { return };
    let (sqs, sns) = clients(&url);
    let q = queues(&sqs, &sns, &format!("main-{}", std::process::id())).await;
    let stop = envelope(
        "e1",
        json!({"eventID": "ev-stop", "eventTime": "2026-11-01T10:00:00Z", "eventSource": "cloudtrail.amazonaws.com",
               "eventName": "StopLogging", "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.1",
               "recipientAccountId": "111122223333", "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/bob"},
               "requestParameters": {"name": "org-trail", "note": "PHI-999 patient record"}}),
    );
    let root_login = envelope(
        "e2",
        json!({"eventID": "ev-root", "eventTime": "2026-11-01T10:01:00Z", "eventSource": "signin.amazonaws.com",
               "eventName": "ConsoleLogin", "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.2",
               "recipientAccountId": "111122223333", "userIdentity": {"type": "Root", "arn": "arn:aws:iam::111122223333:root"},
               "eventType": "AwsConsoleSignIn", "responseElements": {"ConsoleLogin": "Success"},
               "additionalEventData": {"MFAUsed": "Yes"}}),
    );
    // The StopLogging message arrives twice (redelivery): it must not page twice.
    for body in [stop.clone(), root_login, stop, "{not json".to_string()] {
        sqs.send_message()
            .queue_url(&q.events)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let (service, metrics) = start(&url, &q, dir.path());

    let mut bodies = receive(&sqs, &q.alerts, 4).await;
    // One more look, shorter than the 30 s visibility timeout: a duplicate would be here by now.
    bodies.extend(one_more_look(&sqs, &q.alerts).await);
    let alerts: Vec<serde_json::Value> = bodies
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    let titles: BTreeSet<String> = alerts
        .iter()
        .map(|a| a["rule"]["title"].as_str().unwrap().to_string())
        .collect();
    let ids: BTreeSet<String> = alerts
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(alerts.len(), 4, "{bodies:?}");
    assert_eq!(ids.len(), 4, "no alert id twice");
    let expected: BTreeSet<String> = [
        "CloudTrail Configuration Changed",
        "CloudTrail Logging Stopped or Trail Deleted",
        "Root Console Sign-In",
        "Root User Activity",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(titles, expected);
    for b in &bodies {
        assert!(
            !b.contains("PHI-999") && !b.contains("requestParameters"),
            "free-form fields never leave: {b}"
        );
    }

    let text = metrics_with(
        &metrics,
        &["trailwatch_messages_deleted_total 3".to_string()],
    );
    assert!(
        text.contains("trailwatch_decode_errors_total{kind=\"syntax\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("trailwatch_alerts_published_total 4"),
        "{text}"
    );
    // The redelivered record is recognised by its eventID before it is matched.
    assert!(
        text.contains("trailwatch_events_duplicate_total 1"),
        "{text}"
    );
    assert!(
        text.contains("trailwatch_alerts_deduplicated_total 0"),
        "{text}"
    );
    assert!(http_get(&metrics, "/readyz").starts_with("HTTP/1.1 200"));
    // How long ago the account's region last delivered, by the wall clock (its events carry
    // 2026-11 times: days, not seconds).
    let age = text
        .lines()
        .find(|l| {
            l.starts_with("trailwatch_source_last_event_age_seconds{")
                && l.contains("account=\"111122223333\"")
                && l.contains("region=\"us-east-1\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no source age in {text}"));
    assert!(age > 3600.0, "{age}");

    stop_service(service);
    assert!(
        dir.path().join("state.snap").exists(),
        "state snapshotted at shutdown"
    );
    // The state holds open suppression windows (with bob's alert), sealed: no name in it.
    for file in ["state.snap", "state.alerts"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap();
        assert!(
            bytes.starts_with(b"TRAILWATCH-SEALED"),
            "{file} is not sealed"
        );
        assert!(
            !bytes.windows(8).any(|w| w == b"user/bob"),
            "{file} names bob"
        );
    }

    // The undecodable message was not deleted: it waits for redrive (in flight or visible again).
    let all = aws_sdk_sqs::types::QueueAttributeName::All;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&q.events)
        .attribute_names(all)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let count = |k: aws_sdk_sqs::types::QueueAttributeName| {
        attrs
            .get(&k)
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let left = count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        + count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
    assert_eq!(left, 1, "only the undecodable message remains");
}

/// Poison messages of every kind are counted and left for redrive; the pipeline goes on.
#[tokio::test(flavor = "multi_thread")]
async fn poison_messages_do_not_stop_the_pipeline() {
    let Some(url) = moto() else { return };
    let (sqs, sns) = clients(&url);
    let tag = format!("poison-{}", std::process::id());
    let q = queues(&sqs, &sns, &tag).await;
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let poison = [
        "{not json".to_string(),
        deep,
        "42".to_string(),
        json!({"detail-type": "EC2 Instance State-change Notification", "detail": {"state": "running"}}).to_string(),
    ];
    for body in &poison {
        sqs.send_message()
            .queue_url(&q.events)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let mut mfa: serde_json::Value =
        serde_json::from_str(&api_event("ev-mfa", "iam", "DeactivateMFADevice", "eve")).unwrap();
    mfa["detail"]["requestParameters"] =
        json!({"userName": "eve-patient-name", "serialNumber": "mfa-serial-1"});
    send(&sqs, &q.events, mfa.to_string()).await;
    let dir = tempfile::tempdir().unwrap();
    let (service, metrics) = start(&url, &q, dir.path());
    let bodies = receive(&sqs, &q.alerts, 1).await;
    assert_eq!(
        bodies.len(),
        1,
        "the good message behind the poison still alerts"
    );
    assert!(
        bodies[0].contains("MFA Device Deactivated or Deleted"),
        "{bodies:?}"
    );
    // The rule allow-lists the user as a keyed hash and the serial in clear.
    let alert: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    let fields = &alert["events"][0]["fields"];
    assert_eq!(fields["requestParameters.serialNumber"], "mfa-serial-1");
    assert!(
        fields["requestParameters.userName"]
            .as_str()
            .is_some_and(|h| h.starts_with("hmac-sha256:")),
        "{alert}"
    );
    assert!(!bodies[0].contains("eve-patient-name"), "{alert}");
    let mut needles: Vec<String> = ["syntax", "too_deep", "not_a_record", "not_cloudtrail"]
        .iter()
        .map(|k| format!("trailwatch_decode_errors_total{{kind=\"{k}\"}} 1"))
        .collect();
    needles.push("trailwatch_messages_deleted_total 1".into());

    let text = metrics_with(&metrics, &needles);
    for n in &needles {
        assert!(text.contains(n.as_str()), "{n}: {text}");
    }
    assert!(
        !text.contains("trailwatch_state_snapshots_total 0"),
        "{text}"
    );
    assert!(
        dir.path().join("state.snap").exists(),
        "periodic snapshot on disk while running"
    );
    stop_service(service);
}

/// While SNS is unavailable nothing is deleted from SQS; after recovery every alert arrives
/// and only then is the message deleted.
#[tokio::test(flavor = "multi_thread")]
async fn sns_outage_holds_acknowledgements_until_recovery() {
    let Some(url) = moto() else { return };
    let (sqs, sns) = clients(&url);
    let q = queues(&sqs, &sns, &format!("outage-{}", std::process::id())).await;
    // Up for the start-up check (a topic that does not answer at start stops `run` with exit
    // code 2), down before the first message.
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let proxy = outage_proxy(url.trim_start_matches("http://").to_string(), up.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let sns_extra = format!("endpoint_url = {proxy:?}\n");
    let extra = Extra {
        sns: &sns_extra,
        // Shorter than the outage: without the visibility heartbeat the message would come
        // back to the second poller while the first still holds it.
        sqs: "visibility_timeout_seconds = 2\n",
        ..Extra::default()
    };
    let (service, metrics) = start_with(&url, &q, dir.path(), extra);
    // (start_with gives SQS its endpoint in the file, not in AWS_ENDPOINT_URL, so that the
    // SNS endpoint above is the only one SNS can use.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !http_get(&metrics, "/readyz").starts_with("HTTP/1.1 200")
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    up.store(false, std::sync::atomic::Ordering::SeqCst);
    send(
        &sqs,
        &q.events,
        api_event("ev-outage", "cloudtrail", "StopLogging", "bob"),
    )
    .await;

    // Down: the alert cannot be delivered, so the message must stay.
    let text = metrics_with(&metrics, &["trailwatch_sink_errors_total 2".to_string()]);
    assert!(!text.contains("trailwatch_sink_errors_total 0"), "{text}");
    assert!(
        text.contains("trailwatch_messages_deleted_total 0"),
        "{text}"
    );
    let early = sqs
        .receive_message()
        .queue_url(&q.alerts)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    assert!(
        early.messages.unwrap_or_default().is_empty(),
        "no alert while SNS is down"
    );
    // Stay down for three visibility timeouts.
    let text = metrics_with(
        &metrics,
        &["trailwatch_sqs_visibility_extensions_total 3".to_string()],
    );
    assert!(
        text.contains("trailwatch_messages_received_total 1\n"),
        "held, not redelivered: {text}"
    );

    // Recovered: both alerts arrive, then the message is deleted.
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let bodies = receive(&sqs, &q.alerts, 2).await;
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let text = metrics_with(
        &metrics,
        &["trailwatch_messages_deleted_total 1".to_string()],
    );
    assert!(
        text.contains("trailwatch_messages_deleted_total 1"),
        "{text}"
    );
    assert!(
        text.contains("trailwatch_alerts_published_total 2"),
        "{text}"
    );
    assert!(
        text.contains("trailwatch_messages_received_total 1\n"),
        "{text}"
    );
    stop_service(service);
}

/// A short visibility timeout (kept alive by the heartbeat while a batch is in work), so what a
/// killed instance held comes back within the test's patience.
fn crash_safe() -> Extra<'static> {
    Extra {
        sqs: "visibility_timeout_seconds = 4\n",
        ..Extra::default()
    }
}

/// `kill -9` in the middle of a stream, three times, then a clean run: every expected alert
/// arrives and no alert id arrives twice. The ledger of published alerts survives the crashes;
/// a kill between SNS accepting a batch and the ledger recording it re-publishes that batch on
/// redelivery, which the FIFO topic drops by alert id, as a deployment that must never repeat
/// a page has it. (Nothing is read off the alerts queue before the end: moto, unlike AWS,
/// forgets a de-duplication id once its message is deleted.)
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_stream_loses_nothing_and_repeats_nothing() {
    let Some(url) = moto() else { return };
    let (sqs, sns) = clients(&url);
    let q = queues_with(&sqs, &sns, &format!("kill-{}", std::process::id()), true).await;
    let dir = tempfile::tempdir().unwrap();
    let published = "trailwatch_alerts_published_total";
    for round in 0..3 {
        for i in round * 20..(round + 1) * 20 {
            let id = format!("ev-kill-{i}");
            send(
                &sqs,
                &q.events,
                api_event(&id, "iam", "DeactivateMFADevice", &format!("u{i}")),
            )
            .await;
        }
        let (mut service, metrics) = start_with(&url, &q, dir.path(), crash_safe());
        assert!(
            wait_metric(&metrics, published, 1).await >= 1,
            "round {round} published nothing"
        );
        service.0.kill().unwrap(); // SIGKILL: no shutdown work at all
        service.0.wait().unwrap();
    }
    // A last, clean run finishes whatever the crashes left behind.
    let (service, _) = start_with(&url, &q, dir.path(), crash_safe());
    assert!(
        drained(&sqs, &q.events).await,
        "the last run left events on the queue"
    );
    let mut bodies = receive(&sqs, &q.alerts, 60).await;
    // Anything redelivered later would show up now.
    bodies.extend(one_more_look(&sqs, &q.alerts).await);
    stop_service(service);

    let ids: Vec<String> = bodies
        .iter()
        .map(|b| {
            serde_json::from_str::<serde_json::Value>(b).unwrap()["alert_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    let twice: Vec<&String> = bodies
        .iter()
        .zip(&ids)
        .filter(|(_, id)| ids.iter().filter(|x| x == id).count() > 1)
        .map(|(b, _)| b)
        .collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "an alert id arrived twice: {twice:#?}"
    );
    assert_eq!(ids.len(), 60, "every expected alert arrives");
}
