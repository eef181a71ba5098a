//! OTLP log export of every alert state change: one more task over the outbox file,
//! in order, a batch at a time, advancing only past what the collector acknowledged
//! (its state: `<outbox>/otlp.state.json`).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::dispatch::{
    Progress, Retry, StateFile, Task, pause, publish, queue_len, read_lines, remember,
};
use super::outbox::{OTLP, OTLP_BATCH, Shared, Spec};
use crate::alert::Notification;
use crate::otlp::{LogSink, OtlpConfig};

/// The OTLP log receiver's durable state.
#[derive(Debug, Default, Serialize, Deserialize)]
struct OtlpState {
    /// Bytes of the queue file exported (or skipped as exported before).
    consumed: u64,
    /// Ids of the changes exported, oldest first.
    applied: VecDeque<String>,
    exported: u64,
}

impl StateFile for OtlpState {}

impl Progress for OtlpState {
    fn consumed(&mut self) -> &mut u64 {
        &mut self.consumed
    }
    fn applied(&self) -> &VecDeque<String> {
        &self.applied
    }
}

/// Exports every state change, in order, a batch at a time; advances only past what
/// the collector acknowledged.
pub(super) async fn run_otlp(
    spec: &Spec,
    c: &OtlpConfig,
    shared: &Shared,
    start_len: u64,
) -> Result<(), String> {
    let sink = LogSink::new(c)?;
    let mut t = Task::<OtlpState>::open(spec, OTLP, start_len)?;
    let mut retry = Retry::new("otlp log export", OTLP, spec);
    loop {
        let draining = shared.draining.load(Ordering::SeqCst);
        let mut waiting = 0;
        if retry.due() {
            let (notes, at) = read_lines(&mut t.queue, t.st.consumed, OTLP_BATCH)?;
            let fresh: Vec<Notification> = notes
                .into_iter()
                .filter(|n| !t.applied.contains(&n.notification_id))
                .collect();
            waiting = fresh.len();
            let sent = if fresh.is_empty() {
                Ok(())
            } else {
                sink.export(&fresh).await
            };
            match sent {
                Ok(()) => {
                    if at > t.st.consumed {
                        for n in &fresh {
                            remember(&mut t.st.applied, &mut t.applied, &n.notification_id);
                        }
                        t.st.exported += fresh.len() as u64;
                        t.st.consumed = at;
                        t.st.save(&t.path)?;
                        waiting = 0;
                    }
                    retry.succeeded();
                }
                Err(e) => retry.failed(e, waiting),
            }
        }
        let len = queue_len(&t.queue)?;
        let done = draining && t.st.consumed >= len;
        publish(shared, OTLP, &retry, |s| {
            s.notifications = t.st.exported;
            s.queued = waiting;
        });
        if done {
            return Ok(());
        }
        if t.st.consumed >= len || !retry.due() {
            pause(draining).await;
        }
    }
}
