//! The circuit breaker: stop calling a worker that keeps failing, and try it again now and
//! then.
//!
//! As resilience4j's: **closed**, calls go through and their outcomes fill a sliding window
//! (the last N calls, or the calls of the last T); once it holds `minimum_calls`, a failure
//! rate or a slow-call rate at or above its threshold opens the breaker. **Open**, no call
//! goes through for `open_wait`; then **half-open**, `half_open_probes` calls go through and
//! their outcomes decide: closed again or open again, as soon as the probes' outcomes
//! settle it.
//!
//! A half-open breaker cannot stick (resilience4j bugs 903 and 2289, where probes that never
//! answered held it half-open for good): once the first probe has gone out, the probes have
//! `half_open_max_wait` to answer, and a breaker still half-open then opens again. Every
//! transition driven by time happens at its own instant, whenever the breaker is next asked,
//! so the states and their times do not depend on how often the driver looks.
//!
//! Outcomes carry the [`Permit`] of their call: an outcome from before the latest transition
//! (a call started while closed that answers while half-open) is ignored, so only the probes
//! decide a half-open breaker.

use std::time::Duration;

use smallvec::SmallVec;

use crate::resilience::sliding::SlidingCounts;
use crate::time::Instant;

/// What the breaker's rates are computed over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerWindow {
    /// The last this many calls.
    Count(u32),
    /// The calls of the last this long (in ten slots; see `RetryBudget` for the counting).
    Time(Duration),
}

/// A circuit breaker's settings.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// The calls the rates are computed over.
    pub window: BreakerWindow,
    /// No rate is judged on fewer calls than this.
    pub minimum_calls: u32,
    /// The share of failed calls at which the breaker opens, in (0, 1].
    pub failure_rate: f64,
    /// The share of slow calls at which the breaker opens, in (0, 1].
    pub slow_call_rate: f64,
    /// A call this long or longer is slow (whether it failed or not).
    pub slow_call_duration: Duration,
    /// How long an open breaker refuses every call.
    pub open_wait: Duration,
    /// How many probes a half-open breaker lets through.
    pub half_open_probes: u32,
    /// How long the probes of a half-open breaker have to answer, from the first one sent,
    /// before it opens again.
    pub half_open_max_wait: Duration,
}

impl Default for BreakerConfig {
    /// resilience4j's thresholds (failure rate 50 %), resized for one breaker per worker of
    /// a cluster's RPC: resilience4j's window of 100 calls with a minimum of 100 and its 60 s
    /// open wait fit a breaker in front of a whole remote service; here a crashed worker
    /// opens its breaker after 10 failed calls (a window of 20) and is probed again after
    /// 5 s, about the time membership takes to declare it failed, so a worker that
    /// restarts is used again within seconds. 3 probes instead of 10, so a sick worker
    /// that is probed sees few calls. A call of a second or more is slow (resilience4j: 60 s),
    /// and 80 % slow calls open the breaker (resilience4j: 100 %): a worker that takes a
    /// second on most calls is as good as down for sub-second deadlines, while a worker a few
    /// times slower than its peers is hedging's case, not the breaker's. Probes have 10 s to
    /// answer (resilience4j: forever).
    fn default() -> Self {
        Self {
            window: BreakerWindow::Count(20),
            minimum_calls: 10,
            failure_rate: 0.5,
            slow_call_rate: 0.8,
            slow_call_duration: Duration::from_secs(1),
            open_wait: Duration::from_secs(5),
            half_open_probes: 3,
            half_open_max_wait: Duration::from_secs(10),
        }
    }
}

/// A breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Every call is refused.
    Open,
    /// A few probes go through; their outcomes close or reopen the breaker.
    HalfOpen,
}

/// A change of state, at the instant it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// When.
    pub at: Instant,
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
}

/// Leave to make one call, from [`CircuitBreaker::try_acquire`]; give it back with the
/// call's outcome.
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a permit must be given back with its call's outcome (or released)"]
pub struct Permit {
    /// The breaker's epoch (its count of transitions) when the permit was given.
    epoch: u64,
}

/// Calls, failures and slow calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    calls: u64,
    failures: u64,
    slow: u64,
}

impl core::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Self) {
        self.calls += other.calls;
        self.failures += other.failures;
        self.slow += other.slow;
    }
}

impl Tally {
    fn one(failed: bool, slow: bool) -> Self {
        Self { calls: 1, failures: u64::from(failed), slow: u64::from(slow) }
    }
}

/// The closed breaker's window of outcomes.
#[derive(Clone, Debug)]
enum Window {
    /// The last `outcomes.capacity()` outcomes in a ring, and their running tally.
    Count { outcomes: Vec<Tally>, size: usize, next: usize, tally: Tally },
    /// Boxed: ten slots of counts are five times the size of the count window's fields.
    Time(Box<SlidingCounts<Tally>>),
}

impl Window {
    fn new(window: BreakerWindow) -> Self {
        match window {
            BreakerWindow::Count(size) => {
                let size = size.max(1) as usize;
                Self::Count { outcomes: Vec::with_capacity(size), size, next: 0, tally: Tally::default() }
            }
            BreakerWindow::Time(length) => Self::Time(Box::new(SlidingCounts::new(length))),
        }
    }

    fn push(&mut self, now: Instant, outcome: Tally) {
        match self {
            Self::Count { outcomes, size, next, tally } => {
                if outcomes.len() < *size {
                    outcomes.push(outcome);
                } else {
                    let old = core::mem::replace(&mut outcomes[*next], outcome);
                    tally.calls -= old.calls;
                    tally.failures -= old.failures;
                    tally.slow -= old.slow;
                }
                *tally += outcome;
                *next = (*next + 1) % *size;
            }
            Self::Time(slots) => *slots.at(now) += outcome,
        }
    }

    fn tally(&self, now: Instant) -> Tally {
        match self {
            Self::Count { tally, .. } => *tally,
            Self::Time(slots) => slots.sum(now),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        /// Probes given out (and not released).
        probes: u32,
        successes: u32,
        failures: u32,
        slow: u32,
        /// When the probes' time is up: `half_open_max_wait` after the first.
        deadline: Option<Instant>,
    },
}

impl State {
    const HALF_OPEN: Self = Self::HalfOpen { probes: 0, successes: 0, failures: 0, slow: 0, deadline: None };

    fn public(self) -> BreakerState {
        match self {
            Self::Closed => BreakerState::Closed,
            Self::Open { .. } => BreakerState::Open,
            Self::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// The next change that time alone makes, and when.
    fn timed_change(self, config: &BreakerConfig) -> Option<(Instant, Self)> {
        match self {
            Self::Open { until } => Some((until, Self::HALF_OPEN)),
            Self::HalfOpen { deadline: Some(deadline), .. } => {
                Some((deadline, Self::Open { until: deadline + config.open_wait }))
            }
            Self::Closed | Self::HalfOpen { deadline: None, .. } => None,
        }
    }

    /// This state as it stands at `now`, after the changes time makes.
    fn at(mut self, now: Instant, config: &BreakerConfig) -> Self {
        while let Some((at, next)) = self.timed_change(config) {
            if at > now {
                break;
            }
            self = next;
        }
        self
    }
}

/// One worker's circuit breaker.
///
/// Ask [`CircuitBreaker::try_acquire`] before each call and give the [`Permit`] back with
/// its outcome ([`CircuitBreaker::record_success`], [`CircuitBreaker::record_failure`]) or
/// without one ([`CircuitBreaker::release`], for a call cancelled before it answered).
/// Drain [`CircuitBreaker::poll_transition`] after each call to see its changes;
/// [`CircuitBreaker::poll_timeout`] says when time will next change the state, and
/// [`CircuitBreaker::handle_timeout`] makes it (any other call does too).
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: State,
    /// How many transitions so far: a permit from an earlier epoch records nothing.
    epoch: u64,
    window: Window,
    transitions: SmallVec<[Transition; 4]>,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        let window = Window::new(config.window);
        Self { config, state: State::Closed, epoch: 0, window, transitions: SmallVec::new() }
    }

    /// Its settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Its state at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        self.state.at(now, &self.config).public()
    }

    /// Whether a call at `now` would be let through ([`CircuitBreaker::try_acquire`] would
    /// give a permit).
    pub fn admits(&self, now: Instant) -> bool {
        match self.state.at(now, &self.config) {
            State::Closed => true,
            State::Open { .. } => false,
            State::HalfOpen { probes, .. } => probes < self.config.half_open_probes,
        }
    }

    /// Leave to make a call at `now`, or `None` while open (or half-open with every probe
    /// out).
    pub fn try_acquire(&mut self, now: Instant) -> Option<Permit> {
        self.handle_timeout(now);
        let max_wait = self.config.half_open_max_wait;
        match &mut self.state {
            State::Closed => {}
            State::Open { .. } => return None,
            State::HalfOpen { probes, deadline, .. } => {
                if *probes >= self.config.half_open_probes {
                    return None;
                }
                *probes += 1;
                deadline.get_or_insert(now + max_wait);
            }
        }
        Some(Permit { epoch: self.epoch })
    }

    /// The call of `permit` succeeded after `latency`.
    pub fn record_success(&mut self, now: Instant, permit: Permit, latency: Duration) {
        self.record(now, permit, false, latency);
    }

    /// The call of `permit` failed after `latency` (an error, a timeout, no answer).
    pub fn record_failure(&mut self, now: Instant, permit: Permit, latency: Duration) {
        self.record(now, permit, true, latency);
    }

    /// The call of `permit` ended without an outcome that says anything about the worker
    /// (it was cancelled: another attempt answered first, or the caller gave up). A
    /// half-open breaker may send another probe in its place.
    pub fn release(&mut self, now: Instant, permit: Permit) {
        self.handle_timeout(now);
        if permit.epoch != self.epoch {
            return;
        }
        if let State::HalfOpen { probes, deadline, .. } = &mut self.state {
            *probes = probes.saturating_sub(1);
            if *probes == 0 {
                *deadline = None;
            }
        }
    }

    /// When time will next change the state (an open breaker turning half-open, the
    /// probes' time running out).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.state.timed_change(&self.config).map(|(at, _)| at)
    }

    /// Makes the changes that time has made by `now`; harmless at any time.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, next)) = self.state.timed_change(&self.config) {
            if at > now {
                break;
            }
            self.set(at, next);
        }
    }

    /// The next change of state not yet drained, oldest first.
    pub fn poll_transition(&mut self) -> Option<Transition> {
        if self.transitions.is_empty() {
            None
        } else {
            Some(self.transitions.remove(0))
        }
    }

    fn record(&mut self, now: Instant, permit: Permit, failed: bool, latency: Duration) {
        self.handle_timeout(now);
        if permit.epoch != self.epoch {
            return;
        }
        let slow = latency >= self.config.slow_call_duration;
        match &mut self.state {
            State::Closed => {
                self.window.push(now, Tally::one(failed, slow));
                let tally = self.window.tally(now);
                if tally.calls >= u64::from(self.config.minimum_calls) && self.rates_reached(tally) {
                    self.open(now);
                }
            }
            State::HalfOpen { successes, failures, slow: slow_probes, .. } => {
                if failed {
                    *failures += 1;
                } else {
                    *successes += 1;
                }
                *slow_probes += u32::from(slow);
                self.judge_probes(now);
            }
            // An open breaker gave no permit of this epoch: every transition starts one.
            State::Open { .. } => {}
        }
    }

    /// Whether a tally's failure rate or slow-call rate reaches its threshold.
    fn rates_reached(&self, tally: Tally) -> bool {
        let calls = tally.calls as f64;
        tally.failures as f64 >= self.config.failure_rate * calls
            || tally.slow as f64 >= self.config.slow_call_rate * calls
    }

    /// Closes or reopens a half-open breaker as soon as its probes settle it: the rates
    /// over all `half_open_probes` reach a threshold whatever the probes still out answer,
    /// or reach none whatever they answer.
    fn judge_probes(&mut self, now: Instant) {
        let State::HalfOpen { successes, failures, slow, .. } = self.state else { return };
        let all = u64::from(self.config.half_open_probes);
        let out = all.saturating_sub(u64::from(successes) + u64::from(failures));
        let failures = u64::from(failures);
        let slow = u64::from(slow);
        let best = Tally { calls: all, failures, slow };
        let worst = Tally { calls: all, failures: failures + out, slow: slow + out };
        if self.rates_reached(best) {
            self.open(now);
        } else if !self.rates_reached(worst) {
            self.set(now, State::Closed);
        }
    }

    fn open(&mut self, now: Instant) {
        self.set(now, State::Open { until: now + self.config.open_wait });
    }

    fn set(&mut self, at: Instant, next: State) {
        let from = self.state.public();
        self.state = next;
        self.epoch += 1;
        // Every state starts afresh: a breaker that closes judges only the calls made since.
        self.window = Window::new(self.config.window);
        self.transitions.push(Transition { at, from, to: next.public() });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn t(millis: u64) -> Instant {
        Instant::from_millis(millis)
    }

    fn config() -> BreakerConfig {
        BreakerConfig {
            window: BreakerWindow::Count(10),
            minimum_calls: 4,
            failure_rate: 0.5,
            slow_call_rate: 0.75,
            slow_call_duration: MS(100),
            open_wait: MS(1000),
            half_open_probes: 2,
            half_open_max_wait: MS(500),
        }
    }

    /// Makes one call at `now` that fails or not after `latency`; `false` if refused.
    fn call(b: &mut CircuitBreaker, now: Instant, failed: bool, latency: Duration) -> bool {
        let Some(permit) = b.try_acquire(now) else { return false };
        if failed {
            b.record_failure(now + latency, permit, latency);
        } else {
            b.record_success(now + latency, permit, latency);
        }
        true
    }

    fn drain(b: &mut CircuitBreaker) -> Vec<(Instant, BreakerState, BreakerState)> {
        std::iter::from_fn(|| b.poll_transition()).map(|tr| (tr.at, tr.from, tr.to)).collect()
    }

    use BreakerState::{Closed, HalfOpen, Open};

    /// 'F' a fast failure, 'o' a fast success, 'S' a success at the slow-call duration
    /// (slow), 's' one just under it (not slow).
    fn outcome(c: char) -> (bool, Duration) {
        match c {
            'F' => (true, MS(1)),
            'o' => (false, MS(1)),
            'S' => (false, MS(100)),
            's' => (false, MS(99)),
            _ => unreachable!("test outcomes are F, o, S, s"),
        }
    }

    #[test]
    fn the_rates_over_the_window_open_the_breaker_once_it_holds_the_minimum() {
        // window of 10 calls, minimum 4, failure rate 50 %, slow-call rate 75 % at 100 ms.
        let golden = [
            ("FFF", Closed),                 // below the minimum
            ("FFFF", Open),                  // 100 %
            ("oFoF", Open),                  // 50 % reaches 50 %
            ("oooF", Closed),                // 25 %
            ("ooooFoFo", Closed),            // never above 2 of 7
            ("ooooooFFFF", Closed),          // 4 of 10 at most
            ("oooooFFFFoF", Open),           // the 11th call pushes out an 'o': 5 of the last 10
            ("ooooooFoFoFFF", Open),         // 5 of the last 10 (5 of 13 in all)
            ("oooFoFoooooooooFFFF", Closed), // the first two failures left the window
            ("SSSo", Open),                  // 75 % slow
            ("SSoo", Closed),                // 50 % slow
            ("sssS", Closed),                // 99 ms is not slow
            ("SSsS", Open),                  // 3 of 4 slow
            ("SSooooooooooSSSS", Closed),    // the first two slow calls left: 4 of the last 10
        ];
        for (outcomes, expected) in golden {
            let mut b = CircuitBreaker::new(config());
            let mut now = t(0);
            for c in outcomes.chars() {
                let (failed, latency) = outcome(c);
                assert!(call(&mut b, now, failed, latency), "{outcomes}: refused before its end");
                now += MS(200);
            }
            assert_eq!(b.state(now), expected, "{outcomes}");
        }
    }

    #[test]
    fn the_probes_settle_a_half_open_breaker_as_soon_as_they_can() {
        // 4 probes, failure rate 50 %, slow-call rate 75 %: (outcomes, state after each).
        let golden: [(&str, [BreakerState; 4]); 7] = [
            ("oooo", [HalfOpen, HalfOpen, Closed, Closed]), // 3 good of 4: at most 25 % can fail
            ("FF", [HalfOpen, Open, Open, Open]),
            ("oFoo", [HalfOpen, HalfOpen, HalfOpen, Closed]),
            ("oFoF", [HalfOpen, HalfOpen, HalfOpen, Open]),
            ("SSS", [HalfOpen, HalfOpen, Open, Open]),
            ("SSoo", [HalfOpen, HalfOpen, HalfOpen, Closed]),
            ("ssso", [HalfOpen, HalfOpen, Closed, Closed]),
        ];
        for (outcomes, states) in golden {
            let mut b = CircuitBreaker::new(BreakerConfig { half_open_probes: 4, ..config() });
            for i in 0..4 {
                assert!(call(&mut b, t(i), true, MS(0)));
            }
            let mut now = t(1003);
            assert_eq!(b.state(now), HalfOpen);
            let permits: Vec<Permit> = (0..4).map(|_| b.try_acquire(now).expect("a probe")).collect();
            assert!(b.try_acquire(now).is_none(), "{outcomes}: four probes at most");
            for ((c, permit), expected) in outcomes.chars().zip(permits).zip(states) {
                now += MS(1);
                let (failed, latency) = outcome(c);
                if failed {
                    b.record_failure(now, permit, latency);
                } else {
                    b.record_success(now, permit, latency);
                }
                assert_eq!(b.state(now), expected, "{outcomes} after {c}");
            }
        }
    }

    #[test]
    fn only_the_probes_decide_a_half_open_breaker() {
        let mut b = CircuitBreaker::new(config());
        // A call that starts while closed and answers once the breaker is half-open.
        let old = b.try_acquire(t(0)).expect("closed");
        for i in 0..4 {
            assert!(call(&mut b, t(i), true, MS(1)));
        }
        assert_eq!(b.state(t(1004)), HalfOpen);
        b.record_success(t(1004), old, MS(1004));
        assert!(b.admits(t(1004)), "the old call took no probe's place");
        // Two probes: the first success cannot settle it (the other could still fail: 50 %).
        let probes = [b.try_acquire(t(1005)).expect("a probe"), b.try_acquire(t(1005)).expect("a probe")];
        let [first, second] = probes;
        b.record_success(t(1006), first, MS(1));
        assert_eq!(b.state(t(1006)), HalfOpen, "the old call's answer is not a probe's");
        b.record_success(t(1007), second, MS(1));
        assert_eq!(b.state(t(1007)), Closed);
        // Closed afresh: the failures from before it opened are not in the window.
        assert!(call(&mut b, t(1100), true, MS(1)));
        assert!(call(&mut b, t(1101), false, MS(1)));
        assert!(call(&mut b, t(1102), false, MS(1)));
        assert!(call(&mut b, t(1103), false, MS(1)));
        assert_eq!(b.state(t(1104)), Closed);
    }

    #[test]
    fn a_released_probe_makes_room_and_the_others_keep_their_deadline() {
        let mut b = CircuitBreaker::new(config());
        assert_eq!(b.config(), &config());
        for i in 0..4 {
            assert!(call(&mut b, t(i), true, MS(1)));
        }
        let now = t(1004);
        let first = b.try_acquire(now).expect("a probe");
        let second = b.try_acquire(now + MS(100)).expect("a second probe");
        assert!(!b.admits(now + MS(100)), "two probes at most");
        // The first is cancelled: room for another, and the second still has until 500 ms
        // after the first went out.
        b.release(now + MS(200), first);
        assert!(b.admits(now + MS(200)));
        assert_eq!(b.poll_timeout(), Some(now + MS(500)));
        assert_eq!(b.state(now + MS(500)), Open, "the remaining probe's time ran out");
        drop(second);
        // Every probe released: no deadline runs, and the next probe starts its own.
        let mut b = CircuitBreaker::new(config());
        for i in 0..4 {
            assert!(call(&mut b, t(i), true, MS(1)));
        }
        let only = b.try_acquire(now).expect("a probe");
        b.release(now + MS(10), only);
        assert_eq!(b.poll_timeout(), None);
        assert_eq!(b.state(now + MS(900)), HalfOpen);
        let late = b.try_acquire(now + MS(900)).expect("a probe");
        assert_eq!(b.poll_timeout(), Some(now + MS(1400)));
        b.record_success(now + MS(901), late, MS(1));
    }

    #[test]
    fn a_half_open_breaker_whose_probe_never_answers_opens_again() {
        let mut b = CircuitBreaker::new(config());
        for i in 0..4 {
            assert!(call(&mut b, t(i), true, MS(1)));
        }
        assert_eq!(b.state(t(4)), Open);
        // Open until 1003 ms (the fourth failure was recorded at 4 ms).
        assert_eq!(b.poll_timeout(), Some(t(1004)));
        assert!(b.try_acquire(t(1003)).is_none());
        let probe = b.try_acquire(t(1004)).expect("half-open lets a probe through");
        assert_eq!(b.state(t(1004)), HalfOpen);
        // The probe never answers: 500 ms after it went out the breaker opens again.
        assert_eq!(b.poll_timeout(), Some(t(1504)));
        assert_eq!(b.state(t(1503)), HalfOpen);
        assert_eq!(b.state(t(1504)), Open);
        assert!(!b.admits(t(1504)));
        b.handle_timeout(t(1600));
        assert_eq!(
            drain(&mut b),
            [(t(4), Closed, Open), (t(1004), Open, HalfOpen), (t(1504), HalfOpen, Open)],
            "each change at its own instant"
        );
        // The lost probe's late answer records nothing.
        b.record_success(t(1700), probe, MS(696));
        assert_eq!(b.state(t(1700)), Open);
        // A second round: open until 2504, then probes that answer close it.
        assert!(call(&mut b, t(2504), false, MS(1)));
        assert!(call(&mut b, t(2506), false, MS(1)));
        assert_eq!(b.state(t(2510)), Closed);
        assert_eq!(drain(&mut b), [(t(2504), Open, HalfOpen), (t(2507), HalfOpen, Closed)]);
    }
}
