//! Kafka source: a consumer-group member reading one or more topics with `rdkafka`.
//!
//! Offsets are never auto-committed: the pipeline tells the source which positions a
//! written checkpoint covers ([`Source::checkpointed`]) and only those are committed, so
//! a restart re-reads at most one checkpoint interval. On assignment, a partition whose
//! position a checkpoint holds starts exactly there (not at the group's offset, which
//! may lag the checkpoint by one commit). Each assigned partition is a pipeline
//! partition named `topic/partition`, with its own watermark.
//!
//! Config names follow Vector's Kafka source where they overlap.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use serde::Deserialize;

use crate::kafka::{SaslConfig, client_config, librdkafka_bool};
use crate::telemetry::{Counters, Lag};

use super::{Poll, Source, SourceError};
use crate::decode::{Oversized, PartitionId, RawBatch};

/// `source: {type: kafka, ...}`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `host:port,...`
    pub bootstrap_servers: String,
    /// Topic names; a name starting with `^` is a regular expression.
    pub topics: Vec<String>,
    pub group_id: String,
    /// Where a partition with no committed offset starts: `earliest` or `latest`.
    #[serde(default = "earliest")]
    pub auto_offset_reset: String,
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
    /// TLS to the brokers (CA, client certificate and key, verification), with or
    /// without `sasl`.
    #[serde(default)]
    pub tls: Option<crate::kafka::TlsConfig>,
    /// Extra librdkafka settings, passed through as they are, except those that would
    /// commit offsets behind the checkpoint's back or stop the consumer from taking its
    /// partitions (see [`KafkaSourceConfig::validate`]).
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
    /// Records per batch handed to the decoder.
    #[serde(default = "default_batch")]
    pub batch_records: usize,
}

impl KafkaSourceConfig {
    /// Refuses `librdkafka_options` that break the checkpoint guarantee (offsets are
    /// committed only once a checkpoint covers them) or the consumer itself.
    /// `auto.commit.interval.ms` and the like are left alone: without auto commit they
    /// do nothing.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(t) = &self.tls {
            t.validate("source")?;
        }
        let opts = &self.librdkafka_options;
        let refuse = |key: &str, why: &str| {
            Err(format!(
                "source.librdkafka_options: {key} = {:?} is refused: {why}; remove it",
                opts[key]
            ))
        };
        for (key, why) in [
            (
                "enable.auto.commit",
                "librdkafka would commit offsets of records no checkpoint covers yet, so a \
                 crash would skip them; inferwatch commits after each checkpoint itself",
            ),
            (
                "enable.auto.offset.store",
                "inferwatch commits the positions of its checkpoints, never the offsets \
                 librdkafka stores",
            ),
            (
                "enable.partition.eof",
                "the end of a partition would reach inferwatch as an error and stop the run",
            ),
        ] {
            if opts
                .get(key)
                .is_some_and(|v| librdkafka_bool(v) != Some(false))
            {
                return refuse(key, why);
            }
        }
        let incremental = "inferwatch takes its partitions with the eager rebalance \
                           protocol (assign), which librdkafka refuses under this setting, so \
                           no partition would ever be read";
        if opts
            .get("partition.assignment.strategy")
            .is_some_and(|v| v.to_ascii_lowercase().contains("cooperative"))
        {
            return refuse("partition.assignment.strategy", incremental);
        }
        if opts
            .get("group.protocol")
            .is_some_and(|v| !v.eq_ignore_ascii_case("classic"))
        {
            return refuse("group.protocol", incremental);
        }
        Ok(())
    }
}

fn earliest() -> String {
    "earliest".into()
}
fn default_batch() -> usize {
    8192
}

enum Change {
    Added(String, i32),
    Removed(String, i32),
}

/// Applies checkpoint positions on assignment, reports what changed, and keeps
/// errors that retrying cannot fix (wrong credentials).
struct Context {
    resume: Mutex<HashMap<(String, i32), i64>>,
    changes: Mutex<VecDeque<Change>>,
    fatal: Mutex<Option<String>>,
    /// Why no broker can be reached, while none can.
    down: Mutex<Option<String>>,
    counters: OnceLock<Arc<Counters>>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode::{Authentication, SaslAuthenticationFailed};
        match error.rdkafka_error_code() {
            Some(Authentication | SaslAuthenticationFailed) => {
                *self.fatal.lock().expect("fatal lock") = Some(format!(
                    "authentication failed ({reason}): check sasl.mechanism, username and password"
                ));
            }
            // Brokers that are down or restarting: librdkafka reconnects by itself.
            Some(rdkafka::types::RDKafkaErrorCode::AllBrokersDown) => {
                *self.down.lock().expect("down lock") =
                    Some(format!("no Kafka broker is reachable ({reason}); retrying"));
            }
            _ => tracing::warn!(error = %error, reason, "kafka"),
        }
    }

    /// librdkafka's statistics (every `statistics.interval.ms`): connected brokers and
    /// each assigned partition's lag.
    fn stats(&self, s: Statistics) {
        let up = s
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0 && b.state == "UP")
            .count() as u64;
        if up > 0 {
            *self.down.lock().expect("down lock") = None;
        }
        let Some(counters) = self.counters.get() else {
            return;
        };
        let mut lag = BTreeMap::new();
        for (topic, t) in &s.topics {
            for p in t.partitions.values() {
                // -1 = not assigned or not known yet.
                if p.partition < 0 || p.hi_offset < 0 || p.app_offset < 0 && p.committed_offset < 0
                {
                    continue;
                }
                let from = |o: i64| {
                    if o < 0 {
                        p.hi_offset
                    } else {
                        (p.hi_offset - o).max(0)
                    }
                };
                let read = if p.app_offset >= 0 {
                    from(p.app_offset)
                } else {
                    from(p.committed_offset)
                };
                lag.insert(
                    format!("{topic}/{}", p.partition),
                    Lag {
                        read,
                        committed: from(p.committed_offset),
                    },
                );
            }
        }
        counters.kafka_lag(lag, up);
    }
}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut changes = self.changes.lock().expect("changes lock");
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let resume = self.resume.lock().expect("resume lock");
                for e in tpl.elements() {
                    changes.push_back(Change::Added(e.topic().to_owned(), e.partition()));
                }
                let starts: Vec<(String, i32, i64)> = tpl
                    .elements()
                    .iter()
                    .filter_map(|e| {
                        let key = (e.topic().to_owned(), e.partition());
                        resume.get(&key).map(|&o| (key.0, key.1, o))
                    })
                    .collect();
                for (topic, partition, offset) in starts {
                    let _ = tpl.set_partition_offset(&topic, partition, Offset::Offset(offset));
                }
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!(error = %e, "kafka: cannot take the assigned partitions");
                }
            }
            _ => {
                for e in tpl.elements() {
                    changes.push_back(Change::Removed(e.topic().to_owned(), e.partition()));
                }
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "kafka: cannot give up revoked partitions");
                }
            }
        }
    }
}

pub struct KafkaSource {
    consumer: BaseConsumer<Context>,
    batch_records: usize,
    max_record_bytes: usize,
    parts: Assignments,
    pending: VecDeque<Poll>,
    bytes: u64,
    started: std::time::Instant,
    topics: Vec<String>,
    group: String,
    /// The positions of the last checkpoint, committed once more, synchronously, when
    /// the source goes away (an asynchronous commit may not have left yet).
    last_commit: Option<TopicPartitionList>,
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        if let Some(tpl) = self.last_commit.take()
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Sync)
        {
            tracing::warn!(error = %e, "kafka: final offset commit failed; a restart re-reads from the previous one");
        }
    }
}

/// Partition id of each assigned (topic, partition), and the name of every id.
#[derive(Default)]
struct Assignments {
    ids: HashMap<(String, i32), PartitionId>,
    names: Vec<String>,
}

impl Assignments {
    /// The id of an assigned partition, without allocating (called per message).
    fn find(&self, topic: &str, partition: i32) -> Option<PartitionId> {
        self.ids
            .iter()
            .find(|((t, p), _)| *p == partition && t == topic)
            .map(|(_, &pid)| pid)
    }

    /// Turns the rebalances the context saw into partition events.
    fn apply(&mut self, context: &Context, out: &mut VecDeque<Poll>) {
        let changes: Vec<Change> = context
            .changes
            .lock()
            .expect("changes lock")
            .drain(..)
            .collect();
        for change in changes {
            match change {
                Change::Added(topic, p) => {
                    let pid = self.names.len();
                    let name = format!("{topic}/{p}");
                    self.names.push(name.clone());
                    self.ids.insert((topic, p), pid);
                    out.push_back(Poll::Added(pid, name));
                }
                Change::Removed(topic, p) => {
                    if let Some(pid) = self.ids.remove(&(topic, p)) {
                        out.push_back(Poll::Removed(pid));
                    }
                }
            }
        }
    }
}

impl KafkaSource {
    pub fn new(c: &KafkaSourceConfig, max_record_bytes: usize) -> Result<Self, SourceError> {
        let mut cfg = client_config(&c.bootstrap_servers, c.sasl.as_ref(), c.tls.as_ref());
        cfg.set("group.id", &c.group_id)
            // Lag and broker connectivity come from librdkafka's statistics.
            .set("statistics.interval.ms", "1000")
            // librdkafka waits this long before fetching again once its local queue is
            // full; its default of 1 s stalled a busy consumer for most of each second
            // (bench/kafka.sh: 0.25 M/s consume-only with it, ~1 M/s with 10 ms).
            .set("fetch.queue.backoff.ms", "10")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", &c.auto_offset_reset)
            .set("enable.partition.eof", "false")
            .set(
                "message.max.bytes",
                (max_record_bytes.max(1 << 20) + 1024).to_string(),
            );
        for (k, v) in &c.librdkafka_options {
            cfg.set(k, v);
        }
        let context = Context {
            resume: Mutex::new(HashMap::new()),
            changes: Mutex::new(VecDeque::new()),
            fatal: Mutex::new(None),
            down: Mutex::new(None),
            counters: OnceLock::new(),
        };
        let consumer: BaseConsumer<Context> = cfg
            .create_with_context(context)
            .map_err(|e| SourceError::Kafka(format!("cannot create the consumer: {e}")))?;
        let topics: Vec<&str> = c.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| SourceError::Kafka(format!("cannot subscribe to {topics:?}: {e}")))?;
        Ok(Self {
            consumer,
            batch_records: c.batch_records.max(1),
            max_record_bytes,
            parts: Assignments::default(),
            pending: VecDeque::new(),
            bytes: 0,
            started: std::time::Instant::now(),
            topics: c.topics.clone(),
            group: c.group_id.clone(),
            last_commit: None,
        })
    }

    /// Reads up to one batch of messages, split by partition, into `pending`.
    fn fetch(&mut self) -> Result<(), SourceError> {
        let mut batches: BTreeMap<PartitionId, RawBatch> = BTreeMap::new();
        let mut n = 0;
        let mut timeout = Duration::from_millis(100);
        while n < self.batch_records {
            let Some(result) = self.consumer.poll(timeout) else {
                break;
            };
            timeout = Duration::ZERO;
            let msg = match result {
                Ok(m) => m,
                Err(KafkaError::MessageConsumption(code)) => {
                    tracing::warn!(%code, "kafka: consume error");
                    continue;
                }
                Err(e) => return Err(classify(e)),
            };
            let (topic, partition) = (msg.topic(), msg.partition());
            let pid = match self.parts.find(topic, partition) {
                Some(pid) => pid,
                None => {
                    self.parts.apply(self.consumer.context(), &mut self.pending);
                    match self.parts.find(topic, partition) {
                        Some(pid) => pid,
                        None => continue,
                    }
                }
            };
            let batch = batches.entry(pid).or_insert_with(|| RawBatch::new(pid));
            let offset = msg.offset().max(0) as u64;
            let payload = msg.payload().unwrap_or(&[]);
            self.bytes += payload.len() as u64;
            if payload.len() > self.max_record_bytes {
                batch.oversized.push(Oversized {
                    position: offset,
                    len: payload.len(),
                    head: payload[..256.min(payload.len())].to_vec(),
                });
            } else {
                batch.push(payload, offset);
            }
            batch.resume_at = offset + 1;
            n += 1;
        }
        self.parts.apply(self.consumer.context(), &mut self.pending);
        // A partition revoked and assigned back resumes after what was delivered.
        let mut resume = self.consumer.context().resume.lock().expect("resume lock");
        for b in batches.values() {
            if let Some(name) = self.parts.names.get(b.partition)
                && let Some((topic, p)) = name.rsplit_once('/')
                && let Ok(p) = p.parse::<i32>()
            {
                resume.insert((topic.to_owned(), p), b.resume_at as i64);
            }
        }
        drop(resume);
        self.pending.extend(batches.into_values().map(Poll::Batch));
        Ok(())
    }
}

/// Errors a user fixes in the config (auth, unknown broker) versus transient ones.
fn classify(e: KafkaError) -> SourceError {
    SourceError::Kafka(e.to_string())
}

impl Source for KafkaSource {
    fn partitions(&self) -> Vec<String> {
        Vec::new()
    }

    fn poll(&mut self) -> Result<Poll, SourceError> {
        if let Some(why) = self
            .consumer
            .context()
            .fatal
            .lock()
            .expect("fatal lock")
            .take()
        {
            return Err(SourceError::KafkaConfig(why));
        }
        if self.pending.is_empty() {
            self.parts.apply(self.consumer.context(), &mut self.pending);
        }
        if self.pending.is_empty() {
            self.fetch()?;
        }
        if let Some(p) = self.pending.pop_front() {
            return Ok(p);
        }
        if let Some(why) = self
            .consumer
            .context()
            .down
            .lock()
            .expect("down lock")
            .clone()
        {
            return Ok(Poll::Waiting(why));
        }
        // Joining the group is not idleness; a group that assigns nothing for a minute
        // (a topic with no partitions, a regex that matches nothing) is.
        if self.parts.names.is_empty() && self.started.elapsed() < Duration::from_secs(60) {
            return Ok(Poll::Waiting(format!(
                "no partition of {:?} assigned yet (joining group {})",
                self.topics, self.group
            )));
        }
        Ok(Poll::Idle)
    }

    fn bytes_read(&self) -> u64 {
        self.bytes
    }

    fn set_counters(&mut self, counters: Arc<Counters>) {
        let _ = self.consumer.context().counters.set(counters);
    }

    fn resume(&mut self, positions: &BTreeMap<String, u64>) -> Result<(), SourceError> {
        let mut resume = self.consumer.context().resume.lock().expect("resume lock");
        for (name, &pos) in positions {
            if let Some((topic, p)) = name.rsplit_once('/')
                && let Ok(p) = p.parse::<i32>()
            {
                resume.insert((topic.to_owned(), p), pos as i64);
            }
        }
        Ok(())
    }

    fn checkpointed(&mut self, positions: &BTreeMap<String, u64>) {
        let mut tpl = TopicPartitionList::new();
        for ((topic, p), pid) in &self.parts.ids {
            if let Some(&pos) = self.parts.names.get(*pid).and_then(|n| positions.get(n)) {
                let _ = tpl.add_partition_offset(topic, *p, Offset::Offset(pos as i64));
            }
        }
        if tpl.count() > 0
            && let Err(e) = self.consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::warn!(error = %e, "kafka: offset commit failed; the next checkpoint retries");
        }
        if tpl.count() > 0 {
            self.last_commit = Some(tpl);
        }
    }
}

/// Produces generated traffic to `topic`, keyed by client id (so one client's records
/// stay in one partition, in order). Returns the number of records sent.
pub fn produce(
    brokers: &str,
    topic: &str,
    generator: &mut crate::scenario::Generator,
) -> Result<u64, String> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "500000")
        .create()
        .map_err(|e| format!("cannot create a producer for {brokers}: {e}"))?;
    let mut line = Vec::with_capacity(512);
    let mut sent = 0u64;
    while generator.next_record(&mut line) {
        let key = generator.last_client().to_owned();
        loop {
            match producer.send(BaseRecord::to(topic).payload(&line).key(&key)) {
                Ok(()) => break,
                Err((
                    KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull),
                    _,
                )) => {
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(format!("cannot produce to {topic}: {e}")),
            }
        }
        sent += 1;
        line.clear();
        if sent.is_multiple_of(10_000) {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("cannot deliver every record to {topic}: {e}"))?;
    Ok(sent)
}
