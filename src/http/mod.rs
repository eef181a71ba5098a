//! The HTTP server (axum): health and readiness, Prometheus metrics, the current alerts,
//! the rules with their last evaluation, and silences. Bound to 127.0.0.1 by default;
//! endpoints that change state need `Authorization: Bearer <token>` and are off without
//! a configured token. Requests are bounded (`max_in_flight`); the rest wait.
//!
//! The Prometheus text format is written here by hand: the values already live in
//! `Counters` and `Live`, and the format is a line per sample; a metrics registry crate
//! would hold a second copy of every counter.

pub mod silences;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use datafusion::arrow::array::RecordBatch;

use crate::alert::Notification;
use crate::telemetry::Counters;
use silences::Silences;

/// `http:` in the config.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on (`run` default 127.0.0.1:9797; `replay` default off);
    /// `--http ADDR` or `--http off` override it.
    #[serde(default)]
    pub listen: Option<String>,
    /// Environment variable holding the bearer token that mutating endpoints require.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File whose first line is that token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Requests handled at once; more wait their turn.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
}

fn default_in_flight() -> usize {
    256
}

impl HttpConfig {
    /// The token, read now; `None` when none is configured (mutations off).
    pub fn token(&self) -> Result<Option<String>, String> {
        match (&self.token_env, &self.token_file) {
            (Some(_), Some(_)) => Err("http: give token_env or token_file, not both".into()),
            (Some(var), None) => std::env::var(var)
                .map(Some)
                .map_err(|_| format!("http.token_env: environment variable {var} is not set")),
            (None, Some(p)) => {
                let t = std::fs::read_to_string(p)
                    .map_err(|e| format!("http.token_file: cannot read {}: {e}", p.display()))?;
                let t = t.lines().next().unwrap_or_default().trim().to_owned();
                if t.len() < 16 {
                    return Err(format!(
                        "http.token_file: the token in {} is shorter than 16 characters",
                        p.display()
                    ));
                }
                Ok(Some(t))
            }
            (None, None) => Ok(None),
        }
    }
}

/// A rule as the API shows it.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RuleStatus {
    pub id: String,
    pub name: Option<String>,
    pub severity: String,
    pub file: String,
    pub window: String,
    pub evaluations: u64,
    pub errors: u64,
    /// End of the last window it ran on (event time).
    pub last_window_end: Option<String>,
    /// When that was (wall clock).
    pub last_evaluated_at: Option<String>,
    pub last_duration_ms: Option<f64>,
    pub total_seconds: f64,
    pub last_error: Option<String>,
}

impl RuleStatus {
    /// A rule that has not run yet.
    pub fn of(r: &crate::rules::Rule) -> RuleStatus {
        RuleStatus {
            id: r.def.id.clone(),
            name: r.def.name.clone(),
            severity: r.def.severity.as_str().to_owned(),
            file: r.file.display().to_string(),
            window: format!("{:?}", r.spec),
            ..Default::default()
        }
    }
}

/// The answer to a reload request: what was loaded, or why the new set was rejected.
pub type ReloadReply = tokio::sync::oneshot::Sender<Result<String, String>>;

/// What the pipeline publishes for the server, updated as it goes.
pub struct Live {
    pub counters: Arc<Counters>,
    /// Pending and firing alerts, by id: their latest state change.
    pub alerts: Mutex<BTreeMap<String, Notification>>,
    pub rules: Mutex<Vec<RuleStatus>>,
    /// The source sends records (false while it waits for brokers or a group).
    pub source_ready: AtomicBool,
    /// Receiver status lines (outbox), refreshed by the pipeline.
    pub receivers: Mutex<Vec<String>>,
    pub clients: Arc<crate::clients::Clients>,
    pub drift: Option<Arc<crate::drift::Drift>>,
    /// The re-scorer (`/api/v1/rescore`).
    pub rescorer: Option<Arc<crate::rescore::rescorer::Rescorer>>,
    pub silences: Arc<Silences>,
    /// Asks the pipeline to reload its rules.
    pub reload: Option<tokio::sync::mpsc::Sender<ReloadReply>>,
    /// The receivers' delivery counts.
    pub deliveries: Vec<crate::alert::DeliveryStats>,
}

impl Live {
    pub fn new(
        counters: Arc<Counters>,
        clients: Arc<crate::clients::Clients>,
        silences: Arc<Silences>,
        rules: Vec<RuleStatus>,
    ) -> Live {
        Live {
            counters,
            alerts: Mutex::new(BTreeMap::new()),
            rules: Mutex::new(rules),
            source_ready: AtomicBool::new(false),
            receivers: Mutex::new(Vec::new()),
            clients,
            drift: None,
            rescorer: None,
            silences,
            reload: None,
            deliveries: Vec::new(),
        }
    }

    /// Keeps the alert list current with a batch of state changes.
    pub fn alerts_changed(&self, notes: &[Notification]) {
        let mut alerts = self.alerts.lock().expect("alerts lock");
        for n in notes {
            match n.state {
                crate::alert::State::Resolved => {
                    alerts.remove(&n.id);
                }
                _ => {
                    alerts.insert(n.id.clone(), n.clone());
                }
            }
        }
    }
}

struct App {
    live: Arc<Live>,
    token: Option<String>,
    gate: tokio::sync::Semaphore,
}

/// Binds the address (a clear error when it is taken) and serves until the process
/// ends; returns the bound address.
pub async fn serve(addr: &str, c: &HttpConfig, live: Arc<Live>) -> Result<SocketAddr, String> {
    let token = c.token()?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!("http: cannot listen on {addr}: {e} (pass --http ADDR, or --http off)")
    })?;
    let bound = listener.local_addr().map_err(|e| format!("http: {e}"))?;
    let app = Arc::new(App {
        live,
        token,
        gate: tokio::sync::Semaphore::new(c.max_in_flight.max(1)),
    });
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/rescore", get(rescore))
        .route("/api/v1/silences", get(list_silences).post(create_silence))
        .route("/api/v1/silences/{id}", delete(expire_silence))
        .route("/-/reload", post(reload))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(app.clone(), bounded))
        .with_state(app);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("http server stopped: {e}");
        }
    });
    tracing::info!(address = %bound, "http: listening");
    Ok(bound)
}

async fn bounded(
    State(app): State<Arc<App>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(_permit) = app.gate.acquire().await else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
    };
    next.run(req).await
}

fn error(code: StatusCode, msg: &str) -> Response {
    (code, json_body(&json!({ "error": msg }))).into_response()
}

fn json_body<T: Serialize>(v: &T) -> ([(header::HeaderName, &'static str); 1], String) {
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(v).unwrap_or_else(|_| "{}".into()),
    )
}

/// Checks the bearer token of a mutating request: the refusal, if it is refused.
fn refused(app: &App, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &app.token else {
        return Some(error(
            StatusCode::FORBIDDEN,
            "changes through the API are off: set http.token_env or http.token_file",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    (!constant_time_eq(given.as_bytes(), token.as_bytes())).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer <token>)",
        )
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    let live = &app.live;
    let source = live.source_ready.load(Ordering::Relaxed);
    let rules = live.rules.lock().expect("rules lock").len();
    let receivers = live.receivers.lock().expect("receivers lock").clone();
    let body = json!({
        "ready": source,
        "source": if source { "reading" } else { "waiting for the input" },
        "rules": rules,
        "receivers": receivers,
    });
    let code = if source {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, json_body(&body)).into_response()
}

async fn alerts(State(app): State<Arc<App>>) -> Response {
    let now = chrono::Utc::now().timestamp_millis();
    let list: Vec<serde_json::Value> = app
        .live
        .alerts
        .lock()
        .expect("alerts lock")
        .values()
        .map(|n| {
            let mut v = serde_json::to_value(n).unwrap_or_default();
            let labels = crate::notify::match_labels(n);
            v["silenced_by"] = json!(app.live.silences.matching(&labels, now));
            v
        })
        .collect();
    json_body(&json!({ "alerts": list })).into_response()
}

async fn rules(State(app): State<Arc<App>>) -> Response {
    let rules = app.live.rules.lock().expect("rules lock").clone();
    json_body(&json!({ "rules": rules })).into_response()
}

async fn rescore(State(app): State<Arc<App>>) -> Response {
    match &app.live.rescorer {
        Some(r) => json_body(&r.report(1000)).into_response(),
        None => json_body(&json!({ "models": [] })).into_response(),
    }
}

async fn list_silences(State(app): State<Arc<App>>) -> Response {
    let now = chrono::Utc::now().timestamp_millis();
    json_body(&json!({ "silences": app.live.silences.list(now) })).into_response()
}

async fn create_silence(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = refused(&app, &headers) {
        return r;
    }
    let req: silences::NewSilence = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("bad silence: {e}")),
    };
    match app.live.silences.create(req) {
        Ok(id) => (StatusCode::OK, json_body(&json!({ "id": id }))).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

async fn expire_silence(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = refused(&app, &headers) {
        return r;
    }
    match app.live.silences.expire(&id) {
        Ok(true) => json_body(&json!({ "expired": id })).into_response(),
        Ok(false) => error(StatusCode::NOT_FOUND, &format!("no silence {id}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

async fn reload(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(r) = refused(&app, &headers) {
        return r;
    }
    let Some(tx) = &app.live.reload else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no pipeline to reload");
    };
    let (reply, answer) = tokio::sync::oneshot::channel();
    if tx.send(reply).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the pipeline has stopped");
    }
    match answer.await {
        Ok(Ok(msg)) => json_body(&json!({ "reloaded": true, "message": msg })).into_response(),
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, &format!("reload rejected: {e}")),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the pipeline has stopped"),
    }
}

/// Prometheus text format, version 0.0.4.
async fn metrics(State(app): State<Arc<App>>) -> Response {
    let body = render_metrics(&app.live);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// A label value as Prometheus quotes it.
fn quoted(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        self.0 += &format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0 += name;
        if !labels.is_empty() {
            let l: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", quoted(v)))
                .collect();
            self.0 += &format!("{{{}}}", l.join(","));
        }
        self.0 += &format!(" {value}\n");
    }
}

pub fn render_metrics(live: &Live) -> String {
    let c = &live.counters;
    let get = Counters::get;
    let mut t = Text(String::new());
    let (read, bad, late) = (
        get(&c.records_read),
        get(&c.records_bad),
        get(&c.records_late),
    );
    t.family(
        "driftwatch_records_total",
        "counter",
        "Records read, by outcome.",
    );
    for (o, v) in [
        ("good", read.saturating_sub(bad + late)),
        ("bad", bad),
        ("late", late),
    ] {
        t.sample("driftwatch_records_total", &[("outcome", o)], v as f64);
    }
    t.family(
        "driftwatch_input_bytes_total",
        "counter",
        "Bytes of records read.",
    );
    t.sample(
        "driftwatch_input_bytes_total",
        &[],
        get(&c.bytes_read) as f64,
    );
    t.family(
        "driftwatch_windows_closed_total",
        "counter",
        "Windows closed and evaluated.",
    );
    t.sample(
        "driftwatch_windows_closed_total",
        &[],
        get(&c.windows_closed) as f64,
    );
    let rs = *c.rescore.lock().expect("rescore lock");
    t.family(
        "driftwatch_rescore_records_total",
        "counter",
        "Records re-scored by an embedded model, by why (flagged by a rule, or sampled).",
    );
    for (why, v) in [("flagged", rs.flagged), ("sample", rs.sampled)] {
        t.sample(
            "driftwatch_rescore_records_total",
            &[("reason", why)],
            v as f64,
        );
    }
    for (name, help, v) in [
        (
            "driftwatch_rescore_dropped_total",
            "Records that were to be re-scored but did not fit the budget per second.",
            rs.dropped,
        ),
        (
            "driftwatch_rescore_unscorable_total",
            "Records to re-score with a feature missing.",
            rs.unscorable,
        ),
        (
            "driftwatch_rescore_mismatches_total",
            "Re-scored records whose logged prediction differs from the embedded model's.",
            rs.mismatches,
        ),
        (
            "driftwatch_rescore_adversarial_total",
            "Re-scored records whose squeezing score is over the threshold.",
            rs.adversarial,
        ),
    ] {
        t.family(name, "counter", help);
        t.sample(name, &[], v as f64);
    }
    let rules = live.rules.lock().expect("rules lock").clone();
    t.family(
        "driftwatch_rule_evaluations_total",
        "counter",
        "Rule evaluations, per rule.",
    );
    for r in &rules {
        t.sample(
            "driftwatch_rule_evaluations_total",
            &[("rule", &r.id)],
            r.evaluations as f64,
        );
    }
    t.family(
        "driftwatch_rule_errors_total",
        "counter",
        "Rule evaluations that failed, per rule.",
    );
    for r in &rules {
        t.sample(
            "driftwatch_rule_errors_total",
            &[("rule", &r.id)],
            r.errors as f64,
        );
    }
    t.family(
        "driftwatch_rule_evaluation_seconds_total",
        "counter",
        "Time spent evaluating each rule.",
    );
    for r in &rules {
        t.sample(
            "driftwatch_rule_evaluation_seconds_total",
            &[("rule", &r.id)],
            r.total_seconds,
        );
    }
    t.family(
        "driftwatch_alert_changes_total",
        "counter",
        "Alert state changes, by state.",
    );
    for (s, n) in ["pending", "firing", "resolved"]
        .iter()
        .zip(&c.alerts_by_state)
    {
        t.sample(
            "driftwatch_alert_changes_total",
            &[("state", s)],
            get(n) as f64,
        );
    }
    let mut by: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in &rules {
        for s in ["pending", "firing"] {
            by.insert((r.id.clone(), s.into()), 0);
        }
    }
    for n in live.alerts.lock().expect("alerts lock").values() {
        *by.entry((n.rule_id.clone(), n.state.as_str().into()))
            .or_default() += 1;
    }
    t.family(
        "driftwatch_alerts",
        "gauge",
        "Alerts now pending or firing, per rule.",
    );
    for ((rule, state), v) in &by {
        t.sample(
            "driftwatch_alerts",
            &[("rule", rule), ("state", state)],
            *v as f64,
        );
    }
    let stats: Vec<crate::alert::DeliveryStat> = live.deliveries.iter().flat_map(|f| f()).collect();
    t.family(
        "driftwatch_receiver_delivered_total",
        "counter",
        "Messages (email) or records (OTLP) a receiver's server accepted.",
    );
    for (who, messages, _, _, _) in &stats {
        t.sample(
            "driftwatch_receiver_delivered_total",
            &[("receiver", who)],
            *messages as f64,
        );
    }
    t.family(
        "driftwatch_receiver_changes_delivered_total",
        "counter",
        "Alert state changes a receiver delivered.",
    );
    for (who, _, changes, _, _) in &stats {
        t.sample(
            "driftwatch_receiver_changes_delivered_total",
            &[("receiver", who)],
            *changes as f64,
        );
    }
    t.family(
        "driftwatch_receiver_failures_total",
        "counter",
        "Failed delivery attempts (retried with backoff).",
    );
    for (who, _, _, failures, _) in &stats {
        t.sample(
            "driftwatch_receiver_failures_total",
            &[("receiver", who)],
            *failures as f64,
        );
    }
    t.family(
        "driftwatch_receiver_queue",
        "gauge",
        "Messages or groups (email) or records (OTLP) waiting in the outbox.",
    );
    for (who, _, _, _, queued) in &stats {
        t.sample(
            "driftwatch_receiver_queue",
            &[("receiver", who)],
            *queued as f64,
        );
    }
    t.family(
        "driftwatch_receiver_errors_total",
        "counter",
        "Receiver failures.",
    );
    t.sample(
        "driftwatch_receiver_errors_total",
        &[],
        get(&c.receiver_errors) as f64,
    );
    let lag = c.lag.lock().map(|l| l.clone()).unwrap_or_default();
    t.family(
        "driftwatch_kafka_lag_records",
        "gauge",
        "Records behind the end of each assigned Kafka partition.",
    );
    for (p, l) in &lag {
        t.sample(
            "driftwatch_kafka_lag_records",
            &[("partition", p)],
            l.read as f64,
        );
    }
    let u = live.clients.usage();
    t.family(
        "driftwatch_client_profiles",
        "gauge",
        "Client profiles held.",
    );
    t.sample("driftwatch_client_profiles", &[], u.clients as f64);
    t.family(
        "driftwatch_client_profile_bytes",
        "gauge",
        "Estimated memory of the client profiles.",
    );
    t.sample("driftwatch_client_profile_bytes", &[], u.bytes as f64);
    t.family(
        "driftwatch_client_evictions_total",
        "counter",
        "Client profiles evicted, by reason.",
    );
    t.sample(
        "driftwatch_client_evictions_total",
        &[("reason", "idle")],
        u.evicted_idle as f64,
    );
    t.sample(
        "driftwatch_client_evictions_total",
        &[("reason", "memory")],
        u.evicted_memory as f64,
    );
    t.family(
        "driftwatch_silences",
        "gauge",
        "Silences from the API, by status.",
    );
    let now = chrono::Utc::now().timestamp_millis();
    let mut status: BTreeMap<&str, u64> = [("active", 0), ("pending", 0), ("expired", 0)]
        .into_iter()
        .collect();
    for s in app_silence_status(&live.silences, now) {
        *status.entry(s).or_default() += 1;
    }
    for (s, n) in status {
        t.sample("driftwatch_silences", &[("status", s)], n as f64);
    }
    if let Some(b) = live.drift.as_ref().and_then(|d| d.latest_features()) {
        drift_metrics(&mut t, &b);
    }
    if let Some(b) = live.clients.latest_stats() {
        client_metrics(&mut t, &b);
    }
    t.family("driftwatch_up", "gauge", "1 while the process runs.");
    t.sample("driftwatch_up", &[], 1.0);
    t.0
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
fn drift_metrics(t: &mut Text, b: &RecordBatch) {
    let (model, feature, test) = (
        strings(b, "model"),
        strings(b, "feature"),
        strings(b, "test"),
    );
    let (stat, psi) = (floats(b, "statistic"), floats(b, "psi"));
    let drifted = floats(b, "drifted");
    t.family(
        "driftwatch_feature_drift_statistic",
        "gauge",
        "The last window's drift statistic per model and feature (its test in `test`).",
    );
    for i in 0..model.len() {
        if let Some(v) = stat.get(i).copied().flatten() {
            let l = [
                ("model", model[i].as_str()),
                ("feature", feature[i].as_str()),
                ("test", test[i].as_str()),
            ];
            t.sample("driftwatch_feature_drift_statistic", &l, v);
        }
    }
    t.family(
        "driftwatch_feature_psi",
        "gauge",
        "The last window's PSI per model and feature.",
    );
    for i in 0..model.len() {
        if let Some(v) = psi.get(i).copied().flatten() {
            let l = [
                ("model", model[i].as_str()),
                ("feature", feature[i].as_str()),
            ];
            t.sample("driftwatch_feature_psi", &l, v);
        }
    }
    t.family(
        "driftwatch_feature_drifted",
        "gauge",
        "1 when the last window's default test says the feature drifted.",
    );
    for i in 0..model.len() {
        let v = drifted.get(i).copied().flatten().unwrap_or(0.0);
        let l = [
            ("model", model[i].as_str()),
            ("feature", feature[i].as_str()),
        ];
        t.sample("driftwatch_feature_drifted", &l, v);
    }
}

/// Clients shown per statistic: the top of the last window's `client_stats`.
const TOP_CLIENTS: usize = 10;

/// The last window's `client_stats`, the top clients per statistic only (bounded
/// cardinality; client ids come from the traffic and are quoted).
fn client_metrics(t: &mut Text, b: &RecordBatch) {
    let (model, client) = (strings(b, "model"), strings(b, "client_id"));
    t.family(
        "driftwatch_client_stat",
        "gauge",
        "The last window's client statistics, top clients per statistic.",
    );
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
        let mut idx: Vec<usize> = (0..v.len()).filter(|&i| v[i].is_some()).collect();
        idx.sort_by(|&x, &y| {
            v[y].partial_cmp(&v[x])
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| client[x].cmp(&client[y]))
        });
        for &i in idx.iter().take(TOP_CLIENTS) {
            let l = [
                ("model", model[i].as_str()),
                ("client_id", client[i].as_str()),
                ("stat", stat),
            ];
            t.sample("driftwatch_client_stat", &l, v[i].unwrap_or_default());
        }
    }
}

fn app_silence_status(s: &Silences, now: i64) -> Vec<&'static str> {
    s.list(now).into_iter().map(|v| v.status).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(token: Option<&str>) -> App {
        App {
            live: Arc::new(Live::new(
                Arc::new(Counters::default()),
                crate::clients::Clients::new(&[], &crate::clients::ClientsConfig::default(), &[]),
                Arc::new(Silences::default()),
                Vec::new(),
            )),
            token: token.map(str::to_owned),
            gate: tokio::sync::Semaphore::new(1),
        }
    }

    #[test]
    fn changes_are_off_without_a_token_and_need_the_right_one() {
        let mut h = HeaderMap::new();
        let e = refused(&app(None), &h).unwrap();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        let a = app(Some("sixteen-chars-token"));
        assert_eq!(refused(&a, &h).unwrap().status(), StatusCode::UNAUTHORIZED);
        h.insert(
            header::AUTHORIZATION,
            "Bearer sixteen-chars-tokeX".parse().unwrap(),
        );
        assert_eq!(refused(&a, &h).unwrap().status(), StatusCode::UNAUTHORIZED);
        h.insert(
            header::AUTHORIZATION,
            "Bearer sixteen-chars-token".parse().unwrap(),
        );
        assert!(refused(&a, &h).is_none());
    }

    #[test]
    fn label_values_from_traffic_are_quoted_in_the_exposition() {
        let mut t = Text(String::new());
        t.sample("m", &[("rule", "a\"b\\c\nd")], 1.0);
        assert_eq!(t.0, "m{rule=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
