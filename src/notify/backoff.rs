//! Retry delays of the delivery loops: exponential from `retry_initial` to
//! `retry_max`, each wait drawn between three quarters of the delay and the delay (so
//! that receivers failing together do not retry in step, and no wait exceeds the
//! configured maximum).

use std::time::Duration;

pub struct Backoff {
    initial: Duration,
    max: Duration,
    delay: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            delay: initial,
        }
    }

    /// A failed try: how long to wait before the next one. The delay doubles.
    pub fn failed(&mut self) -> Duration {
        let wait = self.delay.mul_f64(rand::random_range(0.75..=1.0));
        self.delay = self.delay.saturating_mul(2).min(self.max);
        wait
    }

    /// A try that worked: the delay starts again from `retry_initial`. True when it
    /// had grown, that is when delivery works again after failures.
    pub fn succeeded(&mut self) -> bool {
        std::mem::replace(&mut self.delay, self.initial) > self.initial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_maximum_within_their_jitter_and_reset_on_success() {
        let s = Duration::from_secs;
        let mut b = Backoff::new(s(1), s(5));
        for want in [1, 2, 4, 5, 5] {
            let w = b.failed();
            assert!(
                w <= s(want) && w >= s(want).mul_f64(0.75),
                "{w:?} for {want} s"
            );
        }
        assert!(b.succeeded(), "it had grown");
        assert!(!b.succeeded(), "back at the start");
        let w = b.failed();
        assert!(w <= s(1), "{w:?}");
    }
}
