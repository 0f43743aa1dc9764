//! Chaos on the live service (SQS in, SNS out, moto): poison events of every class mixed into
//! a steady stream, hostile files dropped into the watched rules folder, `kill -9` at random
//! moments (ten times, restarting each time from the state files) and an SNS outage. Every
//! alert the clean stream raises (as `trailwatch replay` of the same records says) must
//! arrive, no alert id twice (a FIFO topic de-duplicates by alert id what a kill between
//! delivery and the ledger re-sends), and every restart must come up: no crash loop.

mod live;

use live::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trailwatch_e2e::{json_lines, root, trailwatch};

const ROUNDS: usize = 10;
const PER_ROUND: usize = 8;

/// A small deterministic generator (xorshift), seeded per run and printed, so a failure can be
/// replayed with CHAOS_SEED.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A CloudTrail record `secs` after 10:00 in account number `k`: root or an IAM user calling
/// `name`, each in an account and principal of its own, so every alert is a first one.
fn record(k: usize, secs: i64, name: &str, source: &str, root_user: bool) -> Value {
    let account = format!("{:012}", 100_000_000_000u64 + k as u64);
    let who = if root_user {
        json!({"type": "Root", "principalId": account, "arn": format!("arn:aws:iam::{account}:root"), "accountId": account})
    } else {
        json!({"type": "IAMUser", "arn": format!("arn:aws:iam::{account}:user/u{k}"), "accountId": account, "userName": format!("u{k}")})
    };
    let minutes = secs / 60;
    json!({"eventVersion": "1.09", "eventID": format!("chaos-{k:04}"),
           "eventTime": format!("2026-11-01T10:{:02}:{:02}Z", minutes % 60, secs % 60),
           "eventSource": format!("{source}.amazonaws.com"), "eventName": name, "eventType": "AwsApiCall",
           "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.4", "recipientAccountId": account,
           "userIdentity": who})
}

/// The clean records: root activity and policy changes, a few seconds apart.
fn clean_records() -> Vec<Value> {
    (0..ROUNDS * PER_ROUND)
        .map(|k| {
            let secs = 5 * k as i64;
            match k % 3 {
                0 => record(k, secs, "ListBuckets", "s3", true),
                1 => record(k, secs, "PutUserPolicy", "iam", false),
                _ => record(k, secs, "StopLogging", "cloudtrail", false),
            }
        })
        .collect()
}

/// Records that are hostile but still records (they alert, in replay and live alike), and
/// messages that are not records at all (left on the queue for redrive, counted).
fn poison(k: usize) -> (Option<Value>, String) {
    match k % 6 {
        0 => {
            // A year typo: centuries ahead.
            let mut r = record(1000 + k, 0, "DeleteTrail", "cloudtrail", true);
            r["eventTime"] = json!("9026-11-01T10:00:00Z");
            (Some(r.clone()), envelope(&format!("p{k}"), r))
        }
        1 => {
            let mut r = record(1000 + k, 0, "ListBuckets", "s3", true);
            r["sourceIPAddress"] = json!({"patient": "Jane Doe"});
            r["awsRegion"] = json!(["us-east-1", "\u{1b}[2J"]);
            (Some(r.clone()), envelope(&format!("p{k}"), r))
        }
        2 => (
            None,
            r#"{"version":"0","detail-type":"AWS API Call via CloudTrail","detail":{"eventID":"#
                .to_string(),
        ),
        3 => (
            None,
            json!({"version": "0", "detail-type": "Forged\n== 0 alerts \u{1b}[31m", "detail": {}})
                .to_string(),
        ),
        4 => (None, "[".repeat(5000) + &"]".repeat(5000)),
        _ => (None, "\u{0}\u{1}not json at all\u{fffd}".to_string()),
    }
}

/// Rule files a tired operator or an attacker drops into the watched folder, among them an
/// alias bomb and 20,000 nested sequences that once exhausted memory and the stack.
fn hostile_rules(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let files = [
        ("bad_timespan.yml", "title: t\nid: t\ncorrelation:\n  type: event_count\n  rules: [x]\n  timespan: 5é\n  condition: {gte: 1}\n".as_bytes().to_vec()),
        ("garbage.yml", vec![0xff, 0xfe, 0x00, 0x9f, b'{', b'\n']),
        ("broken.yml", b"title: [unclosed\ndetection: {sel: {a: 1}\n".to_vec()),
        ("unknown_field.yml", b"title: u\nid: u\nlogsource: {product: aws}\ndetection:\n  sel: {eventName|nosuchmodifier: x}\n  condition: sel\n".to_vec()),
        ("alias_bomb.yml", alias_bomb().into_bytes()),
        ("deep.yml", format!("title: deep\nx:\n{}1\n", "- ".repeat(20_000)).into_bytes()),
    ];
    files
        .into_iter()
        .map(|(name, body)| {
            let p = dir.join(name);
            std::fs::write(&p, body).unwrap();
            p
        })
        .collect()
}

/// "Billion laughs": under 700 bytes, 10^9 nodes once its aliases are expanded.
fn alias_bomb() -> String {
    let mut bomb = format!("a: &a [{}]\n", ["\"lol\""; 9].join(","));
    for (prev, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
        bomb.push_str(&format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 9].join(",")
        ));
    }
    bomb
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// (alert id, kind, count) of what `trailwatch replay` raises for `records`.
fn replayed(records: &[Value], dir: &std::path::Path) -> BTreeSet<(String, String, u64)> {
    let file = dir.join("records.jsonl");
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&file, text).unwrap();
    replayed_file(&file, dir)
}

/// (alert id, kind, count) of what `trailwatch replay` raises for the file `file`, without
/// rate caps (Kafka applies them per partition, replay over the whole stream).
fn replayed_file(file: &std::path::Path, dir: &std::path::Path) -> BTreeSet<(String, String, u64)> {
    std::fs::write(dir.join("hmac.key"), "test-secret-0123456789abcdef\n").unwrap();
    let out = trailwatch(&[
        "replay",
        "--rules",
        root().join("rules").to_str().unwrap(),
        "--quiet",
        "--rate-per-rule",
        "0",
        "--rate-global",
        "0",
        "--hmac-key-file",
        dir.join("hmac.key").to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(&out.stdout).iter().map(key).collect()
}

fn key(a: &Value) -> (String, String, u64) {
    (
        a["alert_id"].as_str().unwrap_or_default().to_string(),
        a["kind"].as_str().unwrap_or_default().to_string(),
        a["count"].as_u64().unwrap_or_default(),
    )
}

/// Waits until the service answers /healthz; false if it did not within 20 s.
fn comes_up(metrics: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if http_get(metrics, "/healthz").contains("200") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn kill_9(service: Service) {
    let mut service = service;
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &service.0.id().to_string()])
        .status();
    let _ = service.0.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn sqs_keeps_every_alert_through_poison_hostile_rules_kill_9_and_an_sns_outage() {
    let Some(url) = moto() else { return };
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| (u64::from(std::process::id()) * 2_654_435_761) | 1);
    println!("chaos seed {seed} (CHAOS_SEED={seed} replays this run)");
    let mut rng = Rng(seed);
    let began = Instant::now();
    let (sqs, sns) = clients(&url);
    let q = queues_with(&sqs, &sns, &format!("chaos-{}", std::process::id()), true).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    copy_dir(&root().join("rules"), &rules);
    let up = Arc::new(AtomicBool::new(true));
    let proxy = outage_proxy(url.trim_start_matches("http://").to_string(), up.clone()).await;
    let sns_lines = format!("endpoint_url = {proxy:?}\n");
    // Messages a killed process held come back after this visibility timeout.
    let sqs_lines = "visibility_timeout_seconds = 6\n";
    let log = dir.path().join("service.log");
    let extra = || Extra {
        sqs: sqs_lines,
        sns: &sns_lines,
        rules: Some(&rules),
        log: Some(&log),
        ..Extra::default()
    };

    let clean = clean_records();
    let mut expected_records = clean.clone();
    let mut bodies: Vec<Vec<String>> = Vec::new();
    for round in 0..ROUNDS {
        let mut chunk: Vec<String> = clean[round * PER_ROUND..(round + 1) * PER_ROUND]
            .iter()
            .map(|r| envelope(r["eventID"].as_str().unwrap(), r.clone()))
            .collect();
        let (record, body) = poison(round);
        expected_records.extend(record);
        let at = rng.below(chunk.len() as u64 + 1) as usize;
        chunk.insert(at, body);
        bodies.push(chunk);
    }
    let expected = replayed(&expected_records, dir.path());
    assert!(expected.len() >= ROUNDS * PER_ROUND, "{expected:?}");

    let (mut service, mut metrics) = start_with(&url, &q, dir.path(), extra());
    assert!(comes_up(&metrics), "first start (log: {})", log.display());
    for (round, chunk) in bodies.into_iter().enumerate() {
        if round == 4 {
            up.store(false, Ordering::SeqCst); // SNS outage for two rounds
        }
        if round == 6 {
            up.store(true, Ordering::SeqCst);
        }
        for body in chunk {
            send(&sqs, &q.events, body).await;
        }
        if round == 2 {
            let dropped = hostile_rules(&rules);
            let rejected = r#"trailwatch_rule_reloads_total{result="rejected"}"#;
            let text = metrics_with(&metrics, &[rejected.to_string()]);
            assert!(
                text.contains(rejected),
                "hostile rules were not rejected: {text}"
            );
            assert!(comes_up(&metrics), "the service died on hostile rules");
            for p in dropped {
                std::fs::remove_file(p).unwrap();
            }
        }
        tokio::time::sleep(Duration::from_millis(100 + rng.below(1400))).await;
        kill_9(service);
        (service, metrics) = start_with(&url, &q, dir.path(), extra());
        assert!(
            comes_up(&metrics),
            "restart {round} did not come up (log: {})",
            log.display()
        );
    }

    // moto's FIFO queue forgets a de-duplication id once its message is deleted (AWS keeps it
    // five minutes), so let the last process redeliver what the killed ones held before any
    // alert is taken off the queue.
    tokio::time::sleep(Duration::from_secs(12)).await;
    // Collect until every expected alert arrived and nothing new came for 5 s.
    let want: BTreeSet<String> = expected.iter().map(|k| k.0.clone()).collect();
    let started = Instant::now();
    let mut got: Vec<Value> = Vec::new();
    let mut last_new = Instant::now();
    loop {
        for body in receive_once(&sqs, &q.alerts).await {
            got.push(serde_json::from_str(&body).unwrap());
            last_new = Instant::now();
        }
        let ids: BTreeSet<String> = got.iter().map(|a| key(a).0).collect();
        let complete = want.is_subset(&ids);
        if (complete && last_new.elapsed() > Duration::from_secs(5))
            || started.elapsed() > Duration::from_secs(180)
        {
            break;
        }
    }
    stop_service(service);
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    for a in &got {
        *times.entry(key(a).0).or_default() += 1;
    }
    let twice: Vec<&Value> = got
        .iter()
        .filter(|a| times.get(&key(a).0).is_some_and(|n| *n > 1))
        .collect();
    assert!(twice.is_empty(), "alert ids delivered twice: {twice:?}");
    let seen: BTreeSet<(String, String, u64)> = got.iter().map(key).collect();
    let missing: Vec<_> = expected.difference(&seen).collect();
    let unexpected: Vec<_> = seen.difference(&expected).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "missing {missing:?}\nunexpected {unexpected:?}\n(log: {})",
        log.display()
    );
    let text = serde_json::to_string(&got).unwrap();
    assert!(
        !text.contains("Jane Doe"),
        "nested content reached an alert"
    );
    println!(
        "SQS chaos: {} alerts expected and received, {} kills, in {:.0?}",
        expected.len(),
        ROUNDS,
        began.elapsed()
    );
}

/// The same chaos on a Kafka consumer group of two members (tansu): generated traffic with
/// poison mixed in, produced while the members are killed with `kill -9` ten times (each
/// restarted at once), SNS down for a while, hostile rules dropped into the shared folder.
/// Every first alert a replay gives arrives, nothing else but roll-ups and storms of the same
/// replay, no alert id twice.
#[tokio::test(flavor = "multi_thread")]
async fn kafka_keeps_every_alert_through_poison_hostile_rules_kill_9_and_an_sns_outage() {
    let (Some(url), Some(brokers)) = (moto(), kafka()) else {
        return;
    };
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| (u64::from(std::process::id()) * 2_246_822_519) | 1);
    println!("chaos seed {seed} (CHAOS_SEED={seed} replays this run)");
    let mut rng = Rng(seed);
    let began = Instant::now();
    let (sqs, sns) = clients(&url);
    let tag = format!("chaos-k-{}", std::process::id());
    let q = queues_with(&sqs, &sns, &tag, true).await;
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);

    // Generated traffic with the attack scenarios, poison at random places.
    let out = trailwatch_e2e::load_test(&[
        "generate",
        "--events",
        "1500",
        "--seed",
        "11",
        "-o",
        d("clean.jsonl").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = std::fs::read_to_string(d("clean.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    // The poison records' time is moved to the generated traffic's (they stay hostile in
    // shape): a record years later than the traffic ahead of it would move replay's one
    // watermark past every window, and not that of the partitions it does not land in, so
    // the two would rightly differ in their roll-ups.
    let traffic_time: String = serde_json::from_str::<Value>(&lines[0]).unwrap()["eventTime"]
        .as_str()
        .unwrap()
        .to_string();
    for k in 0..12 {
        let at = rng.below(lines.len() as u64) as usize;
        let line = poison(k).1.replace("2026-11-01T10:00:00Z", &traffic_time);
        lines.insert(at, line.replace('\n', "\\n"));
    }
    std::fs::write(d("events.jsonl"), lines.join("\n") + "\n").unwrap();
    let expected = replayed_file(&d("events.jsonl"), dir.path());
    let firsts: BTreeSet<String> = expected
        .iter()
        .filter(|k| k.1 == "alert")
        .map(|k| k.0.clone())
        .collect();
    let ids: BTreeSet<String> = expected.iter().map(|k| k.0.clone()).collect();
    assert!(firsts.len() > 30, "{}", firsts.len());

    let rules = d("rules");
    copy_dir(&root().join("rules"), &rules);
    let up = Arc::new(AtomicBool::new(true));
    let proxy = outage_proxy(url.trim_start_matches("http://").to_string(), up.clone()).await;
    let sns_lines = format!("endpoint_url = {proxy:?}\n");
    let extra = Extra {
        sns: &sns_lines,
        alerts: "per_rule_per_minute = 0\nglobal_per_minute = 0\n",
        ..Extra::default()
    };
    create_topic(&brokers, &tag);
    let start =
        |name: String| start_kafka_with(&url, &q, &d(&name), &brokers, &tag, &tag, &rules, &extra);
    let mut members = [start("a0".into()), start("b0".into())];
    for (_, metrics) in &members {
        assert!(comes_up(metrics), "first start");
    }
    std::thread::sleep(Duration::from_secs(2));
    let mut producer = produce(&brokers, &tag, &d("events.jsonl"), 20);
    for round in 0..ROUNDS {
        tokio::time::sleep(Duration::from_millis(800 + rng.below(1200))).await;
        match round {
            2 => {
                let dropped = hostile_rules(&rules);
                let rejected = r#"trailwatch_rule_reloads_total{result="rejected"}"#;
                let text = metrics_with(&members[0].1, &[rejected.to_string()]);
                assert!(
                    text.contains(rejected),
                    "hostile rules were not rejected: {text}"
                );
                for p in dropped {
                    std::fs::remove_file(p).unwrap();
                }
            }
            4 => up.store(false, Ordering::SeqCst),
            6 => up.store(true, Ordering::SeqCst),
            _ => {}
        }
        let victim = round % 2;
        let name = format!("{}{}", ["a", "b"][victim], round + 1);
        // tansu (unlike Kafka) keeps a dead member's partitions assigned to it until a member
        // joins after the session timeout (6 s), so the restart waits that long.
        let placeholder = Service(std::process::Command::new("true").spawn().unwrap());
        let (service, _) = std::mem::replace(&mut members[victim], (placeholder, String::new()));
        kill_9(service);
        tokio::time::sleep(Duration::from_secs(8)).await;
        members[victim] = start(name.clone());
        assert!(
            comes_up(&members[victim].1),
            "restart {name} did not come up (log: {})",
            d(&name).join("log").display()
        );
    }
    up.store(true, Ordering::SeqCst);
    wait_exit(&mut producer);
    // Let the group settle and redeliver what the killed members held before anything is
    // taken off the FIFO queue (moto forgets a de-duplication id once its message is gone).
    tokio::time::sleep(Duration::from_secs(20)).await;
    let started = Instant::now();
    let mut got: Vec<Value> = Vec::new();
    let mut last_new = Instant::now();
    loop {
        for body in receive_once(&sqs, &q.alerts).await {
            got.push(serde_json::from_str(&body).unwrap());
            last_new = Instant::now();
        }
        let seen: BTreeSet<String> = got.iter().map(|a| key(a).0).collect();
        if (firsts.is_subset(&seen) && last_new.elapsed() > Duration::from_secs(5))
            || started.elapsed() > Duration::from_secs(180)
        {
            break;
        }
    }
    for (service, _) in members {
        stop_service(service);
    }
    let mut times: BTreeMap<String, usize> = BTreeMap::new();
    for a in &got {
        *times.entry(key(a).0).or_default() += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "alert ids delivered twice: {twice:?}");
    let seen: BTreeSet<String> = times.into_keys().collect();
    let missing: Vec<_> = firsts.difference(&seen).collect();
    let unexpected: Vec<&Value> = got.iter().filter(|a| !ids.contains(&key(a).0)).collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        let kept = dir.keep();
        let text: String = got.iter().map(|a| format!("{a}\n")).collect();
        std::fs::write(kept.join("got.jsonl"), text).unwrap();
        panic!(
            "{} of {} first alerts missing: {missing:?}\nunexpected: {unexpected:?}\n(replay input, logs and got.jsonl kept in {})",
            missing.len(),
            firsts.len(),
            kept.display()
        );
    }
    println!(
        "Kafka chaos: {} first alerts expected and received ({} in all), {} kills, in {:.0?}",
        firsts.len(),
        got.len(),
        ROUNDS,
        began.elapsed()
    );
}
