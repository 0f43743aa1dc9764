//! The ops pack agrees with the code: every metric the alerting rules and the dashboard query
//! is one trailwatch exports, and the example configuration loads.

use std::collections::BTreeSet;
use trailwatch_e2e::root;

/// `trailwatch_*` names in `text`, with histogram series suffixes taken off.
fn referenced(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("trailwatch_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|_| name.contains("_seconds")))
            .unwrap_or(name);
        names.insert(base.to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn alerting_rules_and_dashboard_query_real_metrics() {
    let exported: BTreeSet<String> = trailwatch::metrics::Metrics::names().into_iter().collect();
    for file in [
        "ops/prometheus/alerts.yml",
        "ops/prometheus/alerts_test.yml",
        "ops/grafana/trailwatch-dashboard.json",
    ] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let used = referenced(&text);
        assert!(
            used.len() >= 5,
            "{file} queries trailwatch metrics: {used:?}"
        );
        let unknown: Vec<&String> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} queries metrics trailwatch does not export: {unknown:?}"
        );
    }
}

#[test]
fn the_dashboard_is_valid_json_with_panels() {
    let text =
        std::fs::read_to_string(root().join("ops/grafana/trailwatch-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    for p in panels {
        assert!(
            !p["targets"].as_array().unwrap().is_empty(),
            "{}",
            p["title"]
        );
    }
}

#[test]
fn the_example_configuration_loads() {
    let c = trailwatch::config::Config::load(&root().join("ops/systemd/trailwatch.toml")).unwrap();
    assert_eq!(
        c.windows.state_file.unwrap().to_str(),
        Some("/var/lib/trailwatch/state.snap")
    );
    assert!(c.alerts.hmac_key_file.is_some());
}

#[test]
fn the_kubernetes_configuration_loads_and_pods_are_locked_down() {
    let text = std::fs::read_to_string(root().join("ops/k8s/configmap.yaml")).unwrap();
    let doc = trailwatch::rule::yaml::load_documents(&text)
        .unwrap()
        .remove(0);
    let toml = doc
        .get("data")
        .and_then(|d| d.get("trailwatch.toml"))
        .and_then(|n| n.as_text())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trailwatch.toml");
    std::fs::write(&path, toml).unwrap();
    let c = trailwatch::config::Config::load(&path).unwrap();
    let kafka = c.source.kafka.expect("a Kafka consumer-group deployment");
    assert_eq!(kafka.properties["security.protocol"], "SSL");

    let text = std::fs::read_to_string(root().join("ops/k8s/deployment.yaml")).unwrap();
    for needle in [
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "drop: [ALL]",
        "path: /readyz",
        "path: /healthz",
    ] {
        assert!(text.contains(needle), "deployment lacks {needle}");
    }
}
