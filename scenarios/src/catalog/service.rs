//! Scenarios of a service workload: clients calling workers through the resilience
//! policies of `conclave_core::resilience` (the setups of [`crate::service`]), with their
//! own bounds beside the simulator's workload checkers.

use std::collections::BTreeSet;
use std::time::Duration;

use conclave_core::resilience::Policy;
use conclave_core::{Instant, NodeId};
use conclave_sim::{
    Checker, ClusterSnapshot, Disk, Fault, FaultPlan, Finding, LinkParams, LinkSelector, WorkloadEvent,
};

use super::{draws, millis_between, Members, Preset, Scenario};
use crate::service::{cascade_workload, split, storm_workload};

/// Links of 500 µs that duplicate 1 % of what they carry, from the start: workers see copies
/// of requests, which their idempotency windows must answer without running them again.
fn duplicating_links() -> Fault {
    Fault::SetLinks { links: LinkSelector::All, params: LinkParams::default().with_duplicate(0.01) }
}

/// One worker crashes under load; the others must not follow.
pub(crate) const CASCADING_FAILURE: Scenario = Scenario {
    name: "cascading-failure",
    summary: "a worker crashes under 85 % load: no other worker crashes overloaded, and 70 % of calls complete",
    doc: "Ten members: five clients call five workers through the default resilience policy, at 85 % \
          of what the workers can serve (two servers each, log-normal service times of median 20 ms), \
          from 10 s to 70 s; a worker that holds more than 100 requests crashes. Between 20 and 21 s \
          one worker, drawn from the seed, crashes, and the other four are asked 106 % of what they \
          serve. Without shedding and breakers they crash one after another within seconds \
          (`bench resilience`); with the defaults the concurrency limit sheds what is past it, so no \
          worker may crash overloaded, and at least 70 % of the calls must complete (81 % in the \
          bench; the rest fail at once, shed or refused by a breaker). Every call must end once, by \
          its deadline; no request may run twice within its idempotency window (links duplicate \
          1 %); retries stay within the budget.",
    members: Members::Fixed(10),
    min_members: 4,
    preset: Preset::Lan,
    voters: 5,
    default_seeds: 3,
    plan: |seed, n| {
        let mut rng = draws(seed, "cascading-failure");
        let (_, workers) = split(n);
        let victim = workers[rng.below(workers.len() as u64) as usize];
        let at = Instant::from_secs(20) + millis_between(&mut rng, 0, 999);
        FaultPlan::new().at(Instant::ZERO, duplicating_links()).at(at, Fault::Crash(victim))
    },
    bounds: |_| vec![Box::new(NoOverloadCrash::default()), Box::new(CallsComplete::at_least(0.7))],
    service: Some(|members| cascade_workload(members, Policy::default())),
};

/// Within this of the workers' return, calls complete again: they rejoin, membership tells
/// the clients, and a breaker left open lets its probes through (`bench resilience` and this
/// scenario's runs: well under a second).
pub(crate) const SERVICE_BACK_WITHIN: Duration = Duration::from_secs(5);

/// Every worker goes away for ten seconds under load, then comes back.
pub(crate) const RETRY_STORM: Scenario = Scenario {
    name: "retry-storm",
    summary: "every worker is down for 10 s under load: retries stay within the budget, and service is back within 5 s",
    doc: "Ten members: five clients call five workers through the default resilience policy, 100 \
          calls a second each, from 10 s to 70 s. Between 20 and 21 s every worker crashes at once, \
          and ten seconds later they all restart with their disks. While they are gone the clients' \
          attempts find nobody: the retry storm the retry budget is there to stop, so each client's \
          retries and hedges must stay within what its budget allows (10 % of its requests plus 1 a \
          second), and every call must still end, failed, by its deadline. Once the workers are back, \
          every call started 5 s after their return must complete (rejoining, and breakers left open \
          letting their probes through, take well under a second).",
    members: Members::Fixed(10),
    min_members: 4,
    preset: Preset::Lan,
    voters: 5,
    default_seeds: 3,
    plan: |seed, n| {
        let mut rng = draws(seed, "retry-storm");
        let (_, workers) = split(n);
        let down = Instant::from_secs(20) + millis_between(&mut rng, 0, 999);
        let back = down + Duration::from_secs(10);
        let mut plan = FaultPlan::new().at(Instant::ZERO, duplicating_links());
        for &worker in &workers {
            plan.push(down, Fault::Crash(worker));
        }
        for &worker in &workers {
            plan.push(back, Fault::Restart { node: worker, disk: Disk::Kept });
        }
        plan
    },
    bounds: |_| vec![Box::new(ServesAgain::within(SERVICE_BACK_WITHIN))],
    service: Some(|members| storm_workload(members, Policy::default())),
};

/// No worker crashes overloaded.
#[derive(Debug, Default)]
pub(crate) struct NoOverloadCrash {
    calls: u64,
}

impl NoOverloadCrash {
    /// The checker's name.
    pub(crate) const NAME: &'static str = "no-worker-crashes-overloaded";
}

impl Checker for NoOverloadCrash {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn wants_workload(&self) -> bool {
        true
    }

    fn workload(&mut self, at: Instant, event: &WorkloadEvent, findings: &mut Vec<Finding>) {
        match *event {
            WorkloadEvent::CallStarted { .. } => self.calls += 1,
            WorkloadEvent::OverloadCrash { worker, backlog } => findings.push(Finding {
                at,
                message: format!("{worker} crashed, overloaded with {backlog} requests: the load cascaded"),
            }),
            _ => {}
        }
    }

    fn not_judged(&self) -> Option<String> {
        (self.calls == 0).then(|| "no call was made".to_string())
    }
}

/// At least a share of the calls that ended completed.
#[derive(Debug)]
pub(crate) struct CallsComplete {
    share: f64,
    completed: u64,
    ended: u64,
}

impl CallsComplete {
    /// The checker's name.
    pub(crate) const NAME: &'static str = "calls-complete-at-least";

    /// At least `share` (in [0, 1]) of the calls that ended must have completed.
    pub(crate) fn at_least(share: f64) -> Self {
        Self { share, completed: 0, ended: 0 }
    }
}

impl Checker for CallsComplete {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn wants_workload(&self) -> bool {
        true
    }

    fn workload(&mut self, _at: Instant, event: &WorkloadEvent, _findings: &mut Vec<Finding>) {
        match event {
            WorkloadEvent::CallCompleted { .. } => {
                self.completed += 1;
                self.ended += 1;
            }
            WorkloadEvent::CallFailed { .. } | WorkloadEvent::CallAbandoned { .. } => self.ended += 1,
            _ => {}
        }
    }

    fn finish(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        if self.ended > 0 && (self.completed as f64) < self.share * self.ended as f64 {
            findings.push(Finding {
                at: snapshot.at,
                message: format!(
                    "{} of {} calls completed ({:.1} %), fewer than {:.0} %",
                    self.completed,
                    self.ended,
                    100.0 * self.completed as f64 / self.ended as f64,
                    100.0 * self.share
                ),
            });
        }
    }

    fn not_judged(&self) -> Option<String> {
        (self.ended == 0).then(|| "no call ended".to_string())
    }
}

/// Once the workers that went away are back, service is too: every call started `within`
/// after the last worker's restart completes.
#[derive(Debug)]
pub(crate) struct ServesAgain {
    within: Duration,
    /// When the last member restarted.
    back: Option<Instant>,
    /// Calls started `within` after it, not ended yet.
    watched: BTreeSet<(NodeId, u64)>,
    completed: u64,
}

impl ServesAgain {
    /// The checker's name.
    pub(crate) const NAME: &'static str = "service-back-after-restart";

    /// Calls started `within` after the last restart must complete.
    pub(crate) fn within(within: Duration) -> Self {
        Self { within, back: None, watched: BTreeSet::new(), completed: 0 }
    }
}

impl Checker for ServesAgain {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn wants_workload(&self) -> bool {
        true
    }

    fn fault(&mut self, at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        if let Fault::Restart { .. } = fault {
            self.back = Some(at);
            self.watched.clear();
        }
    }

    fn workload(&mut self, at: Instant, event: &WorkloadEvent, findings: &mut Vec<Finding>) {
        match *event {
            WorkloadEvent::CallStarted { client, call, .. }
                if self.back.is_some_and(|back| at >= back + self.within) =>
            {
                self.watched.insert((client, call));
            }
            WorkloadEvent::CallCompleted { client, call, .. } if self.watched.remove(&(client, call)) => {
                self.completed += 1;
            }
            WorkloadEvent::CallFailed { client, call, error, .. } if self.watched.remove(&(client, call)) => {
                let back = self.back.unwrap_or(Instant::ZERO);
                findings.push(Finding {
                    at,
                    message: format!(
                        "{client}'s call {call}, started {:?} after the workers came back at {back}, failed: {error}",
                        at.saturating_duration_since(back)
                    ),
                });
            }
            _ => {}
        }
    }

    fn not_judged(&self) -> Option<String> {
        match self.back {
            None => Some("no member restarted".to_string()),
            Some(back) if self.completed == 0 => {
                Some(format!("no call started {:?} after the restart at {back} completed", self.within))
            }
            Some(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use conclave_core::resilience::CallError;

    use super::*;

    const C: NodeId = NodeId(1);

    fn end(c: &mut dyn Checker, at: Instant, event: WorkloadEvent) -> Vec<Finding> {
        let mut findings = Vec::new();
        c.workload(at, &event, &mut findings);
        findings
    }

    fn started(call: u64) -> WorkloadEvent {
        WorkloadEvent::CallStarted { client: C, call, deadline: Duration::from_secs(1) }
    }

    fn completed(call: u64) -> WorkloadEvent {
        WorkloadEvent::CallCompleted { client: C, call, worker: NodeId(2), attempts: 1, latency: Duration::ZERO }
    }

    fn failed(call: u64) -> WorkloadEvent {
        WorkloadEvent::CallFailed { client: C, call, error: CallError::NoWorker, attempts: 0 }
    }

    #[test]
    fn an_overload_crash_is_a_cascade() {
        let mut c = NoOverloadCrash::default();
        assert!(c.not_judged().is_some());
        assert!(end(&mut c, Instant::ZERO, started(1)).is_empty());
        let found = end(&mut c, Instant::ZERO, WorkloadEvent::OverloadCrash { worker: NodeId(7), backlog: 101 });
        assert!(found[0].message.contains("n7 crashed, overloaded with 101"), "{}", found[0].message);
        assert_eq!(c.not_judged(), None);
    }

    #[test]
    fn too_few_completed_calls_are_found_at_the_end() {
        let at_end = ClusterSnapshot { at: Instant::from_secs(9), nodes: Vec::new() };
        let mut c = CallsComplete::at_least(0.7);
        assert!(c.not_judged().is_some());
        for call in 0..7 {
            end(&mut c, Instant::ZERO, completed(call));
        }
        for call in 7..10 {
            end(&mut c, Instant::ZERO, failed(call));
        }
        let mut findings = Vec::new();
        c.finish(&at_end, &mut findings);
        assert!(findings.is_empty(), "7 of 10 is 70 %");
        end(&mut c, Instant::ZERO, WorkloadEvent::CallAbandoned { client: C, call: 10 });
        c.finish(&at_end, &mut findings);
        assert!(findings[0].message.contains("7 of 11 calls completed (63.6 %), fewer than 70 %"), "{findings:?}");
    }

    #[test]
    fn a_call_failing_after_the_workers_came_back_is_found() {
        let mut c = ServesAgain::within(Duration::from_secs(5));
        assert!(c.not_judged().is_some_and(|s| s.contains("no member restarted")));
        let mut findings = Vec::new();
        c.fault(Instant::from_secs(30), &Fault::Restart { node: NodeId(6), disk: Disk::Kept }, &mut findings);
        // Started within the 5 s: not judged.
        assert!(end(&mut c, Instant::from_secs(34), started(1)).is_empty());
        assert!(end(&mut c, Instant::from_secs(34), failed(1)).is_empty());
        assert!(c.not_judged().is_some());
        end(&mut c, Instant::from_secs(35), started(2));
        end(&mut c, Instant::from_secs(35), started(3));
        assert!(end(&mut c, Instant::from_secs(35), completed(2)).is_empty());
        let found = end(&mut c, Instant::from_secs(36), failed(3));
        assert!(found[0].message.contains("n1's call 3, started 6s after the workers came back at 30.000s"));
        assert_eq!(c.not_judged(), None);
    }
}
