//! Notifications people act on: routing, grouping, inhibition and silences as in
//! Prometheus Alertmanager, delivered by email, webhook or to an Alertmanager through a
//! durable outbox.
//!
//! The pipeline appends every alert state change to the outbox file and fsyncs it with
//! its other output (`outbox::Outbox`, a durable receiver whose cursor is checkpointed).
//! A dispatcher thread reads that file, once per receiver, groups the changes by route
//! and `group_by` labels, and sends a group's email when its timers say so (wall clock:
//! the only place it decides anything). What a receiver has read, grouped and sent is
//! its own state file, written atomically before and after each send, so a restart
//! resumes where it stopped and a receiver that is down delays only itself.
//!
//! Where this differs from Alertmanager, it is on purpose and documented in docs/notifications.md:
//! an alert that fires and resolves before its group is sent is still reported (a short
//! attack is still an attack), and a rule's `route: [..]` names receivers directly.

pub mod backoff;
mod dispatch;
pub mod email;
mod otlp;
pub mod outbox;
pub mod route;
pub mod silence;
pub mod webhook;

pub use route::{Matcher, Route, Router, match_labels};

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// `notify:` in the config.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Folder of the outbox (the queue file and each receiver's state). Default
    /// `<state_dir>/outbox`; one of the two is needed when there are receivers.
    #[serde(default)]
    pub outbox: Option<PathBuf>,
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    /// The routing tree; required when there are receivers.
    #[serde(default)]
    pub route: Option<RouteConfig>,
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRule>,
    #[serde(default)]
    pub silences: Vec<Silence>,
    /// At the end of a run, how long to wait for queued notifications to go out; what is
    /// left stays queued for the next start.
    #[serde(with = "humantime_serde", default = "default_drain")]
    #[schemars(with = "String")]
    pub drain_timeout: Duration,
    /// First wait after a failed delivery; doubled after each failure up to `retry_max`.
    #[serde(with = "humantime_serde", default = "default_retry")]
    #[schemars(with = "String")]
    pub retry_initial: Duration,
    #[serde(with = "humantime_serde", default = "default_retry_max")]
    #[schemars(with = "String")]
    pub retry_max: Duration,
}

fn default_drain() -> Duration {
    Duration::from_secs(30)
}
fn default_retry() -> Duration {
    Duration::from_secs(1)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(60)
}

/// A receiver: a name routes point to, and how it delivers (one of `email`, `webhook`,
/// `alertmanager`; Alertmanager's list spellings `email_configs`, `webhook_configs`
/// are accepted with one entry).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: String,
    #[serde(default)]
    pub email: Option<email::EmailConfig>,
    /// Alertmanager's webhook JSON (version 4) posted to a URL.
    #[serde(default)]
    pub webhook: Option<webhook::WebhookConfig>,
    /// Alerts pushed to an Alertmanager's `/api/v2/alerts`.
    #[serde(default)]
    pub alertmanager: Option<webhook::AlertmanagerConfig>,
    /// Alertmanager's spelling of `email` (a list of one).
    #[serde(default)]
    pub email_configs: Vec<email::EmailConfig>,
    /// Alertmanager's spelling of `webhook` (a list of one).
    #[serde(default)]
    pub webhook_configs: Vec<webhook::WebhookConfig>,
}

/// How one receiver delivers.
pub enum Delivery<'a> {
    Email(&'a email::EmailConfig),
    Webhook(&'a webhook::WebhookConfig),
    Alertmanager(&'a webhook::AlertmanagerConfig),
}

impl ReceiverConfig {
    /// Its one way of delivering, or why it has none or several.
    pub fn delivery(&self) -> Result<Delivery<'_>, String> {
        let mut ways = Vec::new();
        ways.extend(self.email.iter().map(Delivery::Email));
        ways.extend(self.email_configs.iter().map(Delivery::Email));
        ways.extend(self.webhook.iter().map(Delivery::Webhook));
        ways.extend(self.webhook_configs.iter().map(Delivery::Webhook));
        ways.extend(self.alertmanager.iter().map(Delivery::Alertmanager));
        match ways.len() {
            1 => Ok(ways.pop().expect("one")),
            0 => Err(format!(
                "notify.receivers.{}: say how to deliver (`email:`, `webhook:` or `alertmanager:`)",
                self.name
            )),
            n => Err(format!(
                "notify.receivers.{}: {n} ways of delivering; a receiver has one (declare another receiver and route to both with `continue: true`)",
                self.name
            )),
        }
    }
}

/// A receiver's sender.
#[allow(
    clippy::large_enum_variant,
    reason = "one per receiver, made once at start"
)]
pub enum Sender {
    Email(email::EmailSender),
    Http(webhook::HttpSender),
}

impl Sender {
    pub fn new(r: &ReceiverConfig) -> Result<Sender, String> {
        Ok(match r.delivery()? {
            Delivery::Email(c) => Sender::Email(email::EmailSender::new(&r.name, c)?),
            Delivery::Webhook(c) => Sender::Http(webhook::HttpSender::webhook(&r.name, c)?),
            Delivery::Alertmanager(c) => {
                Sender::Http(webhook::HttpSender::alertmanager(&r.name, c)?)
            }
        })
    }

    /// For logs and the summary: `email`, `webhook`, `alertmanager`.
    pub fn kind(&self) -> &'static str {
        match self {
            Sender::Email(_) => "email",
            Sender::Http(h) if h.resend_ms().is_some() => "alertmanager",
            Sender::Http(_) => "webhook",
        }
    }

    pub fn send_resolved(&self) -> bool {
        match self {
            Sender::Email(e) => e.send_resolved,
            Sender::Http(h) => h.send_resolved,
        }
    }

    /// Forced resend period of a group with firing alerts (Alertmanager receivers).
    pub fn resend_ms(&self) -> Option<i64> {
        match self {
            Sender::Email(_) => None,
            Sender::Http(h) => h.resend_ms(),
        }
    }

    pub fn prepare(&self, c: &email::Content, now_ms: i64) -> Result<email::Prepared, String> {
        match self {
            Sender::Email(e) => e.prepare(c),
            Sender::Http(h) => h.prepare(c, now_ms),
        }
    }

    pub async fn send(&self, p: &email::Prepared) -> Result<(), webhook::SendError> {
        match self {
            Sender::Email(e) => e.send(p).await.map_err(webhook::SendError::Retry),
            Sender::Http(h) => h.send(p).await,
        }
    }

    /// Pushes to an Alertmanager, which does its own silencing and inhibition.
    pub fn is_alertmanager(&self) -> bool {
        self.resend_ms().is_some()
    }
}

/// A node of the routing tree. Unset timing and `group_by` come from the parent.
#[derive(Debug, Clone, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub receiver: Option<String>,
    /// Alertmanager matcher strings: `severity="critical"`, `client_id=~"bot-.*"`,
    /// `model!="test"`, `alertname!~"drift\..*"`.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Alertmanager's older spelling: label = value, all of them.
    #[serde(default, rename = "match")]
    pub match_: std::collections::BTreeMap<String, String>,
    /// Alertmanager's older spelling: label =~ anchored regular expression.
    #[serde(default)]
    pub match_re: std::collections::BTreeMap<String, String>,
    pub group_by: Option<Vec<String>>,
    #[serde(with = "humantime_serde", default)]
    #[schemars(with = "Option<String>")]
    pub group_wait: Option<Duration>,
    #[serde(with = "humantime_serde", default)]
    #[schemars(with = "Option<String>")]
    pub group_interval: Option<Duration>,
    #[serde(with = "humantime_serde", default)]
    #[schemars(with = "Option<String>")]
    pub repeat_interval: Option<Duration>,
    /// Keep matching the following sibling routes after this one matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

/// Alerts matching `target_matchers` are muted while an alert matching
/// `source_matchers` fires with the same values of the `equal` labels.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InhibitRule {
    pub source_matchers: Vec<String>,
    pub target_matchers: Vec<String>,
    #[serde(default)]
    pub equal: Vec<String>,
}

/// Alerts matching every matcher are not notified between `starts_at` and `ends_at`
/// (wall clock, RFC 3339).
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Silence {
    pub matchers: Vec<String>,
    #[serde(default)]
    pub starts_at: Option<String>,
    pub ends_at: String,
    #[serde(default)]
    pub comment: String,
}

impl NotifyConfig {
    /// Checks receivers and routes; `rule_routes` are the receivers rules name.
    pub fn validate<'a>(
        &self,
        rule_routes: impl Iterator<Item = (&'a str, &'a [String])>,
    ) -> Result<(), String> {
        let mut names = BTreeSet::new();
        for r in &self.receivers {
            if r.name.is_empty()
                || !r
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_".contains(c))
            {
                return Err(format!(
                    "notify.receivers: name {:?} must be letters, digits, - or _",
                    r.name
                ));
            }
            if !names.insert(r.name.as_str()) {
                return Err(format!(
                    "notify.receivers: two receivers named {:?}",
                    r.name
                ));
            }
            r.delivery()?;
        }
        if self.receivers.is_empty() {
            if self.route.is_some() {
                return Err("notify.route is set but notify.receivers is empty".into());
            }
            return Ok(());
        }
        Router::new(self)?;
        for (rule, route) in rule_routes {
            for r in route {
                if !names.contains(r.as_str()) {
                    return Err(format!(
                        "rule {rule}: route names receiver {r:?}, which is not among notify.receivers ({})",
                        names.iter().copied().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(p) = self.outbox.as_mut() {
            fix(p);
        }
        for r in &mut self.receivers {
            for e in r.email.iter_mut().chain(r.email_configs.iter_mut()) {
                e.resolve_paths(base);
            }
            for w in r.webhook.iter_mut().chain(r.webhook_configs.iter_mut()) {
                w.resolve_paths(base);
            }
            if let Some(a) = r.alertmanager.as_mut() {
                a.resolve_paths(base);
            }
        }
    }
}

#[cfg(test)]
mod tests;
