//! The Kafka source: a consumer group whose partitions own their detection state.
//!
//! The events topic is keyed by account (`recipientAccountId`), so every event of an account,
//! and so every principal and address a correlation groups by within it, lands in one partition.
//! Each partition's correlation and suppression state travels with the partition: when the group
//! takes a partition away, the worker writes its state as of its last delivered batch to a
//! compacted state topic (keyed by group, topic and partition; in pieces when it is larger than a
//! record may be, see `store`) with the offset it corresponds to, then lets it go; whoever is
//! assigned the partition next restores it and starts reading at that offset. Offsets are
//! committed at once after a batch delivers alerts (and about once a second otherwise), so events
//! between the state's offset and the committed offset only rebuild state (their alerts were
//! delivered before the commit); later ones alert as usual (read again after a crash, events
//! that delivered nothing rebuild the same state and deliver nothing again). The state also
//! says up to where its owner delivered: a commit refused or lost during the rebalance, or
//! committed offsets that cannot be read, must not page again. Snapshots are also written
//! periodically, so after a `kill -9` the next owner does the same from the last one.

use crate::config::KafkaConfig;
use crate::metrics::Metrics;
use crate::pipeline::seal::{SealError, SealKey};
use crate::sink::archive::object::{hex, unhex};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::{ClientConfig, ClientContext, Statistics};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod store;
pub use store::StateStore;

/// How long rebalance work (reading or writing state, committing) may take.
const REBALANCE_TIMEOUT: Duration = Duration::from_secs(20);

/// One partition's state as of an offset: the next offset to read and the pipeline's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// The next offset to read after this state.
    pub offset: i64,
    /// The alerts of events before this offset were delivered (by the state's owner, or
    /// before it): at least `offset`, later while the owner replays a gap its predecessor
    /// delivered.
    pub delivered: i64,
    /// The pipeline snapshot (`Pipeline::snapshot`): correlation and suppression windows and
    /// the remembered event ids, so a new owner drops the same redeliveries.
    pub pipeline: Vec<u8>,
    /// With an HMAC secret, the tag that vouches for the header: the body is sealed, but a
    /// header forged beside a real body (a later `delivered`) would silence the partition.
    pub tag: Option<[u8; 32]>,
}

const MAGIC: &str = "TRAILWATCH-PARTITION";

/// Whose partition a state is: the consumer group, the events topic and the partition.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// The consumer group.
    pub group: &'a str,
    /// The events topic.
    pub topic: &'a str,
    /// The partition.
    pub partition: i32,
}

impl PartitionState {
    /// `TRAILWATCH-PARTITION 4 <offset> <delivered> <tag in hex, or ->\n<pipeline snapshot>`.
    pub fn encode(&self) -> Vec<u8> {
        let tag = self.tag.map_or("-".to_string(), |t| hex(&t));
        let mut out = format!("{MAGIC} 4 {} {} {tag}\n", self.offset, self.delivered).into_bytes();
        out.extend_from_slice(&self.pipeline);
        out
    }

    /// Sets the tag that vouches for this state as `owner`'s (none without a secret). The
    /// body's own seal stands for the body, so this costs one HMAC of a few dozen bytes, not a
    /// pass over the state.
    pub fn vouch(&mut self, key: Option<&SealKey>, owner: Owner<'_>) {
        self.tag = key.map(|k| self.vouched(owner, |parts| k.vouch(parts)));
    }

    /// Whether the header can be trusted: always without a secret (nothing is authenticated
    /// then); with one, only when its tag vouches for it as `owner`'s.
    pub fn check(&self, key: Option<&SealKey>, owner: Owner<'_>) -> Result<(), SealError> {
        match (key, &self.tag) {
            (None, _) => Ok(()),
            (Some(k), Some(tag)) if self.vouched(owner, |parts| k.vouches(parts, tag)) => Ok(()),
            (Some(_), _) => Err(SealError::Unvouched),
        }
    }

    /// Hands `f` what the tag covers: whose state it is, both offsets, and the sealed body's
    /// length, nonce and authentication tag, which no other body has.
    fn vouched<R>(&self, owner: Owner<'_>, f: impl FnOnce(&[&[u8]]) -> R) -> R {
        let b = &self.pipeline;
        let numbers = [
            i64::from(owner.partition).to_le_bytes(),
            self.offset.to_le_bytes(),
            self.delivered.to_le_bytes(),
            (b.len() as i64).to_le_bytes(),
        ];
        f(&[
            owner.group.as_bytes(),
            owner.topic.as_bytes(),
            &numbers[0],
            &numbers[1],
            &numbers[2],
            &numbers[3],
            &b[..b.len().min(40)],
            &b[b.len().saturating_sub(16)..],
        ])
    }

    /// Reads what [`PartitionState::encode`] wrote, version 3 (without a tag), version 2
    /// (without the delivered offset) and version 1 (correlation and suppression state, without
    /// remembered event ids).
    pub fn decode(bytes: &[u8]) -> Result<PartitionState, String> {
        let nl = memchr::memchr(b'\n', bytes).ok_or("not a partition state")?;
        let header = std::str::from_utf8(&bytes[..nl]).map_err(|_| "not a partition state")?;
        let parts: Vec<&str> = header.split(' ').collect();
        let body = &bytes[nl + 1..];
        let offset = |o: &str| o.parse::<i64>().map_err(|_| "bad offset".to_string());
        match parts[..] {
            [MAGIC, "4", o, d, tag] => Ok(PartitionState {
                offset: offset(o)?,
                delivered: offset(d)?,
                pipeline: body.to_vec(),
                tag: parse_tag(tag)?,
            }),
            [MAGIC, "3", o, d] => Ok(PartitionState {
                offset: offset(o)?,
                delivered: offset(d)?,
                pipeline: body.to_vec(),
                tag: None,
            }),
            [MAGIC, "2", o] => Ok(PartitionState {
                offset: offset(o)?,
                delivered: offset(o)?,
                pipeline: body.to_vec(),
                tag: None,
            }),
            [MAGIC, "1", o, len] => {
                let len: usize = len.parse().map_err(|_| "bad length")?;
                if body.len() < len {
                    return Err("truncated partition state".into());
                }
                Ok(PartitionState {
                    offset: offset(o)?,
                    delivered: offset(o)?,
                    pipeline: crate::pipeline::state_of(&body[..len], &body[len..]),
                    tag: None,
                })
            }
            [magic, version, ..] if magic == MAGIC => Err(format!(
                "unsupported partition state version '{}'",
                version.chars().take(20).collect::<String>()
            )),
            _ => Err("not a partition state".into()),
        }
    }
}

/// A header's tag: `-` for none, else 64 lower-case hex digits.
fn parse_tag(text: &str) -> Result<Option<[u8; 32]>, String> {
    if text == "-" {
        return Ok(None);
    }
    let bytes = unhex(text).ok_or("bad partition state tag")?;
    let tag = <[u8; 32]>::try_from(bytes).map_err(|_| "bad partition state tag")?;
    Ok(Some(tag))
}

/// What an assigned partition starts from.
#[derive(Debug, Clone)]
pub struct Restore {
    /// State to restore, if the partition had any.
    pub state: Option<PartitionState>,
    /// Alerts of events before this offset were already delivered: the group's committed
    /// offset, or the state's delivered offset when that is later.
    pub committed: i64,
    /// The group's committed offset alone (-1: none, or not readable), for a state that turns
    /// out unusable: then nothing its header says is trusted.
    pub group: i64,
}

impl Restore {
    /// What a partition starts from, given its handed-over state and the group's committed
    /// offset (None: nothing committed, or not readable).
    pub fn new(state: Option<PartitionState>, committed: Option<i64>) -> Restore {
        let delivered = state.as_ref().map_or(-1, |s| s.delivered);
        let group = committed.unwrap_or(-1);
        Restore {
            committed: group.max(delivered),
            group,
            state,
        }
    }

    /// [`Restore::new`] from a state read back from the state topic: one whose header the key
    /// does not vouch for is not used, so reading starts at the group's committed offset and
    /// no offset a forged header names is skipped.
    pub fn vouched(
        state: Option<PartitionState>,
        committed: Option<i64>,
        key: Option<&SealKey>,
        owner: Owner<'_>,
    ) -> Restore {
        let state = state.filter(|s| match s.check(key, owner) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(partition = owner.partition, error = %e, "partition state not used; starting from the group's committed offset");
                false
            }
        });
        Restore::new(state, committed)
    }

    /// Where reading starts: where the state ends, else after what was delivered.
    pub fn start(&self) -> Offset {
        match &self.state {
            Some(s) => Offset::Offset(s.offset),
            None if self.committed >= 0 => Offset::Offset(self.committed),
            None => Offset::Beginning,
        }
    }
}

/// What the consumer's rebalance callbacks and the worker share.
#[derive(Default)]
pub struct Shared {
    /// Partitions revoked that the worker has yet to let go of: it writes their states as of
    /// its last delivered batch, then unassigns them ([`GroupContext::let_go`]).
    pub revoked: Mutex<Vec<i32>>,
    /// Wakes the worker to let revoked partitions go.
    pub revoking: tokio::sync::Notify,
    /// Set as the consumer closes: a revocation then lets partitions go at once (the worker
    /// wrote their states as it stopped).
    pub closing: std::sync::atomic::AtomicBool,
    /// Partitions assigned since the worker last looked, with what to start from.
    pub restores: Mutex<HashMap<i32, Restore>>,
    /// The partitions this instance owns now.
    pub owned: Mutex<std::collections::HashSet<i32>>,
    /// Bumped by every revocation and assignment: a message received before the latest was
    /// fetched under an assignment that is gone (its partition restarts from its restored
    /// state and is fetched again).
    pub generation: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// The assignment generation now.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether assigned partitions wait to be restored (a state of up to tens of megabytes).
    pub fn restoring(&self) -> bool {
        !lock(&self.restores).is_empty()
    }

    /// The partitions revoked since the last look, forgotten here (the caller lets them go).
    pub fn take_revoked(&self) -> Vec<i32> {
        std::mem::take(&mut *lock(&self.revoked))
    }

    /// Whether partition `p` is owned now.
    pub fn owns(&self, p: i32) -> bool {
        lock(&self.owned).contains(&p)
    }
}

/// The consumer's context: hands revocations to the worker (which writes their states and
/// lets them go), reads states on assignment.
pub struct GroupContext {
    shared: Arc<Shared>,
    store: StateStore,
    topic: String,
    /// The consumer group, whose states' headers the key vouches for.
    group: String,
    /// The key state is sealed with (with an HMAC secret).
    seal: Option<SealKey>,
    metrics: Metrics,
}

impl ClientContext for GroupContext {
    /// librdkafka's client errors (a broker down or unresolvable, all brokers down, ...):
    /// logged and counted; the client keeps reconnecting.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if topic_missing(&error) {
            // Waiting for the topic to be created is not an outage.
            self.metrics.source_errors.inc();
        } else {
            self.metrics.source_failed();
        }
        tracing::warn!(error = %error, reason, "Kafka client error; reconnecting");
    }

    fn stats(&self, stats: Statistics) {
        // A broker connection is up: the source works again (an idle topic sends nothing
        // else that would say so).
        let up = stats
            .brokers
            .values()
            .any(|b| b.state == "UP" && !matches!(b.source.as_str(), "internal" | "logical"));
        if up {
            self.metrics.source_ok();
        }
        let Some(topic) = stats.topics.get(&self.topic) else {
            return;
        };
        for (id, p) in &topic.partitions {
            if *id >= 0 && p.consumer_lag >= 0 {
                let label = id.to_string();
                self.metrics
                    .kafka_lag
                    .with_label_values(&[&label])
                    .set(p.consumer_lag);
            }
        }
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: rdkafka::types::RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        use rdkafka::types::RDKafkaRespErr::*;
        match err {
            RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, tpl),
            other => {
                tracing::error!(error = ?other, "rebalance failed");
                let _ = consumer.unassign();
            }
        }
    }
}

impl GroupContext {
    /// Counts a rebalance of `kind`, starts a new assignment generation (messages received
    /// before it are stale) and returns the events topic's partitions in `tpl`.
    fn rebalanced(&self, kind: &str, tpl: &TopicPartitionList) -> Vec<i32> {
        self.metrics
            .kafka_rebalances
            .with_label_values(&[kind])
            .inc();
        self.shared
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.partitions(tpl)
    }

    fn partitions(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect()
    }

    /// Hands the partitions taken away to the worker, which writes their states exactly as of
    /// its last delivered batch and then lets them go: librdkafka holds the rebalance until
    /// they are unassigned. (Serialising every partition's state ahead of time, in case of a
    /// revocation, cost a state's worth of CPU, up to tens of megabytes, every few seconds.)
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let revoked = self.rebalanced("revoke", tpl);
        if self
            .shared
            .closing
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            self.let_go(consumer, &revoked, &[]);
            return;
        }
        lock(&self.shared.revoked).extend(revoked);
        self.shared.revoking.notify_one();
    }

    /// Writes revoked partitions' states (their offsets were committed just before) and lets the
    /// partitions go.
    pub fn let_go<C: Consumer<GroupContext>>(
        &self,
        consumer: &C,
        revoked: &[i32],
        states: &[(i32, PartitionState)],
    ) {
        if let Err(e) = self.store.write(states) {
            tracing::error!(error = %e, "writing partition state on revocation failed; the next owner starts from an older snapshot");
        }
        lock(&self.shared.restores).retain(|p, _| !revoked.contains(p));
        lock(&self.shared.owned).retain(|p| !revoked.contains(p));
        tracing::info!(partitions = ?revoked, states_written = states.len(), "partitions revoked");
        let _ = consumer.unassign();
    }

    /// Restores the state of newly assigned partitions and starts each where its state ends.
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let assigned = self.rebalanced("assign", tpl);
        let committed: HashMap<i32, i64> = match consumer
            .committed_offsets(tpl.clone(), REBALANCE_TIMEOUT)
        {
            Ok(c) => c
                .elements_for_topic(&self.topic)
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "reading committed offsets failed; starting from the handed-over states alone");
                HashMap::new()
            }
        };
        let mut states = match self.store.read(&assigned) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "reading partition state failed; starting without it");
                HashMap::new()
            }
        };
        let handed_over = states.len();
        let mut restores = lock(&self.shared.restores);
        for &p in &assigned {
            let owner = Owner {
                group: &self.group,
                topic: &self.topic,
                partition: p,
            };
            let state = states.remove(&p);
            let restore =
                Restore::vouched(state, committed.get(&p).copied(), self.seal.as_ref(), owner);
            let _ = tpl.set_partition_offset(&self.topic, p, restore.start());
            restores.insert(p, restore);
        }
        drop(restores);
        lock(&self.shared.owned).extend(assigned.iter().copied());
        tracing::info!(partitions = ?assigned, with_state = handed_over, "partitions assigned");
        if let Err(e) = consumer.assign(tpl) {
            tracing::error!(error = %e, "assigning partitions failed");
        }
    }
}

/// Locks shared partition bookkeeping, even after a panic elsewhere: it is plain data.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Properties only a group consumer takes (others would warn about them).
const GROUP_ONLY: &[&str] = &[
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "group.instance.id",
    "group.protocol",
    "partition.assignment.strategy",
    "auto.offset.reset",
    "isolation.level",
];

/// The base client settings: brokers, then the pass-through properties (TLS, SASL, ...);
/// group settings only for the group consumer.
fn client_config(config: &KafkaConfig, group_consumer: bool) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers);
    // Notice a topic created after start within seconds, not librdkafka's five minutes.
    c.set("topic.metadata.refresh.interval.ms", "5000");
    for (k, v) in &config.properties {
        if group_consumer || !GROUP_ONLY.contains(&k.as_str()) {
            c.set(k, v);
        }
    }
    c
}

/// Whether `e` says the events topic does not exist (yet).
pub fn topic_missing(e: &rdkafka::error::KafkaError) -> bool {
    e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition)
}

/// What a start-up probe of the brokers found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Brokers in the cluster's metadata.
    pub brokers: usize,
    /// Partitions of the events topic; 0 when it does not exist yet.
    pub partitions: usize,
}

/// Fetches the cluster's metadata for the events topic within `timeout` (blocking): whether
/// the brokers answer at all, with these settings (TLS, SASL).
pub fn probe(config: &KafkaConfig, timeout: Duration) -> KafkaResult<Probe> {
    let consumer: BaseConsumer = client_config(config, false).create()?;
    let meta = consumer.fetch_metadata(Some(&config.topic), timeout)?;
    let partitions = meta
        .topics()
        .iter()
        .filter(|t| t.name() == config.topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .sum();
    Ok(Probe {
        brokers: meta.brokers().len(),
        partitions,
    })
}

/// Creates the state topic (compacted) if it does not exist yet.
pub async fn ensure_state_topic(config: &KafkaConfig) -> KafkaResult<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        client_config(config, false).create()?;
    let topic = NewTopic::new(&config.state_topic, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact");
    let results = admin
        .create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(REBALANCE_TIMEOUT)),
        )
        .await?;
    for r in results {
        match r {
            Ok(_) => {
                tracing::info!(topic = %config.state_topic, "created the partition state topic")
            }
            Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                tracing::warn!(topic = %t, error = %code, "creating the state topic failed; create it (compacted) by hand")
            }
        }
    }
    Ok(())
}

/// The group's consumer on the events topic, sharing `shared` with its rebalance callbacks.
pub fn consumer(
    config: &KafkaConfig,
    shared: Arc<Shared>,
    seal: Option<SealKey>,
    metrics: Metrics,
) -> KafkaResult<StreamConsumer<GroupContext>> {
    let store = StateStore::new(config)?;
    let context = GroupContext {
        shared,
        store,
        topic: config.topic.clone(),
        group: config.group_id.clone(),
        seal,
        metrics,
    };
    let consumer: StreamConsumer<GroupContext> = client_config(config, true)
        .set("group.id", &config.group_id)
        // Offsets are committed by the worker, only once the alerts of their events are
        // confirmed by the sinks.
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set("statistics.interval.ms", "5000")
        .create_with_context(context)?;
    consumer.subscribe(&[&config.topic])?;
    Ok(consumer)
}

impl GroupContext {
    /// Writes the given states now (periodic snapshots and shutdown).
    pub fn write_states(&self, states: &[(i32, PartitionState)]) -> KafkaResult<()> {
        self.store.write(states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_state_round_trips_and_rejects_damage() {
        let s = PartitionState {
            offset: 42,
            delivered: 50,
            pipeline: b"TRAILWATCH-PIPELINE 1 ...".to_vec(),
            tag: Some([7; 32]),
        };
        let bytes = s.encode();
        assert_eq!(PartitionState::decode(&bytes).unwrap(), s);
        assert!(PartitionState::decode(b"TRAILWATCH-PARTITION 3 1\n").is_err());
        assert!(PartitionState::decode(b"TRAILWATCH-PARTITION 3 1 y\n").is_err());
        assert!(PartitionState::decode(b"TRAILWATCH-PARTITION 4 1 1\n").is_err());
        assert!(PartitionState::decode(b"TRAILWATCH-PARTITION 4 1 1 abc\n").is_err());
        let odd_tag = format!("TRAILWATCH-PARTITION 4 1 1 {}\n", "g".repeat(64));
        assert!(PartitionState::decode(odd_tag.as_bytes()).is_err());
        assert!(PartitionState::decode(b"TRAILWATCH-PARTITION 5 1 1 -\n").is_err());
        let v3 = PartitionState::decode(b"TRAILWATCH-PARTITION 3 4 6\nX").unwrap();
        assert_eq!((v3.offset, v3.delivered, v3.tag), (4, 6, None));
        assert!(PartitionState::decode(b"garbage").is_err());
        assert!(PartitionState::decode(b"TRAILWATCH-PARTITION 2 x\n").is_err());
        assert!(PartitionState::decode(b"TRAILWATCH-PARTITION 1 1 9\nabc").is_err());
    }

    #[test]
    fn a_version_1_partition_state_is_still_read() {
        let v1 = b"TRAILWATCH-PARTITION 1 7 5\nCORRS{\"open\":[]}";
        let s = PartitionState::decode(v1).unwrap();
        assert_eq!((s.offset, s.delivered), (7, 7));
        assert!(s.pipeline.starts_with(b"TRAILWATCH-PIPELINE 1 "));
        assert!(s.pipeline.ends_with(b"CORRS{\"open\":[]}\0\0\0\0\0\0\0\0"));
    }

    #[test]
    fn a_version_2_partition_state_delivered_up_to_its_offset() {
        let s = PartitionState::decode(b"TRAILWATCH-PARTITION 2 9\nX").unwrap();
        assert_eq!((s.offset, s.delivered, &s.pipeline[..]), (9, 9, &b"X"[..]));
    }

    /// A commit the group lost (or committed offsets that could not be read) does not make
    /// the next owner alert again on what the state's owner delivered.
    #[test]
    fn a_restore_replays_up_to_the_later_of_commit_and_delivery() {
        let state = |offset, delivered| PartitionState {
            offset,
            delivered,
            pipeline: Vec::new(),
            tag: None,
        };
        let r = Restore::new(Some(state(100, 180)), Some(150));
        assert_eq!(
            (r.start(), r.committed, r.group),
            (Offset::Offset(100), 180, 150)
        );
        let r = Restore::new(Some(state(100, 180)), None);
        assert_eq!((r.start(), r.committed), (Offset::Offset(100), 180));
        let r = Restore::new(Some(state(100, 100)), Some(150));
        assert_eq!((r.start(), r.committed), (Offset::Offset(100), 150));
        let r = Restore::new(None, Some(150));
        assert_eq!((r.start(), r.committed), (Offset::Offset(150), 150));
        let r = Restore::new(None, None);
        assert_eq!((r.start(), r.committed), (Offset::Beginning, -1));
    }

    const OWNER: Owner<'static> = Owner {
        group: "trailwatch",
        topic: "cloudtrail",
        partition: 2,
    };

    fn test_key() -> SealKey {
        SealKey::derive(b"test-secret-0123456789abcdef")
    }

    /// A state of [`OWNER`]'s with a sealed body, vouched for by `key`.
    fn vouched_state(key: &SealKey, offset: i64, delivered: i64) -> PartitionState {
        let mut s = PartitionState {
            offset,
            delivered,
            pipeline: key.seal(b"TRAILWATCH-PIPELINE 2 ..."),
            tag: None,
        };
        s.vouch(Some(key), OWNER);
        s
    }

    /// With an HMAC secret, a header is trusted only as written by its partition's owner: a
    /// forged `delivered` beside a real sealed body would otherwise silence the partition.
    #[test]
    fn a_header_is_trusted_only_as_its_owner_vouched_for_it() {
        let (key, owner) = (test_key(), OWNER);
        let s = vouched_state(&key, 100, 120);
        let s = PartitionState::decode(&s.encode()).unwrap();
        assert_eq!(s.check(Some(&key), owner), Ok(()));
        assert_eq!(
            s.check(None, owner),
            Ok(()),
            "nothing is authenticated without a secret"
        );

        let unvouched = Err(SealError::Unvouched);
        let forged = PartitionState {
            delivered: 1_000_000,
            ..s.clone()
        };
        assert_eq!(forged.check(Some(&key), owner), unvouched);
        let moved = PartitionState {
            offset: 90,
            ..s.clone()
        };
        assert_eq!(moved.check(Some(&key), owner), unvouched);
        let other_body = PartitionState {
            pipeline: key.seal(b"TRAILWATCH-PIPELINE 2 ..."),
            ..s.clone()
        };
        assert_eq!(other_body.check(Some(&key), owner), unvouched);
        for other in [
            Owner {
                partition: 3,
                ..owner
            },
            Owner {
                topic: "other",
                ..owner
            },
            Owner {
                group: "other",
                ..owner
            },
        ] {
            assert_eq!(s.check(Some(&key), other), unvouched, "{other:?}");
        }
        let other_key = SealKey::derive(b"another-secret-0123456789abc");
        assert_eq!(s.check(Some(&other_key), owner), unvouched);
        let older = PartitionState {
            tag: None,
            ..s.clone()
        };
        assert_eq!(
            older.check(Some(&key), owner),
            unvouched,
            "a version 3 header"
        );

        // A header moved on (a later `delivered`) is vouched for anew.
        let mut on = s.clone();
        on.delivered = 150;
        on.vouch(Some(&key), owner);
        assert_eq!(on.check(Some(&key), owner), Ok(()));
        assert_ne!(on.tag, s.tag);
    }

    /// A forged header must not move where reading starts: the offsets between the group's
    /// commit and a forged later offset would never be fetched, so never alert.
    #[test]
    fn an_unvouched_state_does_not_choose_where_reading_starts() {
        let (key, owner) = (test_key(), OWNER);
        let real = vouched_state(&key, 100, 100);
        let forged = PartitionState {
            offset: 5_000,
            delivered: 5_000,
            ..real.clone()
        };
        let r = Restore::vouched(Some(forged.clone()), Some(150), Some(&key), owner);
        assert!(r.state.is_none());
        assert_eq!((r.start(), r.committed), (Offset::Offset(150), 150));
        let r = Restore::vouched(Some(real.clone()), Some(150), Some(&key), owner);
        assert_eq!((r.start(), r.committed), (Offset::Offset(100), 150));
        assert_eq!(r.state, Some(real));
        // Without a secret nothing is authenticated, as before.
        let r = Restore::vouched(Some(forged), Some(150), None, owner);
        assert_eq!(r.start(), Offset::Offset(5_000));
    }

    proptest::proptest! {
        /// Whatever the state topic holds (a foreign record, a cut or forged header), decoding
        /// returns a state or an error, never a panic; what encode writes reads back as itself.
        #[test]
        fn any_bytes_decode_or_fail_and_states_round_trip(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            header in "TRAILWATCH-PARTITION [0-9]{1,2}( -?[0-9]{1,20}){0,3}( -| [0-9a-f]{64})?\n",
            offset in proptest::prelude::any::<i64>(),
            delivered in proptest::prelude::any::<i64>(),
            tag in proptest::option::of(proptest::prelude::any::<[u8; 32]>()),
        ) {
            let _ = PartitionState::decode(&bytes);
            let _ = PartitionState::decode(&[header.as_bytes(), &bytes].concat());
            let s = PartitionState { offset, delivered, pipeline: bytes, tag };
            proptest::prop_assert_eq!(PartitionState::decode(&s.encode()), Ok(s));
        }
    }
}
