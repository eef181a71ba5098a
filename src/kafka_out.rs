//! Writing to a Kafka topic without saying anything twice: the alerts topic and the
//! dead-letter topic.
//!
//! A Kafka topic cannot be truncated back to a checkpoint the way a file is. Instead,
//! every message carries an idempotency key header, the offsets this producer reached in
//! each partition go into the checkpoint (its cursor), and after a restart the messages
//! written past the checkpoint's cursor are read back: their keys are what the replay
//! after the checkpoint would say again, so those are skipped once. The producer is
//! idempotent (`enable.idempotence`), so its own retries never duplicate a message either.
//!
//! Sending is asynchronous; [`KafkaOut::flush`] waits until every message is acknowledged
//! by the broker (a broker that is down makes it wait, up to `message.timeout.ms`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use serde::Deserialize;

use crate::source::kafka::{SaslConfig, client_config};

/// Header holding a message's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency_key";

/// `alerts.kafka` and `dead_letter.kafka` in the config. Brokers and SASL default to
/// the Kafka source's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaOutConfig {
    pub topic: String,
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
    /// Extra librdkafka producer settings, passed through as they are.
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
}

/// Offsets acknowledged by the broker, and the first delivery failure.
#[derive(Default)]
struct Delivery {
    next: Mutex<BTreeMap<i32, i64>>,
    failed: Mutex<Option<String>>,
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                let mut next = self.next.lock().expect("delivery lock");
                let e = next.entry(m.partition()).or_insert(0);
                *e = (*e).max(m.offset() + 1);
            }
            Err((e, _)) => {
                let mut failed = self.failed.lock().expect("delivery lock");
                failed.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

pub struct KafkaOut {
    producer: BaseProducer<Delivery>,
    topic: String,
    /// Client settings, for reading the topic back on a restart.
    client: ClientConfig,
    /// Keys already in the topic past the restored cursor: not sent again.
    skip: HashSet<String>,
    unflushed: bool,
    flush_timeout: Duration,
}

fn io(what: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(what.to_string())
}

impl KafkaOut {
    /// Connects and learns where each partition of `topic` ends. The topic must exist.
    pub fn open(c: &KafkaOutConfig) -> Result<Self, String> {
        let brokers = c.bootstrap_servers.as_deref().ok_or_else(|| {
            format!(
                "topic {}: bootstrap_servers is required when the source is not Kafka",
                c.topic
            )
        })?;
        let mut client = client_config(brokers, c.sasl.as_ref());
        let mut cfg = client.clone();
        cfg.set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("compression.type", "lz4");
        for (k, v) in &c.librdkafka_options {
            cfg.set(k, v);
            client.set(k, v);
        }
        let message_timeout_ms: u64 = cfg
            .get("message.timeout.ms")
            .and_then(|v| v.parse().ok())
            .unwrap_or(300_000);
        let producer: BaseProducer<Delivery> = cfg
            .create_with_context(Delivery::default())
            .map_err(|e| format!("cannot create a producer for topic {}: {e}", c.topic))?;
        let out = Self {
            producer,
            topic: c.topic.clone(),
            client,
            skip: HashSet::new(),
            unflushed: false,
            flush_timeout: Duration::from_millis(message_timeout_ms + 5_000),
        };
        let ends = out.ends(Duration::from_secs(30))?;
        *out.producer.context().next.lock().expect("delivery lock") = ends;
        Ok(out)
    }

    /// The high watermark of every partition of the topic.
    fn ends(&self, timeout: Duration) -> Result<BTreeMap<i32, i64>, String> {
        let client = self.producer.client();
        let meta = client
            .fetch_metadata(Some(&self.topic), timeout)
            .map_err(|e| format!("cannot reach the brokers for topic {}: {e}", self.topic))?;
        let t = meta
            .topics()
            .first()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| {
                format!(
                    "topic {} does not exist: create it (kafka-topics.sh --create --topic {})",
                    self.topic, self.topic
                )
            })?;
        let mut ends = BTreeMap::new();
        for p in t.partitions() {
            let (_, high) = client
                .fetch_watermarks(&self.topic, p.id(), timeout)
                .map_err(|e| format!("cannot read the end of {}/{}: {e}", self.topic, p.id()))?;
            ends.insert(p.id(), high);
        }
        Ok(ends)
    }

    /// Queues one message unless a previous run already wrote its key.
    pub fn send(
        &mut self,
        key: Option<&str>,
        payload: &[u8],
        idempotency_key: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<()> {
        if self.skip.remove(idempotency_key) {
            return Ok(());
        }
        let mut hs = OwnedHeaders::new_with_capacity(headers.len() + 1).insert(Header {
            key: IDEMPOTENCY_HEADER,
            value: Some(idempotency_key),
        });
        for (k, v) in headers {
            hs = hs.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let mut record = BaseRecord::<str, [u8]>::to(&self.topic)
            .payload(payload)
            .headers(hs);
        if let Some(k) = key {
            record = record.key(k);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(io(format!("cannot produce to {}: {e}", self.topic))),
            }
        }
        self.unflushed = true;
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    /// Waits until the broker has acknowledged everything sent.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.unflushed {
            self.producer.flush(self.flush_timeout).map_err(|e| {
                io(format!(
                    "topic {}: not every message was delivered: {e}",
                    self.topic
                ))
            })?;
            self.unflushed = false;
        }
        match self
            .producer
            .context()
            .failed
            .lock()
            .expect("delivery lock")
            .take()
        {
            Some(e) => Err(io(format!("topic {}: delivery failed: {e}", self.topic))),
            None => Ok(()),
        }
    }

    /// Per partition, the offset after the last acknowledged message (after a flush).
    pub fn cursor(&mut self) -> std::io::Result<BTreeMap<i32, i64>> {
        self.flush()?;
        Ok(self
            .producer
            .context()
            .next
            .lock()
            .expect("delivery lock")
            .clone())
    }

    /// Reads what was written past `cursor` (a checkpoint's), so that a restart does not
    /// send it again. Partitions the cursor does not name are read from their start.
    pub fn rewind(&mut self, cursor: &BTreeMap<i32, i64>) -> std::io::Result<()> {
        let ends = self.ends(Duration::from_secs(30)).map_err(io)?;
        let mut cfg = self.client.clone();
        cfg.set("group.id", "driftwatch-readback")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        let consumer: BaseConsumer = cfg
            .create()
            .map_err(|e| io(format!("cannot read back topic {}: {e}", self.topic)))?;
        let mut tpl = TopicPartitionList::new();
        let mut left: BTreeMap<i32, i64> = BTreeMap::new();
        for (&p, &end) in &ends {
            let from = cursor.get(&p).copied().unwrap_or(0);
            if from < end {
                tpl.add_partition_offset(&self.topic, p, Offset::Offset(from))
                    .map_err(io)?;
                left.insert(p, end);
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        consumer.assign(&tpl).map_err(io)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !left.is_empty() {
            if Instant::now() > deadline {
                return Err(io(format!(
                    "topic {}: could not read back the messages written after the checkpoint within 60 s",
                    self.topic
                )));
            }
            let Some(m) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let m = m.map_err(io)?;
            if let Some(hs) = m.headers()
                && let Some(h) = hs.iter().find(|h| h.key == IDEMPOTENCY_HEADER)
                && let Some(v) = h.value
            {
                self.skip.insert(String::from_utf8_lossy(v).into_owned());
            }
            if left
                .get(&m.partition())
                .is_some_and(|&end| m.offset() + 1 >= end)
            {
                left.remove(&m.partition());
            }
        }
        let mut next = self.producer.context().next.lock().expect("delivery lock");
        for (p, end) in ends {
            let e = next.entry(p).or_insert(0);
            *e = (*e).max(end);
        }
        tracing::info!(topic = %self.topic, already_written = self.skip.len(), "read back the messages written after the checkpoint");
        Ok(())
    }

    /// Cursor entries named `<prefix>/<partition>` for a checkpoint.
    pub fn named_cursor(&mut self, prefix: &str) -> std::io::Result<Vec<(String, u64)>> {
        Ok(self
            .cursor()?
            .into_iter()
            .map(|(p, o)| (format!("{prefix}/{p}"), o.max(0) as u64))
            .collect())
    }

    /// [`Self::rewind`] from a checkpoint's cursor entries named `<prefix>/<partition>`;
    /// without any, nothing was checkpointed and nothing is skipped.
    pub fn rewind_named(
        &mut self,
        prefix: &str,
        cursors: &BTreeMap<String, u64>,
    ) -> std::io::Result<()> {
        let mine: BTreeMap<i32, i64> = cursors
            .iter()
            .filter_map(|(k, &v)| {
                let p = k.strip_prefix(prefix)?.strip_prefix('/')?.parse().ok()?;
                Some((p, v as i64))
            })
            .collect();
        if mine.is_empty() {
            return Ok(());
        }
        self.rewind(&mine)
    }
}
