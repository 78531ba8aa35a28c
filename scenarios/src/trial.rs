//! A trial: one scenario (or a plan file) on one cluster with one seed, run until every
//! checker has judged, with the figures a sweep collects.

use std::time::Duration;

use conclave_core::Instant;
use conclave_sim::check::NO_ELECTION;
use conclave_sim::{FaultPlan, Report, Sim, SimBuilder, Status, TraceMode, Violation};

use crate::catalog::{self, Preset, Scenario};
use crate::error::Error;
use crate::metrics::{Metrics, Traffic};
use crate::plan_file::PlanFile;

/// How long a trial may run past its plan's last step before a check that has not judged
/// fails it.
pub const JUDGEMENT_LIMIT: Duration = Duration::from_secs(1800);

/// What runs: a scenario's bounds (or only the standard checkers), a cluster, a seed and a
/// fault plan.
#[derive(Clone, Debug)]
pub struct Trial {
    /// The scenario whose bounds judge the run; `None`: the standard checkers alone.
    pub scenario: Option<&'static Scenario>,
    /// The seed of every random draw.
    pub seed: u64,
    /// The cluster size.
    pub members: usize,
    /// How many of the first members vote.
    pub voters: usize,
    /// The protocol settings.
    pub preset: Preset,
    /// The faults.
    pub plan: FaultPlan,
}

/// A finished trial: the simulator's report and the figures.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Everything the checkers concluded, the trace hash, the counters.
    pub report: Report,
    /// Detection, election, partition and load figures.
    pub metrics: Metrics,
}

impl Outcome {
    /// Whether every check judged and held.
    pub fn held(&self) -> bool {
        self.report.is_clean()
    }

    /// The earliest violation, if any.
    pub fn first_violation(&self) -> Option<&Violation> {
        self.report.violations.iter().min_by_key(|v| v.at)
    }

    /// The first failed check's name: the earliest violation's checker, else the first
    /// check that could not judge (and was not opted out of).
    pub fn failed_check(&self) -> Option<&'static str> {
        self.first_violation().map(|v| v.checker).or_else(|| {
            self.report
                .checks
                .iter()
                .find(|c| matches!(c.status, Status::NotJudged(_)) && !c.opted_out)
                .map(|c| c.checker)
        })
    }
}

impl Trial {
    /// Seed `seed` of `scenario`, on its default cluster or on `members`.
    pub fn of(scenario: &'static Scenario, seed: u64, members: Option<usize>) -> Result<Self, Error> {
        let members = members.unwrap_or_else(|| scenario.members_for(seed));
        if members < scenario.min_members {
            return Err(Error::TooFewMembers { scenario: scenario.name, members, min: scenario.min_members });
        }
        Ok(Self {
            scenario: Some(scenario),
            seed,
            members,
            voters: scenario.voters_for(members),
            preset: scenario.preset,
            plan: (scenario.plan)(seed, members),
        })
    }

    /// The scenario named `name`.
    pub fn named(name: &str, seed: u64, members: Option<usize>) -> Result<Self, Error> {
        let scenario = catalog::find(name).ok_or_else(|| Error::UnknownScenario(name.to_string()))?;
        Self::of(scenario, seed, members)
    }

    /// The trial a plan file describes.
    pub fn from_file(file: &PlanFile) -> Result<Self, Error> {
        let scenario = match &file.scenario {
            Some(name) => Some(catalog::find(name).ok_or_else(|| Error::UnknownScenario(name.clone()))?),
            None => None,
        };
        let trial = Self {
            scenario,
            seed: file.seed,
            members: file.members,
            voters: file.voters,
            preset: file.preset,
            plan: file.plan.clone(),
        };
        trial.validate()?;
        Ok(trial)
    }

    /// The plan file that replays this trial.
    pub fn plan_file(&self) -> PlanFile {
        PlanFile {
            scenario: self.scenario.map(|s| s.name.to_string()),
            seed: self.seed,
            members: self.members,
            voters: self.voters,
            preset: self.preset,
            plan: self.plan.clone(),
        }
    }

    /// The scenario's name, or `plan` for a plan of its own.
    pub fn name(&self) -> &'static str {
        self.scenario.map_or("plan", |s| s.name)
    }

    /// Whether the plan names only members of the cluster.
    pub fn validate(&self) -> Result<(), Error> {
        if self.members == 0 {
            return Err(Error::TooFewMembers { scenario: self.name(), members: 0, min: 1 });
        }
        match self.plan.highest_member() {
            Some(m) if m.0 as usize > self.members || m.0 == 0 => {
                Err(Error::PlanNamesOthers { member: m, members: self.members })
            }
            _ => Ok(()),
        }
    }

    /// The simulation: the cluster, the plan, the standard checkers, keeping `trace`.
    pub fn builder(&self, trace: TraceMode) -> SimBuilder {
        let mut builder = SimBuilder::new()
            .seed(self.seed)
            .members(self.members)
            .config(self.preset.config())
            .plan(self.plan.clone())
            .trace(trace);
        builder = if self.voters == 0 { builder.opt_out_of(NO_ELECTION) } else { builder.voters(self.voters) };
        if let Some(service) = self.scenario.and_then(|s| s.service) {
            builder = builder.workload(service(self.members));
        }
        builder
    }

    /// Builds the simulation with the scenario's bounds added.
    pub fn build(&self, trace: TraceMode, replay: Option<String>) -> Result<Sim, Error> {
        self.validate()?;
        let mut builder = self.builder(trace);
        if let Some(replay) = replay {
            builder = builder.replay_command(replay);
        }
        let mut sim = builder.build().map_err(Error::Sim)?;
        if let Some(scenario) = self.scenario {
            let setup = Scenario::setup(self.preset, self.members, self.voters);
            for checker in (scenario.bounds)(&setup) {
                sim.add_checker(checker);
            }
        }
        Ok(sim)
    }

    /// Runs until every checker has judged (at most [`JUDGEMENT_LIMIT`] past the plan's
    /// last step), keeping `trace` (the figures need at least the events), with `replay`
    /// as the command a violation prints.
    pub fn run(&self, trace: TraceMode, replay: Option<String>) -> Result<Outcome, Error> {
        let trace = if trace == TraceMode::HashOnly { TraceMode::Events } else { trace };
        let mut sim = self.build(trace, replay)?;
        let mut traffic = Traffic::default();
        // A process's counters go with it: read each just before the step that stops it.
        let mut stops: Vec<Instant> = self
            .plan
            .steps
            .iter()
            .filter(|s| matches!(s.fault, conclave_sim::Fault::Crash(_) | conclave_sim::Fault::Restart { .. }))
            .map(|s| s.at)
            .filter(|&at| at > Instant::ZERO)
            .collect();
        stops.sort();
        stops.dedup();
        for at in stops {
            sim.run_until(at - Duration::from_nanos(1));
            for step in self.plan.steps.iter().filter(|s| s.at == at) {
                if let conclave_sim::Fault::Crash(node) | conclave_sim::Fault::Restart { node, .. } = step.fault {
                    traffic.add(sim.node(node));
                }
            }
        }
        let limit = self.plan.last_at().unwrap_or(Instant::ZERO) + JUDGEMENT_LIMIT;
        sim.run_until_judged(limit);
        for id in sim.ids() {
            traffic.add(sim.node(id));
        }
        let report = sim.finish();
        let metrics = Metrics::of(&self.plan, &report, traffic, self.members);
        Ok(Outcome { report, metrics })
    }

    /// The `conclave` arguments that replay this trial of a catalog scenario (after the
    /// program's name), or `None` for a plan of its own.
    pub fn replay_args(&self) -> Option<String> {
        let scenario = self.scenario?;
        let members = if self.members == scenario.members_for(self.seed)
            && self.plan == (scenario.plan)(self.seed, self.members)
        {
            String::new()
        } else if self.plan == (scenario.plan)(self.seed, self.members) {
            format!(" --members {}", self.members)
        } else {
            return None;
        };
        Some(format!("run {} --seed {}{members}", scenario.name, self.seed))
    }
}

/// The Cargo features this build has that a replay needs (the test-only broken protocol):
/// a replay line built without them would run another protocol.
pub const FEATURES: &str = if cfg!(feature = "__broken_refutation") { "__broken_refutation" } else { "" };

/// How the `conclave` command is run from a checkout of the project, with this build's
/// [`FEATURES`]: what a printed replay line starts with when no installed command is known.
pub fn cargo_run() -> String {
    let features = if FEATURES.is_empty() { String::new() } else { format!(" --features {FEATURES}") };
    format!("cargo run --release -p conclave-scenarios{features} --")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trial_of_too_few_members_or_a_plan_naming_others_is_refused() {
        let err = Trial::named("partial-connectivity", 1, Some(4)).expect_err("needs five");
        assert!(err.to_string().contains("at least 5"), "{err}");
        assert!(matches!(Trial::named("no-such", 1, None), Err(Error::UnknownScenario(_))));
        let mut trial = Trial::named("crash-detection", 1, Some(3)).expect("three will do");
        trial.plan = "at 1s crash n7".parse().expect("a plan");
        assert!(trial.build(TraceMode::Events, None).is_err());
    }

    #[test]
    fn replay_arguments_name_the_seed_and_a_size_other_than_the_default() {
        let trial = Trial::named("crash-detection", 3, None).expect("valid");
        assert_eq!(trial.replay_args().as_deref(), Some("run crash-detection --seed 3"));
        let trial = Trial::named("crash-detection", 3, Some(4)).expect("valid");
        assert_eq!(trial.replay_args().as_deref(), Some("run crash-detection --seed 3 --members 4"));
        let mut shrunk = trial.clone();
        shrunk.plan = FaultPlan::new();
        assert_eq!(shrunk.replay_args(), None, "a changed plan is replayed from its file");
    }
}
