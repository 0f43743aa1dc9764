//! `trailwatch run` against a real SQS/SNS server (moto, started by scripts/test.sh, which
//! sets MOTO_URL): EventBridge events in, deduplicated minimal alerts out, poison messages left
//! for redrive, a clean shutdown on SIGTERM.

use aws_sdk_sns::config::{BehaviorVersion, Credentials, Region};
use serde_json::json;
use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use trailwatch_e2e::{root, trailwatch_bin};

fn moto() -> Option<String> {
    let url = std::env::var("MOTO_URL").ok();
    if url.is_none() {
        eprintln!("MOTO_URL is not set (run scripts/test.sh): skipped");
    }
    url
}

fn clients(url: &str) -> (aws_sdk_sqs::Client, aws_sdk_sns::Client) {
    let creds = Credentials::new("test", "test", None, None, "static");
    let sqs = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(creds.clone())
        .build();
    let sns = aws_sdk_sns::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(creds)
        .build();
    (
        aws_sdk_sqs::Client::from_conf(sqs),
        aws_sdk_sns::Client::from_conf(sns),
    )
}

fn envelope(id: &str, detail: serde_json::Value) -> String {
    json!({"version": "0", "id": id, "detail-type": "AWS API Call via CloudTrail", "source": "aws.cloudtrail",
           "account": "111122223333", "time": "2026-11-01T10:00:00Z", "region": "us-east-1", "resources": [], "detail": detail})
    .to_string()
}

/// An EventBridge envelope around a management event `source`/`name` by IAM user `user`.
fn api_event(id: &str, source: &str, name: &str, user: &str) -> String {
    envelope(
        id,
        json!({"eventID": id, "eventTime": "2026-11-01T10:00:00Z", "eventSource": format!("{source}.amazonaws.com"),
               "eventName": name, "recipientAccountId": "111122223333",
               "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::1:user/{user}")}}),
    )
}

async fn send(sqs: &aws_sdk_sqs::Client, queue: &str, body: String) {
    sqs.send_message()
        .queue_url(queue)
        .message_body(body)
        .send()
        .await
        .unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

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
    assert!(
        text.contains("trailwatch_alerts_deduplicated_total 2"),
        "{text}"
    );
    assert!(http_get(&metrics, "/readyz").starts_with("HTTP/1.1 200"));

    stop_service(service);
    assert!(
        dir.path().join("state.snap").exists(),
        "state snapshotted at shutdown"
    );

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

/// The metrics text once it contains every one of `needles` (deletes follow deliveries, so
/// counters settle a moment after the alerts arrive); the last text seen after 10 s otherwise.
fn metrics_with(addr: &str, needles: &[String]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = http_get(addr, "/metrics");
        if needles.iter().all(|n| text.contains(n.as_str())) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fresh events queue, and an alerts topic delivering raw to an alerts queue.
struct Queues {
    events: String,
    alerts: String,
    topic: String,
}

async fn queues(sqs: &aws_sdk_sqs::Client, sns: &aws_sdk_sns::Client, tag: &str) -> Queues {
    let events = sqs
        .create_queue()
        .queue_name(format!("events-{tag}"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let alerts = sqs
        .create_queue()
        .queue_name(format!("alerts-{tag}"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let arn_attr = aws_sdk_sqs::types::QueueAttributeName::QueueArn;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&alerts)
        .attribute_names(arn_attr.clone())
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let topic = sns
        .create_topic()
        .name(format!("alerts-{tag}"))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&attrs[&arn_attr])
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();
    Queues {
        events,
        alerts,
        topic,
    }
}

/// Kills the service if a test fails before stopping it.
struct Service(std::process::Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `trailwatch run` on `q`; returns the child and the metrics address.
fn start(url: &str, q: &Queues, dir: &std::path::Path) -> (Service, String) {
    start_with(url, q, dir, "")
}

/// [`start`], with extra `[sink.sns]` settings.
fn start_with(url: &str, q: &Queues, dir: &std::path::Path, sns_extra: &str) -> (Service, String) {
    let metrics = format!("127.0.0.1:{}", free_port());
    let config = dir.join("trailwatch.toml");
    let text = format!(
        "[rules]\npaths = [{rules:?}]\n[source.sqs]\nqueue_url = {events:?}\nendpoint_url = {url:?}\npollers = 2\nwait_seconds = 1\n[sink.sns]\ntopic_arn = {topic:?}\n{sns_extra}[metrics]\nlisten = {metrics:?}\n[windows]\nstate_file = \"state.snap\"\nsnapshot_interval = \"1s\"\n",
        rules = root().join("rules").display().to_string(),
        events = q.events,
        topic = q.topic,
    );
    std::fs::write(&config, text).unwrap();
    let mut command = Command::new(trailwatch_bin());
    // With an SNS endpoint in the file, nothing else may point SNS anywhere.
    if sns_extra.is_empty() {
        command.env("AWS_ENDPOINT_URL", url);
    } else {
        command.env_remove("AWS_ENDPOINT_URL");
    }
    let child = command
        .args(["run", "--config", config.to_str().unwrap()])
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stderr(match std::env::var("TRAILWATCH_TEST_LOG") {
            Ok(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            Err(_) => Stdio::null(),
        })
        .spawn()
        .unwrap();
    (Service(child), metrics)
}

/// One receive shorter than the 30 s visibility timeout: a duplicate would show up in it.
async fn one_more_look(sqs: &aws_sdk_sqs::Client, queue: &str) -> Vec<String> {
    let out = sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .wait_time_seconds(3)
        .send()
        .await
        .unwrap();
    out.messages
        .unwrap_or_default()
        .into_iter()
        .map(|m| m.body.unwrap_or_default())
        .collect()
}

/// Stops the service with SIGTERM; it must exit cleanly.
fn stop_service(mut service: Service) {
    Command::new("kill")
        .args(["-TERM", &service.0.id().to_string()])
        .status()
        .unwrap();
    let status = service.0.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
}

/// Receives alert bodies until `n` arrived (or 30 s passed), deleting them.
async fn receive(sqs: &aws_sdk_sqs::Client, queue: &str, n: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while bodies.len() < n && Instant::now() < deadline {
        let out = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
            bodies.push(m.body.unwrap_or_default());
            sqs.delete_message()
                .queue_url(queue)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
    }
    bodies
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
    send(
        &sqs,
        &q.events,
        api_event("ev-mfa", "iam", "DeactivateMFADevice", "eve"),
    )
    .await;
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

/// A TCP proxy to `target` that refuses service until `up` turns true.
async fn flaky_proxy(target: String, up: std::sync::Arc<std::sync::atomic::AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            if !up.load(std::sync::atomic::Ordering::SeqCst) {
                drop(inbound); // connection closed: SNS is "down"
                continue;
            }
            let target = target.clone();
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    format!("http://{addr}")
}

/// While SNS is unavailable nothing is deleted from SQS; after recovery every alert arrives
/// and only then is the message deleted.
#[tokio::test(flavor = "multi_thread")]
async fn sns_outage_holds_acknowledgements_until_recovery() {
    let Some(url) = moto() else { return };
    let (sqs, sns) = clients(&url);
    let q = queues(&sqs, &sns, &format!("outage-{}", std::process::id())).await;
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let proxy = flaky_proxy(url.trim_start_matches("http://").to_string(), up.clone()).await;
    send(
        &sqs,
        &q.events,
        api_event("ev-outage", "cloudtrail", "StopLogging", "bob"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config_extra = format!("endpoint_url = {proxy:?}\n");
    let (service, metrics) = start_with(&url, &q, dir.path(), &config_extra);
    // (start_with gives SQS its endpoint in the file, not in AWS_ENDPOINT_URL, so that the
    // SNS endpoint above is the only one SNS can use.)

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
    stop_service(service);
}

/// `kill -9` in the middle of a stream, three times, then a clean run: every expected alert
/// arrives and no alert id arrives twice (the published-alerts ledger survives the crashes).
#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_stream_loses_nothing_and_repeats_nothing() {
    let Some(url) = moto() else { return };
    let (sqs, sns) = clients(&url);
    let q = queues(&sqs, &sns, &format!("kill-{}", std::process::id())).await;
    let dir = tempfile::tempdir().unwrap();
    let mut bodies = Vec::new();
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
        let (mut service, _) = start(&url, &q, dir.path());
        bodies.extend(receive(&sqs, &q.alerts, bodies.len() + 1).await);
        service.0.kill().unwrap(); // SIGKILL: no shutdown work at all
        service.0.wait().unwrap();
    }
    // A last, clean run finishes whatever the crashes left behind.
    let (service, metrics) = start(&url, &q, dir.path());
    let rest = receive(&sqs, &q.alerts, 60 - bodies.len().min(60)).await;
    bodies.extend(rest);
    let _ = metrics_with(&metrics, &["trailwatch_messages_deleted_total".to_string()]);
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
    assert_eq!(unique.len(), ids.len(), "an alert id arrived twice");
    assert_eq!(ids.len(), 60, "every expected alert arrives");
}
