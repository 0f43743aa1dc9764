//! `trailwatch run` on a Kafka consumer group (tansu, started by scripts/test.sh, which sets
//! KAFKA_BROKERS) with alerts to SNS (moto): the alerts equal what a replay of the same events
//! gives, however the group rebalances, and a crashed member's partitions lose nothing.

mod live;

use live::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use trailwatch::metrics::Metrics;
use trailwatch_e2e::{json_lines, load_test, trailwatch};

/// Generated traffic with the attack scenarios, and the alerts a replay of it gives.
struct Input {
    _dir: tempfile::TempDir,
    events: PathBuf,
    /// First alerts (`kind: alert`) by id, with their rule id.
    alerts: BTreeMap<String, String>,
    /// Roll-ups and storms by id: live processing gives those whose windows have closed.
    later: BTreeSet<String>,
}

fn input(events: u32) -> Input {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let out = load_test(&[
        "generate",
        "--events",
        &events.to_string(),
        "--seed",
        "9",
        "--truth",
        p("truth.jsonl").to_str().unwrap(),
        "-o",
        p("events.jsonl").to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (alerts, later) = replayed(&p("events.jsonl"));
    assert!(
        alerts.len() > 50,
        "enough alerts to be meaningful: {}",
        alerts.len()
    );
    Input {
        events: p("events.jsonl"),
        _dir: dir,
        alerts,
        later,
    }
}

/// First alerts (by id, with their rule id) and the ids of roll-ups and storms that a replay
/// of `events` gives.
fn replayed(events: &std::path::Path) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let key = events.with_file_name("hmac.key");
    std::fs::write(&key, "test-secret-0123456789abcdef\n").unwrap();
    let rules = trailwatch_e2e::root().join("rules");
    let out = trailwatch(&[
        "replay",
        "-r",
        rules.to_str().unwrap(),
        "--quiet",
        "--hmac-key-file",
        key.to_str().unwrap(),
        events.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let mut alerts = BTreeMap::new();
    let mut later = BTreeSet::new();
    for a in json_lines(&out.stdout) {
        let id = a["alert_id"].as_str().unwrap().to_string();
        if a["kind"] == "alert" {
            alerts.insert(id, a["rule"]["id"].as_str().unwrap().to_string());
        } else {
            later.insert(id);
        }
    }
    (alerts, later)
}

impl Input {
    /// The events as a broker may deliver them: one in ten swapped with a later event of its
    /// account (seconds apart in event time, well within the lateness) and one in twenty sent
    /// again up to 50 records later. A replay of it gives the clean input's alerts (checked
    /// here); so must every live path.
    fn messy(&self) -> PathBuf {
        let text = std::fs::read_to_string(&self.events).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        let account = |l: &str| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["recipientAccountId"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let mut seed = 9u64;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for i in 0..lines.len() {
            if next(10) == 0 {
                let same = (i + 1..lines.len().min(i + 10))
                    .find(|&j| account(lines[j]) == account(lines[i]));
                if let Some(j) = same {
                    lines.swap(i, j);
                }
            }
        }
        let mut out: Vec<&str> = Vec::with_capacity(lines.len() * 11 / 10);
        let mut again: Vec<(usize, &str)> = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            out.push(l);
            if next(20) == 0 {
                again.push((i + 1 + next(50) as usize, l));
            }
            out.extend(again.iter().filter(|(at, _)| *at == i).map(|(_, l)| *l));
        }
        out.extend(
            again
                .iter()
                .filter(|(at, _)| *at >= lines.len())
                .map(|(_, l)| *l),
        );
        let path = self.events.with_file_name("messy.jsonl");
        std::fs::write(&path, out.join("\n") + "\n").unwrap();
        assert!(
            out.len() > lines.len() + lines.len() / 40,
            "{} duplicates",
            out.len() - lines.len()
        );
        let (alerts, later) = replayed(&path);
        assert_eq!(alerts, self.alerts, "replay: the same first alerts");
        assert_eq!(later, self.later, "replay: the same roll-ups");
        path
    }

    /// How many records the input holds (one a line).
    fn records(&self) -> usize {
        std::fs::read_to_string(&self.events)
            .unwrap()
            .lines()
            .count()
    }
}

/// Receives alerts until every expected first alert arrived (or 120 s passed), then one look
/// more for stragglers and duplicates.
async fn collect(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    want: &BTreeMap<String, String>,
) -> Vec<Value> {
    let mut got: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let seen: BTreeSet<&str> = got.iter().filter_map(|a| a["alert_id"].as_str()).collect();
        if want.keys().all(|k| seen.contains(k.as_str())) || Instant::now() > deadline {
            break;
        }
        for body in receive(sqs, queue, 1).await {
            got.push(serde_json::from_str(&body).unwrap());
        }
    }
    for body in one_more_look(sqs, queue).await {
        got.push(serde_json::from_str(&body).unwrap());
    }
    got
}

/// Every expected first alert arrived with its rule id, nothing else but closed roll-ups, and
/// (when `exactly_once`) no alert id twice.
fn assert_same_alerts(got: &[Value], input: &Input, exactly_once: bool) {
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for a in got {
        *count.entry(a["alert_id"].as_str().unwrap()).or_default() += 1;
    }
    let missing: Vec<&String> = input
        .alerts
        .keys()
        .filter(|k| !count.contains_key(k.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} alerts missing: {missing:?}",
        missing.len(),
        input.alerts.len()
    );
    for a in got {
        let id = a["alert_id"].as_str().unwrap();
        match input.alerts.get(id) {
            Some(rule) => assert_eq!(a["rule"]["id"], rule.as_str()),
            None => assert!(input.later.contains(id), "unexpected alert: {a}"),
        }
    }
    if exactly_once {
        let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "published twice: {twice:?}");
    }
}

/// A member's log lines, without colours.
fn plain_log(dir: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    text.lines()
        .map(|line| {
            let mut out = String::new();
            let mut chars = line.chars();
            while let Some(c) = chars.next() {
                if c == '\u{1b}' {
                    for c in chars.by_ref() {
                        if c == 'm' {
                            break;
                        }
                    }
                } else {
                    out.push(c);
                }
            }
            out
        })
        .collect()
}

/// The members' warnings and errors, printed beside a failed assertion to tell a repeat's
/// cause (a failed delivery or commit, a rebalance error) from a coordinator's overlap.
fn print_warnings(members: &[&std::path::Path]) {
    print_lines(members, |l| {
        (l.contains(" WARN ") || l.contains(" ERROR ")) && !l.contains("geo rules")
    });
}

/// Prints the log lines of `members` that `keep` picks, each after its member's folder.
fn print_lines(members: &[&std::path::Path], keep: impl Fn(&str) -> bool) {
    for dir in members {
        for line in plain_log(dir).into_iter().filter(|l| keep(l)) {
            eprintln!("{}: {line}", dir.display());
        }
    }
}

/// Prints each member's assignments and revocations (shown when a test fails), to tell from a
/// CI log which member held which partition when.
fn print_rebalances(members: &[&std::path::Path]) {
    print_lines(members, |l| {
        l.contains("partitions assigned") || l.contains("partitions revoked")
    });
}

/// Partitions two members owned at the same time, from their logs ("partitions assigned" /
/// "partitions revoked"). A group coordinator must not hand a partition over before its owner
/// revoked it; tansu sometimes does, under load, and then both members process the same events:
/// nothing a consumer can fence without transactions, and each alert still has one id (SNS FIFO
/// topics drop the repeat). Exactly-once publication is asserted only when this is empty.
fn overlapping_ownership(members: &[&std::path::Path]) -> Vec<String> {
    // (time, member, partition, owned from then on)
    let mut changes: Vec<(String, usize, u32, bool)> = Vec::new();
    for (m, dir) in members.iter().enumerate() {
        for plain in plain_log(dir) {
            let owned = if plain.contains("partitions assigned") {
                true
            } else if plain.contains("partitions revoked") {
                false
            } else {
                continue;
            };
            let time = plain
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            let list = plain
                .split("partitions=[")
                .nth(1)
                .and_then(|r| r.split(']').next())
                .unwrap_or_default();
            for p in list.split(',').filter_map(|p| p.trim().parse::<u32>().ok()) {
                changes.push((time.clone(), m, p, owned));
            }
        }
    }
    changes.sort();
    let mut owners: BTreeMap<u32, BTreeSet<usize>> = BTreeMap::new();
    let mut overlaps = Vec::new();
    for (time, m, p, owned) in changes {
        let set = owners.entry(p).or_default();
        if owned {
            set.insert(m);
            if set.len() > 1 {
                overlaps.push(format!("partition {p} owned by members {set:?} at {time}"));
            }
        } else {
            set.remove(&m);
        }
    }
    overlaps
}

/// The Kafka settings of a group named `tag` reading topic `tag`, its state in `{tag}-state`.
fn state_config(brokers: &str, tag: &str) -> trailwatch::config::KafkaConfig {
    serde_json::from_value(serde_json::json!({
        "brokers": brokers,
        "topic": tag,
        "group_id": tag,
        "state_topic": format!("{tag}-state"),
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_on_three_partitions_become_alerts_on_sns() {
    let (Some(url), Some(brokers)) = (moto(), kafka()) else {
        return;
    };
    let (sqs, sns) = clients(&url);
    let tag = format!("k1-{}", std::process::id());
    let q = queues(&sqs, &sns, &tag).await;
    let input = input(2000);
    let mut producer = produce(&brokers, &tag, &input.events, 0);
    wait_exit(&mut producer);
    let dir = tempfile::tempdir().unwrap();
    let (service, metrics) = start_kafka(&url, &q, &dir.path().join("a"), &brokers, &tag, &tag);
    let got = collect(&sqs, &q.alerts, &input.alerts).await;
    assert_same_alerts(&got, &input, true);
    let text = metrics_with(
        &metrics,
        &["trailwatch_kafka_consumer_lag{partition=\"2\"} 0".to_string()],
    );
    // Every record of the input (traffic and scenario events, history included) was read.
    let records = input.records();
    assert!(
        text.contains(&format!("trailwatch_events_total {records}\n")),
        "{records} records: {text}"
    );
    stop_service(service);
}

/// States forged on the state topic before the group starts (a header without a tag, one with
/// a wrong tag, and one genuinely tagged but for another partition), each claiming that the
/// first 200 events of its partition (of about 700) were delivered: none is used, so reading
/// starts at the beginning and every alert of the input is published, once. Trusted, each
/// would have skipped those 200 events (the forged body does not restore, and reading does
/// not go back for that).
#[tokio::test(flavor = "multi_thread")]
async fn forged_partition_states_skip_no_event() {
    use trailwatch::pipeline::seal::SealKey;
    use trailwatch::source::kafka::{ensure_state_topic, Owner, PartitionState, StateStore};
    let (Some(url), Some(brokers)) = (moto(), kafka()) else {
        return;
    };
    let (sqs, sns) = clients(&url);
    let tag = format!("k6-{}", std::process::id());
    let q = queues(&sqs, &sns, &tag).await;
    let input = input(2000);
    let mut producer = produce(&brokers, &tag, &input.events, 0);
    wait_exit(&mut producer);
    let config = state_config(&brokers, &tag);
    ensure_state_topic(&config).await.unwrap();
    let secret =
        trailwatch::alert::read_hmac_key(&input.events.with_file_name("hmac.key")).unwrap();
    let key = SealKey::derive(&secret);
    let forged = |tag: Option<[u8; 32]>| PartitionState {
        offset: 200,
        delivered: 200,
        pipeline: key.seal(b"not a snapshot"),
        tag,
    };
    let mut moved = forged(None);
    let other = Owner {
        group: &tag,
        topic: &tag,
        partition: 0,
    };
    moved.vouch(Some(&key), other);
    let states = [(0, forged(None)), (1, forged(Some([7; 32]))), (2, moved)];
    StateStore::new(&config).unwrap().write(&states).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let member = dir.path().join("a");
    let (service, metrics) = start_kafka(&url, &q, &member, &brokers, &tag, &tag);
    let got = collect(&sqs, &q.alerts, &input.alerts).await;
    assert_same_alerts(&got, &input, true);
    let records = input.records();
    let text = metrics_with(&metrics, &[format!("trailwatch_events_total {records}\n")]);
    assert!(
        text.contains(&format!("trailwatch_events_total {records}\n")),
        "every record read, none skipped: {records}: {text}"
    );
    stop_service(service);
    // A rebalance before the first snapshot reads (and refuses) a state again: which
    // partitions were refused is what counts, not how often.
    let refused: BTreeSet<String> = plain_log(&member)
        .into_iter()
        .filter(|l| l.contains("partition state not used"))
        .filter_map(|l| {
            let at = l.find("partition=")? + "partition=".len();
            Some(l[at..].chars().take_while(char::is_ascii_digit).collect())
        })
        .collect();
    assert_eq!(
        refused,
        BTreeSet::from(["0".to_string(), "1".into(), "2".into()]),
        "each forged state was seen and refused"
    );
}

/// A partition's state larger than a Kafka record may be (brokers and librdkafka refuse records
/// over about 1 MB by default, and remembered event ids alone reach 16 MB) is written in pieces
/// and read back whole by the next owner; a later, smaller state replaces it.
#[tokio::test(flavor = "multi_thread")]
async fn a_state_larger_than_a_record_is_handed_over_whole() {
    use trailwatch::source::kafka::{ensure_state_topic, PartitionState, StateStore};
    let Some(brokers) = kafka() else {
        return;
    };
    let tag = format!("k7-{}", std::process::id());
    let config = state_config(&brokers, &tag);
    ensure_state_topic(&config).await.unwrap();
    let state = |offset: i64, bytes: usize| PartitionState {
        offset,
        delivered: offset + 4,
        pipeline: (0..bytes).map(|i| (i * 7 % 251) as u8).collect(),
        tag: None,
    };
    let (big, small) = (state(5, 3_000_000), state(10, 1000));
    StateStore::new(&config)
        .unwrap()
        .write(&[(0, big.clone()), (1, small.clone())])
        .unwrap();
    // The next owner, another process.
    let next = StateStore::new(&config).unwrap();
    let got = next.read(&[0, 1, 2]).unwrap();
    assert_eq!(got.get(&0), Some(&big), "the big state, whole");
    assert_eq!(got.get(&1), Some(&small));
    assert!(
        !got.contains_key(&2),
        "no state was written for partition 2"
    );
    // Larger and smaller states in turn (pieces rewritten, some deleted): the latest is read.
    for (i, bytes) in [4_000_000, 1_200_000, 3_000_000, 2_000]
        .into_iter()
        .enumerate()
    {
        let later = state(20 + i as i64, bytes);
        next.write(&[(0, later.clone())]).unwrap();
        let got = StateStore::new(&config).unwrap().read(&[0]).unwrap();
        assert_eq!(
            got.get(&0),
            Some(&later),
            "the latest state wins ({bytes} bytes)"
        );
    }
}

/// A member that leaves hands over everything it remembers, a state larger than one Kafka
/// record included: the same events delivered again to the next owner are all recognised as
/// duplicates, and page nobody.
#[tokio::test(flavor = "multi_thread")]
async fn a_redelivered_stream_pages_nobody_after_a_hand_over() {
    let (Some(url), Some(brokers)) = (moto(), kafka()) else {
        return;
    };
    let (sqs, sns) = clients(&url);
    let tag = format!("k8-{}", std::process::id());
    let q = queues(&sqs, &sns, &tag).await;
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    // 10,000 users of one account (so one partition) failing to sign in: their correlation
    // windows and remembered event ids make a state of about 4 MB, more than a record may be
    // (Kafka's default limit is 1 MB; tansu's lies between 2 and 3 MB).
    let events = d("events.jsonl");
    let out = load_test(&[
        "distinct-keys",
        "--count",
        "10000",
        "-o",
        events.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    create_topic(&brokers, &tag);
    let patient = |addr: String, name: &'static str| async move {
        wait_metric_within(&addr, name, 10_000, Duration::from_secs(120)).await
    };
    // What is handed over is written as the member leaves, not by periodic snapshots (of 4 MB,
    // slow in a debug build beside the other live tests).
    let member = |name: &str| {
        let extra = Extra {
            windows: "snapshot_interval = \"1h\"\n",
            ..Extra::default()
        };
        let rules = trailwatch_e2e::root().join("rules");
        start_kafka_with(&url, &q, &d(name), &brokers, &tag, &tag, &rules, &extra)
    };
    let (a, metrics_a) = member("a");
    let mut producer = produce(&brokers, &tag, &events, 0);
    wait_exit(&mut producer);
    // More than once only if a rebalance made the member replay a gap to rebuild state.
    let read = patient(metrics_a.clone(), "trailwatch_events_total").await;
    assert!(read >= 10_000, "the first member read every event: {read}");
    stop_service(a);
    let (b, metrics_b) = member("b");
    let mut producer = produce(&brokers, &tag, &events, 0);
    wait_exit(&mut producer);
    let again = patient(metrics_b.clone(), "trailwatch_events_duplicate_total").await;
    print_warnings(&[&d("a"), &d("b")]);
    assert_eq!(again, 10_000, "every redelivered event recognised");
    assert_eq!(metric(&metrics_b, "trailwatch_alerts_published_total"), 0);
    let handed: Vec<String> = (plain_log(&d("b")).into_iter())
        .filter(|l| l.contains("partitions assigned"))
        .collect();
    assert!(
        handed.iter().any(|l| !l.contains("with_state=0")),
        "the states were handed over: {handed:?}"
    );
    stop_service(b);
}

/// A partition handed over while its stream is quiet still pages, without another event: the
/// four downloads of the "Large PHI Download" scenario wait for the watermark, which only the
/// wall clock moves once the stream stops (`max_delivery_delay`). The first member reads them
/// and leaves before that; the next owner, with no event to read, must page from the
/// handed-over state (the quiet time the first member saw counts, the hand-over's does not).
/// (Before, the restored partition's quiet clock never started: the alert was lost, as in a CI
/// run of `a_killed_member_loses_nothing` whose hand-over fell in that quiet time.)
#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_partition_handed_over_still_pages() {
    let (Some(url), Some(brokers)) = (moto(), kafka()) else {
        return;
    };
    let (sqs, sns) = clients(&url);
    let tag = format!("k9-{}", std::process::id());
    let q = queues(&sqs, &sns, &tag).await;
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let all = std::fs::read_to_string(input(3000).events).unwrap();
    let downloads: String = (all.lines())
        .filter(|l| (34..=37).any(|i| l.contains(&format!("\"scenario-{i:08}\""))))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(d("downloads.jsonl"), downloads).unwrap();
    let (want, _) = replayed(&d("downloads.jsonl"));
    let large_download = "7725af5e-1d83-554c-840c-9c7e89501966";
    assert_eq!(want.values().collect::<Vec<_>>(), [large_download]);
    create_topic(&brokers, &tag);
    let rules = trailwatch_e2e::root().join("rules");
    let extra = Extra {
        windows: "snapshot_interval = \"1s\"\nmax_delivery_delay = \"30s\"\n",
        ..Extra::default()
    };
    let member =
        |name: &str| start_kafka_with(&url, &q, &d(name), &brokers, &tag, &tag, &rules, &extra);
    let (a, metrics_a) = member("a");
    let mut producer = produce(&brokers, &tag, &d("downloads.jsonl"), 0);
    wait_exit(&mut producer);
    assert_eq!(
        wait_metric(&metrics_a, "trailwatch_events_total", 4).await,
        4
    );
    assert_eq!(
        metric(&metrics_a, "trailwatch_alerts_published_total"),
        0,
        "the first member left before the window could close"
    );
    stop_service(a);
    let (b, metrics_b) = member("b");
    let got = collect(&sqs, &q.alerts, &want).await;
    print_warnings(&[&d("a"), &d("b")]);
    let ids: Vec<&str> = got.iter().filter_map(|a| a["alert_id"].as_str()).collect();
    assert_eq!(ids, want.keys().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        metric(&metrics_b, "trailwatch_events_total"),
        0,
        "the next owner read nothing: it paged from the handed-over state"
    );
    assert_eq!(
        metric(&metrics_b, "trailwatch_alerts_published_total"),
        1,
        "the next owner published the page (not the first member as it left)"
    );
    stop_service(b);
}

/// Two members, a third joining and one leaving mid-stream, the events duplicated and reordered
/// (`Input::messy`): the alerts equal a single replay's of the clean events, correlations whose
/// windows span the rebalances included, and none is published twice.
#[tokio::test(flavor = "multi_thread")]
async fn rebalances_neither_forget_nor_repeat() {
    let (Some(url), Some(brokers)) = (moto(), kafka()) else {
        return;
    };
    let (sqs, sns) = clients(&url);
    let tag = format!("k2-{}", std::process::id());
    let q = queues(&sqs, &sns, &tag).await;
    let input = input(3000);
    create_topic(&brokers, &tag);
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let (a, metrics_a) = start_kafka(&url, &q, &d("a"), &brokers, &tag, &tag);
    let (b, _) = start_kafka(&url, &q, &d("b"), &brokers, &tag, &tag);
    std::thread::sleep(Duration::from_secs(2));
    let mut producer = produce(&brokers, &tag, &input.messy(), 300);
    std::thread::sleep(Duration::from_secs(3));
    let (c, metrics_c) = start_kafka(&url, &q, &d("c"), &brokers, &tag, &tag);
    std::thread::sleep(Duration::from_secs(3));
    stop_service(b); // leaves the group cleanly, handing its partitions over
    wait_exit(&mut producer);
    let got = collect(&sqs, &q.alerts, &input.alerts).await;
    let overlaps = overlapping_ownership(&[&d("a"), &d("b"), &d("c")]);
    if !overlaps.is_empty() {
        eprintln!("the coordinator overlapped owners (repeats allowed): {overlaps:?}");
    }
    print_warnings(&[&d("a"), &d("b"), &d("c")]);
    assert_same_alerts(&got, &input, overlaps.is_empty());
    // The first member went through rebalances, and the joiner took partitions over mid-stream.
    let count = |addr: &str, prefix: &str| {
        metrics_with(addr, &[])
            .lines()
            .find_map(|l| l.strip_prefix(prefix).map(str::to_string))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let assigns = count(
        &metrics_a,
        "trailwatch_kafka_rebalances_total{kind=\"assign\"}",
    );
    assert!(assigns >= 2, "{assigns} assignments");
    assert!(
        count(&metrics_c, "trailwatch_events_total") > 0,
        "the joiner processed events"
    );
    stop_service(a);
    stop_service(c);
}

/// `kill -9` of one member mid-stream, restarted as a supervisor (systemd, Kubernetes) would:
/// its partitions restart from their last saved state, events up to the committed offsets only
/// rebuild state, and every expected alert arrives.
///
/// (tansu 0.6 keeps a dead member in the assignment it hands the group leader, so the survivor
/// is not given the dead member's partitions on its own; with Kafka the survivor takes them
/// after `session.timeout.ms`, through the same restore path.)
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_member_loses_nothing() {
    let (Some(url), Some(brokers)) = (moto(), kafka()) else {
        return;
    };
    let (sqs, sns) = clients(&url);
    let tag = format!("k3-{}", std::process::id());
    let q = queues(&sqs, &sns, &tag).await;
    let input = input(3000);
    create_topic(&brokers, &tag);
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let (a, _) = start_kafka(&url, &q, &d("a"), &brokers, &tag, &tag);
    let (mut b, _) = start_kafka(&url, &q, &d("b"), &brokers, &tag, &tag);
    std::thread::sleep(Duration::from_secs(2));
    let mut producer = produce(&brokers, &tag, &input.events, 300);
    std::thread::sleep(Duration::from_secs(4));
    b.0.kill().unwrap(); // SIGKILL: no hand-over at all
    b.0.wait().unwrap();
    // Past the session timeout, so the group has noticed before the restart joins.
    std::thread::sleep(Duration::from_secs(10));
    let (b2, metrics_b2) = start_kafka(&url, &q, &d("b2"), &brokers, &tag, &tag);
    wait_exit(&mut producer);
    let got = collect(&sqs, &q.alerts, &input.alerts).await;
    print_rebalances(&[&d("a"), &d("b"), &d("b2")]);
    // A crash between SNS confirming and the offset commit can repeat that batch's alerts
    // (FIFO topics drop such repeats by alert id), so only completeness is required here.
    assert_same_alerts(&got, &input, false);
    let text = metrics_with(&metrics_b2, &[]);
    assert!(
        text.contains("trailwatch_kafka_rebalances_total{kind=\"assign\"}"),
        "the restarted member rejoined: {text}"
    );
    stop_service(a);
    stop_service(b2);
}

/// Offsets are committed at once after a batch delivers an alert, and otherwise about once a
/// second however small the batches (a commit a batch was a third of the live path's CPU with
/// librdkafka's fetch wait at 10 ms). 600 events at 100 a second, one in the middle alerting:
/// the member is killed (`kill -9`) as soon as its alert is published, so only the commit made
/// at once tells the restarted member that it was delivered (there is no periodic snapshot);
/// the restarted member reads the rest and pages nobody.
#[tokio::test(flavor = "multi_thread")]
async fn commits_follow_deliveries_not_batches() {
    let (Some(url), Some(brokers)) = (moto(), kafka()) else {
        return;
    };
    let (sqs, sns) = clients(&url);
    let tag = format!("k10-{}", std::process::id());
    let q = queues(&sqs, &sns, &tag).await;
    create_topic(&brokers, &tag);
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    let rules = d("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(
        rules.join("stop.yml"),
        "title: Trail stopped\nid: 00000000-0000-4000-8000-000000000010\nlevel: high\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  sel:\n    eventName: StopLogging\n  condition: sel\n",
    )
    .unwrap();
    // Six accounts, so every partition has events.
    let event = |i: usize| {
        let name = if i == 300 {
            "StopLogging"
        } else {
            "DescribeTrails"
        };
        serde_json::json!({"eventID": format!("kc-{i}"), "eventTime": "2026-11-01T10:00:00Z",
            "eventSource": "cloudtrail.amazonaws.com", "eventName": name,
            "recipientAccountId": format!("{:012}", 111_122_223_333u64 + (i % 6) as u64),
            "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::1:user/u{i}")}})
        .to_string()
            + "\n"
    };
    std::fs::write(d("events.jsonl"), (0..600).map(event).collect::<String>()).unwrap();
    let extra = Extra {
        kafka: "\"fetch.wait.max.ms\" = \"10\"\n",
        windows: "snapshot_interval = \"1h\"\n",
        ..Extra::default()
    };
    let member =
        |name: &str| start_kafka_with(&url, &q, &d(name), &brokers, &tag, &tag, &rules, &extra);
    let (a, metrics_a) = member("a");
    // Assigned before the events come, so they are read as they come (in small batches).
    let assigned = "trailwatch_kafka_rebalances_total{kind=\"assign\"}";
    assert!(wait_metric(&metrics_a, assigned, 1).await >= 1, "a joined");
    std::thread::sleep(Duration::from_secs(1));
    let commits_before = metric(&metrics_a, "trailwatch_kafka_commits_total");
    let began = Instant::now();
    let mut producer = produce(&brokers, &tag, &d("events.jsonl"), 100);
    // Alerts are counted after their commit.
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = http_get(&metrics_a, "/metrics");
        let published = Metrics::sample(&text, "trailwatch_alerts_published_total");
        if published.is_some_and(|n| n >= 1.0) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(a); // SIGKILL: no hand-over, no last commit
    let secs = began.elapsed().as_secs_f64();
    let sample = |name| Metrics::sample(&text, name).expect(name) as u64;
    let (batches, commits) = (
        sample("trailwatch_sink_latency_seconds_count"),
        sample("trailwatch_kafka_commits_total") - commits_before,
    );
    println!("{commits} commits for {batches} batches in {secs:.1} s");
    assert_eq!(sample("trailwatch_alerts_published_total"), 1, "{text}");
    // One a second at most, the first at once, and the alert's (one more for slack; a commit a
    // batch would make hundreds).
    assert!(
        batches >= 20 && commits as f64 <= secs + 3.0,
        "{commits} commits for {batches} batches in {secs:.1} s: more than one a second"
    );
    wait_exit(&mut producer);
    // tansu hands a dead member's partitions on only to a member that joins after the session
    // timeout (6 s).
    std::thread::sleep(Duration::from_secs(8));
    let (b, metrics_b) = member("b");
    let read = wait_metric(&metrics_b, "trailwatch_events_total", 250).await;
    std::thread::sleep(Duration::from_secs(2));
    print_warnings(&[&d("a"), &d("b")]);
    assert!(read >= 250, "the restarted member read the rest: {read}");
    assert_eq!(
        metric(&metrics_b, "trailwatch_alerts_published_total"),
        0,
        "the restarted member paged again: the alert's offset was not committed at once"
    );
    let alerts = receive(&sqs, &q.alerts, 1).await;
    assert!(alerts[0].contains("Trail stopped"), "{alerts:?}");
    assert!(one_more_look(&sqs, &q.alerts).await.is_empty());
    stop_service(b);
}

/// A rule added while consuming is picked up without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn rules_reload_while_consuming() {
    let (Some(url), Some(brokers)) = (moto(), kafka()) else {
        return;
    };
    let (sqs, sns) = clients(&url);
    let tag = format!("k4-{}", std::process::id());
    let q = queues(&sqs, &sns, &tag).await;
    create_topic(&brokers, &tag);
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let rule = |n: u32, title: &str, name: &str| {
        format!("title: {title}\nid: 00000000-0000-4000-8000-{n:012}\nlevel: high\nlogsource: {{product: aws, service: cloudtrail}}\ndetection:\n  sel:\n    eventName: {name}\n  condition: sel\n")
    };
    std::fs::write(rules.join("a.yml"), rule(1, "Trail stopped", "StopLogging")).unwrap();
    let (service, metrics) = start_kafka_with(
        &url,
        &q,
        &dir.path().join("a"),
        &brokers,
        &tag,
        &tag,
        &rules,
        &Extra::default(),
    );
    let send_one = |id: &str, name: &str| {
        let file = dir.path().join(format!("{id}.jsonl"));
        let event = serde_json::json!({"eventID": id, "eventTime": "2026-11-01T10:00:00Z",
            "eventSource": "cloudtrail.amazonaws.com", "eventName": name, "recipientAccountId": "111122223333",
            "userIdentity": {"type": "IAMUser", "arn": format!("arn:aws:iam::1:user/{id}")}});
        std::fs::write(&file, event.to_string()).unwrap();
        let mut p = produce(&brokers, &tag, &file, 0);
        wait_exit(&mut p);
    };
    send_one("kr-1", "StopLogging");
    assert!(receive(&sqs, &q.alerts, 1).await[0].contains("Trail stopped"));
    std::fs::write(rules.join("b.yml"), rule(2, "Trail deleted", "DeleteTrail")).unwrap();
    let text = metrics_with(
        &metrics,
        &["trailwatch_rule_reloads_total{result=\"ok\"} 1".to_string()],
    );
    assert!(text.contains("trailwatch_rules_loaded 2"), "{text}");
    send_one("kr-2", "DeleteTrail");
    let bodies = receive(&sqs, &q.alerts, 1).await;
    assert!(
        bodies.first().is_some_and(|b| b.contains("Trail deleted")),
        "{bodies:?}"
    );
    stop_service(service);
}

/// Every member archives what it processed: across a rebalancing group each published alert is
/// in the archive once, the batch records' offset ranges cover every record of every
/// partition, and every member's chain verifies.
#[tokio::test(flavor = "multi_thread")]
async fn a_rebalancing_group_archives_every_alert_once() {
    let (Some(url), Some(brokers)) = (moto(), kafka()) else {
        return;
    };
    let (sqs, sns) = clients(&url);
    let tag = format!("k5-{}", std::process::id());
    let q = queues(&sqs, &sns, &tag).await;
    let input = input(1500);
    create_topic(&brokers, &tag);
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n);
    std::fs::write(d("archive.key"), "archive-secret-0123456789abcdef\n").unwrap();
    let archive_of = |writer: &str| {
        format!(
            "key_file = {:?}\nspool = {:?}\ndir = {:?}\nwriter = \"{writer}\"\nseal_every = \"1s\"\n",
            d("archive.key").display().to_string(),
            d(&format!("spool-{writer}")).display().to_string(),
            d("archive").display().to_string(),
        )
    };
    let rules = trailwatch_e2e::root().join("rules");
    let start = |writer: &str| {
        let extra = Extra {
            archive: &archive_of(writer),
            ..Extra::default()
        };
        start_kafka_with(&url, &q, &d(writer), &brokers, &tag, &tag, &rules, &extra)
    };
    let (a, _) = start("a");
    let (b, _) = start("b");
    std::thread::sleep(Duration::from_secs(2));
    let mut producer = produce(&brokers, &tag, &input.events, 300);
    std::thread::sleep(Duration::from_secs(2));
    let (c, _) = start("c");
    std::thread::sleep(Duration::from_secs(2));
    stop_service(b);
    wait_exit(&mut producer);
    let got = collect(&sqs, &q.alerts, &input.alerts).await;
    let overlaps = overlapping_ownership(&[&d("a"), &d("b"), &d("c")]);
    if !overlaps.is_empty() {
        eprintln!("the coordinator overlapped owners (repeats allowed): {overlaps:?}");
    }
    print_warnings(&[&d("a"), &d("b"), &d("c")]);
    assert_same_alerts(&got, &input, overlaps.is_empty());
    stop_service(a);
    stop_service(c);

    let mut archived: BTreeMap<String, usize> = BTreeMap::new();
    let mut offsets: BTreeMap<i64, BTreeSet<i64>> = BTreeMap::new();
    let mut writers = BTreeSet::new();
    for (header, records) in archive_objects(&d("archive")).await {
        writers.insert(header.writer);
        for r in records {
            match r["kind"].as_str() {
                Some("alert") => {
                    *archived
                        .entry(r["alert"]["alert_id"].as_str().unwrap().to_string())
                        .or_default() += 1
                }
                Some("batch") => {
                    for range in r["range"].as_array().unwrap() {
                        let (p, span) = range.as_str().unwrap().split_once(':').unwrap();
                        let (lo, hi) = span.split_once('-').unwrap();
                        let (lo, hi): (i64, i64) = (lo.parse().unwrap(), hi.parse().unwrap());
                        offsets
                            .entry(p.parse().unwrap())
                            .or_default()
                            .extend(lo..=hi);
                    }
                }
                _ => {}
            }
        }
    }
    assert_eq!(
        writers,
        ["a", "b", "c"].map(String::from).into_iter().collect()
    );
    let published: BTreeSet<String> = got
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_string())
        .collect();
    let twice: Vec<_> = archived.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty() || !overlaps.is_empty(),
        "archived twice: {twice:?}"
    );
    assert_eq!(
        archived.keys().cloned().collect::<BTreeSet<_>>(),
        published,
        "the archive holds what was published"
    );
    let records = input.records();
    let covered: usize = offsets.values().map(|o| o.len()).sum();
    assert_eq!(
        covered, records,
        "every record of every partition is in a batch record"
    );
    for (p, o) in &offsets {
        assert_eq!(
            *o.iter().next().unwrap(),
            0,
            "partition {p} from its first offset"
        );
        assert_eq!(
            o.len() as i64,
            o.iter().last().unwrap() + 1,
            "partition {p} without a hole"
        );
    }
    let out = trailwatch(&[
        "verify-archive",
        "--key-file",
        d("archive.key").to_str().unwrap(),
        d("archive").to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
