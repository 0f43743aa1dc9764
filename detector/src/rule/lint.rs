//! Lints: things a rule may do but probably should not, reported by `trailwatch check`.

use super::parse::Rule;
use super::yaml::{Node, NodeKind, Scalar};
use super::Cond;

/// A lint finding on a rule that loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line.
    pub line: usize,
    /// What to improve.
    pub message: String,
}

const KNOWN_KEYS: &[&str] = &[
    "title",
    "id",
    "name",
    "related",
    "status",
    "description",
    "references",
    "author",
    "date",
    "modified",
    "tags",
    "logsource",
    "detection",
    "fields",
    "falsepositives",
    "level",
    "license",
    "taxonomy",
    "scope",
    "trailwatch",
    "correlation",
    "generate",
];

/// Lints one parsed rule.
pub fn lint(rule: &Rule) -> Vec<Warning> {
    let mut w = Vec::new();
    let doc = &rule.doc;
    let line_of = |k: &str| doc.get(k).map_or(rule.line, |n| n.line);
    let mut warn = |line: usize, m: String| w.push(Warning { line, message: m });
    match &rule.id {
        None => warn(
            rule.line,
            "no 'id': alerts and hits will be keyed by the title, which may change".into(),
        ),
        Some(id) if !is_uuid(id) => warn(line_of("id"), format!("id '{id}' is not a UUID")),
        _ => {}
    }
    if rule.level.is_none() {
        warn(rule.line, "no 'level': alerts will use 'medium'".into());
    }
    if rule.description.is_none() {
        warn(
            rule.line,
            "no 'description': say what the rule detects and why it matters".into(),
        );
    }
    if let Some(status) = &rule.status {
        if ![
            "stable",
            "test",
            "experimental",
            "deprecated",
            "unsupported",
        ]
        .contains(&status.as_str())
        {
            warn(
                line_of("status"),
                format!("status '{status}' is not a Sigma status"),
            );
        }
    }
    if rule.title.chars().count() > 110 {
        warn(
            line_of("title"),
            "title is longer than 110 characters".into(),
        );
    }
    for (k, _) in doc.as_map().unwrap_or_default() {
        if !KNOWN_KEYS.contains(&k.text.as_str()) {
            warn(
                k.line,
                format!(
                    "unknown key '{}' (extensions belong under 'trailwatch:')",
                    k.text
                ),
            );
        }
    }
    let ls = &rule.logsource;
    let cloudtrail =
        ls.product.as_deref() == Some("aws") && ls.service.as_deref() == Some("cloudtrail");
    if rule.correlation.is_none() && !cloudtrail {
        warn(
            line_of("logsource"),
            "logsource is not product: aws / service: cloudtrail; the rule is still evaluated on CloudTrail events".into(),
        );
    }
    for t in &rule.tags {
        if t.to_lowercase() != *t || !t.contains('.') {
            warn(
                line_of("tags"),
                format!("tag '{t}' should be lower-case 'namespace.value'"),
            );
        }
    }
    let mut used = vec![false; rule.searches.len()];
    mark_used(&rule.condition, &mut used);
    for (s, u) in rule.searches.iter().zip(used) {
        if !u {
            warn(
                s.line,
                format!("search '{}' is not used by the condition", s.name),
            );
        }
    }
    yaml11_booleans(doc.get("detection"), &mut warn);
    w
}

fn mark_used(c: &Cond, used: &mut [bool]) {
    match c {
        Cond::Search(i) => used[*i] = true,
        Cond::And(v) | Cond::Or(v) | Cond::AtLeast(_, v) => {
            v.iter().for_each(|x| mark_used(x, used))
        }
        Cond::Not(x) => mark_used(x, used),
    }
}

/// Unquoted `yes`/`no`/`on`/`off` are strings in YAML 1.2 (here) but booleans in YAML 1.1.
fn yaml11_booleans(node: Option<&Node>, warn: &mut dyn FnMut(usize, String)) {
    let Some(node) = node else { return };
    match &node.kind {
        NodeKind::Scalar(Scalar::Str(s))
            if node.plain
                && ["yes", "no", "on", "off", "y", "n"].contains(&s.to_lowercase().as_str()) =>
        {
            warn(
                node.line,
                format!("'{s}' is read as the string \"{s}\"; other Sigma tools may read it as a boolean: quote it"),
            );
        }
        NodeKind::Seq(items) => items.iter().for_each(|i| yaml11_booleans(Some(i), warn)),
        NodeKind::Map(entries) => entries
            .iter()
            .for_each(|(_, v)| yaml11_booleans(Some(v), warn)),
        _ => {}
    }
}

fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{parse_file, Placeholders};
    use std::path::Path;

    #[test]
    fn finds_common_problems() {
        let text = "title: t\nid: not-a-uuid\nlogsource: {product: aws, service: cloudtrail}\nfoo: 1\ndetection:\n  sel: {a: yes, q: 'no'}\n  unused: {b: c}\n  condition: sel\n";
        let (rules, errs) = parse_file(Path::new("x.yml"), text, &Placeholders::new());
        assert!(errs.is_empty());
        let w: Vec<String> = lint(&rules[0])
            .into_iter()
            .map(|w| format!("{}: {}", w.line, w.message))
            .collect();
        let has = |s: &str| w.iter().any(|x| x.contains(s));
        assert!(has("2: id 'not-a-uuid' is not a UUID"), "{w:?}");
        assert!(has("4: unknown key 'foo'"), "{w:?}");
        assert!(has("search 'unused' is not used"), "{w:?}");
        assert!(has("'yes' is read as the string"), "{w:?}");
        assert!(has("no 'level'"), "{w:?}");
        assert!(!has("'no' is read"), "quoted values are unambiguous: {w:?}");
    }

    #[test]
    fn sigmahq_style_rule_is_clean() {
        let text = "title: t\nid: 11111111-2222-3333-4444-555555555555\nstatus: test\ndescription: d\nlevel: low\ntags: [attack.t1078]\nlogsource: {product: aws, service: cloudtrail}\ndetection:\n  sel: {eventName: X}\n  condition: sel\n";
        let (rules, _) = parse_file(Path::new("x.yml"), text, &Placeholders::new());
        assert_eq!(lint(&rules[0]), vec![]);
    }
}
