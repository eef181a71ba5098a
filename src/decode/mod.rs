//! Decoding: raw JSON records → Arrow `RecordBatch`es with the `events` schema, a batch
//! at a time with arrow-json's columnar decoder (no per-row `serde_json::Value`).
//!
//! arrow-json fails a whole batch on one bad row and cannot skip it (arrow-rs #3392), so
//! records are fed one at a time into one decoder and checked as they go: a record that
//! leaves a partial value, or is not exactly one value, is dead-lettered and the decoder
//! rebuilt from the good records so far (a broken decoder keeps failing, Arroyo #891).
//! Type errors only show when the batch is flushed; then the batch is split in eighths,
//! recursively, until each bad record stands alone. Records with no usable event time or
//! client id are dead-lettered after decoding.
//!
//! Not for event time or lateness: that is `window`'s job.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, UInt32Array, make_array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::json::reader::Decoder;
use serde::Deserialize;

mod direct;
mod raw;
pub use raw::{Oversized, PartitionId, RawBatch};

/// `decode:` in the config: where each `events` column is found in a record.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecodeConfig {
    #[serde(default)]
    pub fields: FieldPaths,
    /// Features to extract from the `features` object, each becoming an `events` column.
    #[serde(default)]
    pub features: Vec<FeatureDecl>,
    /// Records longer than this are dead-lettered unread.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// Threads decoding records (default: the machine's cores less one). Results are
    /// the same for any number.
    #[serde(default)]
    #[schemars(range(min = 1, max = 256))]
    pub threads: Option<usize>,
}

fn default_max_record_bytes() -> usize {
    1 << 20
}

impl Default for DecodeConfig {
    fn default() -> Self {
        Self {
            fields: FieldPaths::default(),
            features: Vec::new(),
            max_record_bytes: default_max_record_bytes(),
            threads: None,
        }
    }
}

/// Dotted paths of each column in the JSON record.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FieldPaths {
    pub ts: String,
    pub request_id: String,
    pub client_id: String,
    pub model: String,
    pub model_version: String,
    pub latency_ms: String,
    pub prediction_label: String,
    pub prediction_score: String,
    pub probs: String,
    /// The object that holds the features.
    pub features: String,
}

impl Default for FieldPaths {
    fn default() -> Self {
        Self {
            ts: "ts".into(),
            request_id: "request_id".into(),
            client_id: "client_id".into(),
            model: "model".into(),
            model_version: "model_version".into(),
            latency_ms: "latency_ms".into(),
            prediction_label: "prediction.label".into(),
            prediction_score: "prediction.score".into(),
            probs: "prediction.probs".into(),
            features: "features".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureDecl {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: FeatureKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    Numerical,
    Categorical,
}

/// Columns of `events` that are not features, in schema order.
pub const BASE_COLUMNS: [&str; 9] = [
    "ts",
    "request_id",
    "client_id",
    "model",
    "model_version",
    "latency_ms",
    "prediction_label",
    "prediction_score",
    "probs",
];

/// The most decoding threads a config may ask for.
const MAX_THREADS: usize = 256;

impl DecodeConfig {
    /// Decoding threads: `threads`, or one per core but the one the windows, tables
    /// and rules run on (at least one). With one, the reading thread decodes too.
    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1))
                .clamp(1, MAX_THREADS)
        })
    }

    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for f in &self.features {
            if f.name.is_empty() || f.name.contains('.') {
                return Err(format!(
                    "decode.features: feature name {:?} must be non-empty and without dots",
                    f.name
                ));
            }
            if BASE_COLUMNS.contains(&f.name.as_str()) {
                return Err(format!(
                    "decode.features: feature {:?} has the name of a built-in events column; rename it",
                    f.name
                ));
            }
            if !seen.insert(&f.name) {
                return Err(format!(
                    "decode.features: feature {:?} is declared twice",
                    f.name
                ));
            }
        }
        if self.max_record_bytes == 0 {
            return Err("decode.max_record_bytes must be positive".into());
        }
        if let Some(n) = self.threads
            && !(1..=MAX_THREADS).contains(&n)
        {
            return Err(format!(
                "decode.threads must be between 1 and {MAX_THREADS}, not {n}"
            ));
        }
        Decoders::new(self).map(|_| ())
    }

    /// The `events` table schema: base columns, then one column per declared feature.
    pub fn events_schema(&self) -> SchemaRef {
        let utf8 = DataType::Utf8;
        let f64t = DataType::Float64;
        let mut fields = vec![
            Field::new("ts", ts_type(), false),
            Field::new("request_id", utf8.clone(), true),
            Field::new("client_id", utf8.clone(), false),
            Field::new("model", utf8.clone(), true),
            Field::new("model_version", utf8.clone(), true),
            Field::new("latency_ms", f64t.clone(), true),
            Field::new("prediction_label", utf8.clone(), true),
            Field::new("prediction_score", f64t.clone(), true),
            Field::new("probs", probs_type(), true),
        ];
        for f in &self.features {
            fields.push(Field::new(&f.name, feature_type(f.kind), true));
        }
        Arc::new(Schema::new(fields))
    }

    /// Dotted JSON path of each `events` column, in schema order.
    fn column_paths(&self) -> Vec<String> {
        let p = &self.fields;
        let mut paths = vec![
            p.ts.clone(),
            p.request_id.clone(),
            p.client_id.clone(),
            p.model.clone(),
            p.model_version.clone(),
            p.latency_ms.clone(),
            p.prediction_label.clone(),
            p.prediction_score.clone(),
            p.probs.clone(),
        ];
        for f in &self.features {
            paths.push(format!("{}.{}", p.features, f.name));
        }
        paths
    }
}

pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn probs_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Float64, true)))
}

fn feature_type(kind: FeatureKind) -> DataType {
    match kind {
        FeatureKind::Numerical => DataType::Float64,
        FeatureKind::Categorical => DataType::Utf8,
    }
}

/// A record that could not become a row.
#[derive(Debug, Clone)]
pub struct DeadRecord {
    /// Index of the record in its raw batch (`usize::MAX` for oversized ones).
    pub index: usize,
    pub position: u64,
    pub reason: String,
    pub raw: Vec<u8>,
}

/// The result of decoding one raw batch.
#[derive(Debug)]
pub struct Decoded {
    /// Good rows with the `events` schema (None when there are none).
    pub events: Option<RecordBatch>,
    /// For each row of `events`, its record's index in the raw batch.
    pub rows: Vec<u32>,
    pub dead: Vec<DeadRecord>,
}

/// The nested schema the JSON is read with, and how to flatten it into `events`.
struct Decoders {
    json_schema: SchemaRef,
    paths: Vec<Vec<String>>,
    events_schema: SchemaRef,
    /// `events_schema` with every column nullable: rows lacking a required value are
    /// dead-lettered after flattening.
    relaxed_schema: SchemaRef,
}

impl Decoders {
    fn new(config: &DecodeConfig) -> Result<Self, String> {
        let events_schema = config.events_schema();
        let paths: Vec<Vec<String>> = config
            .column_paths()
            .iter()
            .map(|p| p.split('.').map(str::to_owned).collect())
            .collect();
        let mut root = Node::Branch(Vec::new());
        for (path, field) in paths.iter().zip(events_schema.fields()) {
            if path.iter().any(String::is_empty) {
                return Err(format!(
                    "decode.fields: path {:?} of column {} has an empty part",
                    path.join("."),
                    field.name()
                ));
            }
            root.insert(path, field.data_type().clone()).map_err(|_| {
                format!(
                    "decode.fields: path {:?} of column {} clashes with another column's path \
                     (used twice, or both as a value and as an object)",
                    path.join("."),
                    field.name()
                )
            })?;
        }
        let Node::Branch(children) = root else {
            unreachable!("root is a branch")
        };
        let json_schema = Arc::new(Schema::new(Node::fields(&children)));
        let relaxed_schema = Arc::new(Schema::new(
            events_schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
                .collect::<Fields>(),
        ));
        Ok(Self {
            json_schema,
            paths,
            events_schema,
            relaxed_schema,
        })
    }

    fn decoder(&self, rows: usize) -> Decoder {
        ReaderBuilder::new(self.json_schema.clone())
            .with_batch_size(rows.max(1) + 1)
            .with_coerce_primitive(true)
            .build_decoder()
            .expect("the JSON schema is built from supported types")
    }

    /// Picks each events column out of the nested batch (with the relaxed schema); a
    /// value under a null parent object is null.
    fn flatten(&self, nested: &RecordBatch) -> Result<RecordBatch, String> {
        let columns = self
            .paths
            .iter()
            .map(|path| {
                let mut array: ArrayRef = nested
                    .column_by_name(&path[0])
                    .cloned()
                    .ok_or_else(|| format!("missing column {}", path[0]))?;
                let mut nulls: Option<NullBuffer> = array.logical_nulls();
                for part in &path[1..] {
                    let child = array
                        .as_struct()
                        .column_by_name(part)
                        .cloned()
                        .ok_or_else(|| format!("missing field {part}"))?;
                    nulls = NullBuffer::union(nulls.as_ref(), child.logical_nulls().as_ref());
                    array = child;
                }
                if nulls.as_ref().map(|n| n.null_count())
                    != array.logical_nulls().map(|n| n.null_count())
                {
                    let data = array.to_data().into_builder().nulls(nulls).build();
                    array = make_array(data.map_err(|e| e.to_string())?);
                }
                Ok(array)
            })
            .collect::<Result<Vec<_>, String>>()?;
        RecordBatch::try_new(self.relaxed_schema.clone(), columns).map_err(|e| e.to_string())
    }
}

enum Node {
    Leaf(String, DataType),
    Branch(Vec<(String, Node)>),
}

impl Node {
    fn insert(&mut self, path: &[String], dt: DataType) -> Result<(), String> {
        let Node::Branch(children) = self else {
            return Err(path.join("."));
        };
        let (head, rest) = path.split_first().expect("paths are non-empty");
        let existing = children.iter_mut().find(|(n, _)| n == head);
        match (existing, rest.is_empty()) {
            (Some(_), true) => Err(path.join(".")),
            (Some((_, node)), false) => node.insert(rest, dt),
            (None, true) => {
                children.push((head.clone(), Node::Leaf(head.clone(), dt)));
                Ok(())
            }
            (None, false) => {
                let mut node = Node::Branch(Vec::new());
                node.insert(rest, dt)?;
                children.push((head.clone(), node));
                Ok(())
            }
        }
    }

    fn fields(children: &[(String, Node)]) -> Vec<Field> {
        children
            .iter()
            .map(|(name, node)| match node {
                Node::Leaf(n, dt) => Field::new(n, dt.clone(), true),
                Node::Branch(c) => {
                    Field::new(name, DataType::Struct(Fields::from(Node::fields(c))), true)
                }
            })
            .collect()
    }
}

/// Decodes raw batches; one per pipeline (it holds no per-batch state).
///
/// Each record is first tried by the direct decoder ([`direct`]); those it hands back
/// (unusual or bad ones) go through arrow-json, which decodes them or says why not.
pub struct BatchDecoder {
    decoders: Decoders,
    direct: Option<direct::Plan>,
}

impl BatchDecoder {
    pub fn new(config: &DecodeConfig) -> Result<Self, String> {
        let decoders = Decoders::new(config)?;
        let direct = direct::Plan::new(&decoders.paths, decoders.relaxed_schema.clone());
        Ok(Self { decoders, direct })
    }

    /// A decoder that reads every record with arrow-json (the reference the direct
    /// decoder is tested against).
    #[cfg(test)]
    fn arrow_only(config: &DecodeConfig) -> Self {
        Self {
            direct: None,
            ..Self::new(config).expect("valid config")
        }
    }

    pub fn events_schema(&self) -> SchemaRef {
        self.decoders.events_schema.clone()
    }

    pub fn decode(&self, raw: &RawBatch) -> Decoded {
        let mut dead: Vec<DeadRecord> = raw
            .oversized
            .iter()
            .map(|o| DeadRecord {
                index: usize::MAX,
                position: o.position,
                reason: format!("record of {} bytes is over max_record_bytes", o.len),
                raw: o.head.clone(),
            })
            .collect();
        let mut parts = Vec::new();
        let rest = self.decode_direct(raw, &mut parts);
        if rest.len() == raw.len() {
            self.decode_arrow(raw, &mut parts, &mut dead);
        } else if !rest.is_empty() {
            let mut sub = RawBatch::with_capacity(raw.partition, (0, rest.len()));
            for &i in &rest {
                sub.push(raw.record(i), raw.positions[i]);
            }
            let mut sub_parts = Vec::new();
            let first_dead = dead.len();
            self.decode_arrow(&sub, &mut sub_parts, &mut dead);
            for d in &mut dead[first_dead..] {
                d.index = rest[d.index];
            }
            for (batch, rows) in sub_parts {
                parts.push((batch, rows.into_iter().map(|j| rest[j]).collect()));
            }
        }
        let (events, rows) = self.finish(raw, parts, &mut dead);
        dead.sort_by_key(|d| d.position);
        Decoded { events, rows, dead }
    }

    /// Decodes the records the direct decoder accepts into one part; returns the
    /// others' indices.
    fn decode_direct(
        &self,
        raw: &RawBatch,
        parts: &mut Vec<(RecordBatch, Vec<usize>)>,
    ) -> Vec<usize> {
        let Some(plan) = &self.direct else {
            return (0..raw.len()).collect();
        };
        let mut batch = direct::DirectBatch::new(plan, raw.len());
        let mut rows = Vec::with_capacity(raw.len());
        let mut rest = Vec::new();
        for i in 0..raw.len() {
            if batch.push(raw.record(i)) {
                rows.push(i);
            } else {
                rest.push(i);
            }
        }
        debug_assert_eq!(batch.rows(), rows.len());
        if let Some(b) = batch.finish() {
            parts.push((b, rows));
        }
        rest
    }

    /// Decodes `raw` with arrow-json into flat parts, dead-lettering what it refuses.
    fn decode_arrow(
        &self,
        raw: &RawBatch,
        parts: &mut Vec<(RecordBatch, Vec<usize>)>,
        dead: &mut Vec<DeadRecord>,
    ) {
        let mut nested = Vec::new();
        self.scan(raw, &mut nested, dead);
        for (batch, idx) in nested {
            match self.decoders.flatten(&batch) {
                Ok(b) => parts.push((b, idx)),
                Err(e) => {
                    for i in idx {
                        dead.push(dead_record(raw, i, format!("cannot read record: {e}")));
                    }
                }
            }
        }
    }

    /// Feeds records one by one, dead-lettering those that are not exactly one complete
    /// JSON value. A bad record leaves the decoder broken, so the good records before it
    /// (a contiguous run) are decoded again in one call and flushed; each good record is
    /// decoded at most twice, whatever the share of bad ones.
    fn scan(
        &self,
        raw: &RawBatch,
        parts: &mut Vec<(RecordBatch, Vec<usize>)>,
        dead: &mut Vec<DeadRecord>,
    ) {
        let mut decoder = self.decoders.decoder(raw.len());
        let mut run: Vec<usize> = Vec::with_capacity(raw.len());
        for i in 0..raw.len() {
            let before = decoder.len();
            // arrow-json describes a bad value by printing it recursively: a record
            // nested 10^5 deep would overflow the stack before it could be refused.
            let problem = too_deep(raw.record(i)).or_else(|| match decoder.decode(raw.record(i)) {
                Err(e) => Some(format!("invalid JSON: {}", strip_prefix(&e.to_string()))),
                Ok(_) if decoder.has_partial_record() => {
                    Some("invalid JSON: record ends inside a value (truncated?)".to_owned())
                }
                Ok(_) if decoder.len() != before + 1 => Some(format!(
                    "record holds {} JSON values, expected one object",
                    decoder.len() - before
                )),
                Ok(_) => None,
            });
            let Some(reason) = problem else {
                run.push(i);
                continue;
            };
            dead.push(dead_record(raw, i, reason));
            if let (Some(&first), Some(&last)) = (run.first(), run.last()) {
                let mut fresh = self.decoders.decoder(run.len());
                let bytes = &raw.buf[raw.start(first)..raw.ends[last]];
                match fresh.decode(bytes) {
                    Ok(_) => self.flush_run(raw, fresh, std::mem::take(&mut run), parts, dead),
                    Err(_) => self.decode_rows(raw, &std::mem::take(&mut run), parts, dead),
                }
            }
            decoder = self.decoders.decoder(raw.len() - i);
        }
        self.flush_run(raw, decoder, run, parts, dead);
    }

    /// Flushes a decoder holding the records `rows`; on a type error, isolates it.
    fn flush_run(
        &self,
        raw: &RawBatch,
        mut decoder: Decoder,
        rows: Vec<usize>,
        parts: &mut Vec<(RecordBatch, Vec<usize>)>,
        dead: &mut Vec<DeadRecord>,
    ) {
        if rows.is_empty() {
            return;
        }
        match decoder.flush() {
            Ok(Some(batch)) if batch.num_rows() == rows.len() => parts.push((batch, rows)),
            _ => self.decode_rows(raw, &rows, parts, dead),
        }
    }

    /// Decodes `rows` (syntactically valid records); on a type error, splits them into
    /// eighths until each bad record is alone.
    fn decode_rows(
        &self,
        raw: &RawBatch,
        rows: &[usize],
        out: &mut Vec<(RecordBatch, Vec<usize>)>,
        dead: &mut Vec<DeadRecord>,
    ) {
        if rows.is_empty() {
            return;
        }
        let mut decoder = self.decoders.decoder(rows.len());
        let mut result = Ok(());
        for &i in rows {
            if let Err(e) = decoder.decode(raw.record(i)) {
                result = Err(e);
                break;
            }
        }
        let flushed = result.and_then(|_| decoder.flush());
        match flushed {
            Ok(Some(batch)) if batch.num_rows() == rows.len() => out.push((batch, rows.to_vec())),
            Ok(_) if rows.len() == 1 => dead.push(dead_record(
                raw,
                rows[0],
                "record is not a JSON object".to_owned(),
            )),
            Err(e) if rows.len() == 1 => dead.push(dead_record(
                raw,
                rows[0],
                format!("wrong type: {}", strip_prefix(&e.to_string())),
            )),
            _ => {
                let chunk = rows.len().div_ceil(8);
                for part in rows.chunks(chunk) {
                    self.decode_rows(raw, part, out, dead);
                }
            }
        }
    }

    /// Joins the decoded parts into `events`, in record order, and dead-letters rows
    /// without an event time or client id.
    fn finish(
        &self,
        raw: &RawBatch,
        mut parts: Vec<(RecordBatch, Vec<usize>)>,
        dead: &mut Vec<DeadRecord>,
    ) -> (Option<RecordBatch>, Vec<u32>) {
        if parts.is_empty() {
            return (None, Vec::new());
        }
        let mut rows: Vec<u32> = parts
            .iter()
            .flat_map(|(_, idx)| idx.iter().map(|&i| i as u32))
            .collect();
        let mut batch = if parts.len() == 1 {
            parts.pop().expect("one part").0
        } else {
            let batches: Vec<RecordBatch> = parts.into_iter().map(|(b, _)| b).collect();
            concat_batches(&batches[0].schema(), &batches).expect("parts share one schema")
        };
        if !rows.is_sorted() {
            let mut order: Vec<u32> = (0..rows.len() as u32).collect();
            order.sort_unstable_by_key(|&r| rows[r as usize]);
            batch =
                take_record_batch(&batch, &UInt32Array::from(order)).expect("indices are in range");
            rows.sort_unstable();
        }
        // A null buffer with no nulls in it needs no filtering either.
        let ts_ok = batch
            .column(0)
            .logical_nulls()
            .filter(|n| n.null_count() > 0);
        let client_ok = batch
            .column(2)
            .logical_nulls()
            .filter(|n| n.null_count() > 0);
        if ts_ok.is_none() && client_ok.is_none() {
            return (Some(self.with_strict_schema(batch)), rows);
        }
        let mut keep = Vec::with_capacity(rows.len());
        let mut kept_rows = Vec::with_capacity(rows.len());
        let paths = &self.decoders.paths;
        for (r, &i) in rows.iter().enumerate() {
            let reason = if ts_ok.as_ref().is_some_and(|n| n.is_null(r)) {
                Some(format!("no event time at {}", paths[0].join(".")))
            } else if client_ok.as_ref().is_some_and(|n| n.is_null(r)) {
                Some(format!("no client id at {}", paths[2].join(".")))
            } else {
                None
            };
            keep.push(reason.is_none());
            match reason {
                Some(reason) => dead.push(dead_record(raw, i as usize, reason)),
                None => kept_rows.push(i),
            }
        }
        let filtered = filter_record_batch(&batch, &BooleanArray::from(keep))
            .expect("mask has one value per row");
        if filtered.num_rows() == 0 {
            return (None, Vec::new());
        }
        (Some(self.with_strict_schema(filtered)), kept_rows)
    }

    fn with_strict_schema(&self, batch: RecordBatch) -> RecordBatch {
        RecordBatch::try_new(
            self.decoders.events_schema.clone(),
            batch.columns().to_vec(),
        )
        .expect("required columns have no nulls after filtering")
    }
}

fn dead_record(raw: &RawBatch, i: usize, reason: String) -> DeadRecord {
    DeadRecord {
        index: i,
        position: raw.positions[i],
        reason,
        raw: raw.record(i).to_vec(),
    }
}

/// Deepest nesting of arrays and objects a record may have (the design's records
/// need 3).
const MAX_DEPTH: usize = 64;

/// The reason a record is nested deeper than [`MAX_DEPTH`], if it is. Records with
/// fewer openers than that (all but hostile ones) are not scanned byte by byte.
fn too_deep(b: &[u8]) -> Option<String> {
    memchr::memchr2_iter(b'[', b'{', b).nth(MAX_DEPTH)?;
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &c in b {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(format!(
                        "invalid JSON: nested deeper than {MAX_DEPTH} levels"
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn strip_prefix(msg: &str) -> &str {
    msg.strip_prefix("Json error: ")
        .or_else(|| msg.strip_prefix("Parser error: "))
        .unwrap_or(msg)
}

/// Byte equality without a call to `memcmp`: for keys and names a few bytes long,
/// where the call costs more than the comparison.
#[inline]
pub(crate) fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut ca, mut cb) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ca).zip(&mut cb) {
        let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().expect("chunks of eight"));
        if word(x) != word(y) {
            return false;
        }
    }
    let mut same = true;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        same &= x == y;
    }
    same
}

#[cfg(test)]
mod tests {
    use super::*;

    use datafusion::arrow::array::{Float64Array, StringArray, TimestampMillisecondArray};

    /// Equal exactly when the bytes are: every length around the eight-byte words,
    /// one byte changed at each position, and different lengths.
    #[test]
    fn same_bytes_is_byte_equality() {
        for n in 0..=20usize {
            let a: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37)).collect();
            assert!(same_bytes(&a, &a.clone()));
            for k in 0..n {
                let mut b = a.clone();
                b[k] ^= 1;
                assert!(!same_bytes(&a, &b), "length {n}, byte {k}");
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!same_bytes(&a, &longer) && !same_bytes(&longer, &a));
        }
    }

    fn config() -> DecodeConfig {
        DecodeConfig {
            features: vec![
                FeatureDecl {
                    name: "amount".into(),
                    kind: FeatureKind::Numerical,
                },
                FeatureDecl {
                    name: "country".into(),
                    kind: FeatureKind::Categorical,
                },
            ],
            ..Default::default()
        }
    }

    fn raw(lines: &[&[u8]]) -> RawBatch {
        let mut b = RawBatch::new(0);
        for (i, l) in lines.iter().enumerate() {
            b.push(l, i as u64 * 100);
        }
        b
    }

    const GOOD: &[u8] = br#"{"ts":"2026-11-21T10:00:00.123Z","request_id":"r-1","client_id":"key-42","model":"fraud","model_version":"3","features":{"amount":12.5,"country":"DE","age":41},"prediction":{"label":"fraud","score":0.93,"probs":[0.07,0.93]},"latency_ms":4.2}"#;

    #[test]
    fn decodes_the_design_record_into_flat_columns() {
        let d = BatchDecoder::new(&config()).unwrap();
        let out = d.decode(&raw(&[GOOD, br#"{"ts":1795255200000,"client_id":42}"#]));
        assert!(out.dead.is_empty(), "{:?}", out.dead);
        let b = out.events.unwrap();
        assert_eq!(b.num_rows(), 2);
        let ts = b
            .column(0)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        assert_eq!(ts.value(0), 1_795_255_200_123);
        assert_eq!(ts.value(1), 1_795_255_200_000);
        let client = b.column(2).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(client.value(1), "42");
        let score = b.column_by_name("prediction_score").unwrap();
        let score = score.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(score.value(0), 0.93);
        assert!(score.is_null(1));
        let amount = b.column_by_name("amount").unwrap();
        assert_eq!(
            amount
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .value(0),
            12.5
        );
        assert_eq!(out.rows, vec![0, 1]);
    }

    #[test]
    fn bad_records_are_dead_lettered_with_reasons_and_good_ones_kept() {
        let d = BatchDecoder::new(&config()).unwrap();
        let input: Vec<&[u8]> = vec![
            GOOD,
            br#"{"ts":"2026-11-21T10:00:00Z","client_id":"a","features":{"amount":"lots"}}"#,
            br#"{"ts":"2026-11-21T10:00:00Z","client_id":"a","cl"#,
            GOOD,
            b"\xff\xfe\x00garbage",
            br#"{"ts":"2026-11-21T10:00:00Z","client_id":"a","latency_ms":NaN}"#,
            br#"{"ts":"2026-11-21T10:00:00Z"}"#,
            br#"{"client_id":"x"}"#,
            br#"{"ts":"2026-11-21T10:00:00Z","client_id":"a"} {"ts":"2026-11-21T10:00:00Z","client_id":"b"}"#,
            b"[1,2,3]",
            b"42",
            GOOD,
        ];
        let out = d.decode(&raw(&input));
        assert_eq!(out.rows, vec![0, 3, 11]);
        let reasons: Vec<(u64, &str)> = out
            .dead
            .iter()
            .map(|d| (d.position, d.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 9, "{reasons:?}");
        assert!(reasons[0].1.starts_with("wrong type"), "{reasons:?}");
        assert!(
            reasons[0].1.contains("lots") || reasons[0].1.contains("amount"),
            "{reasons:?}"
        );
        assert!(reasons[1].1.contains("truncated"), "{reasons:?}");
        assert!(reasons[4].1.contains("no client id"), "{reasons:?}");
        assert!(reasons[5].1.contains("no event time"), "{reasons:?}");
        assert!(reasons[6].1.contains("2 JSON values"), "{reasons:?}");
        assert_eq!(out.events.unwrap().num_rows(), 3);
    }

    #[test]
    fn a_string_holding_a_number_is_that_number_and_any_other_string_a_bad_record() {
        let d = BatchDecoder::new(&config()).unwrap();
        let out = d.decode(&raw(&[
            br#"{"ts":1795255200000,"client_id":"a","features":{"amount":"12.5"},"prediction":{"score":"0.93"}}"#,
            br#"{"ts":1795255200000,"client_id":"a","features":{"amount":"12.5 EUR"}}"#,
        ]));
        assert_eq!(out.rows, vec![0]);
        assert_eq!(out.dead.len(), 1, "{:?}", out.dead);
        assert!(
            out.dead[0].reason.starts_with("wrong type"),
            "{:?}",
            out.dead
        );
        let b = out.events.unwrap();
        let number = |name: &str| {
            b.column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .value(0)
        };
        assert_eq!(number("amount"), 12.5);
        assert_eq!(number("prediction_score"), 0.93);
    }

    #[test]
    fn records_nested_too_deep_are_refused_without_recursion() {
        let d = BatchDecoder::new(&config()).unwrap();
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let in_features = format!(
            r#"{{"ts":1795255200000,"client_id":"a","features":{{"x":{}1{}}}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        // Brackets inside a string are text, not nesting.
        let in_string = format!(
            r#"{{"ts":1795255200000,"client_id":"{}"}}"#,
            "[".repeat(1000)
        );
        let out = d.decode(&raw(&[
            deep.as_bytes(),
            in_features.as_bytes(),
            in_string.as_bytes(),
            GOOD,
        ]));
        let reasons: Vec<&str> = out.dead.iter().map(|x| x.reason.as_str()).collect();
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons.iter().all(|r| r.contains("nested deeper than 64")),
            "{reasons:?}"
        );
        assert_eq!(out.events.unwrap().num_rows(), 2);
    }

    /// Values of every JSON type (and a few that are not JSON) for each field.
    const VALUES: &[&str] = &[
        "null",
        "true",
        "false",
        "0",
        "-0",
        "12.5",
        "-3e2",
        "1E400",
        "7",
        "01",
        "1.",
        ".5",
        "-",
        "9223372036854775808",
        "1795255200123",
        "1795255200123.5",
        r#""""#,
        r#""DE""#,
        r#""lots""#,
        r#""12.5""#,
        r#""a\"b""#,
        r#""\u00e9t\u00e9""#,
        r#""é""#,
        "\"\u{1}\"",
        r#""2026-11-21T10:00:00.123Z""#,
        r#""2026-11-21 10:00:00""#,
        r#""2026-13-40T00:00:00Z""#,
        "[]",
        "[0.1,0.9]",
        "[0.1,null]",
        r#"["0.5"]"#,
        "[[1]]",
        "{}",
        r#"{"x":1}"#,
        "NaN",
        r#"{"amount":1,"amount":2}"#,
        r#"{"label":"x","score":0.5,"probs":[1,2]}"#,
    ];
    const KEYS: &[&str] = &[
        "ts",
        "client_id",
        "request_id",
        "model",
        "latency_ms",
        "features",
        "prediction",
        "amount",
        "country",
        "label",
        "score",
        "probs",
        "extra",
        r"t\u0073",
        "meta",
    ];

    /// A record of random keys and values, often nested where the schema nests.
    fn random_record(rng: &mut impl rand::Rng) -> String {
        let mut fields = vec![
            format!(r#""ts":{}"#, VALUES[rng.random_range(0..VALUES.len())]),
            format!(
                r#""client_id":{}"#,
                VALUES[rng.random_range(0..VALUES.len())]
            ),
        ];
        if rng.random_bool(0.7) {
            fields = vec![
                r#""ts":"2026-11-21T10:00:00.123Z""#.into(),
                r#""client_id":"k""#.into(),
            ];
        }
        for _ in 0..rng.random_range(0..6) {
            let key = KEYS[rng.random_range(0..KEYS.len())];
            let value = match key {
                "features" if rng.random_bool(0.7) => format!(
                    r#"{{"amount":{},"country":{}}}"#,
                    VALUES[rng.random_range(0..VALUES.len())],
                    VALUES[rng.random_range(0..VALUES.len())]
                ),
                "prediction" if rng.random_bool(0.7) => format!(
                    r#"{{"label":{},"probs":{}}}"#,
                    VALUES[rng.random_range(0..VALUES.len())],
                    VALUES[rng.random_range(0..VALUES.len())]
                ),
                _ => VALUES[rng.random_range(0..VALUES.len())].to_owned(),
            };
            fields.insert(
                rng.random_range(0..=fields.len()),
                format!(r#""{key}":{value}"#),
            );
        }
        let sep = [",", " , ", ",\t"][rng.random_range(0..3)];
        format!("{{{}}}", fields.join(sep))
    }

    /// One random edit of a record's bytes.
    fn mutate(rng: &mut impl rand::Rng, record: &[u8]) -> Vec<u8> {
        const BYTES: &[u8] = b"{}[]\":,\\ 0123456789.-+eEnultrfa\x01\xff\xc3";
        let mut r = record.to_vec();
        let at = rng.random_range(0..=r.len());
        match rng.random_range(0..4) {
            0 if at < r.len() => {
                r.remove(at);
            }
            1 => r.insert(at, BYTES[rng.random_range(0..BYTES.len())]),
            2 if at < r.len() => r[at] = BYTES[rng.random_range(0..BYTES.len())],
            _ => r.truncate(at),
        }
        r
    }

    fn same_results(config: &DecodeConfig, records: &[Vec<u8>]) -> usize {
        let batch = raw(&records.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let direct = BatchDecoder::new(config).unwrap();
        let reference = BatchDecoder::arrow_only(config);
        let (a, b) = (direct.decode(&batch), reference.decode(&batch));
        assert_eq!(a.rows, b.rows);
        assert_eq!(a.events, b.events);
        let dead = |d: &Decoded| -> Vec<(usize, u64, String, Vec<u8>)> {
            d.dead
                .iter()
                .map(|x| (x.index, x.position, x.reason.clone(), x.raw.clone()))
                .collect()
        };
        assert_eq!(dead(&a), dead(&b));
        records.len() - direct.decode_direct(&batch, &mut Vec::new()).len()
    }

    #[test]
    fn the_direct_decoder_gives_what_arrow_json_gives_on_any_record() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(22);
        let mut nested = config();
        nested.fields.client_id = "meta.caller".into();
        nested.fields.probs = "probs".into();
        let designed: Vec<Vec<u8>> = (0..4000)
            .map(|_| random_record(&mut rng).into_bytes())
            .collect();
        let mut mutated: Vec<Vec<u8>> = Vec::new();
        for _ in 0..4000 {
            let mut r = GOOD.to_vec();
            for _ in 0..rng.random_range(1..3) {
                r = mutate(&mut rng, &r);
            }
            mutated.push(r);
        }
        for cfg in [config(), nested] {
            for records in [&designed, &mutated] {
                let direct = same_results(&cfg, records);
                // Both paths are exercised: neither takes (almost) everything.
                assert!(
                    direct > records.len() / 20 && direct < records.len() * 19 / 20,
                    "{direct} of {} read directly",
                    records.len()
                );
            }
        }
        // A list as deep as a record may nest, and one level deeper.
        for parts in [63, 64] {
            let mut deep = config();
            deep.fields.probs = vec!["a"; parts].join(".");
            let record = format!(
                r#"{{"ts":1,"client_id":"k",{}[0.5]{}}}"#,
                r#""a":{"#.repeat(parts - 1).replacen('{', "", 0) + r#""a":"#,
                "}".repeat(parts - 1)
            );
            let direct = same_results(&deep, &[record.into_bytes()]);
            assert_eq!(direct, usize::from(parts == 63));
        }
        // Records the direct decoder takes, in small batches mixed with ones it leaves.
        for chunk in mutated.chunks(7) {
            same_results(&config(), chunk);
        }
    }

    #[test]
    fn field_paths_are_configurable() {
        let mut c = config();
        c.fields.client_id = "meta.caller".into();
        c.fields.ts = "time".into();
        let d = BatchDecoder::new(&c).unwrap();
        let out = d.decode(&raw(&[
            br#"{"time":5,"meta":{"caller":"k"}}"#,
            br#"{"time":6,"meta":null}"#,
        ]));
        assert_eq!(out.rows, vec![0]);
        assert!(out.dead[0].reason.contains("meta.caller"));
    }

    #[test]
    fn conflicting_paths_are_a_config_error() {
        let mut c = config();
        c.fields.model = "features".into();
        assert!(c.validate().unwrap_err().contains("features"));
    }
}
