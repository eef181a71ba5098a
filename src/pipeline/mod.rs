//! The pipeline: source → decode → windows → rules → alerts → receivers.
//!
//! The source runs on its own thread and its batches are decoded on `decode.threads`
//! threads (reading and JSON decoding are the heavy part); the decoded batches reach
//! the async side in reading order. The async side owns all state: windows, rule
//! engine, alert book, dead letters. One thread owns the state, so the order of events,
//! and therefore every alert, depends only on the records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::alert::jsonl::JsonlReceiver;
use crate::alert::kafka::KafkaReceiver;
use crate::alert::stdout::StdoutReceiver;
use crate::alert::{AlertBook, Notification, Receiver, State};
use crate::config::{Config, TimeConfig};
use crate::deadletter::{DeadKind, DeadLetters};
use crate::decode::RawBatch;
use crate::decode::{BatchDecoder, Decoded};
use crate::rules::engine::Engine;
use crate::rules::{Rule, RuleError};
use crate::source::{Poll, Source, SourceError};
use crate::state::{self, Checkpoint, StateError};
use crate::telemetry::{CheckpointInfo, Counters, Summary};
use crate::window::{ClosedWindow, Windows};

mod build;
mod checkpoint;
mod reader;
mod reload;
mod stages;

use reader::{Clocked, Msg, Waiting, progress_bar, read_loop, shutdown_signal};

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

/// Positions covered by the newest written checkpoint, handed to the source thread.
type Committable = Arc<std::sync::Mutex<Option<BTreeMap<String, u64>>>>;

/// Options of one run that do not come from the config file.
#[derive(Default)]
pub struct RunOptions {
    /// Show a progress bar on the terminal.
    pub progress: bool,
    /// Stop after this long with no new records, as at the end of input.
    pub until_idle: Option<Duration>,
}

pub struct Pipeline {
    engine: Arc<Engine>,
    /// The rules of the last window whose tables were computed, running while the
    /// pipeline reads on; its alerts go out at [`Pipeline::settle`].
    in_flight: Option<stages::InFlight>,
    windows: Windows,
    book: AlertBook,
    receivers: Vec<Box<dyn Receiver>>,
    /// The notification outbox's routing, swapped on a reload.
    rerouter: Option<crate::notify::outbox::Rerouter>,
    dead: DeadLetters,
    decoder: Option<BatchDecoder>,
    /// Threads decoding records (`decode.threads`).
    decode_threads: usize,
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
    clients: Arc<crate::tables::clients::Clients>,
    drift: Arc<crate::tables::drift::Drift>,
    reference: Arc<crate::tables::reference::Reference>,
    rescorer: Arc<crate::rescore::rescorer::Rescorer>,
    /// Delayed labels (`labels:`), when configured.
    labels: Option<Arc<crate::labels::Labels>>,
    /// Longest label record read (`decode.max_record_bytes`).
    max_record_bytes: usize,
    /// OTLP metrics of `counters`, exported in the background.
    metrics: Option<crate::otlp::Metrics>,
    /// What the HTTP server shows.
    live: Arc<crate::http::Live>,
    /// Reload requests from the HTTP server (taken by `run`).
    reload_rx: Option<mpsc::Receiver<crate::http::ReloadReply>>,
    /// What a rule reload builds from.
    reloadable: Reloadable,
    /// The report, once [`Pipeline::enable_report`] asked for it.
    report: Option<Arc<std::sync::Mutex<crate::report::Report>>>,
    /// What the report is made from until then.
    report_setup: Option<(crate::report::ReportConfig, crate::report::RunInfo)>,
}

/// What reloading the rules needs besides the rule files.
struct Reloadable {
    tables: Vec<Arc<dyn crate::tables::WindowTable>>,
    engine: crate::rules::engine::EngineConfig,
    queries: Vec<PathBuf>,
    alerts: crate::alert::AlertsConfig,
    notify: crate::notify::NotifyConfig,
    /// Read again for the routing (`notify:`); none: the routing stays.
    config_path: Option<PathBuf>,
}

impl Pipeline {
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// What the HTTP server shows, kept current by the pipeline.
    pub fn live(&self) -> Arc<crate::http::Live> {
        self.live.clone()
    }

    /// Keeps the report (`replay --report`, `GET /report`): from now on each window's
    /// tables, distributions, alerts and dead letters feed it. `command` names the run
    /// in the report. Returns the report, shared with the HTTP view.
    pub fn enable_report(&mut self, command: &str) -> Arc<std::sync::Mutex<crate::report::Report>> {
        if let Some(r) = &self.report {
            return r.clone();
        }
        let (cfg, mut info) = self.report_setup.take().unwrap_or_default();
        info.command = command.to_owned();
        let report = Arc::new(std::sync::Mutex::new(crate::report::Report::new(cfg, info)));
        Arc::get_mut(&mut self.engine)
            .expect("the report is enabled before the pipeline runs")
            .keep_tables(crate::report::TABLES);
        let _ = self.live.report.set(report.clone());
        self.report = Some(report.clone());
        report
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
        if let Some(l) = &self.labels {
            l.start(self.max_record_bytes, self.time.idle_timeout)?;
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
        let threads = self.decode_threads;
        let (tx, mut rx) = mpsc::channel::<Clocked>(4);
        let committable = self.committable.clone();
        let reader = std::thread::Builder::new()
            .name("inferwatch-source".into())
            .spawn(move || {
                read_loop(source.as_mut(), &decoder, threads, &tx, &committable);
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
                    self.settle().await?;
                }
                Msg::Idle => {
                    waiting.over();
                    self.settle().await?;
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
            self.settle_if_done().await?;
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
            self.settle().await?;
            if let Some(l) = self.labels.clone() {
                // Labels of the last minutes: joined and counted (no window reads them).
                let dead = l.drain()?;
                self.labels_dead(dead)?;
            }
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
            self.counters.watermark(self.windows.watermark());
            let closed = self.windows.close_ready();
            self.evaluate(closed).await?;
        }
        Ok(())
    }

    /// Closes every remaining window and returns the summary.
    pub async fn finish_input(&mut self) -> Result<(), PipelineError> {
        let closed = self.windows.close_all();
        self.evaluate(closed).await?;
        self.settle().await
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
        self.summary.labels = self.labels.as_ref().map(|l| l.totals());
        self.summary.peak_rss_kib = peak_rss_kib();
        self.summary.clone()
    }

    pub fn summary(&self) -> &Summary {
        &self.summary
    }
}

/// `VmHWM` of /proc/self/status: the process's peak resident set size.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
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

    /// Plays one batch, then has nothing new until `end` is set.
    struct QuietAfter {
        first: Option<Poll>,
        end: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Source for QuietAfter {
        fn partitions(&self) -> Vec<String> {
            vec!["t/0".into()]
        }
        fn poll(&mut self) -> Result<Poll, SourceError> {
            if let Some(b) = self.first.take() {
                return Ok(b);
            }
            Ok(if self.end.load(std::sync::atomic::Ordering::Relaxed) {
                Poll::End
            } else {
                Poll::Idle
            })
        }
        fn resume(&mut self, _: &BTreeMap<String, u64>) -> Result<(), SourceError> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_windows_alerts_go_out_while_the_input_is_quiet() {
        let dir = tempfile::tempdir().unwrap();
        let alerts = dir.path().join("alerts.jsonl");
        let mut config: Config = serde_yaml::from_str("source: {type: file, paths: []}").unwrap();
        config.alerts.stdout = false;
        config.alerts.jsonl = Some(alerts.clone());
        let pipeline = counting_pipeline(&config).await;
        // Two minutes of records: the first minute's window closes, the second stays
        // open, and no other window closes while the input is quiet.
        let end = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let source = QuietAfter {
            first: Some(batch(0, 0, 120)),
            end: end.clone(),
        };
        let run = tokio::spawn(pipeline.run(Box::new(source), RunOptions::default()));
        let started = Instant::now();
        let mut seen = String::new();
        while seen.is_empty() && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(50)).await;
            seen = std::fs::read_to_string(&alerts).unwrap_or_default();
        }
        let quiet = !run.is_finished();
        end.store(true, std::sync::atomic::Ordering::Relaxed);
        let summary = run.await.unwrap().unwrap();
        assert!(quiet, "the run ended before the alert was seen");
        let first: serde_json::Value =
            serde_json::from_str(seen.lines().next().expect("an alert while quiet")).unwrap();
        assert_eq!(first["rule_id"], "r");
        assert_eq!(first["window_end"], "2026-11-21T10:01:00.000Z");
        assert_eq!(summary.windows_closed, 2);
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
