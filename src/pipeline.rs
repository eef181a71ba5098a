//! The pipeline: source → decode → windows → rules → alerts → receivers.
//!
//! The source and the decoder run on their own thread (reading and JSON decoding are
//! the heavy part), handing decoded batches to the async side, which owns all state:
//! windows, rule engine, alert book, dead letters. One thread owns the state, so the
//! order of events, and therefore every alert, depends only on the records.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::alert::jsonl::JsonlReceiver;
use crate::alert::stdout::StdoutReceiver;
use crate::alert::{AlertBook, Notification, Receiver, State};
use crate::config::{Config, TimeConfig};
use crate::deadletter::{DeadKind, DeadLetters};
use crate::decode::{BatchDecoder, Decoded};
use crate::rules::engine::{Engine, EventsTable, PipelineStatsTable, WindowTable};
use crate::rules::{Rule, RuleError};
use crate::source::{Poll, RawBatch, Source, SourceError};
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
}

impl PipelineError {
    /// Errors the user fixes in config, rules or command line (exit code 2).
    pub fn is_usage(&self) -> bool {
        match self {
            PipelineError::Rules(_) | PipelineError::Config(_) => true,
            PipelineError::Source(e) => e.is_usage(),
            PipelineError::Io { .. } => false,
        }
    }
}

/// Counts for the end-of-run summary.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub records_read: u64,
    pub good: u64,
    pub bad: u64,
    pub late: u64,
    pub windows_closed: u64,
    pub rule_runs: u64,
    pub rule_errors: u64,
    /// Per rule id: notifications per state.
    pub alerts: BTreeMap<String, [u64; 3]>,
    pub alerts_active_at_end: usize,
    pub elapsed: Duration,
    /// Peak resident memory of the process (Linux), in KiB.
    pub peak_rss_kib: Option<u64>,
}

impl Summary {
    pub fn records_per_second(&self) -> f64 {
        self.records_read as f64 / self.elapsed.as_secs_f64().max(1e-9)
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
}

enum Msg {
    Batch(RawBatch, Decoded, u64),
    Idle,
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
        let tables: Vec<Arc<dyn WindowTable>> = vec![
            Arc::new(EventsTable::new(decoder.events_schema())),
            Arc::new(PipelineStatsTable::default()),
        ];
        let specs: Vec<_> = rules.iter().map(|r| r.spec).collect();
        let engine = Engine::new(rules, tables, &config.engine).await?;
        let windows = Windows::new(
            &specs,
            0,
            config.time.allowed_lateness,
            config.time.max_empty_windows,
        );
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
        let dead = DeadLetters::open(config.dead_letter.path.as_deref()).map_err(|source| {
            PipelineError::Io {
                what: "cannot open dead-letter file".into(),
                source,
            }
        })?;
        Ok(Self {
            book: AlertBook::new(engine.rules().len(), &config.alerts),
            engine,
            windows,
            receivers,
            dead,
            decoder: Some(decoder),
            sources: Vec::new(),
            time: config.time.clone(),
            counters: Arc::new(Counters::default()),
            summary: Summary::default(),
        })
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Runs the source to its end (or until idle), then closes every window.
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
        let progress = progress_bar(opts.progress, source.total_bytes());
        let decoder = self.decoder.take().expect("a pipeline runs once");
        let (tx, mut rx) = mpsc::channel::<Msg>(4);
        let reader = std::thread::Builder::new()
            .name("driftwatch-source".into())
            .spawn(move || read_loop(source.as_mut(), &decoder, &tx))
            .map_err(|source| PipelineError::Io {
                what: "cannot start the source thread".into(),
                source,
            })?;
        let mut last_data = Instant::now();
        let mut idle_marked = false;
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Batch(raw, decoded, bytes) => {
                    last_data = Instant::now();
                    idle_marked = false;
                    if let Some(p) = &progress {
                        p.set_position(bytes);
                    }
                    self.ingest(&raw, decoded)?;
                    let closed = self.windows.close_ready();
                    self.evaluate(closed).await?;
                }
                Msg::Idle => {
                    let quiet = last_data.elapsed();
                    if opts.until_idle.is_some_and(|d| quiet >= d) {
                        tracing::info!(
                            seconds = quiet.as_secs(),
                            "no new records: stopping (--until-idle)"
                        );
                        break;
                    }
                    if !idle_marked && quiet >= self.time.idle_timeout {
                        idle_marked = true;
                        for pid in 0..self.sources.len() {
                            self.windows.set_idle(pid, true);
                        }
                        let closed = self.windows.close_ready();
                        self.evaluate(closed).await?;
                    }
                }
                Msg::PartitionDone(pid) => {
                    self.windows.partition_done(pid);
                    let closed = self.windows.close_ready();
                    self.evaluate(closed).await?;
                }
                Msg::End => break,
                Msg::Failed(e) => return Err(e.into()),
            }
        }
        drop(rx);
        let _ = reader.join();
        let closed = self.windows.close_all();
        self.evaluate(closed).await?;
        if let Some(p) = progress {
            p.finish_and_clear();
        }
        self.summary.elapsed = started.elapsed();
        Ok(self.finish())
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
        let read = raw.records_read() as u64;
        self.counters.records_read(read);
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
        self.summary.good += (events.num_rows() - ingested.late_rows.len()) as u64;
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
            let runs = self.engine.evaluate(&window).await;
            let mut notes: Vec<Notification> = Vec::new();
            for run in runs {
                let rule = &self.engine.rules()[run.rule].rule;
                self.summary.rule_runs += 1;
                let err = run.result.as_ref().err().map(String::as_str);
                self.counters.rule_run(rule.id(), err);
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
            self.counters.notification();
            let counts = self.summary.alerts.entry(n.rule_id.clone()).or_default();
            counts[match n.state {
                State::Pending => 0,
                State::Firing => 1,
                State::Resolved => 2,
            }] += 1;
        }
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
        self.summary.alerts_active_at_end = self.book.active_count();
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

fn read_loop(source: &mut dyn Source, decoder: &BatchDecoder, tx: &mpsc::Sender<Msg>) {
    loop {
        let msg = match source.poll() {
            Ok(Poll::Batch(raw)) => {
                let decoded = decoder.decode(&raw);
                Msg::Batch(raw, decoded, source.bytes_read())
            }
            Ok(Poll::Idle) => {
                std::thread::sleep(Duration::from_millis(100));
                Msg::Idle
            }
            Ok(Poll::PartitionDone(pid)) => Msg::PartitionDone(pid),
            Ok(Poll::End) => Msg::End,
            Err(e) => Msg::Failed(e),
        };
        let last = matches!(msg, Msg::End | Msg::Failed(_));
        if tx.blocking_send(msg).is_err() || last {
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
