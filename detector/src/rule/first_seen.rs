//! `trailwatch: first_seen:` rules: alert when a combination of field values (a principal and an
//! API, an access key and a network, a principal and a PHI bucket) appears for the first time
//! after a learning period, like Elastic's new-terms rules.

use super::correlation::{strings, Correlation, Kind, Range};
use super::error::Located;
use super::section::Section;
use super::yaml::Node;
use std::collections::BTreeMap;

/// What an address adds to a first-seen combination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// The address's country (`location: country`).
    Country,
    /// The address's autonomous system (`location: asn`; needs an ASN database).
    Asn,
}

impl Place {
    /// The name the place has in an alert's group.
    pub fn name(self) -> &'static str {
        match self {
            Place::Country => "country",
            Place::Asn => "asn",
        }
    }
}

/// Settings of a first-seen detector.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstSeenSpec {
    /// Seconds of event time the detector learns, from the first event it sees, before a new
    /// combination alerts.
    pub history: i64,
    /// Where the event's address places the combination, if anywhere.
    pub location: Option<Place>,
    /// Values of the combination's fields that never alert, by field.
    pub exceptions: BTreeMap<String, Vec<String>>,
}

/// Most fields one combination may have.
const MAX_FIELDS: usize = 8;

const KEYS: &[&str] = &[
    "rules",
    "fields",
    "history",
    "retention",
    "location",
    "address",
    "exceptions",
];

/// Parses a `trailwatch: first_seen:` section into a correlation of the first-seen kind.
pub(crate) fn parse(node: &Node) -> Result<Correlation, Located> {
    let section = Section::new(node, "first_seen", KEYS)?;
    let get = |k: &str| section.get(k);
    let required = |k: &str| {
        let node = get(k).ok_or_else(|| {
            Located::new(section.line(), format!("the first_seen rule has no '{k}'"))
        })?;
        let list = strings(node, k)?;
        if list.is_empty() {
            return Err(Located::new(node.line, format!("'{k}' is empty")));
        }
        Ok((node, list))
    };
    let (_, rules) = required("rules")?;
    let (fields_node, fields) = required("fields")?;
    if fields.len() > MAX_FIELDS {
        return Err(Located::new(
            fields_node.line,
            format!("'fields' lists {}; at most {MAX_FIELDS}", fields.len()),
        ));
    }
    let span = |k: &str, default: &str| section.span(k, default, "14d");
    let location = match get("location") {
        None => None,
        Some(n) => match n.as_text().as_deref() {
            Some("country") => Some(Place::Country),
            Some("asn") => Some(Place::Asn),
            other => {
                return Err(Located::new(
                    n.line,
                    format!(
                        "location '{}' is not country or asn",
                        super::excerpt(other.unwrap_or_default())
                    ),
                ))
            }
        },
    };
    let address = match get("address") {
        Some(n) if location.is_none() => {
            return Err(Located::new(
                n.line,
                "'address' is read only with 'location' (country or asn)",
            ))
        }
        Some(n) => n
            .as_text()
            .ok_or_else(|| Located::new(n.line, "'address' must be a field name"))?,
        None => "sourceIPAddress".into(),
    };
    let spec = FirstSeenSpec {
        history: span("history", "14d")?,
        location,
        exceptions: parse_exceptions(get("exceptions"), &fields)?,
    };
    Ok(Correlation {
        kind: Kind::FirstSeen,
        rules,
        group_by: fields,
        aliases: BTreeMap::new(),
        timespan: span("retention", "90d")?.max(1),
        condition: Range {
            gte: Some(1.0),
            ..Range::default()
        },
        field: location.map(|_| address),
        generate: true,
        geo: None,
        first_seen: Some(spec),
        silence: None,
    })
}

/// `exceptions: {field: [values]}`, each field one of the combination's.
fn parse_exceptions(
    node: Option<&Node>,
    fields: &[String],
) -> Result<BTreeMap<String, Vec<String>>, Located> {
    let mut out = BTreeMap::new();
    let Some(node) = node else { return Ok(out) };
    let map = node.as_map().ok_or_else(|| {
        Located::new(
            node.line,
            "'exceptions' must map fields of the combination to lists of values",
        )
    })?;
    for (k, v) in map {
        if !fields.contains(&k.text) {
            return Err(Located::new(
                k.line,
                format!(
                    "exception field '{}' is not one of the combination's fields ({})",
                    super::excerpt(&k.text),
                    fields.join(", ")
                ),
            ));
        }
        out.insert(k.text.clone(), strings(v, &k.text)?);
    }
    Ok(out)
}
