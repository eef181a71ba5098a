//! HTTP receivers: `webhook:` posts Alertmanager's webhook JSON (version 4) to a URL, one
//! request per group send; `alertmanager:` pushes the alerts to an existing
//! Alertmanager's `POST /api/v2/alerts`, so a team keeps its routing, Slack and
//! PagerDuty there. Both go through the same durable outbox as email: a body is built
//! once, kept until the server answered 2xx, and sent again unchanged after a failure
//! or a restart.
//!
//! An Alertmanager receiver pushes every change as soon as it is read (the route's
//! `group_wait` and `group_interval` do not apply: grouping is the Alertmanager's). An
//! Alertmanager forgets a firing alert at its `endsAt`; as Prometheus does, firing
//! alerts are sent again every `resend_interval` with `endsAt` four intervals ahead,
//! and a resolved one is sent with its resolution time as `endsAt`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::email::{Content, Prepared};
use super::match_labels;

/// `webhook:` of a receiver.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST (`http://` or `https://`). Never printed: it may hold a token.
    #[serde(default)]
    pub url: Option<crate::secret::Secret>,
    /// File whose first line is the URL (instead of `url`).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Also post when alerts resolve (Alertmanager's default: true).
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// At most this many alerts in one request (0: all); the rest are counted in
    /// `truncatedAlerts`.
    #[serde(default)]
    pub max_alerts: usize,
    /// Name of the environment variable holding a bearer token for `Authorization`.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// File whose first line is that bearer token.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// PEM certificate(s) to trust in addition to the system's (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Limit for one request.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

/// `alertmanager:` of a receiver.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// The Alertmanager's base URL, e.g. `http://alertmanager:9093` (the path
    /// `/api/v2/alerts` is added). Never printed: it may hold credentials.
    pub url: crate::secret::Secret,
    /// Firing alerts are sent again this often, with `endsAt` four times as far ahead.
    #[serde(with = "humantime_serde", default = "default_resend")]
    #[schemars(with = "String")]
    pub resend_interval: Duration,
    /// Name of the environment variable holding a bearer token for `Authorization`.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// File whose first line is that bearer token.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// PEM certificate(s) to trust in addition to the system's (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Limit for one request.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

fn yes() -> bool {
    true
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_resend() -> Duration {
    Duration::from_secs(60)
}

impl WebhookConfig {
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [
            &mut self.url_file,
            &mut self.bearer_token_file,
            &mut self.ca_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

impl AlertmanagerConfig {
    pub fn resolve_paths(&mut self, base: &Path) {
        for p in [&mut self.bearer_token_file, &mut self.ca_file]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Webhook { max_alerts: usize },
    Alertmanager { resend_ms: i64 },
}

/// Posts prepared JSON bodies to one URL.
pub struct HttpSender {
    kind: Kind,
    receiver: String,
    url: String,
    token: Option<String>,
    client: reqwest::Client,
    pub send_resolved: bool,
}

/// The first line of a file, trimmed; errors name the setting, never the content.
fn first_line(path: &Path, at: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{at}: cannot read {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or("").trim().to_owned();
    if line.is_empty() {
        return Err(format!("{at}: {} is empty", path.display()));
    }
    Ok(line)
}

fn token(env: &Option<String>, file: &Option<PathBuf>, at: &str) -> Result<Option<String>, String> {
    match (env, file) {
        (Some(_), Some(_)) => Err(format!(
            "{at}: set bearer_token_env or bearer_token_file, not both"
        )),
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_owned())),
            _ => Err(format!(
                "{at}.bearer_token_env: environment variable {var} is not set or empty"
            )),
        },
        (None, Some(f)) => first_line(f, &format!("{at}.bearer_token_file")).map(Some),
        (None, None) => Ok(None),
    }
}

/// Checks the URL's scheme and host without ever printing it.
fn check_url(url: &str, at: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{at}: the URL must start with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{at}: the URL has no host"));
    }
    reqwest::Url::parse(url).map_err(|e| format!("{at}: not a URL ({e})"))?;
    Ok(())
}

fn client(
    timeout: Duration,
    ca_file: &Option<PathBuf>,
    at: &str,
) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        // A receiver's redirect could send alert contents elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("inferwatch/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca)
            .map_err(|e| format!("{at}.ca_file: cannot read {}: {e}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{at}.ca_file: {} is not PEM ({e})", ca.display()))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build()
        .map_err(|e| format!("{at}: cannot set up the HTTP client: {e}"))
}

impl HttpSender {
    pub fn webhook(name: &str, c: &WebhookConfig) -> Result<HttpSender, String> {
        let at = format!("notify.receivers.{name}.webhook");
        let url = match (&c.url, &c.url_file) {
            (Some(u), None) => u.expose().trim().to_owned(),
            (None, Some(f)) => first_line(f, &format!("{at}.url_file"))?,
            _ => return Err(format!("{at}: set url or url_file (one of them)")),
        };
        check_url(&url, &format!("{at}.url"))?;
        Ok(HttpSender {
            kind: Kind::Webhook {
                max_alerts: c.max_alerts,
            },
            receiver: name.to_owned(),
            url,
            token: token(&c.bearer_token_env, &c.bearer_token_file, &at)?,
            client: client(c.timeout, &c.ca_file, &at)?,
            send_resolved: c.send_resolved,
        })
    }

    pub fn alertmanager(name: &str, c: &AlertmanagerConfig) -> Result<HttpSender, String> {
        let at = format!("notify.receivers.{name}.alertmanager");
        let base = c.url.expose().trim().trim_end_matches('/');
        check_url(base, &format!("{at}.url"))?;
        if c.resend_interval < Duration::from_secs(1) {
            return Err(format!("{at}.resend_interval: at least 1s"));
        }
        Ok(HttpSender {
            kind: Kind::Alertmanager {
                resend_ms: c.resend_interval.as_millis() as i64,
            },
            receiver: name.to_owned(),
            url: format!("{base}/api/v2/alerts"),
            token: token(&c.bearer_token_env, &c.bearer_token_file, &at)?,
            client: client(c.timeout, &c.ca_file, &at)?,
            // An Alertmanager must hear of every resolution.
            send_resolved: true,
        })
    }

    /// How often a group with firing alerts must be sent again, whatever its route's
    /// `repeat_interval` (an Alertmanager forgets alerts that are not re-sent).
    pub fn resend_ms(&self) -> Option<i64> {
        match self.kind {
            Kind::Alertmanager { resend_ms } => Some(resend_ms),
            Kind::Webhook { .. } => None,
        }
    }

    /// The request body (final: a resend after a failure or a restart is the same).
    pub fn prepare(&self, c: &Content, now_ms: i64) -> Result<Prepared, String> {
        let mut alerts = Vec::new();
        let mut notifications = Vec::new();
        let mut lines = Vec::new();
        let mut firing = false;
        // As Alertmanager's `max_alerts`: the alerts past it are left out of the body
        // (counted in `truncatedAlerts`) and so are not counted as delivered.
        let keep = match self.kind {
            Kind::Webhook { max_alerts } if max_alerts > 0 => max_alerts,
            _ => usize::MAX,
        };
        let truncated = c.items.len().saturating_sub(keep);
        for it in c.items.iter().take(keep) {
            let resolved = match (it.state, it.resolved) {
                ("resolved" | "fired and resolved", Some(r)) => Some(r),
                _ => None,
            };
            notifications.extend(it.changes());
            firing |= resolved.is_none();
            lines.push(format!("{} {}", it.state, it.n.rule_id));
            let mut annotations = it.n.annotations.clone();
            if let Some(name) = &it.n.name {
                annotations
                    .entry("rule_name".into())
                    .or_insert_with(|| name.clone());
            }
            // An Alertmanager refuses an alert that ends before it starts: event time
            // may run ahead of this machine's clock.
            let starts_ms =
                crate::time::parse_rfc3339("startsAt", &it.n.starts_at).unwrap_or(now_ms);
            let ends_at = match (resolved, self.kind) {
                (Some(r), _) => {
                    let end = r
                        .ends_at
                        .as_deref()
                        .and_then(|e| crate::time::parse_rfc3339("endsAt", e).ok())
                        .unwrap_or(now_ms);
                    rfc3339(end.max(starts_ms))
                }
                (None, Kind::Alertmanager { resend_ms }) => {
                    rfc3339(now_ms.max(starts_ms) + 4 * resend_ms)
                }
                (None, Kind::Webhook { .. }) => "0001-01-01T00:00:00Z".to_owned(),
            };
            let status = if resolved.is_some() {
                "resolved"
            } else {
                "firing"
            };
            alerts.push(match self.kind {
                Kind::Alertmanager { .. } => json!({
                    "labels": match_labels(it.n),
                    "annotations": annotations,
                    "startsAt": it.n.starts_at,
                    "endsAt": ends_at,
                }),
                Kind::Webhook { .. } => json!({
                    "status": status,
                    "labels": match_labels(it.n),
                    "annotations": annotations,
                    "startsAt": it.n.starts_at,
                    "endsAt": ends_at,
                    "generatorURL": "",
                    "fingerprint": it.n.id,
                }),
            });
        }
        let body = match self.kind {
            Kind::Alertmanager { .. } => Value::Array(alerts),
            Kind::Webhook { .. } => {
                let labels: Vec<BTreeMap<String, String>> = c
                    .items
                    .iter()
                    .take(keep)
                    .map(|it| match_labels(it.n))
                    .collect();
                let annotations: Vec<BTreeMap<String, String>> = c
                    .items
                    .iter()
                    .take(keep)
                    .map(|it| it.n.annotations.clone())
                    .collect();
                json!({
                    "version": "4",
                    "groupKey": c.thread_id,
                    "truncatedAlerts": truncated,
                    "status": if firing { "firing" } else { "resolved" },
                    "receiver": c.receiver,
                    "groupLabels": c.group,
                    "commonLabels": common(&labels),
                    "commonAnnotations": common(&annotations),
                    "externalURL": "",
                    "alerts": alerts,
                })
            }
        };
        let bytes = serde_json::to_vec(&body).map_err(|e| format!("cannot encode: {e}"))?;
        Ok(Prepared {
            message_id: c.message_id.clone(),
            in_reply_to: None,
            subject: format!("{} alert(s) for {}", c.items.len(), self.receiver),
            items: lines,
            notifications,
            bytes: base64::engine::general_purpose::STANDARD.encode(bytes),
        })
    }

    /// Posts a prepared body. A 2xx answer is delivery; a 4xx answer (but 408 and 429)
    /// is a refusal of this request; anything else is retried. Errors never carry the
    /// URL (it may hold a token).
    pub async fn send(&self, p: &Prepared) -> Result<(), SendError> {
        let body = base64::engine::general_purpose::STANDARD
            .decode(&p.bytes)
            .map_err(|e| SendError::Refused(format!("damaged request in the outbox: {e}")))?;
        let mut req = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| SendError::Retry(e.without_url().to_string()))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        // At most 1 KiB of the answer: a hostile or broken receiver's body is not read
        // whole.
        let mut body = Vec::new();
        while body.len() < 1024 {
            match resp.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c[..c.len().min(1024 - body.len())]),
                _ => break,
            }
        }
        let text: String = crate::alert::escape_control(String::from_utf8_lossy(&body).trim())
            .chars()
            .take(200)
            .collect();
        let why = format!("the receiver answered {status}: {text}");
        // A request the receiver refuses as such (4xx but timeouts and rate limits) is
        // refused again if resent: it must not block every change queued after it.
        if status.is_client_error() && status.as_u16() != 408 && status.as_u16() != 429 {
            Err(SendError::Refused(why))
        } else {
            Err(SendError::Retry(why))
        }
    }
}

/// Why a send failed: `Retry` (the receiver is down or busy: the request waits at the
/// head of the queue) or `Refused` (the receiver rejects this very request: it is
/// dropped, loudly, so that it does not block what comes after it).
#[derive(Debug)]
pub enum SendError {
    Retry(String),
    Refused(String),
}

/// The labels (or annotations) every alert has with the same value.
fn common(all: &[BTreeMap<String, String>]) -> BTreeMap<String, String> {
    let Some((first, rest)) = all.split_first() else {
        return BTreeMap::new();
    };
    first
        .iter()
        .filter(|(k, v)| rest.iter().all(|m| m.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
