//! Checkers: properties every run must keep, checked while it runs and at its end.
//!
//! A [`Checker`] sees what the simulator sees: faults as they are applied, every event a
//! member emits, an [`Observation`] of a member's leader, term and lease whenever one of
//! them changes, and [`ClusterSnapshot`]s of every member's view at the times it asks for
//! and at the end. It reports [`Finding`]s; the simulator turns them into
//! [`Violation`]s that carry the seed, the plan and the command that replays the run.
//!
//! The checkers only read these values, so each is unit-tested with synthetic
//! observations; the leader and lease checkers bite as soon as the core elects leaders.
//!
//! The trait and what it is fed live here, what a checker concluded in `outcome`
//! ([`Status`], [`Outcome`], [`Violation`]), and the standard checkers one family to a
//! file: `election` ([`OneLeaderPerTerm`], [`ElectsAfterHeal`], [`LeaseExclusive`]),
//! `verdicts` ([`NoFalseVerdicts`]), `convergence` ([`Converges`]), `promises`
//! ([`IncarnationsNeverReused`], [`SuspicionWithinBounds`], [`RefutesClaims`]), the
//! whole-cluster bounds read off faults, events and the datagrams themselves: `detection`
//! ([`DetectedWithinBound`], [`BytesWithinBound`]), `leadership` ([`LeaderHearsMajority`],
//! [`PreVoteSticky`], [`VotePersistedFirst`], [`LeaseWithinPromises`]) and `partition` ([`MinorityReadOnly`]), and, for runs
//! with a service workload, `workload` ([`CallsEnd`], [`NoDuplicateExecution`],
//! [`AttemptsWithinBudget`]).

use std::collections::BTreeMap;
use std::time::Duration;

use conclave_core::wire::ElectionMessage;
use conclave_core::{Config, Durable, Event, Instant, MemberState, NodeId};

use crate::fault::{Disk, Fault, FaultPlan};
use crate::network::{Latency, LinkParams};
use crate::workload::WorkloadEvent;

mod convergence;
mod detection;
mod election;
mod leadership;
mod outcome;
mod partition;
mod promises;
mod verdicts;
mod workload;

pub use convergence::Converges;
pub use detection::{BytesWithinBound, DetectedWithinBound};
pub use election::{ElectsAfterHeal, LeaseExclusive, OneLeaderPerTerm};
pub use leadership::{LeaderHearsMajority, LeaseWithinPromises, PreVoteSticky, VotePersistedFirst};
pub use outcome::{Outcome, Status, Violation};
pub use partition::MinorityReadOnly;
pub use promises::{IncarnationsNeverReused, RefutesClaims, SuspicionWithinBounds};
pub use verdicts::NoFalseVerdicts;
pub use workload::{AttemptsWithinBudget, CallsEnd, NoDuplicateExecution};

/// One member's election state, as the simulator read it after the member handled an input.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// Global virtual time.
    pub at: Instant,
    /// The member.
    pub node: NodeId,
    /// Its term.
    pub term: u64,
    /// Whom it believes leads in that term.
    pub leader: Option<NodeId>,
    /// Whether it holds the leader lease at its own `now`.
    pub leaseholder: bool,
    /// When its lease ends, in global time (its own clock's reading converted as that
    /// clock runs), while it leads and a majority acked it; `None` otherwise.
    pub lease_until: Option<Instant>,
    /// Its clock's drift, parts per million.
    pub drift_ppm: f64,
    /// Whether its clock ever stepped (an offset change or a jump).
    pub clock_stepped: bool,
}

/// One member's view at a moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSnapshot {
    /// The member.
    pub id: NodeId,
    /// Whether its process runs.
    pub up: bool,
    /// What it believes about every member it knows, itself included.
    pub view: BTreeMap<NodeId, MemberState>,
    /// The election term it knows (0 when down or electing nobody).
    pub term: u64,
    /// The leader it knows.
    pub leader: Option<NodeId>,
}

/// Every member's view at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSnapshot {
    /// Global virtual time.
    pub at: Instant,
    /// One entry per member, running or not.
    pub nodes: Vec<NodeSnapshot>,
}

/// What a checker found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Global virtual time.
    pub at: Instant,
    /// What is wrong, in one sentence.
    pub message: String,
}

/// What a checker is told when a run starts.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// The run's seed.
    pub seed: u64,
    /// Its fault plan.
    pub plan: FaultPlan,
    /// Its members.
    pub members: Vec<NodeId>,
}

/// A property checked during and after a run. Every method has a default that does
/// nothing, so a checker implements only what it needs.
///
/// A checker that could not judge the run (its deadline lay past the run's end, the thing
/// it watches never happened) says so in [`Checker::not_judged`]: the report then lists it
/// as such, and [`Report::assert_clean`](crate::Report::assert_clean) fails unless the test
/// opted out of it by name. A checker that owes a judgement at a known time says when in
/// [`Checker::pending`]: the simulator takes a snapshot for it then, and
/// [`Sim::run_until_judged`](crate::Sim::run_until_judged) runs until none is owed.
pub trait Checker {
    /// The property's name, like `at-most-one-leader-per-term`.
    fn name(&self) -> &'static str;

    /// The run starts; returns the global times at which the checker wants a snapshot.
    fn start(&mut self, info: &RunInfo) -> Vec<Instant> {
        let _ = info;
        Vec::new()
    }

    /// A fault was applied.
    fn fault(&mut self, at: Instant, fault: &Fault, findings: &mut Vec<Finding>) {
        let _ = (at, fault, findings);
    }

    /// `node` emitted `event`.
    fn event(&mut self, at: Instant, node: NodeId, event: &Event, findings: &mut Vec<Finding>) {
        let _ = (at, node, event, findings);
    }

    /// A member's leader, term or lease, as a driver that knows them reported it
    /// ([`Sim::observe`](crate::Sim::observe)).
    fn observe(&mut self, observation: &Observation, findings: &mut Vec<Finding>) {
        let _ = (observation, findings);
    }

    /// A member's process started and advertises `incarnation`, or a running member's own
    /// incarnation changed (before it sent anything with the new one). Called only for
    /// checkers that ask for it with [`Checker::wants_incarnations`].
    fn incarnation(
        &mut self,
        at: Instant,
        node: NodeId,
        incarnation: u64,
        change: IncarnationChange,
        findings: &mut Vec<Finding>,
    ) {
        let _ = (at, node, incarnation, change, findings);
    }

    /// Whether the simulator should read every member's own incarnation after each input
    /// and report it through [`Checker::incarnation`] (it costs a lookup per input).
    fn wants_incarnations(&self) -> bool {
        false
    }

    /// The service workload did something. Called only for checkers that ask for it with
    /// [`Checker::wants_workload`].
    fn workload(&mut self, at: Instant, event: &WorkloadEvent, findings: &mut Vec<Finding>) {
        let _ = (at, event, findings);
    }

    /// Whether the simulator should hand this checker every [`WorkloadEvent`] (a run with
    /// a workload has several per call).
    fn wants_workload(&self) -> bool {
        false
    }

    /// `from` put a datagram of `len` bytes on the network (whatever becomes of it).
    /// Called only for checkers that ask for it with [`Checker::wants_datagrams`].
    fn sent(&mut self, at: Instant, from: NodeId, len: usize, findings: &mut Vec<Finding>) {
        let _ = (at, from, len, findings);
    }

    /// An election message: as `from` put it on the network for `to` (`delivered` false),
    /// or as it reached `to`, just before `to` handles it (`delivered` true). Called only
    /// for checkers that ask for it with [`Checker::wants_datagrams`], in runs with voters.
    fn election(
        &mut self,
        at: Instant,
        from: NodeId,
        to: NodeId,
        message: &ElectionMessage,
        delivered: bool,
        findings: &mut Vec<Finding>,
    ) {
        let _ = (at, from, to, message, delivered, findings);
    }

    /// `node` handed its durable state to its disk (`Output::Persist`), which now holds
    /// `durable`. Called only for checkers that ask for it with
    /// [`Checker::wants_datagrams`].
    fn persisted(&mut self, at: Instant, node: NodeId, durable: &Durable, findings: &mut Vec<Finding>) {
        let _ = (at, node, durable, findings);
    }

    /// Whether the simulator should tell this checker of every datagram sent
    /// ([`Checker::sent`]) and of every election message sent and delivered
    /// ([`Checker::election`]): it costs a look at every datagram.
    fn wants_datagrams(&self) -> bool {
        false
    }

    /// A snapshot at one of the times [`Checker::start`] or [`Checker::pending`] asked for.
    fn snapshot(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        let _ = (snapshot, findings);
    }

    /// The run ended here.
    fn finish(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        let _ = (snapshot, findings);
    }

    /// The earliest time at which the checker owes a judgement it has not made yet (a
    /// snapshot is taken for it then), or `None`.
    fn pending(&self) -> Option<Instant> {
        None
    }

    /// After [`Checker::finish`]: why the checker could not judge the run, or `None` if it did.
    fn not_judged(&self) -> Option<String> {
        None
    }
}

/// The checkers of leader election, which cannot judge a run until the core elects a
/// leader: what a test of membership alone opts out of.
pub const NO_ELECTION: &[&str] = &[
    OneLeaderPerTerm::NAME,
    LeaseExclusive::NAME,
    ElectsAfterHeal::NAME,
    LeaderHearsMajority::NAME,
    PreVoteSticky::NAME,
    VotePersistedFirst::NAME,
    LeaseWithinPromises::NAME,
];

/// The standard checkers that judge only a run whose faults provoke what they watch (a
/// member crashed and stayed down past the bound; a member decided it is on the side of a
/// partition that stops). The standard set opts out of their judgement (not of their
/// violations): the report still says, for each, whether it judged.
pub const WHEN_PROVOKED: &[&str] = &[DetectedWithinBound::NAME, MinorityReadOnly::NAME];

/// Why a member's own incarnation is reported to a checker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncarnationChange {
    /// Its process started for the first time.
    Started,
    /// Its process started again, with this disk.
    Restarted(Disk),
    /// The running process changed it (a refutation, say).
    Bumped,
}

/// The shortest suspicion timeout a member with `n` live members in its view starts
/// (memberlist's `suspicion_mult * max(1, log10 n) * probe_interval`).
pub fn min_suspicion_timeout(config: &Config, n: usize) -> Duration {
    config.suspicion_timeouts(n).0
}

/// The longest: [`min_suspicion_timeout`] times `suspicion_max_timeout_mult`.
pub fn max_suspicion_timeout(config: &Config, n: usize) -> Duration {
    config.suspicion_timeouts(n).1
}

/// A link change that makes a link as good as cut: most datagrams lost, or delays of
/// seconds.
pub(crate) fn cuts(params: &LinkParams) -> bool {
    let slow = |d: Duration| d >= Duration::from_millis(500);
    params.loss >= 0.5
        || match params.latency {
            Latency::Constant(d) => slow(d),
            Latency::Uniform { max, .. } => slow(max),
            Latency::Normal { mean, std_dev } => slow(mean + std_dev),
            Latency::LogNormal { median, .. } => slow(median),
            Latency::Pareto { scale, .. } => slow(scale),
        }
}
