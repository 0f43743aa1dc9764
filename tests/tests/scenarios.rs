//! Generated traffic with injected attack scenarios: the shipped rules raise every alert the
//! ground truth expects, and nothing else about the scenario actors.

mod live;

use live::*;
use trailwatch_e2e::{load_test, root, trailwatch};

/// `load-test check` of `alerts` against `truth`, with or without the geo expectations.
fn check(rules: &str, truth: &str, alerts: &str, geoip: bool) -> std::process::Output {
    let mut args = vec![
        "check", "--rules", rules, "--truth", truth, "--alerts", alerts,
    ];
    if geoip {
        args.push("--geoip");
    }
    load_test(&args)
}

#[test]
fn injected_attacks_raise_exactly_the_expected_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let rules = root().join("rules");
    let rules = rules.to_str().unwrap();
    let out = load_test(&[
        "generate",
        "--events",
        "6000",
        "--seed",
        "9",
        "--truth",
        &p("truth.jsonl"),
        "--output",
        &p("events.jsonl.gz"),
        "--gzip",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = load_test(&["geoip", "--output", &p("geo.mmdb")]);
    assert!(out.status.success());
    let out = trailwatch(&[
        "replay",
        "-r",
        rules,
        "--quiet",
        "--geoip",
        &p("geo.mmdb"),
        "--output",
        &p("alerts.jsonl"),
        &p("events.jsonl.gz"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = check(rules, &p("truth.jsonl"), &p("alerts.jsonl"), true);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report}");
    let expected = std::fs::read_to_string(p("truth.jsonl"))
        .unwrap()
        .lines()
        .count() as u64;
    assert_eq!(report["found"], expected, "{report}");
    assert_eq!(report["missing"], serde_json::json!([]));
    assert_eq!(report["unexpected"], serde_json::json!([]), "{report}");

    // Without a geolocation database the geo scenarios (travel, PHI from a new country) are
    // skipped, not failed.
    let out = trailwatch(&[
        "replay",
        "-r",
        rules,
        "--quiet",
        "--output",
        &p("alerts2.jsonl"),
        &p("events.jsonl.gz"),
    ]);
    assert!(out.status.success());
    let out = check(rules, &p("truth.jsonl"), &p("alerts2.jsonl"), false);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report}");
    assert_eq!(report["skipped"], 2, "the two geo scenarios");

    // A missing alert fails the check: drop the alerts of one rule.
    let alerts = std::fs::read_to_string(p("alerts.jsonl")).unwrap();
    let fewer: Vec<&str> = alerts
        .lines()
        .filter(|l| !l.contains("Password Spray"))
        .collect();
    std::fs::write(p("fewer.jsonl"), fewer.join("\n")).unwrap();
    let out = check(rules, &p("truth.jsonl"), &p("fewer.jsonl"), true);
    assert_eq!(out.status.code(), Some(1));

    // Repeats are merged, not lost: the brute force's failures come back as one alert and a
    // roll-up counting all eight, and without the roll-up the check fails.
    let rollups: Vec<&str> = alerts
        .lines()
        .filter(|l| l.contains("\"kind\":\"rollup\"") && l.contains("scenario-bf"))
        .filter(|l| l.contains("Console Authentication Failure"))
        .collect();
    assert_eq!(rollups.len(), 1, "{alerts}");
    let rollup: serde_json::Value = serde_json::from_str(rollups[0]).unwrap();
    assert_eq!(rollup["count"], 8);
    let without: Vec<&str> = alerts.lines().filter(|l| *l != rollups[0]).collect();
    std::fs::write(p("without.jsonl"), without.join("\n")).unwrap();
    let out = check(rules, &p("truth.jsonl"), &p("without.jsonl"), true);
    assert_eq!(out.status.code(), Some(1));
}

/// The same scenarios through the live service: EventBridge messages on SQS into `trailwatch
/// run`, alerts out through SNS, checked against the ground truth by `load-test sqs-run`.
#[tokio::test(flavor = "multi_thread")]
async fn injected_attacks_through_sqs_raise_exactly_the_expected_alerts() {
    let Some(url) = moto() else { return };
    let (sqs, sns) = clients(&url);
    let q = queues(&sqs, &sns, &format!("scenarios-{}", std::process::id())).await;
    let dir = tempfile::tempdir().unwrap();
    let geo = dir.path().join("geo.mmdb");
    let out = load_test(&["geoip", "--output", geo.to_str().unwrap()]);
    assert!(out.status.success());
    let extra = Extra {
        // Generated event time runs much faster than the wall clock: sqs-run sends it in
        // stretches of 20 minutes of event time, each after the one before is processed, so
        // the pollers' reordering stays within this lateness (without the stretches a CI run
        // had six events late and the mass delete lost).
        windows: "lateness = \"3h\"\n",
        geoip: Some(&geo),
        pollers: Some(4),
        ..Extra::default()
    };
    let (service, metrics) = start_with(&url, &q, dir.path(), extra);
    let rules = root().join("rules");
    let out =
        std::process::Command::new(trailwatch_e2e::trailwatch_bin().with_file_name("load-test"))
            .args([
                "sqs-run",
                "--events-queue",
                &q.events,
                "--alerts-queue",
                &q.alerts,
            ])
            .args([
                "--metrics",
                &metrics,
                "--events",
                "600",
                "--geoip",
                "--check-rules",
            ])
            .arg(&rules)
            .env("AWS_ENDPOINT_URL", &url)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
    stop_service(service);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{report}");
    let scenarios = &report["scenarios"];
    assert_eq!(scenarios["missing"], serde_json::json!([]), "{report}");
    assert_eq!(scenarios["unexpected"], serde_json::json!([]), "{report}");
    assert_eq!(scenarios["skipped"], 0, "{report}");
    assert!(scenarios["found"].as_u64() > Some(15), "{report}");
    assert_eq!(report["late_events_in_traffic"], 0, "{report}");
}
