//! Helpers for the tests of `trailwatch run` against moto (started by scripts/test.sh, which
//! sets MOTO_URL): clients, queues and topics, a running service, and waiting for results.
#![allow(dead_code)] // each test binary uses its own part

use aws_sdk_sns::config::{BehaviorVersion, Credentials, Region};
use serde_json::json;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use trailwatch_e2e::{root, trailwatch_bin};

/// The value of the service variable `var` (a URL or broker list set by scripts/test.sh), if
/// set. Under CI (`CI=true`) a missing service is a failure, not a skip: a test that returned
/// early there would pass without having run.
pub fn service(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if std::env::var("CI").is_ok_and(|ci| ci == "true") => panic!(
            "{var} is not set, and CI=true: the live tests need {what} (scripts/test.sh starts it and sets {var})"
        ),
        _ => {
            eprintln!("{var} is not set (scripts/test.sh starts {what} and sets it): skipped");
            None
        }
    }
}

/// The SQS/SNS server (moto) scripts/test.sh started; None (skip) outside CI when missing.
pub fn moto() -> Option<String> {
    service("MOTO_URL", "moto")
}

pub fn clients(url: &str) -> (aws_sdk_sqs::Client, aws_sdk_sns::Client) {
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

pub fn envelope(id: &str, detail: serde_json::Value) -> String {
    json!({"version": "0", "id": id, "detail-type": "AWS API Call via CloudTrail", "source": "aws.cloudtrail",
           "account": "111122223333", "time": "2026-11-01T10:00:00Z", "region": "us-east-1", "resources": [], "detail": detail})
    .to_string()
}

/// An EventBridge envelope around a management event `source`/`name` by IAM user `user`.
pub fn api_event(id: &str, source: &str, name: &str, user: &str) -> String {
    api_event_at(id, source, name, user, "2026-11-01T10:00:00Z")
}

/// [`api_event`] at event time `time`.
pub fn api_event_at(id: &str, source: &str, name: &str, user: &str, time: &str) -> String {
    envelope(
        id,
        json!({"eventID": id, "eventTime": time, "eventSource": format!("{source}.amazonaws.com"),
               "eventName": name, "recipientAccountId": "111122223333",
               "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::1:user/{user}")}}),
    )
}

pub async fn send(sqs: &aws_sdk_sqs::Client, queue: &str, body: String) {
    sqs.send_message()
        .queue_url(queue)
        .message_body(body)
        .send()
        .await
        .unwrap();
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The metrics text once it contains every one of `needles` (deletes follow deliveries, so
/// counters settle a moment after the alerts arrive); the last text seen after 10 s otherwise.
pub fn metrics_with(addr: &str, needles: &[String]) -> String {
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
pub struct Queues {
    pub events: String,
    pub alerts: String,
    pub topic: String,
}

pub async fn queues(sqs: &aws_sdk_sqs::Client, sns: &aws_sdk_sns::Client, tag: &str) -> Queues {
    queues_with(sqs, sns, tag, false).await
}

/// [`queues`], with a FIFO topic and a FIFO alerts queue when `fifo`.
pub async fn queues_with(
    sqs: &aws_sdk_sqs::Client,
    sns: &aws_sdk_sns::Client,
    tag: &str,
    fifo: bool,
) -> Queues {
    let suffix = if fifo { ".fifo" } else { "" };
    let events = sqs
        .create_queue()
        .queue_name(format!("events-{tag}"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let mut alerts = sqs
        .create_queue()
        .queue_name(format!("alerts-{tag}{suffix}"));
    let mut topic = sns.create_topic().name(format!("alerts-{tag}{suffix}"));
    if fifo {
        use aws_sdk_sqs::types::QueueAttributeName;
        alerts = alerts.attributes(QueueAttributeName::FifoQueue, "true");
        topic = topic.attributes("FifoTopic", "true");
    }
    let alerts = alerts.send().await.unwrap().queue_url.unwrap();
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
    let topic = topic.send().await.unwrap().topic_arn.unwrap();
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
pub struct Service(pub std::process::Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An S3 client of moto at `url`.
pub fn s3_client(url: &str) -> aws_sdk_s3::Client {
    let creds = aws_sdk_s3::config::Credentials::new("test", "test", None, None, "static");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Every object of a directory archive, decoded: its header and its records.
pub async fn archive_objects(
    dir: &Path,
) -> Vec<(
    trailwatch::sink::archive::object::Header,
    Vec<serde_json::Value>,
)> {
    let store = trailwatch::sink::archive::store::Store::Dir(dir.to_path_buf());
    let mut out = Vec::new();
    for name in store
        .list()
        .await
        .unwrap()
        .iter()
        .filter(|n| n.ends_with(".jsonl.gz"))
    {
        let bytes = store.get(name).await.unwrap();
        out.push(trailwatch::sink::archive::object::decode(&bytes).unwrap());
    }
    out
}

/// Starts `trailwatch run` on `q`; returns the child and the metrics address.
pub fn start(url: &str, q: &Queues, dir: &std::path::Path) -> (Service, String) {
    start_with(url, q, dir, Extra::default())
}

/// Settings added to the test configuration.
#[derive(Default)]
pub struct Extra<'a> {
    /// Lines for `[source.sqs]`.
    pub sqs: &'a str,
    /// Lines for `[sink.sns]`.
    pub sns: &'a str,
    /// Lines for `[alerts]`.
    pub alerts: &'a str,
    /// Rules other than the shipped pack.
    pub rules: Option<&'a std::path::Path>,
    /// Where the service's log goes (else nowhere, or $TRAILWATCH_TEST_LOG).
    pub log: Option<&'a std::path::Path>,
    /// Concurrent SQS receivers (else 2).
    pub pollers: Option<u32>,
    /// Lines for `[service]` (time limits).
    pub service: &'a str,
    /// Lines for `[windows]` (besides the state file).
    pub windows: &'a str,
    /// An IP geolocation database for the geo rules.
    pub geoip: Option<&'a std::path::Path>,
    /// Lines for `[sink.archive]` (none: no archive).
    pub archive: &'a str,
    /// Lines for `[source.kafka.properties]` (librdkafka's settings).
    pub kafka: &'a str,
}

/// [`start`], with extra settings.
pub fn start_with(url: &str, q: &Queues, dir: &std::path::Path, extra: Extra) -> (Service, String) {
    let metrics = format!("127.0.0.1:{}", free_port());
    let config = dir.join("trailwatch.toml");
    std::fs::write(dir.join("hmac.key"), "test-secret-0123456789abcdef\n").unwrap();
    let rules = extra
        .rules
        .map_or(root().join("rules"), |p| p.to_path_buf());
    let geoip = extra.geoip.map_or(String::new(), |p| {
        format!("[geoip]\ncities = [{:?}]\n", p.display().to_string())
    });
    let archive = if extra.archive.is_empty() {
        String::new()
    } else {
        format!("[sink.archive]\n{}", extra.archive)
    };
    let text = format!(
        "[rules]\npaths = [{rules:?}]\n[source.sqs]\nqueue_url = {events:?}\nendpoint_url = {url:?}\npollers = {pollers}\nwait_seconds = 1\n{sqs}[sink.sns]\ntopic_arn = {topic:?}\n{sns}{archive}[metrics]\nlisten = {metrics:?}\n[windows]\nstate_file = \"state.snap\"\nsnapshot_interval = \"1s\"\n{windows}[alerts]\nhmac_key_file = \"hmac.key\"\n{alerts}{geoip}[service]\n{service}",
        windows = extra.windows,
        rules = rules.display().to_string(),
        service = extra.service,
        events = q.events,
        topic = q.topic,
        pollers = extra.pollers.unwrap_or(2),
        sqs = extra.sqs,
        sns = extra.sns,
        alerts = extra.alerts,
    );
    std::fs::write(&config, text).unwrap();
    let mut command = Command::new(trailwatch_bin());
    // With an SNS endpoint in the file, nothing else may point SNS anywhere.
    if extra.sns.is_empty() {
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
        .stderr(match (extra.log, std::env::var("TRAILWATCH_TEST_LOG")) {
            (Some(path), _) => Stdio::from(std::fs::File::create(path).unwrap()),
            (None, Ok(path)) => Stdio::from(std::fs::File::create(path).unwrap()),
            (None, Err(_)) => Stdio::null(),
        })
        .spawn()
        .unwrap();
    (Service(child), metrics)
}

/// One receive shorter than the 30 s visibility timeout: a duplicate would show up in it.
pub async fn one_more_look(sqs: &aws_sdk_sqs::Client, queue: &str) -> Vec<String> {
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
pub fn stop_service(mut service: Service) {
    Command::new("kill")
        .args(["-TERM", &service.0.id().to_string()])
        .status()
        .unwrap();
    let status = service.0.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
}

/// Receives alert bodies until `n` arrived (or 30 s passed), deleting them.
pub async fn receive(sqs: &aws_sdk_sqs::Client, queue: &str, n: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while bodies.len() < n && Instant::now() < deadline {
        bodies.extend(receive_once(sqs, queue).await);
    }
    bodies
}

/// One receive of up to ten messages (waiting up to a second); returns their bodies, deleted.
pub async fn receive_once(sqs: &aws_sdk_sqs::Client, queue: &str) -> Vec<String> {
    let out = sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let mut bodies = Vec::new();
    for m in out.messages.unwrap_or_default() {
        bodies.push(m.body.unwrap_or_default());
        sqs.delete_message()
            .queue_url(queue)
            .receipt_handle(m.receipt_handle.unwrap())
            .send()
            .await
            .unwrap();
    }
    bodies
}

/// A counter or gauge from the metrics text (0 when absent).
pub fn metric(addr: &str, name: &str) -> u64 {
    trailwatch::metrics::Metrics::sample(&http_get(addr, "/metrics"), name).map_or(0, |v| v as u64)
}

/// Waits until metric `name` reaches `n` (60 s at most); returns its last value.
pub async fn wait_metric(addr: &str, name: &str, n: u64) -> u64 {
    wait_metric_within(addr, name, n, Duration::from_secs(60)).await
}

/// Waits until metric `name` reaches `n` (`within` at most); returns its last value.
pub async fn wait_metric_within(addr: &str, name: &str, n: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let v = metric(addr, name);
        if v >= n || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (60 s at most) until `queue` holds no message, visible or in flight; whether it did.
pub async fn drained(sqs: &aws_sdk_sqs::Client, queue: &str) -> bool {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let attrs = sqs
            .get_queue_attributes()
            .queue_url(queue)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        let n = |a: &A| {
            attrs
                .get(a)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        if n(&A::ApproximateNumberOfMessages) + n(&A::ApproximateNumberOfMessagesNotVisible) == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// What a [`recording_proxy`] saw and what it is told to break.
#[derive(Clone, Default)]
pub struct Recorder {
    /// `METHOD target` of every request, in arrival order.
    pub requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Requests whose target contains one of these fail once with a 503, then pass.
    pub fail_once: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Requests whose target contains one of these always fail with a 503.
    pub fail_always: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// Responses to requests whose target contains one of these break off after their first
    /// MiB, once: a download that dies half way.
    pub cut_once: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Recorder {
    /// The recorded requests that contain `needle`.
    pub fn matching(&self, needle: &str) -> Vec<String> {
        let all = self.requests.lock().unwrap();
        all.iter().filter(|r| r.contains(needle)).cloned().collect()
    }
}

/// An HTTP proxy to `target` that records each request line and fails the ones it is told to
/// (one request a connection: it asks the server to close after each).
pub async fn recording_proxy(target: String) -> (String, Recorder) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let recorder = Recorder::default();
    let rec = recorder.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let (target, rec) = (target.clone(), rec.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 8192];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match inbound.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                let text = String::from_utf8_lossy(&head[..end]).into_owned();
                let line = text.lines().next().unwrap_or_default();
                let request = line.rsplit_once(' ').map_or(line, |(r, _)| r).to_string();
                rec.requests.lock().unwrap().push(request.clone());
                let fails = |list: &std::sync::Mutex<Vec<String>>, remove: bool| {
                    let mut list = list.lock().unwrap();
                    let hit = list.iter().position(|n| request.contains(n.as_str()));
                    if let (Some(i), true) = (hit, remove) {
                        list.remove(i);
                    }
                    hit.is_some()
                };
                if fails(&rec.fail_once, true) || fails(&rec.fail_always, false) {
                    let _ = inbound
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    return;
                }
                let mut rewritten: String = text[..text.len() - 2]
                    .lines()
                    .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                    .map(|l| format!("{l}\r\n"))
                    .collect();
                rewritten.push_str("Connection: close\r\n\r\n");
                let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                if outbound.write_all(rewritten.as_bytes()).await.is_err()
                    || outbound.write_all(&head[end..]).await.is_err()
                {
                    return;
                }
                if !fails(&rec.cut_once, true) {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                }
                let mut left = 1usize << 20;
                while left > 0 {
                    match outbound.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let n = n.min(left);
                            if inbound.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            left -= n;
                        }
                    }
                }
                // Dropping both ends breaks the response off mid-body.
            });
        }
    });
    (format!("http://{addr}"), recorder)
}

/// A TCP proxy to `target` that refuses new connections while `up` is false (connections it
/// already carries, such as a client's pooled keep-alive ones, stay up: see [`outage_proxy`]).
pub async fn flaky_proxy(
    target: String,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> String {
    proxy(target, up, false).await
}

/// [`flaky_proxy`] that also cuts the connections it carries when `up` turns false, so an
/// outage mid-run reaches a client that keeps its connections alive.
pub async fn outage_proxy(
    target: String,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> String {
    proxy(target, up, true).await
}

async fn proxy(
    target: String,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: bool,
) -> String {
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
            let (target, up) = (target.clone(), up.clone());
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let down = async {
                        if !cut {
                            std::future::pending::<()>().await;
                        }
                        while up.load(std::sync::atomic::Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = down => {} // both ends dropped: the connection is cut
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// The Kafka-protocol broker scripts/test.sh started (tansu); None (skip) outside CI when
/// missing.
pub fn kafka() -> Option<String> {
    service("KAFKA_BROKERS", "tansu")
}

/// Starts `trailwatch run` reading `topic` as a member of `group`, alerting to `q`'s topic via
/// moto; returns the child and its metrics address.
pub fn start_kafka(
    url: &str,
    q: &Queues,
    dir: &std::path::Path,
    brokers: &str,
    topic: &str,
    group: &str,
) -> (Service, String) {
    start_kafka_with(
        url,
        q,
        dir,
        brokers,
        topic,
        group,
        &root().join("rules"),
        &Extra::default(),
    )
}

/// [`start_kafka`] with rules from `rules`, and `extra.sns`, `extra.alerts` and `extra.windows`
/// lines for `[sink.sns]`, `[alerts]` and `[windows]` (else snapshots every second).
#[allow(clippy::too_many_arguments)]
pub fn start_kafka_with(
    url: &str,
    q: &Queues,
    dir: &std::path::Path,
    brokers: &str,
    topic: &str,
    group: &str,
    rules: &std::path::Path,
    extra: &Extra,
) -> (Service, String) {
    let (sns, alerts) = (extra.sns, extra.alerts);
    let archive = if extra.archive.is_empty() {
        String::new()
    } else {
        format!("[sink.archive]\n{}", extra.archive)
    };
    let metrics = format!("127.0.0.1:{}", free_port());
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("hmac.key"), "test-secret-0123456789abcdef\n").unwrap();
    let text = format!(
        "[rules]\npaths = [{rules:?}]\n[source.kafka]\nbrokers = {brokers:?}\ntopic = {topic:?}\ngroup_id = {group:?}\nstate_topic = \"{group}-state\"\nmax_batch = 50\n[source.kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\"max.poll.interval.ms\" = \"10000\"\n{kafka}[sink.sns]\ntopic_arn = {topic_arn:?}\n{sns}{archive}[metrics]\nlisten = {metrics:?}\n[windows]\n{windows}[alerts]\nhmac_key_file = \"hmac.key\"\n{alerts}",
        rules = rules.display().to_string(),
        topic_arn = q.topic,
        kafka = extra.kafka,
        windows = match extra.windows {
            "" => "snapshot_interval = \"1s\"\n",
            w => w,
        },
    );
    let config = dir.join("trailwatch.toml");
    std::fs::write(&config, text).unwrap();
    let mut command = Command::new(trailwatch_bin());
    // With an SNS endpoint in the file, nothing else may point SNS anywhere.
    if sns.is_empty() {
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
        .stderr(Stdio::from(std::fs::File::create(dir.join("log")).unwrap()))
        .spawn()
        .unwrap();
    (Service(child), metrics)
}

/// Creates the 3-partition events topic (producing nothing), as a deployment has it before
/// trailwatch starts.
pub fn create_topic(brokers: &str, topic: &str) {
    let empty = tempfile::NamedTempFile::new().unwrap();
    let mut p = produce(brokers, topic, empty.path(), 0);
    wait_exit(&mut p);
}

/// `load-test kafka-produce` in the background (creates the 3-partition topic first).
pub fn produce(brokers: &str, topic: &str, events: &Path, rate: u32) -> Child {
    Command::new(trailwatch_bin().with_file_name("load-test"))
        .args([
            "kafka-produce",
            "--brokers",
            brokers,
            "--topic",
            topic,
            "--partitions",
            "3",
            "--rate",
            &rate.to_string(),
            events.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits (60 s at most) for the producer to finish.
pub fn wait_exit(child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("producer did not finish");
}
