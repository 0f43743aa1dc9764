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
    let tag = format!(
        "{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let events_q = sqs
        .create_queue()
        .queue_name(format!("events-{tag}"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let alerts_q = sqs
        .create_queue()
        .queue_name(format!("alerts-{tag}"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let alerts_arn = sqs
        .get_queue_attributes()
        .queue_url(&alerts_q)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
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
        .endpoint(&alerts_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();

    let stop = envelope(
        "e1",
        json!({"eventID": "ev-stop", "eventTime": "2026-11-01T10:00:00Z", "eventSource": "cloudtrail.amazonaws.com",
        "eventName": "StopLogging", "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.1", "recipientAccountId": "111122223333",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::111122223333:user/bob"},
        "requestParameters": {"name": "org-trail", "note": "PHI-999 patient record"}}),
    );
    let root_login = envelope(
        "e2",
        json!({"eventID": "ev-root", "eventTime": "2026-11-01T10:01:00Z", "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin", "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.2", "recipientAccountId": "111122223333",
        "userIdentity": {"type": "Root", "arn": "arn:aws:iam::111122223333:root"}, "eventType": "AwsConsoleSignIn",
        "responseElements": {"ConsoleLogin": "Success"}, "additionalEventData": {"MFAUsed": "Yes"}}),
    );
    for body in [stop.clone(), root_login, stop, "{not json".to_string()] {
        sqs.send_message()
            .queue_url(&events_q)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let metrics = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("trailwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[rules]\npaths = [{rules:?}]\n[source.sqs]\nqueue_url = {events_q:?}\npollers = 2\nwait_seconds = 1\n[sink.sns]\ntopic_arn = {topic:?}\n[metrics]\nlisten = {metrics:?}\n[windows]\nstate_file = \"state.snap\"\n",
            rules = root().join("rules").display().to_string()
        ),
    )
    .unwrap();
    let mut child = Command::new(trailwatch_bin())
        .args([
            "run",
            "--config",
            config.to_str().unwrap(),
            "--log-format",
            "json",
        ])
        .env("AWS_ENDPOINT_URL", &url)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Four alerts are expected: two rules on StopLogging, two on the root sign-in; the
    // redelivered StopLogging message raises nothing new.
    let mut bodies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while bodies.len() < 5 && Instant::now() < deadline {
        let out = sqs
            .receive_message()
            .queue_url(&alerts_q)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
            bodies.push(m.body.unwrap_or_default());
            sqs.delete_message()
                .queue_url(&alerts_q)
                .receipt_handle(m.receipt_handle.unwrap())
                .send()
                .await
                .unwrap();
        }
        if bodies.len() == 4 {
            // Give a duplicate the chance to show up before concluding.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let out = sqs
                .receive_message()
                .queue_url(&alerts_q)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            bodies.extend(
                out.messages
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| m.body.unwrap_or_default()),
            );
            break;
        }
    }
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

    let text = http_get(&metrics, "/metrics");
    assert!(
        text.contains("trailwatch_decode_errors_total{kind=\"syntax\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("trailwatch_alerts_published_total 4"),
        "{text}"
    );
    assert!(http_get(&metrics, "/readyz").starts_with("HTTP/1.1 200"));

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    assert!(
        dir.path().join("state.snap").exists(),
        "state snapshotted at shutdown"
    );

    // The poison message was not deleted: it waits for redrive (in flight or visible again).
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&events_q)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
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
