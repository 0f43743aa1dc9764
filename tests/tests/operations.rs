//! Honest operations of `trailwatch run`: impossible configurations and unreachable services
//! stop it at start with exit code 2 (and `run --check` says so without running), /readyz
//! follows outages, and SIGTERM finishes within `service.shutdown_timeout` whatever the
//! state, leaving what was not delivered on the queue.

mod live;

use live::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use trailwatch_e2e::{root, trailwatch_bin};

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:alerts";

/// A closed port on 127.0.0.1: connections to it are refused.
fn closed_endpoint() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// An SQS configuration in `dir` with `extra` lines appended (TOML tables of their own).
fn sqs_config(dir: &Path, queue_url: &str, endpoint: &str, extra: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("hmac.key"), "test-secret-0123456789abcdef\n").unwrap();
    let text = format!(
        "[rules]\npaths = [{rules:?}]\n[source.sqs]\nqueue_url = {queue_url:?}\nendpoint_url = {endpoint:?}\nwait_seconds = 1\n[sink.sns]\ntopic_arn = {TOPIC:?}\nendpoint_url = {endpoint:?}\n[alerts]\nhmac_key_file = \"hmac.key\"\n{extra}",
        rules = root().join("rules").display().to_string(),
    );
    let path = dir.join("trailwatch.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `trailwatch ARGS` with the test AWS environment, within 60 s; its output and how long it took.
fn run(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let child = trailwatch_e2e::trailwatch_aws(None)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        let _ = Command::new("kill")
            .args(["-KILL", &id.to_string()])
            .status();
    });
    let out = child.wait_with_output().unwrap();
    drop(watchdog);
    (out, started.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The value of an unlabelled metric in `text` (0 when absent).
fn value_in(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `/readyz` until its status line starts with `status` (or `within` passes); the
/// last answer and when it came.
fn readyz_until(addr: &str, status: &str, within: Duration) -> (String, Instant) {
    let deadline = Instant::now() + within;
    loop {
        let answer = http_get(addr, "/readyz");
        if answer.starts_with(status) || Instant::now() > deadline {
            return (answer, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends SIGTERM; waits (at most `limit`) for the exit; its status and how long it took.
fn terminate(service: &mut Service, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    Command::new("kill")
        .args(["-TERM", &service.0.id().to_string()])
        .status()
        .unwrap();
    loop {
        if let Some(status) = service.0.try_wait().unwrap() {
            return (status, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "no exit within {limit:?} of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Messages on the queue, visible or in flight.
async fn left_on(sqs: &aws_sdk_sqs::Client, queue: &str) -> u32 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(A::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let count = |k: A| {
        attrs
            .get(&k)
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    };
    count(A::ApproximateNumberOfMessages) + count(A::ApproximateNumberOfMessagesNotVisible)
}

/// Configurations that cannot work are refused before anything starts, by `run --check` and
/// by `run` alike, with exit code 2 and a message naming the file and the key.
#[test]
fn impossible_configurations_exit_2_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let q = "http://127.0.0.1:1/123456789012/events";
    let endpoint = closed_endpoint();
    std::fs::write(dir.path().join("a-file"), "").unwrap();
    let cases: &[(&str, &str, &str)] = &[
        // (what to replace in the valid file, with what, the key the message must name)
        (
            "wait_seconds = 1\n",
            "wait_seconds = 1\npollers = 100000\n",
            "source.sqs.pollers: 100000 is out of bounds: use 1 to 64",
        ),
        (q, "", "source.sqs.queue_url: must not be empty"),
        (
            q,
            "sqs.us-east-1.amazonaws.com/1/q",
            "source.sqs.queue_url: 'sqs.us-east-1.amazonaws.com/1/q' is not an http(s):// URL",
        ),
        (
            TOPIC,
            "alerts",
            "sink.sns.topic_arn: 'alerts' is not an SNS topic ARN",
        ),
        (
            "wait_seconds = 1\n",
            "wait_seconds = 1\nvisibility_timeout_seconds = 0\n",
            "source.sqs.visibility_timeout_seconds: 0 is out of bounds",
        ),
        (
            "[alerts]",
            "[service]\nshutdown_timeout = \"0s\"\n[alerts]",
            "service.shutdown_timeout: '0s' is out of bounds: use 1s to 10m",
        ),
        (
            "\"hmac.key\"\n",
            "\"hmac.key\"\n[windows]\nstate_file = \"no-such-dir/state.snap\"\n",
            "windows.state_file: directory",
        ),
        (
            "[alerts]",
            "[sink]\njsonl = \"a-file/alerts.jsonl\"\n[alerts]",
            "sink.jsonl: directory",
        ),
        ("rules\"", "no-such-rules\"", "rules.paths: "),
    ];
    for (from, to, expected) in cases {
        let path = sqs_config(dir.path(), q, &endpoint, "");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{from}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let config = path.to_str().unwrap();
        for args in [
            &["run", "--check", "--config", config][..],
            &["run", "--config", config][..],
        ] {
            let (out, took) = run(args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{args:?} with {to}: {err}");
            assert!(
                err.contains(&format!("{config}: {expected}")),
                "{args:?}: expected '{expected}' in: {err}"
            );
            assert!(took < Duration::from_secs(10), "{took:?}");
            assert!(out.stdout.is_empty(), "nothing checked is reported as ok");
        }
    }
    // A rules folder that holds no rules.
    let empty = dir.path().join("empty-rules");
    std::fs::create_dir(&empty).unwrap();
    let path = sqs_config(dir.path(), q, &endpoint, "");
    let text = std::fs::read_to_string(&path).unwrap();
    let rules = format!("{:?}", root().join("rules").display().to_string());
    std::fs::write(
        &path,
        text.replace(&rules, &format!("{:?}", empty.display().to_string())),
    )
    .unwrap();
    let (out, _) = run(&["run", "--check", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("rules.paths: no rules found in"),
        "{}",
        stderr(&out)
    );
}

/// An SQS endpoint nobody listens on: `run` gives up after `service.startup_timeout` with
/// exit code 2 instead of retrying forever while /readyz says ready.
#[test]
fn unreachable_sqs_at_start_exits_2_within_the_startup_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = closed_endpoint();
    let queue = format!("{endpoint}/123456789012/events");
    let metrics = format!("127.0.0.1:{}", free_port());
    let path = sqs_config(
        dir.path(),
        &queue,
        &endpoint,
        &format!("[metrics]\nlisten = {metrics:?}\n[service]\nstartup_timeout = \"2s\"\n"),
    );
    let config = path.to_str().unwrap();
    for args in [
        &["run", "--config", config][..],
        &["run", "--check", "--config", config][..],
    ] {
        let (out, took) = run(args);
        let err = stderr(&out);
        eprintln!("{args:?}: exit {:?} after {took:?}", out.status.code());
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains(&format!(
                "{config}: source.sqs.queue_url: SQS queue {queue} (endpoint {endpoint}): not reachable within service.startup_timeout (2s)"
            )),
            "{err}"
        );
        assert!(err.contains("Connection refused"), "{err}");
        assert!(
            took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
            "retried until the start-up timeout, no longer: {took:?}"
        );
    }
    // Meanwhile the process is alive but not ready.
    let child = trailwatch_e2e::trailwatch_aws(None)
        .args(["run", "--config", config])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut service = Service(child);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut health = String::new();
    while !health.starts_with("HTTP/1.1 200") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        health = http_get(&metrics, "/healthz");
    }
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let ready = http_get(&metrics, "/readyz");
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    assert!(ready.ends_with("not ready: starting\n"), "{ready}");
    let status = service.0.wait().unwrap();
    assert_eq!(status.code(), Some(2));
}

/// Kafka at a dead address: exit code 2 after the start-up timeout, naming the brokers key.
#[test]
fn unreachable_kafka_at_start_exits_2_within_the_startup_timeout() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hmac.key"),
        "test-secret-0123456789abcdef\n",
    )
    .unwrap();
    let brokers = format!("127.0.0.1:{}", free_port());
    let text = format!(
        "[rules]\npaths = [{rules:?}]\n[source.kafka]\nbrokers = {brokers:?}\ntopic = \"cloudtrail\"\n[sink.sns]\ntopic_arn = {TOPIC:?}\nendpoint_url = {sns:?}\n[alerts]\nhmac_key_file = \"hmac.key\"\n[service]\nstartup_timeout = \"2s\"\n",
        rules = root().join("rules").display().to_string(),
        sns = closed_endpoint(),
    );
    let path = dir.path().join("kafka.toml");
    std::fs::write(&path, text).unwrap();
    let (out, took) = run(&["run", "--config", path.to_str().unwrap()]);
    let err = stderr(&out);
    eprintln!("exit {:?} after {took:?}", out.status.code());
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "kafka.toml: source.kafka.brokers: Kafka brokers {brokers}: no metadata for topic cloudtrail within"
        )),
        "{err}"
    );
    assert!(took < Duration::from_secs(6), "{took:?}");

    // SIGTERM while it still waits for the brokers: it stops at once.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("startup_timeout = \"2s\"", "startup_timeout = \"60s\""),
    )
    .unwrap();
    let log = dir.path().join("log");
    let child = Command::new(trailwatch_bin())
        .args(["run", "--config", path.to_str().unwrap()])
        .env("AWS_REGION", "us-east-1")
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .unwrap();
    let mut service = Service(child);
    std::thread::sleep(Duration::from_millis(1500));
    let (status, took) = terminate(&mut service, Duration::from_secs(10));
    eprintln!("SIGTERM while waiting for a dead Kafka: exited ({status}) after {took:?}");
    assert!(status.success(), "{status}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

/// `run --check` against real services: exit 0 and a line per check; a queue that does not
/// exist is refused at once (the service answered), not after the timeout.
#[tokio::test(flavor = "multi_thread")]
async fn run_check_reports_what_it_checked() {
    let Some(url) = moto() else { return };
    let (sqs, sns) = clients(&url);
    let q = queues(&sqs, &sns, &format!("check-{}", std::process::id())).await;
    let dir = tempfile::tempdir().unwrap();
    let path = sqs_config(
        dir.path(),
        &q.events,
        &url,
        "[windows]\nstate_file = \"state.snap\"\n",
    );
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace(TOPIC, &q.topic)).unwrap();
    let config = path.to_str().unwrap();
    let (out, _) = run(&["run", "--check", "--config", config]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for needle in [
        format!(
            "ok  source.sqs.queue_url: SQS queue {} (endpoint {url}) answered GetQueueAttributes",
            q.events
        ),
        format!(
            "ok  sink.sns.topic_arn: SNS topic {} (endpoint {url}) answered GetTopicAttributes",
            q.topic
        ),
        "ok  rules.paths: ".to_string(),
        "ok  windows.state_file: ".to_string(),
        "ok  alerts.hmac_key_file: ".to_string(),
        format!("{config}: trailwatch run can start with this configuration"),
    ] {
        assert!(stdout.contains(&needle), "{needle} in:\n{stdout}");
    }
    assert!(
        !dir.path().join("state.snap").exists(),
        "--check runs nothing"
    );

    let missing = q.events.replace("events-check", "no-such-queue");
    std::fs::write(
        &path,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace(&q.events, &missing),
    )
    .unwrap();
    let (out, took) = run(&["run", "--check", "--config", config]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("source.sqs.queue_url: ")
            && err.contains("the service refused: QueueDoesNotExist"),
        "{err}"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// SQS becomes unreachable mid-run: /readyz stays 200 for `service.unready_after`, then says
/// 503 and why, and 200 again once receiving works; the failures are counted.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_turns_503_during_an_sqs_outage_and_200_after() {
    let Some(url) = moto() else { return };
    let (sqs, sns) = clients(&url);
    let q = queues(&sqs, &sns, &format!("ready-{}", std::process::id())).await;
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let proxy = outage_proxy(url.trim_start_matches("http://").to_string(), up.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let sns_direct = format!("endpoint_url = {url:?}\n");
    let extra = Extra {
        sns: &sns_direct,
        service: "unready_after = \"2s\"\n",
        log: Some(&log),
        ..Extra::default()
    };
    // SQS through the proxy; SNS straight to moto.
    let (service, metrics) = start_with(&proxy, &q, dir.path(), extra);
    let (answer, _) = readyz_until(&metrics, "HTTP/1.1 200", Duration::from_secs(20));
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "ready after start: {answer}"
    );

    up.store(false, std::sync::atomic::Ordering::SeqCst);
    let down = Instant::now();
    std::thread::sleep(Duration::from_millis(800));
    let early = http_get(&metrics, "/readyz");
    assert!(
        early.starts_with("HTTP/1.1 200"),
        "not before unready_after: {early}"
    );
    let (answer, at) = readyz_until(&metrics, "HTTP/1.1 503", Duration::from_secs(15));
    let unready = at - down;
    eprintln!("/readyz 503 after {unready:?} of outage");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("not ready: receiving from the source has failed for"),
        "{answer}"
    );
    assert!(unready >= Duration::from_secs(2), "{unready:?}");
    let text = http_get(&metrics, "/metrics");
    assert!(
        value_in(&text, "trailwatch_source_errors_total") >= 1.0,
        "{text}"
    );
    assert_eq!(
        value_in(&text, "trailwatch_sink_errors_total"),
        0.0,
        "{text}"
    );
    assert!(text.contains("HTTP/1.1 200"), "/metrics still served");

    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let back = Instant::now();
    let (answer, at) = readyz_until(&metrics, "HTTP/1.1 200", Duration::from_secs(15));
    eprintln!("/readyz 200 {:?} after the outage ended", at - back);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ready\n"), "{answer}");
    // And it works: an event sent now alerts.
    send(
        &sqs,
        &q.events,
        api_event("ev-ready", "cloudtrail", "StopLogging", "bob"),
    )
    .await;
    assert_eq!(receive(&sqs, &q.alerts, 2).await.len(), 2);
    stop_service(service);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("receiving from SQS failed; retrying"),
        "{logged}"
    );
}

/// SIGTERM while SNS is down and a batch waits for delivery: the process exits within
/// `service.shutdown_timeout`, the message stays on the queue, and a later run delivers its
/// alerts (the state was not snapshotted past the undelivered batch).
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_an_sns_outage_exits_in_time_and_leaves_the_message() {
    let Some(url) = moto() else { return };
    let (sqs, sns) = clients(&url);
    let q = queues(&sqs, &sns, &format!("term-{}", std::process::id())).await;
    let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let proxy = outage_proxy(url.trim_start_matches("http://").to_string(), up.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let sns_extra = format!("endpoint_url = {proxy:?}\n");
    let extra = || Extra {
        sns: &sns_extra,
        sqs: "visibility_timeout_seconds = 2\n",
        service: "shutdown_timeout = \"3s\"\nunready_after = \"2s\"\n",
        log: Some(&log),
        ..Extra::default()
    };
    let (mut service, metrics) = start_with(&url, &q, dir.path(), extra());
    let (answer, _) = readyz_until(&metrics, "HTTP/1.1 200", Duration::from_secs(20));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    up.store(false, std::sync::atomic::Ordering::SeqCst);
    send(
        &sqs,
        &q.events,
        api_event("ev-term", "cloudtrail", "StopLogging", "bob"),
    )
    .await;
    let text = metrics_with(&metrics, &["trailwatch_sink_errors_total 2".to_string()]);
    assert!(
        value_in(&text, "trailwatch_sink_errors_total") >= 2.0,
        "{text}"
    );
    assert_eq!(
        value_in(&text, "trailwatch_messages_deleted_total"),
        0.0,
        "{text}"
    );
    let (answer, _) = readyz_until(&metrics, "HTTP/1.1 503", Duration::from_secs(10));
    assert!(
        answer.contains("not ready: delivering alerts has failed for"),
        "{answer}"
    );

    let (status, took) = terminate(&mut service, Duration::from_secs(10));
    eprintln!("SIGTERM during the SNS outage: exited ({status}) after {took:?}");
    assert!(status.success(), "{status}");
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_millis(4500),
        "kept trying to deliver for shutdown_timeout (3 s), then exited: {took:?}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("shutdown_timeout reached"), "{logged}");
    assert_eq!(
        left_on(&sqs, &q.events).await,
        1,
        "the message stays for redelivery"
    );
    assert!(
        one_more_look(&sqs, &q.alerts).await.is_empty(),
        "nothing was delivered"
    );

    // SNS is back: the next run gets the message again and delivers its alerts.
    up.store(true, std::sync::atomic::Ordering::SeqCst);
    let (service, metrics) = start_with(&url, &q, dir.path(), extra());
    let bodies = receive(&sqs, &q.alerts, 2).await;
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let text = metrics_with(
        &metrics,
        &["trailwatch_messages_deleted_total 1".to_string()],
    );
    assert_eq!(
        value_in(&text, "trailwatch_messages_deleted_total"),
        1.0,
        "{text}"
    );
    stop_service(service);
    assert_eq!(left_on(&sqs, &q.events).await, 0);
}
