//! Event-time windows: watermarks per partition, lateness, and tumbling/hopping windows
//! that close when the watermark passes their end plus grace.
//!
//! Rows are stored once, in panes of `gcd` of every window size and slide in use, so a
//! hopping window is a list of panes and no row is copied per window. A pane is dropped
//! when every window spec has closed all windows that contain it: memory follows the open
//! windows, never the length of the stream.
//!
//! Watermark of a partition = max event time seen there − `allowed_lateness`; the
//! pipeline's watermark is the minimum over partitions that are neither done nor idle (a
//! partition that has sent nothing yet holds it at the start). A record is late when its
//! event time is below its partition's watermark, or below the pipeline's, on arrival.
//!
//! Before a record counts at all, the event-time guard (`guard`) decides whether its
//! time is plausible: one record cannot move a partition's clock.
//!
//! Not for SQL (see `rules`): this module hands out [`ClosedWindow`]s and forgets them.

pub mod guard;

use std::collections::BTreeMap;
use std::time::Duration;

use datafusion::arrow::array::{AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::TimestampMillisecondType;
use serde::{Deserialize, Serialize};

use crate::decode::PartitionId;
use guard::{GuardConfig, GuardState, Refusal, Verdict};

/// Size, slide and grace of a window, in milliseconds of event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WindowSpec {
    pub size_ms: i64,
    pub slide_ms: i64,
    pub grace_ms: i64,
}

/// `window:` of a rule. `slide` defaults to `size` (tumbling). Serialized only for
/// the rule's fingerprint (see `crate::rules::Rule::fingerprint`).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    #[serde(with = "humantime_serde")]
    pub size: Duration,
    #[serde(with = "humantime_serde", default)]
    pub slide: Option<Duration>,
    #[serde(with = "humantime_serde", default)]
    pub grace: Option<Duration>,
}

impl WindowConfig {
    pub fn spec(&self) -> Result<WindowSpec, String> {
        let size_ms = self.size.as_millis() as i64;
        let slide_ms = self.slide.map_or(size_ms, |s| s.as_millis() as i64);
        let grace_ms = self.grace.map_or(0, |g| g.as_millis() as i64);
        if size_ms <= 0 || slide_ms <= 0 {
            return Err("window size and slide must be at least 1ms".into());
        }
        if slide_ms > size_ms {
            return Err(format!(
                "window slide ({}) is longer than its size ({}): records between windows would be skipped",
                humantime::format_duration(Duration::from_millis(slide_ms as u64)),
                humantime::format_duration(self.size)
            ));
        }
        Ok(WindowSpec {
            size_ms,
            slide_ms,
            grace_ms,
        })
    }
}

/// A window whose rows are final, handed to the rule engine.
#[derive(Debug, Clone)]
pub struct ClosedWindow {
    pub spec: WindowSpec,
    pub start_ms: i64,
    pub end_ms: i64,
    pub batches: Vec<RecordBatch>,
    pub stats: WindowStats,
    /// Per partition, the lowest and highest position of the rows in this window.
    pub ranges: BTreeMap<PartitionId, (u64, u64)>,
}

/// Counts of what arrived during a window (bad and late records are attributed to the
/// window of their partition's newest event time when they arrived).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowStats {
    pub records: u64,
    pub bad: u64,
    pub late: u64,
}

#[derive(Debug, Default)]
struct Pane {
    batches: Vec<RecordBatch>,
    stats: WindowStats,
    ranges: BTreeMap<PartitionId, (u64, u64)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PartitionState {
    max_ts: Option<i64>,
    done: bool,
    idle: bool,
    /// Bad records seen before the partition's first event time.
    unplaced_bad: u64,
    /// The event-time guard's runs of far-away records.
    #[serde(default)]
    guard: GuardState,
}

#[derive(Debug)]
struct SpecState {
    spec: WindowSpec,
    /// Start of the next window to close; None until the first one closes.
    next_start: Option<i64>,
}

/// Everything of [`Windows`] but the rows, as stored in a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WindowsState {
    pane_ms: i64,
    specs: Vec<(WindowSpec, Option<i64>)>,
    partitions: Vec<(String, PartitionState)>,
    panes: Vec<PaneState>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PaneState {
    index: i64,
    batches: usize,
    stats: WindowStats,
    ranges: Vec<(String, u64, u64)>,
}

/// What `ingest` did with a batch.
#[derive(Debug, Default)]
pub struct Ingested {
    /// Row indices (in the ingested batch) of late records.
    pub late_rows: Vec<usize>,
    /// Row indices of records the event-time guard refused, with the reason.
    pub refused: Vec<(usize, Refusal)>,
}

pub struct Windows {
    pane_ms: i64,
    lateness_ms: i64,
    max_empty_windows: u32,
    guard: GuardConfig,
    specs: Vec<SpecState>,
    panes: BTreeMap<i64, Pane>,
    partitions: Vec<PartitionState>,
    /// Restored state of partitions not yet present (Kafka assigns them after start).
    parked: std::collections::HashMap<String, PartitionState>,
}

/// Start of the first window of `spec` that contains time `t` (saturating at the ends
/// of time, where event times from traffic may lie).
fn first_window_containing(t: i64, spec: WindowSpec) -> i64 {
    t.saturating_sub(spec.size_ms)
        .div_euclid(spec.slide_ms)
        .saturating_mul(spec.slide_ms)
        .saturating_add(spec.slide_ms)
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Windows {
    pub fn new(
        specs: &[WindowSpec],
        partitions: usize,
        allowed_lateness: Duration,
        max_empty_windows: u32,
    ) -> Self {
        let mut uniq: Vec<WindowSpec> = specs.to_vec();
        uniq.sort();
        uniq.dedup();
        let pane_ms = uniq
            .iter()
            .fold(0, |g, s| gcd(gcd(g, s.size_ms), s.slide_ms))
            .max(1);
        Self {
            pane_ms,
            lateness_ms: i64::try_from(allowed_lateness.as_millis()).unwrap_or(i64::MAX),
            max_empty_windows: max_empty_windows.max(1),
            // Off until the pipeline sets the configured guard.
            guard: GuardConfig {
                min_ms: i64::MIN,
                max_ms: i64::MAX,
                max_ahead_ms: i64::MAX,
                confirmations: 1,
            },
            specs: uniq
                .into_iter()
                .map(|spec| SpecState {
                    spec,
                    next_start: None,
                })
                .collect(),
            panes: BTreeMap::new(),
            partitions: vec![PartitionState::default(); partitions],
            parked: Default::default(),
        }
    }

    /// Sets the event-time guard (`time:` in the config).
    pub fn set_guard(&mut self, guard: GuardConfig) {
        self.guard = guard;
    }

    pub fn guard(&self) -> &GuardConfig {
        &self.guard
    }

    /// Records refused by the guard so far, over every partition: (out of range, ahead).
    pub fn refused(&self) -> [u64; 2] {
        self.partitions
            .iter()
            .chain(self.parked.values())
            .fold([0, 0], |a, p| {
                [a[0] + p.guard.refused[0], a[1] + p.guard.refused[1]]
            })
    }

    pub fn specs(&self) -> Vec<WindowSpec> {
        self.specs.iter().map(|s| s.spec).collect()
    }

    /// Partitions can appear later (files added in follow mode, Kafka assignments).
    pub fn ensure_partition(&mut self, pid: PartitionId) {
        if pid >= self.partitions.len() {
            self.partitions.resize(pid + 1, PartitionState::default());
        }
    }

    /// A partition that joined after the start; takes over the state a checkpoint
    /// saved under its name.
    pub fn add_partition(&mut self, pid: PartitionId, name: &str) {
        self.ensure_partition(pid);
        self.partitions[pid] = self.parked.remove(name).unwrap_or_default();
    }

    /// The pipeline's watermark: None while some active partition has sent nothing.
    pub fn watermark(&self) -> Option<i64> {
        let mut wm: Option<i64> = None;
        let mut any = false;
        for p in self.partitions.iter().filter(|p| !p.done && !p.idle) {
            any = true;
            let w = p.max_ts?.saturating_sub(self.lateness_ms);
            wm = Some(wm.map_or(w, |m: i64| m.min(w)));
        }
        if any {
            wm
        } else {
            // Every partition is done or idle: the newest time anyone saw leads.
            self.partitions
                .iter()
                .filter_map(|p| p.max_ts)
                .max()
                .map(|t| t.saturating_sub(self.lateness_ms))
        }
    }

    pub fn partition_done(&mut self, pid: PartitionId) {
        self.ensure_partition(pid);
        self.partitions[pid].done = true;
    }

    /// Idle, or done: either way it does not hold the watermark.
    pub fn is_idle(&self, pid: PartitionId) -> bool {
        self.partitions.get(pid).is_none_or(|p| p.idle || p.done)
    }

    pub fn set_idle(&mut self, pid: PartitionId, idle: bool) {
        self.ensure_partition(pid);
        self.partitions[pid].idle = idle;
    }

    /// Adds decoded rows of one partition. `positions[i]` is row i's source position;
    /// `bad` are the positions of the batch's undecodable records (sorted), counted in
    /// the pane of the newest event time seen before them.
    pub fn ingest(
        &mut self,
        pid: PartitionId,
        batch: &RecordBatch,
        positions: &[u64],
        bad: &[u64],
    ) -> Ingested {
        self.ensure_partition(pid);
        let ts = batch.column(0).as_primitive::<TimestampMillisecondType>();
        let floor = self.watermark().unwrap_or(i64::MIN);
        let mut max_ts = self.partitions[pid].max_ts;
        // Without a clock of its own, a partition is judged against the newest time of
        // the others; before any window closed, the clock may still go back.
        let reference = self.partitions.iter().filter_map(|p| p.max_ts).max();
        let may_go_back = self.specs.iter().all(|s| s.next_start.is_none());
        let guard_cfg = self.guard;
        let mut guard = std::mem::take(&mut self.partitions[pid].guard);
        let mut refused = Vec::new();
        let mut jumped_back = false;
        let pane_ms = self.pane_ms;
        let lateness_ms = self.lateness_ms;
        let mut late = Vec::new();
        let mut panes: Vec<i64> = Vec::with_capacity(ts.len());
        // (pane or None before the partition's first event time, bad, late)
        let mut counts: Vec<(Option<i64>, u64, u64)> = Vec::new();
        let mut count = |at: Option<i64>, bad: u64, late: u64| {
            let pane = at.map(|t| t.div_euclid(pane_ms));
            match counts.last_mut() {
                Some(c) if c.0 == pane => {
                    c.1 += bad;
                    c.2 += late;
                }
                _ => counts.push((pane, bad, late)),
            }
        };
        let mut next_bad = 0;
        for (i, &t) in ts.values().iter().enumerate() {
            while next_bad < bad.len() && bad[next_bad] < positions[i] {
                count(max_ts, 1, 0);
                next_bad += 1;
            }
            match guard.judge(&guard_cfg, t, max_ts, reference, may_go_back) {
                Verdict::Admit => {}
                Verdict::Jump(to) => {
                    jumped_back |= max_ts.is_some_and(|m| to < m);
                    max_ts = Some(to);
                }
                Verdict::Refuse(why) => {
                    refused.push((i, why));
                    panes.push(i64::MIN);
                    count(max_ts, 1, 0);
                    continue;
                }
            }
            let partition_wm = max_ts.map_or(i64::MIN, |m| m.saturating_sub(lateness_ms));
            // A jump back (before any window closed) lowers the partition's clock; the
            // floor taken before it would still hold the outlier's time.
            let floor = if jumped_back { i64::MIN } else { floor };
            if t < partition_wm.max(floor) {
                late.push(i);
                panes.push(i64::MIN);
                count(max_ts, 0, 1);
            } else {
                max_ts = Some(max_ts.map_or(t, |m| m.max(t)));
                panes.push(t.div_euclid(pane_ms));
            }
        }
        count(max_ts, (bad.len() - next_bad) as u64, 0);
        let state = &mut self.partitions[pid];
        state.max_ts = max_ts;
        state.idle = false;
        state.guard = guard;
        let unplaced = std::mem::take(&mut state.unplaced_bad);
        if unplaced > 0 {
            counts.push((None, unplaced, 0));
        }
        self.place(pid, batch, &panes, positions);
        let bound = self.eviction_bound().unwrap_or(i64::MIN);
        let fallback = max_ts.or((floor > i64::MIN).then_some(floor));
        for (pane, bad, late) in counts {
            let pane = match (pane, fallback) {
                (Some(p), _) => p,
                (None, Some(t)) => t.div_euclid(self.pane_ms),
                (None, None) => {
                    self.partitions[pid].unplaced_bad += bad;
                    continue;
                }
            };
            let stats = &mut self.panes.entry(pane.max(bound)).or_default().stats;
            stats.bad += bad;
            stats.late += late;
        }
        Ingested {
            late_rows: late,
            refused,
        }
    }

    /// Counts records of `pid` that could not be decoded.
    pub fn count_bad(&mut self, pid: PartitionId, n: u64) {
        self.ensure_partition(pid);
        if self.partitions[pid].max_ts.is_none() {
            self.partitions[pid].unplaced_bad += n;
            return;
        }
        let pane = self.arrival_pane(pid);
        self.panes.entry(pane).or_default().stats.bad += n;
    }

    /// The pane of the partition's newest event time, or the oldest open one.
    fn arrival_pane(&self, pid: PartitionId) -> i64 {
        let t = self.partitions[pid].max_ts.unwrap_or(i64::MIN);
        (t.div_euclid(self.pane_ms)).max(self.eviction_bound().unwrap_or(i64::MIN))
    }

    fn place(&mut self, pid: PartitionId, batch: &RecordBatch, panes: &[i64], positions: &[u64]) {
        let first = panes.iter().copied().find(|&p| p != i64::MIN);
        let Some(first) = first else { return };
        if panes.iter().all(|&p| p == first) {
            self.add_to_pane(first, pid, batch.clone(), positions.iter().copied());
            return;
        }
        let mut distinct: Vec<i64> = panes.iter().copied().filter(|&p| p != i64::MIN).collect();
        distinct.sort_unstable();
        distinct.dedup();
        for pane in distinct {
            let mask = BooleanArray::from(panes.iter().map(|&p| p == pane).collect::<Vec<_>>());
            let part = filter_record_batch(batch, &mask).expect("mask has one value per row");
            let pos = panes
                .iter()
                .zip(positions)
                .filter(|(p, _)| **p == pane)
                .map(|(_, &pos)| pos);
            self.add_to_pane(pane, pid, part, pos);
        }
    }

    fn add_to_pane(
        &mut self,
        pane: i64,
        pid: PartitionId,
        batch: RecordBatch,
        positions: impl Iterator<Item = u64>,
    ) {
        let p = self.panes.entry(pane).or_default();
        p.stats.records += batch.num_rows() as u64;
        p.batches.push(batch);
        let (lo, hi) = positions.fold((u64::MAX, 0), |(lo, hi), x| (lo.min(x), hi.max(x)));
        let r = p.ranges.entry(pid).or_insert((lo, hi));
        *r = (r.0.min(lo), r.1.max(hi));
    }

    /// Panes before this index are needed by no open window.
    fn eviction_bound(&self) -> Option<i64> {
        self.specs
            .iter()
            .map(|s| s.next_start.map(|n| n.div_euclid(self.pane_ms)))
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min()
    }

    /// Closes every window whose end + grace is at or before the watermark.
    pub fn close_ready(&mut self) -> Vec<ClosedWindow> {
        match self.watermark() {
            Some(wm) => self.close_until(wm, false),
            None => Vec::new(),
        }
    }

    /// End of input: closes every window that holds data.
    pub fn close_all(&mut self) -> Vec<ClosedWindow> {
        self.close_until(i64::MAX, true)
    }

    /// Closes windows up to event time `t` as if the watermark were there (rule tests
    /// evaluate empty windows up to their last evaluation time).
    pub fn advance_to(&mut self, t: i64) -> Vec<ClosedWindow> {
        self.close_until(t, false)
    }

    fn close_until(&mut self, wm: i64, only_data: bool) -> Vec<ClosedWindow> {
        let mut closed = Vec::new();
        for si in 0..self.specs.len() {
            self.close_spec(si, wm, only_data, &mut closed);
        }
        if let Some(bound) = self.eviction_bound() {
            self.panes = self.panes.split_off(&bound);
        }
        closed.sort_by_key(|w| (w.end_ms, w.spec));
        closed
    }

    fn close_spec(&mut self, si: usize, wm: i64, only_data: bool, out: &mut Vec<ClosedWindow>) {
        let spec = self.specs[si].spec;
        let mut empty_run = 0u32;
        loop {
            let next = match self.specs[si].next_start {
                Some(n) => n,
                None => {
                    let Some((&first, _)) = self.panes.iter().next() else {
                        return;
                    };
                    first_window_containing(first.saturating_mul(self.pane_ms), spec)
                }
            };
            let end = next.saturating_add(spec.size_ms);
            if end == i64::MAX {
                // The end of time: no window can close there.
                return;
            }
            if end.saturating_add(spec.grace_ms) > wm {
                return;
            }
            let last_data = self.panes.keys().next_back().map(|&p| p * self.pane_ms);
            if only_data && last_data.is_none_or(|d| d < next) {
                return;
            }
            let window = self.collect(spec, next, end);
            let empty = window.stats == WindowStats::default();
            empty_run = if empty { empty_run + 1 } else { 0 };
            self.specs[si].next_start = Some(next.saturating_add(spec.slide_ms));
            if empty && empty_run > self.max_empty_windows {
                self.skip_gap(si, wm);
                empty_run = 0;
                continue;
            }
            out.push(window);
        }
    }

    /// After a long run of empty windows, jumps to the first window holding data ahead,
    /// or past the watermark when there is none.
    fn skip_gap(&mut self, si: usize, wm: i64) {
        let spec = self.specs[si].spec;
        let next = self.specs[si].next_start.expect("set by the caller");
        let ahead = self
            .panes
            .range(next.div_euclid(self.pane_ms)..)
            .next()
            .map(|(&p, _)| p * self.pane_ms);
        let target = ahead.unwrap_or(wm.saturating_sub(spec.grace_ms));
        let first_containing = first_window_containing(target, spec);
        self.specs[si].next_start = Some(first_containing.max(next));
    }

    fn collect(&self, spec: WindowSpec, start: i64, end: i64) -> ClosedWindow {
        let mut w = ClosedWindow {
            spec,
            start_ms: start,
            end_ms: end,
            batches: Vec::new(),
            stats: WindowStats::default(),
            ranges: BTreeMap::new(),
        };
        let (from, to) = (start.div_euclid(self.pane_ms), end.div_euclid(self.pane_ms));
        for (_, pane) in self.panes.range(from..to.max(from)) {
            w.batches.extend(pane.batches.iter().cloned());
            w.stats.records += pane.stats.records;
            w.stats.bad += pane.stats.bad;
            w.stats.late += pane.stats.late;
            for (&pid, &(lo, hi)) in &pane.ranges {
                let r = w.ranges.entry(pid).or_insert((lo, hi));
                *r = (r.0.min(lo), r.1.max(hi));
            }
        }
        w
    }

    /// The open state, for a checkpoint: everything but the rows, and the rows (pane by
    /// pane, in order). Partitions are named so a restart may list them differently.
    pub fn snapshot(&self, names: &[String]) -> (WindowsState, Vec<RecordBatch>) {
        let name = |pid: usize| names.get(pid).cloned().unwrap_or_else(|| pid.to_string());
        let mut batches = Vec::new();
        let panes = self
            .panes
            .iter()
            .map(|(&index, p)| {
                batches.extend(p.batches.iter().cloned());
                PaneState {
                    index,
                    batches: p.batches.len(),
                    stats: p.stats,
                    ranges: p
                        .ranges
                        .iter()
                        .map(|(&pid, &(lo, hi))| (name(pid), lo, hi))
                        .collect(),
                }
            })
            .collect();
        let state = WindowsState {
            pane_ms: self.pane_ms,
            specs: self.specs.iter().map(|s| (s.spec, s.next_start)).collect(),
            partitions: self
                .partitions
                .iter()
                .enumerate()
                .map(|(pid, p)| (name(pid), p.clone()))
                .collect(),
            panes,
        };
        (state, batches)
    }

    /// Loads a snapshot; fails when it was made for other window specs.
    pub fn restore(
        &mut self,
        state: WindowsState,
        batches: Vec<RecordBatch>,
        names: &[String],
    ) -> Result<(), String> {
        let mine: Vec<WindowSpec> = self.specs();
        let theirs: Vec<WindowSpec> = state.specs.iter().map(|s| s.0).collect();
        if state.pane_ms != self.pane_ms || mine != theirs {
            return Err(format!(
                "the checkpoint holds windows {theirs:?}, the rules now use {mine:?}"
            ));
        }
        let pid_of = |n: &str| names.iter().position(|x| x == n);
        for (spec, (_, next)) in self.specs.iter_mut().zip(&state.specs) {
            spec.next_start = *next;
        }
        for (name, p) in &state.partitions {
            let p = PartitionState {
                idle: false,
                ..p.clone()
            };
            match pid_of(name) {
                Some(pid) => {
                    self.ensure_partition(pid);
                    self.partitions[pid] = p;
                }
                None => {
                    self.parked.insert(name.clone(), p);
                }
            }
        }
        let mut rows = batches.into_iter();
        self.panes.clear();
        for pane in state.panes {
            let batches: Vec<RecordBatch> = rows.by_ref().take(pane.batches).collect();
            if batches.len() != pane.batches {
                return Err("the checkpoint lists more rows than it holds".into());
            }
            let ranges = pane
                .ranges
                .iter()
                .filter_map(|(n, lo, hi)| Some((pid_of(n)?, (*lo, *hi))))
                .collect();
            self.panes.insert(
                pane.index,
                Pane {
                    batches,
                    stats: pane.stats,
                    ranges,
                },
            );
        }
        Ok(())
    }

    /// Open panes (for the operator's view of a checkpoint).
    pub fn open_panes(&self) -> usize {
        self.panes.len()
    }

    /// Rows held in open panes (for memory reporting).
    pub fn buffered_rows(&self) -> u64 {
        self.panes.values().map(|p| p.stats.records).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::ts_type;
    use datafusion::arrow::array::TimestampMillisecondArray;
    use datafusion::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn batch(ts: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("ts", ts_type(), false)]));
        let arr = TimestampMillisecondArray::from(ts.to_vec()).with_timezone("UTC");
        RecordBatch::try_new(schema, vec![Arc::new(arr)]).unwrap()
    }

    fn spec(size: i64, slide: i64, grace: i64) -> WindowSpec {
        WindowSpec {
            size_ms: size,
            slide_ms: slide,
            grace_ms: grace,
        }
    }

    fn feed(w: &mut Windows, pid: usize, ts: &[i64]) -> Vec<usize> {
        let pos: Vec<u64> = (0..ts.len() as u64).collect();
        w.ingest(pid, &batch(ts), &pos, &[]).late_rows
    }

    fn bounds(ws: &[ClosedWindow]) -> Vec<(i64, i64, u64)> {
        ws.iter()
            .map(|w| (w.start_ms, w.end_ms, w.stats.records))
            .collect()
    }

    #[test]
    fn tumbling_windows_close_when_the_watermark_passes_end_plus_grace() {
        let mut w = Windows::new(&[spec(10, 10, 2)], 1, Duration::from_millis(3), 100);
        assert!(feed(&mut w, 0, &[1, 5, 9, 12]).is_empty());
        assert!(w.close_ready().is_empty(), "wm 9 < 10 + 2");
        feed(&mut w, 0, &[15]);
        assert_eq!(bounds(&w.close_ready()), vec![(0, 10, 3)]);
        feed(&mut w, 0, &[40]);
        assert_eq!(bounds(&w.close_ready()), vec![(10, 20, 2), (20, 30, 0)]);
    }

    #[test]
    fn hopping_windows_share_panes() {
        let mut w = Windows::new(&[spec(20, 10, 0)], 1, Duration::ZERO, 100);
        feed(&mut w, 0, &[5, 15, 25, 100]);
        let closed = w.close_ready();
        assert_eq!(
            &bounds(&closed)[..4],
            &[(-10, 10, 1), (0, 20, 2), (10, 30, 2), (20, 40, 1)]
        );
    }

    #[test]
    fn late_records_are_counted_not_windowed() {
        let mut w = Windows::new(&[spec(10, 10, 0)], 1, Duration::from_millis(5), 100);
        assert_eq!(feed(&mut w, 0, &[20, 16, 14, 30, 24]), vec![2, 4]);
        let closed = w.close_all();
        let total: u64 = closed.iter().map(|c| c.stats.records).sum();
        let late: u64 = closed.iter().map(|c| c.stats.late).sum();
        assert_eq!((total, late), (3, 2));
    }

    #[test]
    fn pipeline_watermark_is_the_minimum_over_partitions() {
        let mut w = Windows::new(&[spec(10, 10, 0)], 2, Duration::ZERO, 100);
        feed(&mut w, 0, &[50]);
        assert_eq!(w.watermark(), None, "partition 1 has sent nothing yet");
        assert!(w.close_ready().is_empty());
        feed(&mut w, 1, &[5]);
        assert_eq!(w.watermark(), Some(5));
        assert!(
            feed(&mut w, 1, &[3]).len() == 1,
            "late in its own partition"
        );
        w.set_idle(1, true);
        assert_eq!(w.watermark(), Some(50));
        assert_eq!(
            feed(&mut w, 1, &[8]),
            vec![0],
            "behind the pipeline's watermark"
        );
        w.partition_done(0);
        w.partition_done(1);
        assert_eq!(bounds(&w.close_all())[0], (0, 10, 1));
    }

    #[test]
    fn long_gaps_skip_empty_windows_and_panes_are_evicted() {
        let mut w = Windows::new(&[spec(10, 10, 0)], 1, Duration::ZERO, 3);
        feed(&mut w, 0, &[1, 100_000]);
        let closed = w.close_ready();
        assert_eq!(closed.len(), 4, "one with data, then three empty ones");
        assert_eq!(w.buffered_rows(), 1);
        let rest = w.close_all();
        assert_eq!(bounds(&rest), vec![(100_000, 100_010, 1)]);
        assert_eq!(w.buffered_rows(), 0);
    }

    #[test]
    fn slide_longer_than_size_is_rejected() {
        let c = WindowConfig {
            size: Duration::from_secs(60),
            slide: Some(Duration::from_secs(120)),
            grace: None,
        };
        assert!(c.spec().unwrap_err().contains("skipped"));
    }
}

#[cfg(test)]
mod hostile_tests;
