//! Checkpoints: restoring a run from its state directory, and snapshots that are
//! encoded and written off the pipeline's thread.

use super::*;

impl Pipeline {
    /// The durable output files, by cursor name.
    pub(super) fn output_files(&self) -> Vec<(String, std::path::PathBuf)> {
        let mut files: Vec<_> = self.receivers.iter().flat_map(|r| r.files()).collect();
        files.extend(self.dead.files());
        files
    }

    /// Loads the state directory's checkpoint, if any; returns the source positions to
    /// resume from.
    pub(super) fn restore(&mut self) -> Result<Option<BTreeMap<String, u64>>, PipelineError> {
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
        if cp.events_schema != state::schema_fingerprint(&self.schema)
            && cp.events_schema != state::legacy_schema_fingerprint(&self.schema)
        {
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
        if let Some(r) = cp.reference {
            self.reference.restore(r);
        }
        if let Some(r) = cp.rescore {
            self.rescorer.restore(r);
        }
        if let (Some(l), Some(bytes)) = (&self.labels, cp.labels) {
            let state = crate::labels::Labels::decode(&bytes).map_err(|why| {
                PipelineError::State(StateError::Corrupt {
                    path: path.clone(),
                    why,
                })
            })?;
            l.restore(state);
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

    /// Everything a restart needs, taken between batches so it is never half updated.
    pub(super) fn snapshot(&mut self) -> Result<Checkpoint, PipelineError> {
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
            inferwatch: env!("CARGO_PKG_VERSION").to_owned(),
            written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            events_schema: state::schema_fingerprint(&self.schema),
            positions: self.positions.clone(),
            windows,
            alerts: self.book.snapshot(&rules),
            summary: self.summary.clone(),
            cursors,
            marks,
            clients: Some(self.clients.snapshot()),
            legacy_clients: None,
            reference: Some(self.reference.snapshot()),
            rescore: self.rescorer.is_active().then(|| self.rescorer.snapshot()),
            labels: match &self.labels {
                Some(l) => Some(
                    l.snapshot()
                        .map_err(|e| PipelineError::State(StateError::Encode(e)))?,
                ),
                None => None,
            },
            rows,
        })
    }

    /// Starts writing a checkpoint in the background when one is due and the previous
    /// write has finished; the pipeline goes on meanwhile.
    pub(super) async fn maybe_checkpoint(&mut self) -> Result<(), PipelineError> {
        if self.state_dir.is_none() || self.last_checkpoint.elapsed() < self.checkpoint_interval {
            return Ok(());
        }
        if self.writing.as_ref().is_some_and(|w| !w.is_finished()) {
            return Ok(());
        }
        self.finish_write().await?;
        // A checkpoint holds the alerts of every window whose tables it holds.
        self.settle().await?;
        let cp = self.timed_snapshot()?;
        self.last_checkpoint = Instant::now();
        let (dir, schema) = (
            self.state_dir.clone().expect("checked above"),
            self.schema.clone(),
        );
        self.writing = Some(tokio::task::spawn_blocking(move || {
            write_checkpoint(&dir, cp, &schema)
        }));
        Ok(())
    }

    pub(super) async fn finish_write(&mut self) -> Result<(), PipelineError> {
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
    pub(super) fn written(&mut self, info: CheckpointInfo) {
        self.summary.checkpoints.add(&info);
        // The checkpoint before the first record has no positions: nothing to commit.
        if !info.positions.is_empty() {
            *self.committable.lock().expect("committable lock") = Some(info.positions.clone());
        }
        self.summary.last_checkpoint = Some(info);
    }

    /// Writes a checkpoint now (end of run, shutdown).
    pub(super) async fn checkpoint_now(&mut self) -> Result<(), PipelineError> {
        self.settle().await?;
        self.finish_write().await?;
        let Some(dir) = self.state_dir.clone() else {
            return Ok(());
        };
        let cp = self.timed_snapshot()?;
        let schema = self.schema.clone();
        let info = tokio::task::spawn_blocking(move || write_checkpoint(&dir, cp, &schema))
            .await
            .map_err(|e| PipelineError::Internal(format!("checkpoint writer: {e}")))??;
        self.written(info);
        Ok(())
    }

    /// A snapshot, counting how long it held up the pipeline.
    pub(super) fn timed_snapshot(&mut self) -> Result<Checkpoint, PipelineError> {
        let started = Instant::now();
        let cp = self.snapshot()?;
        let pause = started.elapsed().as_secs_f64() * 1000.0;
        let stats = &mut self.summary.checkpoints;
        stats.max_pause_ms = stats.max_pause_ms.max(pause);
        Ok(cp)
    }
}

/// Encodes and writes a checkpoint. The snapshot is dropped once encoded: until then
/// every client profile the pipeline changes is copied, not changed in place.
pub(super) fn write_checkpoint(
    dir: &std::path::Path,
    mut cp: Checkpoint,
    schema: &SchemaRef,
) -> Result<CheckpointInfo, StateError> {
    let started = Instant::now();
    let bytes = state::encode(&cp, schema).map_err(StateError::Encode)?;
    let (written_at, positions) = (
        std::mem::take(&mut cp.written_at),
        std::mem::take(&mut cp.positions),
    );
    drop(cp);
    state::write(dir, &bytes)?;
    Ok(CheckpointInfo {
        written_at,
        bytes: bytes.len() as u64,
        millis: started.elapsed().as_secs_f64() * 1000.0,
        positions,
    })
}
