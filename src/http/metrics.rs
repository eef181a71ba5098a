//! `GET /metrics`: the Prometheus text format (0.0.4), encoded at scrape time by the
//! `prometheus-client` crate from what the pipeline already counts. Every family comes
//! from `telemetry::catalogue`; label values come from the traffic (client ids, model
//! names) and are escaped by the encoder; per-client families are bounded to the top
//! clients.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use datafusion::arrow::array::RecordBatch;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{App, Live};
use crate::telemetry::catalogue::{self as cat, Family, Kind};
use crate::telemetry::{Counters, process::Process};

pub(super) async fn metrics(State(app): State<Arc<App>>) -> Response {
    let body = render_metrics(&app.live);
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        body,
    )
        .into_response()
}

/// The exposition, as `/metrics` answers it.
pub fn render_metrics(live: &Arc<Live>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exposition(live.clone())));
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::error!("cannot encode the metrics: {e}");
    }
    out
}

/// A sample's value.
#[derive(Debug, Clone, Copy)]
enum Value {
    U(u64),
    I(i64),
    F(f64),
}

/// The samples of one family: label values in the catalogue's label order.
struct Samples<'a> {
    family: &'a Family,
    rows: Vec<(Vec<String>, Value)>,
}

impl<'a> Samples<'a> {
    fn new(family: &'a Family) -> Self {
        Samples {
            family,
            rows: Vec::new(),
        }
    }

    fn add(&mut self, labels: &[&str], v: Value) -> &mut Self {
        debug_assert_eq!(
            labels.len(),
            self.family.labels.len(),
            "{}",
            self.family.name
        );
        self.rows
            .push((labels.iter().map(|s| (*s).to_owned()).collect(), v));
        self
    }

    fn encode(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let f = self.family;
        let kind = match f.kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
            Kind::Info => MetricType::Info,
        };
        let mut m = enc.encode_descriptor(f.name, f.help, None, kind)?;
        for (values, v) in &self.rows {
            let labels: Vec<(&str, &str)> = f
                .labels
                .iter()
                .copied()
                .zip(values.iter().map(String::as_str))
                .collect();
            if f.kind == Kind::Info {
                m.encode_info(&labels)?;
                continue;
            }
            if labels.is_empty() {
                put(&mut m, f.kind, *v)?;
            } else {
                put(&mut m.encode_family(&labels)?, f.kind, *v)?;
            }
        }
        Ok(())
    }
}

/// One sample's value, as its family's kind wants it.
fn put(m: &mut MetricEncoder, kind: Kind, v: Value) -> fmt::Result {
    match (kind, v) {
        (Kind::Counter, Value::U(x)) => m.encode_counter::<NoLabelSet, _, u64>(&x, None),
        (Kind::Counter, Value::F(x)) => m.encode_counter::<NoLabelSet, _, u64>(&x, None),
        (Kind::Counter, Value::I(x)) => {
            m.encode_counter::<NoLabelSet, _, u64>(&x.max(0).unsigned_abs(), None)
        }
        (_, Value::U(x)) => m.encode_gauge(&x),
        (_, Value::I(x)) => m.encode_gauge(&x),
        (_, Value::F(x)) => m.encode_gauge(&x),
    }
}

struct Exposition(Arc<Live>);

impl fmt::Debug for Exposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Exposition")
    }
}

/// The families being filled, by name.
struct Out(BTreeMap<&'static str, Samples<'static>>);

impl Out {
    fn at(&mut self, f: &Family) -> &mut Samples<'static> {
        self.0.get_mut(f.name).expect("a family of the catalogue")
    }
}

impl Collector for Exposition {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        for s in families(&self.0) {
            s.encode(&mut enc)?;
        }
        Ok(())
    }
}

/// Every family with its samples, in the catalogue's order.
fn families(live: &Live) -> Vec<Samples<'static>> {
    use Value::{F, I, U};
    let c = &live.counters;
    let get = Counters::get;
    let mut out = Out(cat::ALL.iter().map(|f| (f.name, Samples::new(f))).collect());

    let (read, bad, late) = (
        get(&c.records_read),
        get(&c.records_bad),
        get(&c.records_late),
    );
    out.at(&cat::RECORDS)
        .add(&["good"], U(read.saturating_sub(bad + late)))
        .add(&["bad"], U(bad))
        .add(&["late"], U(late));
    for (i, reason) in ["time_out_of_range", "time_ahead"].into_iter().enumerate() {
        out.at(&cat::RECORDS_TIME_REFUSED)
            .add(&[reason], U(get(&c.records_time_refused[i])));
    }
    out.at(&cat::INPUT_BYTES).add(&[], U(get(&c.bytes_read)));
    out.at(&cat::WINDOWS_CLOSED)
        .add(&[], U(get(&c.windows_closed)));
    if let Some(w) = c.watermark_ms() {
        let now = chrono::Utc::now().timestamp_millis();
        out.at(&cat::WATERMARK).add(&[], F(w as f64 / 1000.0));
        out.at(&cat::WATERMARK_LAG)
            .add(&[], F(now.saturating_sub(w) as f64 / 1000.0));
    }

    let rs = *c.rescore.lock().expect("rescore lock");
    out.at(&cat::RESCORE_RECORDS)
        .add(&["flagged"], U(rs.flagged))
        .add(&["sample"], U(rs.sampled));
    out.at(&cat::RESCORE_DROPPED).add(&[], U(rs.dropped));
    out.at(&cat::RESCORE_UNSCORABLE).add(&[], U(rs.unscorable));
    out.at(&cat::RESCORE_MISMATCHES).add(&[], U(rs.mismatches));
    out.at(&cat::RESCORE_ADVERSARIAL)
        .add(&[], U(rs.adversarial));
    out.at(&cat::RESCORE_OUTCOMES)
        .add(&["mismatch"], U(rs.mismatches))
        .add(&["adversarial"], U(rs.adversarial))
        .add(&["over_budget"], U(rs.dropped))
        .add(&["unscorable"], U(rs.unscorable))
        .add(&["other_version"], U(rs.other_version));

    let l = *c.labels.lock().expect("labels lock");
    for (outcome, n) in l.outcomes() {
        out.at(&cat::LABELS).add(&[outcome], U(n));
    }
    out.at(&cat::LABEL_PREDICTIONS)
        .add(&["registered"], U(l.predictions))
        .add(&["expired"], U(l.expired))
        .add(&["evicted"], U(l.evicted))
        .add(&["duplicate"], U(l.duplicate_predictions))
        .add(&["probs_out_of_range"], U(l.probs_out_of_range));
    out.at(&cat::LABELS_PENDING)
        .add(&["predictions"], U(l.pending))
        .add(&["labels"], U(l.waiting));

    let rules = c.rules.lock().expect("rules lock").clone();
    for r in &rules {
        let id = [r.id.as_str()];
        out.at(&cat::RULE_EVALUATIONS).add(&id, U(r.evaluations));
        out.at(&cat::RULE_ERRORS).add(&id, U(r.errors));
        out.at(&cat::RULE_SECONDS).add(&id, F(r.total_seconds));
        if let Some(t) = r
            .last_evaluated_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            out.at(&cat::RULE_LAST_EVALUATION)
                .add(&id, F(t.timestamp_millis() as f64 / 1000.0));
        }
        out.at(&cat::RULE_HEALTHY)
            .add(&id, U(u64::from(r.last_error.is_none())));
    }
    for (s, n) in ["pending", "firing", "resolved"]
        .iter()
        .zip(&c.alerts_by_state)
    {
        out.at(&cat::ALERT_CHANGES).add(&[s], U(get(n)));
    }
    let mut alerts: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in &rules {
        for s in ["pending", "firing"] {
            alerts.insert((r.id.clone(), s.into()), 0);
        }
    }
    for n in live.alerts.lock().expect("alerts lock").values() {
        *alerts
            .entry((n.rule_id.clone(), n.state.as_str().into()))
            .or_default() += 1;
    }
    for ((rule, state), v) in &alerts {
        out.at(&cat::ALERTS).add(&[rule, state], U(*v));
    }
    out.at(&cat::ALERTS_ACTIVE)
        .add(&[], U(get(&c.alerts_active)));

    let stats: Vec<crate::alert::DeliveryStat> = live.deliveries.iter().flat_map(|f| f()).collect();
    for (who, messages, changes, failures, queued) in &stats {
        let who = [who.as_str()];
        out.at(&cat::RECEIVER_DELIVERED).add(&who, U(*messages));
        out.at(&cat::RECEIVER_CHANGES_DELIVERED)
            .add(&who, U(*changes));
        out.at(&cat::RECEIVER_FAILURES).add(&who, U(*failures));
        out.at(&cat::RECEIVER_QUEUE).add(&who, U(*queued));
    }
    out.at(&cat::RECEIVER_ERRORS)
        .add(&[], U(get(&c.receiver_errors)));
    out.at(&cat::KAFKA_TRUNCATED)
        .add(&[], U(get(&c.kafka_truncated)));
    let lag = c.lag.lock().map(|l| l.clone()).unwrap_or_default();
    for (p, l) in &lag {
        out.at(&cat::KAFKA_LAG).add(&[p], I(l.read));
    }
    if let Some(d) = &live.drift {
        out.at(&cat::DRIFT_MODELS_REFUSED)
            .add(&[], U(d.models_refused()));
    }

    let u = live.clients.usage();
    out.at(&cat::CLIENT_PROFILES).add(&[], U(u.clients as u64));
    out.at(&cat::CLIENT_PROFILE_BYTES).add(&[], U(u.bytes));
    out.at(&cat::CLIENT_PROFILE_COPY_BYTES)
        .add(&[], U(u.checkpoint_copies));
    out.at(&cat::CLIENT_EVICTIONS)
        .add(&["idle"], U(u.evicted_idle))
        .add(&["memory"], U(u.evicted_memory));
    let now = chrono::Utc::now().timestamp_millis();
    let mut status: BTreeMap<&str, u64> = [("active", 0), ("pending", 0), ("expired", 0)]
        .into_iter()
        .collect();
    for s in live.silences.list(now) {
        *status.entry(s.status).or_default() += 1;
    }
    for (s, n) in status {
        out.at(&cat::SILENCES).add(&[s], U(n));
    }
    if let Some(b) = live.drift.as_ref().and_then(|d| d.latest_features()) {
        drift_samples(&mut out, &b);
    }
    if let Some(b) = live.clients.latest_stats() {
        client_samples(&mut out, &b);
    }

    out.at(&cat::BUILD).add(&[env!("CARGO_PKG_VERSION")], U(1));
    out.at(&cat::UP).add(&[], U(1));
    let p = Process::read();
    let mut opt = |f: &Family, v: Option<Value>| {
        if let Some(v) = v {
            out.at(f).add(&[], v);
        }
    };
    opt(&cat::PROCESS_CPU, p.cpu_seconds.map(F));
    opt(&cat::PROCESS_RESIDENT, p.resident_bytes.map(U));
    opt(&cat::PROCESS_VIRTUAL, p.virtual_bytes.map(U));
    opt(&cat::PROCESS_OPEN_FDS, p.open_fds.map(U));
    opt(&cat::PROCESS_MAX_FDS, p.max_fds.map(U));
    opt(&cat::PROCESS_START, p.start_time_seconds.map(F));
    opt(&cat::PROCESS_THREADS, p.threads.map(U));

    cat::ALL
        .iter()
        .filter_map(|f| out.0.remove(f.name))
        .collect()
}

fn strings(b: &RecordBatch, name: &str) -> Vec<String> {
    use datafusion::arrow::array::{Array, AsArray};
    b.column_by_name(name)
        .and_then(|c| c.as_string_opt::<i32>())
        .map(|a| {
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        String::new()
                    } else {
                        a.value(i).to_owned()
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn floats(b: &RecordBatch, name: &str) -> Vec<Option<f64>> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::{DataType, Float64Type};
    let Some(c) = b.column_by_name(name) else {
        return Vec::new();
    };
    let Ok(c) = cast(c, &DataType::Float64) else {
        return Vec::new();
    };
    let a = c.as_primitive::<Float64Type>();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect()
}

/// The last window's `feature_drift`: statistic and verdict per model and feature.
fn drift_samples(out: &mut Out, b: &RecordBatch) {
    let (model, feature, test) = (
        strings(b, "model"),
        strings(b, "feature"),
        strings(b, "test"),
    );
    let (stat, psi) = (floats(b, "statistic"), floats(b, "psi"));
    let drifted = floats(b, "drifted");
    for i in 0..model.len() {
        if let Some(v) = stat.get(i).copied().flatten() {
            out.at(&cat::FEATURE_DRIFT_STATISTIC)
                .add(&[&model[i], &feature[i], &test[i]], Value::F(v));
        }
        if let Some(v) = psi.get(i).copied().flatten() {
            out.at(&cat::FEATURE_PSI)
                .add(&[&model[i], &feature[i]], Value::F(v));
        }
        let v = drifted.get(i).copied().flatten().unwrap_or(0.0);
        out.at(&cat::FEATURE_DRIFTED)
            .add(&[&model[i], &feature[i]], Value::F(v));
    }
}

/// Clients shown per statistic: the top of the last window's `client_stats`.
const TOP_CLIENTS: usize = 10;

/// The last window's `client_stats`, the top clients per statistic only (bounded
/// cardinality; client ids come from the traffic and are escaped by the encoder).
fn client_samples(out: &mut Out, b: &RecordBatch) {
    let (model, client) = (strings(b, "model"), strings(b, "client_id"));
    for stat in [
        "queries",
        "qps",
        "latency_ms_sum",
        "distinct_input_share",
        "near_duplicate_share",
        "ood_share",
        "coverage_ratio",
        "low_confidence_share",
        "boundary_share",
        "label_entropy",
    ] {
        let v = floats(b, stat);
        for i in top_clients(&v, &client) {
            out.at(&cat::CLIENT_STAT).add(
                &[&model[i], &client[i], stat],
                Value::F(v[i].unwrap_or_default()),
            );
        }
    }
}

/// The rows of the `TOP_CLIENTS` largest values, largest first (then by client id).
/// NaN has no rank and is left out: a sender can make its statistics NaN (`"NaN"` as
/// a latency), and a comparison that calls NaN equal to everything is not an order (the
/// sort may panic on it).
fn top_clients(v: &[Option<f64>], client: &[String]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len())
        .filter(|&i| v[i].is_some_and(|x| !x.is_nan()))
        .collect();
    let value = |i: usize| v[i].unwrap_or_default();
    idx.sort_by(|&x, &y| {
        value(y)
            .total_cmp(&value(x))
            .then_with(|| client[x].cmp(&client[y]))
    });
    idx.truncate(TOP_CLIENTS);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_clients_leave_out_nan_and_rank_the_rest_largest_first() {
        // Many rows, a third of them NaN: a sort whose comparison calls NaN equal to
        // everything may panic on such input, or rank NaN anywhere.
        let n = 600;
        let client: Vec<String> = (0..n).map(|i| format!("c{i:03}")).collect();
        let v: Vec<Option<f64>> = (0..n)
            .map(|i| match i % 3 {
                0 => Some(f64::NAN),
                1 => Some(i as f64),
                _ => (i % 5 != 0).then_some(-(i as f64)),
            })
            .collect();
        let mut v = v;
        v[7] = Some(f64::INFINITY);
        v[8] = Some(f64::NEG_INFINITY);
        let top = top_clients(&v, &client);
        // By hand: +∞ first, then the largest i ≡ 1 (mod 3) below 600: 598, 595, …
        let want: Vec<usize> = std::iter::once(7)
            .chain((0..9).map(|k| 598 - 3 * k))
            .collect();
        assert_eq!(top, want);
        // Ties go by client id.
        let tied = [Some(1.0), Some(2.0), Some(2.0)];
        let names = ["b", "z", "a"].map(String::from);
        assert_eq!(top_clients(&tied, &names), [2, 1, 0]);
    }

    fn live(counters: Counters) -> Arc<Live> {
        Arc::new(Live::new(
            Arc::new(counters),
            crate::tables::clients::Clients::new(
                &[],
                &crate::tables::clients::ClientsConfig::default(),
                &[],
                crate::tables::reference::Reference::new(&[], &Default::default(), 0, []),
            ),
            Arc::new(crate::notify::silence::Silences::default()),
        ))
    }

    #[test]
    fn label_values_from_traffic_are_escaped_in_the_exposition() {
        let c = Counters::default();
        let lag = crate::telemetry::Lag {
            read: 5,
            committed: 7,
        };
        c.kafka_lag([("a\"b\\c\nd".to_owned(), lag)].into(), 1);
        let text = render_metrics(&live(c));
        assert!(
            text.contains("inferwatch_kafka_lag_records{partition=\"a\\\"b\\\\c\\nd\"} 5\n"),
            "{text}"
        );
    }

    #[test]
    fn the_watermark_and_its_lag_are_exposed_in_seconds() {
        let c = Counters::default();
        let text = render_metrics(&live(c));
        assert!(
            !text.contains("\ninferwatch_watermark_timestamp_seconds "),
            "{text}"
        );
        let c = Counters::default();
        // 2001-09-09T01:46:40Z
        c.watermark(Some(1_000_000_000_000));
        let text = render_metrics(&live(c));
        assert!(
            text.contains("inferwatch_watermark_timestamp_seconds 1000000000.0\n"),
            "{text}"
        );
        let lag: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("inferwatch_watermark_lag_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((lag - (now - 1e9)).abs() < 60.0, "{lag}");
    }

    /// Every family the exposition writes is in the catalogue, and every catalogue
    /// family the operations guide lists.
    #[test]
    fn the_exposition_writes_only_catalogue_families_and_the_docs_list_them_all() {
        let text = render_metrics(&live(Counters::default()));
        let known: std::collections::BTreeSet<String> =
            cat::ALL.iter().map(Family::sample_name).collect();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap();
            assert!(known.contains(name), "{name} is not in the catalogue");
        }
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
                .unwrap();
        for f in cat::ALL {
            assert!(
                doc.contains(&format!("`{}", f.sample_name())),
                "docs/operations.md does not list {}",
                f.sample_name()
            );
        }
    }
}
