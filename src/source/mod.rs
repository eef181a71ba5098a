//! Sources: where raw records come from (JSONL files, the synthetic generator, Kafka).
//! A source hands out [`RawBatch`]es of undecoded records, each
//! record with its position in its partition, so that decoding, dead letters, evidence and
//! checkpoints can all say where a record came from.
//!
//! Not for decoding (see `decode`) or event time (see `window`): a source knows bytes and
//! positions only.

pub mod file;
pub mod generator;
pub mod kafka;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::decode::{PartitionId, RawBatch};

/// What a poll of a source gives.
#[derive(Debug)]
pub enum Poll {
    Batch(RawBatch),
    /// Nothing new right now (follow mode, quiet topic).
    Idle,
    /// The input cannot be reached (every Kafka broker down): nothing new, but not idle
    /// either, so `--until-idle` does not count this time. Says why.
    Waiting(String),
    /// A partition joined after the start (a Kafka assignment). Ids are never reused:
    /// a partition assigned again later gets a new id under the same name.
    Added(PartitionId, String),
    /// A partition was taken away (a Kafka revocation): it stops holding the watermark;
    /// what it already delivered stays in its windows.
    Removed(PartitionId),
    /// This partition has no more records (end of a replay file).
    PartitionDone(PartitionId),
    /// Every partition is done.
    End,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open input {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read input {path} at byte {position}: {source}")]
    Read {
        path: PathBuf,
        position: u64,
        source: std::io::Error,
    },
    #[error("generator: {0}")]
    Generator(String),
    #[error("cannot resume from the checkpoint: {0}")]
    Resume(String),
    #[error("kafka: {0}")]
    Kafka(String),
    /// A Kafka problem only a config change fixes (credentials).
    #[error("kafka: {0}")]
    KafkaConfig(String),
}

impl SourceError {
    /// Errors a user fixes in the command line or config (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            SourceError::Open { .. }
                | SourceError::Generator(_)
                | SourceError::Resume(_)
                | SourceError::KafkaConfig(_)
        )
    }
}

/// A stream of raw records split in partitions. `poll` may block briefly on I/O; the
/// pipeline runs sources on their own thread.
pub trait Source: Send {
    /// A name for each partition known at the start, indexed by [`PartitionId`];
    /// later ones are announced with [`Poll::Added`].
    fn partitions(&self) -> Vec<String>;
    fn poll(&mut self) -> Result<Poll, SourceError>;
    /// Total input size in bytes when known (for a progress bar).
    fn total_bytes(&self) -> Option<u64> {
        None
    }
    /// Input bytes consumed so far.
    fn bytes_read(&self) -> u64 {
        0
    }
    /// Moves partitions (by name) to the positions a checkpoint recorded, before the
    /// first poll.
    fn resume(
        &mut self,
        positions: &std::collections::BTreeMap<String, u64>,
    ) -> Result<(), SourceError>;
    /// A checkpoint covering these positions is on disk: a source with an upstream
    /// cursor (Kafka's consumer-group offsets) may commit them now, and never anything
    /// newer, so a restart re-reads at most one checkpoint interval.
    fn checkpointed(&mut self, _positions: &std::collections::BTreeMap<String, u64>) {}
    /// Where to count what the source sees beyond records (consumer lag).
    fn set_counters(&mut self, _counters: std::sync::Arc<crate::telemetry::Counters>) {}
}

/// `source:` in the config file.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
#[allow(
    clippy::large_enum_variant,
    reason = "a config read once; boxing would only add indirection"
)]
pub enum SourceConfig {
    /// JSONL files, plain or `.gz`, read side by side like partitions.
    File(file::FileSourceConfig),
    /// Deterministic synthetic traffic (the quick start's embedded default).
    Generator(generator::GeneratorSourceConfig),
    /// A Kafka consumer group.
    Kafka(kafka::KafkaSourceConfig),
}

impl SourceConfig {
    pub fn resolve_paths(&mut self, base: &Path) {
        match self {
            SourceConfig::File(f) => {
                for p in &mut f.paths {
                    if p.is_relative() {
                        *p = base.join(&*p);
                    }
                }
            }
            SourceConfig::Kafka(k) => {
                if let Some(t) = k.tls.as_mut() {
                    t.resolve_paths(base);
                }
            }
            SourceConfig::Generator(_) => {}
        }
    }

    /// Builds the source; `max_record_bytes` bounds what is buffered per record.
    pub fn build(&self, max_record_bytes: usize) -> Result<Box<dyn Source>, SourceError> {
        Ok(match self {
            SourceConfig::File(c) => Box::new(file::FileSource::open(c, max_record_bytes)?),
            SourceConfig::Generator(c) => Box::new(generator::GeneratorSource::new(c)?),
            SourceConfig::Kafka(c) => Box::new(kafka::KafkaSource::new(c, max_record_bytes)?),
        })
    }
}
