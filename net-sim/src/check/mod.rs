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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use conclave_core::{Config, Event, Instant, MemberState, NodeId};

use crate::fault::{Disk, Fault, FaultPlan};
use crate::network::{Latency, LinkParams, LinkSelector};

mod promises;

pub use promises::{IncarnationsNeverReused, RefutesClaims, SuspicionWithinBounds};

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
pub const NO_ELECTION: &[&str] = &[OneLeaderPerTerm::NAME, LeaseExclusive::NAME, ElectsAfterHeal::NAME];

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

/// Election safety: no two members lead the same term. Any member's belief counts: a
/// follower names the leader whose heartbeat it accepted.
///
/// It judges only runs in which some member named a leader; otherwise it could not judge
/// ("no leader was ever elected").
#[derive(Debug, Default)]
pub struct OneLeaderPerTerm {
    leaders: BTreeMap<u64, (NodeId, NodeId, Instant)>,
}

impl OneLeaderPerTerm {
    /// The checker's name.
    pub const NAME: &'static str = "at-most-one-leader-per-term";
}

impl Checker for OneLeaderPerTerm {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn observe(&mut self, o: &Observation, findings: &mut Vec<Finding>) {
        let Some(leader) = o.leader else { return };
        match self.leaders.get(&o.term) {
            None => {
                self.leaders.insert(o.term, (leader, o.node, o.at));
            }
            Some(&(first, by, since)) if first != leader => findings.push(Finding {
                at: o.at,
                message: format!(
                    "term {}: {} says {} leads, but {} said {} leads (at {})",
                    o.term, o.node, leader, by, first, since
                ),
            }),
            Some(_) => {}
        }
    }

    fn not_judged(&self) -> Option<String> {
        self.leaders.is_empty().then(|| "no leader was ever elected".to_string())
    }
}

/// Liveness of the election: by `bound` after the plan's last step (every fault healed),
/// every running member names the same leader, and that leader runs.
///
/// It judges once, at that deadline; a run that ends before it could not judge.
#[derive(Debug)]
pub struct ElectsAfterHeal {
    /// `None` when no member votes: nothing to judge.
    bound: Option<Duration>,
    deadline: Option<Instant>,
    checked: bool,
}

impl ElectsAfterHeal {
    /// The checker's name.
    pub const NAME: &'static str = "elects-after-heal";

    /// A checker giving the cluster `bound` to agree on a leader after the last fault.
    pub fn new(bound: Duration) -> Self {
        Self { bound: Some(bound), deadline: None, checked: false }
    }

    /// The checker of a run in which no member votes: it cannot judge.
    pub fn without_voters() -> Self {
        Self { bound: None, deadline: None, checked: false }
    }

    /// The default bound for `election`: the members that do not vote hear of the leader
    /// at its next announcement, and an election needs a few timeouts when votes split.
    pub fn bound(election: &conclave_core::ElectionConfig) -> Duration {
        election.leader_announce_interval + election.election_timeout_max * 10
    }
}

impl Checker for ElectsAfterHeal {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn start(&mut self, info: &RunInfo) -> Vec<Instant> {
        let Some(bound) = self.bound else { return Vec::new() };
        let deadline = info.plan.last_at().unwrap_or(Instant::ZERO) + bound;
        self.deadline = Some(deadline);
        vec![deadline]
    }

    fn fault(&mut self, at: Instant, _fault: &Fault, _findings: &mut Vec<Finding>) {
        let Some(bound) = self.bound else { return };
        if self.deadline.is_some_and(|d| at + bound > d) {
            self.deadline = Some(at + bound);
            self.checked = false;
        }
    }

    fn snapshot(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        let Some(bound) = self.bound else { return };
        if self.checked || Some(snapshot.at) != self.deadline {
            return;
        }
        self.checked = true;
        let up: Vec<&NodeSnapshot> = snapshot.nodes.iter().filter(|n| n.up).collect();
        let leaders: BTreeSet<Option<NodeId>> = up.iter().map(|n| n.leader).collect();
        let agreed = match leaders.iter().collect::<Vec<_>>()[..] {
            [Some(leader)] => up.iter().any(|n| n.id == *leader).then_some(*leader),
            _ => None,
        };
        if agreed.is_none() {
            let named: Vec<String> = up
                .iter()
                .map(|n| format!("{}: {}", n.id, n.leader.map_or("none".to_string(), |l| l.to_string())))
                .collect();
            findings.push(Finding {
                at: snapshot.at,
                message: format!(
                    "{:?} after the last fault the running members do not agree on a running leader ({})",
                    bound,
                    named.join(", ")
                ),
            });
        }
    }

    fn pending(&self) -> Option<Instant> {
        self.deadline.filter(|_| !self.checked)
    }

    fn not_judged(&self) -> Option<String> {
        (!self.checked).then(|| match (self.bound, self.deadline) {
            (None, _) => "no member votes, so nobody is elected".to_string(),
            (_, Some(d)) => format!("the run ended before {d}, when the leader is judged"),
            (_, None) => "the run never started".to_string(),
        })
    }
}

/// Lease exclusivity: at no moment do two members both hold the leader lease, as long
/// as both clocks stay within the drift bound the leases are built for (and never step).
///
/// Whoever reports observations must re-read every member that last said it holds the
/// lease whenever another one claims it, so "the latest observation of each member" is
/// exact at every claim. It judges only runs in which some member held the lease.
#[derive(Debug)]
pub struct LeaseExclusive {
    max_drift_ppm: f64,
    holders: BTreeMap<NodeId, Instant>,
    ever_held: bool,
}

impl LeaseExclusive {
    /// The checker's name.
    pub const NAME: &'static str = "lease-exclusive";

    /// A checker for leases that tolerate clocks drifting up to `max_drift_ppm`.
    pub fn new(max_drift_ppm: f64) -> Self {
        Self { max_drift_ppm, holders: BTreeMap::new(), ever_held: false }
    }
}

impl Checker for LeaseExclusive {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn observe(&mut self, o: &Observation, findings: &mut Vec<Finding>) {
        let in_bound = !o.clock_stepped && o.drift_ppm.abs() <= self.max_drift_ppm;
        self.ever_held |= o.leaseholder;
        if !(o.leaseholder && in_bound) {
            self.holders.remove(&o.node);
            return;
        }
        for (&other, &since) in &self.holders {
            if other != o.node {
                findings.push(Finding {
                    at: o.at,
                    message: format!(
                        "{} holds the lease (term {}) while {} still holds it (since {})",
                        o.node, o.term, other, since
                    ),
                });
            }
        }
        self.holders.entry(o.node).or_insert(o.at);
    }

    fn fault(&mut self, _at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        if let Fault::Crash(node) | Fault::Restart { node, .. } = fault {
            self.holders.remove(node);
        }
    }

    fn not_judged(&self) -> Option<String> {
        (!self.ever_held).then(|| "no leader was ever elected, so no member ever held the lease".to_string())
    }
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

/// Whose failure verdicts a fault excuses.
#[derive(Clone, Debug)]
enum Whom {
    /// Verdicts about this member.
    About(NodeId),
    /// Verdicts about this member, and its own verdicts about others.
    ByOrAbout(NodeId),
    /// Verdicts between members on different sides (unlisted members share side 0).
    Across(BTreeMap<NodeId, usize>),
    /// Verdicts between the two members of a pair, either way.
    Pairs(BTreeSet<(NodeId, NodeId)>),
    /// Every verdict.
    Everyone,
}

impl Whom {
    fn covers(&self, observer: NodeId, subject: NodeId) -> bool {
        match self {
            Self::About(m) => *m == subject,
            Self::ByOrAbout(m) => *m == subject || *m == observer,
            Self::Across(sides) => {
                let side = |n: &NodeId| sides.get(n).copied().unwrap_or(0);
                side(&observer) != side(&subject)
            }
            Self::Pairs(pairs) => pairs.contains(&(observer, subject)) || pairs.contains(&(subject, observer)),
            Self::Everyone => true,
        }
    }
}

/// What ends an open-ended excuse.
#[derive(Clone, Debug, PartialEq)]
enum EndsWith {
    /// Already ended (a timed fault).
    Nothing,
    /// The member's restart.
    Restart(NodeId),
    /// A heal (and, for a partition, the next partition).
    Heal { partition: bool },
    /// The member's speed restored.
    Speed(NodeId),
    /// A link change on these links, or on all.
    Links(LinkSelector),
}

/// One fault's excuse: whom, from when, until when (plus the grace).
#[derive(Clone, Debug)]
struct Excuse {
    cause: &'static str,
    whom: Whom,
    from: Instant,
    until: Option<Instant>,
    ends: EndsWith,
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

/// No failure verdict (`MemberFailed`) that no fault excuses, beyond a budget of distinct
/// false verdicts (a verdict counts once per member and incarnation, however many
/// observers reach it).
///
/// Each fault excuses some verdicts, for a while:
///
/// - a crash, verdicts about that member while it is down;
/// - a restart, verdicts about the member at its restart;
/// - a partition, verdicts across its sides only (a verdict between two members on the
///   same side is false), until the heal or the next partition;
/// - a one-way cut, verdicts about and by the members it names, until the heal (their
///   indirect probes go through the cut too);
/// - cut links, verdicts between the two ends of a cut link, until the heal;
/// - a pause, verdicts about the paused member and its own, while it lasts;
/// - a slow member, the same, until its speed is restored;
/// - a clock offset or jump, verdicts about and by that member: a forward step at once,
///   a backward step for as long as it (the member's clock stands still meanwhile);
/// - a link change that loses at least half the datagrams or delays them by half a second
///   or more, verdicts between the ends of those links until they change again.
///
/// A verdict is one member at one incarnation: once a fault excused it where it was first
/// reached, or excused the accusation that started its suspicion (the first member to
/// suspect that member at that incarnation), the members that adopt it later (the
/// subject's own side after a heal, a member that heard a one-way-cut member's
/// accusation) are excused too.
///
/// Every excuse lasts one `grace` longer (by default: the longest suspicion timeout plus
/// one probe interval), since a suspicion raised just before the fault ended may still
/// expire. Clock drift excuses nothing: the timeouts are built to tolerate it.
#[derive(Debug)]
pub struct NoFalseVerdicts {
    budget: usize,
    grace: Duration,
    excuses: Vec<Excuse>,
    /// Verdicts (member, incarnation) a fault excused where they were first reached, or
    /// whose suspicion a fault excused where it was first raised.
    excused: BTreeSet<(NodeId, u64)>,
    /// Suspicions (member, incarnation) seen raised.
    suspected: BTreeSet<(NodeId, u64)>,
    /// Each member's clock offset, to size the step of the next one.
    offsets: BTreeMap<NodeId, i64>,
    false_verdicts: BTreeSet<(NodeId, u64)>,
}

impl NoFalseVerdicts {
    /// The checker's name.
    pub const NAME: &'static str = "no-false-failure-verdicts";

    /// A checker that tolerates `budget` distinct false verdicts, with the grace of
    /// `Config::lan()` at ten members.
    pub fn new(budget: usize) -> Self {
        let lan = Config::lan();
        let grace = max_suspicion_timeout(&lan, 10) + lan.probe_interval;
        Self {
            budget,
            grace,
            excuses: Vec::new(),
            excused: BTreeSet::new(),
            suspected: BTreeSet::new(),
            offsets: BTreeMap::new(),
            false_verdicts: BTreeSet::new(),
        }
    }

    /// This checker with the grace of `n` members running `config`: the longest
    /// suspicion timeout plus one probe interval.
    pub fn for_cluster(budget: usize, config: &Config, n: usize) -> Self {
        Self::new(budget).with_grace(max_suspicion_timeout(config, n) + config.probe_interval)
    }

    /// This checker with every excuse lasting `grace` past its fault's end.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The distinct false verdicts so far.
    pub fn false_verdicts(&self) -> usize {
        self.false_verdicts.len()
    }

    fn open(&mut self, cause: &'static str, whom: Whom, from: Instant, until: Option<Instant>, ends: EndsWith) {
        self.excuses.push(Excuse { cause, whom, from, until, ends });
    }

    fn close(&mut self, at: Instant, which: impl Fn(&EndsWith) -> bool) {
        for e in self.excuses.iter_mut().filter(|e| e.until.is_none() && which(&e.ends)) {
            e.until = Some(at);
        }
    }

    /// The fault that excuses `observer`'s verdict about `subject` at `at`, if any.
    fn excuse(&self, at: Instant, observer: NodeId, subject: NodeId) -> Option<&'static str> {
        self.excuses
            .iter()
            .find(|e| e.from <= at && e.until.is_none_or(|u| at <= u + self.grace) && e.whom.covers(observer, subject))
            .map(|e| e.cause)
    }
}

impl Checker for NoFalseVerdicts {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn fault(&mut self, at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        let name = fault.name();
        match fault {
            Fault::Crash(node) => {
                self.close(at, |e| *e == EndsWith::Restart(*node));
                self.open(name, Whom::About(*node), at, None, EndsWith::Restart(*node));
            }
            Fault::Restart { node, .. } => {
                self.close(at, |e| *e == EndsWith::Restart(*node));
                self.open(name, Whom::About(*node), at, Some(at), EndsWith::Nothing);
            }
            Fault::Pause { node, duration } => {
                self.open(name, Whom::ByOrAbout(*node), at, Some(at + *duration), EndsWith::Nothing);
            }
            Fault::Slow { node, per_message } => {
                self.close(at, |e| *e == EndsWith::Speed(*node));
                if !per_message.is_zero() {
                    self.open(name, Whom::ByOrAbout(*node), at, None, EndsWith::Speed(*node));
                }
            }
            Fault::Partition(groups) => {
                self.close(at, |e| *e == EndsWith::Heal { partition: true });
                let sides = groups.iter().enumerate().flat_map(|(g, m)| m.iter().map(move |&n| (n, g + 1))).collect();
                self.open(name, Whom::Across(sides), at, None, EndsWith::Heal { partition: true });
            }
            Fault::OneWay { from, to } => {
                // Not only the pairs: a member whose datagrams to some peers vanish asks
                // them, too, to probe for it, and its indirect probes fail with no one to
                // blame. Its accusations, and accusations of it, are excused.
                for &node in from.iter().chain(to) {
                    self.open(name, Whom::ByOrAbout(node), at, None, EndsWith::Heal { partition: false });
                }
            }
            Fault::CutLinks(links) => {
                let links = links.iter().copied().collect();
                self.open(name, Whom::Pairs(links), at, None, EndsWith::Heal { partition: false });
            }
            Fault::Heal => self.close(at, |e| matches!(e, EndsWith::Heal { .. })),
            Fault::SetLinks { links, params } => {
                self.close(at, |e| match e {
                    EndsWith::Links(l) => *links == LinkSelector::All || l == links,
                    _ => false,
                });
                if cuts(params) {
                    let whom = match *links {
                        LinkSelector::All => Whom::Everyone,
                        LinkSelector::Between(a, b) | LinkSelector::OneWay { from: a, to: b } => {
                            Whom::Pairs(BTreeSet::from([(a, b)]))
                        }
                        LinkSelector::From(a) | LinkSelector::To(a) => Whom::ByOrAbout(a),
                    };
                    self.open(name, whom, at, None, EndsWith::Links(links.clone()));
                }
            }
            Fault::ClockOffset { node, .. } | Fault::ClockJump { node, .. } => {
                let step = match fault {
                    Fault::ClockJump { nanos, .. } => *nanos,
                    Fault::ClockOffset { offset_nanos, .. } => {
                        let before = self.offsets.insert(*node, *offset_nanos).unwrap_or(0);
                        offset_nanos.saturating_sub(before)
                    }
                    _ => 0,
                };
                // Forward, every timer of the member fires at once: the disturbance is
                // over at once (plus the grace). Backward, its monotonic clock stands
                // still for the size of the step, as in a pause.
                let still = if step < 0 { Duration::from_nanos(step.unsigned_abs()) } else { Duration::ZERO };
                self.open(name, Whom::ByOrAbout(*node), at, Some(at + still), EndsWith::Nothing);
            }
            Fault::ClockDrift { .. } => {}
        }
    }

    fn event(&mut self, at: Instant, node: NodeId, event: &Event, findings: &mut Vec<Finding>) {
        if let Event::MemberSuspected(member) = event {
            // The first member to suspect is the accuser; members that hear of the
            // suspicion report it later. An excused accusation excuses its verdict.
            let suspicion = (member.id, member.incarnation);
            if self.suspected.insert(suspicion) && self.excuse(at, node, member.id).is_some() {
                self.excused.insert(suspicion);
            }
            return;
        }
        let Event::MemberFailed(member) = event else { return };
        let verdict = (member.id, member.incarnation);
        // One verdict, however many members adopt it: excused where it was reached (across
        // a partition, say), it is excused where it spreads (to the subject's own side).
        if self.excused.contains(&verdict) {
            return;
        }
        if self.excuse(at, node, member.id).is_some() {
            self.excused.insert(verdict);
            return;
        }
        if self.false_verdicts.insert((member.id, member.incarnation)) && self.false_verdicts.len() > self.budget {
            findings.push(Finding {
                at,
                message: format!(
                    "{node} declared {} failed (incarnation {}) though no fault excuses it: {} false verdicts, budget {}",
                    member.id,
                    member.incarnation,
                    self.false_verdicts.len(),
                    self.budget
                ),
            });
        }
    }
}

/// Liveness: within `bound` after the last fault (the plan's last step, or a later fault
/// applied by hand), every running member sees every running member alive and no stopped
/// member as live.
///
/// It judges once, at that deadline; a run that ends before it could not judge.
#[derive(Debug)]
pub struct Converges {
    bound: Duration,
    deadline: Option<Instant>,
    checked: bool,
    ended: Option<Instant>,
}

impl Converges {
    /// The checker's name.
    pub const NAME: &'static str = "converges-after-heal";

    /// A checker giving the cluster `bound` to converge after the last fault.
    pub fn new(bound: Duration) -> Self {
        Self { bound, deadline: None, checked: false, ended: None }
    }

    /// Whether the run lasted long enough for the check to happen.
    pub fn checked(&self) -> bool {
        self.checked
    }

    /// The differences between the views in `snapshot` and the truth, at most `limit`.
    pub fn differences(snapshot: &ClusterSnapshot, limit: usize) -> Vec<String> {
        let up: BTreeSet<NodeId> = snapshot.nodes.iter().filter(|n| n.up).map(|n| n.id).collect();
        let mut out = Vec::new();
        let mut count = 0usize;
        for observer in snapshot.nodes.iter().filter(|n| n.up) {
            for other in &snapshot.nodes {
                let seen = observer.view.get(&other.id).copied();
                let wrong = if up.contains(&other.id) {
                    seen != Some(MemberState::Alive)
                } else {
                    seen.is_some_and(MemberState::is_live)
                };
                if wrong {
                    count += 1;
                    if out.len() < limit {
                        let truth = if other.up { "running" } else { "stopped" };
                        let seen = seen.map_or_else(|| "unknown".to_string(), |s| s.to_string());
                        out.push(format!("{} sees {} {} ({})", observer.id, other.id, seen, truth));
                    }
                }
            }
        }
        if count > out.len() {
            out.push(format!("... {} more", count - out.len()));
        }
        out
    }
}

impl Checker for Converges {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn start(&mut self, info: &RunInfo) -> Vec<Instant> {
        let from = info.plan.last_at().unwrap_or(Instant::ZERO);
        let deadline = from + self.bound;
        self.deadline = Some(deadline);
        vec![deadline]
    }

    fn fault(&mut self, at: Instant, _fault: &Fault, _findings: &mut Vec<Finding>) {
        // A fault applied by hand ([`Sim::apply`](crate::Sim::apply)) after the plan's last
        // step moves the deadline too.
        if self.deadline.is_some_and(|d| at + self.bound > d) {
            self.deadline = Some(at + self.bound);
            self.checked = false;
        }
    }

    fn snapshot(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        if self.checked || Some(snapshot.at) != self.deadline {
            return;
        }
        self.checked = true;
        let diff = Self::differences(snapshot, 5);
        if !diff.is_empty() {
            findings.push(Finding {
                at: snapshot.at,
                message: format!("views not converged {:?} after the last fault: {}", self.bound, diff.join("; ")),
            });
        }
    }

    fn finish(&mut self, snapshot: &ClusterSnapshot, _findings: &mut Vec<Finding>) {
        self.ended = Some(snapshot.at);
    }

    fn pending(&self) -> Option<Instant> {
        if self.checked {
            None
        } else {
            self.deadline
        }
    }

    fn not_judged(&self) -> Option<String> {
        if self.checked {
            return None;
        }
        let deadline = self.deadline.map_or_else(|| "never set".to_string(), |d| d.to_string());
        let ended = self.ended.map_or_else(|| "?".to_string(), |e| e.to_string());
        Some(format!(
            "the run ended at {ended}, before the deadline {deadline} ({:?} after the last fault); run it longer, or use Sim::run_until_judged",
            self.bound
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conclave_core::Member;

    fn obs(at: u64, node: u64, term: u64, leader: Option<u64>, lease: bool) -> Observation {
        Observation {
            at: Instant::from_millis(at),
            node: NodeId(node),
            term,
            leader: leader.map(NodeId),
            leaseholder: lease,
            drift_ppm: 0.0,
            clock_stepped: false,
        }
    }

    fn run(checker: &mut dyn Checker, observations: &[Observation]) -> Vec<Finding> {
        let mut findings = Vec::new();
        for o in observations {
            checker.observe(o, &mut findings);
        }
        findings
    }

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let ok = [obs(1, 1, 1, Some(1), false), obs(2, 2, 1, Some(1), false), obs(3, 3, 2, Some(3), false)];
        assert!(run(&mut OneLeaderPerTerm::default(), &ok).is_empty());
        let bad = [obs(1, 1, 1, Some(1), false), obs(2, 2, 1, Some(2), false)];
        let findings = run(&mut OneLeaderPerTerm::default(), &bad);
        assert_eq!(findings.len(), 1);
        assert!(findings[0].message.contains("term 1"), "{}", findings[0].message);
    }

    #[test]
    fn overlapping_leases_are_caught_unless_clocks_break_the_bound() {
        // Hand-over: 1 gives up the lease before 2 takes it.
        let ok = [obs(1, 1, 1, Some(1), true), obs(5, 1, 1, Some(1), false), obs(6, 2, 2, Some(2), true)];
        assert!(run(&mut LeaseExclusive::new(500.0), &ok).is_empty());
        let bad = [obs(1, 1, 1, Some(1), true), obs(6, 2, 2, Some(2), true)];
        assert_eq!(run(&mut LeaseExclusive::new(500.0), &bad).len(), 1);
        // A member whose clock drifts beyond the bound voids the guarantee.
        let mut fast = obs(6, 2, 2, Some(2), true);
        fast.drift_ppm = 1000.0;
        assert!(run(&mut LeaseExclusive::new(500.0), &[obs(1, 1, 1, Some(1), true), fast]).is_empty());
    }

    fn failed(id: u64, incarnation: u64) -> Event {
        Event::MemberFailed(Member {
            id: NodeId(id),
            addr: "127.0.0.1:1".parse().expect("a literal address"),
            incarnation,
            state: MemberState::Failed,
            tags: Default::default(),
        })
    }

    #[test]
    fn false_verdicts_count_against_the_budget() {
        let mut c = NoFalseVerdicts::new(1);
        let mut findings = Vec::new();
        let t = Instant::from_secs(1);
        c.fault(t, &Fault::Crash(NodeId(3)), &mut findings);
        c.event(t, NodeId(1), &failed(3, 0), &mut findings); // excused: it is down
        c.event(t, NodeId(1), &failed(4, 0), &mut findings); // first false verdict: in budget
        c.event(t, NodeId(2), &failed(4, 0), &mut findings); // same verdict, another observer
        assert!(findings.is_empty());
        c.event(t, NodeId(2), &failed(5, 0), &mut findings); // second: over budget
        assert_eq!(findings.len(), 1);
        assert_eq!(c.false_verdicts(), 2);
    }

    /// Feeds `faults` then one verdict; whether it was reported false.
    fn judged_false(grace: u64, faults: &[(u64, Fault)], verdict: (u64, u64, u64)) -> bool {
        let mut c = NoFalseVerdicts::new(0).with_grace(Duration::from_secs(grace));
        let mut findings = Vec::new();
        for (at, f) in faults {
            c.fault(Instant::from_secs(*at), f, &mut findings);
        }
        let (at, observer, subject) = verdict;
        c.event(Instant::from_secs(at), NodeId(observer), &failed(subject, 0), &mut findings);
        !findings.is_empty()
    }

    #[test]
    fn a_partition_excuses_verdicts_across_its_sides_until_the_heal_plus_grace() {
        let split = Fault::Partition(vec![vec![NodeId(1), NodeId(2)]]);
        let plan = [(10, split), (30, Fault::Heal)];
        assert!(!judged_false(20, &plan, (25, 3, 1)), "across, during the partition");
        assert!(!judged_false(20, &plan, (45, 1, 4)), "across, within the grace after the heal");
        assert!(judged_false(20, &plan, (25, 1, 2)), "same side: false");
        assert!(judged_false(20, &plan, (25, 3, 4)), "same side (the unlisted one): false");
        assert!(judged_false(20, &plan, (51, 3, 1)), "across, past the grace");
        assert!(judged_false(20, &plan, (530, 3, 1)), "500 s after the heal");
        assert!(judged_false(20, &plan, (5, 3, 1)), "before the partition");
        // A later partition replaces it.
        let two = [(10, Fault::Partition(vec![vec![NodeId(1)]])), (20, Fault::Partition(vec![vec![NodeId(2)]]))];
        assert!(judged_false(5, &two, (40, 3, 1)), "n1 rejoined its side at 20 s");
        assert!(!judged_false(5, &two, (40, 3, 2)));
    }

    #[test]
    fn a_crash_excuses_verdicts_on_that_member_while_it_is_down() {
        let plan = [(10, Fault::Crash(NodeId(2))), (50, Fault::Restart { node: NodeId(2), disk: Disk::Kept })];
        assert!(!judged_false(5, &plan, (40, 1, 2)));
        assert!(!judged_false(5, &plan, (54, 1, 2)), "within the grace of the restart");
        assert!(judged_false(5, &plan, (56, 1, 2)), "up again and past the grace");
        assert!(judged_false(5, &plan, (40, 2, 1)), "not verdicts about others");
        assert!(judged_false(5, &plan[..1], (40, 1, 3)));
        assert!(!judged_false(5, &plan[..1], (4000, 1, 2)), "never restarted: down for good");
    }

    #[test]
    fn cuts_pauses_and_clock_steps_excuse_only_their_members_for_their_time() {
        let one_way = [(10, Fault::OneWay { from: vec![NodeId(1)], to: vec![NodeId(2)] }), (20, Fault::Heal)];
        assert!(!judged_false(5, &one_way, (15, 1, 2)));
        assert!(!judged_false(5, &one_way, (15, 2, 1)));
        assert!(!judged_false(5, &one_way, (15, 1, 3)), "n1's indirect probes cross the cut");
        assert!(judged_false(5, &one_way, (15, 3, 4)), "two members the cut does not name");
        assert!(judged_false(5, &one_way, (26, 2, 1)), "healed");
        let cut = [(10, Fault::CutLinks(vec![(NodeId(1), NodeId(2))]))];
        assert!(!judged_false(5, &cut, (100, 2, 1)));
        assert!(judged_false(5, &cut, (100, 3, 2)));
        let pause = [(10, Fault::Pause { node: NodeId(3), duration: Duration::from_secs(8) })];
        assert!(!judged_false(5, &pause, (20, 1, 3)));
        assert!(!judged_false(5, &pause, (20, 3, 1)), "the paused member's own stale verdict");
        assert!(judged_false(5, &pause, (24, 1, 3)), "paused 8 s, grace 5 s");
        assert!(judged_false(5, &pause, (20, 1, 2)));
        let jump = [(10, Fault::ClockJump { node: NodeId(4), nanos: -3_000_000_000 })];
        assert!(!judged_false(5, &jump, (17, 4, 1)));
        assert!(judged_false(5, &jump, (19, 4, 1)));
        let forward = [(10, Fault::ClockJump { node: NodeId(4), nanos: 3_600_000_000_000 })];
        assert!(!judged_false(5, &forward, (15, 1, 4)));
        assert!(judged_false(5, &forward, (16, 1, 4)), "a forward step disturbs at once, not for an hour");
        let offsets = [
            (10, Fault::ClockOffset { node: NodeId(4), offset_nanos: 50_000_000_000 }),
            (100, Fault::ClockOffset { node: NodeId(4), offset_nanos: 40_000_000_000 }),
        ];
        assert!(!judged_false(5, &offsets, (114, 4, 2)), "the second offset steps back 10 s");
        assert!(judged_false(5, &offsets, (116, 4, 2)));
        let drift = [(10, Fault::ClockDrift { node: NodeId(4), ppm: 500.0 })];
        assert!(judged_false(5, &drift, (11, 4, 1)), "drift excuses nothing");
        let lossy = |loss| Fault::SetLinks {
            links: LinkSelector::Between(NodeId(1), NodeId(2)),
            params: LinkParams::default().with_loss(loss),
        };
        assert!(!judged_false(5, &[(10, lossy(0.9))], (100, 2, 1)));
        assert!(judged_false(5, &[(10, lossy(0.9))], (100, 2, 3)));
        assert!(judged_false(5, &[(10, lossy(0.2))], (100, 2, 1)), "20 % loss is no excuse");
        assert!(judged_false(5, &[(10, lossy(0.9)), (20, lossy(0.0))], (30, 2, 1)), "restored at 20 s");
    }

    #[test]
    fn a_verdict_excused_where_it_was_reached_is_excused_where_it_spreads() {
        let mut c = NoFalseVerdicts::new(0).with_grace(Duration::from_secs(5));
        let mut findings = Vec::new();
        c.fault(Instant::from_secs(10), &Fault::Partition(vec![vec![NodeId(1), NodeId(2)]]), &mut findings);
        c.event(Instant::from_secs(20), NodeId(3), &failed(1, 0), &mut findings);
        c.fault(Instant::from_secs(30), &Fault::Heal, &mut findings);
        // n2 learns the other side's verdict on n1 after the heal: the same verdict.
        c.event(Instant::from_secs(31), NodeId(2), &failed(1, 0), &mut findings);
        assert!(findings.is_empty());
        // Reached first on n1's own side, it is false.
        c.event(Instant::from_secs(20), NodeId(2), &failed(1, 7), &mut findings);
        assert_eq!(findings.len(), 1);
    }

    #[test]
    fn leader_checkers_cannot_judge_a_run_without_a_leader() {
        let mut one = OneLeaderPerTerm::default();
        let mut lease = LeaseExclusive::new(500.0);
        let none = [obs(1, 1, 0, None, false)];
        assert!(run(&mut one, &none).is_empty() && run(&mut lease, &none).is_empty());
        assert_eq!(one.not_judged().as_deref(), Some("no leader was ever elected"));
        assert!(lease.not_judged().is_some_and(|w| w.contains("no leader was ever elected")));
        let led = [obs(2, 1, 1, Some(1), true)];
        assert!(run(&mut one, &led).is_empty() && run(&mut lease, &led).is_empty());
        assert_eq!(one.not_judged(), None);
        assert_eq!(lease.not_judged(), None);
    }

    /// A member's id, whether it runs, and its view.
    type View<'a> = (u64, bool, &'a [(u64, MemberState)]);

    fn snapshot(at: u64, nodes: &[View<'_>]) -> ClusterSnapshot {
        ClusterSnapshot {
            at: Instant::from_secs(at),
            nodes: nodes
                .iter()
                .map(|&(id, up, view)| NodeSnapshot {
                    id: NodeId(id),
                    up,
                    view: view.iter().map(|&(i, s)| (NodeId(i), s)).collect(),
                    term: 0,
                    leader: None,
                })
                .collect(),
        }
    }

    #[test]
    fn convergence_requires_every_live_view_to_match() {
        use MemberState::{Alive, Failed, Suspect};
        let plan = FaultPlan::new().at(Instant::from_secs(10), Fault::Crash(NodeId(3)));
        let info = RunInfo { seed: 1, plan, members: vec![NodeId(1), NodeId(2), NodeId(3)] };
        let mut c = Converges::new(Duration::from_secs(20));
        assert_eq!(c.start(&info), vec![Instant::from_secs(30)]);
        let good = snapshot(
            30,
            &[(1, true, &[(1, Alive), (2, Alive), (3, Failed)]), (2, true, &[(1, Alive), (2, Alive)]), (3, false, &[])],
        );
        let mut findings = Vec::new();
        assert_eq!(c.pending(), Some(Instant::from_secs(30)));
        c.snapshot(&good, &mut findings);
        assert!(findings.is_empty() && c.checked());
        assert_eq!((c.pending(), c.not_judged()), (None, None));
        let mut c = Converges::new(Duration::from_secs(20));
        c.start(&info);
        let bad = snapshot(
            30,
            &[(1, true, &[(1, Alive), (2, Suspect), (3, Failed)]), (2, true, &[(1, Alive), (2, Alive), (3, Alive)])],
        );
        c.snapshot(&bad, &mut findings);
        assert_eq!(findings.len(), 1);
        assert!(findings[0].message.contains("n1 sees n2 suspect"), "{}", findings[0].message);
    }

    #[test]
    fn a_fault_applied_after_the_plan_moves_the_convergence_deadline() {
        let plan = FaultPlan::new().at(Instant::from_secs(5), Fault::Heal);
        let info = RunInfo { seed: 1, plan, members: vec![NodeId(1)] };
        let mut c = Converges::new(Duration::from_secs(10));
        c.start(&info);
        c.fault(Instant::from_secs(5), &Fault::Heal, &mut Vec::new());
        assert_eq!(c.pending(), Some(Instant::from_secs(15)));
        c.fault(Instant::from_secs(40), &Fault::Crash(NodeId(2)), &mut Vec::new());
        assert_eq!(c.pending(), Some(Instant::from_secs(50)));
        let quiet = snapshot(15, &[(1, true, &[(1, MemberState::Alive)])]);
        c.snapshot(&quiet, &mut Vec::new());
        assert!(!c.checked(), "15 s is no longer the deadline");
    }

    #[test]
    fn convergence_cannot_judge_a_run_that_ends_before_its_deadline() {
        let plan = FaultPlan::new().at(Instant::from_secs(25), Fault::Heal);
        let info = RunInfo { seed: 1, plan, members: vec![NodeId(1)] };
        let mut c = Converges::new(Duration::from_secs(67));
        c.start(&info);
        c.finish(&snapshot(60, &[(1, true, &[(1, MemberState::Alive)])]), &mut Vec::new());
        let why = c.not_judged().expect("60 s < 92 s");
        assert!(why.contains("ended at 60") && why.contains("92"), "{why}");
    }
}
