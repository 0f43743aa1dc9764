//! One decoded event through the rules: hits of stateless rules become gate candidates, hits
//! of rules that correlations read feed the correlator, and correlations that fire become
//! candidates too. Shared by the SQS and Kafka workers.

use crate::alert::gate::Candidate;
use crate::alert::SummaryFields;
use crate::engine::{MatchScratch, RuleSet};
use crate::event::Event;
use crate::metrics::Metrics;
use crate::window::{CorrelationHit, Correlator, Origin};

/// The matching side of a worker.
pub(super) struct Detect<'s> {
    pub set: &'s RuleSet,
    pub summaries: SummaryFields,
    pub metrics: Metrics,
    scratch: MatchScratch,
    hits: Vec<u32>,
    fired: Vec<CorrelationHit>,
}

impl<'s> Detect<'s> {
    pub fn new(set: &'s RuleSet, summaries: SummaryFields, metrics: Metrics) -> Self {
        Detect {
            set,
            summaries,
            metrics,
            scratch: MatchScratch::default(),
            hits: Vec::new(),
            fired: Vec::new(),
        }
    }

    /// Evaluates `ev` (the `index`th event seen); returns its event time, if it has one.
    pub fn event(
        &mut self,
        ev: &Event<'_>,
        index: u64,
        correlator: &mut Correlator<'s>,
        out: &mut Vec<Candidate>,
    ) -> Option<i64> {
        let set = self.set;
        self.metrics.events.inc();
        let time = ev.get(set.event_time).text();
        set.matches(ev, &mut self.scratch, &mut self.hits);
        for &r in &self.hits {
            let rule = &set.rules()[r as usize];
            self.metrics.rule_hits.with_label_values(&[rule.id()]).inc();
            if !set.links().reach[r as usize].is_empty() {
                let origin = Origin {
                    input_index: index,
                    event_id: ev.get(set.event_id).text().map(str::to_string),
                    event_time: time.map(str::to_string),
                };
                correlator.push(ev, r, origin, &mut self.fired);
            }
            if set.links().rule_reported[r as usize] {
                out.push(crate::alert::hit_candidate(
                    rule,
                    r as usize,
                    ev,
                    &self.summaries,
                ));
            }
        }
        self.correlations(out);
        time.and_then(crate::window::event_time)
    }

    /// Turns correlations that fired into candidates.
    pub fn correlations(&mut self, out: &mut Vec<Candidate>) {
        for h in self.fired.drain(..) {
            let c = h.correlation as usize;
            if self.set.links().corr_reported[c] {
                let corr = &self.set.correlations()[c];
                out.push(crate::alert::correlation_candidate(corr, &h));
            }
        }
    }
}
