//! Leader election judged from the network trace, not from the leader's own claims:
//! a leader stays in contact with a majority ([`LeaderHearsMajority`], Raft's
//! CheckQuorum), and a voter that hears a live leader grants no pre-vote
//! ([`PreVoteSticky`], Raft's leader stickiness, §9.6 of the thesis), and no vote leaves
//! before the write that records it ([`VotePersistedFirst`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use conclave_core::wire::ElectionMessage;
use conclave_core::{Durable, ElectionConfig, Instant, NodeId};

use super::{Checker, Finding, Observation};
use crate::fault::Fault;

/// Members whose timers a fault held back or moved: until when (`None`: for good).
#[derive(Debug, Default)]
struct Disturbed(BTreeMap<NodeId, Option<Instant>>);

impl Disturbed {
    fn fault(&mut self, at: Instant, fault: &Fault) {
        let mut hold = |node: NodeId, until: Option<Instant>| {
            let e = self.0.entry(node).or_insert(until);
            *e = match (*e, until) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        };
        match fault {
            Fault::Pause { node, duration } => hold(*node, Some(at + *duration)),
            Fault::Slow { node, per_message } if !per_message.is_zero() => hold(*node, None),
            Fault::ClockOffset { node, .. } | Fault::ClockJump { node, .. } => hold(*node, None),
            _ => {}
        }
    }

    /// The time from which `node`'s timers run undisturbed again (`None`: never).
    fn free_from(&self, node: NodeId) -> Option<Instant> {
        match self.0.get(&node) {
            None => Some(Instant::ZERO),
            Some(until) => *until,
        }
    }
}

/// One member's time as leader.
#[derive(Debug)]
struct Stint {
    term: u64,
    since: Instant,
    /// The latest heartbeat ack of this term delivered from each other voter.
    acks: BTreeMap<NodeId, Instant>,
    reported: bool,
}

/// CheckQuorum, judged on the trace: a member that believes it leads at time `t` had a
/// heartbeat ack of its term delivered from a majority of the voters (itself counted)
/// within the last election timeout (`election_timeout_max`, stretched by the drift its
/// clock may have, plus a heartbeat interval of slack), or was elected within it.
///
/// Judged at every election message and observation: a leader that keeps leading with no
/// majority's acks shows up at its own next heartbeat. A member paused, slowed or whose
/// clock stepped is judged again only once its timers run free; a crash ends its stint.
/// A run in which no member led could not be judged.
#[derive(Debug)]
pub struct LeaderHearsMajority {
    voters: BTreeSet<NodeId>,
    window: Duration,
    max_drift: f64,
    leaders: BTreeMap<NodeId, Stint>,
    drift: BTreeMap<NodeId, f64>,
    disturbed: Disturbed,
    ever_led: bool,
}

impl LeaderHearsMajority {
    /// The checker's name.
    pub const NAME: &'static str = "leader-hears-majority-within-election-timeout";

    /// A checker for an election run with `config`.
    pub fn new(config: &ElectionConfig) -> Self {
        Self {
            voters: config.voters.iter().copied().collect(),
            window: config.election_timeout_max + config.heartbeat_interval,
            max_drift: config.max_clock_drift,
            leaders: BTreeMap::new(),
            drift: BTreeMap::new(),
            disturbed: Disturbed::default(),
            ever_led: false,
        }
    }

    /// Judges every leader at `now`.
    fn judge(&mut self, now: Instant, findings: &mut Vec<Finding>) {
        let others = (self.voters.len() / 2 + 1).saturating_sub(1);
        for (&leader, stint) in &mut self.leaders {
            if stint.reported {
                continue;
            }
            let Some(free) = self.disturbed.free_from(leader) else { continue };
            let mut acks: Vec<Instant> = stint.acks.values().copied().collect();
            acks.sort_unstable_by(|a, b| b.cmp(a));
            let majority = if others == 0 { Some(now) } else { acks.get(others - 1).copied() };
            let contact = majority.map_or(stint.since, |m| m.max(stint.since)).max(free);
            let drift = self.drift.get(&leader).copied().unwrap_or(0.0).abs().max(self.max_drift);
            let deadline = contact + self.window.mul_f64(1.0 + 2.0 * drift);
            if now > deadline {
                stint.reported = true;
                findings.push(Finding {
                    at: now,
                    message: format!(
                        "{leader} still leads term {} at {now}, though no majority of the voters acked its heartbeats since {contact} ({:?} before)",
                        stint.term,
                        now - contact
                    ),
                });
            }
        }
    }
}

impl Checker for LeaderHearsMajority {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn wants_datagrams(&self) -> bool {
        true
    }

    fn observe(&mut self, o: &Observation, findings: &mut Vec<Finding>) {
        self.judge(o.at, findings);
        self.drift.insert(o.node, o.drift_ppm * 1e-6);
        let leads = o.leader == Some(o.node);
        match self.leaders.get(&o.node) {
            Some(s) if leads && s.term == o.term => {}
            _ if leads => {
                self.ever_led = true;
                let stint = Stint { term: o.term, since: o.at, acks: BTreeMap::new(), reported: false };
                self.leaders.insert(o.node, stint);
            }
            _ => {
                self.leaders.remove(&o.node);
            }
        }
    }

    fn election(
        &mut self,
        at: Instant,
        from: NodeId,
        to: NodeId,
        message: &ElectionMessage,
        delivered: bool,
        findings: &mut Vec<Finding>,
    ) {
        self.judge(at, findings);
        if let (true, ElectionMessage::HeartbeatAck { term }) = (delivered, message) {
            if let Some(stint) = self.leaders.get_mut(&to) {
                if stint.term == *term && self.voters.contains(&from) {
                    stint.acks.insert(from, at);
                }
            }
        }
    }

    fn fault(&mut self, at: Instant, fault: &Fault, findings: &mut Vec<Finding>) {
        self.judge(at, findings);
        self.disturbed.fault(at, fault);
        if let Fault::Crash(node) | Fault::Restart { node, .. } = fault {
            self.leaders.remove(node);
        }
    }

    fn not_judged(&self) -> Option<String> {
        (!self.ever_led).then(|| "no member ever led".to_string())
    }
}

/// Each voter's promise of stickiness, read off the trace: not to vote for anyone else for
/// `election_timeout_min` of its own clock from the heartbeat it last accepted (one of a
/// term at least its own, as last observed), or from its restart (it may have acked a
/// leader just before it stopped). A promise ends early when the leader hands over
/// (`TimeoutNow`), when the voter's term moves past the heartbeat's, or when it follows
/// another leader or none. What the two stickiness checkers share.
#[derive(Debug, Default)]
struct Promises {
    /// Each member's term and leader, as last observed.
    state: BTreeMap<NodeId, (u64, Option<NodeId>)>,
    /// Each voter's promise: since when, and to whom in which term (`None`: from its
    /// restart, to whichever leader).
    since: BTreeMap<NodeId, (Instant, Option<(NodeId, u64)>)>,
}

impl Promises {
    fn observe(&mut self, o: &Observation) {
        self.state.insert(o.node, (o.term, o.leader));
        let moved_on = match self.since.get(&o.node) {
            Some(&(_, Some((leader, term)))) => o.term > term || o.leader != Some(leader),
            _ => false,
        };
        if moved_on {
            self.since.remove(&o.node);
        }
    }

    /// An election message reached `to`.
    fn delivered(&mut self, at: Instant, from: NodeId, to: NodeId, message: &ElectionMessage) {
        match *message {
            ElectionMessage::Heartbeat { term } if term >= self.state.get(&to).map_or(0, |s| s.0) => {
                self.since.insert(to, (at, Some((from, term))));
            }
            ElectionMessage::TimeoutNow { .. } => {
                self.since.remove(&to);
            }
            _ => {}
        }
    }

    /// `node`'s promise ends: a hand-over reached it, or (for a checker that judges only
    /// what a running voter sends) it crashed.
    fn void(&mut self, node: NodeId) {
        self.since.remove(&node);
    }

    fn restarted(&mut self, at: Instant, node: NodeId) {
        self.since.insert(node, (at, None));
        self.state.remove(&node);
    }

    /// `voter`'s promise, if it holds one: since when, to whom in which term.
    fn of(&self, voter: NodeId) -> Option<(Instant, Option<(NodeId, u64)>)> {
        self.since.get(&voter).copied()
    }
}

/// Leader stickiness, judged on the trace: no voter grants a pre-vote while it hears a
/// live leader, that is within `election_timeout_min` (of its own clock) of the delivery
/// of a heartbeat it accepted (of a term at least its own, from the leader it then
/// follows).
///
/// A voter that restarts may have accepted a heartbeat just before it stopped, and its ack
/// may be part of the leader's lease: it is held to the same window from its start, for
/// whichever leader.
///
/// What ends hearing a leader early is judged legitimate: the leader's `TimeoutNow`
/// (a transfer), the voter's term moving past the heartbeat's, the voter forgetting its
/// leader (it observes none), a crash. A voter whose timers were held back or
/// whose clock stepped is not judged from then on. A run in which no voter granted a
/// pre-vote could not be judged.
#[derive(Debug)]
pub struct PreVoteSticky {
    window: Duration,
    max_drift: f64,
    promises: Promises,
    drift: BTreeMap<NodeId, f64>,
    disturbed: Disturbed,
    grants: usize,
}

impl PreVoteSticky {
    /// The checker's name.
    pub const NAME: &'static str = "no-pre-vote-granted-while-leader-heard";

    /// A checker for an election run with `config`.
    pub fn new(config: &ElectionConfig) -> Self {
        Self {
            window: config.election_timeout_min,
            max_drift: config.max_clock_drift,
            promises: Promises::default(),
            drift: BTreeMap::new(),
            disturbed: Disturbed::default(),
            grants: 0,
        }
    }

    /// How many pre-vote grants were judged.
    pub fn grants(&self) -> usize {
        self.grants
    }
}

impl Checker for PreVoteSticky {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn wants_datagrams(&self) -> bool {
        true
    }

    fn observe(&mut self, o: &Observation, _findings: &mut Vec<Finding>) {
        self.drift.insert(o.node, o.drift_ppm * 1e-6);
        self.promises.observe(o);
    }

    fn election(
        &mut self,
        at: Instant,
        from: NodeId,
        to: NodeId,
        message: &ElectionMessage,
        delivered: bool,
        findings: &mut Vec<Finding>,
    ) {
        if delivered {
            self.promises.delivered(at, from, to, message);
            return;
        }
        let ElectionMessage::Vote { pre_vote: true, granted: true, .. } = *message else { return };
        let voter = from;
        if self.disturbed.free_from(voter).is_none_or(|free| free > at) {
            return;
        }
        self.grants += 1;
        let Some((heard, leader)) = self.promises.of(voter) else { return };
        let drift = self.drift.get(&voter).copied().unwrap_or(0.0).abs().max(self.max_drift);
        // Its window of its own clock, in global time on a clock running fast.
        let window = self.window.mul_f64(1.0 / (1.0 + 2.0 * drift)).saturating_sub(Duration::from_micros(100));
        if at < heard + window {
            let what = match leader {
                Some((leader, term)) => format!("it accepted a heartbeat from {leader}, leader of term {term}"),
                None => "it restarted (it may have acked a leader just before it stopped)".to_string(),
            };
            findings.push(Finding {
                at,
                message: format!(
                    "{voter} granted {to} a pre-vote {:?} after {what}: within election_timeout_min ({:?}) a voter that hears its leader refuses",
                    at - heard,
                    self.window
                ),
            });
        }
    }

    fn fault(&mut self, at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        self.disturbed.fault(at, fault);
        match fault {
            Fault::Crash(node) => self.promises.void(*node),
            Fault::Restart { node, .. } => self.promises.restarted(at, *node),
            _ => {}
        }
    }

    fn not_judged(&self) -> Option<String> {
        (self.grants == 0).then(|| "no voter granted a pre-vote".to_string())
    }
}

/// The lease, judged against the promises it stands on: while a member holds the leader
/// lease, a majority of the voters (the leader counted) are bound by stickiness not to vote
/// for anyone else until the lease ends. A voter is bound for `election_timeout_min` of its
/// own clock from the moment it accepted a heartbeat of that leader's term (or from its
/// own start, for a voter that restarted: it may have acked just before it stopped); in
/// global time that is at least `election_timeout_min / (1 + d)` for any clock within the
/// drift bound `d`. The lease's end comes from the leader itself ([`Observation::lease_until`],
/// on its own clock as it actually runs), so the judgement holds the formula to every
/// clock the bound allows, not only to the ones a run drew: a lease that left out the
/// drift margin is caught wherever datagrams arrive faster than the margin (on a fast
/// network), whether or not a second leader happened to be elected in it.
///
/// A transfer (`RequestVote` with `transfer`, which voters grant despite stickiness) voids
/// the promise of the voter it reaches. A leader whose clock stepped or drifted past the
/// bound is not judged, nor a lease short of promises while some voter's clock is out of
/// the bound. A run in which no member held the lease could not be judged.
#[derive(Debug)]
pub struct LeaseWithinPromises {
    voters: Vec<NodeId>,
    /// How long a promise binds in global time, on a clock running as fast as the bound
    /// allows.
    binds: Duration,
    max_drift_ppm: f64,
    promises: Promises,
    /// Members whose clocks stepped or drifted past the bound.
    unbound: BTreeSet<NodeId>,
    judged: usize,
}

impl LeaseWithinPromises {
    /// The checker's name.
    pub const NAME: &'static str = "lease-within-voters-promises";

    /// A checker for an election run with `config`.
    pub fn new(config: &ElectionConfig) -> Self {
        let mut voters = config.voters.clone();
        voters.sort_unstable();
        voters.dedup();
        Self {
            voters,
            binds: config.election_timeout_min.mul_f64(1.0 / (1.0 + config.max_clock_drift)),
            max_drift_ppm: config.max_clock_drift * 1e6,
            promises: Promises::default(),
            unbound: BTreeSet::new(),
            judged: 0,
        }
    }

    /// How many lease observations were judged.
    pub fn judged(&self) -> usize {
        self.judged
    }

    /// Whether `voter`'s promise binds it against electing anyone but `leader` (of `term`)
    /// until `until`.
    fn binds(&self, voter: NodeId, leader: NodeId, term: u64, until: Instant) -> bool {
        self.promises.of(voter).is_some_and(|(since, to)| {
            to.is_none_or(|(l, t)| l == leader && t == term) && until <= since + self.binds + SLACK
        })
    }
}

/// Rounding in the lease's and the clocks' arithmetic: a nanosecond here and there.
const SLACK: Duration = Duration::from_micros(1);

impl Checker for LeaseWithinPromises {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn wants_datagrams(&self) -> bool {
        true
    }

    fn observe(&mut self, o: &Observation, findings: &mut Vec<Finding>) {
        self.promises.observe(o);
        if o.clock_stepped || o.drift_ppm.abs() > self.max_drift_ppm {
            self.unbound.insert(o.node);
        }
        let Some(until) = o.lease_until.filter(|_| o.leaseholder) else { return };
        if self.unbound.contains(&o.node) || self.voters.binary_search(&o.node).is_err() {
            return;
        }
        let bound: Vec<NodeId> =
            self.voters.iter().copied().filter(|&v| v == o.node || self.binds(v, o.node, o.term, until)).collect();
        let short = bound.len() < self.voters.len() / 2 + 1;
        // The lease is built for clocks within the bound: short of promises while some
        // voter's clock is not, it is not judged.
        if short && self.voters.iter().any(|v| self.unbound.contains(v)) {
            return;
        }
        self.judged += 1;
        if short {
            findings.push(Finding {
                at: o.at,
                message: format!(
                    "{} holds the lease of term {} until {until}, but only {} of {} voters are bound not to \
                     elect another leader until then ({}): each is bound for election_timeout_min from the \
                     heartbeat it accepted, {:?} on a clock running as fast as the drift bound allows",
                    o.node,
                    o.term,
                    bound.len(),
                    self.voters.len(),
                    bound.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "),
                    self.binds
                ),
            });
        }
    }

    fn election(
        &mut self,
        at: Instant,
        from: NodeId,
        to: NodeId,
        message: &ElectionMessage,
        delivered: bool,
        _findings: &mut Vec<Finding>,
    ) {
        if !delivered {
            return;
        }
        self.promises.delivered(at, from, to, message);
        // Votes for a hand-over are granted despite stickiness.
        if let ElectionMessage::RequestVote { transfer: true, .. } = message {
            self.promises.void(to);
        }
    }

    fn fault(&mut self, at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        match fault {
            Fault::Restart { node, .. } => self.promises.restarted(at, *node),
            Fault::ClockOffset { node, .. } | Fault::ClockJump { node, .. } => {
                self.unbound.insert(*node);
            }
            Fault::ClockDrift { node, ppm } if ppm.abs() > self.max_drift_ppm => {
                self.unbound.insert(*node);
            }
            _ => {}
        }
    }

    fn not_judged(&self) -> Option<String> {
        (self.judged == 0).then(|| "no member held the lease".to_string())
    }
}

/// A vote, or a candidacy, is on the disk before it is on the wire: when a voter sends a
/// granted vote for `c` in term `t`, or a candidate asks for votes in term `t`, the latest
/// durable state its disk holds (from this life or, kept, an earlier one) is term `t`
/// voted for `c` (for itself). A crash between the two would otherwise let it vote again
/// in `t` after a restart: two leaders in one term.
///
/// A run in which no vote was granted and nobody stood could not be judged.
#[derive(Debug, Default)]
pub struct VotePersistedFirst {
    disk: BTreeMap<NodeId, (u64, Option<NodeId>)>,
    judged: usize,
}

impl VotePersistedFirst {
    /// The checker's name.
    pub const NAME: &'static str = "vote-persisted-before-it-leaves";
}

impl Checker for VotePersistedFirst {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn wants_datagrams(&self) -> bool {
        true
    }

    fn persisted(&mut self, _at: Instant, node: NodeId, durable: &Durable, _findings: &mut Vec<Finding>) {
        self.disk.insert(node, (durable.term, durable.voted_for));
    }

    fn fault(&mut self, _at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        if let Fault::Restart { node, disk: crate::fault::Disk::Amnesia } = fault {
            self.disk.remove(node);
        }
    }

    fn election(
        &mut self,
        at: Instant,
        from: NodeId,
        to: NodeId,
        message: &ElectionMessage,
        delivered: bool,
        findings: &mut Vec<Finding>,
    ) {
        let (term, candidate, what) = match (*message, delivered) {
            (ElectionMessage::Vote { term, pre_vote: false, granted: true }, false) => (term, to, "a vote for"),
            (ElectionMessage::RequestVote { term, pre_vote: false, .. }, false) => (term, from, "a candidacy of"),
            _ => return,
        };
        self.judged += 1;
        let on_disk = self.disk.get(&from).copied();
        if on_disk != Some((term, Some(candidate))) {
            let held = on_disk.map_or_else(
                || "nothing".to_string(),
                |(t, v)| format!("term {t}, voted for {}", v.map_or("nobody".to_string(), |v| v.to_string())),
            );
            findings.push(Finding {
                at,
                message: format!(
                    "{from} sent {what} {candidate} in term {term} to {to} while its disk held {held}: the vote left before it was persisted"
                ),
            });
        }
    }

    fn not_judged(&self) -> Option<String> {
        (self.judged == 0).then(|| "no vote was granted and nobody stood".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ElectionConfig {
        ElectionConfig::with_voters((1..=5).map(NodeId))
    }

    fn ms(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    fn obs(at: u64, node: u64, term: u64, leader: Option<u64>) -> Observation {
        Observation {
            at: ms(at),
            node: NodeId(node),
            term,
            leader: leader.map(NodeId),
            leaseholder: false,
            lease_until: None,
            drift_ppm: 0.0,
            clock_stepped: false,
        }
    }

    fn ack(c: &mut dyn Checker, at: u64, from: u64, to: u64, term: u64, f: &mut Vec<Finding>) {
        c.election(ms(at), NodeId(from), NodeId(to), &ElectionMessage::HeartbeatAck { term }, true, f);
    }

    #[test]
    fn a_leader_that_keeps_leading_without_a_majority_is_caught() {
        // n1 leads term 2 from 1 s; n2 and n3 ack until 2 s, then only n2.
        let run = |both_until: u64, end: u64| {
            let mut c = LeaderHearsMajority::new(&config());
            let mut f = Vec::new();
            c.observe(&obs(1000, 1, 2, Some(1)), &mut f);
            let mut t = 1000;
            while t <= end {
                ack(&mut c, t, 2, 1, 2, &mut f);
                if t <= both_until {
                    ack(&mut c, t, 3, 1, 2, &mut f);
                }
                // n1's own heartbeat going out.
                c.election(ms(t), NodeId(1), NodeId(4), &ElectionMessage::Heartbeat { term: 2 }, false, &mut f);
                t += 50;
            }
            (c, f)
        };
        let (c, f) = run(5000, 5000);
        assert!(f.is_empty() && c.not_judged().is_none(), "{f:?}");
        let (_, f) = run(2000, 5000);
        assert_eq!(f.len(), 1, "reported once: {f:?}");
        assert!(f[0].message.contains("n1 still leads term 2"), "{}", f[0].message);
        // Stepping down in time is no violation.
        let mut c = LeaderHearsMajority::new(&config());
        let mut f = Vec::new();
        c.observe(&obs(1000, 1, 2, Some(1)), &mut f);
        c.observe(&obs(1300, 1, 2, None), &mut f);
        c.election(ms(5000), NodeId(2), NodeId(1), &ElectionMessage::Heartbeat { term: 3 }, false, &mut f);
        assert!(f.is_empty(), "{f:?}");
        // Acks of another term, or from a non-voter, do not count.
        let mut c = LeaderHearsMajority::new(&config());
        c.observe(&obs(1000, 1, 2, Some(1)), &mut f);
        for t in (1000..3000).step_by(50) {
            ack(&mut c, t, 2, 1, 1, &mut f);
            ack(&mut c, t, 9, 1, 2, &mut f);
        }
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(LeaderHearsMajority::new(&config()).not_judged().is_some());
    }

    #[test]
    fn a_vote_on_the_wire_before_its_write_is_caught() {
        let durable = |term, voted_for: Option<u64>| Durable::new(0, term, voted_for.map(NodeId));
        let vote = ElectionMessage::Vote { term: 3, pre_vote: false, granted: true };
        let ask = ElectionMessage::RequestVote { term: 3, pre_vote: false, transfer: false };
        let mut c = VotePersistedFirst::default();
        let mut f = Vec::new();
        assert!(c.not_judged().is_some());
        // n2 stands in term 3 after writing it; n3 votes for it after writing its vote.
        c.persisted(ms(1), NodeId(2), &durable(3, Some(2)), &mut f);
        c.election(ms(1), NodeId(2), NodeId(3), &ask, false, &mut f);
        c.persisted(ms(2), NodeId(3), &durable(3, Some(2)), &mut f);
        c.election(ms(2), NodeId(3), NodeId(2), &vote, false, &mut f);
        // Refusals and pre-votes need no write.
        c.election(
            ms(2),
            NodeId(4),
            NodeId(2),
            &ElectionMessage::Vote { term: 2, pre_vote: false, granted: false },
            false,
            &mut f,
        );
        assert!(f.is_empty() && c.not_judged().is_none(), "{f:?}");
        // n4 votes before writing; n5 stands on a disk of the last term.
        c.election(ms(3), NodeId(4), NodeId(2), &vote, false, &mut f);
        c.persisted(ms(3), NodeId(5), &durable(2, None), &mut f);
        c.election(ms(3), NodeId(5), NodeId(1), &ask, false, &mut f);
        assert_eq!(f.len(), 2, "{f:?}");
        assert!(
            f[0].message.contains("n4 sent a vote for n2 in term 3 to n2 while its disk held nothing"),
            "{}",
            f[0].message
        );
        assert!(f[1].message.contains("held term 2, voted for nobody"), "{}", f[1].message);
    }

    #[test]
    fn a_pre_vote_granted_while_the_leader_is_heard_is_caught() {
        let grant = ElectionMessage::Vote { term: 2, pre_vote: true, granted: true };
        let run = |after: u64, between: Option<Observation>| {
            let mut c = PreVoteSticky::new(&config());
            let mut f = Vec::new();
            c.observe(&obs(900, 2, 2, Some(1)), &mut f);
            c.election(ms(1000), NodeId(1), NodeId(2), &ElectionMessage::Heartbeat { term: 2 }, true, &mut f);
            if let Some(o) = between {
                c.observe(&o, &mut f);
            }
            c.election(ms(1000 + after), NodeId(2), NodeId(3), &grant, false, &mut f);
            (c, f)
        };
        let (c, f) = run(100, None);
        assert_eq!(f.len(), 1, "within 150 ms of the heartbeat");
        assert!(f[0].message.contains("n2 granted n3 a pre-vote"), "{}", f[0].message);
        assert_eq!(c.grants(), 1);
        let (c, f) = run(200, None);
        assert!(f.is_empty() && c.not_judged().is_none(), "past the window");
        let (_, f) = run(100, Some(obs(1050, 2, 2, None)));
        assert!(f.is_empty(), "it forgot its leader first");
        let (_, f) = run(100, Some(obs(1050, 2, 3, None)));
        assert!(f.is_empty(), "its term moved on");
        // A stale heartbeat (below its term) is not hearing a leader.
        let mut c = PreVoteSticky::new(&config());
        let mut f = Vec::new();
        c.observe(&obs(900, 2, 3, None), &mut f);
        c.election(ms(1000), NodeId(1), NodeId(2), &ElectionMessage::Heartbeat { term: 2 }, true, &mut f);
        c.election(ms(1010), NodeId(2), NodeId(3), &grant, false, &mut f);
        assert!(f.is_empty(), "{f:?}");
        // Refusals and real votes are not judged.
        let mut c = PreVoteSticky::new(&config());
        let refused = ElectionMessage::Vote { term: 2, pre_vote: true, granted: false };
        c.election(ms(10), NodeId(2), NodeId(3), &refused, false, &mut f);
        assert!(c.not_judged().is_some());
    }
    #[test]
    fn a_restarted_voter_is_held_to_its_promise_from_its_start() {
        let grant = ElectionMessage::Vote { term: 3, pre_vote: true, granted: true };
        let run = |after: u64| {
            let mut c = PreVoteSticky::new(&config());
            let mut f = Vec::new();
            c.fault(ms(1000), &Fault::Restart { node: NodeId(2), disk: crate::fault::Disk::Kept }, &mut f);
            // Its term from the disk, with no leader yet: no forgetting.
            c.observe(&obs(1000, 2, 2, None), &mut f);
            c.election(ms(1000 + after), NodeId(2), NodeId(3), &grant, false, &mut f);
            f
        };
        let f = run(100);
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("after it restarted"), "{}", f[0].message);
        assert!(run(200).is_empty(), "past the window");
        // A crash ends the promise (nothing is granted while down); a restart starts it.
        let mut c = PreVoteSticky::new(&config());
        let mut f = Vec::new();
        c.election(ms(1000), NodeId(1), NodeId(2), &ElectionMessage::Heartbeat { term: 2 }, true, &mut f);
        c.fault(ms(1010), &Fault::Crash(NodeId(2)), &mut f);
        c.election(ms(1020), NodeId(2), NodeId(3), &grant, false, &mut f);
        assert!(f.is_empty(), "{f:?}");
    }

    /// An observation of n1 leading term 2 with its lease until `until` (ms).
    fn lease(at: u64, until: u64) -> Observation {
        Observation { leaseholder: true, lease_until: Some(ms(until)), ..obs(at, 1, 2, Some(1)) }
    }

    fn beat(c: &mut LeaseWithinPromises, at: u64, to: u64, f: &mut Vec<Finding>) {
        c.election(ms(at), NodeId(1), NodeId(to), &ElectionMessage::Heartbeat { term: 2 }, true, f);
    }

    #[test]
    fn a_lease_must_end_within_a_majoritys_promises_on_the_fastest_clocks_the_bound_allows() {
        // Five voters; n1 leads term 2. n2 and n3 accept its heartbeat at 1000 ms: each is
        // bound until 1000 + 150 ms / (1 + 500 ppm), 149.925 ms on the fastest clock.
        let run = |until: u64, voters: &[u64]| {
            let mut c = LeaseWithinPromises::new(&config());
            let mut f = Vec::new();
            for &v in voters {
                beat(&mut c, 1000, v, &mut f);
            }
            c.observe(&lease(1001, until), &mut f);
            (c, f)
        };
        let (c, f) = run(1149, &[2, 3]);
        assert!(f.is_empty() && c.not_judged().is_none() && c.judged() == 1, "{f:?}");
        let (_, f) = run(1150, &[2, 3]);
        assert_eq!(f.len(), 1, "the full 150 ms outlasts a promise on a fast clock");
        assert!(f[0].message.contains("only 1 of 5 voters"), "{}", f[0].message);
        let (_, f) = run(1100, &[2]);
        assert_eq!(f.len(), 1, "one promise and the leader are no majority of five");
        // A restart is a promise from its start; a transfer voids the promise it reaches.
        let mut c = LeaseWithinPromises::new(&config());
        let mut f = Vec::new();
        beat(&mut c, 1000, 2, &mut f);
        c.fault(ms(1000), &Fault::Restart { node: NodeId(3), disk: crate::fault::Disk::Kept }, &mut f);
        c.observe(&lease(1001, 1100), &mut f);
        assert!(f.is_empty(), "{f:?}");
        let transfer = ElectionMessage::RequestVote { term: 3, pre_vote: false, transfer: true };
        c.election(ms(1002), NodeId(4), NodeId(3), &transfer, true, &mut f);
        c.observe(&lease(1003, 1100), &mut f);
        assert_eq!(f.len(), 1, "{f:?}");
        // A promise is to one leader in one term: a heartbeat of another term binds no more.
        let mut c = LeaseWithinPromises::new(&config());
        let mut f = Vec::new();
        beat(&mut c, 1000, 2, &mut f);
        c.election(ms(1000), NodeId(1), NodeId(3), &ElectionMessage::Heartbeat { term: 1 }, true, &mut f);
        c.observe(&lease(1001, 1100), &mut f);
        assert_eq!(f.len(), 1, "{f:?}");
    }

    #[test]
    fn a_lease_is_not_judged_on_clocks_out_of_the_bound() {
        let mut c = LeaseWithinPromises::new(&config());
        let mut f = Vec::new();
        assert!(c.not_judged().is_some(), "no lease yet");
        c.fault(ms(500), &Fault::ClockJump { node: NodeId(3), nanos: 1_000_000 }, &mut f);
        beat(&mut c, 1000, 2, &mut f);
        c.observe(&lease(1001, 1100), &mut f);
        assert!(f.is_empty() && c.not_judged().is_some(), "short of promises while n3's clock stepped: {f:?}");
        // A leader whose own clock left the bound is not judged either.
        let mut c = LeaseWithinPromises::new(&config());
        c.observe(&Observation { drift_ppm: 900.0, ..lease(1001, 1100) }, &mut f);
        assert!(f.is_empty() && c.judged() == 0);
        // Nor is a member that holds no lease.
        c.observe(&obs(1002, 2, 2, Some(1)), &mut f);
        assert_eq!(c.judged(), 0);
    }

    #[test]
    fn a_lease_is_judged_to_the_microsecond_and_only_on_what_binds() {
        let config = config();
        let binds = config.election_timeout_min.mul_f64(1.0 / (1.0 + config.max_clock_drift));
        let run = |until: Instant, setup: &dyn Fn(&mut LeaseWithinPromises, &mut Vec<Finding>)| {
            let mut c = LeaseWithinPromises::new(&config);
            assert!(c.wants_datagrams(), "it reads the heartbeats");
            assert_eq!(c.name(), LeaseWithinPromises::NAME);
            let mut f = Vec::new();
            setup(&mut c, &mut f);
            beat(&mut c, 1000, 2, &mut f);
            beat(&mut c, 1000, 3, &mut f);
            let o = Observation { lease_until: Some(until), ..lease(1001, 0) };
            c.observe(&o, &mut f);
            (c, f)
        };
        let none = |_: &mut LeaseWithinPromises, _: &mut Vec<Finding>| {};
        let (_, f) = run(ms(1000) + binds, &none);
        assert!(f.is_empty(), "exactly as long as the promises: {f:?}");
        let (_, f) = run(ms(1000) + binds + Duration::from_micros(2), &none);
        assert_eq!(f.len(), 1, "two microseconds past them");
        // A heartbeat below the voter's own term binds it to nothing.
        let (_, f) = run(ms(1100), &|c, f| c.observe(&obs(900, 3, 3, None), f));
        assert_eq!(f.len(), 1, "n3 was in term 3: {f:?}");
        // Drift at the bound is within it; past it, a voter's promise is not relied on.
        let at_bound = |c: &mut LeaseWithinPromises, f: &mut Vec<Finding>| {
            c.fault(ms(10), &Fault::ClockDrift { node: NodeId(4), ppm: -500.0 }, f);
        };
        let (c, f) = run(ms(1200), &at_bound);
        assert_eq!((f.len(), c.judged()), (1, 1), "judged, and short");
        let past = |c: &mut LeaseWithinPromises, f: &mut Vec<Finding>| {
            c.fault(ms(10), &Fault::ClockDrift { node: NodeId(4), ppm: 501.0 }, f);
        };
        let (c, f) = run(ms(1200), &past);
        assert_eq!((f.len(), c.judged()), (0, 0), "n4's clock left the bound: {f:?}");
        // A leader whose clock drifts exactly at the bound is judged.
        let mut c = LeaseWithinPromises::new(&config);
        let mut f = Vec::new();
        c.observe(&Observation { drift_ppm: 500.0, ..lease(1001, 1100) }, &mut f);
        assert_eq!((f.len(), c.judged()), (1, 1));
        // A member that does not vote holds no lease to judge.
        let mut c = LeaseWithinPromises::new(&config);
        c.observe(&Observation { node: NodeId(7), ..lease(1001, 1100) }, &mut f);
        assert_eq!(c.judged(), 0);
    }
}
