//! Counters of what the pipeline did, as typed events: each thing worth counting is one
//! function here that bumps its counter and logs, so metric names live in one place.
//! The Prometheus endpoint and OTLP metrics read these counters.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

pub mod catalogue;
pub mod process;
mod summary;
pub use summary::{CheckpointInfo, CheckpointStats, Summary};

#[derive(Debug)]
pub struct Counters {
    pub records_read: AtomicU64,
    pub records_bad: AtomicU64,
    pub records_late: AtomicU64,
    /// Of the bad records, those the event-time guard refused: out of range, far ahead.
    pub records_time_refused: [AtomicU64; 2],
    pub windows_closed: AtomicU64,
    pub rule_runs: AtomicU64,
    pub rule_errors: AtomicU64,
    pub notifications: AtomicU64,
    pub receiver_errors: AtomicU64,
    /// Bytes of records read from the source (throughput with `records_read`).
    pub bytes_read: AtomicU64,
    /// Per Kafka partition (`topic/partition`): its lag, from librdkafka's statistics.
    pub lag: Mutex<BTreeMap<String, Lag>>,
    /// Kafka brokers the consumer is connected to.
    pub brokers_up: AtomicU64,
    /// Alert state changes: pending, firing, resolved.
    pub alerts_by_state: [AtomicU64; 3],
    /// Alerts pending or firing after the last evaluation.
    pub alerts_active: AtomicU64,
    /// Re-scoring totals (embedded models), refreshed after each window.
    pub rescore: Mutex<RescoreTotals>,
    /// Messages sent truncated to an output topic (alerts, dead letters): over the
    /// producer's `message.max.bytes`.
    pub kafka_truncated: AtomicU64,
    /// Each rule of the rule set in force, in its order: how its evaluations went.
    pub rules: Mutex<Vec<RuleStatus>>,
    /// The event-time watermark, epoch ms (i64::MIN until known).
    pub watermark_ms: AtomicI64,
    /// Delayed labels, refreshed after each window.
    pub labels: Mutex<LabelTotals>,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            records_read: AtomicU64::new(0),
            records_bad: AtomicU64::new(0),
            records_late: AtomicU64::new(0),
            records_time_refused: Default::default(),
            windows_closed: AtomicU64::new(0),
            rule_runs: AtomicU64::new(0),
            rule_errors: AtomicU64::new(0),
            notifications: AtomicU64::new(0),
            receiver_errors: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            lag: Mutex::default(),
            brokers_up: AtomicU64::new(0),
            alerts_by_state: Default::default(),
            alerts_active: AtomicU64::new(0),
            rescore: Mutex::default(),
            labels: Mutex::default(),
            kafka_truncated: AtomicU64::new(0),
            rules: Mutex::default(),
            watermark_ms: AtomicI64::new(i64::MIN),
        }
    }
}

/// A rule as the API shows it: what it is and how its evaluations went.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RuleStatus {
    pub id: String,
    pub name: Option<String>,
    pub severity: String,
    pub file: String,
    pub window: String,
    pub evaluations: u64,
    pub errors: u64,
    /// End of the last window it ran on (event time).
    pub last_window_end: Option<String>,
    /// When that was (wall clock).
    pub last_evaluated_at: Option<String>,
    pub last_duration_ms: Option<f64>,
    pub total_seconds: f64,
    pub last_error: Option<String>,
}

/// One evaluation of one rule on one window.
#[derive(Debug, Clone, Copy)]
pub struct RuleRun<'a> {
    /// Its place in the rule set.
    pub index: usize,
    pub rule: &'a str,
    /// The window's end (event time, RFC 3339).
    pub window_end: &'a str,
    /// Now (wall clock, RFC 3339).
    pub wall: &'a str,
    pub elapsed: std::time::Duration,
    pub error: Option<&'a str>,
}

/// Re-scoring counts since the start (kept across restarts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RescoreTotals {
    pub rescored: u64,
    pub flagged: u64,
    pub sampled: u64,
    /// Candidates the budget left out.
    pub dropped: u64,
    /// Records with a feature missing: the model cannot score them.
    pub unscorable: u64,
    /// Records of a configured model whose `model_version` has no pinned file: not
    /// re-scored (another version's file would call every answer tampered).
    #[serde(default)]
    pub other_version: u64,
    pub mismatches: u64,
    pub adversarial: u64,
    /// Suspects dropped because `max_suspects` were tracked.
    pub suspects_evicted: u64,
}

/// Counts of the per-client state, for telemetry and the summary.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct ClientsUsage {
    pub clients: usize,
    pub bytes: u64,
    pub evicted_idle: u64,
    pub evicted_memory: u64,
    /// Estimated memory of the earlier copies of profiles that changed while a
    /// checkpoint being written held them (freed when the writer is done).
    #[serde(skip)]
    pub checkpoint_copies: u64,
    /// The highest `bytes + checkpoint_copies` after a window, this run.
    #[serde(skip)]
    pub peak_bytes: u64,
}

/// How far behind the end of a Kafka partition inferwatch is, in records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lag {
    /// End of the partition minus the next record inferwatch will read.
    pub read: i64,
    /// End of the partition minus the group's committed offset (what a restart re-reads
    /// plus what is not read yet; `kafka-consumer-groups.sh` shows this one).
    pub committed: i64,
}

impl Counters {
    /// The re-scorer's totals after a window.
    pub fn rescored(&self, totals: RescoreTotals) {
        *self.rescore.lock().expect("rescore lock") = totals;
    }

    pub fn records_read(&self, n: u64, bytes: u64) {
        self.records_read.fetch_add(n, Relaxed);
        self.bytes_read.fetch_add(bytes, Relaxed);
    }

    /// Replaces the lag of every assigned Kafka partition (a statistics report).
    pub fn kafka_lag(&self, lag: BTreeMap<String, Lag>, brokers_up: u64) {
        self.brokers_up.store(brokers_up, Relaxed);
        tracing::debug!(
            brokers_up,
            partitions = lag.len(),
            total_read_lag = lag.values().map(|l| l.read).sum::<i64>(),
            "kafka statistics"
        );
        *self.lag.lock().expect("lag lock") = lag;
    }

    /// Sum over partitions.
    pub fn total_lag(&self) -> Lag {
        let lag = self.lag.lock().expect("lag lock");
        lag.values().fold(Lag::default(), |a, l| Lag {
            read: a.read + l.read,
            committed: a.committed + l.committed,
        })
    }

    pub fn record_bad(&self, source: &str, position: u64, reason: &str) {
        self.records_bad.fetch_add(1, Relaxed);
        tracing::debug!(source, position, reason, "dead letter: bad record");
    }

    /// A record whose event time the guard refused (`code`: its reason's code).
    pub fn record_time_refused(&self, source: &str, position: u64, code: &str) {
        self.records_bad.fetch_add(1, Relaxed);
        let i = usize::from(code != "time_out_of_range");
        if self.records_time_refused[i].fetch_add(1, Relaxed) == 0 {
            tracing::warn!(
                source,
                position,
                reason = code,
                "event time refused (dead letter): the first of its kind; see time: in the config"
            );
        }
        tracing::debug!(
            source,
            position,
            reason = code,
            "dead letter: event time refused"
        );
    }

    pub fn record_late(&self, source: &str, position: u64) {
        self.records_late.fetch_add(1, Relaxed);
        tracing::debug!(source, position, "dead letter: late record");
    }

    pub fn window_closed(&self, start: &str, end: &str, records: u64) {
        self.windows_closed.fetch_add(1, Relaxed);
        tracing::debug!(start, end, records, "window closed");
    }

    /// A rule ran on a window: counted, logged when it failed, and its status updated.
    pub fn rule_run(&self, run: RuleRun<'_>) {
        self.rule_runs.fetch_add(1, Relaxed);
        if let Some(error) = run.error {
            self.rule_errors.fetch_add(1, Relaxed);
            tracing::warn!(rule = run.rule, error, "rule failed");
        }
        if let Some(st) = self.rules.lock().expect("rules lock").get_mut(run.index) {
            st.evaluations += 1;
            st.errors += u64::from(run.error.is_some());
            st.last_window_end = Some(run.window_end.to_owned());
            st.last_evaluated_at = Some(run.wall.to_owned());
            st.last_duration_ms = Some(run.elapsed.as_secs_f64() * 1000.0);
            st.total_seconds += run.elapsed.as_secs_f64();
            st.last_error = run.error.map(str::to_owned);
        }
    }

    /// The pipeline's event-time watermark moved (None: not known yet).
    pub fn watermark(&self, watermark_ms: Option<i64>) {
        self.watermark_ms
            .store(watermark_ms.unwrap_or(i64::MIN), Relaxed);
    }

    /// The watermark last published, epoch ms.
    pub fn watermark_ms(&self) -> Option<i64> {
        Some(self.watermark_ms.load(Relaxed)).filter(|&w| w != i64::MIN)
    }

    /// A state change: 0 pending, 1 firing, 2 resolved.
    pub fn notification(&self, state: usize) {
        self.notifications.fetch_add(1, Relaxed);
        if let Some(c) = self.alerts_by_state.get(state) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// A message sent truncated to `topic` (the output warns once itself).
    pub fn kafka_message_truncated(&self, topic: &str) {
        self.kafka_truncated.fetch_add(1, Relaxed);
        tracing::debug!(topic, "kafka: message sent truncated");
    }

    pub fn receiver_error(&self, receiver: &str, error: &str) {
        self.receiver_errors.fetch_add(1, Relaxed);
        tracing::error!(receiver, error, "receiver failed");
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }
}

/// Counts of what the labels did (`/metrics`, the summary).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelTotals {
    /// Label records read.
    pub read: u64,
    /// Joined to their prediction.
    pub joined: u64,
    /// Dead letters, by reason.
    pub malformed: u64,
    pub unknown_model: u64,
    pub unknown_class: u64,
    pub no_prediction: u64,
    pub duplicate: u64,
    pub too_late: u64,
    /// Read too far ahead of the predictions (over `max_waiting`).
    pub ahead: u64,
    /// Predictions registered to wait for a label.
    pub predictions: u64,
    /// A second prediction with a request id already waiting (the first is kept).
    pub duplicate_predictions: u64,
    /// Predictions whose `probs` were not probabilities (out of [0, 1]): joined without.
    #[serde(default)]
    pub probs_out_of_range: u64,
    /// Predictions whose horizon passed without a label.
    pub expired: u64,
    /// Predictions evicted over `max_pending`.
    pub evicted: u64,
    /// Predictions waiting now.
    pub pending: u64,
    /// Labels read, waiting for the predictions' watermark.
    pub waiting: u64,
}

impl LabelTotals {
    /// Label records by outcome: joined, or the reason of their dead letter.
    pub fn outcomes(&self) -> [(&'static str, u64); 8] {
        [
            ("joined", self.joined),
            ("malformed", self.malformed),
            ("unknown_model", self.unknown_model),
            ("unknown_class", self.unknown_class),
            ("no_prediction", self.no_prediction),
            ("duplicate", self.duplicate),
            ("too_late", self.too_late),
            ("ahead", self.ahead),
        ]
    }
}
