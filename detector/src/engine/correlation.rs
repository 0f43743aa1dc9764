//! Compiling correlation rules: references resolved to rules, group-by fields to field ids.

use crate::event::{FieldId, FieldTable};
use crate::rule::correlation::{Correlation, Kind};
use crate::rule::{Rule, RuleError};
use rustc_hash::FxHashMap;

/// What a correlation input is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A detection rule (index into the rule set's rules).
    Rule(u32),
    /// Another correlation (index into the rule set's correlations).
    Correlation(u32),
}

/// A compiled correlation rule.
#[derive(Debug, Clone)]
pub struct CompiledCorrelation {
    /// The source rule (metadata; `rule.correlation` holds the spec).
    pub rule: Rule,
    /// The type.
    pub kind: Kind,
    /// The window length, seconds.
    pub timespan: i64,
    /// Inputs in the listed order.
    pub inputs: Vec<Source>,
    /// For each input, the fields that make the group key (aliases resolved).
    pub group_fields: Vec<Vec<FieldId>>,
    /// For each input, the aggregated field (value_* types).
    pub value_field: Vec<Option<FieldId>>,
    /// Fires the moment its condition holds, without waiting for the watermark: a count,
    /// distinct-value or temporal condition that more events can only make true (`gt`/`gte`),
    /// fed by detection rules only and feeding no other correlation.
    pub early: bool,
}

impl CompiledCorrelation {
    /// The spec.
    pub fn spec(&self) -> &Correlation {
        self.rule
            .correlation
            .as_ref()
            .expect("a compiled correlation has its spec")
    }

    /// The id used in hits and alerts.
    pub fn id(&self) -> &str {
        self.rule.label()
    }
}

/// Compiles `corrs` against the detection rules `rules`; rejects unknown references and cycles.
pub fn compile(
    rules: &[&Rule],
    corrs: Vec<Rule>,
    fields: &mut FieldTable,
) -> Result<Vec<CompiledCorrelation>, Vec<RuleError>> {
    let mut names: FxHashMap<&str, Source> = FxHashMap::default();
    for (i, r) in rules.iter().enumerate() {
        for key in [r.id.as_deref(), r.name.as_deref()].into_iter().flatten() {
            names.insert(key, Source::Rule(i as u32));
        }
    }
    for (i, c) in corrs.iter().enumerate() {
        for key in [c.id.as_deref(), c.name.as_deref()].into_iter().flatten() {
            names.insert(key, Source::Correlation(i as u32));
        }
    }
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for c in &corrs {
        let spec = c
            .correlation
            .as_ref()
            .expect("partitioned as a correlation");
        let err = |m: String| RuleError::new(&c.file, c.line, m).with_rule(Some(c.label()));
        let mut inputs = Vec::new();
        for r in &spec.rules {
            match names.get(r.as_str()) {
                Some(s) => inputs.push(*s),
                None => errors.push(err(format!(
                    "correlation refers to '{}', which is no loaded rule's id or name",
                    crate::rule::excerpt(r)
                ))),
            }
        }
        if inputs.len() != spec.rules.len() {
            continue;
        }
        let name_of = |s: &Source| -> Option<&str> {
            match s {
                Source::Rule(i) => rules[*i as usize].name.as_deref(),
                Source::Correlation(i) => corrs[*i as usize].name.as_deref(),
            }
        };
        let group_fields = inputs
            .iter()
            .zip(&spec.rules)
            .map(|(s, reference)| {
                spec.group_by
                    .iter()
                    .map(|g| fields.intern(&aliased(spec, g, name_of(s), reference)))
                    .collect()
            })
            .collect();
        let value_field = inputs
            .iter()
            .zip(&spec.rules)
            .map(|(s, reference)| {
                spec.field
                    .as_ref()
                    .map(|f| fields.intern(&aliased(spec, f, name_of(s), reference)))
            })
            .collect();
        out.push(CompiledCorrelation {
            rule: c.clone(),
            kind: spec.kind,
            timespan: spec.timespan,
            inputs,
            group_fields,
            value_field,
            early: false,
        });
    }
    if let Some(e) = cycle(&out, &corrs) {
        errors.push(e);
    }
    mark_early(&mut out);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Marks the correlations that can fire early (see [`CompiledCorrelation::early`]).
fn mark_early(compiled: &mut [CompiledCorrelation]) {
    let read: Vec<bool> = (0..compiled.len())
        .map(|i| {
            compiled
                .iter()
                .any(|c| c.inputs.contains(&Source::Correlation(i as u32)))
        })
        .collect();
    for (c, read) in compiled.iter_mut().zip(read) {
        let cond = c.spec().condition;
        let monotone = matches!(c.kind, Kind::EventCount | Kind::ValueCount | Kind::Temporal);
        let only_lower_bounds = (cond.gt.is_some() || cond.gte.is_some())
            && cond.lt.is_none()
            && cond.lte.is_none()
            && cond.eq.is_none()
            && cond.neq.is_none();
        let from_rules = c.inputs.iter().all(|s| matches!(s, Source::Rule(_)));
        c.early = monotone && only_lower_bounds && from_rules && !read;
    }
}

/// The field an alias stands for in events of the input rule named `name` (or referenced as `reference`).
fn aliased(spec: &Correlation, field: &str, name: Option<&str>, reference: &str) -> String {
    spec.aliases
        .get(field)
        .and_then(|per_rule| {
            name.and_then(|n| per_rule.get(n))
                .or_else(|| per_rule.get(reference))
        })
        .cloned()
        .unwrap_or_else(|| field.to_string())
}

/// A correlation that (transitively) refers to itself.
///
/// Iterative: a folder of correlations each reading the one before is a chain as long as the
/// folder, and must not exhaust the stack.
fn cycle(compiled: &[CompiledCorrelation], corrs: &[Rule]) -> Option<RuleError> {
    fn visit(start: usize, compiled: &[CompiledCorrelation], state: &mut [u8]) -> bool {
        // (correlation, index of the next input to look at)
        let mut stack = vec![(start, 0usize)];
        while let Some(&mut (i, ref mut next)) = stack.last_mut() {
            if *next == 0 {
                if state[i] == 1 {
                    return true;
                }
                if state[i] == 2 {
                    stack.pop();
                    continue;
                }
                state[i] = 1;
            }
            match compiled[i].inputs.get(*next) {
                Some(input) => {
                    *next += 1;
                    if let Source::Correlation(j) = input {
                        let j = *j as usize;
                        if j < compiled.len() {
                            if state[j] == 1 {
                                return true;
                            }
                            if state[j] == 0 {
                                stack.push((j, 0));
                            }
                        }
                    }
                }
                None => {
                    state[i] = 2;
                    stack.pop();
                }
            }
        }
        false
    }
    if compiled.len() != corrs.len() {
        return None; // reference errors are reported first
    }
    let mut state = vec![0u8; compiled.len()];
    (0..compiled.len())
        .find(|&i| visit(i, compiled, &mut state))
        .map(|i| {
            let c = &corrs[i];
            RuleError::new(
                &c.file,
                c.line,
                "correlation rules refer to each other in a cycle",
            )
            .with_rule(Some(c.label()))
        })
}
