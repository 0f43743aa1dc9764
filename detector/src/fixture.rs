//! Rule fixtures and `trailwatch test`: proof that each rule fires when it must and stays quiet
//! when it must.
//!
//! Fixtures live in the rule file, under the `trailwatch:` extension key:
//!
//! ```yaml
//! trailwatch:
//!   tests:
//!     - name: root lists buckets
//!       match: true
//!       event: {eventName: ListBuckets, userIdentity: {type: Root}}
//! ```
//!
//! or beside it, so upstream rules stay untouched: `aws_root_usage.yml`'s fixtures in
//! `aws_root_usage.tests.yml`, a list of the same items (each may name its `rule:` by id or
//! title, for a file of several rules).
//!
//! Each event goes through the same [`Pipeline`] as live traffic.

use crate::engine::RuleSet;
use crate::event::{Decoder, Limits};
use crate::pipeline::{Output, Pipeline, Settings};
use crate::rule::yaml::{Node, NodeKind, Scalar};
use crate::rule::{Rule, RuleError};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One fixture: an event and whether the rule must match it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixture {
    /// What the case shows.
    pub name: String,
    /// Whether the rule must match.
    pub expect: bool,
    /// The event as JSON text (for a correlation rule: the events, in arrival order).
    pub events: Vec<String>,
    /// The file the fixture is in (the rule file or its `.tests.yml`).
    pub file: PathBuf,
    /// Line of the fixture in that file.
    pub line: usize,
    /// For geo rules: where each address is (`locations: {ip: [country, lat, lon]}`).
    pub locations: Option<crate::geo::MapLocator>,
}

/// The file beside a rule file that may hold its fixtures: `x.yml` -> `x.tests.yml`.
pub fn side_file(rule_file: &Path) -> PathBuf {
    let stem = rule_file.file_stem().unwrap_or_default().to_string_lossy();
    rule_file.with_file_name(format!("{stem}.tests.yml"))
}

/// Whether a file holds fixtures rather than rules (`*.tests.yml`, `*.tests.yaml`).
pub fn is_side_file(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name.ends_with(".tests.yml") || name.ends_with(".tests.yaml")
}

/// Reads a rule's fixtures: those under its `trailwatch.tests`, then those in its
/// [`side_file`] meant for it.
pub fn fixtures(rule: &Rule) -> Result<Vec<Fixture>, RuleError> {
    let mut out = Vec::new();
    if let Some(tests) = rule.doc.get("trailwatch").and_then(|t| t.get("tests")) {
        let err = |line, m: &str| RuleError::new(&rule.file, line, m).with_rule(Some(rule.label()));
        let NodeKind::Seq(items) = &tests.kind else {
            return Err(err(
                tests.line,
                "'trailwatch.tests' must be a list of fixtures",
            ));
        };
        for (i, item) in items.iter().enumerate() {
            out.push(fixture(rule, i, item, &rule.file, &err)?);
        }
    }
    out.extend(side_fixtures(rule)?);
    Ok(out)
}

/// The fixtures of `rule` in its [`side_file`], if there is one.
fn side_fixtures(rule: &Rule) -> Result<Vec<Fixture>, RuleError> {
    let path = side_file(&rule.file);
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let err = |line, m: &str| RuleError::new(&path, line, m).with_rule(Some(rule.label()));
    let text = crate::rule::read_rule_file(&path)?;
    let docs = crate::rule::yaml::load_documents(&text)
        .map_err(|e| RuleError::new(&path, e.line, e.message))?;
    let list = match docs.as_slice() {
        [doc] => doc.get("tests").unwrap_or(doc),
        _ => {
            return Err(err(
                0,
                "a fixtures file holds one YAML document: a list of fixtures",
            ))
        }
    };
    let NodeKind::Seq(items) = &list.kind else {
        return Err(err(list.line, "a fixtures file is a list of fixtures"));
    };
    let mine = |item: &&Node| {
        item.get("rule")
            .and_then(Node::as_text)
            .is_none_or(|want| rule.id.as_deref() == Some(want.as_str()) || rule.title == want)
    };
    let items: Vec<&Node> = items.iter().filter(mine).collect();
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| fixture(rule, i, item, &path, &err))
        .collect()
}

/// One fixture item of `rule`, the `i`th of its list in `file`.
fn fixture(
    rule: &Rule,
    i: usize,
    item: &Node,
    file: &Path,
    err: &dyn Fn(usize, &str) -> RuleError,
) -> Result<Fixture, RuleError> {
    let name = item
        .get("name")
        .and_then(Node::as_text)
        .unwrap_or_else(|| format!("fixture {}", i + 1));
    let expect = match item.get("match").map(|n| &n.kind) {
        Some(NodeKind::Scalar(Scalar::Bool(b))) => *b,
        _ => {
            return Err(err(
                item.line,
                "a fixture needs 'match: true' or 'match: false'",
            ))
        }
    };
    let events = match (item.get("event"), item.get("events")) {
        (Some(e), None) if e.as_map().is_some() => vec![to_json(e).to_string()],
        (
            None,
            Some(Node {
                kind: NodeKind::Seq(list),
                ..
            }),
        ) if rule.correlation.is_some() => {
            if list.iter().any(|e| e.as_map().is_none()) || list.is_empty() {
                return Err(err(item.line, "'events' must list event mappings"));
            }
            list.iter().map(|e| to_json(e).to_string()).collect()
        }
        _ if rule.correlation.is_some() => {
            return Err(err(
                item.line,
                "a correlation fixture needs 'events': a list of event mappings",
            ))
        }
        _ => return Err(err(item.line, "a fixture needs an 'event' mapping")),
    };
    let locations = item
        .get("locations")
        .map(|l| locations(l, err))
        .transpose()?;
    Ok(Fixture {
        name,
        expect,
        events,
        file: file.to_path_buf(),
        line: item.line,
        locations,
    })
}

/// `{ip: [country, lat, lon]}` (an optional fourth item is the AS number).
fn locations(
    node: &Node,
    err: &dyn Fn(usize, &str) -> RuleError,
) -> Result<crate::geo::MapLocator, RuleError> {
    let mut out = crate::geo::MapLocator::default();
    let map = node.as_map().ok_or_else(|| {
        err(
            node.line,
            "'locations' maps addresses to [country, latitude, longitude]",
        )
    })?;
    for (k, v) in map {
        let ip = k
            .text
            .parse()
            .map_err(|_| err(k.line, "a 'locations' key must be an IP address"))?;
        let NodeKind::Seq(parts) = &v.kind else {
            return Err(err(v.line, "a location is [country, latitude, longitude]"));
        };
        let num = |i: usize| {
            parts
                .get(i)
                .and_then(Node::as_text)
                .and_then(|t| t.parse::<f64>().ok())
        };
        let (Some(country), Some(lat), Some(lon)) =
            (parts.first().and_then(Node::as_text), num(1), num(2))
        else {
            return Err(err(v.line, "a location is [country, latitude, longitude]"));
        };
        let asn = num(3).map(|a| a as u32);
        out.0.insert(
            ip,
            crate::geo::Location {
                country,
                lat,
                lon,
                asn,
            },
        );
    }
    Ok(out)
}

/// A YAML node as JSON.
pub fn to_json(node: &Node) -> Value {
    match &node.kind {
        NodeKind::Scalar(Scalar::Str(s)) => Value::String(s.clone()),
        NodeKind::Scalar(Scalar::Int(i)) => Value::from(*i),
        NodeKind::Scalar(Scalar::Float(f)) => f
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(f.clone()), Value::Number),
        NodeKind::Scalar(Scalar::Bool(b)) => Value::Bool(*b),
        NodeKind::Scalar(Scalar::Null) => Value::Null,
        NodeKind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        NodeKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.text.clone(), to_json(v)))
                .collect(),
        ),
    }
}

/// The verdict on one fixture.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The fixture.
    pub fixture: Fixture,
    /// `None` when it passed, else why not.
    pub failure: Option<String>,
}

/// The verdicts on one rule's fixtures.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleResult {
    /// Rule id.
    pub rule_id: String,
    /// Rule title.
    pub title: String,
    /// Rule file.
    pub file: String,
    /// One result per fixture (empty: the rule has none, which fails).
    pub cases: Vec<CaseResult>,
}

impl RuleResult {
    /// Whether every fixture passed and there is at least one.
    pub fn passed(&self) -> bool {
        !self.cases.is_empty() && self.cases.iter().all(|c| c.failure.is_none())
    }
}

/// Runs every rule's fixtures through the decoder and the indexed matcher.
pub fn run(set: &RuleSet) -> Result<Vec<RuleResult>, Vec<RuleError>> {
    let mut errors = Vec::new();
    let mut all = Vec::new();
    for (i, rule) in set.rules().iter().enumerate() {
        match fixtures(&rule.rule) {
            Ok(f) => all.push((i, f)),
            Err(e) => errors.push(e),
        }
    }
    let mut corr_fixtures = Vec::new();
    for c in set.correlations() {
        match fixtures(&c.rule) {
            Ok(f) => corr_fixtures.push(f),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let results = all
        .into_iter()
        .map(|(i, fixtures)| {
            let rule = &set.rules()[i];
            let cases = fixtures
                .into_iter()
                .map(|fixture| {
                    let failure = event_case(set, i, &fixture);
                    CaseResult { fixture, failure }
                })
                .collect();
            RuleResult {
                rule_id: rule.id().to_string(),
                title: rule.rule.title.clone(),
                file: rule.rule.file.display().to_string(),
                cases,
            }
        })
        .collect::<Vec<_>>();
    let mut results = results;
    for (c, fixtures) in corr_fixtures.into_iter().enumerate() {
        let corr = &set.correlations()[c];
        let cases = fixtures
            .into_iter()
            .map(|fixture| {
                let failure = correlation_case(set, c, &fixture);
                CaseResult { fixture, failure }
            })
            .collect();
        results.push(RuleResult {
            rule_id: corr.id().to_string(),
            title: corr.rule.title.clone(),
            file: corr.rule.file.display().to_string(),
            cases,
        });
    }
    Ok(results)
}

/// Runs a single-event fixture through the pipeline; `None` when the verdict is the expected one.
fn event_case(set: &RuleSet, i: usize, fixture: &Fixture) -> Option<String> {
    let mut pipeline = Pipeline::new(set, None, &Settings::default(), None);
    if let Err(e) = pipeline.decode(fixture.events[0].as_bytes(), &mut ()) {
        return Some(format!("the event does not decode: {e}"));
    }
    if pipeline.stats().errors.values().sum::<u64>() > 0 || pipeline.stats().events == 0 {
        return Some("the event does not decode as a CloudTrail record".into());
    }
    let matched = pipeline.stats().hits[i] > 0;
    if matched == fixture.expect {
        return None;
    }
    // Explain the verdict on the same decoded event.
    let mut decoder = Decoder::new(set.fields(), Limits::default());
    let mut why = None;
    let _ = decoder.decode(fixture.events[0].as_bytes(), &mut |item| {
        if let Ok(ev) = item {
            why = Some(reason(&set.explain(i, ev), fixture.expect));
        }
    });
    why
}

/// Correlation hits a fixture's events caused.
#[derive(Default)]
struct Fired(Vec<crate::window::CorrelationHit>);

impl Output for Fired {
    fn correlation(&mut self, hit: &crate::window::CorrelationHit) {
        self.0.push(hit.clone());
    }
}

/// Runs a correlation fixture's events in order; `None` when the verdict is the expected one.
fn correlation_case(set: &RuleSet, c: usize, fixture: &Fixture) -> Option<String> {
    let locator = fixture
        .locations
        .clone()
        .map(|l| std::sync::Arc::new(l) as std::sync::Arc<dyn crate::geo::Locate>);
    let mut pipeline = Pipeline::new(set, None, &Settings::default(), locator);
    let mut fired = Fired::default();
    for (k, text) in fixture.events.iter().enumerate() {
        if let Err(e) = pipeline.decode(text.as_bytes(), &mut fired) {
            return Some(format!("event {k} does not decode: {e}"));
        }
    }
    pipeline.flush(&mut fired);
    let stats = pipeline.stats();
    let inputs: u64 = stats.hits.iter().sum();
    let mine = fired.0.iter().find(|h| h.correlation as usize == c);
    match (fixture.expect, mine) {
        (true, None) => {
            let cs = pipeline.correlation_stats();
            Some(format!(
                "expected the correlation to fire, it did not ({inputs} hits of rules it reads; {} duplicates, {} late, {} without eventTime)",
                stats.duplicates, cs.late, cs.no_time
            ))
        }
        (false, Some(h)) => Some(format!(
            "expected no firing, but it fired at event {} with value {} for group {:?}",
            h.origin.input_index, h.value, h.group
        )),
        _ => None,
    }
}

/// Says which searches decided the wrong verdict.
fn reason(x: &crate::engine::Explanation, expected: bool) -> String {
    let mut out = if expected {
        format!("expected a match, got none (condition: {})", x.condition)
    } else {
        format!(
            "expected no match, but the rule matched (condition: {})",
            x.condition
        )
    };
    for s in &x.searches {
        let _ = write!(
            out,
            "; {} {}",
            s.name,
            if s.matched {
                "matched"
            } else {
                "did not match"
            }
        );
        // A missed match is explained by the entries that failed; an unwanted one by the
        // searches that held.
        let decisive: Vec<String> = s
            .entries
            .iter()
            .filter(|e| if expected { !e.matched } else { s.matched })
            .map(|e| {
                format!(
                    "{} = {} {}",
                    e.key,
                    e.value,
                    if e.matched { "✓" } else { "✗" }
                )
            })
            .collect();
        if !decisive.is_empty() {
            let _ = write!(out, " [{}]", decisive.join(", "));
        }
    }
    out
}

/// JUnit XML for CI systems: one test case per fixture, and one per rule without any, failing
/// when fixtures are `required`, else skipped.
pub fn junit(results: &[RuleResult], required: bool) -> String {
    let cases: usize = results.iter().map(|r| r.cases.len().max(1)).sum();
    let failures = results
        .iter()
        .map(|r| {
            if r.cases.is_empty() {
                usize::from(required)
            } else {
                r.cases.iter().filter(|c| c.failure.is_some()).count()
            }
        })
        .sum::<usize>();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(x, "<testsuites><testsuite name=\"trailwatch rules\" tests=\"{cases}\" failures=\"{failures}\">");
    for r in results {
        let class = xml(&format!("{} ({})", r.rule_id, r.title));
        if r.cases.is_empty() {
            let verdict = if required { "failure" } else { "skipped" };
            let _ = writeln!(x, "  <testcase classname=\"{class}\" name=\"fixtures\"><{verdict} message=\"the rule has no fixtures\"/></testcase>");
        }
        for c in &r.cases {
            let name = xml(&c.fixture.name);
            match &c.failure {
                None => {
                    let _ = writeln!(x, "  <testcase classname=\"{class}\" name=\"{name}\"/>");
                }
                Some(f) => {
                    let _ = writeln!(x, "  <testcase classname=\"{class}\" name=\"{name}\"><failure message=\"{}\"/></testcase>", xml(f));
                }
            }
        }
    }
    x.push_str("</testsuite></testsuites>\n");
    x
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{parse_file, Placeholders};
    use std::path::Path;

    #[test]
    fn correlation_fixtures_run_event_sequences() {
        let base = "title: fail\nid: f\nname: fail\nlogsource: {product: aws}\ndetection:\n  sel: {eventName: ConsoleLogin, errorMessage: Failed authentication}\n  condition: sel\ntrailwatch:\n  tests:\n    - {name: one, match: true, event: {eventName: ConsoleLogin, errorMessage: Failed authentication}}\n";
        let e = |t: &str| {
            format!("{{eventName: ConsoleLogin, errorMessage: Failed authentication, eventTime: '2024-01-01T00:00:{t}Z', userIdentity: {{userName: bob}}}}")
        };
        let corr = format!("title: burst\nid: b\ncorrelation:\n  type: event_count\n  rules: [fail]\n  group-by: [userIdentity.userName]\n  timespan: 1m\n  condition: {{gte: 2}}\ntrailwatch:\n  tests:\n    - name: two fire\n      match: true\n      events: [{}, {}]\n    - name: one does not\n      match: false\n      events: [{}]\n    - name: wrong on purpose\n      match: true\n      events: [{}]\n", e("01"), e("02"), e("01"), e("01"));
        let (rules, errs) = parse_file(
            Path::new("c.yml"),
            &format!("{base}---\n{corr}"),
            &Placeholders::new(),
        );
        assert!(errs.is_empty(), "{errs:?}");
        let set = RuleSet::compile(rules).unwrap();
        let r = run(&set).unwrap();
        assert_eq!(r.len(), 2);
        let c = &r[1].cases;
        assert!(c[0].failure.is_none() && c[1].failure.is_none(), "{c:?}");
        assert!(
            c[2].failure
                .as_deref()
                .unwrap()
                .starts_with("expected the correlation to fire"),
            "{c:?}"
        );
    }

    const RULE: &str = "title: Root\nid: r1\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  sel: {userIdentity.type: Root}\n  filter: {eventType: AwsServiceEvent}\n  condition: sel and not filter\n";

    fn results(tests: &str) -> Vec<RuleResult> {
        let text = format!("{RULE}trailwatch:\n  tests:\n{tests}");
        let (rules, errs) = parse_file(Path::new("r.yml"), &text, &Placeholders::new());
        assert!(errs.is_empty(), "{errs:?}");
        let set = RuleSet::compile(rules).unwrap();
        run(&set).unwrap()
    }

    #[test]
    fn passing_and_failing_fixtures() {
        let r = results(
            "    - name: root call\n      match: true\n      event: {userIdentity: {type: Root}}\n    - name: service event\n      match: false\n      event: {userIdentity: {type: Root}, eventType: AwsServiceEvent}\n    - name: wrong expectation\n      match: true\n      event: {userIdentity: {type: IAMUser}}\n",
        );
        assert_eq!(r.len(), 1);
        let c = &r[0].cases;
        assert!(c[0].failure.is_none() && c[1].failure.is_none());
        let f = c[2].failure.as_deref().unwrap();
        assert!(f.starts_with("expected a match, got none"), "{f}");
        assert!(
            f.contains("sel did not match [userIdentity.type = \"IAMUser\" ✗]"),
            "{f}"
        );
        assert!(!r[0].passed());
        let x = junit(&r, true);
        assert!(x.contains("tests=\"3\" failures=\"1\""), "{x}");
        assert!(x.contains("name=\"wrong expectation\"><failure"), "{x}");
    }

    #[test]
    fn rules_without_fixtures_fail() {
        let (rules, _) = parse_file(Path::new("r.yml"), RULE, &Placeholders::new());
        let set = RuleSet::compile(rules).unwrap();
        let r = run(&set).unwrap();
        assert!(r[0].cases.is_empty() && !r[0].passed());
        assert!(junit(&r, true).contains("<failure message=\"the rule has no fixtures"));
        assert!(junit(&r, false).contains("<skipped message=\"the rule has no fixtures"));
    }

    #[test]
    fn malformed_fixtures_are_rule_errors() {
        let text = format!("{RULE}trailwatch:\n  tests:\n    - name: x\n      event: {{a: 1}}\n");
        let (rules, _) = parse_file(Path::new("r.yml"), &text, &Placeholders::new());
        let set = RuleSet::compile(rules).unwrap();
        let errs = run(&set).unwrap_err();
        assert!(
            errs[0].message.contains("'match: true' or 'match: false'"),
            "{errs:?}"
        );
        assert_eq!(errs[0].line, 10);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// A fixtures file beside a rule is whatever an operator (or an attacker with write
        /// access to the rules folder) put there: never a panic, and running its fixtures
        /// either works or reports a rule error naming that file.
        #[test]
        fn any_fixtures_file_is_a_verdict_or_an_error_naming_it(
            text in proptest::prop_oneof![
                "\\PC{0,200}",
                "(- \\{name: x, match: (true|false|1), (rule: (r1|r2|Root), )?event: \\{userIdentity.type: (Root|User)\\}\\}\n){0,4}",
                proptest::strategy::Strategy::prop_map(0usize..3000, |n| "- ".repeat(n)),
                proptest::strategy::Strategy::prop_map(0usize..3000, |n| "[".repeat(n)),
            ],
        ) {
            let dir = tempfile::tempdir().unwrap();
            let rule_file = dir.path().join("r.yml");
            std::fs::write(dir.path().join("r.tests.yml"), &text).unwrap();
            let (rules, errs) = parse_file(&rule_file, RULE, &Placeholders::new());
            proptest::prop_assert!(errs.is_empty());
            let set = RuleSet::compile(rules).unwrap();
            match run(&set) {
                Ok(results) => proptest::prop_assert_eq!(results.len(), 1),
                Err(errors) => proptest::prop_assert!(
                    errors.iter().all(|e| e.to_string().contains("r.tests.yml")),
                    "{:?}", errors
                ),
            }
        }
    }
}
