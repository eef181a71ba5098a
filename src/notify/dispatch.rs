//! The dispatcher: one thread, a tokio runtime, one task per receiver, reading the
//! outbox file the pipeline writes (`outbox`).
//!
//! Each receiver keeps `<outbox>/<name>.state.json`: how far it has read, the ids of the
//! changes it applied (so lines written again after a restart are not applied twice),
//! its alert groups, and the messages it composed but the server has not taken yet. A
//! message is composed and saved before it is sent, and removed after the server took
//! it, so a crash in between sends the same bytes again (same Message-ID) once, and
//! nothing is lost. A failing server is retried with backoff (`backoff`); other
//! receivers go on. OTLP log export (`otlp`) is one more task over the same file, built
//! from the same pieces (`Task`, `Retry`).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Sender;
use super::backoff::Backoff;
use super::email::{Content, Item, Prepared};
use super::match_labels;
use super::outbox::{APPLIED_KEEP, OTLP, QUEUE, Shared, Spec};
use crate::alert::{Notification, State};
use crate::otlp::OtlpConfig;
use crate::stable_hash::hex;

pub(super) fn dispatch(
    spec: Spec,
    senders: Vec<(String, Sender)>,
    otlp: Option<OtlpConfig>,
    shared: Arc<Shared>,
    start_len: u64,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the notification dispatcher: {e}");
            return;
        }
    };
    let spec = Arc::new(spec);
    rt.block_on(async {
        let mut tasks: Vec<_> = senders
            .into_iter()
            .map(|(name, sender)| {
                let (spec, shared) = (spec.clone(), shared.clone());
                tokio::spawn(async move {
                    if let Err(e) = run_receiver(&spec, &name, &sender, &shared, start_len).await {
                        stopped(&shared, name, e);
                    }
                })
            })
            .collect();
        if let Some(c) = otlp {
            let (spec, shared) = (spec.clone(), shared.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = super::otlp::run_otlp(&spec, &c, &shared, start_len).await {
                    stopped(&shared, OTLP.to_owned(), e);
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

/// What the log calls a receiver's sends: `email delivery`, `webhook delivery`, ...
fn delivery_word(sender: &Sender) -> &'static str {
    match sender.kind() {
        "email" => "email delivery",
        "webhook" => "webhook delivery",
        _ => "alertmanager delivery",
    }
}

/// A receiver task that cannot go on (its state file is damaged or unwritable): said
/// in the log and in the summary; what it had not sent stays in the outbox.
fn stopped(shared: &Shared, name: String, e: String) {
    tracing::error!(receiver = %name, "notification receiver stopped: {e}");
    let mut st = shared.status.lock().expect("status lock");
    let s = st.entry(name).or_default();
    s.last_error = Some(e);
}

/// One alert in a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    firing: Notification,
    resolved: Option<Notification>,
    /// Its firing was in a message that was composed.
    notified: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Group {
    route: usize,
    labels: BTreeMap<String, String>,
    /// Wall clock, epoch ms.
    created_ms: i64,
    last_sent_ms: Option<i64>,
    /// Messages composed so far.
    seq: u64,
    /// Names the group's mail thread: its first alert's notification id.
    anchor: String,
    alerts: BTreeMap<String, Entry>,
}

/// A receiver's durable state.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ReceiverState {
    /// Bytes of the queue file read and applied.
    consumed: u64,
    /// Ids of the changes applied, oldest first.
    applied: VecDeque<String>,
    /// Every firing alert (for inhibition), by id.
    active: BTreeMap<String, BTreeMap<String, String>>,
    groups: BTreeMap<String, Group>,
    /// Composed, not yet taken by the server.
    queue: VecDeque<Prepared>,
    emails: u64,
    notifications: u64,
    /// Requests the receiver refused (4xx), dropped.
    #[serde(default)]
    refused: u64,
}

/// A receiver's state file: read at start (absent = a fresh receiver), written
/// atomically (temporary file, fsync, rename, fsync of the folder).
pub(super) trait StateFile: Serialize + serde::de::DeserializeOwned + Default {
    fn load(path: &Path) -> Result<Self, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                format!(
                    "{} is damaged ({e}); move it away to start this receiver afresh",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    fn save(&self, path: &Path) -> Result<(), String> {
        let tmp = path.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            serde_json::to_writer(&mut f, self)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}

impl StateFile for ReceiverState {}

/// Where a task's state says it is in the queue file, and which changes it took.
pub(super) trait Progress {
    fn consumed(&mut self) -> &mut u64;
    fn applied(&self) -> &VecDeque<String>;
}

impl Progress for ReceiverState {
    fn consumed(&mut self) -> &mut u64 {
        &mut self.consumed
    }
    fn applied(&self) -> &VecDeque<String> {
        &self.applied
    }
}

/// What both delivery tasks (email receivers, OTLP export) start from: their state file
/// and state, the queue file open for reading, and the ids of the changes they took.
pub(super) struct Task<S> {
    pub(super) path: std::path::PathBuf,
    pub(super) st: S,
    pub(super) queue: File,
    pub(super) applied: HashSet<String>,
}

impl<S: StateFile + Progress> Task<S> {
    pub(super) fn open(spec: &Spec, name: &str, start_len: u64) -> Result<Task<S>, String> {
        let path = spec.dir.join(format!("{name}.state.json"));
        let mut st = S::load(&path)?;
        // The pipeline may have rewound the queue to its checkpoint: read from there
        // again; the changes already taken are skipped by id.
        let consumed = st.consumed();
        *consumed = (*consumed).min(start_len);
        let applied: HashSet<String> = st.applied().iter().cloned().collect();
        let queue_path = spec.dir.join(QUEUE);
        let queue = File::open(&queue_path)
            .map_err(|e| format!("cannot read the outbox {}: {e}", queue_path.display()))?;
        Ok(Task {
            path,
            st,
            queue,
            applied,
        })
    }
}

/// Bytes in the queue file now.
pub(super) fn queue_len(queue: &File) -> Result<u64, String> {
    Ok(queue
        .metadata()
        .map_err(|e| format!("cannot read the outbox: {e}"))?
        .len())
}

/// A delivery's retries: exponential backoff with jitter (`backoff`), the failures
/// counted and the last error kept for the status, each failure and recovery logged.
pub(super) struct Retry {
    /// What is retried, for the log: `email delivery`, `otlp log export`.
    what: &'static str,
    receiver: String,
    backoff: Backoff,
    next_try: Instant,
    failures: u64,
    last_error: Option<String>,
}

impl Retry {
    pub(super) fn new(what: &'static str, receiver: &str, spec: &Spec) -> Retry {
        Retry {
            what,
            receiver: receiver.to_owned(),
            backoff: Backoff::new(spec.retry_initial, spec.retry_max),
            next_try: Instant::now(),
            failures: 0,
            last_error: None,
        }
    }

    /// Whether the next try may go now.
    pub(super) fn due(&self) -> bool {
        Instant::now() >= self.next_try
    }

    pub(super) fn succeeded(&mut self) {
        if self.backoff.succeeded() {
            tracing::info!(receiver = %self.receiver, "{} works again", self.what);
        }
    }

    /// A request refused for good: a failure for the counters, no backoff.
    pub(super) fn refused(&mut self, e: String) {
        self.failures += 1;
        self.last_error = Some(e);
    }

    pub(super) fn failed(&mut self, e: String, queued: usize) {
        self.failures += 1;
        let wait = self.backoff.failed();
        tracing::warn!(
            receiver = %self.receiver,
            retry_in = %humantime::format_duration(round_ms(wait)),
            queued,
            "{} failed: {e}",
            self.what
        );
        self.last_error = Some(e);
        self.next_try = Instant::now() + wait;
    }
}

/// Publishes a task's status for the summary and `/metrics`.
pub(super) fn publish(
    shared: &Shared,
    name: &str,
    retry: &Retry,
    f: impl FnOnce(&mut super::outbox::Status),
) {
    let mut status = shared.status.lock().expect("status lock");
    let s = status.entry(name.to_owned()).or_default();
    s.failures = retry.failures;
    s.last_error.clone_from(&retry.last_error);
    f(s);
}

/// The pause between two rounds of a task: short while draining at the end of a run.
pub(super) async fn pause(draining: bool) {
    tokio::time::sleep(Duration::from_millis(if draining { 20 } else { 200 })).await;
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

async fn run_receiver(
    spec: &Spec,
    name: &str,
    sender: &Sender,
    shared: &Shared,
    start_len: u64,
) -> Result<(), String> {
    let Task {
        path,
        mut st,
        queue: mut file,
        mut applied,
    } = Task::<ReceiverState>::open(spec, name, start_len)?;
    let mut retry = Retry::new(delivery_word(sender), name, spec);
    let mut dirty = false;
    let mut last_save = Instant::now();
    loop {
        let draining = shared.draining.load(Ordering::SeqCst);
        let read = read_new(&mut file, &mut st, &mut applied, spec, name)?;
        dirty |= read;
        let now = now_ms();
        let composed = compose(&mut st, spec, name, sender, now, draining)?;
        if composed || (dirty && last_save.elapsed() >= Duration::from_secs(1)) {
            st.save(&path)?;
            dirty = false;
            last_save = Instant::now();
        }
        while let Some(p) = st.queue.front() {
            if !retry.due() {
                break;
            }
            match sender.send(p).await {
                Ok(()) => {
                    st.emails += 1;
                    st.notifications += p.notifications.len() as u64;
                    st.queue.pop_front();
                    st.save(&path)?;
                    last_save = Instant::now();
                    dirty = false;
                    retry.succeeded();
                }
                Err(super::webhook::SendError::Refused(e)) => {
                    // Sent again it would be refused again, and block every change
                    // queued after it: dropped, said loudly, counted.
                    tracing::error!(
                        receiver = %name,
                        changes = p.notifications.len(),
                        "{} refused by the receiver; the request is dropped: {e}",
                        delivery_word(sender)
                    );
                    st.refused += 1;
                    st.queue.pop_front();
                    st.save(&path)?;
                    last_save = Instant::now();
                    dirty = false;
                    retry.refused(e);
                }
                Err(super::webhook::SendError::Retry(e)) => {
                    retry.failed(e, st.queue.len());
                    break;
                }
            }
        }
        let len = queue_len(&file)?;
        let waiting = st
            .groups
            .values()
            .filter(|g| has_news(g, spec, sender, &st.active, now))
            .count();
        let done = draining && st.queue.is_empty() && waiting == 0 && st.consumed >= len;
        publish(shared, name, &retry, |s| {
            s.refused = st.refused;
            s.emails = st.emails;
            s.notifications = st.notifications;
            s.queued = st.queue.len();
            s.waiting_groups = waiting;
        });
        if done {
            if dirty {
                st.save(&path)?;
            }
            return Ok(());
        }
        pause(draining).await;
    }
}

/// Parses complete lines of the queue from byte `from`, at most `max` of them; returns
/// them and the offset after the last one. A line still being written is left.
pub(super) fn read_lines(
    file: &mut File,
    from: u64,
    max: usize,
) -> Result<(Vec<Notification>, u64), String> {
    let err = |e: std::io::Error| format!("cannot read the outbox: {e}");
    let len = file.metadata().map_err(err)?.len();
    if len <= from {
        return Ok((Vec::new(), from));
    }
    file.seek(SeekFrom::Start(from)).map_err(err)?;
    let mut reader = BufReader::new(Read::by_ref(file).take(len - from));
    let (mut line, mut out, mut at) = (Vec::new(), Vec::new(), from);
    while out.len() < max {
        line.clear();
        let got = reader.read_until(b'\n', &mut line).map_err(err)?;
        if got == 0 || line.last() != Some(&b'\n') {
            break;
        }
        at += got as u64;
        match serde_json::from_slice(&line) {
            Ok(n) => out.push(n),
            Err(e) => tracing::error!(
                "outbox line at byte {} is not a notification ({e}); skipped",
                at - got as u64
            ),
        }
    }
    Ok((out, at))
}

/// Reads the new lines of the queue and applies them; true when something changed.
fn read_new(
    file: &mut File,
    st: &mut ReceiverState,
    applied: &mut HashSet<String>,
    spec: &Spec,
    me: &str,
) -> Result<bool, String> {
    let (notes, at) = read_lines(file, st.consumed, usize::MAX)?;
    let changed = at > st.consumed;
    st.consumed = at;
    for n in notes {
        accept(st, applied, spec, me, n);
    }
    Ok(changed)
}

/// Remembers a change id (the oldest are forgotten beyond `APPLIED_KEEP`); false if it
/// was known.
pub(super) fn remember(order: &mut VecDeque<String>, set: &mut HashSet<String>, id: &str) -> bool {
    if !set.insert(id.to_owned()) {
        return false;
    }
    order.push_back(id.to_owned());
    while order.len() > APPLIED_KEEP {
        if let Some(old) = order.pop_front() {
            set.remove(&old);
        }
    }
    true
}

/// Applies a change once: a change read again after a rewind is skipped by its id.
fn accept(
    st: &mut ReceiverState,
    applied: &mut HashSet<String>,
    spec: &Spec,
    me: &str,
    n: Notification,
) {
    if remember(&mut st.applied, applied, &n.notification_id) {
        apply(st, spec, me, n);
    }
}

fn group_key(route: usize, labels: &BTreeMap<String, String>) -> String {
    serde_json::to_string(&(route, labels)).unwrap_or_default()
}

fn apply(st: &mut ReceiverState, spec: &Spec, me: &str, n: Notification) {
    let routing = spec.routing.read().expect("routing lock");
    let Some(router) = &routing.router else {
        return;
    };
    let labels = match_labels(&n);
    match n.state {
        State::Pending => return,
        State::Firing => {
            st.active.insert(n.id.clone(), labels.clone());
        }
        State::Resolved => {
            st.active.remove(&n.id);
        }
    }
    let rule_route = routing
        .rule_routes
        .get(&n.rule_id)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for r in router.routes_for(rule_route, &labels) {
        let route = router.route(r);
        if route.receiver != me {
            continue;
        }
        let gl: BTreeMap<String, String> = if route.group_by.iter().any(|g| g == "...") {
            labels.clone()
        } else {
            route
                .group_by
                .iter()
                .map(|k| (k.clone(), labels.get(k).cloned().unwrap_or_default()))
                .collect()
        };
        let key = group_key(r, &gl);
        match n.state {
            State::Firing => {
                let g = st.groups.entry(key).or_insert_with(|| Group {
                    route: r,
                    labels: gl,
                    created_ms: now_ms(),
                    last_sent_ms: None,
                    seq: 0,
                    anchor: n.notification_id.clone(),
                    alerts: BTreeMap::new(),
                });
                g.alerts.entry(n.id.clone()).or_insert_with(|| Entry {
                    firing: n.clone(),
                    resolved: None,
                    notified: false,
                });
            }
            State::Resolved => {
                if let Some(e) = st
                    .groups
                    .get_mut(&key)
                    .and_then(|g| g.alerts.get_mut(&n.id))
                {
                    e.resolved = Some(n.clone());
                }
            }
            State::Pending => {}
        }
    }
}

fn muted(
    spec: &Spec,
    e: &Entry,
    active: &BTreeMap<String, BTreeMap<String, String>>,
    now: i64,
) -> bool {
    let labels = match_labels(&e.firing);
    spec.routing
        .read()
        .expect("routing lock")
        .router
        .as_ref()
        .is_some_and(|r| r.silenced(&labels, now) || r.inhibited(&labels, active.values()))
}

/// What a group would say now: (state word, entry id) per alert, and whether any of it
/// is news (anything but `still firing`).
fn plan(
    g: &Group,
    spec: &Spec,
    sender: &Sender,
    active: &BTreeMap<String, BTreeMap<String, String>>,
    now: i64,
) -> (Vec<(&'static str, String)>, bool) {
    let mut items = Vec::new();
    let mut news = false;
    for (id, e) in &g.alerts {
        // An Alertmanager silences and inhibits by itself: it gets every alert, or it
        // would time a silenced one out and report it resolved.
        let m = !sender.is_alertmanager() && muted(spec, e, active, now);
        let word = match (e.notified, e.resolved.is_some(), m) {
            (false, false, false) => "firing",
            (false, true, false) => "fired and resolved",
            (true, true, _) if sender.send_resolved() => "resolved",
            (true, false, false) => "still firing",
            _ => continue,
        };
        news |= word != "still firing";
        items.push((word, id.clone()));
    }
    (items, news)
}

fn has_news(
    g: &Group,
    spec: &Spec,
    sender: &Sender,
    active: &BTreeMap<String, BTreeMap<String, String>>,
    now: i64,
) -> bool {
    plan(g, spec, sender, active, now).1
}

/// Composes the messages that are due, saves them in the queue; true if it did.
fn compose(
    st: &mut ReceiverState,
    spec: &Spec,
    me: &str,
    sender: &Sender,
    now: i64,
    draining: bool,
) -> Result<bool, String> {
    let mut composed = false;
    let keys: Vec<String> = st.groups.keys().cloned().collect();
    for key in keys {
        let g = &st.groups[&key];
        // A reload may have changed the tree: a group of a route that is gone keeps the
        // root's timing until it empties.
        let Some(route) = spec
            .routing
            .read()
            .expect("routing lock")
            .router
            .as_ref()
            .map(|r| r.route_or_root(g.route).clone())
        else {
            return Ok(false);
        };
        let (items, news) = plan(g, spec, sender, &st.active, now);
        // An Alertmanager receiver pushes every change at once: grouping and its timing
        // are the Alertmanager's.
        let at_once = sender.resend_ms().is_some();
        let due = if news {
            draining
                || at_once
                || match g.last_sent_ms {
                    None => now >= g.created_ms + ms(route.group_wait),
                    Some(t) => now >= t + ms(route.group_interval),
                }
        } else {
            // An Alertmanager receiver re-sends firing alerts before it forgets them.
            let repeat = sender.resend_ms().map_or(ms(route.repeat_interval), |r| {
                r.min(ms(route.repeat_interval))
            });
            // Not while an earlier request still waits (the receiver is down): resends
            // would pile up behind it, each older than the last.
            let backlog = at_once && !st.queue.is_empty();
            !items.is_empty() && !backlog && g.last_sent_ms.is_some_and(|t| now >= t + repeat)
        };
        if due {
            let thread = format!("<{}@inferwatch>", digest(&[me, &key, &g.anchor]));
            let message_id = if g.seq == 0 {
                thread.clone()
            } else {
                format!(
                    "<{}.{}@inferwatch>",
                    digest(&[me, &key, &g.anchor, &g.seq.to_string()]),
                    g.seq
                )
            };
            let content = Content {
                receiver: me,
                group: &g.labels,
                items: items
                    .iter()
                    .map(|(word, id)| {
                        let e = &g.alerts[id];
                        Item {
                            state: word,
                            n: &e.firing,
                            resolved: e.resolved.as_ref(),
                        }
                    })
                    .collect(),
                message_id,
                thread_id: thread,
            };
            let prepared = sender.prepare(&content, now)?;
            st.queue.push_back(prepared);
            composed = true;
            let g = st.groups.get_mut(&key).expect("key from the map");
            g.seq += 1;
            g.last_sent_ms = Some(now);
            for (word, id) in &items {
                match *word {
                    "firing" => {
                        if let Some(e) = g.alerts.get_mut(id) {
                            e.notified = true;
                        }
                    }
                    "fired and resolved" | "resolved" => {
                        g.alerts.remove(id);
                    }
                    _ => {}
                }
            }
        }
        // Resolved alerts that will not be said (not sent, muted, or send_resolved off)
        // leave the group.
        let g = st.groups.get_mut(&key).expect("key from the map");
        let active = &st.active;
        g.alerts.retain(|_, e| {
            if e.resolved.is_none() {
                return true;
            }
            let m = !sender.is_alertmanager() && muted(spec, e, active, now);
            match e.notified {
                true => sender.send_resolved(),
                false => !m,
            }
        });
        if g.alerts.is_empty() {
            st.groups.remove(&key);
        }
    }
    Ok(composed)
}

fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex(&h.finalize()[..16])
}

/// A wait as people read it: whole milliseconds.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
pub(crate) mod tests_support {
    //! Drives one receiver's grouping without a server or a dispatcher thread.
    use std::path::PathBuf;

    use super::*;
    use crate::notify::outbox::Routing;
    use crate::notify::{NotifyConfig, Router};

    pub struct Harness {
        spec: Spec,
        sender: Sender,
        st: ReceiverState,
        applied: HashSet<String>,
    }

    impl Harness {
        /// A notify config whose first receiver is the one driven.
        pub fn new(yaml: &str) -> Harness {
            let c: NotifyConfig = serde_yaml::from_str(yaml).unwrap();
            let r = &c.receivers[0];
            Harness {
                sender: Sender::new(r).unwrap(),
                spec: Spec {
                    dir: PathBuf::new(),
                    routing: Arc::new(std::sync::RwLock::new(Routing {
                        router: Some(Router::new(&c).unwrap()),
                        rule_routes: BTreeMap::new(),
                    })),
                    retry_initial: c.retry_initial,
                    retry_max: c.retry_max,
                },
                st: ReceiverState::default(),
                applied: HashSet::new(),
            }
        }

        fn me(&self) -> String {
            let routing = self.spec.routing.read().unwrap();
            routing.router.as_ref().unwrap().route(0).receiver.clone()
        }

        pub fn apply(&mut self, notes: &[&Notification]) {
            let me = self.me();
            for n in notes {
                accept(
                    &mut self.st,
                    &mut self.applied,
                    &self.spec,
                    &me,
                    (*n).clone(),
                );
            }
        }

        /// The messages composed now (taken out of the queue, as if sent).
        pub fn compose(&mut self, draining: bool) -> Vec<Prepared> {
            self.compose_at(now_ms(), draining)
        }

        /// The messages composed at wall-clock time `now` (epoch ms).
        pub fn compose_at(&mut self, now: i64, draining: bool) -> Vec<Prepared> {
            let me = self.me();
            compose(&mut self.st, &self.spec, &me, &self.sender, now, draining).unwrap();
            self.st.queue.drain(..).collect()
        }
    }
}
