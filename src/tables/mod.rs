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
pub mod reference;
#[cfg(test)]
pub(crate) mod test_support;

pub use events::EventsTable;
pub use pipeline_stats::PipelineStatsTable;

/// A table whose rows are computed for each closed window.
pub trait WindowTable: Send + Sync {
    fn name(&self) -> &str;
    fn schema(&self) -> SchemaRef;
    fn compute(&self, window: &ClosedWindow) -> Result<Vec<RecordBatch>, String>;
    /// Tables that share one computation share this name (the first of them to be
    /// computed does the work): tables computed side by side start with one of each.
    fn computation(&self) -> &str {
        self.name()
    }
}

/// A table whose one batch per window another part computes (the client and drift
/// tables: several tables share one computation, cached per window by its owner).
pub struct DerivedTable {
    name: &'static str,
    computation: &'static str,
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
        Self::of(name, name, schema, rows)
    }

    /// A table of the shared computation `computation`.
    pub fn of(
        computation: &'static str,
        name: &'static str,
        schema: SchemaRef,
        rows: impl Fn(&ClosedWindow) -> Result<RecordBatch, String> + Send + Sync + 'static,
    ) -> Arc<dyn WindowTable> {
        Arc::new(Self {
            name,
            computation,
            schema,
            rows: Box::new(rows),
        })
    }
}

impl WindowTable for DerivedTable {
    fn name(&self) -> &str {
        self.name
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn compute(&self, w: &ClosedWindow) -> Result<Vec<RecordBatch>, String> {
        Ok(vec![(self.rows)(w)?])
    }
    fn computation(&self) -> &str {
        self.computation
    }
}

/// The names of the declared features of one kind, in declaration order.
pub fn feature_names(
    features: &[crate::decode::FeatureDecl],
    kind: crate::decode::FeatureKind,
) -> Vec<String> {
    features
        .iter()
        .filter(|f| f.kind == kind)
        .map(|f| f.name.clone())
        .collect()
}

/// The table of re-scored records: rules that read it run after the others of their
/// window (see [`Engine::evaluate_with`]).
pub const RESCORED: &str = "rescored";

/// The settings of the stateful tables.
#[derive(Clone, Copy)]
pub struct Settings<'a> {
    pub clients: &'a clients::ClientsConfig,
    pub drift: &'a drift::DriftConfig,
    pub reference: &'a reference::ReferenceConfig,
    /// Secret key of the reference samples' hash (0 without a state directory).
    pub sample_key: u64,
}

/// Every window table rules can read, with the stateful parts behind them (their state
/// goes into checkpoints).
pub struct StandardTables {
    pub tables: Vec<Arc<dyn WindowTable>>,
    pub clients: Arc<clients::Clients>,
    pub drift: Arc<drift::Drift>,
    /// The rolling reference both measure against.
    pub reference: Arc<reference::Reference>,
}

/// `events`, `pipeline_stats`, `client_stats`, `client_profile`, `feature_drift`,
/// `prediction_drift`, `label_shares`, and `rescored` (which the re-scorer computes).
/// The delayed labels' `performance` and `class_performance` are added by the caller
/// (`crate::labels::tables`).
pub fn standard_tables(
    events_schema: SchemaRef,
    decode: &crate::decode::DecodeConfig,
    settings: Settings<'_>,
    baselines: &[Arc<crate::baseline::Baseline>],
    rescored: Arc<dyn WindowTable>,
) -> StandardTables {
    let Settings {
        clients,
        drift,
        reference,
        sample_key,
    } = settings;
    let reference = reference::Reference::new(
        &decode.features,
        reference,
        sample_key,
        baselines.iter().map(|b| b.model.clone()),
    );
    let clients = clients::Clients::new(&decode.features, clients, baselines, reference.clone());
    let drift = drift::Drift::new(&decode.features, drift, baselines, reference.clone());
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
        reference,
    }
}
