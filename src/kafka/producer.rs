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
//!
//! A message librdkafka would refuse for its size (over the producer's
//! `message.max.bytes`, 1,000,000 by default: a dead letter up to
//! `decode.max_record_bytes`, an alert with huge labels) is sent truncated instead of
//! failing the run, which would fail again on every restart since the record that
//! caused it is never committed past: the payload is cut to fit, header values longer
//! than 1 KiB are cut too, and headers `truncated` (what was cut: `payload`, `headers`
//! or both), `original_size` and `original_sha256` (hex) describe the whole payload.
//! The first truncation of each topic is logged as a warning; all are counted
//! (`inferwatch_kafka_messages_truncated_total`).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
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
use sha2::{Digest, Sha256};

use super::{SaslConfig, client_config, librdkafka_bool};
use crate::telemetry::Counters;

/// Header holding a message's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency_key";
/// Header of a truncated message: what was cut (`payload`, `headers`, `payload,headers`).
pub const TRUNCATED_HEADER: &str = "truncated";
/// Header of a truncated message: the size in bytes of the whole payload.
pub const ORIGINAL_SIZE_HEADER: &str = "original_size";
/// Header of a truncated message: the SHA-256 (lowercase hex) of the whole payload.
pub const ORIGINAL_SHA256_HEADER: &str = "original_sha256";

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;
/// Header values longer than this are cut (a decoder's reason can quote a whole field).
const MAX_HEADER_VALUE: usize = 1024;
/// What librdkafka adds to a record's key, value and headers when it checks a message
/// against `message.max.bytes` (`RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`, librdkafka 2.12).
const RECORD_OVERHEAD: usize = 36;
/// Longest varint length prefix of a header name or value.
const VARINT_MAX: usize = 5;
/// Kept free beyond what librdkafka counts today, in case a later version counts a few
/// bytes more: the unit tests show the limit it enforces is exactly the count above.
const SLACK: usize = 64;

/// `alerts.kafka` and `dead_letter.kafka` in the config. Brokers and SASL default to
/// the Kafka source's.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KafkaOutConfig {
    pub topic: String,
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
    /// TLS to the brokers, as the source's `tls`.
    #[serde(default)]
    pub tls: Option<crate::kafka::TlsConfig>,
    /// Extra librdkafka producer settings, passed through as they are, except
    /// `enable.idempotence`, which must stay on. `message.max.bytes` (default
    /// 1,000,000) is also the size over which a message is sent truncated.
    #[serde(default)]
    pub librdkafka_options: BTreeMap<String, String>,
}

impl KafkaOutConfig {
    /// Refuses producer settings that would break what the outputs promise (`what`
    /// names the section, e.g. `dead_letter.kafka`).
    pub fn validate(&self, what: &str) -> Result<(), String> {
        if let Some(t) = &self.tls {
            t.validate(what)?;
        }
        let opts = &self.librdkafka_options;
        if let Some(v) = opts.get("enable.idempotence")
            && librdkafka_bool(v) != Some(true)
        {
            return Err(format!(
                "{what}.librdkafka_options: enable.idempotence = {v:?} is refused: the \
                 producer must be idempotent, or its retries can write a message twice; \
                 remove the setting"
            ));
        }
        if let Some(v) = opts.get("message.max.bytes")
            && v.trim().parse::<usize>().is_err()
        {
            return Err(format!(
                "{what}.librdkafka_options: message.max.bytes = {v:?} is not a whole \
                 number of bytes"
            ));
        }
        Ok(())
    }

    /// The producer's `message.max.bytes`: what librdkafka refuses to send beyond.
    fn message_max_bytes(&self) -> usize {
        self.librdkafka_options
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES)
    }
}

/// A message as it is produced: whole, or cut to fit `message.max.bytes`.
#[derive(Debug)]
pub(crate) struct Fitted<'a> {
    pub payload: &'a [u8],
    /// The caller's headers (values possibly cut), then the truncation headers if any.
    pub headers: Vec<(&'a str, Cow<'a, str>)>,
    /// What was cut, as in the `truncated` header; None when the message is whole.
    pub truncated: Option<&'static str>,
}

/// What librdkafka counts of headers: each name and value with a varint length.
fn header_bytes<'h>(headers: impl Iterator<Item = (&'h str, &'h str)>) -> usize {
    headers
        .map(|(k, v)| k.len() + v.len() + 2 * VARINT_MAX)
        .sum()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Fits a message into `max_bytes` as librdkafka counts it: the idempotency key
/// header first, then `headers` with values past 1 KiB cut, then the payload is cut if
/// it must be; a message with anything cut gets the truncation headers, describing the
/// whole payload.
pub(crate) fn fit<'a>(
    max_bytes: usize,
    key: Option<&str>,
    payload: &'a [u8],
    idempotency_key: &'a str,
    headers: &[(&'a str, &'a str)],
) -> Fitted<'a> {
    let key_len = key.map_or(0, str::len);
    let mut headers_cut = false;
    let mut out: Vec<(&'a str, Cow<'a, str>)> = Vec::with_capacity(headers.len() + 4);
    out.push((IDEMPOTENCY_HEADER, Cow::Borrowed(idempotency_key)));
    for &(k, v) in headers {
        let kept = cut_str(v, MAX_HEADER_VALUE);
        headers_cut |= kept.len() < v.len();
        out.push((k, Cow::Borrowed(kept)));
    }
    // What librdkafka counts besides the payload, and the slack.
    let overhead =
        RECORD_OVERHEAD + key_len + header_bytes(out.iter().map(|(k, v)| (*k, v.as_ref()))) + SLACK;
    if !headers_cut && overhead + payload.len() <= max_bytes {
        return Fitted {
            payload,
            headers: out,
            truncated: None,
        };
    }
    // Room for the truncation headers at their longest; the rest is the payload's.
    let sha = crate::stable_hash::hex(&Sha256::digest(payload));
    let reserved = header_bytes(
        [
            (TRUNCATED_HEADER, "payload,headers"),
            (ORIGINAL_SIZE_HEADER, "18446744073709551615"),
            (ORIGINAL_SHA256_HEADER, sha.as_str()),
        ]
        .into_iter(),
    );
    let room = max_bytes.saturating_sub(overhead + reserved);
    let payload_cut = payload.len() > room;
    let truncated = match (payload_cut, headers_cut) {
        (true, true) => "payload,headers",
        (true, false) => "payload",
        _ => "headers",
    };
    out.push((TRUNCATED_HEADER, Cow::Borrowed(truncated)));
    out.push((ORIGINAL_SIZE_HEADER, Cow::Owned(payload.len().to_string())));
    out.push((ORIGINAL_SHA256_HEADER, Cow::Owned(sha)));
    Fitted {
        payload: &payload[..payload.len().min(room)],
        headers: out,
        truncated: Some(truncated),
    }
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
    /// The restored cursor, while some of the keys read back past it are still to be
    /// skipped: a checkpoint taken meanwhile keeps it, so that a restart from that
    /// checkpoint reads them back again instead of sending them twice.
    rewound_from: Option<BTreeMap<i32, i64>>,
    unflushed: bool,
    flush_timeout: Duration,
    /// The producer's `message.max.bytes`.
    max_bytes: usize,
    /// Messages sent truncated by this output.
    truncated: u64,
    counters: Arc<Counters>,
}

fn io(what: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(what.to_string())
}

impl KafkaOut {
    /// Connects and learns where each partition of `topic` ends. The topic must exist.
    /// Truncated messages are counted in `counters`.
    pub fn open(c: &KafkaOutConfig, counters: Arc<Counters>) -> Result<Self, String> {
        let brokers = c.bootstrap_servers.as_deref().ok_or_else(|| {
            format!(
                "topic {}: bootstrap_servers is required when the source is not Kafka",
                c.topic
            )
        })?;
        let mut client = client_config(brokers, c.sasl.as_ref(), c.tls.as_ref());
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
            rewound_from: None,
            unflushed: false,
            flush_timeout: Duration::from_millis(message_timeout_ms + 5_000),
            max_bytes: c.message_max_bytes(),
            truncated: 0,
            counters,
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

    /// Queues one message unless a previous run already wrote its key; a message over
    /// `message.max.bytes` is queued truncated (see the module doc).
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
        let fitted = fit(self.max_bytes, key, payload, idempotency_key, headers);
        if let Some(what) = fitted.truncated {
            self.note_truncation(what, payload.len(), fitted.payload.len());
        }
        let mut hs = OwnedHeaders::new_with_capacity(fitted.headers.len());
        for (k, v) in &fitted.headers {
            hs = hs.insert(Header {
                key: k,
                value: Some(v.as_ref()),
            });
        }
        let mut record = BaseRecord::<str, [u8]>::to(&self.topic)
            .payload(fitted.payload)
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

    /// Counts a truncated message; the first of this output is a warning.
    fn note_truncation(&mut self, what: &str, original: usize, sent: usize) {
        self.truncated += 1;
        self.counters.kafka_message_truncated(&self.topic);
        if self.truncated == 1 {
            tracing::warn!(
                topic = %self.topic,
                cut = what,
                original_bytes = original,
                sent_bytes = sent,
                message_max_bytes = self.max_bytes,
                "a message too big for the producer was sent truncated (headers truncated, \
                 original_size, original_sha256); to send such messages whole, raise \
                 librdkafka_options message.max.bytes and the topic's max.message.bytes"
            );
        }
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
    /// Before anything was sent, the topic's end offsets: a checkpoint taken before the
    /// first message still says where this run's messages begin.
    pub fn cursor(&mut self) -> std::io::Result<BTreeMap<i32, i64>> {
        self.flush()?;
        let unseeded = self
            .producer
            .context()
            .next
            .lock()
            .expect("delivery lock")
            .is_empty();
        if unseeded {
            let ends = self.ends(Duration::from_secs(30)).map_err(io)?;
            let mut next = self.producer.context().next.lock().expect("delivery lock");
            for (p, end) in ends {
                let e = next.entry(p).or_insert(0);
                *e = (*e).max(end);
            }
        }
        if self.skip.is_empty() {
            self.rewound_from = None;
        }
        if let Some(from) = &self.rewound_from {
            return Ok(from.clone());
        }
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
        cfg.set("group.id", "inferwatch-readback")
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
        if !self.skip.is_empty() {
            self.rewound_from = Some(
                ends.keys()
                    .map(|&p| (p, cursor.get(&p).copied().unwrap_or(0)))
                    .collect(),
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of 1,000,500 bytes of `x`, from coreutils:
    /// `head -c 1000500 /dev/zero | tr '\0' x | sha256sum`.
    const SHA256_OF_1000500_X: &str =
        "3bb6764944b3603d317b1fced245780ead7977091578908444021f9ccd648d00";

    fn header<'a>(f: &'a Fitted, name: &str) -> Option<&'a str> {
        f.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_ref())
    }

    #[test]
    fn an_oversized_payload_is_cut_to_fit_with_its_whole_size_and_hash() {
        let payload = vec![b'x'; 1_000_500];
        let headers = [("kind", "bad"), ("reason", "invalid JSON")];
        let f = fit(1_000_000, None, &payload, "in@0:bad", &headers);
        assert_eq!(f.truncated, Some("payload"));
        assert_eq!(header(&f, TRUNCATED_HEADER), Some("payload"));
        assert_eq!(header(&f, ORIGINAL_SIZE_HEADER), Some("1000500"));
        assert_eq!(
            header(&f, ORIGINAL_SHA256_HEADER),
            Some(SHA256_OF_1000500_X)
        );
        assert_eq!(header(&f, IDEMPOTENCY_HEADER), Some("in@0:bad"));
        assert_eq!(header(&f, "reason"), Some("invalid JSON"));
        assert!(payload.starts_with(f.payload));
        // Cut to what fits, not far below it: the headers take a few hundred bytes.
        assert!(
            (999_000..1_000_000).contains(&f.payload.len()),
            "{}",
            f.payload.len()
        );
    }

    #[test]
    fn a_message_that_fits_is_sent_whole_without_truncation_headers() {
        let payload = vec![b'x'; 900_000];
        let f = fit(
            1_000_000,
            Some("id"),
            &payload,
            "id:firing",
            &[("rule_id", "r")],
        );
        assert_eq!(f.truncated, None);
        assert_eq!(f.payload.len(), payload.len());
        let names: Vec<&str> = f.headers.iter().map(|(k, _)| *k).collect();
        assert_eq!(names, [IDEMPOTENCY_HEADER, "rule_id"]);
    }

    #[test]
    fn a_long_header_value_is_cut_on_a_character_boundary_and_the_payload_kept() {
        // 1 + 2 × 1000 bytes: byte 1024 is inside an `é`, so 1023 bytes are kept.
        let reason = format!("x{}", "é".repeat(1000));
        let f = fit(1_000_000, None, b"{}", "k", &[("reason", &reason)]);
        assert_eq!(f.truncated, Some("headers"));
        let cut = header(&f, "reason").unwrap();
        assert_eq!(cut.len(), 1023);
        assert!(reason.starts_with(cut));
        assert_eq!(f.payload, b"{}");
        assert_eq!(header(&f, ORIGINAL_SIZE_HEADER), Some("2"));
    }

    /// A producer that never reaches a broker: librdkafka checks a message's size when
    /// it is queued, before any connection.
    fn offline_producer(max: usize) -> BaseProducer {
        ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("message.max.bytes", max.to_string())
            .create()
            .unwrap()
    }

    fn queue(
        p: &BaseProducer,
        key: Option<&str>,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<(), KafkaError> {
        let mut hs = OwnedHeaders::new();
        for (k, v) in headers {
            hs = hs.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        let mut r = BaseRecord::<str, [u8]>::to("t")
            .payload(payload)
            .headers(hs);
        if let Some(k) = key {
            r = r.key(k);
        }
        p.send(r).map_err(|(e, _)| e)
    }

    /// What `fit` assumes of librdkafka: it counts 36 bytes besides the key, the payload
    /// and each header's name and value with one-byte lengths (short ones), no more.
    #[test]
    fn librdkafka_counts_36_bytes_besides_key_payload_and_headers() {
        let headers = [(IDEMPOTENCY_HEADER, "a@1:bad"), ("kind", "bad")];
        let counted = 36 + 2 + (15 + 7 + 2) + (4 + 3 + 2);
        let p = offline_producer(10_000);
        let fits = vec![0; 10_000 - counted];
        assert!(queue(&p, Some("id"), &fits, &headers).is_ok());
        let over = vec![0; 10_000 - counted + 1];
        let e = queue(&p, Some("id"), &over, &headers).unwrap_err();
        assert_eq!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::MessageSizeTooLarge)
        );
    }

    #[test]
    fn every_fitted_message_is_accepted_by_librdkafka() {
        let max = 10_000;
        let p = offline_producer(max);
        let long = "r".repeat(5_000);
        let mut whole = 0;
        for headers in [vec![("kind", "bad")], vec![("reason", long.as_str())]] {
            let sizes = (0..=1)
                .chain(max - 300..=max + 1)
                .chain([50_000, 2_000_000]);
            for len in sizes {
                let payload = vec![b'x'; len];
                let f = fit(max, Some("key"), &payload, "idem", &headers);
                whole += usize::from(f.truncated.is_none());
                let hs: Vec<(&str, &str)> =
                    f.headers.iter().map(|(k, v)| (*k, v.as_ref())).collect();
                if let Err(e) = queue(&p, Some("key"), f.payload, &hs) {
                    panic!("{len} bytes ({:?} cut): {e}", f.truncated);
                }
            }
        }
        // Both sides of the limit were tried: some messages whole, some cut.
        assert!(whole > 2 && whole < 300, "{whole}");
    }
}
