//! What a finished run hands back: [`Report`] and its counters, [`SimStats`].

use conclave_core::{Event, Instant, NodeId};

use super::Sim;
use crate::check::{Outcome, Status, Violation};
use crate::trace::{TraceMode, TraceRecord};
use crate::workload::{WorkloadEvent, WorkloadReport};

/// Counters of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimStats {
    /// Datagrams handed to a member.
    pub delivered: u64,
    /// Of those, refused by the member (corrupted, say).
    pub rejected: u64,
    /// Dropped by a cut link.
    pub dropped_partition: u64,
    /// Lost on a lossy link.
    pub dropped_loss: u64,
    /// Addressed to a member whose process was not running.
    pub dropped_down: u64,
    /// Addressed to no member.
    pub dropped_no_route: u64,
    /// Extra copies made by duplicating links.
    pub duplicated: u64,
    /// Datagrams damaged by corrupting links.
    pub corrupted: u64,
    /// Stale copies held back to be delivered much later.
    pub stale: u64,
    /// Timer wake-ups handled.
    pub timers: u64,
    /// Events the members emitted.
    pub events: u64,
    /// Faults applied.
    pub faults: u64,
    /// Events the engine processed (all kinds).
    pub steps: u64,
}

impl SimStats {
    /// Datagrams dropped, all reasons.
    pub fn dropped(&self) -> u64 {
        self.dropped_partition + self.dropped_loss + self.dropped_down + self.dropped_no_route
    }
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Global virtual time at the end.
    pub end: Instant,
    /// The trace hash.
    pub trace_hash: u64,
    /// Counters.
    pub stats: SimStats,
    /// Every broken property.
    pub violations: Vec<Violation>,
    /// What every checker concluded, in the order they were added.
    pub checks: Vec<Outcome>,
    /// The checker names the test opted out of.
    pub opt_outs: Vec<&'static str>,
    /// The plan, in its text form (it parses back: `report.plan.parse::<FaultPlan>()`).
    pub plan: String,
    /// The command that replays the run.
    pub replay: String,
    /// The service workload's figures, if the run had one.
    pub workload: Option<WorkloadReport>,
    mode: TraceMode,
    records: Vec<TraceRecord>,
}

impl Report {
    /// Panics, naming each checker and why, if a checker was violated, or could not judge
    /// the run and the test did not opt out of it ([`SimBuilder::opt_out`](super::SimBuilder::opt_out)), or the test
    /// opted out of a checker the run did not have. Every violation prints the seed, the
    /// plan and the replay command.
    #[track_caller]
    pub fn assert_clean(&self) {
        let problems = self.problems();
        if !problems.is_empty() {
            panic!("{}", problems.join("\n"));
        }
    }

    /// Whether [`Report::assert_clean`] passes.
    pub fn is_clean(&self) -> bool {
        self.problems().is_empty()
    }

    /// What [`Report::assert_clean`] complains about, one line each (violations span
    /// several lines).
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self.violations.iter().map(ToString::to_string).collect();
        if !out.is_empty() {
            out.insert(0, format!("{} violation(s):", self.violations.len()));
        }
        for check in &self.checks {
            if let Status::NotJudged(why) = &check.status {
                if !check.opted_out {
                    out.push(format!(
                        "{} could not judge the run (seed {}): {why}; opt out of it by name if no judgement is possible here\n  plan: {}\n  replay: {}",
                        check.checker, self.seed, self.plan, self.replay
                    ));
                }
            }
        }
        for name in &self.opt_outs {
            if !self.checks.iter().any(|c| c.checker == *name) {
                out.push(format!("the test opted out of `{name}`, which is no checker of this run"));
            }
        }
        out
    }

    /// The checker `name`'s conclusion.
    pub fn status(&self, name: &str) -> Option<&Status> {
        self.checks.iter().find(|c| c.checker == name).map(|c| &c.status)
    }

    /// Every record of the trace.
    ///
    /// # Panics
    ///
    /// If the run did not keep them: build it with `.trace(TraceMode::Record)`.
    #[track_caller]
    pub fn records(&self) -> &[TraceRecord] {
        all_records(self.mode, &self.records)
    }

    /// Every event the members emitted: `(time, member, event)`, in order.
    ///
    /// # Panics
    ///
    /// If the run kept no records (`TraceMode::HashOnly`).
    #[track_caller]
    pub fn events(&self) -> impl Iterator<Item = (Instant, NodeId, &Event)> + '_ {
        events_of(self.mode, &self.records)
    }

    /// Everything the service workload did: `(time, event)`, in order.
    ///
    /// # Panics
    ///
    /// If the run kept no records (`TraceMode::HashOnly`).
    #[track_caller]
    pub fn workload_events(&self) -> impl Iterator<Item = (Instant, &WorkloadEvent)> + '_ {
        assert!(self.mode != TraceMode::HashOnly, "the run kept none of its trace's records (TraceMode::HashOnly)");
        self.records.iter().filter_map(|r| match r {
            TraceRecord::Workload { at, event } => Some((*at, event)),
            _ => None,
        })
    }
}

/// Every record, for a run that kept them all.
#[track_caller]
pub(super) fn all_records(mode: TraceMode, records: &[TraceRecord]) -> &[TraceRecord] {
    assert!(
        mode == TraceMode::Record,
        "the run keeps {} of its trace's records, not all: build it with .trace(TraceMode::Record)",
        mode.kept()
    );
    records
}

#[track_caller]
pub(super) fn events_of(
    mode: TraceMode,
    records: &[TraceRecord],
) -> impl Iterator<Item = (Instant, NodeId, &Event)> + '_ {
    assert!(
        mode != TraceMode::HashOnly,
        "the run kept none of its trace's records (TraceMode::HashOnly): build it with the default trace mode, or .trace(TraceMode::Events)"
    );
    records.iter().filter_map(|r| match r {
        TraceRecord::Event { at, node, event } => Some((*at, *node, event)),
        _ => None,
    })
}

impl Sim {
    /// Ends the run: final checks on a snapshot of every view, and the report.
    pub fn finish(mut self) -> Report {
        let workload = self.finish_workload();
        let snapshot = self.snapshot();
        let mut findings = std::mem::take(&mut self.findings);
        for c in 0..self.checkers.len() {
            self.checkers[c].finish(&snapshot, &mut findings);
            self.report(c, &mut findings);
        }
        let mut checks: Vec<Outcome> = self
            .checkers
            .iter()
            .map(|c| {
                let name = c.name();
                let violated = self.violations.iter().filter(|v| v.checker == name).count();
                let status = match c.not_judged() {
                    _ if violated > 0 => Status::Violated(violated),
                    Some(why) => Status::NotJudged(why),
                    None => Status::Held,
                };
                Outcome { checker: name, status, opted_out: self.opt_outs.contains(&name) }
            })
            .collect();
        // The engine's own checks: no member panicked, restarted or spun.
        for name in ["no-panic", "restart", "no-timer-livelock"] {
            let violated = self.violations.iter().filter(|v| v.checker == name).count();
            let status = if violated > 0 { Status::Violated(violated) } else { Status::Held };
            checks.push(Outcome { checker: name, status, opted_out: false });
        }
        Report {
            seed: self.seed,
            end: Instant::from_nanos(self.now),
            trace_hash: self.hasher.finish(),
            stats: self.stats,
            violations: self.violations,
            checks,
            opt_outs: self.opt_outs,
            plan: self.plan_text,
            replay: self.replay,
            workload,
            mode: self.mode,
            records: self.records,
        }
    }
}
