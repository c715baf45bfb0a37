//! Supervision policy: what a nursery does when one of its actors ends.
//!
//! Only the policy lives here (which strategy, which children come back, how
//! many restarts are tolerated, how long to wait before each); the nursery's
//! supervisors apply it. Keeping it free of processes and channels lets the
//! arithmetic be tested in memory.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::Error;

/// How a nursery reacts when one of its actors fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Strategy {
    /// The first failure cancels the body and every other actor, and the
    /// nursery returns the failures (a trio nursery; tractor's only mode).
    /// Restart kinds are ignored.
    #[default]
    OneCancelsAll,
    /// Restart only the actor that ended, as its [`Restart`] kind says; its
    /// siblings go on undisturbed.
    OneForOne,
    /// Restart the actor that ended and every actor started after it in this
    /// nursery: the later ones are stopped (latest first), then all are
    /// started again in their original start order. For actors that depend
    /// on the ones started before them.
    RestForOne,
}

impl Strategy {
    /// This strategy with a restart intensity: at most `max_restarts`
    /// restarts within any `period`; see [`Supervision::intensity`].
    pub fn intensity(self, max_restarts: u32, period: Duration) -> Supervision {
        Supervision::from(self).intensity(max_restarts, period)
    }

    /// This strategy with a backoff between restarts; see
    /// [`Supervision::backoff`].
    pub fn backoff(self, backoff: Backoff) -> Supervision {
        Supervision::from(self).backoff(backoff)
    }
}

/// Which ends of an actor make its nursery start it again (under
/// [`Strategy::OneForOne`] and [`Strategy::RestForOne`]; Erlang's restart
/// types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Restart {
    /// Always restarted, whether it failed or ended normally. A daemon's
    /// default: a daemon that ends on its own has stopped serving.
    #[default]
    Permanent,
    /// Restarted only after a failure (an error, a panic, a crash or a
    /// signal), not after its main function returned `Ok`.
    Transient,
    /// Never restarted. Its failure reaches whoever awaits its result or
    /// calls it, and the log; its siblings are not disturbed.
    Temporary,
}

/// A nursery's supervision settings: a [`Strategy`], a restart intensity,
/// and a [`Backoff`]. Build one from a strategy:
///
/// ```
/// use std::time::Duration;
/// use actor::{Backoff, Strategy};
///
/// let s = Strategy::OneForOne
///     .intensity(3, Duration::from_secs(10))
///     .backoff(Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1)));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Supervision {
    pub(crate) strategy: Strategy,
    pub(crate) max_restarts: u32,
    pub(crate) period: Duration,
    pub(crate) backoff: Backoff,
}

impl From<Strategy> for Supervision {
    /// The strategy with Erlang's default intensity (3 restarts in 5 s) and
    /// the default [`Backoff`].
    fn from(strategy: Strategy) -> Self {
        Supervision { strategy, max_restarts: 3, period: Duration::from_secs(5), backoff: Backoff::default() }
    }
}

impl Default for Supervision {
    fn default() -> Self {
        Strategy::OneCancelsAll.into()
    }
}

impl Supervision {
    /// At most `max_restarts` restarts within any window of `period`. The
    /// restart past that is not made: the nursery cancels its body and every
    /// actor and fails with [`Error::RestartIntensity`], holding the cause of
    /// every restart in the window and the failure that broke the limit.
    pub fn intensity(mut self, max_restarts: u32, period: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.period = period;
        self
    }

    /// How long to wait before each restart.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }
}

/// The delay before a restart: exponential in the number of restarts of that
/// actor still inside the intensity period, capped, with random jitter so
/// that actors failing together do not come back in lockstep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    factor: f64,
    jitter: f64,
}

impl Default for Backoff {
    /// 10 ms doubling up to 1 s, with 20% jitter.
    fn default() -> Self {
        Backoff::exponential(Duration::from_millis(10), Duration::from_secs(1))
    }
}

impl Backoff {
    /// `initial` before the first restart, doubling for each further one, at
    /// most `max`; 20% jitter.
    pub fn exponential(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max, factor: 2.0, jitter: 0.2 }
    }

    /// No delay at all.
    pub fn none() -> Self {
        Backoff { initial: Duration::ZERO, max: Duration::ZERO, factor: 1.0, jitter: 0.0 }
    }

    /// Multiplies the delay by `factor` (at least 1) for each further restart.
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = if factor.is_finite() { factor.max(1.0) } else { 1.0 };
        self
    }

    /// Randomizes each delay by up to `fraction` (0 to 1) of it, either way.
    pub fn jitter(mut self, fraction: f64) -> Self {
        self.jitter = if fraction.is_finite() { fraction.clamp(0.0, 1.0) } else { 0.0 };
        self
    }

    /// The delay before restart number `attempt` (1 for the first), given a
    /// uniform random number `unit` in [0, 1). Never more than `max` plus its
    /// jitter.
    pub(crate) fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exp = self.factor.powi(attempt.saturating_sub(1).min(64) as i32);
        let base = (self.initial.as_secs_f64() * exp).min(self.max.as_secs_f64());
        let spread = base * self.jitter * (2.0 * unit - 1.0);
        Duration::from_secs_f64((base + spread).max(0.0))
    }
}

/// A uniform random number in [0, 1) for jitter; 0.5 (no jitter) if the OS
/// has no randomness to give.
pub(crate) fn unit_random() -> f64 {
    let mut b = [0u8; 8];
    match getrandom::fill(&mut b) {
        Ok(()) => (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

/// The restarts a nursery made within its intensity period, with their
/// causes, oldest first.
#[derive(Default)]
pub(crate) struct Intensity {
    recent: VecDeque<(Instant, Error)>,
}

impl Intensity {
    /// Records a restart caused by `cause` at `now`. `Ok(n)` if it may be
    /// made (n restarts now in the window, this one included); `Err(causes)`
    /// with every cause in the window, this one last, if it would be one too
    /// many.
    pub(crate) fn admit(&mut self, s: &Supervision, now: Instant, cause: Error) -> Result<u32, Vec<Error>> {
        while self.recent.front().is_some_and(|(t, _)| now.duration_since(*t) >= s.period) {
            self.recent.pop_front();
        }
        self.recent.push_back((now, cause));
        if self.recent.len() > s.max_restarts as usize {
            return Err(self.recent.drain(..).map(|(_, e)| e).collect());
        }
        Ok(self.recent.len() as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps() {
        let b = Backoff::exponential(Duration::from_millis(10), Duration::from_millis(50)).jitter(0.0);
        let ms: Vec<u128> = (1..=5).map(|a| b.delay(a, 0.3).as_millis()).collect();
        assert_eq!(ms, [10, 20, 40, 50, 50]);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let b = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(1)).jitter(0.2);
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(80));
        assert!(b.delay(1, 0.999_999) <= Duration::from_millis(120));
        assert_eq!(Backoff::none().delay(7, 0.9), Duration::ZERO);
    }

    #[test]
    fn intensity_refuses_the_restart_past_the_limit_with_every_cause() {
        let s = Strategy::OneForOne.intensity(3, Duration::from_secs(10));
        let mut i = Intensity::default();
        let t = Instant::now();
        for n in 1..=3 {
            assert_eq!(i.admit(&s, t, Error::msg(format!("cause {n}"))).ok(), Some(n));
        }
        let causes = i.admit(&s, t, Error::msg("cause 4")).err().unwrap_or_default();
        let shown: Vec<String> = causes.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown.len(), 4);
        assert!(shown[0].contains("cause 1") && shown[3].contains("cause 4"), "{shown:?}");
    }

    #[test]
    fn restarts_older_than_the_period_are_forgotten() {
        let s = Strategy::OneForOne.intensity(1, Duration::from_secs(10));
        let mut i = Intensity::default();
        let t = Instant::now();
        assert!(i.admit(&s, t, Error::msg("a")).is_ok());
        assert!(i.admit(&s, t + Duration::from_secs(11), Error::msg("b")).is_ok());
        assert!(i.admit(&s, t + Duration::from_secs(12), Error::msg("c")).is_err());
    }
}
