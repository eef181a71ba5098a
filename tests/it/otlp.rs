//! OTLP export against a real OTLP receiver: the collector's logs and metrics services,
//! generated from the OTLP protos (`opentelemetry-proto`) and served over gRPC by tonic
//! and over HTTP/protobuf by axum, recording every request they accept.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;
use prost::Message as _;
use serde_json::Value;

use crate::cli::{FEATURES, free_port, generate, jsonl, root, summary, text};

/// One log record as received, flattened.
#[derive(Debug, Clone)]
struct Rec {
    event_name: String,
    severity_number: i32,
    body: String,
    attrs: BTreeMap<String, String>,
}

#[derive(Default)]
struct Sink {
    logs: Mutex<Vec<Rec>>,
    /// The resource attributes of every log export.
    resources: Mutex<Vec<BTreeMap<String, String>>>,
    metrics: Mutex<Vec<ExportMetricsServiceRequest>>,
}

fn any(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    }
}

impl Sink {
    fn add_logs(&self, req: ExportLogsServiceRequest) {
        let mut logs = self.logs.lock().unwrap();
        for rl in req.resource_logs {
            self.resources.lock().unwrap().push(
                rl.resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .map(|a| (a.key.clone(), any(&a.value)))
                    .collect(),
            );
            for sl in rl.scope_logs {
                for r in sl.log_records {
                    logs.push(Rec {
                        event_name: r.event_name.clone(),
                        severity_number: r.severity_number,
                        body: any(&r.body),
                        attrs: r
                            .attributes
                            .iter()
                            .map(|a| (a.key.clone(), any(&a.value)))
                            .collect(),
                    });
                }
            }
        }
    }
}

struct Grpc(Arc<Sink>);

#[tonic::async_trait]
impl LogsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.0.add_logs(request.into_inner());
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.metrics.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// A receiver serving on `listener`, stopped on drop (with its runtime).
struct Collector {
    sink: Arc<Sink>,
    _rt: tokio::runtime::Runtime,
}

/// A listener on a port of 127.0.0.1 that the kernel picked, kept open: nobody else can
/// take the port between choosing it and serving on it.
fn listener() -> (std::net::TcpListener, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

impl Collector {
    fn start(listener: std::net::TcpListener, http: bool) -> Collector {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sink = Arc::new(Sink::default());
        listener.set_nonblocking(true).unwrap();
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(listener).unwrap()
        };
        if http {
            let (logs, metrics) = (sink.clone(), sink.clone());
            let app = axum::Router::new()
                .route(
                    "/v1/logs",
                    axum::routing::post(move |body: axum::body::Bytes| async move {
                        logs.add_logs(ExportLogsServiceRequest::decode(body).unwrap());
                        ExportLogsServiceResponse::default().encode_to_vec()
                    }),
                )
                .route(
                    "/v1/metrics",
                    axum::routing::post(move |body: axum::body::Bytes| async move {
                        let req = ExportMetricsServiceRequest::decode(body).unwrap();
                        metrics.metrics.lock().unwrap().push(req);
                        ExportMetricsServiceResponse::default().encode_to_vec()
                    }),
                );
            rt.spawn(async move { axum::serve(listener, app).await });
        } else {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let svc = Arc::new(Grpc(sink.clone()));
            rt.spawn(
                tonic::transport::Server::builder()
                    .add_service(LogsServiceServer::from_arc(svc.clone()))
                    .add_service(MetricsServiceServer::from_arc(svc))
                    .serve_with_incoming(incoming),
            );
        }
        Collector { sink, _rt: rt }
    }

    fn logs(&self) -> Vec<Rec> {
        self.sink.logs.lock().unwrap().clone()
    }

    /// The values of a resource attribute over every log export.
    fn resource(&self, key: &str) -> BTreeSet<String> {
        let all = self.sink.resources.lock().unwrap();
        all.iter()
            .map(|r| r.get(key).cloned().unwrap_or_default())
            .collect()
    }

    /// The last value of a sum metric's data point with these attributes.
    fn last_sum(&self, name: &str, attr: Option<(&str, &str)>) -> Option<i64> {
        let metrics = self.sink.metrics.lock().unwrap();
        let mut last = None;
        for req in metrics.iter() {
            for m in req
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .filter(|m| m.name == name)
            {
                let Some(Data::Sum(sum)) = &m.data else {
                    continue;
                };
                for p in &sum.data_points {
                    let matches = attr.is_none_or(|(k, v)| {
                        p.attributes
                            .iter()
                            .any(|a| a.key == k && any(&a.value) == v)
                    });
                    if matches && let Some(Number::AsInt(x)) = p.value {
                        last = Some(x);
                    }
                }
            }
        }
        last
    }
}

fn config(dir: &Path, otlp: &str) -> PathBuf {
    config_named(dir, &format!("service_name: inferwatch-test, {otlp}"))
}

fn config_named(dir: &Path, otlp: &str) -> PathBuf {
    let path = dir.join("otlp.yaml");
    std::fs::write(
        &path,
        format!(
            "source: {{type: file, paths: []}}\n\
             {FEATURES}\
             queries: {}\n\
             alerts: {{stdout: false}}\n\
             checkpoint_interval: 50ms\n\
             otlp: {{{otlp}}}\n\
             notify: {{retry_initial: 200ms, retry_max: 2s, drain_timeout: 120s}}\n",
            root().join("queries").display(),
        ),
    )
    .unwrap();
    path
}

fn replay(cfg: &Path, input: &Path, alerts: &Path, state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_inferwatch"));
    c.args(["replay", "--no-progress", "--config"])
        .arg(cfg)
        .arg("--input")
        .arg(input)
        .arg("--alerts-out")
        .arg(alerts)
        .arg("--state-dir")
        .arg(state)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .current_dir(root());
    c
}

/// Every state change of the alerts file arrived as one log record, with its event
/// name, severity number and attributes.
fn assert_records_match(recs: &[Rec], alerts: &Path) {
    let alerts: Vec<Value> = jsonl(alerts);
    assert!(
        alerts.len() >= 10,
        "too few alerts to judge: {}",
        alerts.len()
    );
    let mut seen = BTreeSet::new();
    for r in recs {
        let id = &r.attrs["inferwatch.notification.id"];
        assert!(seen.insert(id.clone()), "record {id} arrived twice");
    }
    let want: BTreeSet<String> = alerts
        .iter()
        .map(|a| a["notification_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, want, "exported records differ from the alerts file");
    let by_id: BTreeMap<&str, &Rec> = recs
        .iter()
        .map(|r| (r.attrs["inferwatch.notification.id"].as_str(), r))
        .collect();
    for a in &alerts {
        let r = by_id[a["notification_id"].as_str().unwrap()];
        let state = a["state"].as_str().unwrap();
        assert_eq!(r.event_name, format!("inferwatch.alert.{state}"));
        let severity = match (state, a["severity"].as_str().unwrap()) {
            ("resolved", _) | (_, "info") => 9,
            (_, "low") => 12,
            (_, "medium") => 13,
            (_, "high") => 17,
            (_, "critical") => 21,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(r.severity_number, severity, "{r:?}");
        assert_eq!(r.attrs["security_rule.id"], a["rule_id"].as_str().unwrap());
        assert_eq!(r.attrs["inferwatch.alert.id"], a["id"].as_str().unwrap());
        for (k, v) in a["labels"].as_object().unwrap() {
            assert_eq!(
                r.attrs.get(&format!("alert.label.{k}")).map(String::as_str),
                v.as_str(),
                "{r:?}"
            );
        }
        if let Some(s) = a["annotations"]["summary"].as_str() {
            assert_eq!(r.body, s);
        }
    }
}

#[test]
fn mixed_scenario_exports_each_state_change_and_the_counters_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (input, _) = generate(d, "mixed", 7, 160_000, "50");
    let (listener, port) = listener();
    let collector = Collector::start(listener, false);
    let cfg = config(
        d,
        &format!(
            "logs: true, metrics: true, protocol: grpc, endpoint: 'http://127.0.0.1:{port}', metrics_interval: 500ms"
        ),
    );
    let alerts = d.join("alerts.jsonl");
    let o = replay(&cfg, &input, &alerts, &d.join("state"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_records_match(&collector.logs(), &alerts);
    assert_eq!(
        collector.resource("service.name"),
        BTreeSet::from(["inferwatch-test".to_owned()])
    );
    // The last metric export (at shutdown) holds the final counts.
    let s = summary(&o.stderr);
    assert_eq!(
        collector.last_sum("inferwatch.records", Some(("outcome", "good"))),
        Some(s["good"] as i64)
    );
    let firing = jsonl(&alerts)
        .iter()
        .filter(|a| a["state"] == "firing")
        .count();
    assert_eq!(
        collector.last_sum("inferwatch.alerts", Some(("state", "firing"))),
        Some(firing as i64)
    );
    assert_eq!(
        collector.last_sum("inferwatch.windows.closed", None),
        Some(s["windows closed"] as i64)
    );
}

#[test]
fn collector_outage_delays_http_export_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (input, _) = generate(d, "mixed", 8, 160_000, "50");
    let port = free_port();
    // Endpoint, protocol, service name and resource attributes from the standard
    // variables this time.
    let cfg = config_named(d, "logs: true");
    let alerts = d.join("alerts.jsonl");
    let mut child = replay(&cfg, &input, &alerts, &d.join("state"))
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        )
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_SERVICE_NAME", "inferwatch-from-env")
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment=staging,team=ml",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The collector is down until an export has failed, however long the run takes to
    // get there.
    let (failed, log) = crate::cli::watch_stderr(&mut child, "otlp log export failed");
    let failed = failed.recv_timeout(Duration::from_secs(300)).is_ok();
    let collector = Collector::start(
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap(),
        true,
    );
    let o = child.wait_with_output().unwrap();
    let log = log.join().unwrap();
    assert!(o.status.success(), "{}\n{log}", text(&o));
    assert!(
        failed,
        "no export failed while the collector was down:\n{log}"
    );
    assert_records_match(&collector.logs(), &alerts);
    let one = |v: &str| BTreeSet::from([v.to_owned()]);
    assert_eq!(
        collector.resource("service.name"),
        one("inferwatch-from-env")
    );
    assert_eq!(collector.resource("deployment.environment"), one("staging"));
    assert_eq!(collector.resource("team"), one("ml"));
}

#[test]
fn an_https_endpoint_over_grpc_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Refused before any record is read: the input need not exist.
    let input = d.join("never-read.jsonl");
    for (otlp, env) in [
        (
            "logs: true, protocol: grpc, endpoint: 'https://127.0.0.1:4317'",
            None,
        ),
        (
            "logs: true, protocol: grpc",
            Some("https://collector.example:4317"),
        ),
    ] {
        let cfg = config(d, otlp);
        let mut c = replay(&cfg, &input, &d.join("alerts.jsonl"), &d.join("state"));
        if let Some(e) = env {
            c.env("OTEL_EXPORTER_OTLP_ENDPOINT", e);
        }
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("needs protocol http/protobuf"),
            "{}",
            text(&o)
        );
    }
}

#[test]
fn kill_9_mid_export_repeats_at_most_the_batch_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (input, _) = generate(d, "mixed", 9, 160_000, "50");
    let (listener, port) = listener();
    let collector = Collector::start(listener, false);
    let cfg = config(
        d,
        &format!("logs: true, protocol: grpc, endpoint: 'http://127.0.0.1:{port}'"),
    );
    let alerts = d.join("alerts.jsonl");
    let state = d.join("state");
    let mut kills = 0;
    for delay_ms in [700, 1500] {
        let mut child = replay(&cfg, &input, &alerts, &state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        crate::checkpoint::wait_for_checkpoint(&state, &mut child);
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 1, "the run ended before any kill");
    let o = replay(&cfg, &input, &alerts, &state).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let recs = collector.logs();
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for r in &recs {
        *count
            .entry(r.attrs["inferwatch.notification.id"].clone())
            .or_default() += 1;
    }
    let repeated = count.values().filter(|&&n| n > 1).count();
    eprintln!(
        "{kills} kills: {repeated} of {} records sent twice",
        count.len()
    );
    assert!(count.values().all(|&n| n <= 2), "a record arrived 3 times");
    // At most one batch (256 records) in flight per kill is sent again.
    assert!(
        repeated <= kills * 256,
        "{repeated} repeats after {kills} kills"
    );
    let mut once: Vec<Rec> = Vec::new();
    let mut seen = BTreeSet::new();
    for r in recs {
        if seen.insert(r.attrs["inferwatch.notification.id"].clone()) {
            once.push(r);
        }
    }
    assert_records_match(&once, &alerts);
}
