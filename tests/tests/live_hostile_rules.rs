//! Issue 12: hostile rule files dropped into the watched rules folder of `trailwatch run`.
//! Each is rejected with its reason logged (quoted short) and counted, the running rules stay,
//! and the service keeps alerting.

mod live;

use live::*;

const GOOD: &str = "title: Trail stopped\nid: 00000000-0000-4000-8000-000000000001\nlevel: high\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  sel:\n    eventName: StopLogging\n  condition: sel\n";

/// (file name, contents, what the logged reason must say)
fn hostile() -> Vec<(&'static str, String, &'static str)> {
    // "Billion laughs": 666 bytes, 10^9 nodes once its aliases are expanded.
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (prev, name) in "abcdefgh".chars().zip("bcdefghi".chars()) {
        bomb.push_str(&format!(
            "{name}: &{name} [{}]\n",
            vec![format!("*{prev}"); 9].join(",")
        ));
    }
    assert!(bomb.len() <= 666, "{}", bomb.len());
    let deep = format!("title: deep\nx:\n{}1\n", "- ".repeat(20_000));
    let regex = format!(
        "title: huge regex\nid: 00000000-0000-4000-8000-000000000002\nlogsource: {{product: aws}}\ndetection:\n  sel:\n    eventName|re: '{}'\n  condition: sel\n",
        "a".repeat(900_000)
    );
    let span = "title: bad span\nid: 00000000-0000-4000-8000-000000000003\ncorrelation:\n  type: event_count\n  rules: [00000000-0000-4000-8000-000000000001]\n  timespan: 5é\n  condition: {gte: 2}\n".to_string();
    let big = format!("title: big\n#{}\n", "x".repeat(1 << 20));
    vec![
        ("bomb.yml", bomb, "aliases expand to more than 10000 nodes"),
        ("deep.yml", deep, "nested deeper than 64 levels"),
        ("regex.yml", regex, "bytes long; the limit is 8192"),
        ("span.yml", span, "timespan '5é' is not a number and a unit"),
        ("big.yml", big, "larger than 1048576 bytes"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_rule_files_are_rejected_and_the_running_rules_stay() {
    let Some(url) = moto() else { return };
    let (sqs, sns) = clients(&url);
    let q = queues(&sqs, &sns, &format!("hostile-{}", std::process::id())).await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("good.yml"), GOOD).unwrap();
    let log = dir.path().join("log");
    let extra = Extra {
        rules: Some(&rules),
        log: Some(&log),
        ..Extra::default()
    };
    let (service, metrics) = start_with(&url, &q, dir.path(), extra);
    send(
        &sqs,
        &q.events,
        api_event("ev-h0", "cloudtrail", "StopLogging", "u0"),
    )
    .await;
    assert!(receive(&sqs, &q.alerts, 1).await[0].contains("Trail stopped"));

    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    for (n, (name, text, reason)) in hostile().into_iter().enumerate() {
        let n = n + 1;
        // Dropped in whole, as a deploy tool does (write elsewhere, rename into the folder).
        std::fs::write(staging.join(name), &text).unwrap();
        std::fs::rename(staging.join(name), rules.join(name)).unwrap();
        let want = format!("trailwatch_rule_reloads_total{{result=\"rejected\"}} {n}");
        let seen = metrics_with(&metrics, std::slice::from_ref(&want));
        assert!(seen.contains(&want), "{name}: {seen}");
        let logged = std::fs::read_to_string(&log).unwrap();
        let line = logged
            .lines()
            .rfind(|l| l.contains("rule reload rejected") && l.contains(name))
            .unwrap_or_else(|| panic!("no rejection of {name} logged: {logged}"));
        assert!(line.contains(reason), "{name}: {line}");
        assert!(line.len() < 1_500, "{name}: a {} byte log line", line.len());
        assert!(
            service_is_running(&metrics),
            "{name} stopped the service: {logged}"
        );

        // The running rules still alert.
        send(
            &sqs,
            &q.events,
            api_event(
                &format!("ev-h{n}"),
                "cloudtrail",
                "StopLogging",
                &format!("u{n}"),
            ),
        )
        .await;
        let alert = receive(&sqs, &q.alerts, 1).await;
        assert!(
            alert.first().is_some_and(|a| a.contains("Trail stopped")),
            "after {name}: {alert:?}"
        );

        // Taken away: the folder compiles again.
        std::fs::remove_file(rules.join(name)).unwrap();
        let ok = format!("trailwatch_rule_reloads_total{{result=\"ok\"}} {n}");
        let seen = metrics_with(&metrics, std::slice::from_ref(&ok));
        assert!(seen.contains(&ok), "after removing {name}: {seen}");
    }
    let text = metrics_with(&metrics, &["trailwatch_rules_loaded 1".to_string()]);
    assert!(text.contains("trailwatch_rules_loaded 1"), "{text}");
    // Nothing in the log quotes the huge inputs.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains(&"a".repeat(200)), "a regex quoted in full");
    assert!(logged.len() < 64 * 1024, "{} bytes of log", logged.len());
    stop_service(service);
}

fn service_is_running(metrics: &str) -> bool {
    http_get(metrics, "/healthz").contains("200") || !http_get(metrics, "/metrics").is_empty()
}
