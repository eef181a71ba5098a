//! The HTTP server (axum): health and readiness, Prometheus metrics, the current alerts,
//! the rules with their last evaluation, and silences. Bound to 127.0.0.1 by default;
//! requests that change state need `Authorization: Bearer <token>` and are off without
//! a configured token. A configured token shorter than 16 bytes stops the start.
//!
//! Limits, so that slow or idle clients cannot starve the server:
//!
//! - connections: at most `max_connections` at once (the next wait in the kernel's
//!   accept queue); one that makes no progress for `idle_timeout` outside a request being
//!   handled is closed, and one older than `max_connection_age` is closed at its next such
//!   stall (`conn`);
//! - requests that change state: the token is checked from the head before the body is
//!   read; the body is read whole, at most 64 KiB (413) within 10 s (408) (`guard`);
//! - the API endpoints: at most `max_in_flight` handled at once, the rest wait; the probes
//!   (`/healthz`, `/readyz`, `/metrics`) do not wait for that gate.
//!
//! What remains: `max_connections` clients that each trickle a byte every few seconds
//! hold every connection slot until `max_connection_age`, and meanwhile new connections
//! (probes too) wait; a client with the token can hold an in-flight slot for as long as
//! its request is handled (a reload waits for the pipeline).
//!
//! The Prometheus text format is written here by hand: the values already live in
//! `Counters` and `Live`, and the format is a line per sample; a metrics registry crate
//! would hold a second copy of every counter.

pub mod conn;
pub mod guard;
mod metrics;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::alert::Notification;
use crate::notify::silence::{self, Silences};
use crate::telemetry::Counters;
use guard::Token;

/// `http:` in the config.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on (`run` default 127.0.0.1:9797; `replay` default off);
    /// `--http ADDR` or `--http off` override it.
    #[serde(default)]
    pub listen: Option<String>,
    /// Environment variable holding the bearer token that mutating endpoints require
    /// (at least 16 bytes).
    #[serde(default)]
    pub token_env: Option<String>,
    /// File whose first line is that token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// API requests handled at once; more wait their turn (the probes do not wait).
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// Connections held at once; more wait to be accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection that reads and writes nothing this long, outside a request being
    /// handled, is closed.
    #[serde(with = "humantime_serde", default = "default_idle_timeout")]
    #[schemars(with = "String")]
    pub idle_timeout: Duration,
    /// A connection this old is closed at its next stall outside a request.
    #[serde(with = "humantime_serde", default = "default_max_connection_age")]
    #[schemars(with = "String")]
    pub max_connection_age: Duration,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            listen: None,
            token_env: None,
            token_file: None,
            max_in_flight: default_in_flight(),
            max_connections: default_max_connections(),
            idle_timeout: default_idle_timeout(),
            max_connection_age: default_max_connection_age(),
        }
    }
}

fn default_in_flight() -> usize {
    256
}

fn default_max_connections() -> usize {
    512
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_max_connection_age() -> Duration {
    Duration::from_secs(600)
}

/// The shortest token accepted, in bytes.
const MIN_TOKEN_BYTES: usize = 16;

impl HttpConfig {
    /// The token, read now; `None` when none is configured (mutations off). A configured
    /// token that is empty or short is an error: it would open the API to anyone.
    pub fn token(&self) -> Result<Option<Token>, String> {
        match (&self.token_env, &self.token_file) {
            (Some(_), Some(_)) => Err("http: give token_env or token_file, not both".into()),
            (Some(var), None) => {
                let t = std::env::var(var).map_err(|e| match e {
                    std::env::VarError::NotPresent => format!(
                        "http.token_env: environment variable {var} is not set; {}",
                        how_to_set(var)
                    ),
                    std::env::VarError::NotUnicode(_) => format!(
                        "http.token_env: environment variable {var} is not UTF-8; {}",
                        how_to_set(var)
                    ),
                })?;
                checked_token(&format!("http.token_env: environment variable {var}"), &t)
                    .map_err(|e| format!("{e}; {}", how_to_set(var)))
                    .map(Some)
            }
            (None, Some(p)) => {
                let t = std::fs::read_to_string(p)
                    .map_err(|e| format!("http.token_file: cannot read {}: {e}", p.display()))?;
                let first = t.lines().next().unwrap_or_default();
                checked_token(
                    &format!("http.token_file: the token in {}", p.display()),
                    first,
                )
                .map_err(|e| {
                    format!(
                        "{e}; write one with `openssl rand -hex 32 > {}`",
                        p.display()
                    )
                })
                .map(Some)
            }
            (None, None) => Ok(None),
        }
    }
}

fn how_to_set(var: &str) -> String {
    format!("set a random one, e.g. `export {var}=$(openssl rand -hex 32)`")
}

/// The token trimmed, when it is at least [`MIN_TOKEN_BYTES`] long; else what is wrong
/// with it (`what` names where it came from), never the token itself.
fn checked_token(what: &str, raw: &str) -> Result<Token, String> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if t.len() < MIN_TOKEN_BYTES {
        return Err(format!(
            "{what} is {} bytes, shorter than {MIN_TOKEN_BYTES}",
            t.len()
        ));
    }
    Ok(Token::new(t.to_owned()))
}

/// The answer to a reload request: what was loaded, or why the new set was rejected.
pub type ReloadReply = tokio::sync::oneshot::Sender<Result<String, String>>;

/// What the pipeline publishes for the server, updated as it goes.
pub struct Live {
    pub counters: Arc<Counters>,
    /// Pending and firing alerts, by id: their latest state change.
    pub alerts: Mutex<BTreeMap<String, Notification>>,
    /// The source sends records (false while it waits for brokers or a group).
    pub source_ready: AtomicBool,
    /// Receiver status lines (outbox), refreshed by the pipeline.
    pub receivers: Mutex<Vec<String>>,
    pub clients: Arc<crate::tables::clients::Clients>,
    pub drift: Option<Arc<crate::tables::drift::Drift>>,
    /// The re-scorer (`/api/v1/rescore`).
    pub rescorer: Option<Arc<crate::rescore::rescorer::Rescorer>>,
    pub silences: Arc<Silences>,
    /// Asks the pipeline to reload its rules.
    pub reload: Option<tokio::sync::mpsc::Sender<ReloadReply>>,
    /// The receivers' delivery counts.
    pub deliveries: Vec<crate::alert::DeliveryStats>,
    /// The report `GET /report` renders, when the pipeline keeps one.
    pub report: std::sync::OnceLock<Arc<Mutex<crate::report::Report>>>,
    /// When the process started (the report's records per second).
    pub started: std::time::Instant,
}

impl Live {
    pub fn new(
        counters: Arc<Counters>,
        clients: Arc<crate::tables::clients::Clients>,
        silences: Arc<Silences>,
    ) -> Live {
        Live {
            counters,
            alerts: Mutex::new(BTreeMap::new()),
            source_ready: AtomicBool::new(false),
            receivers: Mutex::new(Vec::new()),
            clients,
            drift: None,
            rescorer: None,
            silences,
            reload: None,
            deliveries: Vec::new(),
            report: std::sync::OnceLock::new(),
            started: std::time::Instant::now(),
        }
    }
}

/// The alerts `GET /api/v1/alerts` lists, kept current as a receiver like any other:
/// pending and firing alerts in, resolved ones out.
pub struct AlertsView(pub Arc<Live>);

impl crate::alert::Receiver for AlertsView {
    fn name(&self) -> &str {
        "http"
    }
    fn send(&mut self, n: &Notification) -> std::io::Result<()> {
        let mut alerts = self.0.alerts.lock().expect("alerts lock");
        match n.state {
            crate::alert::State::Resolved => {
                alerts.remove(&n.id);
            }
            _ => {
                alerts.insert(n.id.clone(), n.clone());
            }
        }
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct App {
    live: Arc<Live>,
    token: Option<Token>,
    gate: tokio::sync::Semaphore,
}

/// Binds the address (a clear error when it is taken) and serves until the process
/// ends; returns the bound address.
pub async fn serve(addr: &str, c: &HttpConfig, live: Arc<Live>) -> Result<SocketAddr, String> {
    let token = c.token()?;
    if c.idle_timeout.is_zero() || c.max_connection_age.is_zero() {
        return Err(
            "http: idle_timeout and max_connection_age must be longer than 0 (e.g. 30s, 10m)"
                .into(),
        );
    }
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        format!("http: cannot listen on {addr}: {e} (pass --http ADDR, or --http off)")
    })?;
    let bound = listener.local_addr().map_err(|e| format!("http: {e}"))?;
    let listener = conn::Guarded::new(
        listener,
        conn::Limits {
            max_connections: c.max_connections,
            idle_timeout: c.idle_timeout,
            max_age: c.max_connection_age,
        },
    );
    let app = Arc::new(App {
        live,
        token,
        gate: tokio::sync::Semaphore::new(c.max_in_flight.max(1)),
    });
    let router = router(app).into_make_service_with_connect_info::<conn::Conn>();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!("http server stopped: {e}");
        }
    });
    tracing::info!(address = %bound, "http: listening");
    Ok(bound)
}

/// The endpoints and their limits (see `guard`): the probes skip the in-flight gate.
fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/rules", get(rules))
        .route("/api/v1/rescore", get(rescore))
        .route("/api/v1/silences", get(list_silences).post(create_silence))
        .route("/api/v1/silences/{id}", delete(expire_silence))
        .route("/-/reload", post(reload))
        .route("/report", get(report))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::bounded,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::metrics))
        .merge(api)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::changes,
        ))
        .layer(axum::middleware::from_fn(guard::track))
        .with_state(app)
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

async fn readyz(State(app): State<Arc<App>>) -> Response {
    let live = &app.live;
    let source = live.source_ready.load(Ordering::Relaxed);
    let rules = live.counters.rules.lock().expect("rules lock").len();
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

/// The HTML report of what the instance holds (`report.hours` of event time).
async fn report(State(app): State<Arc<App>>) -> Response {
    let Some(report) = app.live.report.get() else {
        return error(
            StatusCode::NOT_FOUND,
            "this instance keeps no report (run or replay with the HTTP server on)",
        );
    };
    let c = &app.live.counters;
    let read = c.records_read.load(Ordering::Relaxed);
    let bad = c.records_bad.load(Ordering::Relaxed);
    let late = c.records_late.load(Ordering::Relaxed);
    let totals = crate::report::Totals {
        records_read: read,
        good: read.saturating_sub(bad + late),
        bad,
        late,
        windows_closed: c.windows_closed.load(Ordering::Relaxed),
        rule_errors: c.rule_errors.load(Ordering::Relaxed),
        elapsed_s: app.live.started.elapsed().as_secs_f64(),
        generated: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    // Rendered off the async workers: the page takes milliseconds, the report lock is
    // the pipeline's too.
    let report = report.clone();
    let page =
        match tokio::task::spawn_blocking(move || crate::report::lock(&report).render(&totals))
            .await
        {
            Ok(page) => page,
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("the report could not be rendered: {e}"),
                );
            }
        };
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}

async fn rules(State(app): State<Arc<App>>) -> Response {
    let rules = app.live.counters.rules.lock().expect("rules lock").clone();
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

/// The token and the body's limits were checked before (`guard::changes`).
async fn create_silence(State(app): State<Arc<App>>, body: Bytes) -> Response {
    let req: silence::NewSilence = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("bad silence: {e}")),
    };
    match app.live.silences.create(req) {
        Ok(id) => (StatusCode::OK, json_body(&json!({ "id": id }))).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

async fn expire_silence(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    match app.live.silences.expire(&id) {
        Ok(silence::Expired::Now) => json_body(&json!({ "expired": id })).into_response(),
        Ok(silence::Expired::NoSuchSilence) => {
            error(StatusCode::NOT_FOUND, &format!("no silence {id}"))
        }
        Ok(silence::Expired::FromConfig) => error(
            StatusCode::CONFLICT,
            &format!("silence {id} comes from the config: change notify.silences and reload"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

async fn reload(State(app): State<Arc<App>>) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn app(token: Option<&str>, in_flight: usize) -> Arc<App> {
        Arc::new(App {
            live: Arc::new(Live::new(
                Arc::new(Counters::default()),
                crate::tables::clients::Clients::new(
                    &[],
                    &crate::tables::clients::ClientsConfig::default(),
                    &[],
                    crate::tables::reference::Reference::new(&[], &Default::default(), 0, []),
                ),
                Arc::new(Silences::default()),
            )),
            token: token.map(|t| Token::new(t.to_owned())),
            gate: tokio::sync::Semaphore::new(in_flight),
        })
    }

    #[test]
    fn an_empty_or_blank_token_is_refused() {
        for raw in ["", "   ", "\t\n"] {
            let e = checked_token("http.token_env: environment variable T", raw).unwrap_err();
            assert!(e.contains("environment variable T is empty"), "{e}");
        }
    }

    #[test]
    fn a_token_under_16_bytes_is_refused_without_printing_it() {
        let e = checked_token(
            "http.token_env: environment variable T",
            "  k3Yq9zW1pR7xT0b \n",
        )
        .unwrap_err();
        assert!(e.contains("15 bytes, shorter than 16"), "{e}");
        assert!(!e.contains("k3Yq9"), "{e}");
        // Bytes, not characters: 8 two-byte characters are 16 bytes.
        assert!(checked_token("t", "éééééééé").is_ok());
        assert!(checked_token("t", "ééééééé").is_err());
    }

    #[test]
    fn a_token_of_16_bytes_is_taken_trimmed() {
        let t = checked_token("t", " 0123456789abcdef\r\n").unwrap();
        assert_eq!(t, Token::new("0123456789abcdef".into()));
    }

    #[test]
    fn a_short_token_file_says_how_to_write_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "secret\n").unwrap();
        let c = HttpConfig {
            token_file: Some(p.clone()),
            ..HttpConfig::default()
        };
        let e = c.token().unwrap_err();
        assert!(e.contains("6 bytes, shorter than 16"), "{e}");
        assert!(e.contains("openssl rand -hex 32"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        std::fs::write(&p, "0123456789abcdef0123\nsecond line\n").unwrap();
        assert_eq!(
            c.token().unwrap(),
            Some(Token::new("0123456789abcdef0123".into()))
        );
    }

    #[test]
    fn an_unset_token_variable_says_how_to_set_one() {
        let c = HttpConfig {
            token_env: Some("INFERWATCH_TEST_TOKEN_THAT_IS_NEVER_SET".into()),
            ..HttpConfig::default()
        };
        let e = c.token().unwrap_err();
        assert!(e.contains("is not set"), "{e}");
        assert!(
            e.contains("export INFERWATCH_TEST_TOKEN_THAT_IS_NEVER_SET=$(openssl rand -hex 32)"),
            "{e}"
        );
    }

    /// One request on a fresh connection; the status code, `None` if no answer came
    /// within `patience`.
    async fn status(addr: SocketAddr, head: &str, patience: Duration) -> Option<u16> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let go = async {
            let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
            s.write_all(head.as_bytes()).await.ok()?;
            let mut out = vec![0u8; 12];
            s.read_exact(&mut out).await.ok()?;
            std::str::from_utf8(&out[9..12]).ok()?.parse().ok()
        };
        tokio::time::timeout(patience, go).await.ok().flatten()
    }

    #[tokio::test]
    async fn probes_answer_while_the_gate_is_full_and_mutations_need_the_token_first() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        // No in-flight slot at all: the API waits, the probes must not.
        let r = router(app(Some("0123456789abcdef"), 0));
        let server = tokio::spawn(async move { axum::serve(l, r).await });
        let patience = Duration::from_secs(20);
        for path in ["/healthz", "/metrics", "/readyz"] {
            let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let code = status(addr, &head, patience).await;
            assert!(matches!(code, Some(200 | 503)), "{path}: {code:?}");
        }
        // The body never comes: only a check before reading it can answer.
        let post = "POST /api/v1/silences HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{";
        assert_eq!(status(addr, post, patience).await, Some(401));
        let authed = post.replace(
            "Host: x",
            "Host: x\r\nAuthorization: Bearer 0123456789abcdef",
        );
        assert_eq!(status(addr, &authed, patience).await, Some(413));
        server.abort();
    }
}
