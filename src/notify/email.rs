//! The email receiver: one message per alert group send, SMTP through `lettre` (async,
//! tokio) with STARTTLS, implicit TLS, or plain for localhost; text and HTML bodies from
//! templates users can override.
//!
//! Everything from the traffic (labels, client ids, feature names, values) is untrusted:
//! templates are filled in one pass (a value is never expanded), HTML values are
//! escaped, control characters in the subject and text body are shown escaped (so no
//! header or line can be forged), and the subject is cut to a sane length. The
//! Message-ID is derived from the group and its send number, so a resend after a crash
//! carries the same id; every message of a group references the group's first one,
//! which makes one thread per group.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::alert::{Notification, escape_control};
use crate::rules::template::{display, render, template_names};

/// `email:` of a receiver.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Recipients, comma-separated.
    pub to: String,
    pub from: String,
    /// `host:port` of the SMTP server.
    pub smarthost: String,
    /// `starttls` (default; the connection must upgrade), `tls` (implicit TLS, port 465
    /// style) or `none` (plain text: for a relay on localhost only).
    #[serde(default)]
    pub tls: TlsMode,
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the environment variable that holds the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File whose first line is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM certificate(s) to trust in addition to the system's (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Also mail when alerts resolve (as Alertmanager's `send_resolved`, default false).
    #[serde(default)]
    pub send_resolved: bool,
    /// Limit for each SMTP command.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    #[serde(default)]
    pub templates: Templates,
}

fn default_timeout() -> Duration {
    Duration::from_secs(15)
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    #[default]
    Starttls,
    Tls,
    None,
}

/// Template overrides: `subject` inline, the others as files (relative to the config).
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Templates {
    pub subject: Option<String>,
    pub text: Option<PathBuf>,
    pub html: Option<PathBuf>,
    pub text_alert: Option<PathBuf>,
    pub html_alert: Option<PathBuf>,
}

impl EmailConfig {
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        for p in [
            self.password_file.as_mut(),
            self.ca_file.as_mut(),
            self.templates.text.as_mut(),
            self.templates.html.as_mut(),
            self.templates.text_alert.as_mut(),
            self.templates.html_alert.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
    }
}

pub const SUBJECT: &str = "[inferwatch] {{ status }} {{ severity }}: {{ rules }} ({{ group }})";

pub const TEXT: &str = "\
{{ status }} — {{ firing }} firing, {{ resolved }} resolved
Group: {{ group }}
Receiver: {{ receiver }}

{{ alerts }}
--
Sent by inferwatch. Alert times are event times (window ends).
";

pub const TEXT_ALERT: &str = "\
[{{ state }}] {{ severity }} {{ rule_id }}: {{ name }}
  {{ summary }}
  labels: {{ labels }}
  since: {{ starts_at }}   until: {{ ends_at }}
  window: {{ window }}
  evidence: {{ evidence }}
  sample requests: {{ sample_request_ids }}
  from: {{ sources }}
  tags: {{ tags }}
  notification: {{ notification_ids }}
";

pub const HTML: &str = "\
<!DOCTYPE html>
<html><body style=\"font-family:sans-serif\">
<h2>{{ status }} — {{ firing }} firing, {{ resolved }} resolved</h2>
<p>Group: <code>{{ group }}</code><br>Receiver: {{ receiver }}</p>
{{ alerts }}
<p style=\"color:#666\">Sent by inferwatch. Alert times are event times (window ends).</p>
</body></html>
";

pub const HTML_ALERT: &str = "\
<div style=\"border-left:4px solid #c33;padding-left:8px;margin:12px 0\">
<b>[{{ state }}] {{ severity }} {{ rule_id }}</b>: {{ name }}<br>
{{ summary }}<br>
<small>labels: <code>{{ labels }}</code><br>
since {{ starts_at }} until {{ ends_at }}; window {{ window }}<br>
evidence: {{ evidence }}<br>
sample requests: {{ sample_request_ids }}<br>
from: {{ sources }}; tags: {{ tags }}<br>
notification: {{ notification_ids }}</small>
</div>
";

/// Names the message templates may use.
const MESSAGE_NAMES: &[&str] = &[
    "status", "severity", "rules", "group", "firing", "resolved", "receiver", "alerts",
];
/// Names the per-alert templates may use.
const ALERT_NAMES: &[&str] = &[
    "state",
    "severity",
    "rule_id",
    "name",
    "summary",
    "description",
    "labels",
    "starts_at",
    "ends_at",
    "window",
    "evidence",
    "sample_request_ids",
    "sources",
    "tags",
    "alert_id",
    "notification_ids",
];

/// The templates of one receiver, checked.
#[derive(Debug, Clone)]
pub struct Rendered {
    subject: String,
    text: String,
    html: String,
    text_alert: String,
    html_alert: String,
}

impl Rendered {
    pub fn load(t: &Templates, at: &str) -> Result<Rendered, String> {
        let read = |p: &Option<PathBuf>, default: &str| -> Result<String, String> {
            match p {
                Some(p) => std::fs::read_to_string(p)
                    .map_err(|e| format!("{at}: cannot read template {}: {e}", p.display())),
                None => Ok(default.to_owned()),
            }
        };
        let r = Rendered {
            subject: t.subject.clone().unwrap_or_else(|| SUBJECT.to_owned()),
            text: read(&t.text, TEXT)?,
            html: read(&t.html, HTML)?,
            text_alert: read(&t.text_alert, TEXT_ALERT)?,
            html_alert: read(&t.html_alert, HTML_ALERT)?,
        };
        for (what, tpl, allowed) in [
            ("subject", &r.subject, MESSAGE_NAMES),
            ("text", &r.text, MESSAGE_NAMES),
            ("html", &r.html, MESSAGE_NAMES),
            ("text_alert", &r.text_alert, ALERT_NAMES),
            ("html_alert", &r.html_alert, ALERT_NAMES),
        ] {
            for name in template_names(tpl).map_err(|e| format!("{at}: template {what}: {e}"))? {
                if !allowed.contains(&name.as_str()) {
                    return Err(format!(
                        "{at}: template {what} uses {{{{ {name} }}}}; it may use {}",
                        allowed.join(", ")
                    ));
                }
            }
        }
        Ok(r)
    }
}

/// One alert's line in a message.
pub struct Item<'a> {
    /// What the message says about it: `firing`, `fired and resolved`, `resolved`, or
    /// `still firing`.
    pub state: &'a str,
    /// The firing notification (or the resolved one when only that is known).
    pub n: &'a Notification,
    /// The resolved notification, when the alert resolved.
    pub resolved: Option<&'a Notification>,
}

impl Item<'_> {
    /// The alert changes a message saying this delivers: a firing, a resolution, both
    /// (fired and resolved), or none (still firing).
    pub fn changes(&self) -> Vec<String> {
        match (self.state, self.resolved) {
            ("still firing", _) => Vec::new(),
            ("resolved", Some(r)) => vec![r.notification_id.clone()],
            (_, r) => std::iter::once(self.n.notification_id.clone())
                .chain(r.map(|r| r.notification_id.clone()))
                .collect(),
        }
    }
}

/// A group's message, before it is an email.
pub struct Content<'a> {
    pub receiver: &'a str,
    pub group: &'a BTreeMap<String, String>,
    pub items: Vec<Item<'a>>,
    pub message_id: String,
    pub thread_id: String,
}

/// An email ready to go (kept in the outbox until the server took it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Prepared {
    pub message_id: String,
    /// The group's first message, when this is not it.
    pub in_reply_to: Option<String>,
    pub subject: String,
    /// A line per alert: what the message says of it, its rule and labels.
    pub items: Vec<String>,
    /// Notification ids the message carries.
    pub notifications: Vec<String>,
    /// The whole message as sent, base64.
    pub bytes: String,
}

fn joined(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn alert_values(it: &Item) -> serde_json::Map<String, Value> {
    let n = it.n;
    let mut v = serde_json::Map::new();
    let mut put = |k: &str, s: String| {
        v.insert(k.to_owned(), Value::String(s));
    };
    put("state", it.state.to_owned());
    put("severity", n.severity.as_str().to_owned());
    put("rule_id", n.rule_id.clone());
    put("name", n.name.clone().unwrap_or_else(|| n.rule_id.clone()));
    put(
        "summary",
        n.annotations.get("summary").cloned().unwrap_or_default(),
    );
    put(
        "description",
        n.annotations
            .get("description")
            .cloned()
            .unwrap_or_default(),
    );
    put("labels", joined(&n.labels));
    put("starts_at", n.starts_at.clone());
    put(
        "ends_at",
        it.resolved
            .and_then(|r| r.ends_at.clone())
            .unwrap_or_else(|| "-".into()),
    );
    put("window", format!("{} – {}", n.window_start, n.window_end));
    put(
        "evidence",
        n.evidence
            .values
            .iter()
            .map(|(k, x)| format!("{k}={}", display(x)))
            .collect::<Vec<_>>()
            .join(", "),
    );
    put(
        "sample_request_ids",
        n.evidence.sample_request_ids.join(", "),
    );
    put(
        "sources",
        n.evidence
            .sources
            .iter()
            .map(|s| format!("{} {}..{}", s.source, s.first, s.last))
            .collect::<Vec<_>>()
            .join(", "),
    );
    put(
        "tags",
        n.tags
            .iter()
            .map(|(k, l)| format!("{k}: {}", l.join(" ")))
            .collect::<Vec<_>>()
            .join("; "),
    );
    put("alert_id", n.id.clone());
    let ids: Vec<&str> = match (it.state, it.resolved) {
        ("still firing", _) => Vec::new(),
        ("resolved", Some(r)) => vec![r.notification_id.as_str()],
        (_, Some(r)) => vec![n.notification_id.as_str(), r.notification_id.as_str()],
        (_, None) => vec![n.notification_id.as_str()],
    };
    put("notification_ids", ids.join(" "));
    v
}

pub use crate::html::escape as escape_html;

fn map_values(
    v: &serde_json::Map<String, Value>,
    f: impl Fn(&str) -> String,
) -> serde_json::Map<String, Value> {
    v.iter()
        .map(|(k, x)| (k.clone(), Value::String(f(&display(x)))))
        .collect()
}

/// Subject lines longer than this are cut (with an ellipsis).
const SUBJECT_MAX: usize = 200;

impl Rendered {
    /// Subject, text and HTML of a message.
    pub fn render(&self, c: &Content) -> (String, String, String) {
        let firing = c
            .items
            .iter()
            .filter(|i| matches!(i.state, "firing" | "still firing"))
            .count();
        let resolved = c.items.len() - firing;
        let severity = c
            .items
            .iter()
            .filter(|i| matches!(i.state, "firing" | "still firing"))
            .chain(c.items.iter())
            .map(|i| i.n.severity)
            .max()
            .map(|s| s.as_str().to_uppercase())
            .unwrap_or_default();
        let mut rules: Vec<&str> = c.items.iter().map(|i| i.n.rule_id.as_str()).collect();
        rules.sort_unstable();
        rules.dedup();
        let rules = if rules.len() > 3 {
            format!("{} and {} more", rules[..3].join(", "), rules.len() - 3)
        } else {
            rules.join(", ")
        };
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, s: String| {
            m.insert(k.to_owned(), Value::String(s));
        };
        put(
            "status",
            if firing > 0 {
                format!("FIRING:{firing}")
            } else {
                "RESOLVED".into()
            },
        );
        put("severity", severity);
        put("rules", rules);
        put("group", joined(c.group));
        put("firing", firing.to_string());
        put("resolved", resolved.to_string());
        put("receiver", c.receiver.to_owned());
        let per_alert: Vec<_> = c.items.iter().map(alert_values).collect();
        let text_alerts: String = per_alert
            .iter()
            .map(|v| render(&self.text_alert, &map_values(v, escape_control)))
            .collect::<Vec<_>>()
            .join("\n");
        let html_alerts: String = per_alert
            .iter()
            .map(|v| render(&self.html_alert, &map_values(v, escape_html)))
            .collect();
        let mut subject = escape_control(&render(&self.subject, &m));
        if subject.chars().count() > SUBJECT_MAX {
            subject = subject.chars().take(SUBJECT_MAX - 1).collect::<String>() + "…";
        }
        let mut text_values = map_values(&m, escape_control);
        text_values.insert("alerts".into(), Value::String(text_alerts));
        let mut html_values = map_values(&m, escape_html);
        html_values.insert("alerts".into(), Value::String(html_alerts));
        (
            subject,
            render(&self.text, &text_values),
            render(&self.html, &html_values),
        )
    }
}

/// Sends prepared messages to one SMTP server.
pub struct EmailSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    templates: Rendered,
    pub send_resolved: bool,
}

impl EmailSender {
    /// Checks the addresses, reads the password and the CA, loads the templates; does
    /// not connect (a server that is down is retried, not a startup error).
    pub fn new(name: &str, c: &EmailConfig) -> Result<EmailSender, String> {
        let at = format!("notify.receivers.{name}.email");
        let from: Mailbox = c
            .from
            .parse()
            .map_err(|e| format!("{at}.from: {:?} is not an email address ({e})", c.from))?;
        let to: Vec<Mailbox> =
            c.to.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse()
                        .map_err(|e| format!("{at}.to: {s:?} is not an email address ({e})"))
                })
                .collect::<Result<_, _>>()?;
        if to.is_empty() {
            return Err(format!("{at}.to: no recipient"));
        }
        let (host, port) = c
            .smarthost
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("{at}.smarthost: {:?} is not host:port", c.smarthost))?;
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(c.timeout));
        if c.tls != TlsMode::None {
            let mut tp = TlsParameters::builder(host.to_owned());
            if let Some(ca) = &c.ca_file {
                let pem = std::fs::read(ca)
                    .map_err(|e| format!("{at}.ca_file: cannot read {}: {e}", ca.display()))?;
                let cert = Certificate::from_pem(&pem).map_err(|e| {
                    format!(
                        "{at}.ca_file: {} is not a PEM certificate ({e})",
                        ca.display()
                    )
                })?;
                tp = tp.add_root_certificate(cert);
            }
            let tp = tp
                .build()
                .map_err(|e| format!("{at}: cannot set up TLS: {e}"))?;
            b = b.tls(if c.tls == TlsMode::Tls {
                Tls::Wrapper(tp)
            } else {
                Tls::Required(tp)
            });
        }
        let password = match (&c.password_env, &c.password_file) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{at}: give password_env or password_file, not both"
                ));
            }
            (Some(var), None) => Some(std::env::var(var).map_err(|_| {
                format!("{at}.password_env: environment variable {var} is not set")
            })?),
            (None, Some(p)) => Some(
                std::fs::read_to_string(p)
                    .map_err(|e| format!("{at}.password_file: cannot read {}: {e}", p.display()))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        match (&c.username, password) {
            (Some(u), Some(p)) => b = b.credentials(Credentials::new(u.clone(), p)),
            (Some(_), None) => {
                return Err(format!(
                    "{at}: username is set but no password_env or password_file"
                ));
            }
            (None, Some(_)) => return Err(format!("{at}: a password needs a username")),
            (None, None) => {}
        }
        if c.tls == TlsMode::None && c.username.is_some() && !is_loopback(host) {
            return Err(format!(
                "{at}: tls: none would send the password in clear text to {host}; use \
                 starttls or tls (plain text is for a relay on localhost)"
            ));
        }
        Ok(EmailSender {
            transport: b.build(),
            from,
            to,
            templates: Rendered::load(&c.templates, &at)?,
            send_resolved: c.send_resolved,
        })
    }

    /// Builds the message (the bytes are final: a resend is the same message).
    pub fn prepare(&self, c: &Content) -> Result<Prepared, String> {
        let (subject, text, html) = self.templates.render(c);
        let mut b = Message::builder()
            .from(self.from.clone())
            .subject(subject.clone())
            .message_id(Some(c.message_id.clone()))
            .date_now();
        for to in &self.to {
            b = b.to(to.clone());
        }
        if c.message_id != c.thread_id {
            b = b
                .in_reply_to(c.thread_id.clone())
                .references(c.thread_id.clone());
        }
        let m = b
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| format!("cannot build the message: {e}"))?;
        let notifications = c.items.iter().flat_map(Item::changes).collect();
        Ok(Prepared {
            message_id: c.message_id.clone(),
            in_reply_to: (c.message_id != c.thread_id).then(|| c.thread_id.clone()),
            subject,
            items: c
                .items
                .iter()
                .map(|it| format!("{} {} {}", it.state, it.n.rule_id, joined(&it.n.labels)))
                .collect(),
            notifications,
            bytes: base64::engine::general_purpose::STANDARD.encode(m.formatted()),
        })
    }

    pub async fn send(&self, p: &Prepared) -> Result<(), String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&p.bytes)
            .map_err(|e| format!("damaged message in the outbox: {e}"))?;
        let envelope = lettre::address::Envelope::new(
            Some(self.from.email.clone()),
            self.to.iter().map(|m| m.email.clone()).collect(),
        )
        .map_err(|e| format!("bad envelope: {e}"))?;
        self.transport
            .send_raw(&envelope, &bytes)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
