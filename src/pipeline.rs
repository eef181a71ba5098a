//! The pipeline: source → decode → windows → rules → alerts → receivers.
//!
//! The source and the decoder run on their own thread (reading and JSON decoding are
//! the heavy part), handing decoded batches to the async side, which owns all state:
//! windows, rule engine, alert book, dead letters. One thread owns the state, so the
//! order of events, and therefore every alert, depends only on the records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::alert::jsonl::JsonlReceiver;
use crate::alert::kafka::KafkaReceiver;
use crate::alert::stdout::StdoutReceiver;
use crate::alert::{AlertBook, Notification, Receiver, State};
use crate::config::{Config, TimeConfig};
use crate::deadletter::{DeadKind, DeadLetters};
use crate::decode::{BatchDecoder, Decoded};
use crate::rules::engine::Engine;
use crate::rules::{Rule, RuleError};
use crate::source::{Poll, RawBatch, Source, SourceError};
use crate::state::{self, Checkpoint, StateError};
use crate::telemetry::Counters;
use crate::window::{ClosedWindow, Windows};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Rules(#[from] RuleError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("config: {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
    /// A bug: a thread or task of ours died.
    #[error("internal error: {0}")]
    Internal(String),
}

impl PipelineError {
    /// Errors the user fixes in config, rules or command line (exit code 2).
    pub fn is_usage(&self) -> bool {
        match self {
            PipelineError::Rules(_) | PipelineError::Config(_) => true,
            PipelineError::Source(e) => e.is_usage(),
            PipelineError::Io { .. } | PipelineError::Internal(_) => false,
            PipelineError::State(e) => matches!(e, StateError::Incompatible { .. }),
        }
    }
}

/// Counts for the end-of-run summary; a checkpoint carries them across restarts.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub records_read: u64,
    pub good: u64,
    pub bad: u64,
    pub late: u64,
    /// Of `bad`, records the event-time guard refused: (out of range, far ahead).
    #[serde(default)]
    pub time_refused: [u64; 2],
    pub windows_closed: u64,
    pub rule_runs: u64,
    pub rule_errors: u64,
    /// Per rule id: notifications per state.
    pub alerts: BTreeMap<String, [u64; 3]>,
    pub alerts_active_at_end: usize,
    #[serde(skip)]
    pub elapsed: Duration,
    /// From the first record this process read to the end of processing the last one
    /// (a stream's rate, without joining the group or waiting out `--until-idle`).
    #[serde(skip)]
    pub streaming: Duration,
    /// Records this process read (the checkpointed count includes earlier runs').
    #[serde(skip)]
    pub records_this_run: u64,
    /// Kafka consumer lag summed over the assigned partitions, from the last statistics.
    #[serde(skip)]
    pub kafka_lag: Option<crate::telemetry::Lag>,
    /// Client profiles held at the end, their estimated memory, and the evictions.
    #[serde(skip)]
    pub clients: crate::clients::ClientsUsage,
    /// Models refused a drift reference over `drift.max_models`, in this process.
    #[serde(skip)]
    pub models_refused: u64,
    /// Peak resident memory of the process (Linux), in KiB.
    #[serde(skip)]
    pub peak_rss_kib: Option<u64>,
    /// What the start restored, in words.
    #[serde(skip)]
    pub restored: Option<String>,
    #[serde(skip)]
    pub last_checkpoint: Option<CheckpointInfo>,
    #[serde(skip)]
    pub checkpoints: CheckpointStats,
    /// Re-scoring totals, when a model is configured, and the time it took.
    #[serde(skip)]
    pub rescore: Option<(crate::rescore::rescorer::Totals, Duration)>,
    /// Time spent per table and per rule in this process, costliest first.
    #[serde(skip)]
    pub costs: Vec<(String, Duration)>,
    /// How notification delivery went, a line per receiver.
    #[serde(skip)]
    pub deliveries: Vec<String>,
}

/// Checkpoints written by this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckpointStats {
    pub written: u64,
    /// Longest time taking a snapshot held up the pipeline.
    pub max_pause_ms: f64,
    pub max_bytes: u64,
    /// Longest encode + write, on another thread.
    pub max_write_ms: f64,
}

impl CheckpointStats {
    fn add(&mut self, info: &CheckpointInfo) {
        self.written += 1;
        self.max_bytes = self.max_bytes.max(info.bytes);
        self.max_write_ms = self.max_write_ms.max(info.millis);
    }
}

/// A checkpoint that was written.
#[derive(Debug, Clone)]
pub struct CheckpointInfo {
    /// Wall-clock time it was taken.
    pub written_at: String,
    pub bytes: u64,
    /// Time to encode and write it, off the pipeline's thread.
    pub millis: f64,
    /// The source positions it covers: safe to commit (Kafka offsets).
    pub positions: BTreeMap<String, u64>,
}

/// Positions covered by the newest written checkpoint, handed to the source thread.
type Committable = Arc<std::sync::Mutex<Option<BTreeMap<String, u64>>>>;

impl Summary {
    pub fn records_per_second(&self) -> f64 {
        self.records_read as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Records per second between the first and the last record of this run.
    pub fn streaming_rate(&self) -> f64 {
        self.records_this_run as f64 / self.streaming.as_secs_f64().max(1e-9)
    }
}

/// Options of one run that do not come from the config file.
#[derive(Default)]
pub struct RunOptions {
    /// Show a progress bar on the terminal.
    pub progress: bool,
    /// Stop after this long with no new records, as at the end of input.
    pub until_idle: Option<Duration>,
}

pub struct Pipeline {
    engine: Engine,
    windows: Windows,
    book: AlertBook,
    receivers: Vec<Box<dyn Receiver>>,
    dead: DeadLetters,
    decoder: Option<BatchDecoder>,
    sources: Vec<String>,
    time: TimeConfig,
    counters: Arc<Counters>,
    summary: Summary,
    schema: SchemaRef,
    /// Per partition name, where to resume after the last ingested batch.
    positions: BTreeMap<String, u64>,
    state_dir: Option<PathBuf>,
    reset_state: bool,
    checkpoint_interval: Duration,
    last_checkpoint: Instant,
    writing: Option<JoinHandle<Result<CheckpointInfo, StateError>>>,
    committable: Committable,
    clients: Arc<crate::clients::Clients>,
    drift: Arc<crate::drift::Drift>,
    rescorer: Arc<crate::rescore::rescorer::Rescorer>,
    /// OTLP metrics of `counters`, exported in the background.
    metrics: Option<crate::otlp::Metrics>,
    /// What the HTTP server shows.
    live: Arc<crate::http::Live>,
    /// Reload requests from the HTTP server (taken by `run`).
    reload_rx: Option<mpsc::Receiver<crate::http::ReloadReply>>,
    /// What a rule reload builds from.
    reloadable: Reloadable,
}

/// What reloading the rules needs besides the rule files.
struct Reloadable {
    tables: Vec<Arc<dyn crate::rules::engine::WindowTable>>,
    engine: crate::rules::engine::EngineConfig,
    queries: PathBuf,
    alerts: crate::alert::AlertsConfig,
    notify: crate::notify::NotifyConfig,
    /// Read again for the routing (`notify:`); none: the routing stays.
    config_path: Option<PathBuf>,
}

/// How long the source has been waiting for its input; said once at info level, and
/// as a warning when it lasts (a short wait is joining a group, a long one an outage).
#[derive(Default)]
struct Waiting {
    since: Option<Instant>,
    warned: bool,
}

impl Waiting {
    const WARN_AFTER: Duration = Duration::from_secs(5);

    fn still(&mut self, why: &str) {
        let since = *self.since.get_or_insert_with(|| {
            tracing::info!("waiting for the input: {why}");
            Instant::now()
        });
        if !self.warned && since.elapsed() >= Self::WARN_AFTER {
            tracing::warn!("waiting for the input: {why}");
            self.warned = true;
        }
    }

    fn over(&mut self) {
        if let Some(since) = self.since.take()
            && std::mem::take(&mut self.warned)
        {
            tracing::warn!(
                "the input is back after {:.0} s",
                since.elapsed().as_secs_f64()
            );
        }
    }
}

/// What the source thread sends, with its clock: the time it has spent reading and
/// decoding so far — not the time it waited for the pipeline to take a message, nor
/// the time the input was unreachable. Idle partitions are judged on this clock, so a
/// pipeline that falls behind (or a broker outage) never makes a partition look idle.
type Clocked = (Duration, Msg);

enum Msg {
    Batch(RawBatch, Decoded, u64),
    Idle,
    Waiting(String),
    Added(usize, String),
    Removed(usize),
    PartitionDone(usize),
    End,
    Failed(SourceError),
}

impl Pipeline {
    /// Builds every stage; `receivers` are added to those the config asks for.
    pub async fn build(
        config: &Config,
        rules: Vec<Rule>,
        mut receivers: Vec<Box<dyn Receiver>>,
    ) -> Result<Self, PipelineError> {
        let decoder = BatchDecoder::new(&config.decode).map_err(PipelineError::Config)?;
        let specs: Vec<_> = rules.iter().map(|r| r.spec).collect();
        let served = crate::rescore::serve(
            &config.models,
            Path::new("."),
            &decoder.events_schema(),
            &config.baseline_profiles,
        )
        .map_err(PipelineError::Config)?;
        for m in &served {
            if m.squeeze.as_ref().is_some_and(|s| s.threshold.is_none()) {
                tracing::warn!(
                    model = %m.model.name,
                    "squeeze has no threshold: squeeze_score is computed, adversarial stays \
                     null (driftwatch model calibrate prints one)"
                );
            }
        }
        let rescorer = crate::rescore::rescorer::Rescorer::with_windows(
            config.rescore.clone(),
            served,
            &specs,
        );
        // The reference samples hash request ids with a secret of the state directory,
        // so clients that choose their ids cannot choose what the reference holds.
        let sample_key = match &config.state_dir {
            Some(dir) => state::sample_key(dir)?,
            None => {
                // A replay (backtest) needs no secret; a deployment has a state dir.
                tracing::info!(
                    "no state directory: reference samples use an unkeyed hash of the \
                     request id (a client choosing its ids can aim at the sample); \
                     give --state-dir in production"
                );
                0
            }
        };
        let mut clients_config = config.clients.clone();
        clients_config.sample_key = sample_key;
        let mut drift_config = config.drift.clone();
        drift_config.sample_key = sample_key;
        let crate::rules::engine::StandardTables {
            tables,
            clients,
            drift,
        } = crate::rules::engine::standard_tables(
            decoder.events_schema(),
            &config.decode,
            &clients_config,
            &drift_config,
            &config.baseline_profiles,
            &rescorer,
        );
        config
            .notify
            .validate(
                rules
                    .iter()
                    .map(|r| (r.def.id.as_str(), r.def.route.as_slice())),
            )
            .map_err(PipelineError::Config)?;
        let rule_routes: BTreeMap<String, Vec<String>> = rules
            .iter()
            .filter(|r| !r.def.route.is_empty())
            .map(|r| (r.def.id.clone(), r.def.route.clone()))
            .collect();
        let engine = Engine::new(rules, tables.clone(), &config.engine).await?;
        if !rescorer.is_active()
            && let Some(r) = engine.rules().iter().find(|p| {
                p.rule.def.rescore || p.rule.def.sql.contains(crate::rules::engine::RESCORED)
            })
        {
            tracing::info!(
                rule = %r.rule.id(),
                "no models are configured: rules with rescore: true flag nobody, and the \
                 rescored table stays empty"
            );
        }
        let mut windows = Windows::new(
            &specs,
            0,
            config.time.allowed_lateness,
            config.time.max_empty_windows,
        );
        windows.set_guard(config.time.guard().map_err(PipelineError::Config)?);
        let counters = Arc::new(Counters::default());
        if config.alerts.stdout {
            receivers.insert(0, Box::new(StdoutReceiver::new()));
        }
        if let Some(path) = &config.alerts.jsonl {
            let r = JsonlReceiver::open(path).map_err(|source| PipelineError::Io {
                what: format!("cannot open alerts file {}", path.display()),
                source,
            })?;
            receivers.push(Box::new(r));
        }
        if let Some(c) = &config.alerts.kafka {
            let r = KafkaReceiver::open(c, counters.clone())
                .map_err(|e| PipelineError::Config(format!("alerts topic: {e}")))?;
            receivers.push(Box::new(r));
        }
        if let Some(o) = &config.otlp {
            o.validate().map_err(PipelineError::Config)?;
        }
        let api_silences = Arc::new(
            crate::http::silences::Silences::open(
                config.state_dir.as_ref().map(|d| d.join("silences.json")),
            )
            .map_err(PipelineError::Config)?,
        );
        let otlp_logs = config.otlp.as_ref().filter(|o| o.logs);
        if !config.notify.receivers.is_empty() || otlp_logs.is_some() {
            let dir = config
                .notify
                .outbox
                .clone()
                .or_else(|| config.state_dir.as_ref().map(|d| d.join("outbox")))
                .ok_or_else(|| {
                    PipelineError::Config(
                        "notify.receivers and otlp.logs need a durable outbox: set \
                         state_dir (or --state-dir), or notify.outbox to a folder"
                            .into(),
                    )
                })?;
            let r = crate::notify::outbox::Outbox::open(
                &config.notify,
                otlp_logs,
                &dir,
                rule_routes,
                api_silences.clone(),
            )
            .map_err(PipelineError::Config)?;
            receivers.push(Box::new(r));
        }
        let metrics = match config.otlp.as_ref().filter(|o| o.metrics) {
            Some(o) => Some(
                crate::otlp::Metrics::start(o, counters.clone()).map_err(PipelineError::Config)?,
            ),
            None => None,
        };
        let dead = DeadLetters::open(
            config.dead_letter.path.as_deref(),
            config.dead_letter.kafka.as_ref(),
            counters.clone(),
        )
        .map_err(PipelineError::Config)?;
        let rule_status = engine
            .rules()
            .iter()
            .map(|p| crate::http::RuleStatus::of(&p.rule))
            .collect();
        let mut live =
            crate::http::Live::new(counters.clone(), clients.clone(), api_silences, rule_status);
        live.drift = Some(drift.clone());
        live.rescorer = Some(rescorer.clone());
        live.deliveries = receivers
            .iter()
            .filter_map(|r| r.delivery_stats())
            .collect();
        let (reload_tx, reload_rx) = mpsc::channel(4);
        live.reload = Some(reload_tx);
        let live = Arc::new(live);
        Ok(Self {
            live,
            reload_rx: Some(reload_rx),
            reloadable: Reloadable {
                tables,
                engine: config.engine.clone(),
                queries: config.queries.clone(),
                alerts: config.alerts.clone(),
                notify: config.notify.clone(),
                config_path: config.path.clone(),
            },
            schema: decoder.events_schema(),
            positions: BTreeMap::new(),
            state_dir: config.state_dir.clone(),
            reset_state: config.reset_state,
            checkpoint_interval: config.checkpoint_interval,
            last_checkpoint: Instant::now(),
            writing: None,
            committable: Arc::default(),
            clients,
            drift,
            rescorer,
            book: AlertBook::new(engine.rules().len(), &config.alerts),
            engine,
            windows,
            receivers,
            dead,
            decoder: Some(decoder),
            sources: Vec::new(),
            time: config.time.clone(),
            metrics,
            counters,
            summary: Summary::default(),
        })
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// What the HTTP server shows, kept current by the pipeline.
    pub fn live(&self) -> Arc<crate::http::Live> {
        self.live.clone()
    }

    /// Runs the source to its end (or until idle), then closes every window. With a
    /// state directory, resumes from its checkpoint and writes checkpoints as it goes;
    /// SIGTERM or Ctrl-C stops reading and writes a final checkpoint, windows still open.
    pub async fn run(
        mut self,
        mut source: Box<dyn Source>,
        opts: RunOptions,
    ) -> Result<Summary, PipelineError> {
        let started = Instant::now();
        self.sources = source.partitions();
        for pid in 0..self.sources.len() {
            self.windows.ensure_partition(pid);
        }
        let restored = self.restore()?;
        if let Some(positions) = &restored {
            source.resume(positions)?;
        }
        for r in &mut self.receivers {
            r.start().map_err(|source| PipelineError::Io {
                what: format!("cannot start receiver {}", r.name()),
                source,
            })?;
        }
        if restored.is_none() && self.state_dir.is_some() {
            // The first checkpoint, before the first record: output written before the
            // first regular checkpoint is rewound after a crash like any other.
            self.checkpoint_now().await?;
        }
        let live = self.live.clone();
        let set_ready = |ready: bool| {
            live.source_ready
                .store(ready, std::sync::atomic::Ordering::Relaxed)
        };
        source.set_counters(self.counters.clone());
        let progress = progress_bar(opts.progress, source.total_bytes());
        let decoder = self.decoder.take().expect("a pipeline runs once");
        let (tx, mut rx) = mpsc::channel::<Clocked>(4);
        let committable = self.committable.clone();
        let reader = std::thread::Builder::new()
            .name("driftwatch-source".into())
            .spawn(move || {
                read_loop(source.as_mut(), &decoder, &tx, &committable);
                source
            })
            .map_err(|source| PipelineError::Io {
                what: "cannot start the source thread".into(),
                source,
            })?;
        let mut last_data = Instant::now();
        // Wall-clock time each partition last sent records: a partition quiet for
        // `idle_timeout` stops holding the watermark back.
        // On the source thread's clock (see `Clocked`).
        let mut heard: Vec<Duration> = vec![Duration::ZERO; self.sources.len()];
        let mut source_clock: Duration;
        let mut shutdown = std::pin::pin!(shutdown_signal());
        let mut reloads = self.reload_rx.take().expect("a pipeline runs once");
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut interrupted = false;
        let mut waiting = Waiting::default();
        let mut first_record: Option<Instant> = None;
        loop {
            let msg = tokio::select! {
                m = rx.recv() => m,
                _ = &mut shutdown => {
                    interrupted = true;
                    None
                }
                Some(reply) = reloads.recv() => {
                    let r = self.reload().await;
                    let _ = reply.send(r);
                    continue;
                }
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    let _ = self.reload().await;
                    continue;
                }
            };
            let Some((clock, msg)) = msg else { break };
            source_clock = clock;
            set_ready(!matches!(msg, Msg::Waiting(_)));
            match msg {
                Msg::Batch(raw, decoded, bytes) => {
                    waiting.over();
                    last_data = Instant::now();
                    if let Some(h) = heard.get_mut(raw.partition) {
                        *h = clock;
                    }
                    if let Some(p) = &progress {
                        p.set_position(bytes);
                    }
                    let first = *first_record.get_or_insert(last_data);
                    self.summary.records_this_run += raw.records_read() as u64;
                    self.ingest(&raw, decoded)?;
                    let closed = self.windows.close_ready();
                    self.evaluate(closed).await?;
                    self.summary.streaming = first.elapsed();
                }
                Msg::Waiting(why) => {
                    // Not idle: the input is away. --until-idle counts from its return.
                    last_data = Instant::now();
                    waiting.still(&why);
                }
                Msg::Idle => {
                    waiting.over();
                    let quiet = last_data.elapsed();
                    if opts.until_idle.is_some_and(|d| quiet >= d) {
                        tracing::info!(
                            seconds = quiet.as_secs(),
                            "no new records: stopping (--until-idle)"
                        );
                        break;
                    }
                }
                Msg::Added(pid, name) => {
                    if self.sources.len() <= pid {
                        self.sources.resize(pid + 1, String::new());
                        heard.resize(pid + 1, clock);
                    }
                    heard[pid] = clock;
                    // A new assignment is activity: --until-idle counts from it.
                    last_data = Instant::now();
                    self.windows.add_partition(pid, &name);
                    self.sources[pid] = name;
                }
                Msg::Removed(pid) | Msg::PartitionDone(pid) => {
                    self.windows.partition_done(pid);
                    let closed = self.windows.close_ready();
                    self.evaluate(closed).await?;
                }
                Msg::End => break,
                Msg::Failed(e) => return Err(e.into()),
            }
            self.mark_idle(&heard, source_clock).await?;
            self.maybe_checkpoint().await?;
        }
        drop(rx);
        let mut source = reader
            .join()
            .map_err(|_| PipelineError::Internal("the source thread panicked".into()))?;
        if interrupted {
            tracing::info!("stopping on signal: windows stay open in the checkpoint");
        } else {
            let closed = self.windows.close_all();
            self.evaluate(closed).await?;
        }
        self.checkpoint_now().await?;
        if let Some(positions) = self.committable.lock().expect("committable lock").take() {
            source.checkpointed(&positions);
        }
        if let Some(p) = progress {
            p.finish_and_clear();
        }
        self.summary.elapsed = started.elapsed();
        Ok(self.finish())
    }

    /// Marks partitions that sent nothing for `idle_timeout` as idle, and closes the
    /// windows they were holding back.
    async fn mark_idle(&mut self, heard: &[Duration], now: Duration) -> Result<(), PipelineError> {
        let mut changed = false;
        for (pid, &at) in heard.iter().enumerate() {
            if now.saturating_sub(at) >= self.time.idle_timeout && !self.windows.is_idle(pid) {
                tracing::info!(partition = %self.sources[pid], "partition idle: it no longer holds the watermark");
                self.windows.set_idle(pid, true);
                changed = true;
            }
        }
        if changed {
            let closed = self.windows.close_ready();
            self.evaluate(closed).await?;
        }
        Ok(())
    }

    /// The durable output files, by cursor name.
    fn output_files(&self) -> Vec<(String, std::path::PathBuf)> {
        let mut files: Vec<_> = self.receivers.iter().flat_map(|r| r.files()).collect();
        files.extend(self.dead.files());
        files
    }

    /// Loads the state directory's checkpoint, if any; returns the source positions to
    /// resume from.
    fn restore(&mut self) -> Result<Option<BTreeMap<String, u64>>, PipelineError> {
        let Some(dir) = self.state_dir.clone() else {
            return Ok(None);
        };
        if self.reset_state {
            tracing::warn!(dir = %dir.display(), "--reset-state: starting without the saved state");
            return Ok(None);
        }
        let Some((cp, path, warning)) = state::load(&dir)? else {
            tracing::info!(dir = %dir.display(), "no checkpoint yet: starting fresh");
            return Ok(None);
        };
        if let Some(w) = warning {
            tracing::warn!("{w}");
        }
        let incompatible = |why: String| StateError::Incompatible {
            path: path.clone(),
            why,
        };
        if cp.events_schema != state::schema_fingerprint(&self.schema) {
            return Err(incompatible(
                "the checkpoint was written with other decode fields or features".into(),
            )
            .into());
        }
        let rows: usize = cp.rows.iter().map(|b| b.num_rows()).sum();
        self.windows
            .restore(cp.windows, cp.rows, &self.sources)
            .map_err(|why| incompatible(format!("{why} (a different rule set)")))?;
        let rules: Vec<&Rule> = self.engine.rules().iter().map(|p| &p.rule).collect();
        // Output files are rewound only when they are the files the checkpoint wrote.
        for (name, file) in self.output_files() {
            if let Some(&cursor) = cp.cursors.get(&name) {
                state::output::check(&name, &file, cursor, cp.marks.get(&name))
                    .map_err(incompatible)?;
            }
        }
        let (kept, alerts) = self.book.restore(cp.alerts, &rules);
        for r in &mut self.receivers {
            r.rewind(&cp.cursors).map_err(|source| PipelineError::Io {
                what: format!("cannot rewind receiver {}", r.name()),
                source,
            })?;
        }
        self.dead
            .rewind(&cp.cursors)
            .map_err(|source| PipelineError::Io {
                what: "cannot rewind the dead letters".into(),
                source,
            })?;
        let clients = cp.clients.map(|c| {
            let n = c.clients();
            self.clients.restore(c);
            n
        });
        if let Some(d) = cp.drift {
            self.drift.restore(d);
        }
        if let Some(r) = cp.rescore {
            self.rescorer.restore(r);
        }
        self.summary = cp.summary;
        self.positions = cp.positions.clone();
        let restored = format!(
            "{} (written {}): {} records read before, {} open panes with {} rows, alert state of {} of {} rules ({} alerts), {} client profiles",
            path.display(),
            cp.written_at,
            self.summary.records_read,
            self.windows.open_panes(),
            rows,
            kept,
            rules.len(),
            alerts,
            clients.unwrap_or(0)
        );
        tracing::info!("restored {restored}");
        self.summary.restored = Some(restored);
        Ok(Some(cp.positions))
    }

    /// Reloads the rule folder (SIGHUP, `POST /-/reload`): the new set is checked first
    /// (rule files, SQL against the tables, receivers named in `route:`, window specs);
    /// a set that fails is rejected with the reason and the running set stays. Rules
    /// whose text is unchanged keep their alert state. A rule with a window no running
    /// rule uses needs a restart (open windows are kept per window spec).
    async fn reload(&mut self) -> Result<String, String> {
        let r = &self.reloadable;
        let result = async {
            let notify = match &r.config_path {
                Some(p) => {
                    crate::config::Config::load(p)
                        .map_err(|e| e.to_string())?
                        .notify
                }
                None => r.notify.clone(),
            };
            let rules = crate::rules::load_rules(std::slice::from_ref(&r.queries))
                .map_err(|e| e.to_string())?;
            notify.validate(
                rules
                    .iter()
                    .map(|x| (x.def.id.as_str(), x.def.route.as_slice())),
            )?;
            let rule_routes: BTreeMap<String, Vec<String>> = rules
                .iter()
                .filter(|x| !x.def.route.is_empty())
                .map(|x| (x.def.id.clone(), x.def.route.clone()))
                .collect();
            for rx in &mut self.receivers {
                rx.reroute(&notify, &rule_routes, false)?;
            }
            let specs = self.windows.specs();
            if let Some(x) = rules.iter().find(|x| !specs.contains(&x.spec)) {
                return Err(format!(
                    "rule {} uses a window ({:?}) that no running rule uses: adding a window \
                     size or slide needs a restart",
                    x.def.id, x.spec
                ));
            }
            let engine = Engine::new(rules, r.tables.clone(), &r.engine)
                .await
                .map_err(|e| e.to_string())?;
            Ok((engine, notify, rule_routes))
        }
        .await;
        let (engine, notify, rule_routes) = match result {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("rule reload rejected, the running rules stay: {e}");
                return Err(e);
            }
        };
        let old: Vec<&Rule> = self.engine.rules().iter().map(|p| &p.rule).collect();
        let saved = self.book.snapshot(&old);
        let mut book = AlertBook::new(engine.rules().len(), &r.alerts);
        book.dropped_rows = self.book.dropped_rows;
        let new: Vec<&Rule> = engine.rules().iter().map(|p| &p.rule).collect();
        let (kept, alerts) = book.restore(saved, &new);
        let kept_ids: std::collections::BTreeSet<String> = new
            .iter()
            .filter(|n| {
                old.iter()
                    .any(|o| o.def.id == n.def.id && o.fingerprint == n.fingerprint)
            })
            .map(|n| n.def.id.clone())
            .collect();
        let statuses: Vec<crate::http::RuleStatus> = {
            let before = self.live.rules.lock().expect("rules lock");
            new.iter()
                .map(|n| {
                    before
                        .iter()
                        .find(|s| kept_ids.contains(&n.def.id) && s.id == n.def.id)
                        .cloned()
                        .unwrap_or_else(|| crate::http::RuleStatus::of(n))
                })
                .collect()
        };
        let count = new.len();
        for rx in &mut self.receivers {
            // Checked above; a failure here would be a bug, and the old routing stays.
            if let Err(e) = rx.reroute(&notify, &rule_routes, true) {
                tracing::error!("routing reload failed: {e}");
            }
        }
        self.reloadable.notify = notify;
        self.engine = engine;
        self.book = book;
        *self.live.rules.lock().expect("rules lock") = statuses;
        self.live
            .alerts
            .lock()
            .expect("alerts lock")
            .retain(|_, n| kept_ids.contains(&n.rule_id));
        let msg = format!(
            "{count} rules loaded; {kept} unchanged rules kept their alert state ({alerts} alerts)"
        );
        tracing::info!("rules reloaded: {msg}");
        Ok(msg)
    }

    /// Everything a restart needs, taken between batches so it is never half updated.
    fn snapshot(&mut self) -> Result<Checkpoint, PipelineError> {
        let io = |what: &str| {
            let what = what.to_owned();
            move |source| PipelineError::Io { what, source }
        };
        let mut cursors = BTreeMap::new();
        for r in &mut self.receivers {
            cursors.extend(r.cursor().map_err(io("cannot flush a receiver"))?);
        }
        cursors.extend(
            self.dead
                .cursor()
                .map_err(io("cannot flush dead letters"))?,
        );
        let mut marks = BTreeMap::new();
        for (name, path) in self.output_files() {
            if let Some(&len) = cursors.get(&name) {
                let mark = state::output::mark(&path, len)
                    .map_err(io(&format!("cannot read {}", path.display())))?;
                marks.insert(name, mark);
            }
        }
        let (windows, rows) = self.windows.snapshot(&self.sources);
        let rules: Vec<&Rule> = self.engine.rules().iter().map(|p| &p.rule).collect();
        Ok(Checkpoint {
            driftwatch: env!("CARGO_PKG_VERSION").to_owned(),
            written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            events_schema: state::schema_fingerprint(&self.schema),
            positions: self.positions.clone(),
            windows,
            alerts: self.book.snapshot(&rules),
            summary: self.summary.clone(),
            cursors,
            marks,
            clients: Some(self.clients.snapshot()),
            drift: Some(self.drift.snapshot()),
            rescore: self.rescorer.is_active().then(|| self.rescorer.snapshot()),
            rows,
        })
    }

    /// Starts writing a checkpoint in the background when one is due and the previous
    /// write has finished; the pipeline goes on meanwhile.
    async fn maybe_checkpoint(&mut self) -> Result<(), PipelineError> {
        if self.state_dir.is_none() || self.last_checkpoint.elapsed() < self.checkpoint_interval {
            return Ok(());
        }
        if self.writing.as_ref().is_some_and(|w| !w.is_finished()) {
            return Ok(());
        }
        self.finish_write().await?;
        let cp = self.timed_snapshot()?;
        self.last_checkpoint = Instant::now();
        let (dir, schema) = (
            self.state_dir.clone().expect("checked above"),
            self.schema.clone(),
        );
        self.writing = Some(tokio::task::spawn_blocking(move || {
            write_checkpoint(&dir, &cp, &schema)
        }));
        Ok(())
    }

    async fn finish_write(&mut self) -> Result<(), PipelineError> {
        if let Some(w) = self.writing.take() {
            let info = w
                .await
                .map_err(|e| PipelineError::Internal(format!("checkpoint writer: {e}")))??;
            tracing::info!(bytes = info.bytes, ms = info.millis, "checkpoint written");
            self.written(info);
        }
        Ok(())
    }

    /// Records a written checkpoint and offers its positions to the source.
    fn written(&mut self, info: CheckpointInfo) {
        self.summary.checkpoints.add(&info);
        // The checkpoint before the first record has no positions: nothing to commit.
        if !info.positions.is_empty() {
            *self.committable.lock().expect("committable lock") = Some(info.positions.clone());
        }
        self.summary.last_checkpoint = Some(info);
    }

    /// Writes a checkpoint now (end of run, shutdown).
    async fn checkpoint_now(&mut self) -> Result<(), PipelineError> {
        self.finish_write().await?;
        let Some(dir) = self.state_dir.clone() else {
            return Ok(());
        };
        let cp = self.timed_snapshot()?;
        let schema = self.schema.clone();
        let info = tokio::task::spawn_blocking(move || write_checkpoint(&dir, &cp, &schema))
            .await
            .map_err(|e| PipelineError::Internal(format!("checkpoint writer: {e}")))??;
        self.written(info);
        Ok(())
    }

    /// A snapshot, counting how long it held up the pipeline.
    fn timed_snapshot(&mut self) -> Result<Checkpoint, PipelineError> {
        let started = Instant::now();
        let cp = self.snapshot()?;
        let pause = started.elapsed().as_secs_f64() * 1000.0;
        let stats = &mut self.summary.checkpoints;
        stats.max_pause_ms = stats.max_pause_ms.max(pause);
        Ok(cp)
    }

    /// Decodes and ingests records given directly (rule tests).
    pub async fn feed(&mut self, raw: &RawBatch) -> Result<(), PipelineError> {
        if self.sources.is_empty() {
            self.sources.push("input".into());
            self.windows.ensure_partition(0);
        }
        let decoded = self.decoder.as_ref().expect("not running").decode(raw);
        self.ingest(raw, decoded)?;
        let closed = self.windows.close_ready();
        self.evaluate(closed).await
    }

    /// Closes windows up to event time `t` as if the watermark had reached it.
    pub async fn advance_to(&mut self, t: i64) -> Result<(), PipelineError> {
        let closed = self.windows.advance_to(t);
        self.evaluate(closed).await
    }

    fn ingest(&mut self, raw: &RawBatch, decoded: Decoded) -> Result<(), PipelineError> {
        let pid = raw.partition;
        let source = self.sources.get(pid).cloned().unwrap_or_default();
        self.positions.insert(source.clone(), raw.resume_at);
        let read = raw.records_read() as u64;
        let bytes = raw.buf.len() + raw.oversized.iter().map(|o| o.len).sum::<usize>();
        self.counters.records_read(read, bytes as u64);
        self.summary.records_read += read;
        for d in &decoded.dead {
            self.counters.record_bad(&source, d.position, &d.reason);
            self.dead_letter(DeadKind::Bad, &source, d)?;
        }
        self.summary.bad += decoded.dead.len() as u64;
        let Some(events) = decoded.events else {
            self.windows.count_bad(pid, decoded.dead.len() as u64);
            return Ok(());
        };
        let positions: Vec<u64> = decoded
            .rows
            .iter()
            .map(|&i| raw.positions[i as usize])
            .collect();
        let bad: Vec<u64> = decoded.dead.iter().map(|d| d.position).collect();
        let ingested = self.windows.ingest(pid, &events, &positions, &bad);
        for &(row, why) in &ingested.refused {
            let index = decoded.rows[row] as usize;
            let rec = crate::decode::DeadRecord {
                index,
                position: raw.positions[index],
                reason: why.reason(self.windows.guard()),
                raw: raw.record(index).to_vec(),
            };
            self.counters
                .record_time_refused(&source, rec.position, why.code());
            self.dead_letter(DeadKind::Bad, &source, &rec)?;
        }
        self.summary.bad += ingested.refused.len() as u64;
        for &row in &ingested.late_rows {
            let index = decoded.rows[row] as usize;
            let rec = crate::decode::DeadRecord {
                index,
                position: raw.positions[index],
                reason: "late: event time behind the watermark".into(),
                raw: raw.record(index).to_vec(),
            };
            self.counters.record_late(&source, rec.position);
            self.dead_letter(DeadKind::Late, &source, &rec)?;
        }
        self.summary.late += ingested.late_rows.len() as u64;
        self.summary.good +=
            (events.num_rows() - ingested.late_rows.len() - ingested.refused.len()) as u64;
        self.summary.time_refused = self.windows.refused();
        Ok(())
    }

    fn dead_letter(
        &mut self,
        kind: DeadKind,
        source: &str,
        rec: &crate::decode::DeadRecord,
    ) -> Result<(), PipelineError> {
        self.dead
            .write(kind, source, rec)
            .map_err(|source| PipelineError::Io {
                what: "cannot write dead letter".into(),
                source,
            })
    }

    /// Runs the rules of each closed window and delivers the state changes.
    async fn evaluate(&mut self, closed: Vec<ClosedWindow>) -> Result<(), PipelineError> {
        if closed.is_empty() {
            return Ok(());
        }
        for window in closed {
            self.summary.windows_closed += 1;
            self.counters.window_closed(
                &crate::alert::rfc3339(window.start_ms),
                &crate::alert::rfc3339(window.end_ms),
                window.stats.records,
            );
            // Rules that do not read `rescored` run first; what their `rescore: true`
            // rules flag is re-scored before the rules that read it run.
            let (engine, rescorer) = (&self.engine, &self.rescorer);
            let flags = |runs: &[crate::rules::engine::RuleRun]| {
                let mut flags = crate::rescore::rescorer::Flags::default();
                for run in runs {
                    if let (true, Ok(rows)) =
                        (engine.rules()[run.rule].rule.def.rescore, &run.result)
                    {
                        flags.add(rows);
                    }
                }
                flags
            };
            let runs = engine
                .evaluate_with(&window, |runs| {
                    rescorer.flag(&window, flags(runs));
                    rescorer.score_window(&window)
                })
                .await;
            if self.rescorer.is_active() {
                // Flags of the rules that read `rescored` count from the next window.
                self.rescorer.flag(&window, flags(&runs));
                self.counters.rescored(self.rescorer.totals());
            }
            let mut notes: Vec<Notification> = Vec::new();
            let wall = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let window_end = crate::alert::rfc3339(window.end_ms);
            for run in runs {
                let rule = &self.engine.rules()[run.rule].rule;
                self.summary.rule_runs += 1;
                let err = run.result.as_ref().err().map(String::as_str);
                self.counters.rule_run(rule.id(), err);
                if let Some(st) = self
                    .live
                    .rules
                    .lock()
                    .expect("rules lock")
                    .get_mut(run.rule)
                {
                    st.evaluations += 1;
                    st.errors += u64::from(err.is_some());
                    st.last_window_end = Some(window_end.clone());
                    st.last_evaluated_at = Some(wall.clone());
                    st.last_duration_ms = Some(run.elapsed.as_secs_f64() * 1000.0);
                    st.total_seconds += run.elapsed.as_secs_f64();
                    st.last_error = err.map(str::to_owned);
                }
                if err.is_some() {
                    self.summary.rule_errors += 1;
                }
                let result = run.result.as_deref().map_err(String::as_str);
                notes.extend(
                    self.book
                        .evaluate(run.rule, rule, &window, &self.sources, result),
                );
            }
            self.deliver(&notes)?;
        }
        self.dead.flush().map_err(|source| PipelineError::Io {
            what: "cannot write dead letters".into(),
            source,
        })
    }

    fn deliver(&mut self, notes: &[Notification]) -> Result<(), PipelineError> {
        if notes.is_empty() {
            return Ok(());
        }
        for n in notes {
            let state = match n.state {
                State::Pending => 0,
                State::Firing => 1,
                State::Resolved => 2,
            };
            self.counters.notification(state);
            self.summary.alerts.entry(n.rule_id.clone()).or_default()[state] += 1;
        }
        self.counters.alerts_active.store(
            self.book.active_count() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.live.alerts_changed(notes);
        *self.live.receivers.lock().expect("receivers lock") =
            self.receivers.iter().flat_map(|r| r.status()).collect();
        for r in &mut self.receivers {
            let sent = notes
                .iter()
                .try_for_each(|n| r.send(n))
                .and_then(|_| r.flush());
            if let Err(e) = sent {
                if r.durable() {
                    return Err(PipelineError::Io {
                        what: format!("receiver {} failed", r.name()),
                        source: e,
                    });
                }
                self.counters.receiver_error(r.name(), &e.to_string());
            }
        }
        Ok(())
    }

    /// Closes every remaining window and returns the summary.
    pub async fn finish_input(&mut self) -> Result<(), PipelineError> {
        let closed = self.windows.close_all();
        self.evaluate(closed).await
    }

    fn finish(mut self) -> Summary {
        for r in &mut self.receivers {
            let _ = r.flush();
        }
        for r in &mut self.receivers {
            self.summary.deliveries.extend(r.drain());
        }
        if let Some(m) = self.metrics.take() {
            m.shutdown();
        }
        self.summary.alerts_active_at_end = self.book.active_count();
        if !self.counters.lag.lock().expect("lag lock").is_empty() {
            self.summary.kafka_lag = Some(self.counters.total_lag());
        }
        self.summary.clients = self.clients.usage();
        self.summary.models_refused = self.drift.models_refused();
        self.summary.costs = self.engine.costs();
        self.summary.rescore = self
            .rescorer
            .is_active()
            .then(|| (self.rescorer.totals(), self.rescorer.busy()));
        self.summary.peak_rss_kib = peak_rss_kib();
        self.summary.clone()
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }
}

fn write_checkpoint(
    dir: &std::path::Path,
    cp: &Checkpoint,
    schema: &SchemaRef,
) -> Result<CheckpointInfo, StateError> {
    let started = Instant::now();
    let bytes = state::encode(cp, schema).map_err(StateError::Encode)?;
    state::write(dir, &bytes)?;
    Ok(CheckpointInfo {
        written_at: cp.written_at.clone(),
        bytes: bytes.len() as u64,
        millis: started.elapsed().as_secs_f64() * 1000.0,
        positions: cp.positions.clone(),
    })
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `VmHWM` of /proc/self/status: the process's peak resident set size.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn read_loop(
    source: &mut dyn Source,
    decoder: &BatchDecoder,
    tx: &mpsc::Sender<Clocked>,
    committable: &Committable,
) {
    let mut clock = Duration::ZERO;
    loop {
        if let Some(positions) = committable.lock().expect("committable lock").take() {
            source.checkpointed(&positions);
        }
        let started = Instant::now();
        let mut counts = true;
        let msg = match source.poll() {
            Ok(Poll::Batch(raw)) => {
                let decoded = decoder.decode(&raw);
                Msg::Batch(raw, decoded, source.bytes_read())
            }
            Ok(Poll::Idle) => {
                std::thread::sleep(Duration::from_millis(100));
                Msg::Idle
            }
            Ok(Poll::Waiting(why)) => {
                std::thread::sleep(Duration::from_millis(100));
                counts = false;
                Msg::Waiting(why)
            }
            Ok(Poll::Added(pid, name)) => Msg::Added(pid, name),
            Ok(Poll::Removed(pid)) => Msg::Removed(pid),
            Ok(Poll::PartitionDone(pid)) => Msg::PartitionDone(pid),
            Ok(Poll::End) => Msg::End,
            Err(e) => Msg::Failed(e),
        };
        if counts {
            clock += started.elapsed();
        }
        let last = matches!(msg, Msg::End | Msg::Failed(_));
        if tx.blocking_send((clock, msg)).is_err() || last {
            return;
        }
    }
}

fn progress_bar(enabled: bool, total: Option<u64>) -> Option<indicatif::ProgressBar> {
    if !enabled {
        return None;
    }
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {percent}% ({eta} left)",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A source of 1,000 records in batches of 100 that records what it may commit.
    struct Recording {
        next: u64,
        committed: Arc<Mutex<Vec<u64>>>,
    }

    impl Source for Recording {
        fn partitions(&self) -> Vec<String> {
            vec!["mem".into()]
        }
        fn poll(&mut self) -> Result<Poll, SourceError> {
            if self.next >= 1000 {
                return Ok(Poll::End);
            }
            let mut b = RawBatch::new(0);
            for _ in 0..100 {
                let ts = 1_795_255_200_000 + self.next as i64 * 100;
                b.push(
                    format!(r#"{{"ts":{ts},"client_id":"c"}}"#).as_bytes(),
                    self.next,
                );
                self.next += 1;
            }
            b.resume_at = self.next;
            Ok(Poll::Batch(b))
        }
        fn resume(&mut self, _: &BTreeMap<String, u64>) -> Result<(), SourceError> {
            Ok(())
        }
        fn checkpointed(&mut self, positions: &BTreeMap<String, u64>) {
            self.committed.lock().unwrap().push(positions["mem"]);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_source_commits_only_positions_of_written_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let mut config: Config = serde_yaml::from_str("source: {type: file, paths: []}").unwrap();
        config.state_dir = Some(dir.path().to_owned());
        config.checkpoint_interval = Duration::ZERO;
        config.alerts.stdout = false;
        let pipeline = Pipeline::build(&config, Vec::new(), Vec::new())
            .await
            .unwrap();
        let committed = Arc::new(Mutex::new(Vec::new()));
        let source = Recording {
            next: 0,
            committed: committed.clone(),
        };
        let summary = pipeline
            .run(Box::new(source), RunOptions::default())
            .await
            .unwrap();
        let committed = committed.lock().unwrap().clone();
        assert!(
            summary.checkpoints.written >= 2,
            "{:?}",
            summary.checkpoints
        );
        assert_eq!(committed.last(), Some(&1000), "{committed:?}");
        assert!(committed.windows(2).all(|w| w[0] <= w[1]), "{committed:?}");
        assert!(
            committed.iter().all(|p| p % 100 == 0),
            "only batch ends: {committed:?}"
        );
        let (cp, _, _) = crate::state::load(dir.path()).unwrap().unwrap();
        assert_eq!(cp.positions["mem"], 1000);
    }
}

#[cfg(test)]
mod partition_tests {
    use super::*;

    /// Plays a fixed list of polls: partitions that come and go, as Kafka assigns them.
    struct Scripted(std::collections::VecDeque<Poll>);

    fn batch(pid: usize, from_s: i64, n: u64) -> Poll {
        let mut b = RawBatch::new(pid);
        for i in 0..n {
            let ts = 1_795_255_200_000 + (from_s + i as i64) * 1000;
            b.push(
                format!(r#"{{"ts":{ts},"client_id":"c{pid}"}}"#).as_bytes(),
                i,
            );
        }
        b.resume_at = n;
        Poll::Batch(b)
    }

    impl Source for Scripted {
        fn partitions(&self) -> Vec<String> {
            vec!["t/0".into()]
        }
        fn poll(&mut self) -> Result<Poll, SourceError> {
            Ok(self.0.pop_front().unwrap_or(Poll::End))
        }
        fn resume(&mut self, _: &BTreeMap<String, u64>) -> Result<(), SourceError> {
            Ok(())
        }
    }

    /// A pipeline with one rule on one-minute windows.
    async fn counting_pipeline(config: &Config) -> Pipeline {
        let rules = crate::rules::parse_rules(
            "- id: r\n  severity: low\n  window: {size: 1m}\n  sql: SELECT count(*) AS n FROM events\n",
            std::path::Path::new("r.yaml"),
        )
        .unwrap();
        Pipeline::build(config, rules, Vec::new()).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn assigned_partitions_hold_the_watermark_until_they_send_and_revoked_ones_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let mut config: Config = serde_yaml::from_str("source: {type: file, paths: []}").unwrap();
        config.state_dir = Some(dir.path().to_owned());
        config.alerts.stdout = false;
        let pipeline = counting_pipeline(&config).await;
        let script = Scripted(
            [
                batch(0, 0, 60),
                Poll::Added(1, "t/1".into()),
                // Partition 0 runs ten minutes ahead; 1 has sent nothing, so no window
                // may close and 1's first minute must not be late.
                batch(0, 60, 600),
                batch(1, 0, 30),
                Poll::Removed(1),
                batch(0, 660, 60),
            ]
            .into(),
        );
        let summary = pipeline
            .run(Box::new(script), RunOptions::default())
            .await
            .unwrap();
        assert_eq!((summary.good, summary.late), (750, 0));
        assert_eq!(summary.records_read, 750);
        let (cp, _, _) = crate::state::load(dir.path()).unwrap().unwrap();
        assert_eq!(cp.positions.get("t/1"), Some(&30));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_quiet_partition_stops_holding_the_watermark_after_the_idle_timeout() {
        let mut config: Config = serde_yaml::from_str("source: {type: file, paths: []}").unwrap();
        config.alerts.stdout = false;
        config.time.idle_timeout = Duration::from_millis(100);
        let pipeline = counting_pipeline(&config).await;
        let script = Scripted(
            [
                Poll::Added(1, "t/1".into()),
                batch(0, 0, 600),
                // Partition 1 stays quiet for 300 ms (each idle poll waits 100 ms) ...
                Poll::Idle,
                Poll::Idle,
                Poll::Idle,
                // ... so the windows partition 0 filled have closed, and what 1 sends
                // about the past is late.
                batch(1, 0, 30),
            ]
            .into(),
        );
        let summary = pipeline
            .run(Box::new(script), RunOptions::default())
            .await
            .unwrap();
        assert_eq!((summary.good, summary.late), (600, 30));
        assert!(summary.windows_closed >= 9, "{summary:?}");
    }
}
