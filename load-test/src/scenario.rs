//! Attack scenarios injected into generated traffic at known times, with the alerts the shipped
//! rule pack (`rules/`) must raise for them: the ground truth a run is checked against.
//!
//! Scenario actors use names starting with `scenario-` and addresses from the documentation
//! ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24), which background traffic never uses,
//! so any alert naming them is either expected or a false positive.

use crate::generate::format_time;
use serde_json::{json, Value};

/// One alert the rule pack must raise.
#[derive(Debug, Clone, PartialEq)]
pub struct Expect {
    /// Which scenario.
    pub scenario: &'static str,
    /// The rule file, relative to `rules/`.
    pub rule: &'static str,
    /// For a single-event rule: the ids of the events one principal caused. The rules suppress
    /// repeats, so these raise one alert (carrying one of them) and a roll-up counting the rest.
    pub event_ids: Vec<String>,
    /// The principal (ARN) of those events.
    pub principal: Option<String>,
    /// For a correlation or geo rule: its group.
    pub group: Option<Value>,
    /// For a correlation or geo rule: the id of the event that completes it (its condition
    /// holds from this event on, not before), which event-to-page latency is measured from.
    pub completed_by: Option<String>,
    /// Whether the rule needs an IP geolocation database to fire.
    pub needs_geoip: bool,
}

impl Expect {
    /// The ground-truth line.
    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "rule": self.rule,
            "event_ids": self.event_ids,
            "group": self.group,
            "completed_by": self.completed_by,
            "needs_geoip": self.needs_geoip,
        })
    }
}

/// Addresses the impossible-travel scenario uses, with where a geolocation database must place
/// them: (network, country, latitude, longitude).
pub const TRAVEL_NETWORKS: &[(&str, &str, f64, f64)] = &[
    ("198.51.100.0/24", "US", 39.96, -83.0),
    ("203.0.113.0/24", "DE", 50.11, 8.68),
];

struct Builder {
    account: String,
    events: Vec<(i64, Value)>,
    expect: Vec<Expect>,
    seq: u32,
}

impl Builder {
    fn base(&mut self, t: i64, source: &str, name: &str, identity: Value) -> Value {
        self.seq += 1;
        json!({
            "eventVersion": "1.09",
            "userIdentity": identity,
            "eventTime": format_time(t),
            "eventSource": format!("{source}.amazonaws.com"),
            "eventName": name,
            "awsRegion": "us-east-1",
            "sourceIPAddress": "192.0.2.10",
            "userAgent": "aws-cli/2.15.30",
            "requestParameters": null,
            "responseElements": null,
            "eventID": format!("scenario-{:08}", self.seq),
            "eventType": "AwsApiCall",
            "recipientAccountId": self.account,
        })
    }

    fn user(&self, name: &str) -> Value {
        json!({"type": "IAMUser", "principalId": "AIDASCENARIO", "arn": format!("arn:aws:iam::{}:user/{name}", self.account), "accountId": self.account, "userName": name})
    }

    fn root(&self) -> Value {
        json!({"type": "Root", "principalId": self.account, "arn": format!("arn:aws:iam::{}:root", self.account), "accountId": self.account})
    }

    fn login(&mut self, t: i64, identity: Value, ip: &str, ok: bool) -> Value {
        let mut e = self.base(t, "signin", "ConsoleLogin", identity);
        e["sourceIPAddress"] = json!(ip);
        e["eventType"] = json!("AwsConsoleSignIn");
        e["responseElements"] = json!({"ConsoleLogin": if ok { "Success" } else { "Failure" }});
        e["additionalEventData"] = json!({"LoginTo": "https://console.aws.amazon.com/console/home", "MobileVersion": "No", "MFAUsed": "Yes"});
        if !ok {
            e["errorMessage"] = json!("Failed authentication");
        }
        e
    }

    fn push(&mut self, t: i64, e: Value) -> String {
        let id = e["eventID"].as_str().unwrap_or_default().to_string();
        self.events.push((t, e));
        id
    }

    fn expect_event(&mut self, scenario: &'static str, rule: &'static str, id: &str) {
        let principal = self
            .events
            .iter()
            .find(|(_, e)| e["eventID"] == id)
            .and_then(|(_, e)| e["userIdentity"]["arn"].as_str())
            .map(str::to_string);
        let same = self.expect.iter_mut().find(|x| {
            x.scenario == scenario
                && x.rule == rule
                && x.group.is_none()
                && x.principal == principal
        });
        if let Some(x) = same {
            x.event_ids.push(id.to_string());
            return;
        }
        self.expect.push(Expect {
            scenario,
            rule,
            event_ids: vec![id.to_string()],
            principal,
            group: None,
            completed_by: None,
            needs_geoip: false,
        });
    }

    fn expect_group(
        &mut self,
        scenario: &'static str,
        rule: &'static str,
        group: Value,
        completed_by: &str,
        needs_geoip: bool,
    ) {
        self.expect.push(Expect {
            scenario,
            rule,
            event_ids: Vec::new(),
            principal: None,
            group: Some(group),
            completed_by: Some(completed_by.to_string()),
            needs_geoip,
        });
    }
}

/// The scenario events (time, event) and the alerts they must raise, placed from `start` on,
/// one scenario every `gap` seconds.
pub fn scenarios(start: i64, gap: i64, account: &str) -> (Vec<(i64, Value)>, Vec<Expect>) {
    let mut b = Builder {
        account: account.to_string(),
        events: Vec::new(),
        expect: Vec::new(),
        seq: 0,
    };
    let mut t = start;

    // Brute force: eight failures for one user in four minutes; the rule fires at six.
    let mut ids = Vec::new();
    for i in 0..8 {
        let who = b.user("scenario-bf");
        let e = b.login(t + i * 30, who, "192.0.2.50", false);
        let id = b.push(t + i * 30, e);
        b.expect_event(
            "brute_force",
            "cis/06_console_authentication_failures.yml",
            &id,
        );
        ids.push(id);
    }
    let group = json!({"recipientAccountId": account, "userIdentity.userName": "scenario-bf"});
    b.expect_group(
        "brute_force",
        "correlations/console_login_failure_burst_user.yml",
        group,
        &ids[5],
        false,
    );
    t += gap;

    // Password spray: twelve users from one address, 100 s apart (never ten in ten minutes);
    // the rule fires at the tenth user.
    let mut ids = Vec::new();
    for i in 0..12 {
        let who = b.user(&format!("scenario-spray-{i:02}"));
        let e = b.login(t + i * 100, who, "192.0.2.77", false);
        let id = b.push(t + i * 100, e);
        b.expect_event(
            "password_spray",
            "cis/06_console_authentication_failures.yml",
            &id,
        );
        ids.push(id);
    }
    b.expect_group(
        "password_spray",
        "correlations/password_spray.yml",
        json!({"sourceIPAddress": "192.0.2.77"}),
        &ids[9],
        false,
    );
    t += gap;

    // Root signs in, then creates an access key for a user five minutes later.
    let root = b.root();
    let e = b.login(t, root.clone(), "192.0.2.60", true);
    let id = b.push(t, e);
    b.expect_event("root_login", "detections/root_console_login.yml", &id);
    b.expect_event("root_login", "cis/01_root_account_usage.yml", &id);
    let mut key = b.base(t + 300, "iam", "CreateAccessKey", root.clone());
    key["requestParameters"] = json!({"userName": "scenario-svc"});
    let id = b.push(t + 300, key);
    b.expect_event("root_login", "cis/01_root_account_usage.yml", &id);
    let group = json!({"recipientAccountId": account, "userIdentity.arn": root["arn"]});
    b.expect_group(
        "root_login",
        "correlations/root_login_then_iam_change.yml",
        group,
        &id,
        false,
    );
    t += gap;

    // MFA device deactivated.
    let who = b.user("scenario-mfa");
    let mut e = b.base(t, "iam", "DeactivateMFADevice", who);
    e["requestParameters"] = json!({"userName": "scenario-mfa", "serialNumber": format!("arn:aws:iam::{account}:mfa/scenario-mfa")});
    let id = b.push(t, e);
    b.expect_event("mfa_disable", "detections/mfa_device_deactivated.yml", &id);
    t += gap;

    // Security group opened to the world.
    let who = b.user("scenario-net");
    let mut e = b.base(t, "ec2", "AuthorizeSecurityGroupIngress", who);
    e["requestParameters"] = json!({"groupId": "sg-0scenario", "ipPermissions": {"items": [{"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}}]}});
    let id = b.push(t, e);
    b.expect_event(
        "security_group_open",
        "cis/10_security_group_changes.yml",
        &id,
    );
    t += gap;

    // CloudTrail stopped.
    let who = b.user("scenario-trail");
    let mut e = b.base(t, "cloudtrail", "StopLogging", who);
    e["requestParameters"] = json!({"name": "org-trail"});
    let id = b.push(t, e);
    b.expect_event(
        "cloudtrail_stopped",
        "cis/05_cloudtrail_configuration_changes.yml",
        &id,
    );
    b.expect_event(
        "cloudtrail_stopped",
        "detections/cloudtrail_logging_stopped.yml",
        &id,
    );
    t += gap;

    // Impossible travel: Ohio, then Frankfurt ten minutes later.
    let who = b.user("scenario-traveler");
    let e = b.login(t, who.clone(), "198.51.100.70", true);
    b.push(t, e);
    let e = b.login(t + 600, who.clone(), "203.0.113.80", true);
    let id = b.push(t + 600, e);
    b.expect_group(
        "impossible_travel",
        "geo/impossible_travel_console_login.yml",
        json!({"userIdentity.arn": who["arn"]}),
        &id,
        true,
    );
    t += gap;

    dormant_user(&mut b, t);
    t += gap;
    phi_exfiltration(&mut b, t);
    t += gap;
    phi_mass_delete(&mut b, t);
    trail_goes_quiet(&mut b, start);
    established_users(&mut b, start);

    b.events.sort_by_key(|(t, _)| *t);
    (b.events, b.expect)
}

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

/// An IAM user active 45 days ago (the rules have been learning since), back now: more than the
/// 30 days the dormant-user rule remembers a user.
fn dormant_user(b: &mut Builder, t: i64) {
    let who = b.user("scenario-dormant");
    for at in [t - 45 * DAY, t - 45 * DAY + 60] {
        let e = b.base(at, "s3", "ListBuckets", who.clone());
        b.push(at, e);
    }
    let e = b.base(t, "iam", "ListAccessKeys", who.clone());
    let id = b.push(t, e);
    b.expect_group(
        "dormant_user",
        "detections/iam_user_dormant_activity.yml",
        json!({"userIdentity.arn": who["arn"]}),
        &id,
        false,
    );
}

/// An object-level S3 data event on the example PHI bucket of `rules/phi/placeholders.yml`.
fn phi_object(b: &mut Builder, t: i64, name: &str, who: &Value, ip: &str, bytes: u64) -> Value {
    let mut e = b.base(t, "s3", name, who.clone());
    e["sourceIPAddress"] = json!(ip);
    e["eventCategory"] = json!("Data");
    e["managementEvent"] = json!(false);
    e["requestParameters"] = json!({"bucketName": "example-phi-records", "key": format!("patients/{:06}.pdf", t % 1_000_000)});
    e["additionalEventData"] = json!({"bytesTransferredIn": 0, "bytesTransferredOut": bytes});
    e
}

/// A reader of patient records, seen from Ohio ten to eight days ago, downloads 1.2 GiB from
/// Frankfurt within twenty minutes: a new country for PHI access, and a large download.
fn phi_exfiltration(b: &mut Builder, t: i64) {
    let who = b.user("scenario-phi-reader");
    for days in [10, 9, 8] {
        let e = phi_object(
            b,
            t - days * DAY,
            "GetObject",
            &who,
            "198.51.100.90",
            50_000,
        );
        b.push(t - days * DAY, e);
    }
    let mut ids = Vec::new();
    for i in 0..4 {
        let e = phi_object(b, t + i * 400, "GetObject", &who, "203.0.113.90", 300 << 20);
        ids.push(b.push(t + i * 400, e));
    }
    b.expect_group(
        "phi_exfiltration",
        "phi/phi_access_new_country.yml",
        json!({"userIdentity.arn": who["arn"]}),
        &ids[0],
        true,
    );
    let group = json!({"recipientAccountId": b.account, "userIdentity.arn": who["arn"]});
    b.expect_group(
        "phi_exfiltration",
        "phi/phi_large_download.yml",
        group,
        &ids[3],
        false,
    );
}

/// Thirty patient records deleted in five minutes; the rule fires at the twenty-fifth.
fn phi_mass_delete(b: &mut Builder, t: i64) {
    let who = b.user("scenario-phi-cleaner");
    let mut ids = Vec::new();
    for i in 0..30 {
        let e = phi_object(b, t + i * 10, "DeleteObject", &who, "192.0.2.10", 0);
        ids.push(b.push(t + i * 10, e));
    }
    let group = json!({"recipientAccountId": b.account, "userIdentity.arn": who["arn"]});
    b.expect_group(
        "phi_mass_delete",
        "phi/phi_mass_delete.yml",
        group,
        &ids[24],
        false,
    );
}

/// Before the background traffic: one account's eu-west-1 delivers every 30 minutes for 30
/// hours, then nothing, while another account's region goes on hourly (too few events to count
/// as a normal source itself). The first of the latter's events past the silence, less the
/// lateness, completes the silence rule.
fn trail_goes_quiet(b: &mut Builder, start: i64) {
    let (quiet, busy) = ("999900000001", "999900000002");
    let begin = start - 40 * HOUR;
    let source = |b: &mut Builder, account: &str, at: i64| {
        let mut e = b.base(
            at,
            "ec2",
            "DescribeInstances",
            json!({"type": "AWSService", "invokedBy": "ec2.amazonaws.com"}),
        );
        e["recipientAccountId"] = json!(account);
        e["awsRegion"] = json!("eu-west-1");
        e["sourceIPAddress"] = json!("ec2.amazonaws.com");
        b.push(at, e)
    };
    let mut last = begin;
    for k in 0..=60 {
        last = begin + k * 1800;
        source(b, quiet, last);
    }
    let silent_from = last + 6 * HOUR;
    let mut completing = String::new();
    for k in 0..40 {
        let at = begin + k * HOUR;
        let id = source(b, busy, at);
        if completing.is_empty() && at - LATENESS >= silent_from {
            completing = id;
        }
    }
    b.expect_group(
        "trail_goes_quiet",
        "detections/cloudtrail_delivery_silent.yml",
        json!({"recipientAccountId": quiet, "awsRegion": "eu-west-1"}),
        &completing,
        false,
    );
}

/// Every scenario IAM user but the dormant one has been working for weeks: an API call while
/// the rules were still learning and one within the 30 days the dormant-user rule remembers,
/// so only the dormant user is new to it.
fn established_users(b: &mut Builder, start: i64) {
    let mut users: Vec<Value> = b
        .events
        .iter()
        .map(|(_, e)| e["userIdentity"].clone())
        .filter(|u| u["type"] == "IAMUser" && u["userName"] != "scenario-dormant")
        .collect();
    users.sort_by_key(|u| u["arn"].to_string());
    users.dedup();
    for who in users {
        for at in [start - 40 * DAY, start - 15 * DAY] {
            let e = b.base(at, "s3", "ListBuckets", who.clone());
            b.push(at, e);
        }
    }
}

/// The default lateness (`--lateness 5m`) the completing events are worked out for.
const LATENESS: i64 = 300;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenarios_are_ordered_and_distinct() {
        let (events, expect) = scenarios(1_700_000_000, 3600, "111122223333");
        assert!(events.windows(2).all(|w| w[0].0 <= w[1].0));
        let ids: std::collections::BTreeSet<_> = events
            .iter()
            .map(|(_, e)| e["eventID"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), events.len());
        assert!(expect
            .iter()
            .any(|e| e.scenario == "impossible_travel" && e.needs_geoip));
        assert_eq!(expect.iter().filter(|e| e.group.is_some()).count(), 9);
    }

    /// Collects the groups each correlation fired for.
    #[derive(Default)]
    struct Fired(Vec<(u32, Value)>);

    impl trailwatch::pipeline::Output for Fired {
        fn correlation(&mut self, hit: &trailwatch::window::CorrelationHit) {
            self.0.push((hit.correlation, hit.group_json()));
        }
    }

    #[test]
    fn completed_by_names_the_event_from_which_the_shipped_correlation_fires() {
        let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
        let (loaded, errors) = trailwatch::rule::load_paths(&[rules], &Default::default());
        assert!(errors.is_empty(), "{errors:?}");
        let set = trailwatch::engine::RuleSet::compile(loaded).expect("the rule pack compiles");
        let (events, expect) = scenarios(1_700_000_000, 3600, "111122223333");
        // Geo rules need a database; the others are decided by their events alone.
        let groups: Vec<&Expect> = expect
            .iter()
            .filter(|x| x.group.is_some() && !x.needs_geoip)
            .collect();
        assert_eq!(groups.len(), 7);
        for x in groups {
            let c = set
                .correlations()
                .iter()
                .position(|c| c.rule.file.ends_with(x.rule))
                .expect("the truth names a correlation of the pack") as u32;
            let completing = x.completed_by.as_deref().expect("a completing event");
            let at = events
                .iter()
                .position(|(_, e)| e["eventID"] == completing)
                .expect("the completing event is a scenario event");
            // Fed the events up to `n` (exclusive) and flushed, does it fire for its group?
            let fires = |n: usize| {
                let settings = trailwatch::pipeline::Settings::default();
                let mut p = trailwatch::pipeline::Pipeline::new(&set, None, &settings, None);
                let mut out = Fired::default();
                for (_, e) in &events[..n] {
                    p.decode(e.to_string().as_bytes(), &mut out).unwrap();
                }
                p.flush(&mut out);
                out.0
                    .iter()
                    .any(|(k, g)| *k == c && Some(g) == x.group.as_ref())
            };
            assert!(fires(at + 1), "{} fires with {completing}", x.rule);
            assert!(!fires(at), "{} fires before {completing}", x.rule);
        }
    }
}
