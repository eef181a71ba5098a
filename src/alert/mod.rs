//! Alerts: rule results → alert instances with Prometheus semantics, in event time.
//!
//! Identity = rule id + the `labels_from` values of a result row. An instance goes
//! inactive → pending → firing → resolved, with `for` (how long the condition must hold)
//! and `keep_firing_for` (how long it keeps firing once the condition clears), measured
//! in window end times, never the wall clock. Its id is a hash of the rule id, the sorted
//! labels and `starts_at`, so a replay of the same records gives the same ids; each
//! notification is identified by (id, state).
//!
//! Delivery lives in the receiver modules (`stdout`, `jsonl`); this module decides what
//! to say, not where.

pub mod jsonl;
pub mod kafka;
pub mod stdout;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type, UInt64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::rules::template::{display, render};
use crate::rules::{Rule, Severity};
use crate::stable_hash::hex;
use crate::time::rfc3339;
use crate::window::ClosedWindow;

/// `alerts:` in the config.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Print one line per state change on standard output.
    #[serde(default = "yes")]
    pub stdout: bool,
    /// Append one JSON object per state change to this file.
    #[serde(default)]
    pub jsonl: Option<PathBuf>,
    /// Send each state change to this Kafka topic, keyed by alert id.
    #[serde(default)]
    pub kafka: Option<crate::kafka::KafkaOutConfig>,
    /// Alert instances tracked per rule; result rows beyond it are counted and logged.
    #[serde(default = "default_max_alerts")]
    pub max_alerts_per_rule: usize,
    /// Request ids of matching records kept as evidence.
    #[serde(default = "default_samples")]
    pub sample_request_ids: usize,
}

fn yes() -> bool {
    true
}
fn default_max_alerts() -> usize {
    1000
}
fn default_samples() -> usize {
    5
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            stdout: true,
            jsonl: None,
            kafka: None,
            max_alerts_per_rule: default_max_alerts(),
            sample_request_ids: default_samples(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Firing,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Firing => "firing",
            State::Resolved => "resolved",
        }
    }
}

/// Why an alert is raised: values and where they came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Evidence {
    /// The result row's columns.
    pub values: serde_json::Map<String, Value>,
    /// A few request ids of the window's records that match the alert's labels (the
    /// smallest ones, so the choice does not depend on arrival order).
    pub sample_request_ids: Vec<String>,
    pub window_records: u64,
    pub window_bad_records: u64,
    pub window_late_records: u64,
    /// Per source partition, the range of positions the window's rows came from.
    pub sources: Vec<SourceRange>,
    /// On `resolved`: whether the alert had fired (a pending alert that cleared did not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fired: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SourceRange {
    pub source: String,
    pub first: u64,
    pub last: u64,
}

/// One state change of one alert: what every receiver gets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Notification {
    pub id: String,
    /// Idempotency key: `id:state`.
    pub notification_id: String,
    pub rule_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub state: State,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub window_start: String,
    pub window_end: String,
    pub starts_at: String,
    /// Set on `resolved`; null before.
    pub ends_at: Option<String>,
    pub evidence: Evidence,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub tags: BTreeMap<String, Vec<String>>,
    /// Window end in epoch milliseconds (event time of the evaluation).
    #[serde(skip)]
    pub at_ms: i64,
}

/// An alert instance that is pending or firing.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Active {
    labels: BTreeMap<String, String>,
    state: State,
    active_at: i64,
    keep_firing_since: Option<i64>,
    values: serde_json::Map<String, Value>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct RuleState {
    #[serde(with = "keyed")]
    active: HashMap<Vec<String>, Active>,
    error: Option<Active>,
}

/// JSON maps need string keys: the label-value keys are stored as a list of pairs.
mod keyed {
    use super::Active;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::HashMap;

    pub fn serialize<S: Serializer>(
        m: &HashMap<Vec<String>, Active>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut pairs: Vec<(&Vec<String>, &Active)> = m.iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        pairs.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<HashMap<Vec<String>, Active>, D::Error> {
        Ok(Vec::<(Vec<String>, Active)>::deserialize(d)?
            .into_iter()
            .collect())
    }
}

/// Alert state of one rule in a checkpoint, tied to the rule's text.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuleAlertsState {
    rule_id: String,
    fingerprint: String,
    state: RuleState,
}

/// Alert state of every rule.
pub struct AlertBook {
    rules: Vec<RuleState>,
    max_per_rule: usize,
    samples: usize,
    /// Result rows beyond `max_alerts_per_rule`, over the run.
    pub dropped_rows: u64,
}

/// The rule id under which failing rules raise alerts.
pub const RULE_ERROR_ID: &str = "inferwatch.rule_error";

/// Deterministic alert id: rule id, sorted labels and the start (event) time.
pub fn alert_id(rule_id: &str, labels: &BTreeMap<String, String>, starts_at_ms: i64) -> String {
    let mut h = Sha256::new();
    h.update(rule_id.as_bytes());
    for (k, v) in labels {
        h.update([0u8]);
        h.update(k.as_bytes());
        h.update([1u8]);
        h.update(v.as_bytes());
    }
    h.update([2u8]);
    h.update(starts_at_ms.to_be_bytes());
    hex(&h.finalize()[..16])
}

/// Context shared by the notifications of one rule evaluation.
struct Eval<'a> {
    rule: &'a Rule,
    window: &'a ClosedWindow,
    sources: &'a [String],
    samples: usize,
}

impl Eval<'_> {
    fn notify(&self, rule_id: &str, a: &Active, state: State) -> Notification {
        let id = alert_id(rule_id, &a.labels, a.active_at);
        let w = self.window;
        let is_error = rule_id == RULE_ERROR_ID;
        let annotations = if is_error {
            a.values
                .get("error")
                .map(|e| BTreeMap::from([("summary".to_owned(), display(e))]))
                .unwrap_or_default()
        } else {
            render_annotations(&self.rule.def.annotations, &a.values)
        };
        Notification {
            notification_id: format!("{id}:{}", state.as_str()),
            id,
            rule_id: rule_id.to_owned(),
            name: if is_error {
                Some("A detection rule failed".into())
            } else {
                self.rule.def.name.clone()
            },
            state,
            severity: if is_error {
                Severity::High
            } else {
                self.rule.def.severity
            },
            labels: a.labels.clone(),
            annotations,
            window_start: rfc3339(w.start_ms),
            window_end: rfc3339(w.end_ms),
            starts_at: rfc3339(a.active_at),
            ends_at: (state == State::Resolved).then(|| rfc3339(w.end_ms)),
            evidence: Evidence {
                values: without_request_ids(&a.values),
                sample_request_ids: if is_error || state == State::Resolved {
                    Vec::new()
                } else {
                    chosen_request_ids(&a.values, self.samples)
                        .unwrap_or_else(|| sample_request_ids(w, &a.labels, self.samples))
                },
                window_records: w.stats.records,
                window_bad_records: w.stats.bad,
                window_late_records: w.stats.late,
                sources: w
                    .ranges
                    .iter()
                    .map(|(&pid, &(first, last))| SourceRange {
                        source: self
                            .sources
                            .get(pid)
                            .cloned()
                            .unwrap_or_else(|| pid.to_string()),
                        first,
                        last,
                    })
                    .collect(),
                fired: None,
            },
            tags: if is_error {
                BTreeMap::new()
            } else {
                self.rule.def.tags.clone()
            },
            at_ms: w.end_ms,
        }
    }
}

impl AlertBook {
    pub fn new(rules: usize, config: &AlertsConfig) -> Self {
        Self {
            rules: (0..rules).map(|_| RuleState::default()).collect(),
            max_per_rule: config.max_alerts_per_rule.max(1),
            samples: config.sample_request_ids,
            dropped_rows: 0,
        }
    }

    /// Applies one evaluation of rule `idx` at the window's end; returns the state
    /// changes.
    pub fn evaluate(
        &mut self,
        idx: usize,
        rule: &Rule,
        window: &ClosedWindow,
        sources: &[String],
        result: Result<&[RecordBatch], &str>,
    ) -> Vec<Notification> {
        let ev = Eval {
            rule,
            window,
            sources,
            samples: self.samples,
        };
        let t = window.end_ms;
        let mut out = Vec::new();
        let state = &mut self.rules[idx];
        let rows = match result {
            Err(e) => {
                let mut values = serde_json::Map::new();
                values.insert("error".into(), Value::String(e.to_owned()));
                if state.error.is_none() {
                    let a = Active {
                        labels: BTreeMap::from([("rule_id".to_owned(), rule.def.id.clone())]),
                        state: State::Firing,
                        active_at: t,
                        keep_firing_since: None,
                        values,
                    };
                    out.push(ev.notify(RULE_ERROR_ID, &a, State::Firing));
                    state.error = Some(a);
                }
                return out;
            }
            Ok(batches) => rows_of(batches),
        };
        if let Some(a) = state.error.take() {
            out.push(ev.notify(RULE_ERROR_ID, &a, State::Resolved));
        }
        if !rule.def.alerts() {
            // A recording rule: evaluated for its side effects (re-scoring), no alerts;
            // its query errors are still alerts, as for any rule.
            return out;
        }
        let mut seen: BTreeMap<Vec<String>, serde_json::Map<String, Value>> = BTreeMap::new();
        for row in rows {
            let key: Vec<String> = rule
                .def
                .labels_from
                .iter()
                .map(|c| row.get(c).map(display).unwrap_or_default())
                .collect();
            seen.entry(key).or_insert(row);
        }
        if seen.len() > self.max_per_rule {
            let extra = seen.len() - self.max_per_rule;
            self.dropped_rows += extra as u64;
            tracing::warn!(rule = %rule.def.id, extra, "rule returned more rows than alerts.max_alerts_per_rule; the rest are not tracked");
            while seen.len() > self.max_per_rule {
                seen.pop_last();
            }
        }
        let (for_ms, keep_ms) = (rule.for_ms(), rule.keep_firing_ms());
        for (key, values) in &seen {
            match state.active.get_mut(key) {
                Some(a) => {
                    a.values = values.clone();
                    a.keep_firing_since = None;
                    if a.state == State::Pending && t - a.active_at >= for_ms {
                        a.state = State::Firing;
                        out.push(ev.notify(&rule.def.id, a, State::Firing));
                    }
                }
                None => {
                    let labels = rule
                        .def
                        .labels_from
                        .iter()
                        .cloned()
                        .zip(key.iter().cloned())
                        .chain(rule.def.labels.clone())
                        .collect();
                    let initial = if for_ms == 0 {
                        State::Firing
                    } else {
                        State::Pending
                    };
                    let a = Active {
                        labels,
                        state: initial,
                        active_at: t,
                        keep_firing_since: None,
                        values: values.clone(),
                    };
                    out.push(ev.notify(&rule.def.id, &a, initial));
                    state.active.insert(key.clone(), a);
                }
            }
        }
        let mut gone: Vec<Vec<String>> = Vec::new();
        for (key, a) in state.active.iter_mut() {
            if seen.contains_key(key) {
                continue;
            }
            let since = *a.keep_firing_since.get_or_insert(t);
            if a.state == State::Pending || t - since >= keep_ms {
                gone.push(key.clone());
            }
        }
        gone.sort();
        for key in gone {
            let a = state.active.remove(&key).expect("key came from the map");
            let mut n = ev.notify(&rule.def.id, &a, State::Resolved);
            n.evidence.fired = Some(a.state == State::Firing);
            out.push(n);
        }
        out
    }

    /// Alert state of every rule, for a checkpoint.
    pub fn snapshot(&self, rules: &[&Rule]) -> Vec<RuleAlertsState> {
        rules
            .iter()
            .zip(&self.rules)
            .map(|(r, state)| RuleAlertsState {
                rule_id: r.def.id.clone(),
                fingerprint: r.fingerprint.clone(),
                state: state.clone(),
            })
            .collect()
    }

    /// Loads the state of rules whose text is unchanged; returns how many rules kept
    /// their state and how many alerts that is. New or changed rules start fresh.
    pub fn restore(&mut self, saved: Vec<RuleAlertsState>, rules: &[&Rule]) -> (usize, usize) {
        let (mut kept, mut alerts) = (0, 0);
        for s in saved {
            let found = rules.iter().position(|r| {
                r.def.id == s.rule_id
                    && (r.fingerprint == s.fingerprint || r.legacy_fingerprint == s.fingerprint)
            });
            if let Some(i) = found {
                kept += 1;
                alerts += s.state.active.len() + usize::from(s.state.error.is_some());
                self.rules[i] = s.state;
            }
        }
        (kept, alerts)
    }

    /// Alerts currently pending or firing, per rule index.
    pub fn active_count(&self) -> usize {
        self.rules
            .iter()
            .map(|r| r.active.len() + usize::from(r.error.is_some()))
            .sum()
    }
}

/// Every result row as column name → JSON value.
fn rows_of(batches: &[RecordBatch]) -> Vec<serde_json::Map<String, Value>> {
    let mut rows = Vec::new();
    for b in batches {
        let schema = b.schema();
        let columns: Vec<Vec<Value>> = b.columns().iter().map(column_values).collect();
        for r in 0..b.num_rows() {
            let mut row = serde_json::Map::new();
            for (f, col) in schema.fields().iter().zip(&columns) {
                row.insert(f.name().clone(), col[r].clone());
            }
            rows.push(row);
        }
    }
    rows
}

fn column_values(array: &ArrayRef) -> Vec<Value> {
    let dt = array.data_type();
    let json_number = |x: f64| {
        serde_json::Number::from_f64(x)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(x.to_string()))
    };
    let values: Vec<Value> = if dt.is_signed_integer() {
        let a = cast(array, &DataType::Int64).expect("integers widen to Int64");
        a.as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::from))
            .collect()
    } else if dt.is_unsigned_integer() {
        let a = cast(array, &DataType::UInt64).expect("unsigned integers widen to UInt64");
        a.as_primitive::<UInt64Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::from))
            .collect()
    } else if dt.is_floating() || matches!(dt, DataType::Decimal128(..) | DataType::Decimal256(..))
    {
        let a = cast(array, &DataType::Float64).expect("numbers cast to Float64");
        a.as_primitive::<Float64Type>()
            .iter()
            .map(|v| v.map_or(Value::Null, json_number))
            .collect()
    } else if let DataType::List(item) = dt
        && matches!(item.data_type(), DataType::Utf8 | DataType::LargeUtf8)
    {
        // A list of text (a rule's `request_ids`) stays a list.
        let lists = array.as_list::<i32>();
        (0..array.len())
            .map(|i| {
                if lists.is_null(i) {
                    return Value::Null;
                }
                let Ok(items) = cast(&lists.value(i), &DataType::Utf8) else {
                    return Value::Null;
                };
                Value::Array(
                    items
                        .as_string::<i32>()
                        .iter()
                        .map(|v| v.map_or(Value::Null, |t| Value::String(t.to_owned())))
                        .collect(),
                )
            })
            .collect()
    } else if *dt == DataType::Boolean {
        array
            .as_boolean()
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Bool))
            .collect()
    } else {
        let options = FormatOptions::default();
        match ArrayFormatter::try_new(array.as_ref(), &options) {
            Ok(f) => (0..array.len())
                .map(|i| {
                    if array.is_null(i) {
                        Value::Null
                    } else {
                        Value::String(f.value(i).to_string())
                    }
                })
                .collect(),
            Err(_) => vec![Value::Null; array.len()],
        }
    };
    values
}

fn render_annotations(
    templates: &BTreeMap<String, String>,
    values: &serde_json::Map<String, Value>,
) -> BTreeMap<String, String> {
    templates
        .iter()
        .map(|(k, t)| (k.clone(), render(t, values)))
        .collect()
}

/// The `n` smallest request ids among the window's records whose string columns equal
/// the alert's labels (labels that are not `events` columns are ignored).
/// The column a rule returns to choose its evidence: a list of request ids.
const REQUEST_IDS: &str = "request_ids";

/// The ids of the rule's `request_ids` column (sorted, at most `n`), if it has one.
fn chosen_request_ids(values: &serde_json::Map<String, Value>, n: usize) -> Option<Vec<String>> {
    let Value::Array(items) = values.get(REQUEST_IDS)? else {
        return None;
    };
    let mut ids: Vec<String> = items
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.truncate(n);
    Some(ids)
}

/// The row's values as evidence: a `request_ids` list goes to the sample ids instead
/// (it may hold thousands).
fn without_request_ids(values: &serde_json::Map<String, Value>) -> serde_json::Map<String, Value> {
    let mut v = values.clone();
    if matches!(v.get(REQUEST_IDS), Some(Value::Array(_))) {
        v.remove(REQUEST_IDS);
    }
    v
}

/// Request ids of the window's records that carry the alert's labels.
fn sample_request_ids(
    w: &ClosedWindow,
    labels: &BTreeMap<String, String>,
    n: usize,
) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    // The n smallest distinct ids so far: a set that never holds more than n.
    let mut ids: BTreeSet<&str> = BTreeSet::new();
    for batch in &w.batches {
        let Some(request_ids) = batch.column_by_name("request_id") else {
            continue;
        };
        let mut mask: Option<datafusion::arrow::array::BooleanArray> = None;
        for (k, v) in labels {
            let Some(col) = batch.column_by_name(k) else {
                continue;
            };
            if col.data_type() != &DataType::Utf8 {
                continue;
            }
            let Ok(m) = eq(col, &StringArray::new_scalar(v.as_str())) else {
                continue;
            };
            mask = Some(match mask {
                Some(prev) => datafusion::arrow::compute::and(&prev, &m).unwrap_or(m),
                None => m,
            });
        }
        let Some(mask) = mask else { return Vec::new() };
        let Some(request_ids) = request_ids.as_string_opt::<i32>() else {
            continue;
        };
        for (row, id) in request_ids.iter().enumerate() {
            let Some(id) = id.filter(|_| mask.is_valid(row) && mask.value(row)) else {
                continue;
            };
            if ids.len() < n {
                ids.insert(id);
            } else if ids.last().is_some_and(|&last| id < last) && ids.insert(id) {
                ids.pop_last();
            }
        }
    }
    ids.into_iter().map(str::to_owned).collect()
}

/// Untrusted text for a terminal line: control characters (newlines, escapes) are shown
/// escaped so traffic cannot forge log lines or move the cursor.
pub fn escape_control(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// One destination's delivery counts: (destination, messages delivered, changes
/// delivered, failed attempts, messages or records waiting).
pub type DeliveryStat = (String, u64, u64, u64, u64);

/// Reads the current delivery counts of a receiver's destinations.
pub type DeliveryStats = std::sync::Arc<dyn Fn() -> Vec<DeliveryStat> + Send + Sync>;

/// Where notifications go.
pub trait Receiver: Send {
    fn name(&self) -> &str;
    fn send(&mut self, n: &Notification) -> std::io::Result<()>;
    /// Makes what was sent durable (end of a window's evaluation).
    fn flush(&mut self) -> std::io::Result<()>;
    /// A durable receiver's failure stops the run (its file is the record of what was
    /// said); others are counted and logged.
    fn durable(&self) -> bool {
        false
    }
    /// Where a durable receiver's output ends, as named positions for a checkpoint
    /// (flushes first). Names start with the receiver's name.
    fn cursor(&mut self) -> std::io::Result<Vec<(String, u64)>> {
        Ok(Vec::new())
    }
    /// Goes back to a checkpoint's positions: drops or skips what was written after
    /// them, since a restart says it again.
    /// The files behind this receiver's cursors, by cursor name.
    fn files(&self) -> Vec<(String, std::path::PathBuf)> {
        Vec::new()
    }
    fn rewind(&mut self, _cursors: &BTreeMap<String, u64>) -> std::io::Result<()> {
        Ok(())
    }
    /// Called once the pipeline has restored its checkpoint (and rewound receivers),
    /// before the first record: a receiver with background delivery starts it here.
    fn start(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    /// Delivery counts per destination, read when `/metrics` is scraped.
    fn delivery_stats(&self) -> Option<DeliveryStats> {
        None
    }
    /// How delivery goes, a line per destination (readiness, the API).
    fn status(&self) -> Vec<String> {
        Vec::new()
    }
    /// End of the run: delivers what is queued (within the receiver's own time limit)
    /// and says how delivery went, a line per destination, for the summary.
    fn drain(&mut self) -> Vec<String> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests;
