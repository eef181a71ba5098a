//! The records' way through: decoded batches into windows (dead letters for the bad),
//! closed windows through the rules, alert changes to the receivers.

use super::*;

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
        self.evaluate(closed).await
    }

    /// Closes windows up to event time `t` as if the watermark had reached it.
    pub async fn advance_to(&mut self, t: i64) -> Result<(), PipelineError> {
        let closed = self.windows.advance_to(t);
        self.evaluate(closed).await
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

    /// Runs the rules of each closed window and delivers the state changes.
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
            // What the report keeps of the window, handed over with its alerts below.
            let kept = self.report.is_some().then(|| {
                let rules_ms = self.engine.rules_wall().as_secs_f64() * 1e3;
                let tables = self.engine.take_kept();
                let histograms = if tables.iter().any(|(n, _)| n.ends_with("_drift")) {
                    self.drift.histograms(&window)
                } else {
                    Vec::new()
                };
                (tables, histograms, rules_ms)
            });
            let mut notes: Vec<Notification> = Vec::new();
            let wall = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let window_end = crate::time::rfc3339(window.end_ms);
            for run in runs {
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
            if let (Some(report), Some((tables, histograms, rules_ms))) = (&self.report, kept) {
                // The alerts first: a client flagged in this window is followed from it.
                let mut r = crate::report::lock(report);
                r.alerts(&notes);
                let drift = &self.drift;
                r.window(
                    &window,
                    &tables,
                    histograms,
                    |feature, test| drift.threshold(feature, test),
                    rules_ms,
                );
            }
            self.deliver(&notes)?;
        }
        self.dead.flush().map_err(|source| PipelineError::Io {
            what: "cannot write dead letters".into(),
            source,
        })
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
