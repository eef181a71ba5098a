//! Receiver that sends each state change to a Kafka topic as the same JSON object the
//! JSONL receiver writes, keyed by alert id (so one alert's changes stay in order in one
//! partition), with headers `idempotency_key` (= `id:state`), `rule_id` and `state`.
//! A restart never puts the same (id, state) in the topic twice (see `kafka::producer`).
//! A notification too big for the topic (labels from traffic can be long) is sent
//! truncated, with header `truncated`: its payload is then not a whole JSON object.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Notification, Receiver};
use crate::kafka::{KafkaOut, KafkaOutConfig};
use crate::telemetry::Counters;

/// Name of this receiver, and the prefix of its checkpoint cursors.
const NAME: &str = "kafka";

pub struct KafkaReceiver {
    out: KafkaOut,
}

impl KafkaReceiver {
    /// Connects to the topic; truncated notifications are counted in `counters`.
    pub fn open(c: &KafkaOutConfig, counters: Arc<Counters>) -> Result<Self, String> {
        Ok(Self {
            out: KafkaOut::open(c, counters)?,
        })
    }
}

impl Receiver for KafkaReceiver {
    fn name(&self) -> &str {
        NAME
    }
    fn send(&mut self, n: &Notification) -> std::io::Result<()> {
        let payload = serde_json::to_vec(n)?;
        self.out.send(
            Some(&n.id),
            &payload,
            &n.notification_id,
            &[("rule_id", &n.rule_id), ("state", n.state.as_str())],
        )
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
    fn durable(&self) -> bool {
        true
    }
    fn cursor(&mut self) -> std::io::Result<Vec<(String, u64)>> {
        self.out.named_cursor(NAME)
    }
    fn rewind(&mut self, cursors: &BTreeMap<String, u64>) -> std::io::Result<()> {
        self.out.rewind_named(NAME, cursors)
    }
}
