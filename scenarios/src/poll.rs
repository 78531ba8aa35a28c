//! Waiting on a simulation for a condition, in virtual time.

use std::time::Duration;

use conclave_core::Instant;
use conclave_sim::Sim;

/// Runs `sim` in steps of `step` until `done` holds, and returns when it first did (to
/// the step's resolution); `None` once `limit` has passed without it.
pub(crate) fn poll_until(
    sim: &mut Sim,
    step: Duration,
    limit: Instant,
    done: impl Fn(&Sim) -> bool,
) -> Option<Instant> {
    loop {
        if done(sim) {
            return Some(sim.now());
        }
        if sim.now() >= limit {
            return None;
        }
        sim.run_for(step);
    }
}
