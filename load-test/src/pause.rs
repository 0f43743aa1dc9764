//! A stream that falls quiet: after chosen events nothing is sent for a while, as when a
//! partition or queue has no traffic. Events sent after a pause have their event time moved on
//! by the pause, as if the wall clock had moved them, so nothing after it is late.

use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

/// Where and how long to pause.
#[derive(Debug, Clone)]
pub struct Pauses {
    /// How long nothing is sent.
    pub pause: Duration,
    /// The ids of the events after which to pause.
    pub after: HashSet<String>,
}

impl Pauses {
    /// Pauses of `seconds` after the events completing each correlation of the ground truth
    /// (the `completed_by` of its lines).
    pub fn after_completions(seconds: u64, truth: &[Value]) -> Pauses {
        Pauses {
            pause: Duration::from_secs(seconds),
            after: truth
                .iter()
                .filter_map(|x| x["completed_by"].as_str())
                .map(str::to_string)
                .collect(),
        }
    }

    /// Whether the stream pauses after `event`.
    pub fn is_after(&self, event: &Value) -> bool {
        event["eventID"]
            .as_str()
            .is_some_and(|id| self.after.contains(id))
    }
}

/// Moves `event`'s `eventTime` on by `seconds`.
pub fn retime(event: &mut Value, seconds: i64) {
    if let Some(t) = event["eventTime"]
        .as_str()
        .and_then(trailwatch::window::event_time)
    {
        event["eventTime"] = trailwatch::window::format_time(t + seconds).into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pauses_follow_completing_events_and_later_events_move_on() {
        let truth = vec![
            json!({"rule": "a.yml", "event_ids": ["x"], "group": null, "completed_by": null}),
            json!({"rule": "b.yml", "event_ids": [], "group": {}, "completed_by": "c1"}),
        ];
        let p = Pauses::after_completions(25, &truth);
        assert_eq!(p.pause, Duration::from_secs(25));
        assert!(p.is_after(&json!({"eventID": "c1"})));
        assert!(!p.is_after(&json!({"eventID": "x"})));
        let mut e = json!({"eventID": "y", "eventTime": "2023-11-14T22:13:20Z"});
        retime(&mut e, 25);
        assert_eq!(e["eventTime"], "2023-11-14T22:13:45Z");
    }
}
