//! `pipeline_stats`: the window's counts of good, bad and late records.

use std::sync::Arc;

use datafusion::arrow::array::{Float64Array, RecordBatch, TimestampMillisecondArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::WindowTable;
use crate::decode::ts_type;
use crate::window::ClosedWindow;

/// `pipeline_stats`: one row per window with the counts of good, bad and late records,
/// for data-quality rules.
pub struct PipelineStatsTable {
    schema: SchemaRef,
}

impl Default for PipelineStatsTable {
    fn default() -> Self {
        let u = DataType::UInt64;
        let f = DataType::Float64;
        Self {
            schema: Arc::new(Schema::new(vec![
                Field::new("window_start", ts_type(), false),
                Field::new("window_end", ts_type(), false),
                Field::new("records", u.clone(), false),
                Field::new("bad_records", u.clone(), false),
                Field::new("late_records", u, false),
                Field::new("bad_share", f.clone(), false),
                Field::new("late_share", f, false),
            ])),
        }
    }
}

impl WindowTable for PipelineStatsTable {
    fn name(&self) -> &str {
        "pipeline_stats"
    }
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    fn compute(&self, w: &ClosedWindow) -> Result<Vec<RecordBatch>, String> {
        let s = w.stats;
        let total = (s.records + s.bad + s.late).max(1) as f64;
        let ts = |v: i64| Arc::new(TimestampMillisecondArray::from(vec![v]).with_timezone("UTC"));
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                ts(w.start_ms),
                ts(w.end_ms),
                Arc::new(UInt64Array::from(vec![s.records])),
                Arc::new(UInt64Array::from(vec![s.bad])),
                Arc::new(UInt64Array::from(vec![s.late])),
                Arc::new(Float64Array::from(vec![s.bad as f64 / total])),
                Arc::new(Float64Array::from(vec![s.late as f64 / total])),
            ],
        )
        .map_err(|e| e.to_string())?;
        Ok(vec![batch])
    }
}
