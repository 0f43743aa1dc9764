//! What the `trailwatch:` detector sections (geo, first_seen, silence) share: a mapping whose
//! keys are checked against the section's own list, and durations read with a default.

use super::correlation::parse_timespan;
use super::error::Located;
use super::yaml::{Key, Node};

/// A `trailwatch: <name>:` section.
pub(super) struct Section<'a> {
    line: usize,
    map: &'a [(Key, Node)],
}

impl<'a> Section<'a> {
    /// The section `node` of `trailwatch.<name>`, whose keys must be among `keys`.
    pub(super) fn new(node: &'a Node, name: &str, keys: &[&str]) -> Result<Self, Located> {
        let map = node.as_map().ok_or_else(|| {
            Located::new(node.line, format!("'trailwatch.{name}' must be a mapping"))
        })?;
        if let Some((k, _)) = map.iter().find(|(k, _)| !keys.contains(&k.text.as_str())) {
            return Err(Located::new(
                k.line,
                format!(
                    "unknown {name} key '{}' ({})",
                    super::excerpt(&k.text),
                    keys.join(", ")
                ),
            ));
        }
        Ok(Section {
            line: node.line,
            map,
        })
    }

    /// The value under `key`.
    pub(super) fn get(&self, key: &str) -> Option<&'a Node> {
        self.map.iter().find(|(k, _)| k.text == key).map(|(_, v)| v)
    }

    /// The section's line, for errors about a key it lacks.
    pub(super) fn line(&self) -> usize {
        self.line
    }

    /// The duration under `key`, seconds: `default` when absent, `0` or `0s` for none.
    pub(super) fn span(&self, key: &str, default: &str, example: &str) -> Result<i64, Located> {
        let node = self.get(key);
        let text = node
            .and_then(Node::as_text)
            .unwrap_or_else(|| default.into());
        if text == "0" || text == "0s" {
            return Ok(0);
        }
        parse_timespan(&text).ok_or_else(|| {
            Located::new(
                node.map_or(self.line, |n| n.line),
                format!(
                    "'{key}' must be a duration such as {example}, not '{}'",
                    super::excerpt(&text)
                ),
            )
        })
    }
}
