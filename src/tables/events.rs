//! `events`: the window's decoded records, as they came.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;

use super::WindowTable;
use crate::window::ClosedWindow;

/// `events`: the window's decoded records.
pub struct EventsTable {
    schema: SchemaRef,
}

impl EventsTable {
    pub fn new(schema: SchemaRef) -> Self {
        Self { schema }
    }
}

impl WindowTable for EventsTable {
    fn name(&self) -> &str {
        "events"
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn compute(&self, window: &ClosedWindow) -> Result<Vec<RecordBatch>, String> {
        Ok(window.batches.clone())
    }
}
