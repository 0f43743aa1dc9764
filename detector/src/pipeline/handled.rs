//! Ids of hits and alerts already handled, so input redelivered after a crash (whose events
//! the restored de-duplication memory may predate) neither pages again nor adds to a roll-up.
//!
//! With a durable ledger, new ids wait until [`Handled::confirm`] (after the sinks confirmed
//! delivery) before they are appended and synced; in memory they count at once.

use crate::alert::ledger::Ledger;
use crate::keyed::Set;

/// Hit ids and alert ids share the ledger; a prefix keeps a hit from hiding an alert whose
/// id is the same (an unsuppressed rule's alert keeps its hit's id).
const HIT: &str = "hit/";

pub(super) struct Handled {
    ledger: Ledger,
    pending: Vec<String>,
    pending_set: Set<String>,
}

impl Handled {
    pub fn new(ledger: Ledger) -> Self {
        Handled {
            ledger,
            pending: Vec::new(),
            pending_set: Set::default(),
        }
    }

    /// Whether a hit is new (then it is remembered).
    pub fn first_hit(&mut self, id: &str) -> bool {
        self.first(format!("{HIT}{id}"))
    }

    /// Whether an alert is new (then it is remembered).
    pub fn first_alert(&mut self, id: &str) -> bool {
        self.first(id.to_string())
    }

    fn first(&mut self, id: String) -> bool {
        if !self.ledger.is_durable() {
            return self.ledger.remember(&id);
        }
        if self.ledger.contains(&id) || self.pending_set.contains(&id) {
            return false;
        }
        self.pending_set.insert(id.clone());
        self.pending.push(id);
        true
    }

    /// Appends and syncs the ids remembered since the last call.
    pub fn confirm(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.ledger
            .record(self.pending.iter().map(String::as_str))?;
        self.pending.clear();
        self.pending_set.clear();
        Ok(())
    }
}
