//! A rule's alert policy, set under the `trailwatch:` extension key:
//!
//! ```yaml
//! trailwatch:
//!   suppress: 30m                  # or `off`, or {window: 30m, by: [userIdentity.arn]}
//!   fields: [requestParameters.groupId]          # copied as HMAC-SHA256 keyed hashes
//!   clear_fields: [requestParameters.bucketName] # copied as they are (reviewed: no PHI)
//! ```
//!
//! Suppression merges repeats of a rule for one key (by default the account and principal; for
//! a correlation its group) within an event-time window into one alert and a roll-up count.

use super::error::Located;
use super::yaml::{Node, NodeKind, Scalar};

/// The suppression window when a rule sets none: one hour.
pub const DEFAULT_SUPPRESS_SECONDS: i64 = 3600;

/// The fields a stateless rule's repeats are grouped by unless it names its own.
pub const DEFAULT_SUPPRESS_BY: &[&str] = &["recipientAccountId", "userIdentity.arn"];

/// What a rule asks of its alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertPolicy {
    /// Suppression window, seconds; 0 turns suppression off.
    pub suppress_seconds: i64,
    /// Fields whose values group repeats (stateless rules); `None` means the default.
    pub suppress_by: Option<Vec<String>>,
    /// Free-form fields an alert may carry, as keyed hashes.
    pub hashed_fields: Vec<String>,
    /// Fields an alert may carry in clear text.
    pub clear_fields: Vec<String>,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        AlertPolicy {
            suppress_seconds: DEFAULT_SUPPRESS_SECONDS,
            suppress_by: None,
            hashed_fields: Vec::new(),
            clear_fields: Vec::new(),
        }
    }
}

impl AlertPolicy {
    /// The fields repeats are grouped by.
    pub fn suppress_by(&self) -> Vec<String> {
        match &self.suppress_by {
            Some(by) => by.clone(),
            None => DEFAULT_SUPPRESS_BY.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Reads the policy from a rule document; `correlation` rules group by their own `group-by`.
pub(crate) fn parse(doc: &Node, correlation: bool) -> Result<AlertPolicy, Located> {
    let mut policy = AlertPolicy::default();
    let Some(ext) = doc.get("trailwatch") else {
        return Ok(policy);
    };
    if let Some(node) = ext.get("suppress") {
        parse_suppress(node, correlation, &mut policy)?;
    }
    if let Some(node) = ext.get("fields") {
        policy.hashed_fields = field_list(node, "fields")?;
    }
    if let Some(node) = ext.get("clear_fields") {
        policy.clear_fields = field_list(node, "clear_fields")?;
    }
    if let Some(both) = policy
        .hashed_fields
        .iter()
        .find(|f| policy.clear_fields.contains(f))
    {
        return Err(Located::new(
            ext.line,
            format!(
                "'{}' is in both 'fields' and 'clear_fields'",
                super::excerpt(both)
            ),
        ));
    }
    Ok(policy)
}

fn parse_suppress(node: &Node, correlation: bool, policy: &mut AlertPolicy) -> Result<(), Located> {
    let window = match &node.kind {
        NodeKind::Map(_) => {
            if let Some(by) = node.get("by") {
                if correlation {
                    return Err(Located::new(
                        by.line,
                        "a correlation's alerts are suppressed per group: drop 'by'",
                    ));
                }
                policy.suppress_by = Some(field_list(by, "suppress.by")?);
            }
            if let Some((k, _)) = node
                .as_map()
                .into_iter()
                .flatten()
                .find(|(k, _)| k.text != "by" && k.text != "window")
            {
                return Err(Located::new(
                    k.line,
                    format!(
                        "unknown key '{}' in 'suppress' (window, by)",
                        super::excerpt(&k.text)
                    ),
                ));
            }
            node.get("window")
        }
        _ => Some(node),
    };
    if let Some(w) = window {
        policy.suppress_seconds = suppress_window(w)?;
    }
    Ok(())
}

fn suppress_window(node: &Node) -> Result<i64, Located> {
    let bad = || {
        Located::new(
            node.line,
            "'suppress' must be a duration such as 1h, or 'off'",
        )
    };
    match &node.kind {
        NodeKind::Scalar(Scalar::Bool(false)) => Ok(0),
        NodeKind::Scalar(Scalar::Str(s)) if s == "off" => Ok(0),
        _ => {
            let text = node.as_text().ok_or_else(bad)?;
            super::correlation::parse_timespan(&text).ok_or_else(bad)
        }
    }
}

fn field_list(node: &Node, what: &str) -> Result<Vec<String>, Located> {
    let NodeKind::Seq(items) = &node.kind else {
        return Err(Located::new(
            node.line,
            format!("'{what}' must be a list of field names"),
        ));
    };
    items
        .iter()
        .map(|i| match i.as_text() {
            Some(t) if !t.is_empty() => Ok(t),
            _ => Err(Located::new(
                i.line,
                format!("'{what}' must list field names"),
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ext: &str, correlation: bool) -> Result<AlertPolicy, Located> {
        let doc = super::super::yaml::load_documents(&format!("title: t\ntrailwatch:\n{ext}"))
            .unwrap()
            .remove(0);
        parse(&doc, correlation)
    }

    #[test]
    fn defaults_and_forms() {
        let p = policy("  alert: true\n", false).unwrap();
        assert_eq!(p.suppress_seconds, 3600);
        assert_eq!(
            p.suppress_by(),
            vec!["recipientAccountId", "userIdentity.arn"]
        );
        assert_eq!(
            policy("  suppress: 30m\n", false).unwrap().suppress_seconds,
            1800
        );
        assert_eq!(
            policy("  suppress: off\n", false).unwrap().suppress_seconds,
            0
        );
        let p = policy(
            "  suppress: {window: 2h, by: [sourceIPAddress]}\n  fields: [requestParameters.groupId]\n  clear_fields: [awsRegion]\n",
            false,
        )
        .unwrap();
        assert_eq!(p.suppress_seconds, 7200);
        assert_eq!(p.suppress_by(), vec!["sourceIPAddress"]);
        assert_eq!(p.hashed_fields, vec!["requestParameters.groupId"]);
        assert_eq!(p.clear_fields, vec!["awsRegion"]);
    }

    #[test]
    fn mistakes_are_located() {
        let e = policy("  suppress: soon\n", false).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("duration"), "{}", e.message);
        let e = policy("  suppress: {window: 1h, by: [a]}\n", true).unwrap_err();
        assert!(e.message.contains("per group"), "{}", e.message);
        let e = policy("  suppress: {windw: 1h}\n", false).unwrap_err();
        assert!(e.message.contains("unknown key 'windw'"), "{}", e.message);
        let e = policy("  fields: requestParameters\n", false).unwrap_err();
        assert!(e.message.contains("list"), "{}", e.message);
        let e = policy("  fields: [a]\n  clear_fields: [a]\n", false).unwrap_err();
        assert!(e.message.contains("both"), "{}", e.message);
    }
}
