//! Leader election among a static set of voters: Raft's election (Ongaro & Ousterhout
//! 2014, and the thesis's chapter 9), without the log.
//!
//! # The rules
//!
//! - **Terms and votes.** Each voter keeps a term and whom it voted for in it, and writes
//!   both out through `Output::Persist` before any vote or vote request of that term leaves
//!   (the outbox keeps outputs in order). A voter grants one vote per term; a candidate
//!   that gathers a majority leads that term.
//! - **Randomized timeouts.** A follower that hears no leader for a timeout drawn from
//!   `[election_timeout_min, election_timeout_max)` stands.
//! - **PreVote.** Before it raises its term, a would-be candidate asks whether a majority
//!   would vote for it; a voter that hears a live leader says no, and nobody's term moves.
//!   The pre-candidate forgets its own leader first (etcd 9586: one that still counts its
//!   old leader as heard refuses the pre-votes of everyone else). Pre-candidates that stood
//!   at the same moment (their timeouts fell within a round trip of each other, as after a
//!   leader crash with narrow timeout ranges) would all campaign and split the vote: a
//!   pre-candidate that hears a lower id's pre-vote request for the same term yields to it,
//!   in one round of two, so a lower id that cannot win holds nobody back for long. Pre-votes
//!   bind nobody, so this changes who stands, never who may be elected.
//! - **Stickiness.** A voter that heard its leader within `election_timeout_min` refuses
//!   votes and pre-votes, and does not take up the asker's term: a member that reaches only
//!   part of the cluster cannot depose a leader the others still hear.
//! - **CheckQuorum.** A leader that has not heard a majority within `election_timeout_max`
//!   steps down.
//! - **The lease.** A voter that acks a heartbeat promises, by stickiness, not to vote for
//!   anyone else for `election_timeout_min` of its own clock after it heard it. So the
//!   leader holds a lease from the moment it sent the latest heartbeat round a majority
//!   acked, for `election_timeout_min * (1 - d) / (1 + d)` of its own clock, where `d` is
//!   `max_clock_drift`: within it, no other voter can be elected.
//!   The promise outlives a restart: a voter that comes back with its disk refuses votes
//!   for `election_timeout_min` from its start, as though it had just heard its leader.
//!   A heartbeat of an earlier term is answered with a refusal carrying the voter's term,
//!   never an ack, so it cannot pass for an ack of the leader's present term.
//! - **Transfer.** A leader that leaves (or is asked to) gives up its lease, steps down and
//!   tells the voter that acked it most recently to stand at once (`TimeoutNow`); votes
//!   for such a transfer are not refused for stickiness, because the old leader let go.
//! - **Non-voters** learn the leader through gossip (`Gossip::Leader`), which the leader
//!   sends on election and again every `leader_announce_interval`.
//!
//! # A voter that lost its disk
//!
//! A voter started without durable state does not know the terms it voted in before, so it
//! abstains: it grants no vote and does not stand until (1) `election_timeout_max`
//! (stretched by the drift bound) has passed since it started, and (2) a majority of the
//! *other* voters told it their terms (it asks with pre-votes, which move nobody's term).
//! Then it takes the highest of those terms as its own and records a vote for itself in
//! it, so it votes only in later terms. The wait is persisted (`Durable::abstaining`): a
//! second crash while it waits does not end it.
//!
//! Why that is enough: a vote it cast before the crash was for a candidate whose election
//! ended (won, or given up at its own timeout) before step (1) was over. If that candidate
//! won, a majority holds its term, and every majority of the other voters includes one of
//! them, so step (2) learns a term at least as high. If it lost, a second vote in its term
//! cannot make two leaders.
//!
//! The argument needs the reporting majority's disks intact. If a majority of the voters
//! lose their disks together, nobody remembers the terms they voted in, and voters that
//! wait report to each other: as in Raft, whose safety rests on stable storage, a second
//! leader in a forgotten term is then possible. The simulator's random chaos wipes the
//! disks of a minority of the voters at most (chaos seed 13721, before that limit, wiped
//! two of three and saw two leaders of term 3).
//!
//! # The operator's switch: `InitialClusterState`
//!
//! Nothing on an empty disk tells a first start from a lost disk; the operator can, as
//! with etcd's `--initial-cluster-state`. `NodeConfig::initial_cluster_state` says it for
//! one start, and applies only to a voter without durable state (a voter with its disk
//! ignores it, but a wait persisted before a crash goes on whatever it says, by
//! `Existing`'s rules when it says `Existing`; set on a member that does not vote, it is a
//! `ConfigError`):
//!
//! - **Not said** (`None`, the default): the wait above. A brand-new cluster elects too,
//!   about one `election_timeout_max` later than it could: its voters, all waiting, end
//!   each other's waits with their reports (term 0 everywhere, nothing to forget).
//! - **`New`**: a first start. It votes and stands at once, from term 0. Said of a voter
//!   that in fact lost its disk, it can vote twice in a term: say it only of a cluster that
//!   never ran, or of one rebuilt after the old one is gone (below).
//! - **`Existing`**: a lost disk, in a cluster that runs. It waits as above, and more
//!   strictly, so that a majority that lost their disks cannot talk each other out of the
//!   wait: it answers no vote request while it waits (a waiting voter learns nothing from
//!   it), it counts as reports only answers to its own queries, heartbeats and real
//!   candidacies, never a pre-vote request (another waiting voter's term query looks the
//!   same), and alone among the voters it never ends the wait by itself. What ends it
//!   early, or when too few voters that vote can report, is the operator's word,
//!   `Command::ResumeVoting`: the highest term it has heard is closed to further votes
//!   and it votes from the next. `Node::is_abstaining` says whether it still waits.
//!
//! Why not the operator's word alone for `Existing`: a minority that lost their disks can
//! learn from a majority that kept theirs everything the operator could, and the cluster
//! keeps a quorum through the loss of a disk without anyone's help. The reports from
//! voters that vote are what make the wait safe; the strict rules keep out the only
//! reports that are not, those of other waiting voters (that is the safest this can be
//! without a change to the wire: a waiting voter told nothing, running the default, still
//! answers, so restart every voter that lost its disk with `Existing`).
//!
//! # Recovery after a majority of the voters lost their disks
//!
//! No rule can recover the terms nobody remembers; the operator decides, as in etcd's
//! disaster recovery (restore from a survivor and start a new cluster):
//!
//! 1. Restart the voters that lost their disks with `Existing`. They wait, and nobody is
//!    elected while they do. (A survivor that leads may go on leading: waiting voters ack
//!    its heartbeats, and as they vote for nobody, its lease stays sound.)
//! 2. Make sure that no election the lost voters may have voted in is still under way and
//!    that no leader of such a term still runs (such a leader was one of the lost voters,
//!    so it went down with its disk; an election ends within `election_timeout_max`).
//! 3. Then either send `Command::ResumeVoting` to each waiting voter: each closes the
//!    highest term it has heard from the survivors and votes above it, so a new leader's
//!    term is above every term a survivor remembers. A term only the lost voters knew
//!    (its leader elected by them alone) may then be used a second time: never by two
//!    leaders at once (step 2), but a term number is no longer unique. Or, when something
//!    relies on that (a storage service that fences writes by term), or no survivor is
//!    left, rebuild as etcd's disaster recovery does: stop every member, start a new
//!    cluster (a new `cluster_id`, so nothing of the old one is heard, and empty disks)
//!    with every voter told `New`, restore the application's state from a survivor, and
//!    tell whatever fences on terms that the terms start again from 0.
//!
//! Never restart a lost-disk voter with `New` into the cluster it was part of: that is
//! the case the switch exists to rule out.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::config::{ElectionConfig, InitialClusterState};
use crate::durable::Durable;
use crate::member::NodeId;
use crate::outbox::{Outbox, To};
use crate::output::Event;
use crate::time::Instant;
use crate::wire::Message;

#[cfg(test)]
mod tests;

/// How many heartbeat rounds a leader remembers the send times of (acks to older rounds
/// are too late to renew the lease anyway).
const ROUNDS_KEPT: usize = 64;

/// A voter's role.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Role {
    Follower,
    /// Asking for pre-votes for `term + 1`; who granted.
    PreCandidate {
        grants: BTreeSet<NodeId>,
    },
    /// Asking for votes in `term`; who granted.
    Candidate {
        grants: BTreeSet<NodeId>,
    },
    Leader(Leadership),
}

/// What a leader keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Leadership {
    /// Since when it leads (CheckQuorum's first window starts here).
    since: Instant,
    /// The send times of recent heartbeat rounds, by sequence number.
    rounds: VecDeque<(u64, Instant)>,
    next_seq: u64,
    /// Per other voter, the send time of the latest round it acked.
    acked: BTreeMap<NodeId, Instant>,
    /// When the next heartbeat round goes out.
    next_round: Instant,
    /// When the leader next tells the non-voters it leads.
    next_announce: Instant,
}

/// A voter waiting out the loss of its disk (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Abstention {
    /// It may end no earlier than this.
    not_before: Instant,
    /// The terms other voters reported.
    reports: BTreeMap<NodeId, u64>,
    /// The operator said the cluster exists (`InitialClusterState::Existing`): it answers
    /// no vote request, counts no pre-vote request as a report (another waiting voter's
    /// term query looks like one), and needs a majority of at least one other voter.
    existing: bool,
}

/// Where messages to voters go and what the election may say: what `Node` lends it per call.
pub(crate) struct Ctx<'a> {
    pub(crate) now: Instant,
    pub(crate) rng: &'a mut ChaCha8Rng,
    pub(crate) out: &'a mut Outbox,
    pub(crate) durable: &'a mut Durable,
    /// The address of each voter this member can reach (known to its view and not down).
    pub(crate) addrs: &'a dyn Fn(NodeId) -> Option<SocketAddr>,
}

/// One member's part in the election: a voter's Raft state, or a non-voter's knowledge of
/// the leader.
#[derive(Debug)]
pub(crate) struct Election {
    me: NodeId,
    config: ElectionConfig,
    /// The sorted voters; empty when the cluster elects nobody.
    voters: Vec<NodeId>,
    role: Role,
    /// The term this member knows (a voter's is also in `Durable`).
    term: u64,
    leader: Option<NodeId>,
    /// When the leader was last heard directly (stickiness).
    leader_heard: Option<Instant>,
    /// When a follower or candidate stands next.
    deadline: Option<Instant>,
    abstention: Option<Abstention>,
    /// Whether this member stopped taking part (it left the cluster).
    retired: bool,
    /// A non-voter's leader that the membership declared down (see `on_member_up`).
    forgotten: Option<NodeId>,
    /// Whether this member yielded its latest pre-candidacy to a lower id (since it last
    /// heard a leader).
    yielded: bool,
    /// Whether it may yield in the pre-candidacy under way.
    may_yield: bool,
    /// Whether it became leader, or its announcement came due, since the node last asked.
    announce: bool,
}

impl Election {
    /// The election state of member `me`, from what it persisted. `lost_disk` says it
    /// started without durable state, `said` what the operator said of the cluster then.
    pub(crate) fn new(
        me: NodeId,
        config: ElectionConfig,
        durable: &Durable,
        lost_disk: bool,
        said: Option<InitialClusterState>,
        now: Instant,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let mut voters = config.voters.clone();
        voters.sort_unstable();
        voters.dedup();
        let is_voter = voters.binary_search(&me).is_ok();
        // A wait persisted before a crash goes on, whatever the operator says now; an empty
        // disk waits unless the operator said the cluster is new.
        let abstains = durable.abstaining || (lost_disk && said != Some(InitialClusterState::New));
        let existing = said == Some(InitialClusterState::Existing);
        let abstention = (is_voter && abstains).then(|| Abstention {
            not_before: now + stretch(config.election_timeout_max, config.max_clock_drift),
            reports: BTreeMap::new(),
            existing,
        });
        let mut election = Self {
            me,
            voters,
            role: Role::Follower,
            term: durable.term,
            leader: None,
            // A voter restarted with its disk may have acked a leader just before it
            // stopped, and that ack may be part of the leader's lease: it keeps the promise
            // of stickiness through the restart, as though it had just heard its leader.
            // (A voter that never took part in an election has no promise to keep; one
            // that lost its disk waits longer, abstaining.)
            leader_heard: (is_voter && durable.term > 0).then_some(now),
            deadline: None,
            abstention,
            retired: false,
            forgotten: None,
            yielded: false,
            may_yield: false,
            announce: false,
            config,
        };
        if is_voter {
            election.deadline = Some(now + election.random_timeout(rng));
        }
        election
    }

    // ----- views -------------------------------------------------------------------

    /// Whether this member is one of the voters.
    pub(crate) fn is_voter(&self) -> bool {
        !self.retired && self.voters.binary_search(&self.me).is_ok()
    }

    pub(crate) fn term(&self) -> u64 {
        self.term
    }

    pub(crate) fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// Whether this member leads and holds the lease at `now` (its own clock).
    pub(crate) fn is_leaseholder(&self, now: Instant) -> bool {
        self.lease_until().is_some_and(|until| now < until)
    }

    /// Whether this member, leading, should tell the non-voters (it was just elected, or
    /// its announcement came due); asking clears it.
    pub(crate) fn take_announcement(&mut self) -> bool {
        std::mem::take(&mut self.announce) && matches!(self.role, Role::Leader(_))
    }

    /// Whether it is still waiting out the loss of its disk.
    pub(crate) fn is_abstaining(&self) -> bool {
        self.abstention.is_some()
    }

    /// The next instant the election must act at.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.retired {
            return None;
        }
        match &self.role {
            Role::Leader(l) => {
                let check = self.config.check_quorum.then(|| self.quorum_contact(l) + self.config.election_timeout_max);
                Some(check.map_or(l.next_round, |c| c.min(l.next_round)).min(l.next_announce))
            }
            _ => self.deadline,
        }
    }

    // ----- time --------------------------------------------------------------------

    /// Acts on whatever is due at `now`: a heartbeat round, CheckQuorum, or standing.
    pub(crate) fn on_timeout(&mut self, ctx: &mut Ctx<'_>) {
        if self.retired {
            return;
        }
        let now = ctx.now;
        if let Role::Leader(l) = &self.role {
            if self.config.check_quorum && now >= self.quorum_contact(l) + self.config.election_timeout_max {
                trace_event!(warn, term = self.term, "steps down: no majority heard within an election timeout");
                self.become_follower(ctx, self.term);
                return;
            }
            if let Role::Leader(l) = &mut self.role {
                if now >= l.next_announce {
                    l.next_announce = now + self.config.leader_announce_interval;
                    self.announce = true;
                }
            }
            if matches!(&self.role, Role::Leader(l) if now >= l.next_round) {
                self.heartbeat_round(ctx);
            }
            return;
        }
        if self.deadline.is_some_and(|d| now >= d) {
            self.stand(ctx, false);
        }
    }

    /// The election timeout ran out: ask for pre-votes, or votes.
    fn stand(&mut self, ctx: &mut Ctx<'_>, transfer: bool) {
        let now = ctx.now;
        self.deadline = Some(now + self.random_timeout(ctx.rng));
        // The abstention ends on the reports that votes bring, or here, once its wait is
        // over, when there is nobody to report: a lone voter (without this, it never led).
        self.end_abstention(ctx);
        if let Some(abstention) = &self.abstention {
            // Not yet a voter again: ask the others their terms (a pre-vote moves nobody's),
            // every election timeout, and wait.
            if now >= abstention.not_before {
                // For its own term: nobody grants it, nobody mistakes it for a candidacy.
                self.broadcast(ctx, &Message::RequestVote { term: self.term, pre_vote: true, transfer: false });
            }
            if !self.hears_leader(now) {
                self.forget_leader(ctx);
            }
            return;
        }
        // Its own stickiness: a voter that heard its leader within the minimum timeout acked
        // it, and that ack is part of the leader's lease. (A timer not reset by heartbeats,
        // as while it abstained, can come due that early.)
        if !transfer && self.hears_leader(now) {
            return;
        }
        self.forget_leader(ctx);
        if self.config.pre_vote && !transfer {
            // Yield to a lower id at most every other round (see `on_request_vote`).
            self.may_yield = !std::mem::take(&mut self.yielded);
            self.role = Role::PreCandidate { grants: BTreeSet::from([self.me]) };
            trace_event!(debug, term = self.term + 1, "asks for pre-votes");
            self.broadcast(ctx, &Message::RequestVote { term: self.term + 1, pre_vote: true, transfer: false });
        } else {
            self.campaign(ctx, transfer);
        }
        self.check_won(ctx);
    }

    /// Raises the term, votes for itself (persisted first) and asks the others.
    fn campaign(&mut self, ctx: &mut Ctx<'_>, transfer: bool) {
        let term = self.term + 1;
        self.set_term(ctx, term, Some(self.me));
        self.role = Role::Candidate { grants: BTreeSet::from([self.me]) };
        trace_event!(info, term, transfer, "stands for election");
        self.deadline = Some(ctx.now + self.random_timeout(ctx.rng));
        self.broadcast(ctx, &Message::RequestVote { term, pre_vote: false, transfer });
    }

    // ----- messages ----------------------------------------------------------------

    /// Handles an election message from voter `from` at `addr`. Messages from non-voters,
    /// and any message while this member does not vote, are ignored.
    pub(crate) fn on_message(&mut self, ctx: &mut Ctx<'_>, from: NodeId, addr: SocketAddr, message: Message) {
        if !self.is_voter() || self.voters.binary_search(&from).is_err() {
            return;
        }
        match message {
            Message::RequestVote { term, pre_vote, transfer } => {
                self.on_request_vote(ctx, from, addr, term, pre_vote, transfer)
            }
            Message::Vote { term, pre_vote, granted } => self.on_vote(ctx, from, term, pre_vote, granted),
            Message::Heartbeat { term, seq } => self.on_heartbeat(ctx, from, addr, term, seq),
            Message::HeartbeatAck { term, seq } => self.on_heartbeat_ack(ctx, from, term, seq),
            // Only from its own leader, in its own term: a stale copy does nothing.
            Message::TimeoutNow { term }
                if term == self.term && self.leader == Some(from) && self.abstention.is_none() =>
            {
                trace_event!(info, term, from = %from, "leadership handed over: stands at once");
                self.leader_heard = None;
                self.stand(ctx, true);
            }
            _ => {}
        }
    }

    fn on_request_vote(
        &mut self,
        ctx: &mut Ctx<'_>,
        from: NodeId,
        addr: SocketAddr,
        term: u64,
        pre_vote: bool,
        transfer: bool,
    ) {
        // A pre-vote asks for the term after the asker's own.
        if !(pre_vote && self.abstention.as_ref().is_some_and(|a| a.existing)) {
            self.report(from, if pre_vote { term.saturating_sub(1) } else { term });
        }
        self.end_abstention(ctx);
        if self.abstention.as_ref().is_some_and(|a| a.existing) {
            // Silent, so that voters that wait with it learn no term from it.
            return;
        }
        // Stickiness: while a leader is heard (or this member leads), refuse, and keep the
        // term: a member cut off from the leader must not depose it.
        if self.hears_leader(ctx.now) && !transfer {
            ctx.out.send(To::member(from, addr), &Message::Vote { term: self.term, pre_vote, granted: false });
            return;
        }
        if pre_vote {
            // Pre-candidates that stood together (their timeouts fell within a round trip)
            // would split the vote: the higher id yields to the lower, once in two rounds
            // (so a lower id that cannot win does not hold the others back forever).
            if matches!(self.role, Role::PreCandidate { .. })
                && term == self.term + 1
                && from < self.me
                && self.may_yield
            {
                trace_event!(debug, term, to = %from, "yields to a lower id that stood at the same time");
                self.role = Role::Follower;
                self.yielded = true;
                self.deadline = Some(ctx.now + self.random_timeout(ctx.rng));
            }
            let granted = term > self.term && self.abstention.is_none();
            ctx.out.send(To::member(from, addr), &Message::Vote { term: self.term, pre_vote, granted });
            return;
        }
        if term > self.term {
            self.become_follower(ctx, term);
        }
        let granted = term == self.term
            && self.abstention.is_none()
            && ctx.durable.voted_for.is_none_or(|v| v == from)
            && !matches!(self.role, Role::Leader(_) | Role::Candidate { .. });
        if granted {
            if ctx.durable.voted_for != Some(from) {
                self.set_term(ctx, term, Some(from));
            }
            self.role = Role::Follower;
            // Raft resets the timer on a granted vote: give the candidate its chance.
            self.deadline = Some(ctx.now + self.random_timeout(ctx.rng));
        }
        ctx.out.send(To::member(from, addr), &Message::Vote { term: self.term, pre_vote: false, granted });
    }

    fn on_vote(&mut self, ctx: &mut Ctx<'_>, from: NodeId, term: u64, pre_vote: bool, granted: bool) {
        self.report(from, term);
        if self.abstention.is_some() {
            self.end_abstention(ctx);
            return;
        }
        if term > self.term && !granted {
            self.become_follower(ctx, term);
            return;
        }
        match &mut self.role {
            Role::PreCandidate { grants } if pre_vote && granted => {
                grants.insert(from);
            }
            Role::Candidate { grants } if !pre_vote && granted && term == self.term => {
                grants.insert(from);
            }
            _ => return,
        }
        self.check_won(ctx);
    }

    /// A pre-candidate with a majority stands; a candidate with a majority leads.
    fn check_won(&mut self, ctx: &mut Ctx<'_>) {
        let quorum = self.quorum();
        match &self.role {
            Role::PreCandidate { grants } if grants.len() >= quorum => {
                self.campaign(ctx, false);
                self.check_won(ctx);
            }
            Role::Candidate { grants } if grants.len() >= quorum => self.become_leader(ctx),
            _ => {}
        }
    }

    fn become_leader(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        trace_event!(info, term = self.term, "elected leader");
        self.role = Role::Leader(Leadership {
            since: now,
            rounds: VecDeque::new(),
            next_seq: 0,
            acked: BTreeMap::new(),
            next_round: now,
            next_announce: now + self.config.leader_announce_interval,
        });
        self.leader = Some(self.me);
        self.leader_heard = None;
        self.yielded = false;
        self.deadline = None;
        self.announce = true;
        ctx.out.emit(Event::LeaderElected { term: self.term, leader: self.me });
        self.heartbeat_round(ctx);
    }

    fn heartbeat_round(&mut self, ctx: &mut Ctx<'_>) {
        let Role::Leader(l) = &mut self.role else { return };
        let seq = l.next_seq;
        l.next_seq += 1;
        l.rounds.push_back((seq, ctx.now));
        if l.rounds.len() > ROUNDS_KEPT {
            l.rounds.pop_front();
        }
        l.next_round = ctx.now + self.config.heartbeat_interval;
        let message = Message::Heartbeat { term: self.term, seq };
        self.broadcast(ctx, &message);
    }

    fn on_heartbeat(&mut self, ctx: &mut Ctx<'_>, from: NodeId, addr: SocketAddr, term: u64, seq: u64) {
        self.report(from, term);
        if term < self.term {
            // A deposed leader: tell it the term, so it steps down, with a refusal rather
            // than an ack. Rounds are numbered afresh each term, so when the same member
            // leads again in this voter's term, an ack of its old round would pass for one
            // of the new round with that number: a lease and CheckQuorum counting a voter
            // that never heard the leader (a chaos seed found it).
            ctx.out.send(To::member(from, addr), &Message::Vote { term: self.term, pre_vote: false, granted: false });
            return;
        }
        if term > self.term || !matches!(self.role, Role::Follower) {
            self.become_follower(ctx, term);
        }
        if self.leader != Some(from) {
            self.leader = Some(from);
            // A vote for the leader of this term is what this voter would have cast: it
            // closes the term to anyone else (a voter that lost its disk may have voted).
            if ctx.durable.voted_for.is_none() && self.abstention.is_none() {
                self.set_term(ctx, term, Some(from));
            }
            ctx.out.emit(Event::LeaderElected { term, leader: from });
        }
        self.leader_heard = Some(ctx.now);
        // An election ended: the next one starts afresh, free to yield.
        self.yielded = false;
        if self.abstention.is_none() {
            // (While it abstains, the timer keeps asking the others their terms.)
            self.deadline = Some(ctx.now + self.random_timeout(ctx.rng));
        }
        ctx.out.send(To::member(from, addr), &Message::HeartbeatAck { term, seq });
        self.end_abstention(ctx);
    }

    fn on_heartbeat_ack(&mut self, ctx: &mut Ctx<'_>, from: NodeId, term: u64, seq: u64) {
        if term > self.term {
            self.become_follower(ctx, term);
            return;
        }
        let Role::Leader(l) = &mut self.role else { return };
        if term != self.term {
            return;
        }
        if let Some(&(_, sent)) = l.rounds.iter().find(|(s, _)| *s == seq) {
            let acked = l.acked.entry(from).or_insert(sent);
            *acked = (*acked).max(sent);
        }
    }

    // ----- commands ----------------------------------------------------------------

    /// Hands leadership to `to` (or, with `None`, to the voter that acked most recently):
    /// the lease ends now, and `to` stands at once. Returns whether this member led.
    pub(crate) fn transfer(&mut self, ctx: &mut Ctx<'_>, to: Option<NodeId>) -> bool {
        let Role::Leader(l) = &self.role else { return false };
        let target = to
            .filter(|t| *t != self.me && self.voters.binary_search(t).is_ok())
            .or_else(|| l.acked.iter().max_by_key(|(id, at)| (**at, std::cmp::Reverse(**id))).map(|(id, _)| *id));
        let term = self.term;
        trace_event!(info, term, to = ?target, "hands over leadership");
        self.become_follower(ctx, term);
        // Not back in the running before the successor has had its chance.
        self.deadline = Some(ctx.now + self.config.election_timeout_max);
        if let Some((t, addr)) = target.and_then(|t| Some((t, (ctx.addrs)(t)?))) {
            ctx.out.send(To::member(t, addr), &Message::TimeoutNow { term });
        }
        true
    }

    /// The operator's word (`Command::ResumeVoting`): a voter that waits ends its wait now,
    /// as if a majority had reported the terms it heard. Nothing happens to one that does
    /// not wait.
    pub(crate) fn resume_voting(&mut self, ctx: &mut Ctx<'_>) {
        if self.abstention.is_some() && !self.retired {
            trace_event!(warn, term = self.term, "votes again on the operator's word");
            self.finish_abstention(ctx);
        }
    }

    /// This member leaves the cluster: a leader hands over first; then it takes no part.
    pub(crate) fn retire(&mut self, ctx: &mut Ctx<'_>) {
        self.transfer(ctx, None);
        self.retired = true;
        self.role = Role::Follower;
        self.deadline = None;
    }

    // ----- what non-voters hear ------------------------------------------------------

    /// A member heard, through gossip, that `leader` leads `term`. Voters learn it from
    /// the leader itself and ignore this.
    pub(crate) fn on_leader_gossip(&mut self, ctx: &mut Ctx<'_>, term: u64, leader: NodeId) -> bool {
        if self.retired
            || self.is_voter()
            || self.voters.binary_search(&leader).is_err()
            || term < self.term
            || (term == self.term && self.leader.is_some())
        {
            return false;
        }
        self.term = term;
        self.leader = Some(leader);
        self.forgotten = None;
        ctx.out.emit(Event::LeaderElected { term, leader });
        true
    }

    /// The membership declared `id` failed or departed: a non-voter forgets it as leader
    /// (and remembers whom it forgot).
    pub(crate) fn on_member_down(&mut self, ctx: &mut Ctx<'_>, id: NodeId) {
        if !self.is_voter() && self.leader == Some(id) {
            self.leader = None;
            self.forgotten = Some(id);
            ctx.out.emit(Event::LeaderLost { term: self.term });
        }
    }

    /// The leader a non-voter forgot when the membership declared it down, if no other
    /// leader came since.
    pub(crate) fn forgotten_leader(&self) -> Option<NodeId> {
        self.forgotten.filter(|_| self.leader.is_none())
    }

    /// That leader is alive after all (it refuted, or a healed partition merged the views):
    /// a non-voter follows it again, unless a later term was heard of meanwhile.
    pub(crate) fn on_member_up(&mut self, ctx: &mut Ctx<'_>, id: NodeId) {
        if self.forgotten_leader() == Some(id) {
            self.forgotten = None;
            self.leader = Some(id);
            ctx.out.emit(Event::LeaderElected { term: self.term, leader: id });
        }
    }

    // ----- internals ---------------------------------------------------------------

    fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The send time of the newest heartbeat round a majority acked, the leader itself
    /// counted (alone, its own latest round): what both CheckQuorum and the lease read.
    fn majority_acked(&self, l: &Leadership) -> Option<Instant> {
        // The leader is one of the majority; the others are its newest acks.
        let others = self.quorum() - 1;
        if others == 0 {
            return l.rounds.back().map(|r| r.1);
        }
        let mut acks: Vec<Instant> = l.acked.values().copied().collect();
        acks.sort_unstable_by(|a, b| b.cmp(a));
        acks.get(others - 1).copied()
    }

    /// When the leader last heard a majority, or when it was elected.
    fn quorum_contact(&self, l: &Leadership) -> Instant {
        self.majority_acked(l).map_or(l.since, |h| h.max(l.since))
    }

    /// When the lease ends (its own clock), while it leads and a majority acked it.
    pub(crate) fn lease_until(&self) -> Option<Instant> {
        let Role::Leader(l) = &self.role else { return None };
        let d = self.config.max_clock_drift;
        Some(self.majority_acked(l)? + self.config.election_timeout_min.mul_f64((1.0 - d) / (1.0 + d)))
    }

    /// Steps down to follower in `term` (persisting a new term), forgetting its leader if
    /// the term moves or it led.
    fn become_follower(&mut self, ctx: &mut Ctx<'_>, term: u64) {
        let was_leader = matches!(self.role, Role::Leader(_));
        if was_leader {
            self.deadline = Some(ctx.now + self.random_timeout(ctx.rng));
        }
        self.role = Role::Follower;
        // Lost in the term it led, before the term moves.
        if term > self.term || was_leader {
            self.forget_leader(ctx);
        }
        if term > self.term {
            self.set_term(ctx, term, None);
        }
        if self.deadline.is_none() && self.is_voter() {
            self.deadline = Some(ctx.now + self.random_timeout(ctx.rng));
        }
    }

    /// Whether this member leads, or heard its leader within `election_timeout_min`.
    fn hears_leader(&self, now: Instant) -> bool {
        match &self.role {
            Role::Leader(_) => true,
            _ => self.leader_heard.is_some_and(|at| now < at + self.config.election_timeout_min),
        }
    }

    fn forget_leader(&mut self, ctx: &mut Ctx<'_>) {
        self.leader_heard = None;
        if self.leader.take().is_some() {
            ctx.out.emit(Event::LeaderLost { term: self.term });
        }
    }

    /// Moves to `term` with `voted_for`, and persists both before anything else leaves.
    fn set_term(&mut self, ctx: &mut Ctx<'_>, term: u64, voted_for: Option<NodeId>) {
        self.term = term;
        ctx.durable.term = term;
        ctx.durable.voted_for = voted_for;
        ctx.durable.abstaining = self.abstention.is_some();
        ctx.out.persist(ctx.durable.clone());
    }

    /// A voter that lost its disk notes the term `from` reported.
    fn report(&mut self, from: NodeId, term: u64) {
        if let Some(abstention) = &mut self.abstention {
            let reported = abstention.reports.entry(from).or_insert(term);
            *reported = (*reported).max(term);
        }
    }

    /// Ends the abstention once it waited long enough and a majority of the other voters
    /// reported their terms: the highest becomes its own, closed to further votes.
    fn end_abstention(&mut self, ctx: &mut Ctx<'_>) {
        let Some(abstention) = &self.abstention else { return };
        let others = self.voters.len() - 1;
        let needed = others / 2 + 1;
        // Told the cluster exists, a lone voter is a majority that lost its disk: it waits
        // for the operator. Otherwise it ends at once, after the wait (nobody can report).
        let needed = if abstention.existing { needed } else { needed.min(others) };
        if ctx.now < abstention.not_before || abstention.reports.len() < needed {
            return;
        }
        trace_event!(info, "votes again: a majority reported its terms");
        self.finish_abstention(ctx);
    }

    /// Ends the abstention: the highest term heard becomes its own, closed to further votes.
    fn finish_abstention(&mut self, ctx: &mut Ctx<'_>) {
        let Some(abstention) = self.abstention.take() else { return };
        let highest = abstention.reports.values().copied().max().unwrap_or(0).max(self.term);
        let voted_for = if highest == self.term { ctx.durable.voted_for.or(Some(self.me)) } else { Some(self.me) };
        if highest > self.term {
            self.forget_leader(ctx);
        }
        self.set_term(ctx, highest, voted_for);
    }

    /// Sends `message` to every other voter this member can reach.
    fn broadcast(&self, ctx: &mut Ctx<'_>, message: &Message) {
        for &voter in &self.voters {
            if voter != self.me {
                if let Some(addr) = (ctx.addrs)(voter) {
                    ctx.out.send(To::member(voter, addr), message);
                }
            }
        }
    }

    fn random_timeout(&self, rng: &mut ChaCha8Rng) -> Duration {
        let (min, max) = (self.config.election_timeout_min, self.config.election_timeout_max);
        if max <= min {
            return min;
        }
        let span = crate::time::duration_nanos(max - min);
        min + Duration::from_nanos(rng.random_range(0..span))
    }
}

/// `d` stretched by the drift bound: at least `d` of real time on a clock that runs up to
/// `drift` fast.
fn stretch(d: Duration, drift: f64) -> Duration {
    d.mul_f64(1.0 + 2.0 * drift)
}
