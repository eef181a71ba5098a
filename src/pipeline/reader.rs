//! The source thread: reads and decodes batches and hands them to the async side with
//! its own clock; the progress bar and the shutdown signal.

use super::*;

/// How long the source has been waiting for its input; said once at info level, and
/// as a warning when it lasts (a short wait is joining a group, a long one an outage).
#[derive(Default)]
pub(super) struct Waiting {
    since: Option<Instant>,
    warned: bool,
}

impl Waiting {
    const WARN_AFTER: Duration = Duration::from_secs(5);

    pub(super) fn still(&mut self, why: &str) {
        let since = *self.since.get_or_insert_with(|| {
            tracing::info!("waiting for the input: {why}");
            Instant::now()
        });
        if !self.warned && since.elapsed() >= Self::WARN_AFTER {
            tracing::warn!("waiting for the input: {why}");
            self.warned = true;
        }
    }

    pub(super) fn over(&mut self) {
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

/// What the source thread sends, with its clock: the CPU time it has spent reading and
/// decoding, plus the time it waited on an input that had nothing — not the time it
/// waited for the pipeline to take a message, nor the time the input was unreachable,
/// nor the time the machine gave its CPU to others. Idle partitions are judged on this
/// clock, so a pipeline that falls behind, a broker outage or a starved CPU never makes
/// a partition look idle.
pub(super) type Clocked = (Duration, Msg);

pub(super) enum Msg {
    Batch(RawBatch, Decoded, u64),
    Idle,
    Waiting(String),
    Added(usize, String),
    Removed(usize),
    PartitionDone(usize),
    End,
    Failed(SourceError),
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub(super) async fn shutdown_signal() {
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

/// Reads the source and decodes its batches on `threads` threads, handing them to the
/// pipeline in the order they were read: decoding is a function of the raw batch alone,
/// so the pipeline sees the same messages whatever the number of threads.
pub(super) fn read_loop(
    source: &mut dyn Source,
    decoder: &BatchDecoder,
    threads: usize,
    tx: &mpsc::Sender<Clocked>,
    committable: &Committable,
) {
    if threads <= 1 {
        return read_serial(source, decoder, tx, committable);
    }
    // Each batch is handed to the first free decoder (the reader waits for one), with a
    // slot for its result; the forwarder waits for the results in reading order. At most
    // `threads` batches are being decoded or waiting for the forwarder.
    let (jobs_tx, jobs_rx) = std::sync::mpsc::sync_channel::<Job>(0);
    let jobs_rx = std::sync::Mutex::new(jobs_rx);
    let (order_tx, order_rx) = std::sync::mpsc::sync_channel::<Pending>(threads);
    std::thread::scope(|s| {
        for i in 0..threads {
            let jobs = &jobs_rx;
            std::thread::Builder::new()
                .name(format!("inferwatch-decode-{i}"))
                .spawn_scoped(s, move || decode_jobs(jobs, decoder))
                .expect("cannot start a decoding thread");
        }
        std::thread::Builder::new()
            .name("inferwatch-forward".into())
            .spawn_scoped(s, move || forward(order_rx, tx))
            .expect("cannot start the forwarding thread");
        // Owned here: the decoders and the forwarder stop when the reading does.
        let (jobs_tx, order_tx) = (jobs_tx, order_tx);
        let mut reading = Reading::default();
        loop {
            take_committed(source, committable);
            let polled = reading.poll(source);
            let clock = reading.clock;
            let pending = match polled {
                Polled::Batch(raw, bytes) => {
                    let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
                    if jobs_tx.send((raw, done_tx)).is_err() {
                        return;
                    }
                    Pending::Decoding(clock, bytes, done_rx)
                }
                Polled::Other(msg) => Pending::Ready(clock, msg),
            };
            let last = matches!(&pending, Pending::Ready(_, Msg::End | Msg::Failed(_)));
            if order_tx.send(pending).is_err() || last {
                return;
            }
        }
    });
}

/// A batch to decode and where its result goes.
type Job = (RawBatch, std::sync::mpsc::SyncSender<Decoding>);

/// A decoded batch, with the CPU time its decoding took.
type Decoding = (RawBatch, Decoded, Duration);

/// A message in reading order: ready, or waiting for its batch's decoder.
enum Pending {
    Ready(Duration, Msg),
    Decoding(Duration, u64, std::sync::mpsc::Receiver<Decoding>),
}

fn decode_jobs(jobs: &std::sync::Mutex<std::sync::mpsc::Receiver<Job>>, decoder: &BatchDecoder) {
    loop {
        let job = jobs.lock().expect("decoding jobs lock").recv();
        let Ok((raw, done)) = job else { return };
        let cpu = cpu_time::ThreadTime::now();
        let decoded = decoder.decode(&raw);
        if done.send((raw, decoded, cpu.elapsed())).is_err() {
            return;
        }
    }
}

/// Hands the messages to the pipeline in reading order. The clock is the reader's
/// plus the CPU time of every decoding handed on so far.
fn forward(order: std::sync::mpsc::Receiver<Pending>, tx: &mpsc::Sender<Clocked>) {
    let mut decoding = Duration::ZERO;
    for pending in order {
        let (clock, msg) = match pending {
            Pending::Ready(clock, msg) => (clock, msg),
            Pending::Decoding(clock, bytes, done) => {
                // A decoder that died (a bug) ends the stream here; the source
                // thread's join reports it.
                let Ok((raw, decoded, cpu)) = done.recv() else {
                    return;
                };
                decoding += cpu;
                (clock, Msg::Batch(raw, decoded, bytes))
            }
        };
        if tx.blocking_send((clock + decoding, msg)).is_err() {
            return;
        }
    }
}

fn read_serial(
    source: &mut dyn Source,
    decoder: &BatchDecoder,
    tx: &mpsc::Sender<Clocked>,
    committable: &Committable,
) {
    let mut reading = Reading::default();
    loop {
        take_committed(source, committable);
        let msg = match reading.poll(source) {
            Polled::Batch(raw, bytes) => {
                let cpu = cpu_time::ThreadTime::now();
                let decoded = decoder.decode(&raw);
                reading.clock += cpu.elapsed();
                Msg::Batch(raw, decoded, bytes)
            }
            Polled::Other(msg) => msg,
        };
        let last = matches!(msg, Msg::End | Msg::Failed(_));
        if tx.blocking_send((reading.clock, msg)).is_err() || last {
            return;
        }
    }
}

/// What one poll of the source gave.
enum Polled {
    Batch(RawBatch, u64),
    Other(Msg),
}

/// The reading side's clock (see [`Clocked`]).
#[derive(Default)]
struct Reading {
    clock: Duration,
}

/// Tells the source which positions the newest checkpoint covers.
fn take_committed(source: &mut dyn Source, committable: &Committable) {
    if let Some(positions) = committable.lock().expect("committable lock").take() {
        source.checkpointed(&positions);
    }
}

impl Reading {
    /// Polls the source once, advancing the clock.
    fn poll(&mut self, source: &mut dyn Source) -> Polled {
        let started = Instant::now();
        let cpu = cpu_time::ThreadTime::now();
        let mut counts = true;
        let mut waited = false;
        let polled = match source.poll() {
            Ok(Poll::Batch(raw)) => {
                let bytes = source.bytes_read();
                Polled::Batch(raw, bytes)
            }
            Ok(Poll::Idle) => {
                std::thread::sleep(Duration::from_millis(100));
                waited = true;
                Polled::Other(Msg::Idle)
            }
            Ok(Poll::Waiting(why)) => {
                std::thread::sleep(Duration::from_millis(100));
                counts = false;
                Polled::Other(Msg::Waiting(why))
            }
            Ok(Poll::Added(pid, name)) => Polled::Other(Msg::Added(pid, name)),
            Ok(Poll::Removed(pid)) => Polled::Other(Msg::Removed(pid)),
            Ok(Poll::PartitionDone(pid)) => Polled::Other(Msg::PartitionDone(pid)),
            Ok(Poll::End) => Polled::Other(Msg::End),
            Err(e) => Polled::Other(Msg::Failed(e)),
        };
        if counts {
            self.clock += if waited {
                started.elapsed()
            } else {
                cpu.elapsed()
            };
        }
        polled
    }
}

pub(super) fn progress_bar(enabled: bool, total: Option<u64>) -> Option<indicatif::ProgressBar> {
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
