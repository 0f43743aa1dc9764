//! `trailwatch run` on a Kafka consumer group: per-partition correlation and suppression state,
//! offsets stored only after the alerts of their events are delivered, state handed over
//! through the state topic on rebalances (see `source::kafka`).

use super::report::Reported;
use super::worker::{observe_latency, Sinks};
use super::RunError;
use super::{Drive, Next, Prepared};
use crate::alert::{Alert, SummaryFields};
use crate::config::KafkaConfig;
use crate::engine::RuleSet;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, Settings};
use crate::source::kafka::{self, lock, Owner, PartitionState, Restore, Shared};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// One owned partition's pipeline.
struct Part<'s> {
    pipeline: Pipeline<'s>,
    reported: Reported,
    /// Alerts of events before this offset were delivered by a previous owner.
    replay_until: i64,
    /// The next offset to process; earlier ones (a refetch after a rebalance) are skipped.
    next: i64,
    /// The offset last committed for it (at the start, the later of the group's and where
    /// delivery resumes).
    committed: i64,
}

/// How long the offsets of batches that delivered nothing may wait for their commit. Read again
/// after a crash, such events rebuild the same state and deliver nothing again (but for what
/// the wall clock moved, docs/RELIABILITY.md), so committing them at once buys no exactness;
/// with small batches (a low fetch wait, or a broker that answers fetches as data arrives) a
/// commit a batch was a third of the live path's CPU.
const COMMIT_EVERY: Duration = Duration::from_secs(1);

/// Runs the Kafka source until a stop signal; accepted rule reloads take over between
/// batches, each partition's state carried over (as on a rebalance).
pub(super) async fn serve(
    ctx: &Drive<'_>,
    kafka_config: &KafkaConfig,
    mut prepared: Prepared,
    locator: Option<Arc<dyn crate::geo::Locate>>,
    mut stop: watch::Receiver<bool>,
    mut reload: mpsc::Receiver<&'static str>,
) -> Result<(), RunError> {
    kafka::ensure_state_topic(kafka_config)
        .await
        .map_err(|source| RunError::Kafka {
            what: "creating the partition state topic",
            source,
        })?;
    let shared = Arc::new(Shared::default());
    // The rebalance callback checks handed-over headers with the pipelines' sealing key.
    let seal = (prepared.summaries.hmac_key()).map(crate::pipeline::seal::SealKey::derive);
    let consumer = kafka::consumer(kafka_config, shared.clone(), seal, ctx.metrics.clone())
        .map_err(|source| RunError::Kafka {
            what: "creating the Kafka consumer",
            source,
        })?;
    // Dropped before the consumer, however this returns (a panic, an abort at the shutdown
    // timeout): closing waits for revoked partitions to be let go, and no worker is left to.
    let _closing = Closing {
        consumer: &consumer,
        shared: &shared,
    };
    ctx.metrics.set_ready(true);
    tracing::info!(topic = %kafka_config.topic, group = %kafka_config.group_id, "consuming");
    let mut events = 0;
    loop {
        let next = {
            let mut worker = KafkaWorker::new(
                &prepared,
                shared.clone(),
                ctx,
                kafka_config,
                locator.clone(),
            );
            worker.events = events;
            match worker
                .run(&consumer, ctx, kafka_config, &mut stop, &mut reload)
                .await
            {
                Next::Stop => {
                    // The state as of the delivered offsets goes to the state topic, and dropping
                    // the consumer leaves the group (handing partitions over).
                    worker.let_go_revoked(&consumer);
                    worker.commit(None, &consumer);
                    worker.write_states(&consumer);
                    tracing::info!(events = worker.events, "stopped");
                    return Ok(());
                }
                Next::Reload(p) => {
                    events = worker.events;
                    worker.let_go_revoked(&consumer);
                    worker.commit(None, &consumer);
                    worker.hand_over();
                    ctx.archive_rules("reload", &p).await;
                    *p
                }
            }
        };
        prepared = next;
    }
}

impl Part<'_> {
    /// The state as of the next offset, everything before which was delivered.
    fn state(&self, owner: Owner<'_>) -> PartitionState {
        let mut state = PartitionState {
            offset: self.next,
            delivered: self.delivered(),
            pipeline: self.pipeline.snapshot(),
            tag: None,
        };
        state.vouch(self.pipeline.seal_key(), owner);
        state
    }

    /// Alerts of events before this offset were delivered, here or by a previous owner.
    fn delivered(&self) -> i64 {
        self.next.max(self.replay_until)
    }
}

struct KafkaWorker<'s> {
    set: &'s RuleSet,
    /// The rule set's hash, for the archive's batch records.
    rules_hash: &'s str,
    summaries: SummaryFields,
    settings: Settings,
    parts: HashMap<i32, Part<'s>>,
    shared: Arc<Shared>,
    snapshot_interval: i64,
    locator: Option<Arc<dyn crate::geo::Locate>>,
    metrics: Metrics,
    topic: String,
    /// The consumer group, whose partitions' states these are.
    group: String,
    events: u64,
    /// Messages that did not decode (whole or in part), for the archive's batch records.
    unreadable: u64,
    /// Whether batches are archived (pipelines count events by hour for it).
    archiving: bool,
    /// When offsets were last committed.
    committed_at: Instant,
    /// Whether the last commit failed (tried again with the next batch).
    commit_failed: bool,
}

impl<'s> KafkaWorker<'s> {
    fn new(
        prepared: &'s Prepared,
        shared: Arc<Shared>,
        ctx: &Drive<'_>,
        kafka_config: &KafkaConfig,
        locator: Option<Arc<dyn crate::geo::Locate>>,
    ) -> Self {
        let set = &prepared.set;
        ctx.metrics
            .rules_loaded
            .set((set.rules().len() + set.correlations().len()) as i64);
        KafkaWorker {
            set,
            rules_hash: &prepared.id.hash,
            summaries: prepared.summaries.clone(),
            settings: ctx.config.pipeline_settings(kafka_config.max_body_bytes),
            parts: HashMap::new(),
            shared,
            snapshot_interval: ctx.config.snapshot_interval(),
            locator,
            metrics: ctx.metrics.clone(),
            topic: kafka_config.topic.clone(),
            group: kafka_config.group_id.clone(),
            events: 0,
            unreadable: 0,
            archiving: ctx.config.sink.archive.is_some(),
            committed_at: Instant::now(),
            commit_failed: false,
        }
    }

    /// Receives and processes batches until a stop signal or an accepted rule reload.
    async fn run(
        &mut self,
        consumer: &rdkafka::consumer::StreamConsumer<kafka::GroupContext>,
        ctx: &Drive<'_>,
        kafka_config: &KafkaConfig,
        stop: &mut watch::Receiver<bool>,
        reload: &mut mpsc::Receiver<&'static str>,
    ) -> Next {
        let every = Duration::from_secs(self.snapshot_interval.max(1) as u64);
        let mut tick = tokio::time::interval(every);
        let mut quiet = tokio::time::interval(super::QUIET_CHECK);
        loop {
            self.let_go_revoked(consumer);
            let first = tokio::select! {
                m = consumer.recv() => m.map(|m| (m, self.shared.generation())),
                _ = self.shared.revoking.notified() => continue,
                // Each branch lets revoked partitions go first: the group waits for that.
                _ = tick.tick() => {
                    self.let_go_revoked(consumer);
                    self.write_states(consumer);
                    continue;
                }
                _ = quiet.tick() => {
                    self.let_go_revoked(consumer);
                    self.tick(ctx.out, consumer).await;
                    continue;
                }
                _ = stop.changed() => return Next::Stop,
                Some(why) = reload.recv() => {
                    self.let_go_revoked(consumer);
                    match ctx.try_reload(why, reload).await {
                        Some(p) => return Next::Reload(p),
                        None => continue,
                    }
                }
            };
            let mut batch = Vec::new();
            match first {
                Ok(m) => {
                    ctx.metrics.source_ok();
                    batch.push(m)
                }
                Err(e) => {
                    if kafka::topic_missing(&e) {
                        ctx.metrics.source_errors.inc();
                    } else {
                        ctx.metrics.source_failed();
                    }
                    tracing::warn!(error = %e, "receiving from Kafka failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = stop.changed() => return Next::Stop,
                    }
                    continue;
                }
            }
            // Fill the batch from what is already fetched, without waiting for more (a fetched
            // message is ready at the first poll).
            while batch.len() < kafka_config.max_batch {
                match ready_now(consumer.recv()).await {
                    Some(Ok(m)) => batch.push((m, self.shared.generation())),
                    _ => break,
                }
            }
            // A rebalance while the batch filled (inside a receive) makes what came before it
            // stale: a revoked partition is handed over as of the last batch, and its next owner
            // reads these offsets again. Processed here too, they would alert twice.
            let now = self.shared.generation();
            // Messages stay in librdkafka's buffers (valid after a revocation too) until the
            // batch is done: copying each out cost a seventh of the live path's CPU.
            let batch: Vec<BorrowedMessage<'_>> = batch
                .into_iter()
                .filter_map(|(m, g)| (g == now).then_some(m))
                .collect();
            if batch.is_empty() {
                continue;
            }
            self.batch(batch, ctx.out, consumer).await;
        }
    }

    /// Closes what idle partitions' wall clocks have passed and delivers it, and commits what
    /// waits for its commit. (A next owner takes the state as of the last batch on a
    /// revocation, these windows closed; after a crash, one restoring an older snapshot may
    /// close them again.)
    async fn tick(
        &mut self,
        sinks: &Sinks,
        consumer: &rdkafka::consumer::StreamConsumer<kafka::GroupContext>,
    ) {
        self.take_restores();
        let mut alerts = Vec::new();
        super::compute(|| {
            for part in self.parts.values_mut() {
                part.pipeline.tick(&mut alerts);
            }
        });
        if alerts.is_empty() {
            if self.commit_due() {
                self.commit(None, consumer);
            }
            return;
        }
        sinks.deliver(&alerts, &self.metrics).await;
        observe_latency(&self.metrics, &alerts);
        for part in self.parts.values_mut() {
            let _ = part.pipeline.confirm();
            part.reported
                .report(self.set, &part.pipeline, &self.metrics);
        }
        // These windows may hold events of batches whose commit waits.
        self.commit(None, consumer);
        self.metrics.alerts_published.inc_by(alerts.len() as u64);
    }

    /// Writes the states of the partitions revoked since the last look, exactly as of the last
    /// delivered batch, and lets the partitions go.
    fn let_go_revoked(
        &mut self,
        consumer: &rdkafka::consumer::StreamConsumer<kafka::GroupContext>,
    ) {
        let revoked = self.shared.take_revoked();
        if revoked.is_empty() {
            return;
        }
        // The group holds the rebalance until these are let go, so the commit still counts.
        self.commit(Some(&revoked), consumer);
        super::compute(|| {
            let states: Vec<(i32, PartitionState)> = (revoked.iter())
                .filter_map(|p| {
                    let part = self.parts.get(p)?;
                    Some((*p, part.state(owner(&self.group, &self.topic, *p))))
                })
                .collect();
            consumer.context().let_go(consumer, &revoked, &states);
        });
        for p in revoked {
            self.drop_part(p);
        }
    }

    /// Leaves each partition's state for the next rule set's worker, as a rebalance would.
    fn hand_over(self) {
        let mut restores = lock(&self.shared.restores);
        for (p, mut part) in self.parts {
            part.reported.retire(&self.metrics);
            // A pending assignment is newer than what this worker holds.
            let owner = owner(&self.group, &self.topic, p);
            restores
                .entry(p)
                .or_insert_with(|| Restore::new(Some(part.state(owner)), None));
        }
    }

    /// Processes one batch: alerts delivered first, then the partitions' remembered ids
    /// confirmed and, when it delivered anything (or the last commit is a second old), their
    /// offsets committed.
    async fn batch(
        &mut self,
        batch: Vec<BorrowedMessage<'_>>,
        sinks: &Sinks,
        consumer: &rdkafka::consumer::StreamConsumer<kafka::GroupContext>,
    ) {
        let started = Instant::now();
        self.metrics.messages_received.inc_by(batch.len() as u64);
        self.metrics.source_lag.set(oldest_age(&batch));
        let mut alerts = Vec::new();
        let mut touched = Vec::new();
        let (before, unreadable) = (self.events, self.unreadable);
        // Restoring a handed-over state is no small work, however small the batch.
        let bytes = if self.shared.restoring() {
            usize::MAX
        } else {
            batch.iter().map(|m| m.payload_len()).sum()
        };
        super::compute_on(bytes, || {
            for msg in &batch {
                if self.message(msg, &mut alerts) && !touched.contains(&msg.partition()) {
                    touched.push(msg.partition());
                }
            }
        });
        let delivers = !alerts.is_empty() || sinks.archive.is_some();
        let record = sinks.archive.as_ref().map(|_| {
            self.record(
                &batch,
                &touched,
                (self.events - before, self.unreadable - unreadable),
                alerts.len(),
            )
        });
        sinks.deliver_with(&alerts, record, &self.metrics).await;
        observe_latency(&self.metrics, &alerts);
        self.confirm(&touched);
        // Delivered alerts (or an archived record) must not be delivered again after a crash.
        if delivers || self.commit_due() {
            self.commit(None, consumer);
        }
        // Counted after their commit: a scrape that shows them published shows it made (or
        // failed, and counted as a source error).
        self.metrics.alerts_published.inc_by(alerts.len() as u64);
        self.metrics
            .sink_latency
            .observe(started.elapsed().as_secs_f64());
    }

    /// The archive's record of a batch: offset ranges of the partitions it advanced, events,
    /// and the events by account and region.
    fn record(
        &mut self,
        batch: &[BorrowedMessage<'_>],
        touched: &[i32],
        (events, unreadable): (u64, u64),
        alerts: usize,
    ) -> Vec<u8> {
        let mut range = Vec::new();
        let mut coverage = Vec::new();
        for p in touched {
            let offsets = batch
                .iter()
                .filter(|m| m.partition() == *p)
                .map(|m| m.offset());
            let (lo, hi) = offsets.fold((i64::MAX, i64::MIN), |(lo, hi), o| (lo.min(o), hi.max(o)));
            range.push(format!("{p}:{lo}-{hi}"));
            if let Some(part) = self.parts.get_mut(p) {
                coverage.extend(part.pipeline.take_hours());
            }
        }
        crate::sink::archive::Record::Batch {
            at: crate::sink::archive::object::now_rfc3339(),
            source: "kafka",
            from: &self.topic,
            range,
            events,
            unreadable,
            rules: self.rules_hash,
            coverage,
            alerts,
        }
        .to_bytes()
    }

    /// Evaluates one message of an owned partition; false if it was skipped.
    fn message(&mut self, msg: &BorrowedMessage<'_>, alerts: &mut Vec<Alert>) -> bool {
        let p = msg.partition();
        if !self.shared.owns(p) {
            self.drop_part(p);
            return false; // revoked while buffered: its new owner reads it
        }
        self.take_restore(p);
        let Some(part) = self.parts.get_mut(&p) else {
            return false; // not ours (any more): its new owner reads it
        };
        if msg.offset() < part.next {
            return false;
        }
        part.next = msg.offset() + 1;
        let replaying = msg.offset() < part.replay_until;
        let mut out = Vec::new();
        let before = part.pipeline.stats().events;
        let payload = msg.payload().unwrap_or_default();
        let decoded = part.pipeline.decode(payload, &mut out);
        self.events += part.pipeline.stats().events - before;
        let bad = match decoded {
            Ok(0) => None,
            Ok(_) => Some("bad record"),
            Err(e) => Some(e.kind()),
        };
        if let Some(kind) = bad {
            self.unreadable += 1;
            tracing::warn!(
                partition = p,
                offset = msg.offset(),
                reason = kind,
                "undecodable record skipped"
            );
        }
        if replaying {
            // Delivered (and archived) by the partition's previous owner before it committed
            // this offset.
            self.metrics.alerts_deduplicated.inc_by(out.len() as u64);
            part.pipeline.take_hours();
        } else {
            alerts.append(&mut out);
        }
        true
    }

    /// Starts a newly assigned partition from the state its previous owner handed over.
    fn take_restore(&mut self, p: i32) {
        let Some(restore) = self
            .shared
            .restores
            .lock()
            .ok()
            .and_then(|mut r| r.remove(&p))
        else {
            return;
        };
        let (group, start) = (restore.group, restore.state.as_ref().map(|s| s.offset));
        match self.part_from(restore) {
            Ok(part) => {
                self.drop_part(p);
                self.parts.insert(p, part);
            }
            Err(e) => {
                tracing::error!(partition = p, error = %format!("{e:#}"), "partition state unusable; starting the partition without it");
                // A state that does not open vouches for nothing in its header either: what the
                // group committed was delivered, and the events before it that reading starts
                // at replay without alerting, rebuilding what state they can.
                let fresh = self.part_from(Restore::new(None, Some(group)));
                if let Ok(mut part) = fresh {
                    if let Some(start) = start.filter(|s| *s >= 0) {
                        part.next = part.next.min(start);
                    }
                    self.drop_part(p);
                    self.parts.insert(p, part);
                }
            }
        }
    }

    /// Starts every partition assigned since the last batch from what was handed over, so
    /// that no wall-clock tick closes the windows of the state it held before.
    fn take_restores(&mut self) {
        let pending: Vec<i32> = lock(&self.shared.restores).keys().copied().collect();
        for p in pending {
            self.take_restore(p);
        }
    }

    /// Forgets a partition this instance no longer owns (or is about to restore anew).
    fn drop_part(&mut self, p: i32) {
        if let Some(mut part) = self.parts.remove(&p) {
            part.reported.retire(&self.metrics);
        }
    }

    fn part_from(&self, restore: Restore) -> Result<Part<'s>, crate::pipeline::StateError> {
        let mut pipeline = Pipeline::new(
            self.set,
            Some(self.summaries.clone()),
            &self.settings,
            self.locator.clone(),
        );
        if self.archiving {
            pipeline.count_hours();
        }
        let mut next = restore.committed.max(0);
        if let Some(s) = &restore.state {
            // Headers from the state topic were checked on assignment (`Restore::vouched`);
            // a hand-over on reload is this worker's own.
            pipeline.restore(&s.pipeline)?;
            next = s.offset;
        }
        let mut part = Part {
            pipeline,
            reported: Reported::default(),
            replay_until: restore.committed,
            next,
            committed: restore.group,
        };
        // Nothing to commit before progress: the group's offset may be unknown (-1: none, or
        // not readable), and committing an older state's offset would move it back.
        part.committed = part.committed.max(part.delivered());
        Ok(part)
    }

    /// Whether progress that delivered nothing is to be committed now.
    fn commit_due(&self) -> bool {
        self.commit_failed || self.committed_at.elapsed() >= COMMIT_EVERY
    }

    /// Confirms the remembered ids of the partitions a delivered batch touched.
    fn confirm(&mut self, touched: &[i32]) {
        for p in touched {
            let Some(part) = self.parts.get_mut(p) else {
                continue;
            };
            // Handled ids are in memory: a new owner rebuilds them by replaying the gap.
            let _ = part.pipeline.confirm();
            part.reported
                .report(self.set, &part.pipeline, &self.metrics);
        }
    }

    /// Commits the offsets delivered since the last commit, of the partitions in `only` or of
    /// all. Not on librdkafka's auto-commit timer: after a crash the next owner takes the
    /// alerts of everything up to here as delivered, so a commit follows every delivery.
    fn commit(
        &mut self,
        only: Option<&[i32]>,
        consumer: &rdkafka::consumer::StreamConsumer<kafka::GroupContext>,
    ) {
        let mut tpl = TopicPartitionList::new();
        let mut sent = Vec::new();
        for (p, part) in &self.parts {
            // Never behind what the previous owner committed: while this owner replays that
            // gap, a lower commit would make the next owner (after another rebalance) publish
            // the gap's alerts again.
            let delivered = part.delivered();
            if delivered > part.committed && only.is_none_or(|o| o.contains(p)) {
                let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(delivered));
                sent.push((*p, delivered));
            }
        }
        if sent.is_empty() {
            return;
        }
        let result = consumer.commit(&tpl, CommitMode::Sync);
        self.commit_failed = result.is_err();
        match result {
            Ok(()) => {
                self.committed_at = Instant::now();
                self.metrics.kafka_commits.inc();
                for (p, offset) in sent {
                    if let Some(part) = self.parts.get_mut(&p) {
                        part.committed = offset;
                    }
                }
            }
            Err(e) => {
                self.metrics.source_failed();
                tracing::warn!(error = %e, "committing offsets failed; these events may be read again and their alerts repeated");
            }
        }
    }

    /// Writes every owned partition's state, as of its last delivered batch, to the state topic
    /// (periodically and at shutdown).
    fn write_states(&self, consumer: &rdkafka::consumer::StreamConsumer<kafka::GroupContext>) {
        let written = super::compute(|| {
            let states: Vec<(i32, PartitionState)> = (self.parts.iter())
                .filter(|(p, _)| self.shared.owns(**p))
                .map(|(p, part)| (*p, part.state(owner(&self.group, &self.topic, *p))))
                .collect();
            (!states.is_empty()).then(|| consumer.context().write_states(&states))
        });
        match written {
            Some(Ok(())) => self.metrics.snapshots.inc(),
            Some(Err(e)) => tracing::warn!(error = %e, "writing partition state failed"),
            None => {}
        }
    }
}

/// Lets go, as the consumer closes, of what the worker can no longer hand over: from then on a
/// revocation lets partitions go at once (their states were written as the worker stopped, or,
/// after a failure, the next owner restores the last periodic one).
struct Closing<'a> {
    consumer: &'a rdkafka::consumer::StreamConsumer<kafka::GroupContext>,
    shared: &'a Shared,
}

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        (self.shared.closing).store(true, std::sync::atomic::Ordering::SeqCst);
        let revoked = self.shared.take_revoked();
        if !revoked.is_empty() {
            self.consumer.context().let_go(self.consumer, &revoked, &[]);
        }
    }
}

/// `f`'s output if it is ready at its first poll; `None` without waiting (or arming a timer,
/// as a zero timeout would for every message of a batch).
async fn ready_now<F: std::future::Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    use std::task::Poll;
    std::future::poll_fn(|cx| match f.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Whose partition `partition` is, for vouching for its state.
fn owner<'a>(group: &'a str, topic: &'a str, partition: i32) -> Owner<'a> {
    Owner {
        group,
        topic,
        partition,
    }
}

/// Seconds the oldest message of a batch waited since it was produced (0 without timestamps).
fn oldest_age(batch: &[BorrowedMessage<'_>]) -> f64 {
    crate::metrics::oldest_age_seconds(batch.iter().filter_map(|m| m.timestamp().to_millis()))
}
