//! The end-of-run summary: counts over the run (a checkpoint carries the persisted ones
//! across restarts), checkpoint costs and what delivery said, printed when a run ends.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Counts for the end-of-run summary; a checkpoint carries them across restarts.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub records_read: u64,
    pub good: u64,
    pub bad: u64,
    pub late: u64,
    /// Of `bad`, records the event-time guard refused: (out of range, far ahead).
    #[serde(default)]
    pub time_refused: [u64; 2],
    pub windows_closed: u64,
    pub rule_runs: u64,
    pub rule_errors: u64,
    /// Per rule id: notifications per state.
    pub alerts: BTreeMap<String, [u64; 3]>,
    pub alerts_active_at_end: usize,
    #[serde(skip)]
    pub elapsed: Duration,
    /// From the first record this process read to the end of processing the last one
    /// (a stream's rate, without joining the group or waiting out `--until-idle`).
    #[serde(skip)]
    pub streaming: Duration,
    /// Records this process read (the checkpointed count includes earlier runs').
    #[serde(skip)]
    pub records_this_run: u64,
    /// Kafka consumer lag summed over the assigned partitions, from the last statistics.
    #[serde(skip)]
    pub kafka_lag: Option<super::Lag>,
    /// Client profiles held at the end, their estimated memory, and the evictions.
    #[serde(skip)]
    pub clients: super::ClientsUsage,
    /// Models refused a rolling reference over `reference.max_models`, in this process.
    #[serde(skip)]
    pub models_refused: u64,
    /// Peak resident memory of the process (Linux), in KiB.
    #[serde(skip)]
    pub peak_rss_kib: Option<u64>,
    /// What the start restored, in words.
    #[serde(skip)]
    pub restored: Option<String>,
    #[serde(skip)]
    pub last_checkpoint: Option<CheckpointInfo>,
    #[serde(skip)]
    pub checkpoints: CheckpointStats,
    /// Re-scoring totals, when a model is configured, and the time it took.
    #[serde(skip)]
    pub rescore: Option<(super::RescoreTotals, Duration)>,
    /// Delayed labels: what was read, joined and dead-lettered (the checkpoint holds them).
    #[serde(skip)]
    pub labels: Option<super::LabelTotals>,
    /// Time spent per table and per rule in this process, costliest first.
    #[serde(skip)]
    pub costs: Vec<(String, Duration)>,
    /// How notification delivery went, a line per receiver.
    #[serde(skip)]
    pub deliveries: Vec<String>,
}

/// Checkpoints written by this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckpointStats {
    pub written: u64,
    /// Longest time taking a snapshot held up the pipeline.
    pub max_pause_ms: f64,
    pub max_bytes: u64,
    /// Longest encode + write, on another thread.
    pub max_write_ms: f64,
}

impl CheckpointStats {
    pub fn add(&mut self, info: &CheckpointInfo) {
        self.written += 1;
        self.max_bytes = self.max_bytes.max(info.bytes);
        self.max_write_ms = self.max_write_ms.max(info.millis);
    }
}

/// A checkpoint that was written.
#[derive(Debug, Clone)]
pub struct CheckpointInfo {
    /// Wall-clock time it was taken.
    pub written_at: String,
    pub bytes: u64,
    /// Time to encode and write it, off the pipeline's thread.
    pub millis: f64,
    /// The source positions it covers: safe to commit (Kafka offsets).
    pub positions: BTreeMap<String, u64>,
}

impl Summary {
    pub fn records_per_second(&self) -> f64 {
        self.records_read as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Records per second between the first and the last record of this run.
    pub fn streaming_rate(&self) -> f64 {
        self.records_this_run as f64 / self.streaming.as_secs_f64().max(1e-9)
    }
}
