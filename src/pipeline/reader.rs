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

pub(super) fn read_loop(
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
        let cpu = cpu_time::ThreadTime::now();
        let mut counts = true;
        let mut waited = false;
        let msg = match source.poll() {
            Ok(Poll::Batch(raw)) => {
                let decoded = decoder.decode(&raw);
                Msg::Batch(raw, decoded, source.bytes_read())
            }
            Ok(Poll::Idle) => {
                std::thread::sleep(Duration::from_millis(100));
                waited = true;
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
            clock += if waited {
                started.elapsed()
            } else {
                cpu.elapsed()
            };
        }
        let last = matches!(msg, Msg::End | Msg::Failed(_));
        if tx.blocking_send((clock, msg)).is_err() || last {
            return;
        }
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
