//! Sigma correlation rules: `correlation:` documents that count, or relate in time, the hits of
//! other rules.

use super::error::Located;
use super::yaml::{Node, NodeKind};
use std::collections::BTreeMap;

/// The correlation types of the Sigma specification (2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Number of events per group.
    EventCount,
    /// Number of distinct values of `field` per group.
    ValueCount,
    /// All referenced rules hit within the timespan, in any order.
    Temporal,
    /// All referenced rules hit within the timespan, in the listed order.
    TemporalOrdered,
    /// Sum of the numeric `field` per group.
    ValueSum,
    /// Average of the numeric `field` per group.
    ValueAvg,
    /// Share (percent) of the group's events that carry this event's `field` value.
    ValuePercentile,
    /// trailwatch geo detector: a principal acts from a country it has not used before.
    NewCountry,
    /// trailwatch geo detector: two consecutive events of a principal too far apart for the time.
    ImpossibleTravel,
    /// trailwatch first-seen detector: a combination of values never seen before.
    FirstSeen,
    /// trailwatch silence detector: an account and region stopped delivering events.
    Silence,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "event_count" => Kind::EventCount,
            "value_count" => Kind::ValueCount,
            "temporal" => Kind::Temporal,
            "temporal_ordered" => Kind::TemporalOrdered,
            "value_sum" => Kind::ValueSum,
            "value_avg" => Kind::ValueAvg,
            "value_percentile" => Kind::ValuePercentile,
            _ => return None,
        })
    }

    /// Whether the type aggregates a `field`.
    pub fn needs_field(self) -> bool {
        matches!(
            self,
            Kind::ValueCount | Kind::ValueSum | Kind::ValueAvg | Kind::ValuePercentile
        )
    }

    /// Whether this is a geo detector.
    pub fn is_geo(self) -> bool {
        matches!(self, Kind::NewCountry | Kind::ImpossibleTravel)
    }

    /// Whether its state is a baseline that firing never resets (geo, first-seen and
    /// silence detectors), not a window.
    pub fn is_baseline(self) -> bool {
        self.is_geo() || matches!(self, Kind::FirstSeen | Kind::Silence)
    }
}

/// A numeric range: every bound given must hold.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Range {
    /// `gt`
    pub gt: Option<f64>,
    /// `gte`
    pub gte: Option<f64>,
    /// `lt`
    pub lt: Option<f64>,
    /// `lte`
    pub lte: Option<f64>,
    /// `eq`
    pub eq: Option<f64>,
    /// `neq`
    pub neq: Option<f64>,
}

impl Range {
    /// Whether `x` is inside the range.
    pub fn holds(&self, x: f64) -> bool {
        self.gt.is_none_or(|v| x > v)
            && self.gte.is_none_or(|v| x >= v)
            && self.lt.is_none_or(|v| x < v)
            && self.lte.is_none_or(|v| x <= v)
            && self.eq.is_none_or(|v| x == v)
            && self.neq.is_none_or(|v| x != v)
    }

    fn is_empty(&self) -> bool {
        *self == Range::default()
    }
}

/// The `correlation:` section of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Correlation {
    /// The type.
    pub kind: Kind,
    /// Referenced rules, by id or name, in order.
    pub rules: Vec<String>,
    /// Fields (or aliases) that scope the correlation.
    pub group_by: Vec<String>,
    /// Alias → (rule name → field).
    pub aliases: BTreeMap<String, BTreeMap<String, String>>,
    /// The window length in seconds.
    pub timespan: i64,
    /// When it fires.
    pub condition: Range,
    /// The aggregated field (value_* types).
    pub field: Option<String>,
    /// Whether the referenced rules also alert on their own.
    pub generate: bool,
    /// Settings of a geo detector (`trailwatch: geo:` rules).
    pub geo: Option<GeoSpec>,
    /// Settings of a first-seen detector (`trailwatch: first_seen:` rules).
    pub first_seen: Option<super::first_seen::FirstSeenSpec>,
    /// Settings of a silence detector (`trailwatch: silence:` rules).
    pub silence: Option<super::silence::SilenceSpec>,
}

impl Correlation {
    /// Whether it places addresses, so needs an IP geolocation database.
    pub fn needs_locator(&self) -> bool {
        self.kind.is_geo()
            || self
                .first_seen
                .as_ref()
                .is_some_and(|f| f.location.is_some())
    }
}

/// Settings of the geo detectors.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoSpec {
    /// impossible_travel: speeds above this (km/h) fire.
    pub max_speed_kmh: f64,
    /// impossible_travel: hops shorter than this (km) never fire (geolocation is approximate).
    pub min_distance_km: f64,
    /// new_country: a principal must have been seen for this long (seconds) before it alerts.
    pub baseline: i64,
    /// new_country: located events a principal needs before a new country alerts.
    pub min_history: u32,
    /// Addresses, networks, AS numbers and countries never treated as locations.
    pub exceptions: crate::geo::Exceptions,
}

/// Parses `timespan` (`30s`, `5m`, `1h`, `7d`) into seconds; `None` for anything else, and
/// for spans over [`MAX_TIMESPAN_SECS`](super::limits::MAX_TIMESPAN_SECS) (100 years).
pub fn parse_timespan(s: &str) -> Option<i64> {
    let s = s.trim();
    // The unit is the last character, which need not be one byte (`5é`).
    let (at, _) = s.char_indices().next_back()?;
    let (num, unit) = s.split_at(at);
    let n: i64 = num.parse().ok().filter(|n| *n > 0)?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
        .filter(|&secs| secs <= super::limits::MAX_TIMESPAN_SECS)
}

#[cfg(test)]
#[test]
fn a_timespan_ending_in_a_multibyte_character_is_rejected_not_a_panic() {
    assert_eq!(parse_timespan("5é"), None);
    assert_eq!(parse_timespan("é"), None);
    assert_eq!(parse_timespan(""), None);
    assert_eq!(parse_timespan("5m"), Some(300));
    assert_eq!(
        parse_timespan("\u{0660}s"),
        None,
        "Arabic-Indic zero is no digit"
    );
}

#[cfg(test)]
#[test]
fn a_timespan_that_would_overflow_event_time_is_rejected() {
    assert_eq!(parse_timespan("36600d"), Some(36_600 * 86_400));
    assert_eq!(parse_timespan("36601d"), None);
    assert_eq!(parse_timespan("9223372036854775807s"), None);
    assert_eq!(parse_timespan("9223372036854775807w"), None);
    assert_eq!(parse_timespan("99999999999999999999999s"), None);
}

pub(super) fn strings(node: &Node, what: &str) -> Result<Vec<String>, Located> {
    use super::limits::MAX_CORRELATION_LIST;
    match &node.kind {
        NodeKind::Seq(items) if items.len() > MAX_CORRELATION_LIST => Err(Located::new(
            node.line,
            format!(
                "'{what}' lists {} entries; the limit is {MAX_CORRELATION_LIST}",
                items.len()
            ),
        )),
        NodeKind::Seq(items) => items
            .iter()
            .map(|i| {
                i.as_text()
                    .ok_or_else(|| Located::new(i.line, format!("'{what}' must list strings")))
            })
            .collect(),
        _ => node
            .as_text()
            .map(|t| vec![t])
            .ok_or_else(|| Located::new(node.line, format!("'{what}' must be a list of strings"))),
    }
}

fn number(node: &Node, key: &str) -> Result<f64, Located> {
    node.as_text()
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|n| n.is_finite())
        .ok_or_else(|| Located::new(node.line, format!("condition '{key}' needs a number")))
}

/// Parses a rule document's `correlation:` section (`doc` is the whole document).
pub(crate) fn parse(doc: &Node, section: &Node) -> Result<Correlation, Located> {
    let map = section
        .as_map()
        .ok_or_else(|| Located::new(section.line, "'correlation' must be a mapping"))?;
    let get = |k: &str| map.iter().find(|(key, _)| key.text == k).map(|(_, v)| v);
    let type_node =
        get("type").ok_or_else(|| Located::new(section.line, "the correlation has no 'type'"))?;
    let kind_text = type_node.as_text().unwrap_or_default();
    let kind = Kind::parse(&kind_text).ok_or_else(|| {
        Located::new(
            type_node.line,
            format!("correlation type '{}' is not one of event_count, value_count, temporal, temporal_ordered, value_sum, value_avg, value_percentile", super::excerpt(&kind_text)),
        )
    })?;
    for (k, _) in map {
        if ![
            "type",
            "rules",
            "group-by",
            "timespan",
            "timeframe",
            "condition",
            "aliases",
            "generate",
        ]
        .contains(&k.text.as_str())
        {
            return Err(Located::new(
                k.line,
                format!("unknown correlation key '{}'", super::excerpt(&k.text)),
            ));
        }
    }
    let rules = match get("rules") {
        Some(n) => strings(n, "rules")?,
        None => return Err(Located::new(section.line, "the correlation has no 'rules'")),
    };
    if rules.is_empty() {
        return Err(Located::new(section.line, "'rules' is empty"));
    }
    let group_by = get("group-by")
        .map(|n| strings(n, "group-by"))
        .transpose()?
        .unwrap_or_default();
    let span_node = get("timespan")
        .or_else(|| get("timeframe"))
        .ok_or_else(|| Located::new(section.line, "the correlation has no 'timespan'"))?;
    let span_text = span_node.as_text().unwrap_or_default();
    let timespan = parse_timespan(&span_text).ok_or_else(|| {
        Located::new(
            span_node.line,
            format!(
                "timespan '{}' is not a number and a unit (s, m, h, d, w) of at most 100 years, e.g. 15m",
                super::excerpt(&span_text)
            ),
        )
    })?;
    let (condition, field) = parse_condition(get("condition"), kind, rules.len(), section.line)?;
    let aliases = parse_aliases(get("aliases"))?;
    let generate_node = get("generate").or_else(|| doc.get("generate"));
    let generate = match generate_node.map(|n| &n.kind) {
        None => false,
        Some(NodeKind::Scalar(super::yaml::Scalar::Bool(b))) => *b,
        Some(_) => {
            return Err(Located::new(
                generate_node.map_or(0, |n| n.line),
                "'generate' must be true or false",
            ))
        }
    };
    if kind == Kind::TemporalOrdered && rules.len() < 2 {
        return Err(Located::new(
            section.line,
            "temporal_ordered needs at least two rules",
        ));
    }
    Ok(Correlation {
        kind,
        rules,
        group_by,
        aliases,
        timespan,
        condition,
        field,
        generate,
        geo: None,
        first_seen: None,
        silence: None,
    })
}

/// Parses a `trailwatch: geo:` section into a correlation of a geo kind.
pub(crate) fn parse_geo(node: &Node) -> Result<Correlation, Located> {
    const KEYS: &[&str] = &[
        "detector",
        "rules",
        "principal",
        "address",
        "retention",
        "baseline",
        "min_history",
        "max_speed_kmh",
        "min_distance_km",
        "exceptions",
    ];
    let section = super::section::Section::new(node, "geo", KEYS)?;
    let get = |k: &str| section.get(k);
    let det = get("detector").ok_or_else(|| {
        Located::new(
            section.line(),
            "the geo rule has no 'detector' (new_country or impossible_travel)",
        )
    })?;
    let kind = match det.as_text().as_deref() {
        Some("new_country") => Kind::NewCountry,
        Some("impossible_travel") => Kind::ImpossibleTravel,
        other => {
            return Err(Located::new(
                det.line,
                format!(
                    "geo detector '{}' is not new_country or impossible_travel",
                    super::excerpt(other.unwrap_or_default())
                ),
            ))
        }
    };
    let rules = match get("rules") {
        Some(n) => strings(n, "rules")?,
        None => return Err(Located::new(section.line(), "the geo rule has no 'rules'")),
    };
    let text = |k: &str, default: &str| {
        get(k)
            .and_then(Node::as_text)
            .unwrap_or_else(|| default.to_string())
    };
    let span = |k: &str, default: &str| section.span(k, default, "7d");
    let num = |k: &str, default: f64| match get(k) {
        None => Ok(default),
        Some(n) => number(n, k),
    };
    let spec = GeoSpec {
        max_speed_kmh: num("max_speed_kmh", 900.0)?,
        min_distance_km: num("min_distance_km", 100.0)?,
        baseline: span("baseline", "0")?,
        min_history: num("min_history", 1.0)?.max(0.0) as u32,
        exceptions: parse_exceptions(get("exceptions"))?,
    };
    Ok(Correlation {
        kind,
        rules,
        group_by: vec![text("principal", "userIdentity.arn")],
        aliases: BTreeMap::new(),
        timespan: span("retention", "90d")?.max(1),
        condition: Range {
            gte: Some(1.0),
            ..Range::default()
        },
        field: Some(text("address", "sourceIPAddress")),
        generate: true,
        geo: Some(spec),
        first_seen: None,
        silence: None,
    })
}

fn parse_exceptions(node: Option<&Node>) -> Result<crate::geo::Exceptions, Located> {
    let mut ex = crate::geo::Exceptions::default();
    let Some(node) = node else { return Ok(ex) };
    let map = node.as_map().ok_or_else(|| {
        Located::new(
            node.line,
            "'exceptions' must map cidrs/asns/countries to lists",
        )
    })?;
    for (k, v) in map {
        let items = strings(v, &k.text)?;
        match k.text.as_str() {
            "cidrs" => {
                for c in items {
                    let net = crate::rule::value::Cidr::parse(&c).ok_or_else(|| {
                        Located::new(v.line, format!("'{c}' is not a network in CIDR notation"))
                    })?;
                    ex.cidrs.push(net);
                }
            }
            "asns" => {
                for a in items {
                    let n = a
                        .trim_start_matches("AS")
                        .parse()
                        .map_err(|_| Located::new(v.line, format!("'{a}' is not an AS number")))?;
                    ex.asns.push(n);
                }
            }
            "countries" => ex.countries = items,
            other => {
                return Err(Located::new(
                    k.line,
                    format!("unknown exception list '{other}' (cidrs, asns, countries)"),
                ))
            }
        }
    }
    Ok(ex)
}

fn parse_condition(
    node: Option<&Node>,
    kind: Kind,
    n_rules: usize,
    line: usize,
) -> Result<(Range, Option<String>), Located> {
    let mut range = Range::default();
    let mut field = None;
    if let Some(node) = node {
        let map = node.as_map().ok_or_else(|| {
            Located::new(node.line, "'condition' must be a mapping such as {gte: 10}")
        })?;
        for (k, v) in map {
            match k.text.as_str() {
                "gt" => range.gt = Some(number(v, "gt")?),
                "gte" => range.gte = Some(number(v, "gte")?),
                "lt" => range.lt = Some(number(v, "lt")?),
                "lte" => range.lte = Some(number(v, "lte")?),
                "eq" => range.eq = Some(number(v, "eq")?),
                "neq" => range.neq = Some(number(v, "neq")?),
                "field" => {
                    field = Some(
                        v.as_text()
                            .ok_or_else(|| Located::new(v.line, "'field' must be a field name"))?,
                    )
                }
                other => {
                    return Err(Located::new(
                        k.line,
                        format!(
                            "unknown condition operator '{}' (gt, gte, lt, lte, eq, neq, field)",
                            super::excerpt(other)
                        ),
                    ))
                }
            }
        }
    }
    let temporal = matches!(kind, Kind::Temporal | Kind::TemporalOrdered);
    if range.is_empty() {
        if !temporal {
            return Err(Located::new(
                node.map_or(line, |n| n.line),
                "the correlation needs a 'condition' such as {gte: 10}",
            ));
        }
        // Temporal correlations default to "every referenced rule".
        range.gte = Some(n_rules as f64);
    }
    if kind.needs_field() && field.is_none() {
        return Err(Located::new(
            node.map_or(line, |n| n.line),
            "this correlation type needs 'field' in its condition",
        ));
    }
    Ok((range, field))
}

fn parse_aliases(
    node: Option<&Node>,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, Located> {
    let mut out = BTreeMap::new();
    let Some(node) = node else { return Ok(out) };
    let map = node.as_map().ok_or_else(|| {
        Located::new(
            node.line,
            "'aliases' must map alias names to {rule name: field}",
        )
    })?;
    for (alias, per_rule) in map {
        let inner = per_rule.as_map().ok_or_else(|| {
            Located::new(
                per_rule.line,
                format!(
                    "alias '{}' must map rule names to fields",
                    super::excerpt(&alias.text)
                ),
            )
        })?;
        let mut fields = BTreeMap::new();
        for (rule, field) in inner {
            let f = field.as_text().ok_or_else(|| {
                Located::new(field.line, "an alias maps a rule name to a field name")
            })?;
            fields.insert(rule.text.clone(), f);
        }
        out.insert(alias.text.clone(), fields);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::yaml::load_documents;

    fn corr(yaml: &str) -> Result<Correlation, Located> {
        let doc = load_documents(yaml).unwrap().remove(0);
        let section = doc.get("correlation").unwrap().clone();
        parse(&doc, &section)
    }

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("90m"), Some(5400));
        assert_eq!(parse_timespan("1d"), Some(86_400));
        assert_eq!(parse_timespan("0m"), None);
        assert_eq!(parse_timespan("5x"), None);
        assert_eq!(parse_timespan("m"), None);
        assert_eq!(parse_timespan(""), None);
    }

    #[test]
    fn ranges() {
        let r = Range {
            gt: Some(100.0),
            lte: Some(200.0),
            ..Default::default()
        };
        assert!(!r.holds(100.0) && r.holds(101.0) && r.holds(200.0) && !r.holds(201.0));
    }

    #[test]
    fn parses_every_type() {
        let c = corr("correlation:\n  type: value_count\n  rules: [a]\n  group-by: [h]\n  timespan: 1d\n  condition: {field: User, gte: 100}\n").unwrap();
        assert_eq!(c.kind, Kind::ValueCount);
        assert_eq!(c.field.as_deref(), Some("User"));
        let c = corr(
            "correlation:\n  type: temporal\n  rules: [a, b, c]\n  group-by: [h]\n  timespan: 5m\n",
        )
        .unwrap();
        assert_eq!(c.condition.gte, Some(3.0));
        let e =
            corr("correlation:\n  type: event_count\n  rules: [a]\n  timespan: 5m\n").unwrap_err();
        assert!(e.message.contains("needs a 'condition'"), "{}", e.message);
        let e = corr(
            "correlation:\n  type: value_sum\n  rules: [a]\n  timespan: 5m\n  condition: {gt: 1}\n",
        )
        .unwrap_err();
        assert!(e.message.contains("needs 'field'"));
        let e = corr("correlation:\n  type: counting\n  rules: [a]\n  timespan: 5m\n").unwrap_err();
        assert!(e.message.contains("'counting' is not one of"));
        let e = corr("correlation:\n  type: event_count\n  rules: [a]\n  timespan: soon\n  condition: {gte: 1}\n").unwrap_err();
        assert_eq!(e.line, 4);
    }

    #[test]
    fn aliases_and_generate() {
        let c = corr("correlation:\n  type: temporal\n  rules: [x, y]\n  group-by: [ip]\n  timespan: 10s\n  generate: true\n  aliases:\n    ip:\n      x: source.ip\n      y: destination.ip\n").unwrap();
        assert!(c.generate);
        assert_eq!(c.aliases["ip"]["y"], "destination.ip");
    }
}
