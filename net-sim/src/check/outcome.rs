//! What a checker concluded about a run, and a broken property with what replays it.

use std::fmt;

use conclave_core::Instant;

/// What a checker concluded about a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// It judged, and the property held.
    Held,
    /// The property was broken this many times.
    Violated(usize),
    /// It could not judge, for this reason.
    NotJudged(String),
}

/// One checker's conclusion, as a [`Report`](crate::Report) lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The checker's name.
    pub checker: &'static str,
    /// What it concluded.
    pub status: Status,
    /// Whether the test opted out of this checker's judgement
    /// ([`SimBuilder::opt_out`](crate::SimBuilder::opt_out)): a `NotJudged` is then accepted.
    pub opted_out: bool,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opted = if self.opted_out { " (opted out)" } else { "" };
        match &self.status {
            Status::Held => write!(f, "{}: held{opted}", self.checker),
            Status::Violated(n) => write!(f, "{}: violated {n} time(s){opted}", self.checker),
            Status::NotJudged(why) => write!(f, "{}: could not judge: {why}{opted}", self.checker),
        }
    }
}

/// A broken property, with everything needed to replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The property (the checker's name, or `no-panic`).
    pub checker: &'static str,
    /// The run's seed.
    pub seed: u64,
    /// Global virtual time.
    pub at: Instant,
    /// What is wrong.
    pub message: String,
    /// The run's fault plan, in its text form.
    pub plan: String,
    /// The one-line command that replays the run.
    pub replay: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} violated at {} (seed {}): {}\n  plan: {}\n  replay: {}",
            self.checker, self.at, self.seed, self.message, self.plan, self.replay
        )
    }
}
