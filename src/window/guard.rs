//! The event-time guard: which records may move a partition's clock.
//!
//! Every event time is chosen by the party being watched, so one record must not be
//! able to move a watermark. Two rules, applied to each record before it reaches a
//! window, deterministic (no wall clock: `run` and `replay` decide alike) and kept in
//! checkpoints:
//!
//! - **Plausible range.** An event time outside `[min_event_time, max_event_time)` is
//!   refused (`time_out_of_range`).
//! - **Far ahead.** An event time more than `max_ahead` past the partition's clock (the
//!   newest admitted event time; for a partition without one, the newest of any
//!   partition) is refused (`time_ahead`) — unless it confirms a jump. A jump of the
//!   whole stream (traffic resuming after an outage, a replay of another day) is
//!   followed when, since the first far-ahead record, at least `jump_confirmations`
//!   records were far ahead *and* at least four in five records were: the clock then
//!   moves to the lower median of the last far-ahead event times, so the few outliers
//!   among them (a record from the year 2099) cannot lead it. A minority of the traffic
//!   cannot move the clock by more than `max_ahead`; to jump it, a sender must send
//!   `jump_confirmations` far-ahead records with hardly any other record among them —
//!   a flood that outnumbers the partition's own traffic.
//!
//! Before any window has closed, the same rule runs backwards: when most records are
//! far *behind* the clock (the very first record of a deployment was an outlier), the
//! clock moves back to them. After the first window closes, time only moves forward.
//!
//! Refused records are dead letters with their reason; nothing else is lost.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `time:` settings of the guard, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardConfig {
    pub min_ms: i64,
    pub max_ms: i64,
    pub max_ahead_ms: i64,
    pub confirmations: u32,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            // 2000-01-01T00:00:00Z and 2100-01-01T00:00:00Z.
            min_ms: 946_684_800_000,
            max_ms: 4_102_444_800_000,
            max_ahead_ms: 15 * 60 * 1000,
            confirmations: 100,
        }
    }
}

impl GuardConfig {
    pub fn new(
        min_ms: i64,
        max_ms: i64,
        max_ahead: Duration,
        confirmations: u32,
    ) -> Result<Self, String> {
        if min_ms >= max_ms {
            return Err("time.min_event_time must be before time.max_event_time".into());
        }
        if confirmations == 0 {
            return Err("time.jump_confirmations must be at least 1".into());
        }
        Ok(Self {
            min_ms,
            max_ms,
            max_ahead_ms: i64::try_from(max_ahead.as_millis()).unwrap_or(i64::MAX),
            confirmations,
        })
    }
}

/// Why a record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    OutOfRange,
    Ahead,
}

impl Refusal {
    /// The reason's code, first word of the dead letter's reason and a metric label.
    pub fn code(self) -> &'static str {
        match self {
            Refusal::OutOfRange => "time_out_of_range",
            Refusal::Ahead => "time_ahead",
        }
    }

    pub fn reason(self, config: &GuardConfig) -> String {
        match self {
            Refusal::OutOfRange => format!(
                "time_out_of_range: event time outside [{}, {}) (time.min_event_time, time.max_event_time)",
                crate::time::rfc3339(config.min_ms),
                crate::time::rfc3339(config.max_ms)
            ),
            Refusal::Ahead => format!(
                "time_ahead: event time more than {} past its partition's clock (time.max_ahead); followed once {} such records outnumber the rest",
                humantime::format_duration(
                    Duration::from_millis(config.max_ahead_ms.max(0) as u64)
                ),
                config.confirmations
            ),
        }
    }
}

/// A run of records far from the clock, in one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Episode {
    /// The last event times of the run (at most `confirmations`).
    times: VecDeque<i64>,
    /// Records of the run since its first one.
    seen: u64,
    /// Records near the clock since the run's first one.
    others: u64,
}

impl Episode {
    fn active(&self) -> bool {
        self.seen > 0
    }

    /// Counts one record of the run; the new clock when the run is confirmed.
    fn push(&mut self, t: i64, need: u32) -> Option<i64> {
        if self.times.len() >= need as usize {
            self.times.pop_front();
        }
        self.times.push_back(t);
        self.seen += 1;
        if self.seen >= u64::from(need) && self.others.saturating_mul(4) <= self.seen {
            let mut v: Vec<i64> = self.times.iter().copied().collect();
            v.sort_unstable();
            let clock = v[(v.len() - 1) / 2];
            *self = Episode::default();
            return Some(clock);
        }
        None
    }

    /// Counts a record near the clock; a run that can no longer win is forgotten.
    fn other(&mut self, need: u32) {
        if self.active() {
            self.others += 1;
            if self.others >= self.seen.saturating_add(u64::from(need)) {
                *self = Episode::default();
            }
        }
    }
}

/// The guard's state of one partition, kept in checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardState {
    ahead: Episode,
    behind: Episode,
    /// Records refused so far, by reason (out of range, ahead).
    pub refused: [u64; 2],
}

/// What the guard says of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Goes on to the window (it may still be late).
    Admit,
    /// Goes on, and the clock moves to this time first (a confirmed jump).
    Jump(i64),
    Refuse(Refusal),
}

impl GuardState {
    /// Judges event time `t` against the partition's `clock` (or, without one, the
    /// newest time of any partition: `reference`). `may_go_back` while no window has
    /// closed.
    pub fn judge(
        &mut self,
        c: &GuardConfig,
        t: i64,
        clock: Option<i64>,
        reference: Option<i64>,
        may_go_back: bool,
    ) -> Verdict {
        if t < c.min_ms || t >= c.max_ms {
            self.refused[0] += 1;
            return Verdict::Refuse(Refusal::OutOfRange);
        }
        let Some(now) = clock.or(reference) else {
            return Verdict::Admit;
        };
        if t > now.saturating_add(c.max_ahead_ms) {
            self.behind.other(c.confirmations);
            return match self.ahead.push(t, c.confirmations) {
                Some(to) => Verdict::Jump(to),
                None => {
                    self.refused[1] += 1;
                    Verdict::Refuse(Refusal::Ahead)
                }
            };
        }
        self.ahead.other(c.confirmations);
        if may_go_back && clock.is_some() && t < now.saturating_sub(c.max_ahead_ms) {
            if let Some(to) = self.behind.push(t, c.confirmations) {
                return Verdict::Jump(to);
            }
        } else {
            self.behind.other(c.confirmations);
        }
        Verdict::Admit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 3_600_000;
    const T0: i64 = 1_795_255_200_000; // 2026-11-21T10:00:00Z

    fn cfg() -> GuardConfig {
        GuardConfig {
            max_ahead_ms: 15 * MIN,
            confirmations: 5,
            ..GuardConfig::default()
        }
    }

    #[test]
    fn out_of_range_times_are_refused_at_both_ends() {
        let c = cfg();
        let mut g = GuardState::default();
        for t in [i64::MIN, -1, 0, c.min_ms - 1, c.max_ms, i64::MAX] {
            assert_eq!(
                g.judge(&c, t, Some(T0), None, true),
                Verdict::Refuse(Refusal::OutOfRange),
                "{t}"
            );
        }
        assert_eq!(g.judge(&c, c.min_ms, None, None, true), Verdict::Admit);
        assert_eq!(g.refused, [6, 0]);
    }

    #[test]
    fn a_handful_far_ahead_among_honest_records_never_moves_the_clock() {
        let c = cfg();
        let mut g = GuardState::default();
        let mut clock = T0;
        // 4 far-ahead records (one short of confirming) every 10 honest ones, for long.
        for i in 0..1000 {
            let t = if i % 10 < 4 {
                T0 + 1000 * HOUR
            } else {
                clock + 1
            };
            match g.judge(&c, t, Some(clock), None, false) {
                Verdict::Admit => clock = clock.max(t),
                Verdict::Jump(to) => panic!("jumped to {to} at record {i}"),
                Verdict::Refuse(r) => assert_eq!(r, Refusal::Ahead),
            }
        }
        assert!(clock < T0 + HOUR);
        assert_eq!(g.refused[1], 400);
    }

    #[test]
    fn a_whole_stream_that_jumps_is_followed_after_the_confirmations() {
        let c = cfg();
        let mut g = GuardState::default();
        let day = 24 * HOUR;
        let mut clock = T0;
        let mut refused = 0;
        // The stream resumes a day later; one record among them is from far away.
        let outlier = T0 + 1000 * HOUR;
        let times = [day, day + 1, day + 2, outlier - T0, day + 3, day + 4];
        for (i, dt) in times.iter().enumerate() {
            let t = T0 + dt;
            match g.judge(&c, t, Some(clock), None, false) {
                Verdict::Admit => clock = clock.max(t),
                Verdict::Jump(to) => {
                    assert_eq!(i, 4, "confirmed by the fifth record ahead");
                    // The lower median of the five: day + 2 (the outlier does not lead).
                    assert_eq!(to, T0 + day + 2);
                    clock = to;
                }
                Verdict::Refuse(_) => refused += 1,
            }
        }
        assert_eq!(clock, T0 + day + 4);
        assert_eq!(refused, 4);
        // The next record of the resumed stream is admitted; the outlier's peers are not.
        assert_eq!(
            g.judge(&c, T0 + day + 5, Some(clock), None, false),
            Verdict::Admit
        );
        assert_eq!(
            g.judge(&c, outlier, Some(clock), None, false),
            Verdict::Refuse(Refusal::Ahead)
        );
    }

    #[test]
    fn an_outlier_first_record_is_left_behind_before_any_window_closed() {
        let c = cfg();
        let mut g = GuardState::default();
        let mut clock = T0 + 1000 * HOUR; // the first record was an outlier
        let mut jumped = None;
        for i in 0..5 {
            if let Verdict::Jump(to) = g.judge(&c, T0 + i, Some(clock), None, true) {
                jumped = Some(to);
                clock = to;
            }
        }
        assert_eq!(jumped, Some(T0 + 2));
        // Once a window closed, time does not go back.
        let mut g = GuardState::default();
        for i in 0..50 {
            assert_eq!(
                g.judge(&c, T0 + i, Some(T0 + 1000 * HOUR), None, false),
                Verdict::Admit
            );
        }
    }

    #[test]
    fn a_sender_of_two_in_three_records_in_bursts_does_not_move_the_clock() {
        let c = cfg();
        let mut g = GuardState::default();
        let clock = T0;
        for round in 0..100 {
            for _ in 0..2 {
                assert_eq!(
                    g.judge(&c, T0 + 1000 * HOUR, Some(clock), None, false),
                    Verdict::Refuse(Refusal::Ahead),
                    "round {round}"
                );
            }
            assert_eq!(g.judge(&c, clock, Some(clock), None, false), Verdict::Admit);
        }
    }

    #[test]
    fn a_partition_without_a_clock_is_judged_against_the_others() {
        let c = cfg();
        let mut g = GuardState::default();
        assert_eq!(
            g.judge(&c, T0 + 100 * HOUR, None, Some(T0), false),
            Verdict::Refuse(Refusal::Ahead)
        );
        assert_eq!(g.judge(&c, T0 + MIN, None, Some(T0), false), Verdict::Admit);
    }
}
