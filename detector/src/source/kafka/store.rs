//! The compacted topic partition states live in, keyed by group, events topic and partition
//! (the latest record of a key wins).
//!
//! A state is one record when it fits in one, and otherwise pieces under keys of their own
//! plus a small record under the partition's key that names them. Brokers and librdkafka refuse
//! records over about 1 MB by default (`message.max.bytes`), and a partition's state outgrows
//! that within minutes of steady traffic: its remembered event ids alone take 16 bytes each,
//! up to 16 MB. Pieces reuse their keys from one write to the next, so compaction keeps one
//! state's worth of them; each carries the id of its write, so a state whose pieces were not
//! all written is refused whole instead of mixed with another's.

use super::{client_config, lock, PartitionState, REBALANCE_TIMEOUT};
use crate::config::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The most bytes of state in one record: well under the default limit of a record (1,000,000
/// bytes with its key and framing), so no broker or topic setting needs raising.
pub const PIECE: usize = 512 * 1024;

/// The most pieces a state may have (2 GiB): piece keys beyond are nobody's, so records
/// written there (by anyone who can write to the topic) are neither kept while reading nor
/// deleted one by one afterwards.
const MAX_PIECES: usize = 4096;

/// The record under a partition's key when its state is in pieces:
/// `TRAILWATCH-PIECES 1 <write id> <pieces> <bytes> <xxh3-64 of the state>`, numbers in hex
/// where they are hashes or ids.
const PIECES: &str = "TRAILWATCH-PIECES";

/// The compacted topic partition state lives in.
pub struct StateStore {
    /// Served only by `flush` in [`StateStore::write`]: a threaded producer's polling thread
    /// woke every few milliseconds for nothing (a tenth of a partition's CPU at 1,000 events/s).
    producer: BaseProducer,
    client: ClientConfig,
    topic: String,
    key_prefix: String,
    /// Piece keys each partition has in the topic, as far as this process knows (from its own
    /// writes and from reading the topic on assignment): those a smaller state no longer uses
    /// are deleted (tombstones), so compaction removes them.
    pieces: Mutex<HashMap<i32, usize>>,
}

impl StateStore {
    /// The store of `config`'s group and events topic in its state topic.
    pub fn new(config: &KafkaConfig) -> KafkaResult<StateStore> {
        let base = client_config(config, false);
        let producer: BaseProducer = base.clone().set("enable.idempotence", "true").create()?;
        let mut reader = base;
        reader
            .set("group.id", format!("{}-state-reader", config.group_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        Ok(StateStore {
            producer,
            client: reader,
            topic: config.state_topic.clone(),
            key_prefix: format!("{}/{}", config.group_id, config.topic),
            pieces: Mutex::default(),
        })
    }

    fn key(&self, partition: i32) -> String {
        format!("{}/{partition}", self.key_prefix)
    }

    /// The key of piece `i` of a partition's state. It ends in `#<digits>` where a partition's
    /// key ends in `/<digits>` (topic names have no `#`), so no piece key is any group's
    /// partition key.
    fn piece_key(&self, partition: i32, i: usize) -> String {
        format!("{}/{partition}#{i}", self.key_prefix)
    }

    /// Writes states and waits until the broker has them.
    pub fn write(&self, states: &[(i32, PartitionState)]) -> KafkaResult<()> {
        let mut known = lock(&self.pieces);
        for (p, s) in states {
            let (head, pieces) = split(&s.encode(), rand::random());
            for (i, piece) in pieces.iter().enumerate() {
                self.send(&self.piece_key(*p, i), Some(piece))?;
            }
            // The partition's record last: until it is written, the previous one stands.
            self.send(&self.key(*p), Some(&head))?;
            let before = known.insert(*p, pieces.len()).unwrap_or(0);
            for i in pieces.len()..before {
                self.send(&self.piece_key(*p, i), None)?;
            }
        }
        self.producer.flush(REBALANCE_TIMEOUT)
    }

    /// Queues one record (`None`: a tombstone).
    fn send(&self, key: &str, value: Option<&[u8]>) -> KafkaResult<()> {
        let mut record = BaseRecord::<str, [u8]>::to(&self.topic).key(key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        self.producer.send(record).map_err(|(e, _)| e)
    }

    /// Reads the latest state of each of `partitions` (those with none, or with one that is
    /// incomplete, are absent).
    pub fn read(&self, partitions: &[i32]) -> KafkaResult<HashMap<i32, PartitionState>> {
        let latest = self.latest(partitions)?;
        let mut found = HashMap::new();
        let mut known = lock(&self.pieces);
        for &p in partitions {
            let head = latest.get(&self.key(p)).and_then(Option::as_deref);
            let mut pieces = Vec::new();
            while pieces.len() < MAX_PIECES {
                let Some(piece) = latest.get(&self.piece_key(p, pieces.len())) else {
                    break;
                };
                pieces.push(piece.as_deref());
            }
            known.insert(p, pieces.len());
            let Some(head) = head else {
                continue; // none, or deleted
            };
            match join(head, &pieces).and_then(|bytes| PartitionState::decode(&bytes)) {
                Ok(state) => {
                    found.insert(p, state);
                }
                Err(e) => {
                    tracing::warn!(partition = p, error = %e, "partition state unreadable; starting the partition without it");
                }
            }
        }
        Ok(found)
    }

    /// The latest value of every key of `partitions`' states and pieces (`None`: deleted).
    fn latest(&self, partitions: &[i32]) -> KafkaResult<HashMap<String, Option<Vec<u8>>>> {
        let consumer: BaseConsumer = self.client.create()?;
        let meta = consumer.fetch_metadata(Some(&self.topic), REBALANCE_TIMEOUT)?;
        let mut tpl = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for t in meta.topics() {
            for p in t.partitions() {
                let (low, high) =
                    consumer.fetch_watermarks(&self.topic, p.id(), REBALANCE_TIMEOUT)?;
                if high > low {
                    tpl.add_partition_offset(&self.topic, p.id(), Offset::Offset(low))?;
                    ends.insert(p.id(), high);
                }
            }
        }
        let mut latest = HashMap::new();
        if ends.is_empty() {
            return Ok(latest);
        }
        let ours: Vec<String> = partitions.iter().map(|p| self.key(*p)).collect();
        let wanted = |key: &str| {
            ours.iter().any(|k| {
                key.strip_prefix(k.as_str())
                    .is_some_and(|rest| rest.is_empty() || is_piece_suffix(rest))
            })
        };
        consumer.assign(&tpl)?;
        let deadline = std::time::Instant::now() + REBALANCE_TIMEOUT;
        while !ends.is_empty() && std::time::Instant::now() < deadline {
            let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let msg = msg?;
            let key = msg.key().and_then(|k| std::str::from_utf8(k).ok());
            if let Some(key) = key.filter(|k| wanted(k)) {
                latest.insert(key.to_string(), msg.payload().map(<[u8]>::to_vec));
            }
            if msg.offset() + 1 >= ends.get(&msg.partition()).copied().unwrap_or(0) {
                ends.remove(&msg.partition());
            }
        }
        if !ends.is_empty() {
            // What was read is used: a state found is complete (pieces of one write), though
            // maybe older than one not reached, so the partition replays more to rebuild.
            tracing::warn!(topic = %self.topic, seconds = REBALANCE_TIMEOUT.as_secs(), "the partition state topic was not read to its end in time; starting from the states read so far (check that the topic is compacted: cleanup.policy=compact)");
        }
        Ok(latest)
    }
}

/// Whether `rest` (what follows a partition's key) is `#<digits>`, a piece's suffix.
fn is_piece_suffix(rest: &str) -> bool {
    // Written as `piece_key` writes numbers (no leading zero), so one piece has one key.
    let Some(n) = rest.strip_prefix('#') else {
        return false;
    };
    let canonical = n.bytes().all(|b| b.is_ascii_digit()) && (n == "0" || !n.starts_with('0'));
    canonical && n.parse::<usize>().is_ok_and(|i| i < MAX_PIECES)
}

/// The record for a partition's key and the pieces to write before it: the state itself and
/// none when it fits in one record; else the piece list's record and the pieces, each led by
/// the write's id.
pub fn split(state: &[u8], write: u64) -> (Vec<u8>, Vec<Vec<u8>>) {
    if state.len() <= PIECE {
        return (state.to_vec(), Vec::new());
    }
    let pieces: Vec<Vec<u8>> = state
        .chunks(PIECE)
        .map(|c| [&write.to_le_bytes()[..], c].concat())
        .collect();
    let sum = xxhash_rust::xxh3::xxh3_64(state);
    let head = format!(
        "{PIECES} 1 {write:016x} {} {} {sum:016x}",
        pieces.len(),
        state.len()
    );
    (head.into_bytes(), pieces)
}

/// The state a partition's record stands for: itself, or the pieces it names put together.
/// `pieces` are the latest values of the partition's piece keys, in order (`None`: deleted).
pub fn join(head: &[u8], pieces: &[Option<&[u8]>]) -> Result<Vec<u8>, String> {
    let Some(list) = head.strip_prefix(PIECES.as_bytes()) else {
        return Ok(head.to_vec());
    };
    let list = std::str::from_utf8(list).map_err(|_| "bad piece list")?;
    let fields: Vec<&str> = list.split_whitespace().collect();
    let ["1", write, count, len, sum] = fields[..] else {
        return Err(format!(
            "unsupported piece list '{}'",
            list.chars().take(80).collect::<String>()
        ));
    };
    let hex = |s: &str| u64::from_str_radix(s, 16).map_err(|_| "bad piece list".to_string());
    let number = |s: &str| s.parse::<usize>().map_err(|_| "bad piece list".to_string());
    let (write, count, len, sum) = (hex(write)?, number(count)?, number(len)?, hex(sum)?);
    if count > pieces.len() {
        return Err(format!("{} of {count} pieces present", pieces.len()));
    }
    let mut state = Vec::with_capacity(len.min(pieces.len().saturating_mul(PIECE)));
    for (i, piece) in pieces[..count].iter().enumerate() {
        let body = piece
            .and_then(|p| p.strip_prefix(&write.to_le_bytes()[..]))
            .ok_or_else(|| format!("piece {i} belongs to another write"))?;
        state.extend_from_slice(body);
    }
    if state.len() != len || xxhash_rust::xxh3::xxh3_64(&state) != sum {
        return Err(format!(
            "pieces add up to {} bytes, not the {len} listed",
            state.len()
        ));
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn joined(head: &[u8], pieces: &[Vec<u8>]) -> Result<Vec<u8>, String> {
        let refs: Vec<Option<&[u8]>> = pieces.iter().map(|p| Some(p.as_slice())).collect();
        join(head, &refs)
    }

    #[test]
    fn a_state_that_fits_in_a_record_is_the_record() {
        let state = vec![7u8; PIECE];
        let (head, pieces) = split(&state, 1);
        assert!(pieces.is_empty());
        assert_eq!(head, state);
        assert_eq!(joined(&head, &[]).unwrap(), state);
    }

    #[test]
    fn a_larger_state_goes_in_pieces_each_under_the_limit() {
        let state: Vec<u8> = (0..3 * PIECE + 5).map(|i| (i % 251) as u8).collect();
        let (head, pieces) = split(&state, 42);
        assert_eq!(pieces.len(), 4);
        assert!(pieces.iter().all(|p| p.len() <= PIECE + 8));
        assert!(head.len() < 100, "the partition's record only lists them");
        assert_eq!(joined(&head, &pieces).unwrap(), state);
    }

    #[test]
    fn pieces_of_another_write_missing_or_deleted_are_refused() {
        let state: Vec<u8> = (0..2 * PIECE + 1).map(|i| (i % 13) as u8).collect();
        let (head, pieces) = split(&state, 1);
        let (_, others) = split(&state, 2);
        // The first piece rewritten by a later write whose partition record never came.
        let mixed = vec![others[0].clone(), pieces[1].clone(), pieces[2].clone()];
        assert!(joined(&head, &mixed).unwrap_err().contains("another write"));
        assert!(joined(&head, &pieces[..2]).unwrap_err().contains("2 of 3"));
        let deleted = [Some(pieces[0].as_slice()), None, Some(pieces[2].as_slice())];
        assert!(join(&head, &deleted).is_err());
        // Same write id, altered bytes.
        let mut altered = pieces.clone();
        altered[1][100] ^= 1;
        assert!(joined(&head, &altered).is_err());
    }

    #[test]
    fn piece_keys_never_name_a_partition() {
        assert!(is_piece_suffix("#0") && is_piece_suffix("#12"));
        assert!(is_piece_suffix("#4095"));
        for rest in [
            "",
            "#",
            "#1a",
            "/3",
            "#-1",
            "#1 ",
            "#00",
            "#01",
            "#4096",
            "#99999999999999999999",
        ] {
            assert!(!is_piece_suffix(rest), "{rest:?}");
        }
    }

    proptest! {
        #[test]
        fn any_state_splits_and_joins_back(len in 0usize..3 * PIECE, write: u64, seed: u8) {
            let state: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
            let (head, pieces) = split(&state, write);
            prop_assert_eq!(joined(&head, &pieces).unwrap(), state);
        }

        #[test]
        fn any_piece_list_is_refused_or_read_without_panic(head in proptest::collection::vec(any::<u8>(), 0..80)) {
            let mut text = PIECES.as_bytes().to_vec();
            text.extend_from_slice(&head);
            let _ = join(&text, &[Some(&[0u8; 16][..])]);
        }
    }
}
