//! The durable outbox: the writer side (the dispatcher that reads it is `dispatch`).
//!
//! `Outbox` is the pipeline's receiver: it appends each state change as a JSON line to
//! `<outbox>/notifications.jsonl` and fsyncs it with the window's other output. Its
//! length is a checkpoint cursor; a restart truncates it to the checkpoint and the
//! pipeline writes the same lines again (alert ids are deterministic).
//!
//! The dispatcher (one thread, a tokio runtime, one task per receiver) reads that file.
//! Each receiver keeps `<outbox>/<name>.state.json`: how far it has read, the ids of the
//! changes it applied (so lines written again after a restart are not applied twice),
//! its alert groups, and the messages it composed but the server has not taken yet. A
//! message is composed and saved before it is sent, and removed after the server took
//! it, so a crash in between sends the same bytes again (same Message-ID) once, and
//! nothing is lost. A failing server is retried with exponential backoff; other
//! receivers go on.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Sender;
use super::dispatch::dispatch;
use super::{NotifyConfig, Router};
use crate::alert::{Notification, Receiver};
use crate::otlp::OtlpConfig;

/// Where notifications go: the routing tree of the email receivers (none when there are
/// only OTLP logs) and the receivers rules name in `route:`.
pub struct Routing {
    pub(super) router: Option<Router>,
    pub(super) rule_routes: BTreeMap<String, Vec<String>>,
}

/// Name of the queue file in the outbox folder.
pub const QUEUE: &str = "notifications.jsonl";
/// Name of this receiver, and of its checkpoint cursor.
pub(super) const NAME: &str = "outbox";
/// Name of the OTLP log receiver (its status and state file).
pub(super) const OTLP: &str = "otlp";
/// Log records per OTLP export.
pub(super) const OTLP_BATCH: usize = 256;
/// Change ids remembered per receiver, to skip lines written again after a rewind
/// (a rewind goes back at most one checkpoint interval).
pub(super) const APPLIED_KEEP: usize = 100_000;

/// How a receiver is doing, for the run summary and the log.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub emails: u64,
    pub notifications: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    pub queued: usize,
    /// Groups with changes not yet composed into a message.
    pub waiting_groups: usize,
    /// Requests the receiver refused (4xx) and that were dropped.
    pub refused: u64,
}

pub(super) struct Shared {
    pub(super) draining: AtomicBool,
    pub(super) status: Mutex<BTreeMap<String, Status>>,
}

/// What every receiver task needs.
pub(super) struct Spec {
    pub(super) dir: PathBuf,
    /// Shared with the `Outbox`, which swaps it on a reload.
    pub(super) routing: Arc<std::sync::RwLock<Routing>>,
    pub(super) retry_initial: Duration,
    pub(super) retry_max: Duration,
}

pub struct Outbox {
    dir: PathBuf,
    out: BufWriter<File>,
    spec: Option<Spec>,
    senders: Vec<(String, Sender)>,
    /// Each receiver's kind (`email`, `webhook`, `alertmanager`), for the summary.
    kinds: BTreeMap<String, &'static str>,
    otlp: Option<OtlpConfig>,
    routing: Arc<std::sync::RwLock<Routing>>,
    /// The receivers' settings at start: a reload may change routes, not receivers.
    receivers: String,
    silences: Arc<crate::notify::silence::Silences>,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    drain_timeout: Duration,
}

/// Swaps the outbox's routing on a reload (routes, inhibit rules, config silences, the
/// rules' `route:`); the receivers themselves are fixed at start.
#[derive(Clone)]
pub struct Rerouter {
    routing: Arc<std::sync::RwLock<Routing>>,
    receivers: String,
    silences: Arc<crate::notify::silence::Silences>,
}

impl Rerouter {
    /// A reload's new routing (`apply` false: only check it).
    pub fn reroute(
        &self,
        c: &NotifyConfig,
        rule_routes: &BTreeMap<String, Vec<String>>,
        apply: bool,
    ) -> Result<(), String> {
        if format!("{:?}", c.receivers) != self.receivers {
            return Err(
                "notify.receivers changed: adding, removing or changing a receiver needs a \
                 restart (routes, inhibit rules and silences reload)"
                    .into(),
            );
        }
        let router = if c.receivers.is_empty() {
            let config_silences = crate::notify::silence::from_config(&c.silences)?;
            if apply {
                self.silences.replace_config(config_silences);
            }
            None
        } else {
            let router = Router::new(c)?;
            Some(if apply {
                router.with_silences(self.silences.clone())
            } else {
                router
            })
        };
        if apply {
            *self.routing.write().expect("routing lock") = Routing {
                router,
                rule_routes: rule_routes.clone(),
            };
        }
        Ok(())
    }
}

impl Outbox {
    /// The handle a reload swaps this outbox's routing with.
    pub fn rerouter(&self) -> Rerouter {
        Rerouter {
            routing: self.routing.clone(),
            receivers: self.receivers.clone(),
            silences: self.silences.clone(),
        }
    }

    /// Opens (creates) the outbox folder and checks every receiver's settings.
    pub fn open(
        c: &NotifyConfig,
        otlp: Option<&OtlpConfig>,
        dir: &Path,
        rule_routes: BTreeMap<String, Vec<String>>,
        silences: Arc<crate::notify::silence::Silences>,
    ) -> Result<Outbox, String> {
        let router = if c.receivers.is_empty() {
            silences.replace_config(crate::notify::silence::from_config(&c.silences)?);
            None
        } else {
            Some(Router::new(c)?.with_silences(silences.clone()))
        };
        let routing = Arc::new(std::sync::RwLock::new(Routing {
            router,
            rule_routes,
        }));
        let mut senders = Vec::new();
        for r in &c.receivers {
            senders.push((r.name.clone(), Sender::new(r)?));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the outbox folder {}: {e}", dir.display()))?;
        let path = dir.join(QUEUE);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open the outbox {}: {e}", path.display()))?;
        Ok(Outbox {
            dir: dir.to_owned(),
            out: BufWriter::new(file),
            spec: Some(Spec {
                dir: dir.to_owned(),
                routing: routing.clone(),
                retry_initial: c.retry_initial,
                retry_max: c.retry_max.max(c.retry_initial),
            }),
            kinds: senders.iter().map(|(n, s)| (n.clone(), s.kind())).collect(),
            senders,
            otlp: otlp.cloned(),
            routing,
            receivers: format!("{:?}", c.receivers),
            silences,
            shared: Arc::new(Shared {
                draining: AtomicBool::new(false),
                status: Mutex::new(BTreeMap::new()),
            }),
            thread: None,
            drain_timeout: c.drain_timeout,
        })
    }

    /// The root route now in force (for tests of reloads).
    #[cfg(test)]
    pub fn root_route(&self) -> Option<super::Route> {
        let routing = self.routing.read().expect("routing lock");
        routing.router.as_ref().map(|r| r.route(0).clone())
    }

    fn status_lines(&self) -> Vec<String> {
        let status = self.shared.status.lock().expect("status lock");
        status
            .iter()
            .map(|(name, s)| {
                let mut line = if name == OTLP {
                    format!(
                        "otlp logs: {} records exported, {} waiting",
                        s.notifications, s.queued
                    )
                } else {
                    let kind = self.kinds.get(name).copied().unwrap_or("email");
                    let what = if kind == "email" {
                        "messages"
                    } else {
                        "requests"
                    };
                    format!(
                        "{kind} {name}: {} {what} sent ({} alert changes), {} queued",
                        s.emails, s.notifications, s.queued
                    )
                };
                if s.waiting_groups > 0 {
                    line += &format!(", {} groups waiting", s.waiting_groups);
                }
                if s.refused > 0 {
                    line += &format!(", {} refused by the receiver and dropped", s.refused);
                }
                if s.failures > 0 {
                    line += &format!(
                        ", {} failed attempts (last: {})",
                        s.failures,
                        s.last_error.as_deref().unwrap_or("")
                    );
                }
                line
            })
            .collect()
    }
}

impl Receiver for Outbox {
    fn name(&self) -> &str {
        NAME
    }
    fn send(&mut self, n: &Notification) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, n)?;
        self.out.write_all(b"\n")
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data().map_err(|e| {
            std::io::Error::new(e.kind(), format!("{}: {e}", self.dir.join(QUEUE).display()))
        })
    }
    fn durable(&self) -> bool {
        true
    }
    fn cursor(&mut self) -> std::io::Result<Vec<(String, u64)>> {
        self.out.flush()?;
        Ok(vec![(
            NAME.to_owned(),
            self.out.get_ref().metadata()?.len(),
        )])
    }
    fn files(&self) -> Vec<(String, std::path::PathBuf)> {
        vec![(NAME.to_owned(), self.dir.join(QUEUE))]
    }
    fn rewind(&mut self, cursors: &BTreeMap<String, u64>) -> std::io::Result<()> {
        let Some(&cursor) = cursors.get(NAME) else {
            return Ok(());
        };
        self.out.flush()?;
        let len = self.out.get_ref().metadata()?.len();
        if cursor < len {
            self.out.get_ref().set_len(cursor)?;
            self.out.get_ref().sync_data()?;
        }
        Ok(())
    }
    fn start(&mut self) -> std::io::Result<()> {
        let Some(spec) = self.spec.take() else {
            return Ok(());
        };
        self.out.flush()?;
        let start_len = self.out.get_ref().metadata()?.len();
        let senders = std::mem::take(&mut self.senders);
        let otlp = self.otlp.take();
        let shared = self.shared.clone();
        self.thread = Some(
            std::thread::Builder::new()
                .name("inferwatch-notify".into())
                .spawn(move || dispatch(spec, senders, otlp, shared, start_len))?,
        );
        Ok(())
    }
    fn status(&self) -> Vec<String> {
        self.status_lines()
    }
    fn delivery_stats(&self) -> Option<crate::alert::DeliveryStats> {
        let shared = self.shared.clone();
        Some(Arc::new(move || {
            let status = shared.status.lock().expect("status lock");
            status
                .iter()
                .map(|(name, s)| {
                    let who = if name == OTLP {
                        "otlp".to_owned()
                    } else {
                        format!("email:{name}")
                    };
                    let messages = if name == OTLP {
                        s.notifications
                    } else {
                        s.emails
                    };
                    (
                        who,
                        messages,
                        s.notifications,
                        s.failures,
                        (s.queued + s.waiting_groups) as u64,
                    )
                })
                .collect()
        }))
    }
    fn drain(&mut self) -> Vec<String> {
        let _ = self.flush();
        let Some(thread) = self.thread.take() else {
            return self.status_lines();
        };
        self.shared.draining.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + self.drain_timeout;
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut lines = self.status_lines();
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            let queued: usize = self
                .shared
                .status
                .lock()
                .expect("status lock")
                .values()
                .map(|s| s.queued + s.waiting_groups)
                .sum();
            let msg = format!(
                "notify.drain_timeout ({}) passed with {queued} messages or groups still \
                 queued; they stay in the outbox {} and go out on the next start",
                humantime::format_duration(self.drain_timeout),
                self.dir.display()
            );
            tracing::warn!("{msg}");
            lines.push(msg);
        }
        lines
    }
}
