//! Why a rule did or did not match an event: each search, each entry, the value it saw.

use super::{Expr, RuleSet};
use crate::event::{Event, FieldValue};
use std::fmt;

/// One detection entry's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryExplain {
    /// The entry's key as written (`field|modifiers`).
    pub key: String,
    /// What the event holds there (`<missing>`, `null`, or the text, shortened).
    pub value: String,
    /// Whether the entry held.
    pub matched: bool,
    /// Whether the value is free-form (request and response content, the whole event), which
    /// may hold PHI and is shown only when asked for ([`Explanation::hide_free_form`]).
    pub free_form: bool,
    /// The rule's values for the entry, each with whether the event's value meets it alone.
    pub patterns: Vec<(String, bool)>,
    /// Whether every value must hold (`|all`), else any.
    pub all: bool,
    /// Whether the entry is negated (`|neq`).
    pub negated: bool,
}

/// Most values listed per entry; the ones that matched are always listed.
const LISTED: usize = 8;

/// Fields whose values are free-form: what a caller sent or a service answered, where PHI
/// can hide.
pub const FREE_FORM: &[&str] = &[
    "requestParameters",
    "responseElements",
    "additionalEventData",
    "serviceEventDetails",
    "errorMessage",
];

fn is_free_form(key: &str) -> bool {
    let field = key.split('|').next().unwrap_or_default();
    FREE_FORM
        .iter()
        .any(|f| field == *f || field.strip_prefix(f).is_some_and(|r| r.starts_with('.')))
}

/// One named search's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchExplain {
    /// The search identifier.
    pub name: String,
    /// Whether the search held.
    pub matched: bool,
    /// Its entries, in order.
    pub entries: Vec<EntryExplain>,
}

/// A rule's verdict on one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The rule id.
    pub rule_id: String,
    /// The rule title.
    pub title: String,
    /// Whether the rule matched.
    pub matched: bool,
    /// The condition as written.
    pub condition: String,
    /// Every search.
    pub searches: Vec<SearchExplain>,
}

impl RuleSet {
    /// Explains rule `i` on `ev`.
    pub fn explain(&self, i: usize, ev: &Event<'_>) -> Explanation {
        let rule = &self.rules[i];
        let searches = rule
            .searches
            .iter()
            .map(|(name, expr)| {
                let mut leaves = Vec::new();
                collect_leaves(expr, &mut leaves);
                SearchExplain {
                    name: name.clone(),
                    matched: self.eval(expr, ev),
                    entries: leaves
                        .into_iter()
                        .map(|l| {
                            let leaf = &self.leaves[l as usize];
                            let source = &self.sources[l as usize];
                            EntryExplain {
                                key: leaf.key.clone(),
                                value: shown(leaf.field.map(|f| ev.get(f)), ev),
                                matched: self.eval_leaf(leaf, ev),
                                free_form: leaf.field.is_none() || is_free_form(&leaf.key),
                                patterns: source
                                    .values
                                    .iter()
                                    .map(|v| (v.to_string(), self.value_holds(l, v, ev)))
                                    .collect(),
                                all: source.all,
                                negated: leaf.neq,
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        Explanation {
            rule_id: rule.id().to_string(),
            title: rule.rule.title.clone(),
            matched: self.rule_matches(i, ev),
            condition: rule.rule.condition_text.clone(),
            searches,
        }
    }
}

impl RuleSet {
    /// Whether the event's value for leaf `l` meets `value` alone (compiled afresh: explaining
    /// is rare, and the hot leaves keep no per-value tests).
    fn value_holds(&self, l: u32, value: &crate::rule::Value, ev: &Event<'_>) -> bool {
        let leaf = &self.leaves[l as usize];
        let source = &self.sources[l as usize];
        if let crate::rule::Value::FieldRef(name, _) = value {
            if self.fields.get(name).is_none() {
                return false;
            }
        }
        // Every field a value refers to was interned when the rule compiled.
        let fields = &self.fields;
        let mut resolve = |p: &str| fields.get(p).unwrap_or(crate::event::FieldId(0));
        let mut budget = usize::MAX;
        let Ok(tests) = super::matcher::build_any_within(
            std::slice::from_ref(value),
            source.cased,
            &mut resolve,
            &mut budget,
        ) else {
            return false;
        };
        let other = |id: crate::event::FieldId| ev.get(id).text().map(str::to_string);
        super::with_leaf_value(leaf, ev, |text, present| {
            tests.iter().any(|t| t.test(text, present, &other))
        })
    }
}

fn collect_leaves(e: &Expr, out: &mut Vec<u32>) {
    match e {
        Expr::Leaf(i) => out.push(*i),
        Expr::And(v) | Expr::Or(v) | Expr::AtLeast(_, v) => {
            v.iter().for_each(|x| collect_leaves(x, out))
        }
        Expr::Not(x) => collect_leaves(x, out),
    }
}

fn shown(v: Option<FieldValue<'_>>, ev: &Event<'_>) -> String {
    let text = match v {
        Some(FieldValue::Missing) => return "<missing>".into(),
        Some(FieldValue::Null) => return "null".into(),
        Some(FieldValue::Text(t)) => t.to_string(),
        None => ev.whole_text().unwrap_or_default().to_string(),
    };
    const MAX: usize = 120;
    if text.chars().count() > MAX {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut:?}…")
    } else {
        format!("{text:?}")
    }
}

/// `any of 'a', ✓'b', 'c'` (the values that match marked), at most [`LISTED`] of them
/// unless more matched.
fn patterns(e: &EntryExplain) -> String {
    let n = e.patterns.len();
    let how = match (n, e.all, e.negated) {
        (1, _, false) => "",
        (1, _, true) => "not ",
        (_, true, false) => "all of ",
        (_, true, true) => "not all of ",
        (_, false, false) => "any of ",
        (_, false, true) => "none of ",
    };
    let mut shown = 0;
    let mut parts = Vec::new();
    for (text, held) in &e.patterns {
        if shown < LISTED || *held {
            let mark = if *held { "✓" } else { "" };
            parts.push(format!("{mark}{}", crate::escape::shown(text, 120)));
            shown += 1;
        }
    }
    let mut out = format!("{how}{}", parts.join(", "));
    if shown < n {
        out.push_str(&format!(", … {} more", n - shown));
    }
    out
}

impl Explanation {
    /// Replaces free-form values with their length, for output an operator reads.
    pub fn hide_free_form(&mut self) {
        for e in self.searches.iter_mut().flat_map(|s| s.entries.iter_mut()) {
            if e.free_form && e.value.starts_with('"') {
                e.value = "<free-form value hidden; --show-free-form prints it>".into();
            }
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.matched { "MATCH" } else { "no match" };
        writeln!(f, "{verdict}  {}  {}", self.rule_id, self.title)?;
        writeln!(f, "  condition: {}", self.condition)?;
        for s in &self.searches {
            let mark = if s.matched { "✓" } else { "✗" };
            writeln!(f, "  {mark} {}", s.name)?;
            for e in &s.entries {
                let mark = if e.matched { "✓" } else { "✗" };
                writeln!(f, "      {mark} {}", e.key)?;
                writeln!(f, "          event: {}", e.value)?;
                if !e.patterns.is_empty() {
                    writeln!(f, "          rule:  {}", patterns(e))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize, matched: &[usize]) -> EntryExplain {
        EntryExplain {
            key: "k".into(),
            value: "\"v\"".into(),
            matched: !matched.is_empty(),
            free_form: false,
            patterns: (0..n)
                .map(|i| (format!("'p{i}'"), matched.contains(&i)))
                .collect(),
            all: false,
            negated: false,
        }
    }

    #[test]
    fn long_lists_show_what_matched_and_how_many_are_left_out() {
        assert_eq!(
            patterns(&entry(12, &[11])),
            "any of 'p0', 'p1', 'p2', 'p3', 'p4', 'p5', 'p6', 'p7', ✓'p11', … 3 more"
        );
        assert_eq!(patterns(&entry(2, &[])), "any of 'p0', 'p1'");
        let mut negated = entry(3, &[1]);
        negated.negated = true;
        assert_eq!(patterns(&negated), "none of 'p0', ✓'p1', 'p2'");
        // A hostile value from a placeholder file reaches the terminal escaped.
        let mut evil = entry(1, &[0]);
        evil.patterns[0].0 = "'\u{1b}[2J'".into();
        assert!(!patterns(&evil).contains('\u{1b}'));
    }
}
