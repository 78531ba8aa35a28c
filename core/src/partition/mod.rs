//! Partition detection and split-brain resolution.
//!
//! The expected cluster is the voter set when one is configured, otherwise every member
//! known and not departed (failed members stay, as tombstones). A member watches which of
//! them it cannot reach (held Failed) and which are in dispute (held Suspect: accused, not
//! yet confirmed or cleared). When the set of members in either state has stayed the same
//! for `stable_after` (a suspect confirmed failed does not reset it; a member accused,
//! cleared or coming back does), and no member was confirmed failed within the last three
//! probe periods, it decides with [`decide`] which side keeps running and
//! says so once: `PartitionDetected`. The side that stops enters `Mode::ReadOnly`
//! (`QuorumLost`) and leaves it when the decision changes or the sides merge
//! (`QuorumRegained`). When every expected member is reachable again: `PartitionHealed`.
//!
//! The wait after a confirmation is for the monitoring ring: it moves when a member is
//! confirmed failed, and the members that one watched get new watchers, who probe a silent
//! peer within three probe periods. Without it a big partition could be decided on part of
//! its picture: at 100 members cut 50/50 along the ring, the far side is found a few members
//! at a time as the ring moves, and one member decided after 6.8 s that only three were
//! gone (BENCHMARKS.md, partition detection).
//!
//! A member that reaches only part of the cluster keeps the picture from settling rather
//! than splitting it: the members it bridges to are probed through it (SWIM's indirect
//! probes), and claims against them reach them through it and are refuted, so no side sees
//! a stable set of unreachable members to decide on.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::config::PartitionConfig;
use crate::member::NodeId;
use crate::output::Event;
use crate::time::Instant;

mod resolver;

pub use crate::config::Strategy;
pub use crate::output::Side;
pub use resolver::{decide, Decision, Situation};

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
    fn is_whole(&self) -> bool {
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
    picture: Picture,
    /// Since when the picture is what it is.
    since: Instant,
    /// When a suspect was last confirmed failed: the monitoring ring moved, and the members
    /// that the confirmed one watched have new watchers, who need `settle` to judge them.
    ring_moved: Instant,
    /// How long a new watcher needs to find a member unreachable.
    settle: Duration,
    /// Since when it keeps changing without settling (from its first change after it was
    /// whole or decided).
    unsettled_since: Option<Instant>,
    /// The decision in force, if a partition was detected and has not healed.
    decided: Option<Decision>,
    mode: Mode,
}

impl PartitionWatch {
    pub(crate) fn new(config: PartitionConfig, me: NodeId, now: Instant, settle: Duration) -> Self {
        Self {
            config,
            me,
            picture: Picture::default(),
            since: now,
            ring_moved: now,
            settle,
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

    /// The view changed: this is what it now shows. A picture with nobody unreachable
    /// heals a detected partition at once.
    pub(crate) fn update(&mut self, now: Instant, picture: Picture, emit: &mut impl FnMut(Event)) {
        if picture == self.picture {
            return;
        }
        let same_members = picture.same_members(&self.picture);
        if picture.unreachable.len() > self.picture.unreachable.len() {
            self.ring_moved = now;
        }
        self.picture = picture;
        if same_members {
            return;
        }
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

    /// When the picture will have been stable long enough (or unsettled too long) to decide.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let unsettled = self.unsettled_since?;
        let stable = self.stable_at();
        Some(match self.config.strategy {
            Strategy::DownAllWhenUnstable => stable.min(unsettled + self.unstable_after()),
            _ => stable,
        })
    }

    /// Decides, if the picture settled (or stayed unsettled too long). `expected` lists
    /// the expected members, oldest first; a member that is not one of them (a member
    /// that does not vote) is on the side of the expected members it reaches.
    pub(crate) fn on_timeout(&mut self, now: Instant, expected: &[NodeId], emit: &mut impl FnMut(Event)) {
        let Some(unsettled) = self.unsettled_since else { return };
        let stable = now >= self.stable_at();
        let unstable = !stable && now >= unsettled + self.unstable_after();
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

    /// When the picture counts as stable: `stable_after` from its last change, and no
    /// sooner than `settle` after the ring last moved.
    fn stable_at(&self) -> Instant {
        (self.since + self.config.stable_after).max(self.ring_moved + self.settle)
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

    const FIVE: [NodeId; 5] = [NodeId(1), NodeId(2), NodeId(3), NodeId(4), NodeId(5)];

    fn picture(unreachable: &[u64], indirect: &[u64]) -> Picture {
        Picture { unreachable: ids(unreachable).into_iter().collect(), indirect: ids(indirect).into_iter().collect() }
    }

    fn watch(strategy: Strategy) -> PartitionWatch {
        PartitionWatch::new(
            PartitionConfig { strategy, stable_after: Duration::from_secs(5) },
            NodeId(4),
            Instant::ZERO,
            Duration::from_secs(3),
        )
    }

    fn at(s: u64) -> Instant {
        Instant::from_secs(s)
    }

    #[test]
    fn a_suspect_confirmed_failed_leaves_its_new_watchers_time_to_look() {
        // `watch` settles for 3 s.
        let mut w = watch(Strategy::KeepMajority);
        let mut events = Vec::new();
        w.update(at(1), picture(&[], &[1, 2]), &mut |e| events.push(e));
        assert_eq!(w.deadline(), Some(at(6)));
        // Confirmed failed at 5: the ring moved, and the members n1 and n2 watched have new
        // watchers, who have not looked at them yet.
        w.update(at(5), picture(&[1, 2], &[]), &mut |e| events.push(e));
        assert_eq!(w.deadline(), Some(at(8)));
        w.on_timeout(at(6), &FIVE, &mut |e| events.push(e));
        assert!(events.is_empty(), "not on the picture before they looked");
        // They find n3 unreachable: a new picture, stable `stable_after` later.
        w.update(at(7), picture(&[1, 2], &[3]), &mut |e| events.push(e));
        assert_eq!(w.deadline(), Some(at(12)));
        w.on_timeout(at(12), &FIVE, &mut |e| events.push(e));
        assert!(matches!(events.first(), Some(Event::PartitionDetected { .. })), "decided on the whole picture");
    }

    #[test]
    fn decides_once_the_picture_is_stable_and_heals_when_whole() {
        let mut w = watch(Strategy::KeepMajority);
        let mut events = Vec::new();
        w.update(at(1), picture(&[], &[]), &mut |e| events.push(e));
        assert_eq!(w.deadline(), None, "nothing to decide");
        w.update(at(2), picture(&[], &[1]), &mut |e| events.push(e));
        w.update(at(3), picture(&[], &[1, 2, 3]), &mut |e| events.push(e));
        assert_eq!(w.deadline(), Some(at(8)), "stable_after from the last change");
        w.update(at(4), picture(&[1, 2, 3], &[]), &mut |e| events.push(e));
        assert_eq!(w.deadline(), Some(at(8)), "suspects confirmed failed change nothing");
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
        assert_eq!(w.deadline(), None, "decided once");
        events.clear();
        w.on_timeout(at(20), &FIVE, &mut |e| events.push(e));
        assert!(events.is_empty(), "said once");
        w.update(at(30), picture(&[], &[]), &mut |e| events.push(e));
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
                w.update(at(s), flapping, &mut |e| events.push(e));
                w.on_timeout(at(s), &FIVE, &mut |e| events.push(e));
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
        w.update(at(0), picture(&[1, 2, 3], &[]), &mut |e| events.push(e));
        w.on_timeout(at(5), &FIVE, &mut |e| events.push(e));
        assert_eq!(w.mode(), Mode::ReadOnly);
        // Two of the far side come back: only n1 stays unreachable, and n4's side is larger.
        w.update(at(6), picture(&[1], &[]), &mut |e| events.push(e));
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
