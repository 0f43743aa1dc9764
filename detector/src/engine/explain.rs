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
}

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
                            EntryExplain {
                                key: leaf.key.clone(),
                                value: shown(leaf.field.map(|f| ev.get(f)), ev),
                                matched: self.eval_leaf(leaf, ev),
                                free_form: leaf.field.is_none() || is_free_form(&leaf.key),
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
                writeln!(f, "      {mark} {} = {}", e.key, e.value)?;
            }
        }
        Ok(())
    }
}
