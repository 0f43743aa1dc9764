//! One stream, three modes. The same CloudTrail events (three accounts, duplicates delivered
//! next to their original, a few records later, and far beyond the lateness, reordered within
//! the lateness) go through `trailwatch replay`, `trailwatch run` on SQS (three pollers, random
//! SendMessageBatch sizes) and `trailwatch run` on a Kafka consumer group (three partitions, a
//! second member joining mid-stream). Every mode must give the same alerts, with the same ids,
//! and exactly the alerts written out by hand below: duplicates count nowhere (DESIGN.md,
//! "exactly-once detection over at-least-once input").
//!
//! Needs moto (MOTO_URL) and tansu (KAFKA_BROKERS), as scripts/test.sh starts them.

mod live;

use live::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use trailwatch_e2e::{json_lines, root, trailwatch};

// Accounts, chosen so the Kafka keys (the account) land on three different partitions of three
// (librdkafka's default partitioner: CRC-32 of the key, modulo the partition count).
const A: &str = "111111111111"; // partition 2
const B: &str = "222222222222"; // partition 1
const C: &str = "333333333333"; // partition 0

// Rules of the shipped pack (rules/), by id.
const ROOT_SIGN_IN: &str = "a0de9de0-0a91-56ce-b0e4-ecce68b37e9b"; // detections/root_console_login.yml
const ROOT_ACTIVITY: &str = "75ab5b7e-64aa-557a-9f25-176514f36e0f"; // cis/01_root_account_usage.yml
const IAM_POLICY: &str = "76a481d6-899e-52d2-8391-be255fbba1a8"; // cis/04_iam_policy_changes.yml
const ROOT_THEN_IAM: &str = "c6e802d8-609a-51c2-a3d3-06122a5f8b63"; // correlations/root_login_then_iam_change.yml
const TRAIL_CHANGED: &str = "23889b12-3446-513d-81d7-fab56cfff08f"; // cis/05_cloudtrail_configuration_changes.yml
const TRAIL_STOPPED: &str = "9857545a-882b-51f8-9ba6-763269e80c00"; // detections/cloudtrail_logging_stopped.yml
const SIGN_IN_FAILED: &str = "74ce9b0e-2b1e-529e-a229-fd1cf83dd194"; // cis/06_console_authentication_failures.yml
const FAILURES_BURST: &str = "6872cb6b-605f-577a-8eb3-14a222980228"; // correlations/console_login_failure_burst_user.yml (>= 6 in 10m)
const UNAUTHORIZED: &str = "fe7db0e1-db5f-559f-825c-bec02e2dd649"; // cis/02_unauthorized_api_calls.yml
const DENIED_BURST: &str = "b2d37744-d637-53a4-bc90-2181ee69a667"; // correlations/access_denied_burst.yml (>= 20 in 10m)
const KMS_DELETION: &str = "555c6b6f-91be-59a9-a12b-ffba7e4a90b1"; // cis/07_kms_key_disabled_or_scheduled_deletion.yml
const S3_POLICY: &str = "d1dcd677-74c5-5f4c-8e36-a8e381248830"; // cis/08_s3_bucket_policy_changes.yml
const S3_PUBLIC: &str = "0d5f79a6-bae4-5d4a-8b12-ce61319dcd9c"; // detections/s3_bucket_made_public.yml

/// Short names for messages.
fn rule_name(id: &str) -> &str {
    match id {
        ROOT_SIGN_IN => "root-console-sign-in",
        ROOT_ACTIVITY => "root-user-activity",
        IAM_POLICY => "iam-policy-changed",
        ROOT_THEN_IAM => "root-sign-in-then-iam-change",
        TRAIL_CHANGED => "cloudtrail-config-changed",
        TRAIL_STOPPED => "cloudtrail-stopped-or-deleted",
        SIGN_IN_FAILED => "console-auth-failure",
        FAILURES_BURST => "sign-in-failures-burst-user",
        UNAUTHORIZED => "unauthorized-api-calls",
        DENIED_BURST => "access-denied-burst",
        KMS_DELETION => "kms-key-disabled-or-deleted",
        S3_POLICY => "s3-bucket-policy-changed",
        S3_PUBLIC => "s3-bucket-public",
        other => other,
    }
}

/// The allowed lateness (`[windows] lateness`, `replay --lateness`), seconds: the default.
const LATENESS: i64 = 300;

/// Event time: seconds after 2026-11-01T10:00:00Z (the same day throughout).
fn at(t: i64) -> String {
    let s = 10 * 3600 + t;
    assert!((0..86_400).contains(&s));
    format!(
        "2026-11-01T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// A seeded generator (splitmix64): the same stream and batching on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn iam_user(account: &str, name: &str) -> Value {
    json!({"type": "IAMUser", "principalId": format!("AIDA{}", name.to_uppercase()),
           "arn": format!("arn:aws:iam::{account}:user/{name}"), "accountId": account, "userName": name})
}

fn root_user(account: &str) -> Value {
    json!({"type": "Root", "principalId": account, "arn": format!("arn:aws:iam::{account}:root"),
           "accountId": account})
}

fn role(account: &str, role: &str, session: &str) -> Value {
    json!({"type": "AssumedRole", "principalId": format!("AROA{}:{session}", role.to_uppercase()),
           "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{session}"), "accountId": account})
}

/// A management API call (successful unless changed).
fn api(id: &str, t: i64, account: &str, who: Value, service: &str, name: &str, ip: &str) -> Value {
    json!({"eventVersion": "1.09", "userIdentity": who, "eventTime": at(t),
           "eventSource": format!("{service}.amazonaws.com"), "eventName": name, "awsRegion": "us-east-1",
           "sourceIPAddress": ip, "userAgent": "aws-cli/2.15.30", "requestParameters": null,
           "responseElements": null, "eventID": id, "eventType": "AwsApiCall", "managementEvent": true,
           "recipientAccountId": account})
}

/// A console sign-in: successful (with or without MFA) or failed ("Failed authentication").
fn sign_in(id: &str, t: i64, account: &str, who: Value, ok: bool, mfa: bool, ip: &str) -> Value {
    let mut e = api(id, t, account, who, "signin", "ConsoleLogin", ip);
    e["eventType"] = json!("AwsConsoleSignIn");
    e["userAgent"] = json!("Mozilla/5.0 (X11; Linux x86_64)");
    e["responseElements"] = json!({"ConsoleLogin": if ok { "Success" } else { "Failure" }});
    e["additionalEventData"] = json!({"LoginTo": "https://console.aws.amazon.com/console/home",
                                      "MobileVersion": "No", "MFAUsed": if mfa { "Yes" } else { "No" }});
    if !ok {
        e["errorMessage"] = json!("Failed authentication");
    }
    e
}

fn with(mut e: Value, key: &str, value: Value) -> Value {
    e[key] = value;
    e
}

/// How a record is delivered a second time (the identical record, same eventID).
#[derive(Clone, Copy, Debug)]
enum Dup {
    /// Right after the first delivery.
    Next,
    /// This many deliveries later: still within the lateness.
    After(usize),
    /// After the stream has moved on by more than the lateness (7 minutes of event time).
    Far,
}

/// The stream: records in delivery order (duplicates included) and the tail.
struct Stream {
    /// Bare CloudTrail records, in delivery order.
    main: Vec<Value>,
    /// One innocent record per account, 3 hours of event time after the rest.
    tail: Vec<Value>,
    distinct: usize,
    duplicates: usize,
    /// First deliveries that arrive after a later event (reordered within the lateness).
    reordered: usize,
}

impl Stream {
    fn all(&self) -> impl Iterator<Item = &Value> {
        self.main.iter().chain(&self.tail)
    }
}

/// The scenarios, in three accounts over 20 minutes of event time (10:00 to 10:20, one clock
/// hour: every suppression window is the 10:00 one), plus benign traffic and near misses.
fn stream() -> Stream {
    let mut rng = Rng(0x00d1_ff7e_57ed);
    let mut plan: Vec<(i64, Value, Option<Dup>)> = Vec::new();
    let mut add = |t: i64, e: Value, dup: Option<Dup>| plan.push((t, e, dup));

    // Account A. Root signs in (delivered twice in a row) and within 15 minutes attaches a
    // policy: root sign-in, root activity x2 (one alert and a roll-up of 2), IAM policy
    // changed, and the "root sign-in followed by an IAM change" correlation (count 2: both
    // steps).
    add(
        60,
        sign_in(
            "a-root-sign-in",
            60,
            A,
            root_user(A),
            true,
            true,
            "198.51.100.5",
        ),
        Some(Dup::Next),
    );
    add(
        240,
        with(
            api(
                "a-root-attach",
                240,
                A,
                root_user(A),
                "iam",
                "AttachUserPolicy",
                "198.51.100.5",
            ),
            "requestParameters",
            json!({"userName": "break-glass", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
        ),
        None,
    );
    // alice stops logging (delivered again far beyond the lateness) and later deletes the
    // trail: both CloudTrail rules alert once and roll up 2.
    let trail = json!({"name": "org-trail"});
    add(
        120,
        with(
            api(
                "a-alice-stop",
                120,
                A,
                iam_user(A, "alice"),
                "cloudtrail",
                "StopLogging",
                "192.0.2.10",
            ),
            "requestParameters",
            trail.clone(),
        ),
        Some(Dup::Far),
    );
    add(
        900,
        with(
            api(
                "a-alice-delete",
                900,
                A,
                iam_user(A, "alice"),
                "cloudtrail",
                "DeleteTrail",
                "192.0.2.10",
            ),
            "requestParameters",
            trail,
        ),
        None,
    );
    // carol: six distinct failed sign-ins in 2.5 minutes (the second delivered twice): the
    // burst correlation fires exactly once (count 6); failure alert + roll-up of 6.
    for k in 0..6 {
        let t = 300 + 30 * k;
        let dup = (k == 1).then_some(Dup::After(4));
        add(
            t,
            sign_in(
                &format!("a-carol-fail-{k}"),
                t,
                A,
                iam_user(A, "carol"),
                false,
                false,
                "203.0.113.10",
            ),
            dup,
        );
    }

    // Account B. The regression case: dave fails three times, each failure delivered twice,
    // all within the lateness. Six deliveries, three events: the six-failures burst must NOT
    // fire; failure alert + roll-up of 3.
    for (k, (t, dup)) in [(200, Dup::Next), (260, Dup::After(3)), (320, Dup::After(6))]
        .into_iter()
        .enumerate()
    {
        add(
            t,
            sign_in(
                &format!("b-dave-fail-{k}"),
                t,
                B,
                iam_user(B, "dave"),
                false,
                false,
                "203.0.113.20",
            ),
            Some(dup),
        );
    }
    // A CI role refused 20 times in 3 minutes 10 s (two refusals delivered twice): the
    // access-denied burst fires once (count 20); unauthorized alert + roll-up of 20.
    let refusals = [
        ("iam", "ListUsers", "AccessDenied"),
        ("iam", "ListRoles", "AccessDenied"),
        ("s3", "ListBuckets", "AccessDenied"),
        ("ec2", "DescribeInstances", "Client.UnauthorizedOperation"),
        ("secretsmanager", "ListSecrets", "AccessDeniedException"),
    ];
    for k in 0..20 {
        let t = 500 + 10 * k as i64;
        let (service, name, code) = refusals[k % refusals.len()];
        let dup = match k {
            3 => Some(Dup::After(2)),
            11 => Some(Dup::Next),
            _ => None,
        };
        let e = api(
            &format!("b-ci-denied-{k}"),
            t,
            B,
            role(B, "ci", "build"),
            service,
            name,
            "10.0.1.15",
        );
        add(t, with(e, "errorCode", json!(code)), dup);
    }
    // A scanner refused 19 times (a near miss of the burst), three of them delivered twice
    // (next, a few later, far): 22 deliveries, 19 events. No burst; unauthorized alert +
    // roll-up of 19.
    for k in 0..19 {
        let t = 600 + 10 * k as i64;
        let (service, name, code) = refusals[(k + 2) % refusals.len()];
        let dup = match k {
            0 => Some(Dup::Far),
            7 => Some(Dup::Next),
            15 => Some(Dup::After(2)),
            _ => None,
        };
        let e = api(
            &format!("b-scanner-denied-{k}"),
            t,
            B,
            role(B, "scanner", "probe"),
            service,
            name,
            "198.51.100.66",
        );
        add(t, with(e, "errorCode", json!(code)), dup);
    }

    // Account C. erin changes IAM policies three times (the first delivered again far beyond
    // the lateness): alert + roll-up of 3; schedules a KMS key's deletion (delivered twice in a
    // row): one alert, no roll-up. frank makes a bucket public: two rules, one alert each.
    for (id, t, name, dup) in [
        ("c-erin-put-policy", 150, "PutUserPolicy", Some(Dup::Far)),
        ("c-erin-attach-policy", 480, "AttachRolePolicy", None),
        ("c-erin-create-policy", 1000, "CreatePolicy", None),
    ] {
        let e = api(id, t, C, iam_user(C, "erin"), "iam", name, "192.0.2.30");
        add(
            t,
            with(e, "requestParameters", json!({"policyName": "phi-readers"})),
            dup,
        );
    }
    add(
        700,
        with(
            api(
                "c-erin-kms-delete",
                700,
                C,
                iam_user(C, "erin"),
                "kms",
                "ScheduleKeyDeletion",
                "192.0.2.30",
            ),
            "requestParameters",
            json!({"keyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "pendingWindowInDays": 7}),
        ),
        Some(Dup::Next),
    );
    add(
        820,
        with(
            api(
                "c-frank-bucket-policy",
                820,
                C,
                iam_user(C, "frank"),
                "s3",
                "PutBucketPolicy",
                "192.0.2.31",
            ),
            "requestParameters",
            json!({"bucketName": "phi-archive", "bucketPolicy": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::phi-archive/*"}]}}),
        ),
        None,
    );

    // Benign traffic and near misses in every account (none alerts on its own), three of them
    // delivered twice.
    let mut n = 0;
    for account in [A, B, C] {
        for _ in 0..13 {
            let t = rng.below(1200) as i64;
            let id = format!("noise-{n}");
            let who = if rng.below(2) == 0 {
                iam_user(account, &format!("ops-{}", rng.below(3)))
            } else {
                role(account, "app", "task")
            };
            let ip = format!("192.0.2.{}", 100 + rng.below(50));
            let e = match rng.below(11) {
                0 => api(&id, t, account, who, "s3", "ListBuckets", &ip),
                1 => api(&id, t, account, who, "ec2", "DescribeInstances", &ip),
                2 => api(&id, t, account, who, "sts", "GetCallerIdentity", &ip),
                3 => api(&id, t, account, who, "logs", "DescribeLogGroups", &ip),
                4 => api(&id, t, account, who, "cloudtrail", "DescribeTrails", &ip),
                5 => api(&id, t, account, who, "kms", "ListKeys", &ip),
                // A successful sign-in with MFA: feeds only the geo rules (inactive here).
                6 => sign_in(&id, t, account, iam_user(account, "ops-0"), true, true, &ip),
                // Refusals the unauthorized-calls rule leaves out.
                7 => with(
                    api(&id, t, account, who, "s3", "HeadBucket", &ip),
                    "errorCode",
                    json!("AccessDenied"),
                ),
                8 => with(
                    api(
                        &id,
                        t,
                        account,
                        who,
                        "s3",
                        "PutObject",
                        "delivery.logs.amazonaws.com",
                    ),
                    "errorCode",
                    json!("AccessDenied"),
                ),
                // GuardDuty reconfigured, not disabled.
                9 => with(
                    api(&id, t, account, who, "guardduty", "UpdateDetector", &ip),
                    "requestParameters",
                    json!({"detectorId": "d1", "findingPublishingFrequency": "SIX_HOURS"}),
                ),
                // A failed IAM change feeds nothing.
                _ => with(
                    api(&id, t, account, who, "iam", "CreateUser", &ip),
                    "errorCode",
                    json!("EntityAlreadyExists"),
                ),
            };
            let dup = match n {
                4 => Some(Dup::Next),
                17 => Some(Dup::After(5)),
                30 => Some(Dup::Far),
                _ => None,
            };
            add(t, e, dup);
            n += 1;
        }
    }

    // Delivery order: by event time plus up to a minute of jitter (reordering well within the
    // lateness), then the duplicates inserted.
    let distinct = plan.len();
    let mut keyed: Vec<(i64, usize)> = (0..distinct)
        .map(|i| (plan[i].0 + rng.below(60) as i64, i))
        .collect();
    keyed.sort();
    let mut order: Vec<usize> = keyed.into_iter().map(|(_, i)| i).collect();
    let time = |i: usize| plan[i].0;
    let mut dups: Vec<(usize, Dup)> = Vec::new();
    for (i, p) in plan.iter().enumerate() {
        if let Some(d) = p.2 {
            dups.push((i, d));
        }
    }
    for &(i, d) in &dups {
        let pos = order.iter().position(|&x| x == i).unwrap();
        let at = match d {
            Dup::Next => pos + 1,
            Dup::After(k) => (pos + 1 + k).min(order.len()),
            Dup::Far => {
                let q = (pos + 1..order.len())
                    .find(|&q| time(order[q]) >= time(i) + 420)
                    .unwrap_or_else(|| panic!("nothing 7 minutes after {}", plan[i].1["eventID"]));
                q + 1
            }
        };
        order.insert(at, i);
    }

    // Check what the stream claims: every first delivery and every near duplicate is within
    // the lateness (with room to spare for SQS's concurrent pollers), every far one beyond it.
    let mut seen = vec![false; distinct];
    let mut max = i64::MIN;
    let mut reordered = 0;
    for &i in &order {
        let lag = max.saturating_sub(time(i)).max(0);
        let id = &plan[i].1["eventID"];
        if !seen[i] {
            assert!(lag <= 120, "{id} arrives {lag} s late");
            reordered += usize::from(lag > 0);
            seen[i] = true;
        } else {
            match dups.iter().find(|d| d.0 == i).unwrap().1 {
                Dup::Far => assert!(lag >= LATENESS + 60, "far duplicate {id}: only {lag} s"),
                _ => assert!(lag <= 180, "near duplicate {id}: {lag} s late"),
            }
        }
        max = max.max(time(i));
    }
    let last = plan.iter().map(|p| p.0).max().unwrap();
    // The tail: 3 hours later, one successful sign-in with MFA per account (so one per Kafka
    // partition). It alerts on nothing, but it is a hit of a rule correlations read
    // (console_login_success feeds the geo rules, inactive without a database), so it moves
    // every shard's event time on: the correlation reorder buffer (which, as of commit
    // 83c065d, advances on such hits only, not on any event) releases everything, and every
    // suppression window (10:00 to 11:00, closed once event time passes 11:05) emits its
    // roll-up. Live modes do not flush either at shutdown.
    let tail = [A, B, C]
        .iter()
        .enumerate()
        .map(|(k, account)| {
            let t = last + 3 * 3600 + k as i64;
            sign_in(
                &format!("tail-{account}"),
                t,
                account,
                iam_user(account, "ops-0"),
                true,
                true,
                "192.0.2.200",
            )
        })
        .collect();
    Stream {
        main: order.iter().map(|&i| plan[i].1.clone()).collect(),
        tail,
        distinct,
        duplicates: dups.len(),
        reordered,
    }
}

/// Key fields of a suppression group (single-event rules): account and principal.
fn principal(account: &str, arn: &str) -> String {
    format!("recipientAccountId={account},userIdentity.arn={arn}")
}

fn user_arn(account: &str, name: &str) -> String {
    format!("arn:aws:iam::{account}:user/{name}")
}

fn root_arn(account: &str) -> String {
    format!("arn:aws:iam::{account}:root")
}

fn role_arn(account: &str, role: &str, session: &str) -> String {
    format!("arn:aws:sts::{account}:assumed-role/{role}/{session}")
}

/// (rule id, kind, group, count): what each mode must give, worked out from the rule YAML.
type Expected = (String, String, String, u64);

fn expected() -> Vec<Expected> {
    let root_a = principal(A, &root_arn(A));
    let alice = principal(A, &user_arn(A, "alice"));
    let carol = principal(A, &user_arn(A, "carol"));
    let dave = principal(B, &user_arn(B, "dave"));
    let ci = principal(B, &role_arn(B, "ci", "build"));
    let scanner = principal(B, &role_arn(B, "scanner", "probe"));
    let erin = principal(C, &user_arn(C, "erin"));
    let frank = principal(C, &user_arn(C, "frank"));
    let rows: Vec<(&str, &str, String, u64)> = vec![
        // A: root signs in, then attaches a policy.
        (ROOT_SIGN_IN, "alert", root_a.clone(), 1),
        (ROOT_ACTIVITY, "alert", root_a.clone(), 1),
        (ROOT_ACTIVITY, "rollup", root_a.clone(), 2),
        (IAM_POLICY, "alert", root_a.clone(), 1),
        (ROOT_THEN_IAM, "alert", root_a, 2),
        // A: alice stops logging, deletes the trail.
        (TRAIL_CHANGED, "alert", alice.clone(), 1),
        (TRAIL_CHANGED, "rollup", alice.clone(), 2),
        (TRAIL_STOPPED, "alert", alice.clone(), 1),
        (TRAIL_STOPPED, "rollup", alice, 2),
        // A: carol's six distinct failures: the burst fires once.
        (SIGN_IN_FAILED, "alert", carol.clone(), 1),
        (SIGN_IN_FAILED, "rollup", carol, 6),
        (
            FAILURES_BURST,
            "alert",
            format!("recipientAccountId={A},userIdentity.userName=carol"),
            6,
        ),
        // B: dave's three failures, each delivered twice: no burst.
        (SIGN_IN_FAILED, "alert", dave.clone(), 1),
        (SIGN_IN_FAILED, "rollup", dave, 3),
        // B: twenty refusals of the CI role: the burst fires once.
        (UNAUTHORIZED, "alert", ci.clone(), 1),
        (UNAUTHORIZED, "rollup", ci, 20),
        (
            DENIED_BURST,
            "alert",
            format!("userIdentity.arn={}", role_arn(B, "ci", "build")),
            20,
        ),
        // B: nineteen refusals of the scanner, three delivered twice: no burst.
        (UNAUTHORIZED, "alert", scanner.clone(), 1),
        (UNAUTHORIZED, "rollup", scanner, 19),
        // C: erin's policy changes and KMS key deletion, frank's public bucket.
        (IAM_POLICY, "alert", erin.clone(), 1),
        (IAM_POLICY, "rollup", erin.clone(), 3),
        (KMS_DELETION, "alert", erin, 1),
        (S3_POLICY, "alert", frank.clone(), 1),
        (S3_PUBLIC, "alert", frank, 1),
    ];
    let mut rows: Vec<Expected> = rows
        .into_iter()
        .map(|(r, k, g, n)| (r.to_string(), k.to_string(), g, n))
        .collect();
    rows.sort();
    rows
}

/// `k=v,k=v` of a group key (sorted by field; null for a missing value).
fn group_label(group_key: &str) -> String {
    match serde_json::from_str::<BTreeMap<String, Value>>(group_key) {
        Ok(fields) => fields
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("null")))
            .collect::<Vec<_>>()
            .join(","),
        Err(_) => group_key.to_string(),
    }
}

/// One mode's alerts.
struct Mode {
    name: &'static str,
    alerts: Vec<Value>,
    seconds: f64,
}

/// (alert id, rule id, kind, count, lineage as JSON for roll-ups and storms) of an alert.
type IdTuple = (String, String, String, u64, String);

fn text(a: &Value, f: &str) -> String {
    a.pointer(f)
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}

impl Mode {
    fn ids(&self) -> BTreeSet<IdTuple> {
        self.alerts
            .iter()
            .map(|a| {
                (
                    text(a, "/alert_id"),
                    text(a, "/rule/id"),
                    text(a, "/kind"),
                    a["count"].as_u64().unwrap_or(0),
                    // A first alert names the hit that opened its window, which arrival order
                    // picks (as it does its `events`); what a roll-up merges is all of them.
                    match a["kind"].as_str() {
                        Some("alert") => String::new(),
                        _ => a["lineage"].to_string(),
                    },
                )
            })
            .collect()
    }

    fn tuples(&self) -> Vec<Expected> {
        let mut t: Vec<Expected> = self
            .alerts
            .iter()
            .map(|a| {
                (
                    text(a, "/rule/id"),
                    text(a, "/kind"),
                    group_label(&text(a, "/group_key")),
                    a["count"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        t.sort();
        t
    }

    /// A readable line for an alert id.
    fn describe(&self, id: &str) -> String {
        self.alerts
            .iter()
            .find(|a| a["alert_id"] == id)
            .map(|a| {
                format!(
                    "{id} {} {} [{}] count {}",
                    rule_name(&text(a, "/rule/id")),
                    text(a, "/kind"),
                    group_label(&text(a, "/group_key")),
                    a["count"]
                )
            })
            .unwrap_or_else(|| id.to_string())
    }
}

fn show(rows: &[&Expected]) -> String {
    rows.iter()
        .map(|(r, k, g, n)| format!("\n    {} {k} [{g}] count {n}", rule_name(r)))
        .collect()
}

/// Multiset difference: rows of `a` not matched in `b`.
fn minus<'a>(a: &'a [Expected], b: &[Expected]) -> Vec<&'a Expected> {
    let mut left: Vec<&Expected> = b.iter().collect();
    let mut out = Vec::new();
    for row in a {
        match left.iter().position(|r| *r == row) {
            Some(p) => {
                left.remove(p);
            }
            None => out.push(row),
        }
    }
    out
}

/// What is wrong with one mode, against the hand-written expectation.
fn check_mode(mode: &Mode, want: &[Expected], failures: &mut Vec<String>) {
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for a in &mode.alerts {
        *count.entry(text(a, "/alert_id")).or_default() += 1;
    }
    let twice: Vec<String> = count
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| format!("\n    {} ({n} times)", mode.describe(id)))
        .collect();
    if !twice.is_empty() {
        failures.push(format!(
            "{}: alert ids delivered more than once:{}",
            mode.name,
            twice.concat()
        ));
    }
    let got = mode.tuples();
    let missing = minus(want, &got);
    let unexpected = minus(&got, want);
    if !missing.is_empty() || !unexpected.is_empty() {
        failures.push(format!(
            "{}: alerts differ from the expected set ({} expected, {} received)\n  expected, not received:{}\n  received, not expected:{}",
            mode.name,
            want.len(),
            got.len(),
            show(&missing),
            show(&unexpected)
        ));
    }
}

/// What differs between two modes, by alert id.
fn check_same(a: &Mode, b: &Mode, failures: &mut Vec<String>) {
    let (x, y) = (a.ids(), b.ids());
    if x == y {
        return;
    }
    let only = |m: &Mode, p: &BTreeSet<IdTuple>, q: &BTreeSet<IdTuple>| -> String {
        p.difference(q)
            .map(|t| format!("\n    {}", m.describe(&t.0)))
            .collect()
    };
    failures.push(format!(
        "{} and {} differ by (alert_id, rule, kind, count, lineage)\n  only in {}:{}\n  only in {}:{}",
        a.name,
        b.name,
        a.name,
        only(a, &x, &y),
        b.name,
        only(b, &y, &x)
    ));
}

/// Every alert names the events that made it: each is in the input, has the values of the
/// alert's group, and there are as many as the alert counts (an event count's window, a
/// single event, the alerts a roll-up merged).
fn check_lineage(mode: &Mode, stream: &Stream, failures: &mut Vec<String>) {
    let by_id: BTreeMap<&str, &Value> = stream
        .all()
        .filter_map(|e| Some((e["eventID"].as_str()?, e)))
        .collect();
    let field = |e: &Value, path: &str| -> Value {
        path.split('.')
            .try_fold(e, |v, k| v.get(k))
            .cloned()
            .unwrap_or(Value::Null)
    };
    for a in &mode.alerts {
        let what = mode.describe(&text(a, "/alert_id"));
        let listed = a["lineage"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let total = a["lineage"]["total"].as_u64().unwrap_or(0);
        if listed.is_empty() || (listed.len() as u64) > total || listed.len() > 20 {
            failures.push(format!("{}: {what}: lineage {}", mode.name, a["lineage"]));
            continue;
        }
        // Bursts are event counts and the rest single-event rules (each merged alert one
        // event), so the total is the count; the temporal correlation's count is of inputs.
        let count = a["count"].as_u64().unwrap_or(0);
        let exact = text(a, "/rule/id") != ROOT_THEN_IAM;
        if (exact && total != count) || total < count {
            failures.push(format!(
                "{}: {what}: lineage total {total}, count {count}",
                mode.name
            ));
        }
        let group: BTreeMap<String, Value> =
            serde_json::from_str(&text(a, "/group_key")).unwrap_or_default();
        for r in &listed {
            let id = r["eventID"].as_str().unwrap_or("?");
            let Some(event) = by_id.get(id) else {
                failures.push(format!("{}: {what}: {id} is not in the input", mode.name));
                continue;
            };
            if r["eventTime"] != event["eventTime"] {
                failures.push(format!("{}: {what}: {id} has another time", mode.name));
            }
            for (k, v) in &group {
                if field(event, k) != *v {
                    failures.push(format!(
                        "{}: {what}: {id} has {k}={}, not the group's {v}",
                        mode.name,
                        field(event, k)
                    ));
                }
            }
        }
    }
}

/// (rule, kind, group) of every expected alert: what a live mode waits for.
fn wanted(want: &[Expected]) -> BTreeSet<(String, String, String)> {
    want.iter()
        .map(|(r, k, g, _)| (r.clone(), k.clone(), g.clone()))
        .collect()
}

/// Receives alerts (deleting them) until every wanted (rule, kind, group) has arrived and
/// nothing new came for `quiet`, or `patience` passed.
async fn collect(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    want: &BTreeSet<(String, String, String)>,
    patience: Duration,
    quiet: Duration,
) -> Vec<Value> {
    let started = Instant::now();
    let mut got: Vec<Value> = Vec::new();
    let mut last_new = Instant::now();
    loop {
        for body in receive_once(sqs, queue).await {
            got.push(serde_json::from_str(&body).unwrap());
            last_new = Instant::now();
        }
        let seen: BTreeSet<(String, String, String)> = got
            .iter()
            .map(|a| {
                (
                    text(a, "/rule/id"),
                    text(a, "/kind"),
                    group_label(&text(a, "/group_key")),
                )
            })
            .collect();
        let complete = want.iter().all(|w| seen.contains(w));
        if (complete && last_new.elapsed() >= quiet) || started.elapsed() > patience {
            return got;
        }
    }
}

/// `trailwatch replay` of the stream written to a JSON-lines file of bare records.
fn replay(stream: &Stream, dir: &std::path::Path) -> Mode {
    let started = Instant::now();
    let file = dir.join("events.jsonl");
    let lines: String = stream.all().map(|e| format!("{e}\n")).collect();
    std::fs::write(&file, lines).unwrap();
    std::fs::write(dir.join("hmac.key"), "test-secret-0123456789abcdef\n").unwrap();
    let rules = root().join("rules");
    let out = trailwatch(&[
        "replay",
        "--rules",
        rules.to_str().unwrap(),
        "--quiet",
        "--hmac-key-file",
        dir.join("hmac.key").to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Mode {
        name: "replay",
        alerts: json_lines(&out.stdout),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// An EventBridge event around a record, as an EventBridge rule delivers it to SQS.
fn eventbridge(record: &Value) -> String {
    let id = record["eventID"].as_str().unwrap();
    let detail_type = if record["eventType"] == "AwsConsoleSignIn" {
        "AWS Console Sign In via CloudTrail"
    } else {
        "AWS API Call via CloudTrail"
    };
    let service = record["eventSource"]
        .as_str()
        .unwrap()
        .trim_end_matches(".amazonaws.com");
    json!({"version": "0", "id": format!("eb-{id}"), "detail-type": detail_type,
           "source": format!("aws.{service}"), "account": record["recipientAccountId"],
           "time": record["eventTime"], "region": "us-east-1", "resources": [], "detail": record})
    .to_string()
}

/// Sends bodies with SendMessageBatch in batches of 1 to 10 (seeded), paced.
async fn send_batches(sqs: &aws_sdk_sqs::Client, queue: &str, bodies: &[String], rng: &mut Rng) {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let mut i = 0;
    while i < bodies.len() {
        let n = (1 + rng.below(10) as usize).min(bodies.len() - i);
        let entries = bodies[i..i + n]
            .iter()
            .enumerate()
            .map(|(k, b)| {
                SendMessageBatchRequestEntry::builder()
                    .id(k.to_string())
                    .message_body(b)
                    .build()
                    .unwrap()
            })
            .collect();
        let out = sqs
            .send_message_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
        assert!(out.failed().is_empty(), "{:?}", out.failed());
        i += n;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `trailwatch run` on SQS with three pollers. The tail is sent once the rest is processed
/// (deleted), as it would arrive hours later: sent together, one poller could take it ahead of
/// an earlier batch and make that batch later than the lateness.
async fn sqs_mode(url: &str, stream: &Stream, dir: &std::path::Path, want: &[Expected]) -> Mode {
    let started = Instant::now();
    let (sqs, sns) = clients(url);
    let q = queues(&sqs, &sns, &format!("diff-sqs-{}", std::process::id())).await;
    let log = dir.join("sqs.log");
    let extra = Extra {
        pollers: Some(3),
        log: Some(&log),
        ..Extra::default()
    };
    let (service, metrics) = start_with(url, &q, dir, extra);
    let mut rng = Rng(0x0ba7_c4e5);
    let main: Vec<String> = stream.main.iter().map(eventbridge).collect();
    let tail: Vec<String> = stream.tail.iter().map(eventbridge).collect();
    send_batches(&sqs, &q.events, &main, &mut rng).await;
    let deleted = "trailwatch_messages_deleted_total";
    let n = main.len() as u64;
    // At least once: a message SQS hands to two pollers is processed (as a duplicate) and
    // deleted twice, so the count may exceed the messages sent; the alerts must not change.
    let done = wait_metric(&metrics, deleted, n).await;
    assert!(
        done >= n,
        "SQS: messages processed before the tail: {done} of {n} (log: {})",
        log.display()
    );
    send_batches(&sqs, &q.events, &tail, &mut rng).await;
    let n = done + tail.len() as u64;
    let done = wait_metric(&metrics, deleted, n).await;
    assert!(
        done >= n,
        "SQS: all messages processed: {done} of {n} (log: {})",
        log.display()
    );
    stop_service(service);
    // Everything was published before its message was deleted: collect it all.
    let alerts = collect(
        &sqs,
        &q.alerts,
        &wanted(want),
        Duration::from_secs(20),
        Duration::from_secs(2),
    )
    .await;
    Mode {
        name: "sqs",
        alerts,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// `trailwatch run` on Kafka: two members of one group, the second joining while the stream
/// is produced (10 records/s, keyed by account), so partitions and their state move mid-stream.
async fn kafka_mode(
    url: &str,
    brokers: &str,
    stream: &Stream,
    dir: &std::path::Path,
    want: &[Expected],
) -> Mode {
    let started = Instant::now();
    let (sqs, sns) = clients(url);
    let tag = format!("diff-kafka-{}", std::process::id());
    let q = queues(&sqs, &sns, &tag).await;
    let file = dir.join("kafka.jsonl");
    let lines: String = stream.all().map(|e| format!("{e}\n")).collect();
    std::fs::write(&file, lines).unwrap();
    create_topic(brokers, &tag);
    let (a, metrics_a) = start_kafka(url, &q, &dir.join("a"), brokers, &tag, &tag);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut producer = produce(brokers, &tag, &file, 10);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (b, metrics_b) = start_kafka(url, &q, &dir.join("b"), brokers, &tag, &tag);
    wait_exit(&mut producer);
    assert!(producer.wait().unwrap().success(), "kafka-produce failed");
    let mut alerts = collect(
        &sqs,
        &q.alerts,
        &wanted(want),
        Duration::from_secs(90),
        Duration::from_secs(4),
    )
    .await;
    let assigns = metric(
        &metrics_a,
        "trailwatch_kafka_rebalances_total{kind=\"assign\"}",
    );
    let b_events = metric(&metrics_b, "trailwatch_events_total");
    stop_service(a);
    stop_service(b);
    alerts.extend(
        collect(
            &sqs,
            &q.alerts,
            &BTreeSet::new(),
            Duration::from_secs(10),
            Duration::from_secs(2),
        )
        .await,
    );
    assert!(
        assigns >= 2,
        "Kafka: the first member was assigned partitions {assigns} time(s): no rebalance mid-stream (logs in {})",
        dir.display()
    );
    assert!(
        b_events > 0,
        "Kafka: the member that joined processed nothing"
    );
    eprintln!(
        "kafka: first member assigned {assigns} times; the joiner processed {b_events} events"
    );
    Mode {
        name: "kafka",
        alerts,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The rules the expectation is about are in the shipped pack, with these ids.
fn check_pack() {
    let mut text = String::new();
    let mut dirs = vec![root().join("rules")];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "yml") {
                text.push_str(&std::fs::read_to_string(p).unwrap());
            }
        }
    }
    for id in [
        ROOT_SIGN_IN,
        ROOT_ACTIVITY,
        IAM_POLICY,
        ROOT_THEN_IAM,
        TRAIL_CHANGED,
        TRAIL_STOPPED,
        SIGN_IN_FAILED,
        FAILURES_BURST,
        UNAUTHORIZED,
        DENIED_BURST,
        KMS_DELETION,
        S3_POLICY,
        S3_PUBLIC,
    ] {
        assert!(
            text.contains(&format!("\nid: {id}\n")),
            "rule {id} ({}) is not in rules/",
            rule_name(id)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replay_sqs_and_kafka_give_the_same_alerts_over_duplicated_reordered_input() {
    let (Some(url), Some(brokers)) = (moto(), kafka()) else {
        return;
    };
    check_pack();
    let stream = stream();
    let want = expected();
    eprintln!(
        "stream: {} records ({} distinct, {} delivered twice, {} first deliveries reordered) + {} tail records",
        stream.main.len(),
        stream.distinct,
        stream.duplicates,
        stream.reordered,
        stream.tail.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| {
        let p = dir.path().join(n);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let modes = [
        replay(&stream, &d("replay")),
        sqs_mode(&url, &stream, &d("sqs"), &want).await,
        kafka_mode(&url, &brokers, &stream, &d("kafka"), &want).await,
    ];
    for m in &modes {
        eprintln!(
            "{}: {} alerts in {:.1} s",
            m.name,
            m.alerts.len(),
            m.seconds
        );
    }
    let mut failures = Vec::new();
    for m in &modes {
        check_mode(m, &want, &mut failures);
        check_lineage(m, &stream, &mut failures);
    }
    check_same(&modes[0], &modes[1], &mut failures);
    check_same(&modes[0], &modes[2], &mut failures);
    if !failures.is_empty() {
        // Keep the services' logs for a look.
        let kept = dir.keep();
        panic!(
            "{} problem(s) (service logs in {}):\n\n{}",
            failures.len(),
            kept.display(),
            failures.join("\n\n")
        );
    }
}
