//! `trailwatch report` over a replay of the bundled sample: every CSV table adds up to the
//! alerts a replay of the same input gives, hostile text stays text, and the HTML page renders
//! in headless Chromium (Debian's `chromium`, installed by scripts/test.sh) with every section
//! and every alert's anchor; its screenshot is docs/report-screenshot.png
//! (`UPDATE_DOCS=1` rewrites it).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use trailwatch_e2e::{json_lines, root, trailwatch};

/// A CSV file as rows of fields (RFC 4180 quoting).
fn csv(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut rows = Vec::new();
    let (mut row, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\r', false) => {}
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => field.push(c),
        }
    }
    rows
}

/// Rows as column -> value maps.
fn table(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut rows = csv(path);
    let header = rows.remove(0);
    rows.into_iter()
        .map(|r| header.iter().cloned().zip(r).collect())
        .collect()
}

fn ids(row: &BTreeMap<String, String>) -> BTreeSet<String> {
    row["alert_ids"]
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// What an alert groups by (a correlation names no events: its group says whose it is).
fn group(a: &Value) -> Value {
    serde_json::from_str(a["group_key"].as_str().unwrap_or("{}")).unwrap_or(Value::Null)
}

/// A fact the report takes from an alert's first event, else from its group.
fn fact(a: &Value, event_field: &str, group_field: &str, none: &str) -> String {
    a["events"][0][event_field]
        .as_str()
        .or(group(a)[group_field].as_str())
        .unwrap_or(none)
        .to_string()
}

fn account(a: &Value) -> String {
    fact(a, "account", "recipientAccountId", "unknown")
}

fn tagged(a: &Value, tag: &str) -> bool {
    a["rule"]["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == tag)
}

fn report(out: &Path, inputs: &[&Path]) {
    report_with(out, inputs, &[]);
}

/// `trailwatch report` with options besides the rules and the output.
fn report_with(out: &Path, inputs: &[&Path], extra: &[&str]) {
    let rules = root().join("rules");
    let mut args = vec![
        "report",
        "--rules",
        rules.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(extra);
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    let o = trailwatch(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn replayed(inputs: &[&Path]) -> Vec<Value> {
    let rules = root().join("rules");
    let mut args = vec!["replay", "--rules", rules.to_str().unwrap(), "--quiet"];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    let o = trailwatch(&args);
    assert!(o.status.success());
    json_lines(&o.stdout)
}

#[test]
fn every_table_adds_up_to_the_alerts_it_summarises() {
    let sample = root().join("detector/samples");
    let dir = tempfile::tempdir().unwrap();
    report(dir.path(), &[&sample]);
    let alerts = replayed(&[&sample]);
    assert!(alerts.len() > 100, "{}", alerts.len());
    let by_id: BTreeMap<String, &Value> = alerts
        .iter()
        .map(|a| (a["alert_id"].as_str().unwrap().to_string(), a))
        .collect();
    let t = |name: &str| table(&dir.path().join(format!("{name}.csv")));

    let listed: BTreeSet<String> = t("alerts").iter().map(|r| r["alert id"].clone()).collect();
    assert_eq!(listed, by_id.keys().cloned().collect::<BTreeSet<_>>());

    for row in t("accounts") {
        let want: BTreeSet<String> = by_id
            .iter()
            .filter(|(_, a)| account(a) == row["account"])
            .map(|(i, _)| i.clone())
            .collect();
        assert_eq!(ids(&row), want, "account {}", row["account"]);
        assert_eq!(row["alerts"], want.len().to_string());
        let phi = want
            .iter()
            .filter(|i| tagged(by_id[*i], "audit.phi-access"))
            .count();
        assert_eq!(row["PHI access"], phi.to_string());
    }
    let controls = t("controls");
    // Every control an alert's rule names has its row: the CIS controls and the HIPAA ones.
    let named: BTreeSet<(String, String)> = alerts
        .iter()
        .flat_map(|a| {
            let tags = a["rule"]["tags"].as_array().unwrap().iter();
            tags.filter_map(Value::as_str)
                .filter(|t| t.starts_with("cis.cloudwatch.") || t.starts_with("hipaa.164.312."))
                .map(|t| (account(a), t.to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    let rows: BTreeSet<(String, String)> = controls
        .iter()
        .map(|r| (r["account"].clone(), r["control"].clone()))
        .collect();
    assert_eq!(rows, named);
    for prefix in ["cis.cloudwatch.", "hipaa.164.312."] {
        assert!(
            rows.iter().any(|(_, c)| c.starts_with(prefix)),
            "{prefix}* counted: {rows:?}"
        );
    }
    for row in &controls {
        let want: BTreeSet<String> = by_id
            .iter()
            .filter(|(_, a)| account(a) == row["account"] && tagged(a, &row["control"]))
            .map(|(i, _)| i.clone())
            .collect();
        assert_eq!(ids(row), want, "{} {}", row["account"], row["control"]);
    }
    let failed: BTreeSet<String> = t("failed-access").iter().flat_map(ids).collect();
    let want: BTreeSet<String> = by_id
        .iter()
        .filter(|(_, a)| {
            tagged(a, "audit.failed-access")
                || a["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| !e["errorCode"].is_null())
        })
        .map(|(i, _)| i.clone())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(failed, want);
    let changes: Vec<String> = t("config-changes")
        .iter()
        .map(|r| ids(r).into_iter().next().unwrap())
        .collect();
    let want: BTreeSet<String> = by_id
        .iter()
        .filter(|(_, a)| tagged(a, "audit.config-change"))
        .map(|(i, _)| i.clone())
        .collect();
    assert_eq!(
        (
            changes.len(),
            changes.iter().cloned().collect::<BTreeSet<_>>()
        ),
        (want.len(), want)
    );
    // Coverage: the events of every account and region add up to the records replayed.
    let events: u64 = t("coverage")
        .iter()
        .map(|r| r["events"].parse::<u64>().unwrap())
        .sum();
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(
        html.contains(&format!("<b>{events}</b>events examined")),
        "coverage total in the summary"
    );
    assert!(events > 3000, "{events}");
    let rules = t("rules");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["SHA-256 of the rule files"].len(), 64);
}

/// Records whose principals are markup and a spreadsheet formula.
fn hostile_input(dir: &Path) -> PathBuf {
    let record = |id: &str, arn: &str| {
        serde_json::json!({
            "eventVersion": "1.08", "eventID": id, "eventTime": "2026-11-02T03:04:05Z",
            "eventSource": "cloudtrail.amazonaws.com", "eventName": "StopLogging", "awsRegion": "us-east-1",
            "recipientAccountId": "111122223333", "sourceIPAddress": "=HYPERLINK(\"http://evil\")",
            "userIdentity": {"type": "IAMUser", "arn": arn}
        })
    };
    let path = dir.join("hostile.jsonl");
    let text = format!(
        "{}\n{}\n",
        record(
            "hostile-1",
            "arn:aws:iam::111122223333:user/<script>alert(1)</script>"
        ),
        record("hostile-2", "=HYPERLINK(\"http://evil\",\"x\")")
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn hostile_text_stays_text_in_html_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let input = hostile_input(dir.path());
    let out = dir.path().join("out");
    report(&out, &[&input]);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(!html.contains("<script>"), "markup passed through");
    assert!(html.contains("user/&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("default-src 'none'"), "nothing may load");
    let principals = csv(&out.join("top-principals.csv"));
    let cells: Vec<&str> = principals[1..].iter().map(|r| r[1].as_str()).collect();
    assert!(
        cells.contains(&"arn:aws:iam::111122223333:user/<script>alert(1)</script>"),
        "{cells:?}"
    );
    // A principal or address that is no ARN or address never reaches an alert at all (CSV
    // fields that could still start a formula, such as rule titles, are defused: unit test).
    assert!(cells.contains(&"<invalid>"), "{cells:?}");
    assert!(!std::fs::read_to_string(out.join("top-addresses.csv"))
        .unwrap()
        .contains("HYPERLINK"));
}

const ACCOUNT: &str = "111122223333";
const OTHER_ACCOUNT: &str = "444455556666";
/// An address both accounts see.
const SHARED_IP: &str = "203.0.113.7";

/// Three days of records: trail changes a day before and after the period (2026-11-02), and
/// inside it two hours of activity eight hours apart in one account (PHI read from another
/// account, a large PHI download, trail changes) and one trail change in a second account
/// from the same address.
fn period_input(dir: &Path) -> PathBuf {
    let stop = |id: &str, time: &str, account: &str, user: &str| {
        serde_json::json!({
            "eventVersion": "1.08", "eventID": id, "eventTime": time,
            "eventSource": "cloudtrail.amazonaws.com", "eventName": "StopLogging", "awsRegion": "us-east-1",
            "recipientAccountId": account, "sourceIPAddress": SHARED_IP,
            "userIdentity": {"type": "IAMUser", "accountId": account, "arn": format!("arn:aws:iam::{account}:user/{user}")}
        })
    };
    let read = |id: &str, time: &str, principal: &str, ip: &str, bytes: u64| {
        let owner = principal.split(':').nth(4).unwrap();
        serde_json::json!({
            "eventVersion": "1.09", "eventID": id, "eventTime": time,
            "eventSource": "s3.amazonaws.com", "eventName": "GetObject", "awsRegion": "us-east-1",
            "recipientAccountId": ACCOUNT, "sourceIPAddress": ip, "readOnly": true,
            "userIdentity": {"type": "IAMUser", "accountId": owner, "arn": principal},
            "requestParameters": {"bucketName": "example-phi-records", "key": "patients/0001.pdf"},
            "additionalEventData": {"bytesTransferredOut": bytes},
            "eventCategory": "Data", "managementEvent": false
        })
    };
    let mallory = "arn:aws:iam::444455556666:user/mallory";
    let alice = "arn:aws:iam::111122223333:user/alice";
    let records = [
        stop("p-early", "2026-11-01T10:00:00Z", ACCOUNT, "early"),
        stop("p-in-1", "2026-11-02T01:00:00Z", ACCOUNT, "inside"),
        read(
            "p-phi-1",
            "2026-11-02T01:10:00Z",
            mallory,
            "198.51.100.20",
            1000,
        ),
        read(
            "p-phi-2",
            "2026-11-02T01:20:00Z",
            alice,
            "198.51.100.10",
            600 << 20,
        ),
        read(
            "p-phi-3",
            "2026-11-02T01:30:00Z",
            alice,
            "198.51.100.10",
            600 << 20,
        ),
        stop("p-in-2", "2026-11-02T09:00:00Z", ACCOUNT, "inside"),
        read(
            "p-phi-4",
            "2026-11-02T09:10:00Z",
            mallory,
            "198.51.100.20",
            1000,
        ),
        stop("p-other", "2026-11-02T09:20:00Z", OTHER_ACCOUNT, "admin"),
        stop("p-late", "2026-11-03T10:00:00Z", ACCOUNT, "late"),
    ];
    let path = dir.join("period.jsonl");
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

fn first_seen(a: &Value) -> &str {
    a["first_seen"].as_str().unwrap()
}

fn principal(a: &Value) -> String {
    fact(a, "principal_arn", "userIdentity.arn", "-")
}

fn address(a: &Value) -> String {
    fact(a, "sourceIPAddress", "sourceIPAddress", "-")
}

fn alert_id(a: &Value) -> String {
    a["alert_id"].as_str().unwrap().to_string()
}

/// The alerts of a plain replay whose first event is inside 2026-11-02 (UTC), and all of them.
fn alerts_of_the_period(input: &Path) -> (Vec<Value>, Vec<Value>) {
    let all = replayed(&[input]);
    let inside = all
        .iter()
        .filter(|a| first_seen(a) >= "2026-11-02" && first_seen(a) < "2026-11-03")
        .cloned()
        .collect();
    (inside, all)
}

/// The period the period tests report on.
const PERIOD: [&str; 4] = ["--since", "2026-11-02", "--until", "2026-11-03"];

/// A report of [`PERIOD`] over [`period_input`] written in `dir/out`, with the alerts of the
/// period and all the input's alerts.
fn period_report(dir: &Path) -> (PathBuf, Vec<Value>, Vec<Value>) {
    let input = period_input(dir);
    let out = dir.join("out");
    report_with(&out, &[&input], &PERIOD);
    let (inside, all) = alerts_of_the_period(&input);
    (out, inside, all)
}

#[test]
fn since_and_until_keep_the_period_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let (out, inside, all) = period_report(dir.path());
    let outside: BTreeSet<String> = all
        .iter()
        .filter(|a| !inside.contains(a))
        .map(alert_id)
        .collect();
    assert!(
        all.iter().any(|a| first_seen(a).starts_with("2026-11-01"))
            && all.iter().any(|a| first_seen(a).starts_with("2026-11-03")),
        "the input has alerts either side of the period: {all:?}"
    );
    let listed: BTreeSet<String> = table(&out.join("alerts.csv"))
        .iter()
        .map(|r| r["alert id"].clone())
        .collect();
    assert_eq!(listed, inside.iter().map(alert_id).collect());
    assert!(listed.is_disjoint(&outside));
    // Coverage counts the period's seven records, not the day before or after.
    let events: u64 = table(&out.join("coverage.csv"))
        .iter()
        .map(|r| r["events"].parse::<u64>().unwrap())
        .sum();
    assert_eq!(events, 7);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let shown = "2026-11-02T00:00:00Z to 2026-11-03T00:00:00Z (UTC)";
    assert!(
        html.contains(&format!("<p>Period: {shown}</p>")),
        "period in the header"
    );
    assert!(html.contains(&format!("<title>trailwatch audit report, {shown}</title>")));
    for early_or_late in ["user/early", "user/late"] {
        assert!(!html.contains(early_or_late), "{early_or_late} is outside");
    }
}

#[test]
fn a_gap_longer_than_silent_hours_is_a_silent_period() {
    let dir = tempfile::tempdir().unwrap();
    let input = period_input(dir.path());
    let silences = |hours: &str| {
        let out = dir.path().join(format!("out-{hours}"));
        let mut args = PERIOD.to_vec();
        args.extend(["--silent-hours", hours]);
        report_with(&out, &[&input], &args);
        table(&out.join("silent-periods.csv"))
    };
    // Events at 01:xx and 09:xx: hours 02 to 08 are silent, seven of them.
    let gap = BTreeMap::from(
        [
            ("account", ACCOUNT),
            ("region", "us-east-1"),
            ("from", "2026-11-02T02:00:00Z"),
            ("until", "2026-11-02T09:00:00Z"),
            ("hours", "7"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let rows = silences("3");
    assert!(rows.contains(&gap), "{rows:?}");
    let rows = silences("8");
    assert!(!rows.contains(&gap), "seven hours are not eight: {rows:?}");
    assert!(rows.iter().all(|r| r["hours"].parse::<u64>().unwrap() >= 8));
}

/// The PHI table against the alerts it summarises, and the HIPAA controls they fall under.
#[test]
fn phi_access_rows_are_the_phi_alerts_by_account_and_principal() {
    let dir = tempfile::tempdir().unwrap();
    let (out, inside, _) = period_report(dir.path());
    let mut want: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
    for a in inside.iter().filter(|a| tagged(a, "audit.phi-access")) {
        want.entry((account(a), principal(a))).or_default().push(a);
    }
    let principals: BTreeSet<&str> = want.keys().map(|(_, p)| p.as_str()).collect();
    assert_eq!(
        principals,
        BTreeSet::from([
            "arn:aws:iam::111122223333:user/alice",
            "arn:aws:iam::444455556666:user/mallory"
        ]),
        "the large download and the reads from another account"
    );
    let rows = table(&out.join("phi-access.csv"));
    assert_eq!(rows.len(), want.len(), "{rows:?}");
    for row in &rows {
        let alerts = &want[&(row["account"].clone(), row["principal"].clone())];
        // The events behind each alert, not its count (a large download's is bytes).
        let events: u64 = alerts
            .iter()
            .map(|a| a["lineage"]["total"].as_u64().unwrap().max(1))
            .sum();
        let rules: BTreeSet<&str> = alerts
            .iter()
            .map(|a| a["rule"]["title"].as_str().unwrap())
            .collect();
        let times: BTreeSet<&str> = alerts.iter().map(|a| first_seen(a)).collect();
        let time = |t: &str| t.get(..19).unwrap().to_string() + "Z";
        assert_eq!(ids(row), alerts.iter().map(|a| alert_id(a)).collect());
        assert_eq!(row["alerts"], alerts.len().to_string());
        assert_eq!(row["events"], events.to_string());
        assert_eq!(row["first"], time(times.first().unwrap()));
        assert_eq!(row["last"], time(times.last().unwrap()));
        assert_eq!(
            row["rules"],
            rules.into_iter().collect::<Vec<_>>().join("; ")
        );
    }
    // Every PHI alert counts under the HIPAA controls its rule names.
    let controls = table(&out.join("controls.csv"));
    let hipaa: BTreeSet<(String, String)> = controls
        .iter()
        .filter(|r| r["control"].starts_with("hipaa.164.312."))
        .map(|r| (r["account"].clone(), r["control"].clone()))
        .collect();
    assert!(hipaa.contains(&(ACCOUNT.to_string(), "hipaa.164.312.b".to_string())));
    for a in inside.iter().filter(|a| tagged(a, "audit.phi-access")) {
        let named = a["rule"]["tags"].as_array().unwrap().iter();
        for tag in named
            .filter_map(Value::as_str)
            .filter(|t| t.starts_with("hipaa.164.312."))
        {
            let row = controls
                .iter()
                .find(|r| r["account"] == account(a) && r["control"] == tag)
                .unwrap_or_else(|| panic!("no row for {tag}"));
            assert!(ids(row).contains(&alert_id(a)), "{tag}");
        }
    }
}

#[test]
fn top_addresses_are_per_account() {
    let dir = tempfile::tempdir().unwrap();
    let (out, inside, _) = period_report(dir.path());
    let rows = table(&out.join("top-addresses.csv"));
    let mut want: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for a in &inside {
        want.entry((account(a), address(a)))
            .or_default()
            .insert(alert_id(a));
    }
    let have: BTreeMap<(String, String), BTreeSet<String>> = rows
        .iter()
        .map(|r| ((r["account"].clone(), r["address"].clone()), ids(r)))
        .collect();
    assert_eq!(have, want);
    for a in [ACCOUNT, OTHER_ACCOUNT] {
        assert!(
            have.contains_key(&(a.to_string(), SHARED_IP.to_string())),
            "{SHARED_IP} in {a}: {have:?}"
        );
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let section = html
        .split("<section id=\"top-addresses\">")
        .nth(1)
        .unwrap()
        .split("</section>")
        .next()
        .unwrap();
    assert!(
        section.contains("<th>account</th><th>address</th>"),
        "{section}"
    );
    assert_eq!(section.matches(&format!("<td>{SHARED_IP}</td>")).count(), 2);
}

/// Chromium from scripts/test.sh; None (skip) outside CI when missing.
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser"].iter().find_map(|name| {
        let o = Command::new("which").arg(name).output().ok()?;
        o.status
            .success()
            .then(|| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
    });
    if found.is_none() && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and no chromium: scripts/test.sh installs Debian's chromium");
    }
    found
}

fn headless(browser: &Path, args: &[&str], page: &Path) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap()
}

#[test]
fn the_page_renders_in_headless_chromium() {
    let Some(browser) = chromium() else { return };
    let sample = root().join("detector/samples");
    let dir = tempfile::tempdir().unwrap();
    report(dir.path(), &[&sample]);
    let page = dir.path().join("report.html");
    let dom = headless(&browser, &["--dump-dom"], &page);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    for id in [
        "summary",
        "accounts",
        "controls",
        "failed-access",
        "config-changes",
        "phi-access",
        "top-principals",
        "top-addresses",
        "coverage",
        "silent-periods",
        "rules",
        "alerts",
    ] {
        assert!(
            dom.contains(&format!("<section id=\"{id}\">")),
            "section {id} rendered"
        );
    }
    let alerts = replayed(&[&sample]).len();
    assert_eq!(
        dom.matches("<tr id=\"a-").count(),
        alerts,
        "an anchor per alert"
    );
    assert!(dom.contains("<svg"), "charts rendered");
}

/// The page's height in CSS pixels, measured on a copy that may run a script (the report
/// itself forbids every script), so that a screenshot can hold the whole page.
fn page_height(browser: &Path, page: &Path) -> u32 {
    let html = std::fs::read_to_string(page).unwrap();
    let csp = html
        .find("<meta http-equiv=\"Content-Security-Policy\"")
        .unwrap();
    let csp_end = csp + html[csp..].find('>').unwrap() + 1;
    let probe = format!("{}{}", &html[..csp], &html[csp_end..]).replace(
        "</body>",
        "<script>document.title = 'height ' + document.documentElement.scrollHeight</script></body>",
    );
    let copy = page.with_file_name("measure.html");
    std::fs::write(&copy, probe).unwrap();
    let dom = headless(browser, &["--window-size=1280,1000", "--dump-dom"], &copy);
    let dom = String::from_utf8_lossy(&dom.stdout);
    let at = dom.find("<title>height ").expect("the probe ran") + "<title>height ".len();
    dom[at..].split('<').next().unwrap().parse().unwrap()
}

/// docs/report-screenshot.png: the whole page over the bundled EventBridge sample, made in the
/// workspace with relative paths, as the docs show the command.
#[test]
fn the_screenshot_holds_the_whole_page() {
    let Some(browser) = chromium() else { return };
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(trailwatch_e2e::trailwatch_bin())
        .current_dir(root())
        .args(["report", "--rules", "rules", "--top", "10", "--out"])
        .arg(dir.path())
        .arg("detector/samples/eventbridge.jsonl")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let page = dir.path().join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    let header = html.split("</header>").next().unwrap();
    assert!(
        header.contains("from a replay of 1 input(s): detector/samples/eventbridge.jsonl</p>"),
        "{header}"
    );
    let here = root().canonicalize().unwrap();
    for absolute in [here.to_str().unwrap(), dir.path().to_str().unwrap()] {
        assert!(!header.contains(absolute), "{absolute} in {header}");
    }

    let height = page_height(&browser, &page);
    assert!(height > 5000, "{height}: every section and alert");
    let shot = dir.path().join("report.png");
    let o = headless(
        &browser,
        &[
            &format!("--window-size=1280,{height}"),
            &format!("--screenshot={}", shot.display()),
        ],
        &page,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let size = |png: &[u8]| {
        let word = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
        (word(16), word(20))
    };
    assert_eq!(size(&png), (1280, height), "the whole page");
    assert!(
        png.len() > 200_000,
        "a page, not a blank: {} bytes",
        png.len()
    );
    let docs = root().join("docs/report-screenshot.png");
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::copy(&shot, &docs).unwrap();
    }
    let kept = std::fs::read(&docs).expect(
        "docs/report-screenshot.png (UPDATE_DOCS=1 cargo test -p trailwatch-e2e --test report)",
    );
    assert_eq!(&kept[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        size(&kept).1 > 5000,
        "docs/report-screenshot.png is the whole page"
    );
}

/// Over an archive with the key: an object forged without the key (a made-up writer framing
/// someone) is left out of every table and named in the header; without the key the report
/// says it is unverified.
#[test]
fn forged_archive_objects_frame_nobody() {
    use trailwatch::sink::archive::{object, spool::Spool, store::Store};
    let dir = tempfile::tempdir().unwrap();
    let key = b"archive-secret-0123456789abcdef";
    std::fs::write(dir.path().join("archive.key"), key).unwrap();
    let sample = root().join("detector/samples");
    let alerts = replayed(&[&sample]);
    let real: Vec<Vec<u8>> = alerts[..5]
        .iter()
        .map(|a| format!("{{\"kind\":\"alert\",\"alert\":{a}}}").into_bytes())
        .collect();
    let mut spool = Spool::open(&dir.path().join("spool"), "node-a", key, 1 << 30).unwrap();
    spool.append(&real).unwrap();
    spool.seal().unwrap();
    let archive = dir.path().join("archive");
    let store = Store::Dir(archive.clone());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for out in spool.ready().unwrap() {
        let (name, bytes) = spool.read_outgoing(&out).unwrap();
        runtime.block_on(store.put(&name, &bytes)).unwrap();
    }
    let mut framing = alerts[5].clone();
    framing["alert_id"] = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0".into();
    framing["events"][0]["principal_arn"] = "arn:aws:iam::111122223333:user/framed-innocent".into();
    let forged_records = vec![format!("{{\"kind\":\"alert\",\"alert\":{framing}}}").into_bytes()];
    let mut header = object::decode(
        &std::fs::read(archive.join(object::object_name(
            "node-a",
            object::day_of(&object::now_rfc3339()),
            1,
        )))
        .unwrap(),
    )
    .unwrap()
    .0;
    header.writer = "ghost".into();
    header.seal(&forged_records, b"not the key");
    let ghost = archive.join(object::object_name(
        "ghost",
        object::day_of(&header.sealed),
        1,
    ));
    std::fs::create_dir_all(ghost.parent().unwrap()).unwrap();
    std::fs::write(&ghost, object::encode(&header, &forged_records)).unwrap();

    let report_of = |extra: &[&str]| {
        let out = dir.path().join(format!("out{}", extra.len()));
        let mut args = vec![
            "report",
            "--archive",
            archive.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        let o = trailwatch(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        out
    };
    let key_file = dir.path().join("archive.key");
    let verified = report_of(&["--key-file", key_file.to_str().unwrap()]);
    let listed = std::fs::read_to_string(verified.join("alerts.csv")).unwrap();
    assert_eq!(listed.lines().count(), 1 + 5, "{listed}");
    assert!(!listed.contains("framed-innocent"));
    let html = std::fs::read_to_string(verified.join("report.html")).unwrap();
    assert!(
        html.contains("1 archive object(s) left out"),
        "named in the header"
    );
    assert!(html.contains("NOT intact"), "and in the verdict");
    let unverified = report_of(&[]);
    let html = std::fs::read_to_string(unverified.join("report.html")).unwrap();
    assert!(html.contains("not verified: no archive key given"));
}
