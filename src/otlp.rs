//! OpenTelemetry: every alert state change as an OTLP log record (delivered through the
//! outbox, so a collector that is down loses nothing), and the pipeline's counters as
//! OTLP metrics. gRPC or HTTP/protobuf; the endpoint and protocol come from the config
//! or the standard `OTEL_EXPORTER_OTLP_*` variables.
//!
//! Log records are exported by calling the OTLP exporter directly, one batch at a time,
//! so that the outbox advances only past records the collector acknowledged (the SDK's
//! batch processor would drop them after its retries). `LogBatch::new` is public but
//! documented as internal in opentelemetry_sdk 0.33; the version is pinned.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{
    Protocol, WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::{LogBatch, LogExporter as _, SdkLogRecord, SdkLoggerProvider};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use serde::Deserialize;

use crate::alert::{Notification, State};
use crate::rules::Severity as RuleSeverity;
use crate::rules::template::display;
use crate::telemetry::Counters;
use crate::telemetry::catalogue::{self as cat, Family};

/// `otlp:` in the config.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Export every alert state change as a log record (through the outbox).
    #[serde(default)]
    pub logs: bool,
    /// Export the pipeline's counters every `metrics_interval`.
    #[serde(default)]
    pub metrics: bool,
    /// Base URL of the collector, as `OTEL_EXPORTER_OTLP_ENDPOINT` (for HTTP the paths
    /// `/v1/logs` and `/v1/metrics` are added). Default: the OTEL_EXPORTER_OTLP_*
    /// variables, else `http://localhost:4317` (gRPC) or `http://localhost:4318` (HTTP).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `grpc` or `http/protobuf`. Default: `OTEL_EXPORTER_OTLP_PROTOCOL`, else `grpc`.
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(with = "humantime_serde", default = "default_interval")]
    #[schemars(with = "String")]
    pub metrics_interval: Duration,
    /// Limit of each export.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// `service.name` of the resource. Default: `OTEL_SERVICE_NAME`, else `inferwatch`.
    /// `OTEL_RESOURCE_ATTRIBUTES` adds its attributes, as in every OpenTelemetry SDK.
    #[serde(default)]
    pub service_name: Option<String>,
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Grpc,
    Http,
}

impl OtlpConfig {
    fn protocol(&self) -> Result<Proto, String> {
        let from_env = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").ok();
        let (p, what) = match (&self.protocol, &from_env) {
            (Some(p), _) => (p.as_str(), "otlp.protocol"),
            (None, Some(p)) => (p.as_str(), "OTEL_EXPORTER_OTLP_PROTOCOL"),
            (None, None) => ("grpc", ""),
        };
        match p.trim().to_ascii_lowercase().as_str() {
            "grpc" => Ok(Proto::Grpc),
            "http/protobuf" | "http" => Ok(Proto::Http),
            other => Err(format!(
                "{what}: protocol {other:?} is not supported; use grpc or http/protobuf"
            )),
        }
    }

    fn endpoint(&self, proto: Proto, signal: &str) -> Option<String> {
        let base = self.endpoint.as_deref()?.trim_end_matches('/');
        Some(match proto {
            Proto::Grpc => base.to_owned(),
            Proto::Http => format!("{base}/v1/{signal}"),
        })
    }

    /// The resource: `service.name` from the config, else `OTEL_SERVICE_NAME`, else
    /// `inferwatch`; the attributes of `OTEL_RESOURCE_ATTRIBUTES` (read by the SDK's
    /// default detectors); `service.version`.
    fn resource(&self) -> Resource {
        let env = |v: &str| std::env::var(v).ok().filter(|s| !s.trim().is_empty());
        // `service.name` in OTEL_RESOURCE_ATTRIBUTES counts as the SDK's own detectors
        // read it; only without any is the name `inferwatch`.
        let in_attributes = env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| {
            a.split(',').any(|kv| {
                kv.split_once('=')
                    .is_some_and(|(k, _)| k.trim() == "service.name")
            })
        });
        let name = self
            .service_name
            .clone()
            .or_else(|| env("OTEL_SERVICE_NAME"));
        let mut b = Resource::builder();
        match name {
            Some(n) => b = b.with_service_name(n),
            None if !in_attributes => b = b.with_service_name("inferwatch"),
            None => {}
        }
        b.with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build()
    }

    /// The endpoint the exporters will use for `signal`: the config's, else the
    /// standard variables'.
    fn effective_endpoint(&self, signal: &str) -> Option<String> {
        self.endpoint.clone().or_else(|| {
            [
                format!(
                    "OTEL_EXPORTER_OTLP_{}_ENDPOINT",
                    signal.to_ascii_uppercase()
                ),
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
            ]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        })
    }

    /// Checks what can be checked before a run.
    pub fn validate(&self) -> Result<(), String> {
        let proto = self.protocol()?;
        if let Some(e) = &self.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(format!(
                "otlp.endpoint: {e:?} needs a scheme (http://host:port or https://host:port)"
            ));
        }
        // gRPC has no TLS stack in this build: refused here rather than failing at
        // every export. OTLP over HTTP speaks TLS (the system's OpenSSL and CAs).
        for signal in ["logs", "metrics"] {
            if proto == Proto::Grpc
                && self
                    .effective_endpoint(signal)
                    .is_some_and(|e| e.trim().starts_with("https://"))
            {
                return Err(
                    "otlp: an https:// endpoint needs protocol http/protobuf (OTLP over gRPC with TLS is not built in)"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

/// Builds the log exporter; for gRPC, inside a tokio runtime that stays up while it is
/// used.
pub fn log_exporter(c: &OtlpConfig) -> Result<opentelemetry_otlp::LogExporter, String> {
    let proto = c.protocol()?;
    let built = match proto {
        Proto::Grpc => {
            let mut b = opentelemetry_otlp::LogExporter::builder()
                .with_tonic()
                .with_timeout(c.timeout)
                .with_retry_policy(no_retry());
            if let Some(e) = c.endpoint(proto, "logs") {
                b = b.with_endpoint(e);
            }
            b.build()
        }
        Proto::Http => {
            let mut b = opentelemetry_otlp::LogExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_timeout(c.timeout)
                .with_retry_policy(no_retry());
            if let Some(e) = c.endpoint(proto, "logs") {
                b = b.with_endpoint(e);
            }
            b.build()
        }
    };
    let mut exporter = built.map_err(|e| format!("otlp: cannot set up the log exporter: {e}"))?;
    opentelemetry_sdk::logs::LogExporter::set_resource(&mut exporter, &c.resource());
    Ok(exporter)
}

/// The outbox retries with its own backoff, and only it decides what was delivered.
fn no_retry() -> opentelemetry_otlp::RetryPolicy {
    opentelemetry_otlp::RetryPolicy::disabled()
}

fn event_name(s: State) -> &'static str {
    match s {
        State::Pending => "inferwatch.alert.pending",
        State::Firing => "inferwatch.alert.firing",
        State::Resolved => "inferwatch.alert.resolved",
    }
}

/// SeverityNumber of a state change: a resolution is INFO; otherwise the rule's
/// severity (info → INFO, low → INFO4, medium → WARN, high → ERROR, critical → FATAL).
pub fn severity(n: &Notification) -> (Severity, &'static str) {
    if n.state == State::Resolved {
        return (Severity::Info, "INFO");
    }
    match n.severity {
        RuleSeverity::Info => (Severity::Info, "INFO"),
        RuleSeverity::Low => (Severity::Info4, "INFO4"),
        RuleSeverity::Medium => (Severity::Warn, "WARN"),
        RuleSeverity::High => (Severity::Error, "ERROR"),
        RuleSeverity::Critical => (Severity::Fatal, "FATAL"),
    }
}

fn time_of(rfc3339: &str) -> Option<SystemTime> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(t.timestamp_millis()).ok()?))
}

/// Exports state changes as log records, one batch per call.
pub struct LogSink {
    exporter: Arc<opentelemetry_otlp::LogExporter>,
    provider: SdkLoggerProvider,
    scope: InstrumentationScope,
    blocking: bool,
}

impl LogSink {
    pub fn new(c: &OtlpConfig) -> Result<LogSink, String> {
        Ok(LogSink {
            exporter: Arc::new(log_exporter(c)?),
            // Only a factory of records: no processor, nothing is emitted through it.
            provider: SdkLoggerProvider::builder().build(),
            scope: InstrumentationScope::builder("inferwatch")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            blocking: c.protocol()? == Proto::Http,
        })
    }

    fn record(&self, n: &Notification) -> SdkLogRecord {
        let mut r = self.provider.logger("inferwatch").create_log_record();
        r.set_event_name(event_name(n.state));
        let (sev, text) = severity(n);
        r.set_severity_number(sev);
        r.set_severity_text(text);
        if let Some(t) = time_of(&n.window_end) {
            r.set_timestamp(t);
        }
        r.set_observed_timestamp(SystemTime::now());
        let body = n
            .annotations
            .get("summary")
            .cloned()
            .unwrap_or_else(|| n.name.clone().unwrap_or_else(|| n.rule_id.clone()));
        r.set_body(AnyValue::from(body));
        let mut attrs: Vec<(String, AnyValue)> = vec![
            ("security_rule.id".into(), n.rule_id.clone().into()),
            (
                "security_rule.name".into(),
                n.name.clone().unwrap_or_else(|| n.rule_id.clone()).into(),
            ),
            ("security_rule.ruleset.name".into(), "inferwatch".into()),
            (
                "security_rule.category".into(),
                n.tags.keys().cloned().collect::<Vec<_>>().join(" ").into(),
            ),
            (
                "security_rule.reference".into(),
                n.tags
                    .values()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
                    .into(),
            ),
            ("inferwatch.alert.id".into(), n.id.clone().into()),
            ("inferwatch.alert.state".into(), n.state.as_str().into()),
            (
                "inferwatch.alert.severity".into(),
                n.severity.as_str().into(),
            ),
            (
                "inferwatch.notification.id".into(),
                n.notification_id.clone().into(),
            ),
            (
                "inferwatch.alert.starts_at".into(),
                n.starts_at.clone().into(),
            ),
            (
                "inferwatch.window.start".into(),
                n.window_start.clone().into(),
            ),
            ("inferwatch.window.end".into(), n.window_end.clone().into()),
        ];
        if let Some(e) = &n.ends_at {
            attrs.push(("inferwatch.alert.ends_at".into(), e.clone().into()));
        }
        if let Some(d) = n.annotations.get("description") {
            attrs.push(("security_rule.description".into(), d.clone().into()));
        }
        for (k, v) in &n.labels {
            attrs.push((format!("alert.label.{k}"), v.clone().into()));
        }
        for (k, v) in &n.evidence.values {
            let value: AnyValue = match v {
                serde_json::Value::Number(x) if x.is_i64() => x.as_i64().unwrap_or(0).into(),
                serde_json::Value::Number(x) => x.as_f64().unwrap_or(f64::NAN).into(),
                serde_json::Value::Bool(b) => (*b).into(),
                other => display(other).into(),
            };
            attrs.push((format!("inferwatch.alert.value.{k}"), value));
        }
        if !n.evidence.sample_request_ids.is_empty() {
            attrs.push((
                "inferwatch.alert.sample_request_ids".into(),
                n.evidence.sample_request_ids.join(" ").into(),
            ));
        }
        r.add_attributes(attrs);
        r
    }

    /// Sends these state changes; Ok once the collector acknowledged them.
    pub async fn export(&self, notes: &[Notification]) -> Result<(), String> {
        let records: Vec<SdkLogRecord> = notes.iter().map(|n| self.record(n)).collect();
        let exporter = self.exporter.clone();
        let scope = self.scope.clone();
        let send = async move {
            let pairs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
                records.iter().map(|r| (r, &scope)).collect();
            exporter.export(LogBatch::new(&pairs)).await
        };
        let result = if self.blocking {
            // The HTTP exporter uses reqwest's blocking client: keep it off the runtime.
            tokio::task::spawn_blocking(move || futures::executor::block_on(send))
                .await
                .map_err(|e| format!("export task failed: {e}"))?
        } else {
            send.await
        };
        result.map_err(|e| e.to_string())
    }
}

/// Metrics: the pipeline's counters, read at each export.
pub struct Metrics {
    provider: SdkMeterProvider,
    /// Drives the gRPC channel while the provider exports; shut down in the background
    /// on drop (the pipeline drops it from async code).
    runtime: Option<tokio::runtime::Runtime>,
}

impl Metrics {
    pub fn start(c: &OtlpConfig, counters: Arc<Counters>) -> Result<Metrics, String> {
        let proto = c.protocol()?;
        let runtime = match proto {
            Proto::Grpc => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("inferwatch-otlp")
                    .enable_all()
                    .build()
                    .map_err(|e| format!("otlp: cannot start a runtime: {e}"))?,
            ),
            Proto::Http => None,
        };
        let _entered = runtime.as_ref().map(|r| r.enter());
        let built = match proto {
            Proto::Grpc => {
                let mut b = opentelemetry_otlp::MetricExporter::builder()
                    .with_tonic()
                    .with_timeout(c.timeout);
                if let Some(e) = c.endpoint(proto, "metrics") {
                    b = b.with_endpoint(e);
                }
                b.build()
            }
            Proto::Http => {
                let mut b = opentelemetry_otlp::MetricExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_timeout(c.timeout);
                if let Some(e) = c.endpoint(proto, "metrics") {
                    b = b.with_endpoint(e);
                }
                b.build()
            }
        };
        let exporter =
            built.map_err(|e| format!("otlp: cannot set up the metric exporter: {e}"))?;
        let provider = SdkMeterProvider::builder()
            .with_resource(c.resource())
            .with_reader(
                PeriodicReader::builder(exporter)
                    .with_interval(c.metrics_interval)
                    .build(),
            )
            .build();
        register(&provider, counters);
        drop(_entered);
        Ok(Metrics { provider, runtime })
    }

    /// Exports the final values and stops.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("otlp metrics: the last export failed: {e}");
        }
    }
}

impl Drop for Metrics {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Reads a counter's data points: (value, attributes) each.
type Reading = fn(&Counters) -> Vec<(u64, Vec<KeyValue>)>;

fn register(provider: &SdkMeterProvider, c: Arc<Counters>) {
    let meter = provider.meter("inferwatch");
    let counter = |f: &Family, read: Reading| {
        let c = c.clone();
        meter
            .u64_observable_counter(f.otel.expect("an OTLP name in the catalogue"))
            .with_description(f.help)
            .with_callback(move |o| {
                for (v, attrs) in read(&c) {
                    o.observe(v, &attrs);
                }
            })
            .build();
    };
    counter(&cat::RECORDS, |c| {
        let (read, bad, late) = (
            Counters::get(&c.records_read),
            Counters::get(&c.records_bad),
            Counters::get(&c.records_late),
        );
        vec![
            (
                read.saturating_sub(bad + late),
                vec![KeyValue::new("outcome", "good")],
            ),
            (bad, vec![KeyValue::new("outcome", "bad")]),
            (late, vec![KeyValue::new("outcome", "late")]),
        ]
    });
    counter(&cat::WINDOWS_CLOSED, |c| {
        vec![(Counters::get(&c.windows_closed), Vec::new())]
    });
    counter(&cat::RULE_EVALUATIONS, |c| {
        vec![(Counters::get(&c.rule_runs), Vec::new())]
    });
    counter(&cat::RULE_ERRORS, |c| {
        vec![(Counters::get(&c.rule_errors), Vec::new())]
    });
    counter(&cat::ALERT_CHANGES, |c| {
        ["pending", "firing", "resolved"]
            .iter()
            .zip(&c.alerts_by_state)
            .map(|(s, n)| (Counters::get(n), vec![KeyValue::new("state", *s)]))
            .collect()
    });
    counter(&cat::RECEIVER_ERRORS, |c| {
        vec![(Counters::get(&c.receiver_errors), Vec::new())]
    });
    counter(&cat::RESCORE_RECORDS, |c| {
        let t = *c.rescore.lock().expect("rescore lock");
        vec![
            (t.flagged, vec![KeyValue::new("reason", "flagged")]),
            (t.sampled, vec![KeyValue::new("reason", "sample")]),
        ]
    });
    counter(&cat::RESCORE_OUTCOMES, |c| {
        let t = *c.rescore.lock().expect("rescore lock");
        [
            ("mismatch", t.mismatches),
            ("adversarial", t.adversarial),
            ("over_budget", t.dropped),
            ("unscorable", t.unscorable),
            ("other_version", t.other_version),
        ]
        .into_iter()
        .map(|(o, v)| (v, vec![KeyValue::new("outcome", o)]))
        .collect()
    });
    counter(&cat::LABELS, |c| {
        let t = *c.labels.lock().expect("labels lock");
        t.outcomes()
            .into_iter()
            .map(|(o, v)| (v, vec![KeyValue::new("outcome", o)]))
            .collect()
    });
    let gauge_c = c.clone();
    meter
        .u64_observable_gauge(cat::ALERTS_ACTIVE.otel.expect("an OTLP name"))
        .with_description(cat::ALERTS_ACTIVE.help)
        .with_callback(move |o| o.observe(Counters::get(&gauge_c.alerts_active), &[]))
        .build();
    let lag_c = c;
    meter
        .i64_observable_gauge(cat::KAFKA_LAG.otel.expect("an OTLP name"))
        .with_description(cat::KAFKA_LAG.help)
        .with_callback(move |o| {
            let lag: BTreeMap<String, crate::telemetry::Lag> =
                lag_c.lag.lock().map(|l| l.clone()).unwrap_or_default();
            for (partition, l) in lag {
                o.observe(l.read, &[KeyValue::new("partition", partition)]);
            }
        })
        .build();
}
