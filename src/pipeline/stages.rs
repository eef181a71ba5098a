//! The records' way through: decoded batches into windows (dead letters for the bad),
//! closed windows through the rules, alert changes to the receivers.

use super::*;

use crate::rules::engine::RuleRun;

/// What the `rescore: true` rules among `runs` flag.
fn rescore_flags(engine: &Engine, runs: &[RuleRun]) -> crate::rescore::rescorer::Flags {
    let mut flags = crate::rescore::rescorer::Flags::default();
    for run in runs {
        if let (true, Ok(rows)) = (engine.rules()[run.rule].rule.def.rescore, &run.result) {
            flags.add(rows);
        }
    }
    flags
}

/// The rules of a window, set running by [`Pipeline::evaluate`].
pub(super) struct InFlight {
    rules: JoinHandle<(ClosedWindow, crate::rules::engine::Evaluated)>,
    /// The window's distributions, for the report.
    histograms: Option<Vec<crate::tables::drift::Histogram>>,
}

impl Pipeline {
    /// Decodes and ingests records given directly (rule tests).
    pub async fn feed(&mut self, raw: &RawBatch) -> Result<(), PipelineError> {
        if self.sources.is_empty() {
            self.sources.push("input".into());
            self.windows.ensure_partition(0);
        }
        if let Some(l) = &self.labels
            && !l.is_started()
        {
            l.start(self.max_record_bytes, self.time.idle_timeout)?;
        }
        let decoded = self.decoder.as_ref().expect("not running").decode(raw);
        self.ingest(raw, decoded)?;
        let closed = self.windows.close_ready();
        self.evaluate(closed).await?;
        self.settle().await
    }

    /// Closes windows up to event time `t` as if the watermark had reached it.
    pub async fn advance_to(&mut self, t: i64) -> Result<(), PipelineError> {
        let closed = self.windows.advance_to(t);
        self.evaluate(closed).await?;
        self.settle().await
    }

    pub(super) fn ingest(&mut self, raw: &RawBatch, decoded: Decoded) -> Result<(), PipelineError> {
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
        self.counters.watermark(self.windows.watermark());
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
        if let Some(l) = &self.labels {
            let mut skip: Vec<usize> = ingested.late_rows.clone();
            skip.extend(ingested.refused.iter().map(|&(row, _)| row));
            skip.sort_unstable();
            l.register(&events, &skip);
        }
        self.summary.good +=
            (events.num_rows() - ingested.late_rows.len() - ingested.refused.len()) as u64;
        self.summary.time_refused = self.windows.refused();
        Ok(())
    }

    /// Writes the labels' dead letters and refreshes their counts.
    pub(super) fn labels_dead(
        &mut self,
        dead: Vec<crate::labels::DeadLabel>,
    ) -> Result<(), PipelineError> {
        for d in dead {
            let rec = crate::decode::DeadRecord {
                index: 0,
                position: d.position,
                reason: d.reason,
                raw: d.raw,
            };
            self.dead_letter(DeadKind::Label, &d.source, &rec)?;
        }
        if let Some(l) = &self.labels {
            *self.counters.labels.lock().expect("labels lock") = l.totals();
        }
        Ok(())
    }

    pub(super) fn dead_letter(
        &mut self,
        kind: DeadKind,
        source: &str,
        rec: &crate::decode::DeadRecord,
    ) -> Result<(), PipelineError> {
        if let Some(r) = &self.report {
            let mut r = crate::report::lock(r);
            match kind {
                DeadKind::Label => r.dead_letter(&format!("label {}", rec.reason)),
                _ => r.dead_letter(&rec.reason),
            }
        }
        self.dead
            .write(kind, source, rec)
            .map_err(|source| PipelineError::Io {
                what: "cannot write dead letter".into(),
                source,
            })
    }

    /// Moves the tables on to each closed window, in order, and sets its rules
    /// running; the alerts of a window go out when the next window's tables are
    /// computed, or at [`Pipeline::settle`]. So the rule queries of one window run
    /// while the pipeline reads and computes the next, and alerts leave in window
    /// order as before.
    pub(super) async fn evaluate(
        &mut self,
        closed: Vec<ClosedWindow>,
    ) -> Result<(), PipelineError> {
        if closed.is_empty() {
            return Ok(());
        }
        for window in closed {
            self.summary.windows_closed += 1;
            self.counters.window_closed(
                &crate::time::rfc3339(window.start_ms),
                &crate::time::rfc3339(window.end_ms),
                window.stats.records,
            );
            // Labels up to the window's end first: its performance rows see them.
            if let Some(l) = self.labels.clone() {
                let dead = l.advance_to(window.end_ms)?;
                self.labels_dead(dead)?;
            }
            let tables = self.engine.tables_of(&window);
            // The report's distributions are of this window: read before the next
            // window moves the drift tables on.
            let histograms = (self.report.is_some()
                && self.engine.keeps(&tables, |n| n.ends_with("_drift")))
            .then(|| self.drift.histograms(&window));
            // The previous window's rules re-score what they flag in this window.
            self.settle().await?;
            let (engine, rescorer) = (self.engine.clone(), self.rescorer.clone());
            let rules = tokio::spawn(async move {
                // Rules that do not read `rescored` run first; what their `rescore:
                // true` rules flag is re-scored before the rules that read it run.
                let evaluated = engine
                    .run_rules(&window, tables, |runs: &[RuleRun]| {
                        rescorer.flag(&window, rescore_flags(&engine, runs));
                        rescorer.score_window(&window)
                    })
                    .await;
                if rescorer.is_active() {
                    // Flags of the rules that read `rescored` count from the next window.
                    rescorer.flag(&window, rescore_flags(&engine, &evaluated.runs));
                }
                (window, evaluated)
            });
            self.in_flight = Some(InFlight { rules, histograms });
        }
        self.dead.flush().map_err(|source| PipelineError::Io {
            what: "cannot write dead letters".into(),
            source,
        })
    }

    /// Delivers the state changes of the window in flight if its rules are done: its
    /// alerts do not wait for the next window to close.
    pub(super) async fn settle_if_done(&mut self) -> Result<(), PipelineError> {
        if self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.rules.is_finished())
        {
            self.settle().await?;
        }
        Ok(())
    }

    /// Waits for the rules of the window in flight and delivers its state changes.
    pub(super) async fn settle(&mut self) -> Result<(), PipelineError> {
        let Some(InFlight { rules, histograms }) = self.in_flight.take() else {
            return Ok(());
        };
        let (window, evaluated) = rules
            .await
            .map_err(|e| PipelineError::Internal(format!("the rules of a window: {e}")))?;
        if self.rescorer.is_active() {
            self.counters.rescored(self.rescorer.totals());
        }
        let mut notes: Vec<Notification> = Vec::new();
        let wall = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let window_end = crate::time::rfc3339(window.end_ms);
        for run in &evaluated.runs {
            let rule = &self.engine.rules()[run.rule].rule;
            self.summary.rule_runs += 1;
            let err = run.result.as_ref().err().map(String::as_str);
            self.counters.rule_run(crate::telemetry::RuleRun {
                index: run.rule,
                rule: rule.id(),
                window_end: &window_end,
                wall: &wall,
                elapsed: run.elapsed,
                error: err,
            });
            if err.is_some() {
                self.summary.rule_errors += 1;
            }
            let result = run.result.as_deref().map_err(String::as_str);
            notes.extend(
                self.book
                    .evaluate(run.rule, rule, &window, &self.sources, result),
            );
        }
        if let Some(report) = &self.report {
            // The alerts first: a client flagged in this window is followed from it.
            let mut r = crate::report::lock(report);
            r.alerts(&notes);
            let drift = &self.drift;
            r.window(
                &window,
                &evaluated.kept,
                histograms.unwrap_or_default(),
                |feature, test| drift.threshold(feature, test),
                evaluated.rules_wall.as_secs_f64() * 1e3,
            );
        }
        self.deliver(&notes)
    }

    pub(super) fn deliver(&mut self, notes: &[Notification]) -> Result<(), PipelineError> {
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
}
