//! The synthetic generator as a source: the quick start runs the whole pipeline on it
//! with no file and no external service. One partition; a record's position is its index.

use serde::Deserialize;

use super::{Poll, Source, SourceError};
use crate::decode::RawBatch;
use crate::scenario::{GenOptions, Generator, Scenario};

/// `source: {type: generator, ...}`
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratorSourceConfig {
    pub scenario: Scenario,
    #[serde(default)]
    pub seed: u64,
    pub events: u64,
    /// Honest records per second of event time.
    #[serde(default = "default_rate")]
    pub rate: f64,
    /// Honest clients.
    #[serde(default = "default_clients")]
    pub clients: usize,
}

fn default_clients() -> usize {
    crate::scenario::DEFAULT_CLIENTS
}

pub fn default_rate() -> f64 {
    200.0
}

pub struct GeneratorSource {
    generator: Generator,
    position: u64,
    done: bool,
}

const BATCH: usize = 8192;

impl GeneratorSource {
    pub fn new(c: &GeneratorSourceConfig) -> Result<Self, SourceError> {
        let generator = Generator::new(GenOptions {
            scenario: c.scenario,
            seed: c.seed,
            events: c.events,
            rate: c.rate,
            clients: c.clients,
        })
        .map_err(SourceError::Generator)?;
        Ok(Self {
            generator,
            position: 0,
            done: false,
        })
    }
}

impl Source for GeneratorSource {
    fn partitions(&self) -> Vec<String> {
        vec!["generator".to_owned()]
    }

    fn poll(&mut self) -> Result<Poll, SourceError> {
        if self.done {
            return Ok(Poll::End);
        }
        let mut batch = RawBatch::new(0);
        let mut line = Vec::with_capacity(512);
        while batch.len() < BATCH && self.generator.next_record(&mut line) {
            batch.push(&line, self.position);
            self.position += 1;
            line.clear();
        }
        if batch.is_empty() {
            self.done = true;
            return Ok(Poll::PartitionDone(0));
        }
        batch.resume_at = self.position;
        Ok(Poll::Batch(batch))
    }

    fn total_bytes(&self) -> Option<u64> {
        Some(self.position + self.generator.remaining())
    }

    fn bytes_read(&self) -> u64 {
        self.position
    }

    /// Regenerates and drops the records before the checkpoint's position: the
    /// generator is deterministic, so the rest is the same as in an unbroken run.
    fn resume(
        &mut self,
        positions: &std::collections::BTreeMap<String, u64>,
    ) -> Result<(), SourceError> {
        let target = positions.get("generator").copied().unwrap_or(0);
        let mut line = Vec::with_capacity(512);
        while self.position < target && self.generator.next_record(&mut line) {
            self.position += 1;
            line.clear();
        }
        Ok(())
    }
}
