//! A pipeline's counters as Prometheus metrics: each pipeline (the SQS stream, each Kafka
//! partition) adds what changed since it last reported, so several of them sum up.

use crate::alert::gate::GateStats;
use crate::engine::RuleSet;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, Stats};

/// What one pipeline reported so far.
#[derive(Debug, Default)]
pub(super) struct Reported {
    stats: Stats,
    gate: GateStats,
    correlation: crate::window::Stats,
    keys: i64,
    /// The (account, region) labels this pipeline set.
    sources: std::collections::HashSet<(String, String)>,
    /// When they were last set (every batch rebuilt a series per source, a sixth of a live
    /// partition's CPU at 1,000 events/s).
    sources_at: Option<std::time::Instant>,
}

impl Reported {
    /// Adds what changed since the last call to the metrics.
    pub fn report(&mut self, set: &RuleSet, p: &Pipeline<'_>, m: &Metrics) {
        let (now, was) = (p.stats(), &self.stats);
        m.events.inc_by(now.events.saturating_sub(was.events));
        m.events_duplicate
            .inc_by(now.duplicates.saturating_sub(was.duplicates));
        m.alerts_deduplicated
            .inc_by(now.repeats.saturating_sub(was.repeats));
        for (r, n) in now.hits.iter().enumerate() {
            let before = was.hits.get(r).copied().unwrap_or(0);
            if *n > before {
                let id = set.rules()[r].id();
                m.rule_hits.with_label_values(&[id]).inc_by(n - before);
            }
        }
        for (kind, n) in &now.errors {
            let before = was.errors.get(kind).copied().unwrap_or(0);
            if *n > before {
                m.decode_errors
                    .with_label_values(&[kind])
                    .inc_by(n - before);
            }
        }
        self.stats = now.clone();
        let (g, gw) = (p.gate_stats(), self.gate);
        m.alerts_suppressed
            .inc_by(g.suppressed.saturating_sub(gw.suppressed));
        m.alerts_rate_limited
            .inc_by(g.rate_limited.saturating_sub(gw.rate_limited));
        self.gate = g;
        let (c, cw) = (p.correlation_stats(), self.correlation);
        m.late_events.add(c.late.saturating_sub(cw.late) as i64);
        m.window_evictions
            .add(c.evicted.saturating_sub(cw.evicted) as i64);
        self.correlation = c;
        let keys = p.correlation_keys() as i64;
        m.window_keys.add(keys - self.keys);
        self.keys = keys;
        self.report_sources(p, m);
    }

    /// The age of each account's and region's latest event, by the wall clock.
    fn report_sources(&mut self, p: &Pipeline<'_>, m: &Metrics) {
        // A new source is reported at once; ages, which are whole seconds, once a second.
        let fresh = self
            .sources_at
            .is_some_and(|at| at.elapsed() < std::time::Duration::from_secs(1));
        if fresh && p.sources().count() == self.sources.len() {
            return;
        }
        self.sources_at = Some(std::time::Instant::now());
        let now = crate::window::unix_ms() / 1000;
        let mut seen = std::collections::HashSet::new();
        for s in p.sources() {
            let age = now.saturating_sub(s.last).max(0) as f64;
            m.source_age
                .with_label_values(&[&*s.account, &*s.region])
                .set(age);
            seen.insert((s.account.to_string(), s.region.to_string()));
        }
        // Sources the pipeline forgot (silent past the retention, or over the cap).
        for (a, r) in self.sources.difference(&seen) {
            let _ = m.source_age.remove_label_values(&[a, r]);
        }
        self.sources = seen;
    }

    /// The pipeline is gone (a revoked partition, a replaced rule set): its gauges no longer
    /// count here (its state, counters included, lives on where it was handed).
    pub fn retire(&mut self, m: &Metrics) {
        for (a, r) in &self.sources {
            let _ = m.source_age.remove_label_values(&[a, r]);
        }
        m.window_keys.sub(self.keys);
        m.late_events.sub(self.correlation.late as i64);
        m.window_evictions.sub(self.correlation.evicted as i64);
        *self = Reported::default();
    }
}
