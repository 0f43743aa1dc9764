//! `trailwatch: silence:` rules: alert when an account and region that delivered events
//! normally stop delivering while others go on (see [`crate::window::silence`]).

use super::correlation::{Correlation, Kind, Range};
use super::error::Located;
use super::section::Section;
use super::yaml::Node;
use std::collections::BTreeMap;

/// Settings of a silence rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SilenceSpec {
    /// Seconds without events that make a silence.
    pub after: i64,
    /// Events a source must have delivered before its silence counts.
    pub min_events: u64,
    /// Seconds of event time it must have delivered over.
    pub baseline: i64,
}

const KEYS: &[&str] = &["after", "min_events", "baseline", "retention"];

/// Parses a `trailwatch: silence:` section into a correlation of the silence kind, grouped by
/// `recipientAccountId` and `awsRegion`, fed by every event rather than by rules.
pub(crate) fn parse(node: &Node) -> Result<Correlation, Located> {
    let section = Section::new(node, "silence", KEYS)?;
    let get = |k: &str| section.get(k);
    let span = |k: &str, default: &str| section.span(k, default, "1h");
    let min_events = match get("min_events") {
        None => 100,
        Some(n) => n
            .as_text()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| Located::new(n.line, "'min_events' must be a whole number"))?,
    };
    let after = span("after", "1h")?;
    if after == 0 {
        return Err(Located::new(
            section.line(),
            "'after' must be longer than 0s",
        ));
    }
    let spec = SilenceSpec {
        after,
        min_events,
        baseline: span("baseline", "1d")?,
    };
    Ok(Correlation {
        kind: Kind::Silence,
        rules: Vec::new(),
        group_by: vec!["recipientAccountId".into(), "awsRegion".into()],
        aliases: BTreeMap::new(),
        timespan: span("retention", "30d")?.max(after),
        condition: Range {
            gte: Some(0.0),
            ..Range::default()
        },
        field: None,
        generate: true,
        geo: None,
        first_seen: None,
        silence: Some(spec),
    })
}
