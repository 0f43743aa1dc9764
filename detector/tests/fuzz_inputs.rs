//! Issue 12: a structured fuzzer on the stable toolchain, run by `cargo test`.
//!
//! Proptest mutates seed inputs read from `../shared/corpus` (SigmaHQ rules, Panther, Stratus
//! and EventBridge events) and from this repository (the rule pack, configuration examples,
//! snapshots made by running the corpus through the pipeline): byte flips, truncation,
//! splicing two seeds, hostile insertions (deep nesting, huge numbers, `5é`, invalid UTF-8,
//! YAML anchors) and, for JSON, typed mutations (a value replaced by one of another type, a
//! huge number, a deep array). Every input goes to the rule parser and compiler, the event
//! decoder (through the whole pipeline), the configuration loader or snapshot restore, and must
//! give `Ok` or a typed `Err`, never a panic. What is accepted is then used: a fuzzed rule set
//! matches events, a restored state processes events.
//!
//! The number of cases is fixed (not a time budget), so a run is reproducible in length;
//! `PROPTEST_CASES=20000 cargo test -p trailwatch --test fuzz_inputs` fuzzes longer, and a
//! failure is shrunk and saved in `fuzz_inputs.proptest-regressions` to be replayed first.
//! docs/FUZZING.md has the cargo-fuzz targets for coverage-guided runs.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value as Json;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use trailwatch::alert::Alert;
use trailwatch::engine::RuleSet;
use trailwatch::pipeline::{Pipeline, Settings};
use trailwatch::rule::{parse_file, Placeholders};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn corpus() -> PathBuf {
    let dir = root().join("../shared/corpus");
    assert!(
        dir.is_dir(),
        "the test corpus is missing: {} (see README.md)",
        dir.display()
    );
    dir
}

fn read_dir_files(dir: &Path, ext: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Inserted at random places: each has broken a parser somewhere.
const HOSTILE: &[&str] = &[
    "5é",
    "é",
    "\u{10FFFF}",
    "\u{FEFF}",
    "\u{0660}",
    "\0",
    "\\ud800",
    "\\u0000",
    "99999999999999999999999999999",
    "-9223372036854775809",
    "18446744073709551616",
    "1e999",
    "-1",
    "NaN",
    "null",
    "true",
    "[]",
    "{}",
    "\"",
    "'",
    "\n",
    "\n- ",
    ": ",
    "*a",
    "&a ",
    "!!binary ",
    "%TAG ",
    "---\n",
    "|",
    "(",
    ")",
    "not ",
    "\\",
    "%p%",
    "|re",
    "|base64offset",
    "|windash",
    "|wide",
    "|expand",
    "|cidr",
    "|fieldref",
    "|gt",
    "|minute",
    "|all",
];

#[derive(Debug, Clone)]
enum Op {
    /// Flip one bit.
    Flip(Index, u8),
    /// Cut the input here.
    Truncate(Index),
    /// Remove a run.
    Delete(Index, usize),
    /// Insert a hostile token.
    Insert(Index, usize),
    /// Insert a token repeated (deep nesting, long runs).
    Repeat(Index, usize, u16),
    /// Replace the tail with the tail of another seed.
    Splice(Index, Index, Index),
    /// Duplicate a run.
    Duplicate(Index, usize),
    /// Set one byte (invalid UTF-8 included).
    Byte(Index, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let n = HOSTILE.len();
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Op::Flip(i, b)),
        any::<Index>().prop_map(Op::Truncate),
        (any::<Index>(), 1usize..64).prop_map(|(i, l)| Op::Delete(i, l)),
        (any::<Index>(), 0..n).prop_map(|(i, t)| Op::Insert(i, t)),
        (any::<Index>(), 0..n, 2u16..3000).prop_map(|(i, t, k)| Op::Repeat(i, t, k)),
        (any::<Index>(), any::<Index>(), any::<Index>()).prop_map(|(a, s, b)| Op::Splice(a, s, b)),
        (any::<Index>(), 1usize..256).prop_map(|(i, l)| Op::Duplicate(i, l)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Op::Byte(i, b)),
    ]
}

/// Applies `ops` to a copy of `seed`; `seeds` are the other inputs to splice from.
fn mutate(seed: &[u8], ops: &[Op], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for op in ops {
        let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len + 1) };
        match op {
            Op::Flip(i, bit) if !b.is_empty() => {
                let p = i.index(b.len());
                b[p] ^= 1 << bit;
            }
            Op::Truncate(i) => b.truncate(at(i, b.len())),
            Op::Delete(i, l) => {
                let p = at(i, b.len());
                let end = (p + l).min(b.len());
                b.drain(p..end);
            }
            Op::Insert(i, t) => {
                let p = at(i, b.len());
                b.splice(p..p, HOSTILE[*t].bytes());
            }
            Op::Repeat(i, t, k) => {
                let p = at(i, b.len());
                b.splice(p..p, HOSTILE[*t].repeat(*k as usize).into_bytes());
            }
            Op::Splice(a, s, c) => {
                let other = &seeds[s.index(seeds.len())];
                b.truncate(at(a, b.len()));
                b.extend_from_slice(&other[at(c, other.len())..]);
            }
            Op::Duplicate(i, l) => {
                let p = at(i, b.len());
                let end = (p + l).min(b.len());
                let run = b[p..end].to_vec();
                b.splice(p..p, run);
            }
            Op::Byte(i, v) if !b.is_empty() => {
                let p = i.index(b.len());
                b[p] = *v;
            }
            _ => {}
        }
    }
    b
}

/// A typed mutation of a JSON document: the `n`-th value (in walk order) is replaced.
#[derive(Debug, Clone)]
enum JsonOp {
    Replace(Index, u8),
}

fn json_op() -> impl Strategy<Value = JsonOp> {
    (any::<Index>(), any::<u8>()).prop_map(|(i, k)| JsonOp::Replace(i, k))
}

fn hostile_json(kind: u8) -> Json {
    match kind % 16 {
        0 => Json::Null,
        1 => Json::Bool(true),
        2 => serde_json::json!(u64::MAX),
        3 => serde_json::json!(i64::MIN),
        4 => serde_json::json!(-1),
        5 => serde_json::json!(1e308),
        6 => serde_json::json!("5é"),
        7 => serde_json::json!(""),
        8 => serde_json::json!([]),
        9 => serde_json::json!({}),
        10 => {
            let mut v = Json::Null;
            for _ in 0..200 {
                v = Json::Array(vec![v]);
            }
            v
        }
        11 => serde_json::json!("é".repeat(1000)),
        12 => serde_json::json!(0),
        13 => serde_json::json!(u32::MAX),
        14 => serde_json::json!("9999-99-99T99:99:99Z"),
        _ => serde_json::json!([1, "a", null, {"k": []}]),
    }
}

fn count(v: &Json) -> usize {
    1 + match v {
        Json::Array(a) => a.iter().map(count).sum(),
        Json::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// Replaces the `target`-th value of `v` (pre-order); returns how many were visited.
fn replace_nth(v: &mut Json, target: usize, with: &Json) -> usize {
    if target == 0 {
        *v = with.clone();
        return 1;
    }
    let mut seen = 1;
    match v {
        Json::Array(a) => {
            for x in a {
                seen += replace_nth(x, target - seen, with);
                if seen > target {
                    break;
                }
            }
        }
        Json::Object(o) => {
            for x in o.values_mut() {
                seen += replace_nth(x, target - seen, with);
                if seen > target {
                    break;
                }
            }
        }
        _ => {}
    }
    seen
}

fn mutate_json(doc: &Json, ops: &[JsonOp]) -> Json {
    let mut doc = doc.clone();
    for JsonOp::Replace(i, k) in ops {
        let n = count(&doc);
        replace_nth(&mut doc, i.index(n), &hostile_json(*k));
    }
    doc
}

/// Runs `f`, turning a panic into a proptest failure that names `what`.
fn no_panic<T>(what: &str, input: &[u8], f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        TestCaseError::fail(format!(
            "{what} panicked: {msg}\ninput ({} bytes): {:?}",
            input.len(),
            String::from_utf8_lossy(&input[..input.len().min(2_000)])
        ))
    })
}

// ---------------------------------------------------------------------------------------
// Seeds

fn rule_seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut seeds = read_dir_files(&corpus().join("sigma-cloudtrail"), "yml");
        seeds.extend(read_dir_files(&corpus().join("sigma-correlation-examples"), "yml"));
        seeds.extend(read_dir_files(&root().join("rules"), "yml"));
        assert!(seeds.len() > 90, "{} rule seeds", seeds.len());
        // Shapes the corpus lacks: anchors, multi-document collections, placeholders.
        seeds.push(b"title: t\nid: x\nlogsource: {product: aws}\nsel: &s {eventName: [A, B]}\ndetection:\n  sel: *s\n  other: {userAgent|re|i: '^aws-(cli|sdk)/\\d+'}\n  condition: sel and not other\n".to_vec());
        seeds.push(b"action: global\ntitle: g\nlogsource: {product: aws}\ndetection:\n  condition: sel\n---\nid: a\ndetection:\n  sel: {eventName|expand: '%p%', sourceIPAddress|cidr: 10.0.0.0/8}\n---\naction: repeat\nid: b\ndetection:\n  sel: {eventName|windash|contains: ' -x', eventTime|hour: 3}\n".to_vec());
        seeds
    })
}

fn placeholders() -> Placeholders {
    let mut p = Placeholders::new();
    p.insert("p".into(), vec!["Alice".into(), "bob*".into(), "5é".into()]);
    p
}

fn event_seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut seeds = Vec::new();
        for set in ["panther", "stratus", "eventbridge"] {
            let text = std::fs::read_to_string(corpus().join(set).join("events.jsonl")).unwrap();
            // Every fifth event keeps the seed set varied and small.
            seeds.extend(text.lines().step_by(5).map(|l| l.as_bytes().to_vec()));
        }
        let one = String::from_utf8(seeds[0].clone()).unwrap();
        let two = String::from_utf8(seeds[1].clone()).unwrap();
        seeds.push(format!("{{\"Records\":[{one},{two}]}}").into_bytes());
        seeds.push(format!("[{one},{two}]").into_bytes());
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": one});
        seeds.push(sns.to_string().into_bytes());
        seeds
    })
}

/// The shipped pack plus SigmaHQ's rules, compiled once.
fn full_set() -> &'static RuleSet {
    static SET: OnceLock<RuleSet> = OnceLock::new();
    SET.get_or_init(|| {
        let paths = [root().join("rules"), corpus().join("sigma-cloudtrail")];
        let (rules, errors) = trailwatch::rule::load_paths(&paths, &Placeholders::new());
        assert!(errors.is_empty(), "{errors:?}");
        RuleSet::compile(rules).unwrap()
    })
}

fn settings() -> Settings {
    Settings::default()
}

/// Events that drive the correlations of the pack: sign-in failures, then a success.
fn burst(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            serde_json::json!({
                "eventVersion": "1.09", "eventID": format!("b{i}"),
                "eventTime": format!("2026-11-01T10:0{}:{:02}Z", i / 60 % 10, i % 60),
                "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin",
                "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.9", "recipientAccountId": "111122223333",
                "userIdentity": {"type": "IAMUser", "accountId": "111122223333", "userName": format!("u{}", i % 3), "arn": "arn:aws:iam::111122223333:user/u"},
                "responseElements": {"ConsoleLogin": if i % 7 == 6 { "Success" } else { "Failure" }},
                "errorMessage": "Failed authentication"
            })
            .to_string()
            .into_bytes()
        })
        .collect()
}

fn run_events(p: &mut Pipeline<'_>, events: &[Vec<u8>]) -> Vec<Alert> {
    let mut out = Vec::new();
    for e in events {
        // A decode error is a typed outcome; only a panic fails.
        let _ = p.decode(e, &mut out);
    }
    p.flush(&mut out);
    out
}

/// Pipeline states (the whole snapshot) at several points of a run over the corpus.
fn state_seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let set = full_set();
        let mut p = Pipeline::new(set, None, &settings(), None);
        let mut seeds = vec![p.snapshot()];
        let mut events = burst(30);
        events.extend(event_seeds().iter().take(40).cloned());
        for chunk in events.chunks(12) {
            let mut out = Vec::new();
            for e in chunk {
                let _ = p.decode(e, &mut out);
            }
            seeds.push(p.snapshot());
        }
        seeds
    })
}

/// The parts of a pipeline state: (correlation, gate, dedup).
fn split_state(bytes: &[u8]) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let nl = bytes.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&bytes[..nl]).ok()?;
    let f: Vec<&str> = header.split(' ').collect();
    let (c, g): (usize, usize) = (f.get(3)?.parse().ok()?, f.get(4)?.parse().ok()?);
    let body = &bytes[nl + 1..];
    Some((
        body[..c].to_vec(),
        body[c..c + g].to_vec(),
        body[c + g..].to_vec(),
    ))
}

fn join_state(correlation: &[u8], gate: &[u8], dedup: &[u8]) -> Vec<u8> {
    let mut body = correlation.to_vec();
    body.extend_from_slice(gate);
    body.extend_from_slice(dedup);
    let sum = xxhash_rust::xxh3::xxh3_64(&body);
    let mut out = format!(
        "TRAILWATCH-PIPELINE 1 {sum:016x} {} {} {}\n",
        correlation.len(),
        gate.len(),
        dedup.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    out
}

/// A correlation snapshot with its checksum recomputed over `json`.
fn correlation_snapshot(json: &[u8]) -> Vec<u8> {
    let sum = xxhash_rust::xxh3::xxh3_64(json);
    let mut out = format!("TRAILWATCH-STATE 1 {sum:016x}\n").into_bytes();
    out.extend_from_slice(json);
    out
}

fn correlation_json(part: &[u8]) -> Option<Json> {
    let nl = part.iter().position(|&b| b == b'\n')?;
    serde_json::from_slice(&part[nl + 1..]).ok()
}

const CONFIG_SEEDS: &[&str] = &[
    "[rules]\npaths = [\"rules\"]\nwatch = true\n[source.sqs]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/111122223333/q\"\npollers = 2\nvisibility_timeout_seconds = 30\n[sink.sns]\ntopic_arn = \"arn:aws:sns:us-east-1:111122223333:t\"\n[windows]\nlateness = \"5m\"\nmax_delivery_delay = \"5m\"\ndedup_horizon = \"24h\"\ndedup_max_ids = 1000000\nstate_file = \"state.snap\"\nsnapshot_interval = \"1s\"\n[metrics]\nlisten = \"127.0.0.1:9898\"\n[alerts]\nformat = \"native\"\nper_rule_per_minute = 60\nglobal_per_minute = 600\n",
    "[rules]\npaths = [\"rules\"]\n[source.kafka]\nbrokers = \"127.0.0.1:9092\"\ntopic = \"t\"\ngroup_id = \"g\"\n[sink]\njsonl = \"alerts.jsonl\"\n[alerts]\nformat = \"ocsf\"\n",
];

fn config_seeds() -> &'static Vec<Vec<u8>> {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut seeds: Vec<Vec<u8>> = CONFIG_SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
        seeds.push(std::fs::read(root().join("ops/systemd/trailwatch.toml")).unwrap());
        seeds
    })
}

// ---------------------------------------------------------------------------------------
// Targets

/// Parses and compiles a rule file; a set that compiles then matches corpus events.
fn rule_case(text: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(text).into_owned();
    let errors = no_panic("parsing and compiling a rule", text.as_bytes(), || {
        let (rules, mut errors) = parse_file(Path::new("fuzz.yml"), &text, &placeholders());
        for r in &rules {
            let _ = trailwatch::rule::lint::lint(r);
        }
        if errors.is_empty() {
            match RuleSet::compile(rules) {
                Ok(set) => {
                    let mut p = Pipeline::new(&set, None, &settings(), None);
                    let mut events = event_seeds()[..20].to_vec();
                    events.extend(burst(8));
                    run_events(&mut p, &events);
                }
                Err(e) => errors.extend(e),
            }
        }
        errors
    })?;
    for e in errors {
        let shown = e.to_string();
        prop_assert!(shown.starts_with("fuzz.yml"), "{shown:.300}");
        prop_assert!(
            shown.len() < 1_200,
            "a {} byte message: {shown:.300}",
            shown.len()
        );
    }
    Ok(())
}

fn event_case(bytes: &[u8]) -> Result<(), TestCaseError> {
    let set = full_set();
    let err = no_panic("decoding and matching an event", bytes, || {
        let mut p = Pipeline::new(set, None, &settings(), None);
        let mut out = Vec::new();
        let r = p.decode(bytes, &mut out).err();
        p.flush(&mut out);
        r
    })?;
    if let Some(e) = err {
        // Errors are logged: they must be short and must not carry the event.
        let shown = e.to_string();
        prop_assert!(shown.len() < 300, "{shown:.300}");
    }
    Ok(())
}

fn config_case(text: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trailwatch.toml");
    std::fs::write(&path, text).unwrap();
    no_panic("loading a configuration", text, || {
        if let Ok(c) = trailwatch::config::Config::load(&path) {
            let _ = c.pipeline_settings(1 << 20);
            let _ = c.lateness();
            let _ = c.snapshot_interval();
            let _ = c.alerts.limits();
        }
    })
}

/// Restores a state; one that is accepted must then process events.
fn state_case(bytes: &[u8]) -> Result<(), TestCaseError> {
    let set = full_set();
    no_panic("restoring a state", bytes, || {
        let mut p = Pipeline::new(set, None, &settings(), None);
        if p.restore(bytes).is_ok() {
            let mut events = burst(10);
            events.extend(event_seeds()[..5].iter().cloned());
            run_events(&mut p, &events);
            let _ = p.snapshot();
        }
    })
}

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(n),
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn fuzz_rules(seed in any::<Index>(), ops in prop::collection::vec(op(), 1..6)) {
        let seeds = rule_seeds();
        let input = mutate(&seeds[seed.index(seeds.len())], &ops, seeds);
        rule_case(&input)?;
    }
}

proptest! {
    #![proptest_config(cases(384))]

    #[test]
    fn fuzz_events_bytes(seed in any::<Index>(), ops in prop::collection::vec(op(), 1..6)) {
        let seeds = event_seeds();
        let input = mutate(&seeds[seed.index(seeds.len())], &ops, seeds);
        event_case(&input)?;
    }

    #[test]
    fn fuzz_events_typed(seed in any::<Index>(), ops in prop::collection::vec(json_op(), 1..4)) {
        let seeds = event_seeds();
        let doc: Json = serde_json::from_slice(&seeds[seed.index(seeds.len())]).unwrap();
        let input = serde_json::to_vec(&mutate_json(&doc, &ops)).unwrap();
        event_case(&input)?;
    }
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn fuzz_config(seed in any::<Index>(), ops in prop::collection::vec(op(), 1..5)) {
        let seeds = config_seeds();
        let input = mutate(&seeds[seed.index(seeds.len())], &ops, seeds);
        config_case(&input)?;
    }
}

proptest! {
    #![proptest_config(cases(192))]

    /// Raw damage: mostly caught by the header and checksum.
    #[test]
    fn fuzz_state_bytes(seed in any::<Index>(), ops in prop::collection::vec(op(), 1..4)) {
        let seeds = state_seeds();
        let input = mutate(&seeds[seed.index(seeds.len())], &ops, seeds);
        state_case(&input)?;
    }

    /// Damage behind a valid checksum: what a bug in an older writer could leave.
    #[test]
    fn fuzz_state_typed(
        seed in any::<Index>(),
        part in 0u8..3,
        json_ops in prop::collection::vec(json_op(), 1..4),
        ops in prop::collection::vec(op(), 1..3),
    ) {
        let seeds = state_seeds();
        let (c, g, d) = split_state(&seeds[seed.index(seeds.len())]).unwrap();
        let input = match part {
            0 => {
                let doc = correlation_json(&c).unwrap();
                let json = serde_json::to_vec(&mutate_json(&doc, &json_ops)).unwrap();
                join_state(&correlation_snapshot(&json), &g, &d)
            }
            1 => match serde_json::from_slice::<Json>(&g) {
                Ok(doc) => join_state(&c, &serde_json::to_vec(&mutate_json(&doc, &json_ops)).unwrap(), &d),
                Err(_) => join_state(&c, &mutate(&g, &ops, seeds), &d),
            },
            _ => join_state(&c, &g, &mutate(&d, &ops, seeds)),
        };
        state_case(&input)?;
    }
}

/// Issue 12 regression (found by `fuzz_state_typed`): a state whose suppression part says
/// `"watermark": -9223372036854775808` restored, and the next event panicked with "attempt to
/// subtract with overflow" in the rate limiter (`Limiter::at`, `t - origin`, alert/gate.rs).
#[test]
fn a_restored_gate_watermark_of_i64_min_then_an_event_does_not_panic() {
    let (c, _, d) = split_state(&state_seeds()[0]).unwrap();
    let gate = br#"{"watermark":-9223372036854775808,"open":[],"storms":{}}"#;
    let state = join_state(&c, gate, &d);
    let mut p = Pipeline::new(full_set(), None, &settings(), None);
    p.restore(&state).unwrap();
    let result = catch_unwind(AssertUnwindSafe(|| run_events(&mut p, &burst(1))));
    assert!(result.is_ok(), "an event after the restore panicked");
}

/// Issue 12 regression (found by `fuzz_events_typed`): an EventBridge event whose
/// `detail-type` is not "... via CloudTrail" is rejected with `DecodeError::NotCloudTrail`,
/// whose message quoted the whole `detail-type`: a 1 MB value made a 1 MB error, logged per
/// message, with event content in it.
#[test]
fn a_long_detail_type_is_not_echoed_in_full() {
    let doc = serde_json::json!({"version": "0", "detail-type": "é".repeat(100_000), "detail": {}});
    let mut p = Pipeline::new(full_set(), None, &settings(), None);
    let err = p
        .decode(doc.to_string().as_bytes(), &mut Vec::new())
        .unwrap_err();
    let shown = err.to_string();
    assert!(shown.len() < 300, "a {} byte error", shown.len());
}

/// Issue 12 regression (found by `fuzz_state_typed`): a correlation snapshot whose counters
/// were restored as `u64::MAX` made the next unlocated address panic with "attempt to add with
/// overflow" (window/mod.rs, `stats.unlocated += 1`); times near `i64::MAX` overflowed the
/// window arithmetic. Such snapshots are now rejected whole, and the state stays empty.
#[test]
fn snapshot_values_out_of_range_are_rejected() {
    let (c, g, d) = split_state(state_seeds().last().unwrap()).unwrap();
    let doc = correlation_json(&c).unwrap();
    let damaged = |f: &dyn Fn(&mut Json)| {
        let mut doc = doc.clone();
        f(&mut doc);
        join_state(
            &correlation_snapshot(&serde_json::to_vec(&doc).unwrap()),
            &g,
            &d,
        )
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "counter",
            damaged(&|d| d["stats"]["unlocated"] = Json::from(u64::MAX)),
        ),
        ("seq", damaged(&|d| d["seq"] = Json::from(u64::MAX))),
        (
            "max_time",
            damaged(&|d| d["max_time"] = Json::from(i64::MAX)),
        ),
        (
            "a quiet stream's watermark",
            damaged(&|d| d["floor"] = Json::from(i64::MAX)),
        ),
        (
            "a watermark before time",
            damaged(&|d| d["floor"] = Json::from(i64::MIN)),
        ),
        (
            "window time",
            damaged(&|d| {
                let groups = d["correlations"]
                    .as_array_mut()
                    .unwrap()
                    .iter_mut()
                    .find(|c| c["groups"].as_array().is_some_and(|g| !g.is_empty()))
                    .expect("a seed with an open window");
                groups["groups"][0][1] = serde_json::json!({"Times": [i64::MAX - 1, 0]});
            }),
        ),
    ];
    for (what, state) in cases {
        let mut p = Pipeline::new(full_set(), None, &settings(), None);
        let err = p.restore(&state).expect_err(what);
        assert!(err.to_string().contains("out of range"), "{what}: {err}");
        assert_eq!(p.correlation_keys(), 0, "{what}: nothing restored");
        run_events(&mut p, &burst(10));
    }
}

/// The range checks of restore never reject what the correlator wrote: events at the
/// extremes of what `eventTime` parsing accepts make a snapshot that restores.
#[test]
fn a_snapshot_after_events_at_extreme_times_restores() {
    let times = [
        "9999-12-31T23:59:59Z",
        "0000-01-01T00:00:00Z",
        "-0001-01-01T00:00:00Z",
        "+262143-12-31T23:59:59Z",
        "262143-12-31 23:59:59",
        "-262143-01-01 00:00:00",
    ];
    let parsed: Vec<i64> = times
        .iter()
        .filter_map(|t| trailwatch::window::event_time(t))
        .collect();
    assert!(
        parsed.iter().any(|t| t.abs() > 1 << 40),
        "times beyond ±2^40 s parse: {parsed:?}"
    );
    let events: Vec<Vec<u8>> = burst(21)
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let mut doc: Json = serde_json::from_slice(&e).unwrap();
            doc["eventTime"] = Json::from(times[i % times.len()]);
            serde_json::to_vec(&doc).unwrap()
        })
        .collect();
    let mut p = Pipeline::new(full_set(), None, &settings(), None);
    run_events(&mut p, &events[..20]);
    let mut out = Vec::new();
    let _ = p.decode(&events[20], &mut out);
    let state = p.snapshot();
    let mut q = Pipeline::new(full_set(), None, &settings(), None);
    q.restore(&state)
        .expect("a snapshot the pipeline wrote restores");
}

/// The seeds themselves load: the fuzzer starts from valid inputs.
#[test]
fn seeds_are_valid() {
    for s in state_seeds() {
        let mut p = Pipeline::new(full_set(), None, &settings(), None);
        p.restore(s).unwrap();
        assert!(split_state(s).is_some());
    }
    let (c, g, d) = split_state(state_seeds().last().unwrap()).unwrap();
    let rebuilt = join_state(&c, &g, &d);
    let mut p = Pipeline::new(full_set(), None, &settings(), None);
    let restored = p.restore(&rebuilt).unwrap();
    assert!(restored.correlation.groups > 0, "{restored:?}");
    for s in config_seeds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, s).unwrap();
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        trailwatch::config::Config::load(&path).unwrap();
    }
}
