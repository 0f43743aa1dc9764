//! Shared by the targets: the rule set they run against, built once.
#![allow(dead_code)] // each target uses its own part

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use trailwatch::engine::RuleSet;

/// The project root (this crate is `fuzz/` in it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shipped pack plus SigmaHQ's CloudTrail rules from ../shared/corpus when present.
pub fn rule_set() -> &'static RuleSet {
    static SET: OnceLock<RuleSet> = OnceLock::new();
    SET.get_or_init(|| {
        let mut paths = vec![root().join("rules")];
        let sigma = root().join("../shared/corpus/sigma-cloudtrail");
        if sigma.is_dir() {
            paths.push(sigma);
        }
        let (rules, errors) = trailwatch::rule::load_paths(&paths, &Default::default());
        assert!(errors.is_empty(), "{errors:?}");
        RuleSet::compile(rules).expect("the rule pack compiles")
    })
}

/// A few events that reach the correlations of the pack (sign-in failures, then a success).
pub fn events() -> Vec<String> {
    (0..8)
        .map(|i| {
            serde_json::json!({
                "eventVersion": "1.09", "eventID": format!("f{i}"),
                "eventTime": format!("2026-11-01T10:00:{:02}Z", i * 5),
                "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin",
                "sourceIPAddress": "203.0.113.9", "recipientAccountId": "111122223333",
                "userIdentity": {"type": "IAMUser", "accountId": "111122223333", "userName": "u", "arn": "arn:aws:iam::111122223333:user/u"},
                "responseElements": {"ConsoleLogin": if i == 7 { "Success" } else { "Failure" }}
            })
            .to_string()
        })
        .collect()
}
