//! Partition detection and split-brain resolution.
//!
//! The expected cluster is the voter set when one is configured, otherwise every member
//! known and not departed (failed members stay, as tombstones). A member's picture says
//! which of them it cannot reach and which are in dispute:
//!
//! - **unreachable**: held Failed, or called by the roll call and silent;
//! - **in dispute** (indirectly connected): held Suspect (someone accused it) but answering
//!   this member, or not yet through its time to answer.
//!
//! The view alone is not a sound source for the picture. A member is found unreachable
//! only by its watchers on the monitoring ring, so a member whose watchers are all across a
//! cut stays Alive in the view until the ring moves to it, which at 100 members cut along
//! the ring took minutes, a few members at a time; a decision on such a picture counts part
//! of the far side as this side (it happened: BENCHMARKS.md, "Big partitions"). So while
//! the view shows anyone Failed or Suspect, the roll call (`roll_call`) asks every expected
//! member held live for a round trip, and a member counts as reachable only on a round trip
//! that began within the last `stable_after`. A member across a cut cannot answer, wherever
//! its watchers are, so the whole far side is in the picture one probe period after the
//! view first shows anyone unreachable.
//!
//! When the set of members in the picture (in either state) has stayed the same for
//! `stable_after` (a suspect confirmed failed does not change it; a member accused, cleared,
//! silent or answering again does), and everyone called has had its time to answer, it
//! decides with [`decide`] which side keeps running and says so once: `PartitionDetected`.
//! The side that stops enters `Mode::ReadOnly` (`QuorumLost`) and leaves it when the
//! decision changes or the sides merge (`QuorumRegained`). When every expected member is
//! reachable again: `PartitionHealed`.
//!
//! A member that reaches only part of the cluster keeps the picture from settling rather
//! than splitting it: the members it bridges to are probed through it (SWIM's indirect
//! probes), and claims against them reach them through it and are refuted, so no side sees
//! a stable set of unreachable members to decide on. Across a one-way cut neither side
//! completes a round trip with the other, so both see the other unreachable and the same
//! strategy gives both the same answer.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::config::PartitionConfig;
use crate::member::NodeId;
use crate::output::Event;
use crate::time::Instant;

mod resolver;
mod roll_call;

pub use crate::config::Strategy;
pub use crate::output::Side;
pub use resolver::{decide, Decision, Situation};
use roll_call::RollCall;
pub(crate) use roll_call::Timing as RollCallTiming;

/// Whether this member's side takes writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// Normal operation.
    #[default]
    Normal,
    /// On a side that must not act alone: read, but take no writes.
    ReadOnly,
}

/// Which expected members one member cannot reach, and which are in dispute.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Picture {
    pub(crate) unreachable: BTreeSet<NodeId>,
    pub(crate) indirect: BTreeSet<NodeId>,
}

impl Picture {
    pub(crate) fn is_whole(&self) -> bool {
        self.unreachable.is_empty() && self.indirect.is_empty()
    }

    /// Whether `other` names the same members as not reachable, in whatever state: a
    /// suspect confirmed failed does not unsettle the picture, a member coming or going does.
    fn same_members(&self, other: &Self) -> bool {
        self.unreachable.len() + self.indirect.len() == other.unreachable.len() + other.indirect.len()
            && self
                .unreachable
                .iter()
                .chain(&self.indirect)
                .all(|id| other.unreachable.contains(id) || other.indirect.contains(id))
    }
}

/// One member's partition detector.
#[derive(Debug)]
pub(crate) struct PartitionWatch {
    config: PartitionConfig,
    me: NodeId,
    /// What the view shows: members held Failed and members held Suspect.
    seen: Picture,
    /// What a decision is taken on: the view's picture, with the members the roll call
    /// found missing counted unreachable.
    picture: Picture,
    /// The digest of `picture` that acks carry, kept as the picture changes (`None` while
    /// it is whole).
    reported: Option<u32>,
    roll_call: RollCall,
    /// Since when the picture is what it is.
    since: Instant,
    /// Since when it keeps changing without settling (from its first change after it was
    /// whole or decided).
    unsettled_since: Option<Instant>,
    /// The decision in force, if a partition was detected and has not healed.
    decided: Option<Decision>,
    mode: Mode,
}

impl PartitionWatch {
    pub(crate) fn new(config: PartitionConfig, me: NodeId, now: Instant, roll_call: RollCallTiming) -> Self {
        Self {
            config,
            me,
            seen: Picture::default(),
            picture: Picture::default(),
            reported: None,
            roll_call: RollCall::new(roll_call),
            since: now,
            unsettled_since: None,
            decided: None,
            mode: Mode::Normal,
        }
    }

    pub(crate) fn mode(&self) -> Mode {
        self.mode
    }

    /// The decision in force, if any.
    pub(crate) fn decision(&self) -> Option<&Decision> {
        self.decided.as_ref()
    }

    /// The view changed: this is what it now shows, and these are the expected members it
    /// holds alive (this one excepted), whom the roll call asks while the picture is not
    /// whole. A picture with nobody unreachable heals a detected partition at once.
    pub(crate) fn update(
        &mut self,
        now: Instant,
        seen: Picture,
        alive: &BTreeSet<NodeId>,
        emit: &mut impl FnMut(Event),
    ) {
        if seen.is_whole() {
            self.roll_call.stop();
        } else {
            self.roll_call.call(alive);
        }
        self.seen = seen;
        self.refresh(now, emit);
    }

    /// An ack numbered `seq` from `sender`, which reported `picture`: the roll call's
    /// business, if it asked.
    pub(crate) fn on_ack(
        &mut self,
        now: Instant,
        sender: NodeId,
        seq: u64,
        picture: Option<u32>,
        emit: &mut impl FnMut(Event),
    ) {
        if self.roll_call.on_ack(sender, seq, picture) {
            self.refresh(now, emit);
        }
    }

    /// What this member reports of its picture in its acks: a digest of the members in it,
    /// `None` while it reaches everyone (and its roll call does not run).
    pub(crate) fn reported_picture(&self) -> Option<u32> {
        self.reported
    }

    /// The members the roll call asks now; each is then reported with [`Self::asked`].
    pub(crate) fn to_ask(&self, now: Instant) -> Vec<NodeId> {
        self.roll_call.due(now)
    }

    /// The roll call asked `id` with the ping numbered `seq`.
    pub(crate) fn asked(&mut self, id: NodeId, seq: u64, now: Instant) {
        self.roll_call.asked(id, seq, now);
    }

    /// The picture a decision is taken on: the view's, with the members the roll call found
    /// missing counted unreachable.
    fn refresh(&mut self, now: Instant, emit: &mut impl FnMut(Event)) {
        let mut picture = self.with_roll_call(now);
        if !picture.same_members(&self.picture) && self.roll_call.resume() {
            // The picture changed since the decision: the roll call looks again.
            picture = self.with_roll_call(now);
        }
        self.apply(now, picture, emit);
    }

    /// The view's picture, with the members the roll call found missing counted unreachable.
    fn with_roll_call(&self, now: Instant) -> Picture {
        let mut picture = self.seen.clone();
        for id in self.roll_call.missing(now) {
            // A suspect that does not answer is not in dispute here: it is out of reach.
            picture.indirect.remove(&id);
            picture.unreachable.insert(id);
        }
        picture
    }

    fn apply(&mut self, now: Instant, picture: Picture, emit: &mut impl FnMut(Event)) {
        if picture == self.picture {
            return;
        }
        let same_members = picture.same_members(&self.picture);
        self.picture = picture;
        if same_members {
            return;
        }
        self.reported = (!self.picture.is_whole()).then(|| {
            let mut members: Vec<&NodeId> = self.picture.unreachable.iter().chain(&self.picture.indirect).collect();
            members.sort_unstable();
            roll_call::digest(members.into_iter())
        });
        self.since = now;
        if self.picture.is_whole() {
            self.unsettled_since = None;
            if self.decided.take().is_some() {
                trace_event!(info, "partition healed: every expected member is reachable");
                emit(Event::PartitionHealed);
            }
            self.set_mode(Mode::Normal, emit);
        } else if self.unsettled_since.is_none() {
            self.unsettled_since = Some(now);
        }
    }

    /// When the picture will have been stable long enough (or unsettled too long) to
    /// decide, or the roll call has something to do, after `now`.
    pub(crate) fn deadline(&self, now: Instant) -> Option<Instant> {
        let roll_call = self.roll_call.deadline(now);
        let decision = self.unsettled_since.map(|unsettled| {
            let stable = self.stable_at();
            match self.config.strategy {
                Strategy::DownAllWhenUnstable => stable.min(unsettled + self.unstable_after()),
                _ => stable,
            }
        });
        // While someone called has not had its chance to answer, the roll call's deadline
        // (when it will have) is the next.
        let decision = decision.filter(|&at| at > now || !self.held_back(now));
        roll_call.into_iter().chain(decision).min()
    }

    /// Decides, if the picture settled (or stayed unsettled too long). `expected` lists
    /// the expected members, oldest first; a member that is not one of them (a member
    /// that does not vote) is on the side of the expected members it reaches.
    pub(crate) fn on_timeout(&mut self, now: Instant, expected: &[NodeId], emit: &mut impl FnMut(Event)) {
        self.refresh(now, emit);
        let Some(unsettled) = self.unsettled_since else { return };
        let stable = now >= self.stable_at();
        let unstable = !stable && now >= unsettled + self.unstable_after();
        if stable && self.held_back(now) {
            return;
        }
        let judge = stable || (unstable && self.config.strategy == Strategy::DownAllWhenUnstable);
        if !judge {
            return;
        }
        let situation = Situation {
            expected,
            me: self.me,
            unreachable: &self.picture.unreachable,
            indirect: &self.picture.indirect,
            unstable,
        };
        let decision = decide(self.config.strategy, &situation);
        self.unsettled_since = None;
        self.roll_call.pause(now);
        if self.decided.as_ref() == Some(&decision) {
            return;
        }
        trace_event!(
            warn,
            majority = ?decision.majority,
            minority = ?decision.minority,
            side = ?decision.local_side,
            "partition detected"
        );
        emit(Event::PartitionDetected {
            majority: decision.majority.clone(),
            minority: decision.minority.clone(),
            local_side: decision.local_side,
        });
        let mode = if decision.local_side == Side::Majority { Mode::Normal } else { Mode::ReadOnly };
        self.decided = Some(decision);
        self.set_mode(mode, emit);
    }

    /// Whether a stable picture is still no ground for a decision: someone called has not
    /// had its time to answer (not yet the whole picture), or a member that answered sees
    /// another picture (an asymmetric view, as around a member that bridges two sides: each
    /// side would count the bridge as its own and both would keep running; none decides).
    fn held_back(&self, now: Instant) -> bool {
        self.roll_call.is_pending(now) || self.roll_call.disagrees(now, self.reported_picture())
    }

    /// When the picture counts as stable: `stable_after` from its last change.
    fn stable_at(&self) -> Instant {
        self.since + self.config.stable_after
    }

    fn set_mode(&mut self, mode: Mode, emit: &mut impl FnMut(Event)) {
        if mode == self.mode {
            return;
        }
        self.mode = mode;
        emit(match mode {
            Mode::ReadOnly => Event::QuorumLost,
            Mode::Normal => Event::QuorumRegained,
        });
    }

    fn unstable_after(&self) -> Duration {
        self.config.stable_after.saturating_mul(2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> Vec<NodeId> {
        v.iter().copied().map(NodeId).collect()
    }

    const TIMING: RollCallTiming = RollCallTiming {
        ask_every: Duration::from_millis(250),
        answer_within: Duration::from_millis(750),
        fresh: Duration::from_secs(5),
    };

    const FIVE: [NodeId; 5] = [NodeId(1), NodeId(2), NodeId(3), NodeId(4), NodeId(5)];

    fn picture(unreachable: &[u64], indirect: &[u64]) -> Picture {
        Picture { unreachable: ids(unreachable).into_iter().collect(), indirect: ids(indirect).into_iter().collect() }
    }

    fn watch(strategy: Strategy) -> PartitionWatch {
        PartitionWatch::new(
            PartitionConfig { strategy, stable_after: Duration::from_secs(5) },
            NodeId(4),
            Instant::ZERO,
            TIMING,
        )
    }

    fn at(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    fn ms(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    /// Asks whoever the roll call asks at `now`, numbering the pings from `seq`; returns
    /// them by number.
    fn ask_due(w: &mut PartitionWatch, now: Instant, seq: &mut u64) -> Vec<(u64, NodeId)> {
        let mut asked = Vec::new();
        for id in w.to_ask(now) {
            *seq += 1;
            w.asked(id, *seq, now);
            asked.push((*seq, id));
        }
        asked
    }

    #[test]
    fn the_roll_call_finds_members_whose_watchers_are_all_across_the_cut() {
        // n1-n3 are cut off from n4 (this member) and n5. The view has found only n1 (its
        // watchers were on this side); n2 and n3 are watched from across the cut and stay
        // Alive in the view.
        let mut w = watch(Strategy::KeepMajority);
        let mut events = Vec::new();
        let alive: BTreeSet<NodeId> = ids(&[1, 2, 3, 5]).into_iter().collect();
        w.update(ms(1000), picture(&[], &[1]), &alive, &mut |e| events.push(e));
        let mut seq = 0;
        let asked = ask_due(&mut w, ms(1000), &mut seq);
        assert_eq!(asked.iter().map(|&(_, id)| id).collect::<Vec<_>>(), ids(&[1, 2, 3, 5]), "everyone held live");
        // n5 sees what n4 sees once the roll call has found the cut.
        let n5_sees = |at: Instant| (at >= ms(1750)).then(|| roll_call::digest(ids(&[1, 2, 3]).iter()));
        let answer = |w: &mut PartitionWatch, events: &mut Vec<Event>, at: Instant, asked: &[(u64, NodeId)]| {
            for &(seq, id) in asked.iter().filter(|&&(_, id)| id == NodeId(5)) {
                w.on_ack(at, id, seq, n5_sees(at), &mut |e| events.push(e));
            }
        };
        answer(&mut w, &mut events, ms(1001), &asked);
        // A stable view picture alone would be decided at 6 s on n1 only; the roll call
        // holds the decision until everyone called has had its time to answer.
        assert_eq!(w.deadline(ms(1001)), Some(ms(1250)), "n1-n3 are asked again");
        for at in [1250, 1500] {
            let asked = ask_due(&mut w, ms(at), &mut seq);
            assert_eq!(asked.iter().map(|&(_, id)| id).collect::<Vec<_>>(), ids(&[1, 2, 3]), "the silent, again");
        }
        assert_eq!(w.deadline(ms(1500)), Some(ms(1750)), "when n1-n3's time to answer is over");
        w.on_timeout(ms(1750), &FIVE, &mut |e| events.push(e));
        assert_eq!(w.picture, picture(&[1, 2, 3], &[]), "silent through their time to answer: unreachable");
        assert!(events.is_empty());
        assert_eq!(w.deadline(ms(1750)), Some(ms(3500)), "n5 renewed halfway through its answer's life");
        let mut at = ms(1750);
        while at < ms(6750) {
            at = w.deadline(at).expect("a roll call runs");
            let asked = ask_due(&mut w, at, &mut seq);
            answer(&mut w, &mut events, at + Duration::from_millis(1), &asked);
            w.on_timeout(at, &FIVE, &mut |e| events.push(e));
        }
        assert_eq!(
            events,
            vec![
                Event::PartitionDetected {
                    majority: ids(&[1, 2, 3]),
                    minority: ids(&[4, 5]),
                    local_side: Side::Minority
                },
                Event::QuorumLost
            ],
            "decided on the whole cut, `stable_after` after the roll call found it"
        );
    }

    #[test]
    fn no_side_is_taken_while_a_member_on_it_sees_another_picture() {
        // n4 and n5 cannot reach n1-n3, but n5 reaches them through a bridge... or n5 simply
        // sees the whole cluster: n4 would count n5 on its side while n5 counts n1-n3 on
        // its own. Until n5 reports the same picture, n4 takes no side.
        let mut w = watch(Strategy::KeepMajority);
        let mut events = Vec::new();
        let alive: BTreeSet<NodeId> = ids(&[1, 2, 3, 5]).into_iter().collect();
        w.update(ms(0), picture(&[], &[1]), &alive, &mut |e| events.push(e));
        let mut seq = 0;
        let mut at = ms(0);
        let mut n5_reports = None;
        let mut decided_at = None;
        while at < ms(20_000) {
            if at >= ms(12_000) {
                n5_reports = w.reported_picture();
            }
            for (seq, id) in ask_due(&mut w, at, &mut seq) {
                if id == NodeId(5) {
                    w.on_ack(at, id, seq, n5_reports, &mut |e| events.push(e));
                }
            }
            w.on_timeout(at, &FIVE, &mut |e| events.push(e));
            if decided_at.is_none() && !events.is_empty() {
                decided_at = Some(at);
            }
            let Some(next) = w.deadline(at) else { break };
            at = next;
            if at >= ms(12_000) && events.is_empty() {
                assert!(at <= ms(12_000) + Duration::from_millis(2500), "re-judged at n5's next answer");
            }
        }
        let first = |events: &[Event]| match events.first() {
            Some(Event::PartitionDetected { majority, .. }) => Some(majority.clone()),
            _ => None,
        };
        assert_eq!(first(&events), Some(ids(&[1, 2, 3])), "decided once n5 agreed: {events:?}");
        assert!(decided_at.is_some_and(|at| at >= ms(12_000)), "not before n5 agreed: {decided_at:?}");
        assert_eq!(w.reported_picture(), Some(roll_call::digest(ids(&[1, 2, 3]).iter())));
    }

    #[test]
    fn the_roll_call_pauses_once_decided_and_looks_again_when_the_picture_changes() {
        let mut w = watch(Strategy::KeepMajority);
        let mut events = Vec::new();
        let alive: BTreeSet<NodeId> = ids(&[1, 2, 3, 5]).into_iter().collect();
        // n1 crashed: held Failed; n3 is cut off (Alive in the view, silent); n2 and n5
        // answer, seeing the same.
        w.update(ms(0), picture(&[1], &[]), &alive, &mut |e| events.push(e));
        let mut seq = 0;
        let mut at = ms(0);
        let mut asks = 0;
        let reports = Some(roll_call::digest(ids(&[1, 3]).iter()));
        while let Some(next) = w.deadline(at) {
            at = next;
            for (seq, id) in ask_due(&mut w, at, &mut seq) {
                asks += 1;
                if id == NodeId(2) || id == NodeId(5) {
                    w.on_ack(at, id, seq, reports, &mut |e| events.push(e));
                }
            }
            w.on_timeout(at, &FIVE, &mut |e| events.push(e));
            assert!(at < ms(10_000), "decides and pauses");
        }
        assert!(matches!(events.first(), Some(Event::PartitionDetected { local_side: Side::Majority, .. })));
        assert!(w.to_ask(ms(3_600_000)).is_empty(), "nobody asked while the tombstone stays");
        assert_eq!(w.picture, picture(&[1, 3], &[]), "standings as they were");
        let before = asks;
        // n2 is accused: the picture changes, and everyone is asked afresh; n3, missing when
        // the roll call paused, stays missing until it answers.
        w.update(ms(60_000), picture(&[1], &[2]), &alive, &mut |e| events.push(e));
        assert_eq!(w.to_ask(ms(60_000)), ids(&[1, 2, 3, 5]));
        assert_eq!(w.picture, picture(&[1, 3], &[2]));
        assert!(before > 0);
    }

    #[test]
    fn the_decision_waits_while_someone_called_has_not_had_its_time_to_answer() {
        let mut w = watch(Strategy::KeepMajority);
        let mut events = Vec::new();
        let five: BTreeSet<NodeId> = ids(&[5]).into_iter().collect();
        w.update(ms(0), picture(&[], &[1]), &five, &mut |e| events.push(e));
        let mut seq = 0;
        let asked = ask_due(&mut w, ms(0), &mut seq);
        w.on_ack(ms(1), NodeId(5), asked[0].0, w.reported_picture(), &mut |e| events.push(e));
        // n2 comes into the view at 4.8 s (the picture stays the same): it has until 5.55 s.
        let two_and_five: BTreeSet<NodeId> = ids(&[2, 5]).into_iter().collect();
        w.update(ms(4800), picture(&[], &[1]), &two_and_five, &mut |e| events.push(e));
        for (seq, id) in ask_due(&mut w, ms(4800), &mut seq) {
            if id == NodeId(5) {
                w.on_ack(ms(4801), id, seq, w.reported_picture(), &mut |e| events.push(e));
            }
        }
        assert_eq!(w.deadline(ms(4900)), Some(ms(5000)), "the picture is stable at 5 s");
        w.on_timeout(ms(5000), &FIVE, &mut |e| events.push(e));
        assert!(events.is_empty(), "n2 has not had its time to answer");
        assert_eq!(w.deadline(ms(5000)), Some(ms(5050)), "n2 asked again, not the stable time over and over");
    }

    #[test]
    fn down_all_decides_once_the_picture_stayed_unsettled_twice_stable_after() {
        let mut w = watch(Strategy::DownAllWhenUnstable);
        let mut events = Vec::new();
        w.update(ms(1000), picture(&[1], &[]), &BTreeSet::new(), &mut |e| events.push(e));
        w.update(ms(4000), picture(&[1], &[2]), &BTreeSet::new(), &mut |e| events.push(e));
        w.update(ms(8000), picture(&[1], &[]), &BTreeSet::new(), &mut |e| events.push(e));
        assert_eq!(w.deadline(ms(8000)), Some(ms(11_000)), "unsettled since 1 s, for 2 x 5 s");
        let mut keep = watch(Strategy::KeepMajority);
        keep.update(ms(1000), picture(&[1], &[]), &BTreeSet::new(), &mut |e| events.push(e));
        keep.update(ms(8000), picture(&[1], &[2]), &BTreeSet::new(), &mut |e| events.push(e));
        assert_eq!(keep.deadline(ms(8000)), Some(ms(13_000)), "keep-majority waits for a stable picture");
    }

    #[test]
    fn a_suspect_that_answers_is_in_dispute_and_one_that_does_not_is_unreachable() {
        let mut w = watch(Strategy::KeepMajority);
        let mut events = Vec::new();
        let alive: BTreeSet<NodeId> = ids(&[1, 2, 3, 5]).into_iter().collect();
        w.update(ms(0), picture(&[], &[1, 2]), &alive, &mut |e| events.push(e));
        let mut seq = 0;
        for (n, (seq, id)) in ask_due(&mut w, ms(0), &mut seq).into_iter().enumerate() {
            if n % 2 == 0 {
                w.on_ack(ms(1), id, seq, None, &mut |e| events.push(e));
            }
        }
        // n1 and n3 answered; n2 and n5 did not.
        w.on_timeout(ms(750), &FIVE, &mut |e| events.push(e));
        assert_eq!(w.picture, picture(&[2, 5], &[1]));
    }

    #[test]
    fn an_ack_counts_only_from_the_member_asked_and_only_once_it_is_asked() {
        let mut w = watch(Strategy::KeepMajority);
        let mut events = Vec::new();
        let alive: BTreeSet<NodeId> = ids(&[1, 2]).into_iter().collect();
        w.update(ms(0), picture(&[], &[3]), &alive, &mut |e| events.push(e));
        let mut seq = 10;
        let asked = ask_due(&mut w, ms(0), &mut seq);
        assert_eq!(asked, vec![(11, NodeId(1)), (12, NodeId(2))]);
        w.on_ack(ms(1), NodeId(2), 11, None, &mut |e| events.push(e));
        w.on_ack(ms(1), NodeId(2), 99, None, &mut |e| events.push(e));
        w.on_timeout(ms(750), &FIVE, &mut |e| events.push(e));
        assert_eq!(w.picture, picture(&[1, 2], &[3]), "n2 answered under n1's number and another");
        w.on_ack(ms(751), NodeId(1), 11, None, &mut |e| events.push(e));
        assert_eq!(w.picture, picture(&[2], &[3]), "n1's own answer counts, late as it is");
        // The view whole again: the roll call stops, and its answers do not count next time.
        w.update(ms(800), picture(&[], &[]), &alive, &mut |e| events.push(e));
        assert_eq!(w.deadline(ms(800)), None);
        w.update(ms(900), picture(&[], &[3]), &alive, &mut |e| events.push(e));
        assert_eq!(w.to_ask(ms(900)), ids(&[1, 2]), "a new roll call asks everyone again");
        w.on_timeout(ms(900), &FIVE, &mut |e| events.push(e));
        assert_eq!(w.picture, picture(&[], &[3]), "nobody silent before its time to answer");
    }

    #[test]
    fn decides_once_the_picture_is_stable_and_heals_when_whole() {
        let mut w = watch(Strategy::KeepMajority);
        let mut events = Vec::new();
        w.update(at(1), picture(&[], &[]), &BTreeSet::new(), &mut |e| events.push(e));
        assert_eq!(w.deadline(Instant::ZERO), None, "nothing to decide");
        w.update(at(2), picture(&[], &[1]), &BTreeSet::new(), &mut |e| events.push(e));
        w.update(at(3), picture(&[], &[1, 2, 3]), &BTreeSet::new(), &mut |e| events.push(e));
        assert_eq!(w.deadline(Instant::ZERO), Some(at(8)), "stable_after from the last change");
        w.update(at(4), picture(&[1, 2, 3], &[]), &BTreeSet::new(), &mut |e| events.push(e));
        assert_eq!(w.deadline(Instant::ZERO), Some(at(8)), "suspects confirmed failed change nothing");
        w.on_timeout(at(7), &FIVE, &mut |e| events.push(e));
        assert!(events.is_empty(), "not yet");
        w.on_timeout(at(8), &FIVE, &mut |e| events.push(e));
        assert_eq!(
            events,
            vec![
                Event::PartitionDetected {
                    majority: ids(&[1, 2, 3]),
                    minority: ids(&[4, 5]),
                    local_side: Side::Minority
                },
                Event::QuorumLost
            ]
        );
        assert_eq!(w.mode(), Mode::ReadOnly);
        assert_eq!(w.deadline(Instant::ZERO), None, "decided once");
        events.clear();
        w.on_timeout(at(20), &FIVE, &mut |e| events.push(e));
        assert!(events.is_empty(), "said once");
        w.update(at(30), picture(&[], &[]), &BTreeSet::new(), &mut |e| events.push(e));
        assert_eq!(events, vec![Event::PartitionHealed, Event::QuorumRegained]);
        assert_eq!(w.mode(), Mode::Normal);
    }

    #[test]
    fn a_picture_that_keeps_changing_is_not_decided_except_by_down_all() {
        for (strategy, decides) in [(Strategy::KeepMajority, false), (Strategy::DownAllWhenUnstable, true)] {
            let mut w = watch(strategy);
            let mut events = Vec::new();
            for s in 0..30 {
                // n2 accused and cleared, again and again, while n1 stays unreachable.
                let flapping = if s % 2 == 0 { picture(&[1], &[]) } else { picture(&[1], &[2]) };
                w.update(at(s), flapping, &BTreeSet::new(), &mut |e| events.push(e));
                w.on_timeout(at(s), &FIVE, &mut |e| events.push(e));
                if s < 10 {
                    assert!(events.is_empty(), "{strategy:?}: unsettled for less than twice stable_after at {s} s");
                }
            }
            assert_eq!(!events.is_empty(), decides, "{strategy:?}: {events:?}");
            if decides {
                assert_eq!(
                    events[0],
                    Event::PartitionDetected {
                        majority: vec![],
                        minority: ids(&[1, 2, 3, 4, 5]),
                        local_side: Side::Minority
                    }
                );
                assert_eq!(w.mode(), Mode::ReadOnly);
            }
        }
    }

    #[test]
    fn a_new_decision_moves_the_mode_both_ways() {
        let mut w = watch(Strategy::KeepMajority);
        let mut events = Vec::new();
        w.update(at(0), picture(&[1, 2, 3], &[]), &BTreeSet::new(), &mut |e| events.push(e));
        w.on_timeout(at(5), &FIVE, &mut |e| events.push(e));
        assert_eq!(w.mode(), Mode::ReadOnly);
        // Two of the far side come back: only n1 stays unreachable, and n4's side is larger.
        w.update(at(6), picture(&[1], &[]), &BTreeSet::new(), &mut |e| events.push(e));
        w.on_timeout(at(11), &FIVE, &mut |e| events.push(e));
        assert_eq!(w.mode(), Mode::Normal);
        assert_eq!(
            events[2..],
            [
                Event::PartitionDetected {
                    majority: ids(&[2, 3, 4, 5]),
                    minority: ids(&[1]),
                    local_side: Side::Majority
                },
                Event::QuorumRegained
            ]
        );
    }
}
