//! The compiled rule set: an immutable program evaluated against decoded events.
//!
//! Compiling resolves every field path to a [`FieldId`] once, turns values into grouped
//! [`Test`]s, orders conjunctions cheapest first, and indexes rules by the `eventName`
//! (else `eventSource`) values they require, so most rules are never tried on most events.

pub mod correlation;
mod explain;
pub mod matcher;

pub use correlation::{CompiledCorrelation, Source};
pub use explain::{EntryExplain, Explanation, SearchExplain};

use crate::event::{Event, FieldId, FieldTable, FieldValue};
use crate::rule::value::TimePart;
use crate::rule::{Cond, Level, Rule, RuleError, SearchBody};
use matcher::{build_any_within, time_part, Test};
use rustc_hash::FxHashMap;

/// One compiled detection entry (`field|modifiers: values`).
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The field, or `None` for keywords (the whole event text).
    pub field: Option<FieldId>,
    /// The key as written, for explanations.
    pub key: String,
    time_part: Option<TimePart>,
    /// All groups must hold; a group holds when any of its tests does.
    groups: Vec<Vec<Test>>,
    neq: bool,
    cost: u32,
}

/// A leaf's values before compiling: what `explain` shows and tries one by one.
#[derive(Debug, Clone)]
struct LeafSource {
    /// Every value (expansions included), in order.
    values: Vec<crate::rule::Value>,
    cased: bool,
    /// Whether every value must hold (`|all`), else any.
    all: bool,
}

/// A compiled condition.
#[derive(Debug, Clone)]
pub enum Expr {
    /// One entry.
    Leaf(u32),
    /// All hold.
    And(Vec<Expr>),
    /// Any holds.
    Or(Vec<Expr>),
    /// At least `n` hold.
    AtLeast(usize, Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
}

/// A compiled rule: its metadata and program.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    /// The source rule.
    pub rule: Rule,
    expr: Expr,
    /// Each named search's program, for explanations.
    searches: Vec<(String, Expr)>,
    /// What its alerts say of it, made once and shared by them.
    alert_rule: std::sync::Arc<crate::alert::AlertRule>,
}

impl CompiledRule {
    /// The id used in hits and alerts: the Sigma `id`, else the title.
    pub fn id(&self) -> &str {
        self.rule.label()
    }

    /// The level, `medium` when the rule gives none.
    pub fn level(&self) -> Level {
        self.rule.level.unwrap_or(Level::Medium)
    }

    /// What its alerts say of the rule (shared: a hit's alert allocates nothing for it).
    pub fn alert_rule(&self) -> std::sync::Arc<crate::alert::AlertRule> {
        self.alert_rule.clone()
    }
}

/// Reusable buffers for [`RuleSet::matches`].
#[derive(Debug, Default)]
pub struct MatchScratch {
    cands: Vec<u32>,
    key: Vec<u8>,
}

/// An immutable, shareable compiled rule set.
#[derive(Debug)]
pub struct RuleSet {
    fields: FieldTable,
    rules: Vec<CompiledRule>,
    leaves: Vec<Leaf>,
    /// Each leaf's values as written, for explanations only (kept apart from the hot leaves).
    sources: Vec<LeafSource>,
    by_name: FxHashMap<Box<[u8]>, Vec<u32>>,
    by_source: FxHashMap<Box<[u8]>, Vec<u32>>,
    always: Vec<u32>,
    event_name: FieldId,
    event_source: FieldId,
    /// `eventID`.
    pub event_id: FieldId,
    /// `eventTime`.
    pub event_time: FieldId,
    /// `recipientAccountId` and `awsRegion`, when every event's source is tracked (silence
    /// rules, the live service's per-source metric).
    pub delivery: Option<(FieldId, FieldId)>,
    /// `recipientAccountId`, when first-seen rules learn per account.
    pub account: Option<FieldId>,
    correlations: Vec<CompiledCorrelation>,
    links: Links,
    /// What compiled regexes and automata may still take ([`MAX_SET_MATCHER_BYTES`]).
    ///
    /// [`MAX_SET_MATCHER_BYTES`]: crate::rule::limits::MAX_SET_MATCHER_BYTES
    matcher_budget: usize,
}

/// How hits flow into correlations.
#[derive(Debug, Default)]
pub struct Links {
    /// Per detection rule: the (correlation, input position) pairs it feeds directly.
    pub rule_feeds: Vec<Vec<(u32, u16)>>,
    /// Per correlation: the (correlation, input position) pairs its firings feed.
    pub corr_feeds: Vec<Vec<(u32, u16)>>,
    /// Per detection rule: every (correlation, input position) its events can reach, directly
    /// or through other correlations; their group keys are read from the event up front.
    pub reach: Vec<Vec<(u32, u16)>>,
    /// Per detection rule: whether its own hits are reported (not only feeding correlations).
    pub rule_reported: Vec<bool>,
    /// Per correlation: whether its own hits are reported.
    pub corr_reported: Vec<bool>,
}

impl RuleSet {
    /// Compiles rules; any error rejects the whole set (a partial rule set would hide gaps).
    pub fn compile(rules: Vec<Rule>) -> Result<RuleSet, Vec<RuleError>> {
        let mut fields = FieldTable::new();
        let event_name = fields.intern("eventName");
        let event_source = fields.intern("eventSource");
        let event_id = fields.intern("eventID");
        let event_time = fields.intern("eventTime");
        let mut set = RuleSet {
            fields: FieldTable::new(),
            rules: Vec::new(),
            leaves: Vec::new(),
            sources: Vec::new(),
            by_name: FxHashMap::default(),
            by_source: FxHashMap::default(),
            always: Vec::new(),
            event_name,
            event_source,
            event_id,
            event_time,
            delivery: None,
            account: None,
            correlations: Vec::new(),
            links: Links::default(),
            matcher_budget: crate::rule::limits::MAX_SET_MATCHER_BYTES,
        };
        let mut errors = Vec::new();
        let (corr_rules, rules): (Vec<Rule>, Vec<Rule>) =
            rules.into_iter().partition(|r| r.correlation.is_some());
        let mut all_ids = FxHashMap::default();
        let mut ids: FxHashMap<String, std::path::PathBuf> = FxHashMap::default();
        for rule in corr_rules.iter().chain(&rules) {
            if let Some(id) = &rule.id {
                if let Some(prev) = all_ids.insert(id.clone(), rule.file.clone()) {
                    errors.push(
                        RuleError::new(
                            &rule.file,
                            rule.line,
                            format!("duplicate rule id, also used in {}", prev.display()),
                        )
                        .with_rule(Some(id)),
                    );
                }
            }
        }
        for rule in rules {
            if let Some(id) = &rule.id {
                if ids.insert(id.clone(), rule.file.clone()).is_some() {
                    continue; // reported above
                }
            }
            match set.compile_rule(rule, &mut fields) {
                Ok(()) => {}
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let detection: Vec<&Rule> = set.rules.iter().map(|r| &r.rule).collect();
        set.correlations = correlation::compile(&detection, corr_rules, &mut fields)?;
        set.fields = fields;
        if set.correlations.iter().any(|c| c.spec().silence.is_some()) {
            set.track_delivery();
        }
        if set
            .correlations
            .iter()
            .any(|c| c.spec().first_seen.is_some())
        {
            set.account = Some(set.capture(&["recipientAccountId"])[0]);
        }
        set.build_index();
        set.links = links(&set.rules, &set.correlations);
        Ok(set)
    }

    /// Makes every event's account and region read, so pipelines track who delivers.
    pub fn track_delivery(&mut self) {
        let ids = self.capture(&["recipientAccountId", "awsRegion"]);
        self.delivery = Some((ids[0], ids[1]));
    }

    /// Heap bytes of the compiled regexes and substring automata (bounded by
    /// [`MAX_SET_MATCHER_BYTES`](crate::rule::limits::MAX_SET_MATCHER_BYTES)).
    pub fn matcher_bytes(&self) -> usize {
        crate::rule::limits::MAX_SET_MATCHER_BYTES - self.matcher_budget
    }

    /// The compiled correlation rules.
    pub fn correlations(&self) -> &[CompiledCorrelation] {
        &self.correlations
    }

    /// How hits flow into correlations.
    pub fn links(&self) -> &Links {
        &self.links
    }

    /// Reports only the rules and correlations `keep` accepts (given id, title and level);
    /// the others still feed the correlations that read them. Returns how many are reported.
    pub fn report_only(&mut self, keep: impl Fn(&str, &str, Level) -> bool) -> usize {
        for (r, rule) in self.rules.iter().enumerate() {
            self.links.rule_reported[r] &= keep(rule.id(), &rule.rule.title, rule.level());
        }
        for (c, corr) in self.correlations.iter().enumerate() {
            let level = corr.rule.level.unwrap_or(Level::Medium);
            self.links.corr_reported[c] &= keep(corr.id(), &corr.rule.title, level);
        }
        let reported = self
            .links
            .rule_reported
            .iter()
            .chain(&self.links.corr_reported);
        reported.filter(|&&r| r).count()
    }

    fn compile_rule(&mut self, rule: Rule, fields: &mut FieldTable) -> Result<(), RuleError> {
        let mut searches = Vec::new();
        for search in &rule.searches {
            let expr = match &search.body {
                SearchBody::AllOf(specs) => self.compile_all(specs, fields),
                SearchBody::AnyOf(alts) => alts
                    .iter()
                    .map(|specs| self.compile_all(specs, fields))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Expr::Or),
            }
            .map_err(|(line, field, msg)| {
                RuleError::new(&rule.file, line, msg)
                    .with_field(field)
                    .with_rule(Some(rule.label()))
            })?;
            searches.push((search.name.clone(), expr));
        }
        let expr = self.order(cond_expr(&rule.condition, &searches));
        let alert_rule = std::sync::Arc::new(crate::alert::AlertRule {
            id: rule.label().to_string(),
            title: rule.title.clone(),
            level: rule.level.unwrap_or(Level::Medium).as_str().to_string(),
            tags: rule.tags.clone(),
        });
        self.rules.push(CompiledRule {
            rule,
            expr,
            searches,
            alert_rule,
        });
        Ok(())
    }

    fn compile_all(
        &mut self,
        specs: &[crate::rule::FieldSpec],
        fields: &mut FieldTable,
    ) -> Result<Expr, (usize, String, String)> {
        let mut items = Vec::new();
        for spec in specs {
            let field = match &spec.field {
                Some(f) => Some(fields.intern(f)),
                None => {
                    fields.want_whole_record();
                    None
                }
            };
            let mut resolve = |p: &str| fields.intern(p);
            let mut groups = Vec::new();
            let keyword = spec.field.is_none();
            let values: Vec<Vec<crate::rule::Value>> = spec
                .values
                .iter()
                .map(|g| {
                    g.iter()
                        .map(|v| if keyword { keyword_value(v) } else { v.clone() })
                        .collect()
                })
                .collect();
            let err = |m: String| (spec.line, spec.key.clone(), m);
            if spec.all {
                for g in &values {
                    groups.push(
                        build_any_within(g, spec.cased, &mut resolve, &mut self.matcher_budget)
                            .map_err(err)?,
                    );
                }
            } else {
                let flat: Vec<_> = values.into_iter().flatten().collect();
                groups.push(
                    build_any_within(&flat, spec.cased, &mut resolve, &mut self.matcher_budget)
                        .map_err(err)?,
                );
            }
            let cost = groups.iter().flatten().map(Test::cost).max().unwrap_or(1);
            self.sources.push(LeafSource {
                values: spec.values.iter().flatten().cloned().collect(),
                cased: spec.cased,
                all: spec.all,
            });
            self.leaves.push(Leaf {
                field,
                key: spec.key.clone(),
                time_part: spec.time_part,
                groups,
                neq: spec.neq,
                cost,
            });
            items.push(Expr::Leaf(self.leaves.len() as u32 - 1));
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    /// Sorts conjunctions and disjunctions so cheap, selective tests run first.
    fn order(&self, e: Expr) -> Expr {
        match e {
            Expr::And(v) => Expr::And(self.sorted(v)),
            Expr::Or(v) => Expr::Or(self.sorted(v)),
            Expr::AtLeast(n, v) => Expr::AtLeast(n, v.into_iter().map(|x| self.order(x)).collect()),
            Expr::Not(x) => Expr::Not(Box::new(self.order(*x))),
            leaf => leaf,
        }
    }

    fn sorted(&self, v: Vec<Expr>) -> Vec<Expr> {
        let mut v: Vec<Expr> = v.into_iter().map(|x| self.order(x)).collect();
        v.sort_by_key(|x| self.cost(x));
        v
    }

    fn cost(&self, e: &Expr) -> u32 {
        match e {
            Expr::Leaf(i) => self.leaves[*i as usize].cost,
            Expr::And(v) | Expr::Or(v) | Expr::AtLeast(_, v) => {
                v.iter().map(|x| self.cost(x)).sum()
            }
            Expr::Not(x) => self.cost(x),
        }
    }

    fn build_index(&mut self) {
        for (i, r) in self.rules.iter().enumerate() {
            let i = i as u32;
            if let Some(names) = self.required(&r.expr, self.event_name) {
                for n in names {
                    self.by_name.entry(n).or_default().push(i);
                }
            } else if let Some(sources) = self.required(&r.expr, self.event_source) {
                for s in sources {
                    self.by_source.entry(s).or_default().push(i);
                }
            } else {
                self.always.push(i);
            }
        }
    }

    /// Values (lower-cased) that `field` must equal for `e` to hold, if such a set exists.
    fn required(&self, e: &Expr, field: FieldId) -> Option<Vec<Box<[u8]>>> {
        match e {
            Expr::Leaf(i) => {
                let leaf = &self.leaves[*i as usize];
                if leaf.field != Some(field) || leaf.neq || leaf.time_part.is_some() {
                    return None;
                }
                // Every group must hold; any one group that is pure equality bounds the value.
                leaf.groups.iter().find_map(|g| {
                    let mut vals = Vec::new();
                    for t in g {
                        vals.extend(t.exact_values()?);
                    }
                    Some(vals)
                })
            }
            Expr::And(v) => v
                .iter()
                .filter_map(|x| self.required(x, field))
                .min_by_key(Vec::len),
            Expr::Or(v) => union(v.iter().map(|x| self.required(x, field))),
            Expr::AtLeast(n, v) if *n == v.len() => v
                .iter()
                .filter_map(|x| self.required(x, field))
                .min_by_key(Vec::len),
            Expr::AtLeast(_, v) => union(v.iter().map(|x| self.required(x, field))),
            Expr::Not(_) => None,
        }
    }

    /// The fields the rules read; the decoder captures exactly these.
    pub fn fields(&self) -> &FieldTable {
        &self.fields
    }

    /// Asks the decoder to capture more fields (what alerts carry), before the set is shared.
    pub fn capture(&mut self, paths: &[&str]) -> Vec<FieldId> {
        paths.iter().map(|p| self.fields.intern(p)).collect()
    }

    /// The compiled rules, in load order.
    pub fn rules(&self) -> &[CompiledRule] {
        &self.rules
    }

    /// How many rules are indexed by `eventName`, by `eventSource`, and tried on every event.
    pub fn index_stats(&self) -> (usize, usize, usize) {
        let uniq = |m: &FxHashMap<Box<[u8]>, Vec<u32>>| {
            let mut all: Vec<u32> = m.values().flatten().copied().collect();
            all.sort_unstable();
            all.dedup();
            all.len()
        };
        (
            uniq(&self.by_name),
            uniq(&self.by_source),
            self.always.len(),
        )
    }

    /// Appends to `hits` the index of every rule that matches `ev`, in rule order.
    pub fn matches(&self, ev: &Event<'_>, scratch: &mut MatchScratch, hits: &mut Vec<u32>) {
        hits.clear();
        let cands = &mut scratch.cands;
        cands.clear();
        cands.extend_from_slice(&self.always);
        for (field, index) in [
            (self.event_name, &self.by_name),
            (self.event_source, &self.by_source),
        ] {
            if index.is_empty() {
                continue;
            }
            if let FieldValue::Text(t) = ev.get(field) {
                scratch.key.clear();
                scratch
                    .key
                    .extend(t.bytes().map(|b| b.to_ascii_lowercase()));
                if let Some(rules) = index.get(scratch.key.as_slice()) {
                    cands.extend_from_slice(rules);
                }
            }
        }
        cands.sort_unstable();
        cands.dedup();
        for &i in cands.iter() {
            if self.eval(&self.rules[i as usize].expr, ev) {
                hits.push(i);
            }
        }
    }

    /// Whether rule `i` matches `ev`, bypassing the index (for explanations and tests).
    pub fn rule_matches(&self, i: usize, ev: &Event<'_>) -> bool {
        self.eval(&self.rules[i].expr, ev)
    }

    fn eval(&self, e: &Expr, ev: &Event<'_>) -> bool {
        match e {
            Expr::Leaf(i) => self.eval_leaf(&self.leaves[*i as usize], ev),
            Expr::And(v) => v.iter().all(|x| self.eval(x, ev)),
            Expr::Or(v) => v.iter().any(|x| self.eval(x, ev)),
            Expr::AtLeast(n, v) => v.iter().filter(|x| self.eval(x, ev)).take(*n).count() >= *n,
            Expr::Not(x) => !self.eval(x, ev),
        }
    }

    fn eval_leaf(&self, leaf: &Leaf, ev: &Event<'_>) -> bool {
        let other = |id: FieldId| ev.get(id).text().map(str::to_string);
        let held = with_leaf_value(leaf, ev, |value, present| {
            leaf.groups
                .iter()
                .all(|g| g.iter().any(|t| t.test(value, present, &other)))
        });
        held != leaf.neq
    }
}

/// Calls `f` with what leaf `leaf` tests in `ev` (the field's text, or the time part it asks
/// for, or the whole record for keywords) and whether the field is present.
#[inline]
fn with_leaf_value<R>(
    leaf: &Leaf,
    ev: &Event<'_>,
    then: impl FnOnce(Option<&str>, bool) -> R,
) -> R {
    let (value, present) = match leaf.field {
        Some(id) => match ev.get(id) {
            FieldValue::Missing => (None, false),
            FieldValue::Null => (None, true),
            FieldValue::Text(t) => (Some(t), true),
        },
        None => {
            let t = ev.whole_text();
            (t, t.is_some())
        }
    };
    let part;
    let value = match leaf.time_part {
        Some(p) => {
            part = value.and_then(|v| time_part(v, p));
            part.as_deref()
        }
        None => value,
    };
    then(value, present)
}

/// Works out which correlations each rule feeds and which hits are reported on their own.
fn links(rules: &[CompiledRule], corrs: &[CompiledCorrelation]) -> Links {
    let n_rules = rules.len();
    let mut l = Links {
        rule_feeds: vec![Vec::new(); n_rules],
        corr_feeds: vec![Vec::new(); corrs.len()],
        reach: vec![Vec::new(); n_rules],
        rule_reported: vec![true; n_rules],
        corr_reported: vec![true; corrs.len()],
    };
    let mut generate_rule = vec![false; n_rules];
    let mut generate_corr = vec![false; corrs.len()];
    for (c, corr) in corrs.iter().enumerate() {
        let generate = corr.spec().generate;
        for (pos, input) in corr.inputs.iter().enumerate() {
            let link = (c as u32, pos as u16);
            match *input {
                Source::Rule(r) => {
                    l.rule_feeds[r as usize].push(link);
                    l.rule_reported[r as usize] = false;
                    generate_rule[r as usize] |= generate;
                }
                Source::Correlation(d) => {
                    l.corr_feeds[d as usize].push(link);
                    l.corr_reported[d as usize] = false;
                    generate_corr[d as usize] |= generate;
                }
            }
        }
    }
    // Referenced rules stay quiet unless some correlation asks for `generate: true`.
    for (r, g) in generate_rule.into_iter().enumerate() {
        l.rule_reported[r] |= g;
        // `trailwatch: {alert: false}` marks a rule that only feeds correlations.
        let alert = rules[r]
            .rule
            .doc
            .get("trailwatch")
            .and_then(|t| t.get("alert"));
        if matches!(
            alert.map(|n| &n.kind),
            Some(crate::rule::yaml::NodeKind::Scalar(
                crate::rule::yaml::Scalar::Bool(false)
            ))
        ) {
            l.rule_reported[r] = false;
        }
    }
    for (c, g) in generate_corr.into_iter().enumerate() {
        l.corr_reported[c] |= g;
    }
    for r in 0..n_rules {
        let mut stack: Vec<(u32, u16)> = l.rule_feeds[r].clone();
        while let Some(link) = stack.pop() {
            if l.reach[r].contains(&link) {
                continue;
            }
            l.reach[r].push(link);
            stack.extend(l.corr_feeds[link.0 as usize].iter().copied());
        }
        l.reach[r].sort_unstable();
    }
    l
}

fn union(parts: impl Iterator<Item = Option<Vec<Box<[u8]>>>>) -> Option<Vec<Box<[u8]>>> {
    let mut out = Vec::new();
    for p in parts {
        out.extend(p?);
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// Keywords search the event text, so a plain keyword means "contains".
fn keyword_value(v: &crate::rule::Value) -> crate::rule::Value {
    use crate::rule::value::{Piece, SigmaString};
    match v {
        crate::rule::Value::Str(s) => {
            let mut pieces = s.pieces.clone();
            if !matches!(pieces.first(), Some(Piece::Any)) {
                pieces.insert(0, Piece::Any);
            }
            if !matches!(pieces.last(), Some(Piece::Any)) {
                pieces.push(Piece::Any);
            }
            crate::rule::Value::Str(SigmaString { pieces })
        }
        other => other.clone(),
    }
}

fn cond_expr(c: &Cond, searches: &[(String, Expr)]) -> Expr {
    match c {
        Cond::Search(i) => searches[*i].1.clone(),
        Cond::And(v) => Expr::And(v.iter().map(|x| cond_expr(x, searches)).collect()),
        Cond::Or(v) => Expr::Or(v.iter().map(|x| cond_expr(x, searches)).collect()),
        Cond::AtLeast(n, v) => {
            Expr::AtLeast(*n, v.iter().map(|x| cond_expr(x, searches)).collect())
        }
        Cond::Not(x) => Expr::Not(Box::new(cond_expr(x, searches))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Decoder, Limits};
    use crate::rule::{parse_file, Placeholders};
    use std::path::Path;

    /// Compiles one rule whose detection is `detection` and reports, per event, whether it hit.
    fn hits(detection: &str, events: &[&str]) -> Vec<bool> {
        let text = format!("title: t\nid: r\nlogsource: {{product: aws}}\ndetection:\n{detection}");
        let (rules, errs) = parse_file(Path::new("t.yml"), &text, &Placeholders::new());
        assert!(errs.is_empty(), "{errs:?}");
        let set = RuleSet::compile(rules).unwrap();
        let mut d = Decoder::new(set.fields(), Limits::default());
        let mut scratch = MatchScratch::default();
        let mut out = Vec::new();
        for ev in events {
            let mut hit = Vec::new();
            d.decode(ev.as_bytes(), &mut |item| {
                let ev = item.unwrap();
                set.matches(ev, &mut scratch, &mut hit);
                assert_eq!(
                    !hit.is_empty(),
                    set.rule_matches(0, ev),
                    "index and brute force agree"
                );
            })
            .unwrap();
            out.push(!hit.is_empty());
        }
        out
    }

    #[test]
    fn a_rules_alerts_share_one_rule_block_as_it_reads() {
        let text = "title: Root use\nid: r-1\nlevel: high\ntags: [attack.t1078]\nlogsource: {product: aws}\ndetection:\n  sel: {eventName: X}\n  condition: sel\n";
        let (rules, errs) = parse_file(Path::new("t.yml"), text, &Placeholders::new());
        assert!(errs.is_empty(), "{errs:?}");
        let set = RuleSet::compile(rules).unwrap();
        let rule = &set.rules()[0];
        let (a, b) = (rule.alert_rule(), rule.alert_rule());
        assert!(std::sync::Arc::ptr_eq(&a, &b), "one block for every alert");
        assert_eq!(
            *a,
            crate::alert::AlertRule {
                id: "r-1".into(),
                title: "Root use".into(),
                level: "high".into(),
                tags: vec!["attack.t1078".into()],
            }
        );
        // Without an id the title names it; without a level it is medium, as alerts always said.
        let text = "title: No id\nlogsource: {product: aws}\ndetection:\n  sel: {eventName: X}\n  condition: sel\n";
        let (rules, _) = parse_file(Path::new("t.yml"), text, &Placeholders::new());
        let set = RuleSet::compile(rules).unwrap();
        let block = set.rules()[0].alert_rule();
        assert_eq!(
            (block.id.as_str(), block.level.as_str()),
            ("No id", "medium")
        );
    }

    #[test]
    fn not_over_a_missing_field_holds() {
        // SQL would say NULL; Sigma (and the oracle's COALESCE) says the filter did not match.
        let d = "  sel: {eventName: ListBuckets}\n  filter: {userIdentity.type: AssumedRole}\n  condition: sel and not filter\n";
        assert_eq!(
            hits(
                d,
                &[
                    r#"{"eventName":"ListBuckets"}"#,
                    r#"{"eventName":"ListBuckets","userIdentity":{"type":"AssumedRole"}}"#,
                    r#"{"eventName":"listbuckets","userIdentity":{"type":"IAMUser"}}"#
                ]
            ),
            vec![true, false, true]
        );
    }

    #[test]
    fn null_matches_missing_and_json_null() {
        let d = "  sel: {eventName: X, errorCode: null}\n  condition: sel\n";
        assert_eq!(
            hits(
                d,
                &[
                    r#"{"eventName":"X"}"#,
                    r#"{"eventName":"X","errorCode":null}"#,
                    r#"{"eventName":"X","errorCode":""}"#
                ]
            ),
            vec![true, true, false]
        );
    }

    #[test]
    fn exists_follows_the_spec() {
        let d = "  sel: {errorCode|exists: true}\n  condition: sel\n";
        assert_eq!(
            hits(
                d,
                &[
                    r#"{"errorCode":null}"#,
                    r#"{"a":1}"#,
                    r#"{"errorCode":"x"}"#
                ]
            ),
            vec![true, false, true]
        );
        let d = "  sel: {errorCode|exists: false}\n  condition: sel\n";
        assert_eq!(
            hits(d, &[r#"{"errorCode":null}"#, r#"{"a":1}"#]),
            vec![false, true]
        );
    }

    #[test]
    fn fieldref_compares_two_fields() {
        let d = "  sel: {eventName: UpdateLoginProfile}\n  same:\n    userIdentity.arn|fieldref|endswith: requestParameters.userName\n  condition: sel and not same\n";
        assert_eq!(
            hits(
                d,
                &[
                    r#"{"eventName":"UpdateLoginProfile","userIdentity":{"arn":"arn:aws:iam::1:user/Bob"},"requestParameters":{"userName":"bob"}}"#,
                    r#"{"eventName":"UpdateLoginProfile","userIdentity":{"arn":"arn:aws:iam::1:user/admin"},"requestParameters":{"userName":"bob"}}"#,
                ]
            ),
            vec![false, true]
        );
    }

    #[test]
    fn keywords_search_the_whole_event() {
        let d = "  keywords:\n    - TruffleHog\n  condition: keywords\n";
        assert_eq!(
            hits(
                d,
                &[
                    r#"{"userAgent":"trufflehog/3.0"}"#,
                    r#"{"userAgent":"aws-cli"}"#
                ]
            ),
            vec![true, false]
        );
    }

    #[test]
    fn quantifiers_all_and_numeric() {
        let d = "  a: {x|gt: 5}\n  b: {y|contains|all: [foo, bar]}\n  c: {z: 1}\n  condition: 2 of them\n";
        assert_eq!(
            hits(
                d,
                &[
                    r#"{"x":10,"y":"bar foo"}"#,
                    r#"{"x":10,"y":"foo"}"#,
                    r#"{"x":"3","z":1}"#,
                    r#"{"y":"foobar","z":"1"}"#
                ]
            ),
            vec![true, false, false, true]
        );
    }

    #[test]
    fn neq_and_time_parts() {
        let d = "  sel: {eventName: ConsoleLogin, awsRegion|neq: [us-east-1, us-west-2]}\n  condition: sel\n";
        assert_eq!(
            hits(
                d,
                &[
                    r#"{"eventName":"ConsoleLogin","awsRegion":"eu-west-1"}"#,
                    r#"{"eventName":"ConsoleLogin","awsRegion":"us-east-1"}"#
                ]
            ),
            vec![true, false]
        );
        let d = "  night: {eventTime|hour|lt: 6}\n  condition: night\n";
        assert_eq!(
            hits(
                d,
                &[
                    r#"{"eventTime":"2024-01-01T03:00:00Z"}"#,
                    r#"{"eventTime":"2024-01-01T13:00:00Z"}"#
                ]
            ),
            vec![true, false]
        );
    }

    #[test]
    fn regex_and_cidr_and_wildcards() {
        let d = "  a: {userIdentity.arn|re: '.+:assumed-role/aws:.+'}\n  b: {sourceIPAddress|cidr: 10.0.0.0/8}\n  c: {userAgent: 'aws-cli/2.*Linux*'}\n  condition: 1 of them\n";
        assert_eq!(
            hits(
                d,
                &[
                    r#"{"userIdentity":{"arn":"arn:aws:sts::1:assumed-role/aws:ec2-instance/i-1"}}"#,
                    r#"{"sourceIPAddress":"10.1.2.3"}"#,
                    r#"{"userAgent":"AWS-CLI/2.15 Python/3 Linux/6"}"#,
                    r#"{"sourceIPAddress":"11.1.2.3","userAgent":"aws-cli/1.0 Linux"}"#,
                ]
            ),
            vec![true, true, true, false]
        );
    }

    #[test]
    fn duplicate_ids_are_rejected() {
        let text = "title: a\nid: same\nlogsource: {}\ndetection: {s: {a: b}, condition: s}\n---\ntitle: b\nid: same\nlogsource: {}\ndetection: {s: {a: b}, condition: s}\n";
        let (rules, _) = parse_file(Path::new("d.yml"), text, &Placeholders::new());
        let errs = RuleSet::compile(rules).unwrap_err();
        assert!(errs[0].message.contains("duplicate rule id"), "{errs:?}");
    }
}
