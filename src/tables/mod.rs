//! The window tables rules read: each computes its rows from a closed window. A table
//! knows nothing of rules; the rule engine registers them and reads them by name.
//!
//! `events` and `pipeline_stats` are plain; `client_stats` and `client_profile`
//! ([`clients`]) and `feature_drift`, `prediction_drift` and `label_shares` ([`drift`])
//! keep state across windows (their reference samples and client profiles, which go
//! into checkpoints); `rescored` is the re-scorer's (`crate::rescore`), given here as a
//! table like any other.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use crate::window::ClosedWindow;

pub mod clients;
pub mod drift;
mod events;
mod pipeline_stats;
#[cfg(test)]
mod test_support;

pub use events::EventsTable;
pub use pipeline_stats::PipelineStatsTable;

/// A table whose rows are computed for each closed window.
pub trait WindowTable: Send + Sync {
    fn name(&self) -> &'static str;
    fn schema(&self) -> SchemaRef;
    fn compute(&self, window: &ClosedWindow) -> Result<Vec<RecordBatch>, String>;
}

/// A table whose one batch per window another part computes (the client and drift
/// tables: several tables share one computation, cached per window by its owner).
pub struct DerivedTable {
    name: &'static str,
    schema: SchemaRef,
    rows: Box<RowsFn>,
}

/// Computes a [`DerivedTable`]'s batch for a window.
type RowsFn = dyn Fn(&ClosedWindow) -> Result<RecordBatch, String> + Send + Sync;

impl DerivedTable {
    /// The table, ready to register.
    pub fn shared(
        name: &'static str,
        schema: SchemaRef,
        rows: impl Fn(&ClosedWindow) -> Result<RecordBatch, String> + Send + Sync + 'static,
    ) -> Arc<dyn WindowTable> {
        Arc::new(Self {
            name,
            schema,
            rows: Box::new(rows),
        })
    }
}

impl WindowTable for DerivedTable {
    fn name(&self) -> &'static str {
        self.name
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn compute(&self, w: &ClosedWindow) -> Result<Vec<RecordBatch>, String> {
        Ok(vec![(self.rows)(w)?])
    }
}

/// The table of re-scored records: rules that read it run after the others of their
/// window (see [`Engine::evaluate_with`]).
pub const RESCORED: &str = "rescored";

/// Every window table rules can read, with the stateful parts behind them (their state
/// goes into checkpoints).
pub struct StandardTables {
    pub tables: Vec<Arc<dyn WindowTable>>,
    pub clients: Arc<clients::Clients>,
    pub drift: Arc<drift::Drift>,
}

/// `events`, `pipeline_stats`, `client_stats`, `client_profile`, `feature_drift`,
/// `prediction_drift`, `label_shares`, and `rescored` (which the re-scorer computes).
pub fn standard_tables(
    events_schema: SchemaRef,
    decode: &crate::decode::DecodeConfig,
    clients: &clients::ClientsConfig,
    drift: &drift::DriftConfig,
    baselines: &[Arc<crate::baseline::Baseline>],
    rescored: Arc<dyn WindowTable>,
) -> StandardTables {
    let clients = clients::Clients::new(&decode.features, clients, baselines);
    let drift = drift::Drift::new(&decode.features, drift, baselines);
    let mut tables: Vec<Arc<dyn WindowTable>> = vec![
        Arc::new(EventsTable::new(events_schema)),
        Arc::new(PipelineStatsTable::default()),
    ];
    tables.extend(clients.tables());
    tables.extend(drift.tables());
    tables.push(rescored);
    StandardTables {
        tables,
        clients,
        drift,
    }
}
