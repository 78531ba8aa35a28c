//! Which side of a partition keeps running: a pure function of what one member sees, as
//! Akka's Split Brain Resolver decides.
//!
//! Every member of a split cluster runs it on its own view. Given the same strategy, each
//! side must come to the same answer about both sides, and no two sides may both keep
//! running; the table tests below hold each strategy to that.

use std::collections::BTreeSet;

use crate::config::Strategy;
use crate::member::NodeId;
use crate::output::Side;

/// What one member sees when it decides.
#[derive(Clone, Copy, Debug)]
pub struct Situation<'a> {
    /// The members the cluster should have, oldest first.
    pub expected: &'a [NodeId],
    /// The member deciding. When it is not one of `expected` (it does not vote), it is on
    /// the side of the expected members it reaches.
    pub me: NodeId,
    /// The expected members it cannot reach.
    pub unreachable: &'a BTreeSet<NodeId>,
    /// The expected members whose reachability is in dispute (accused, neither confirmed
    /// failed nor cleared): indirectly connected. They count for no side, and go down.
    pub indirect: &'a BTreeSet<NodeId>,
    /// Whether the unreachable set kept changing for too long to settle.
    pub unstable: bool,
}

/// The outcome, from the deciding member's point of view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The members that keep running, in id order (empty when every side goes down).
    pub majority: Vec<NodeId>,
    /// The members that go down (read-only), in id order.
    pub minority: Vec<NodeId>,
    /// The deciding member's side.
    pub local_side: Side,
}

/// Decides which side keeps running.
pub fn decide(strategy: Strategy, s: &Situation<'_>) -> Decision {
    let ours: Vec<NodeId> = s
        .expected
        .iter()
        .copied()
        .filter(|id| *id == s.me || (!s.unreachable.contains(id) && !s.indirect.contains(id)))
        .collect();
    let theirs: Vec<NodeId> =
        s.expected.iter().copied().filter(|id| *id != s.me && s.unreachable.contains(id)).collect();
    let indirect: Vec<NodeId> =
        s.expected.iter().copied().filter(|id| *id != s.me && s.indirect.contains(id)).collect();

    let survives = |side: &[NodeId], other: &[NodeId]| -> bool {
        match strategy {
            Strategy::KeepMajority => keeps_majority(side, other),
            Strategy::DownAllWhenUnstable => !s.unstable && keeps_majority(side, other),
            Strategy::StaticQuorum { quorum } => side.len() >= quorum,
            Strategy::KeepOldest { down_if_alone } => {
                // The oldest of the members still counted (an indirectly connected one goes down).
                let Some(oldest) = s.expected.iter().find(|id| side.contains(id) || other.contains(id)) else {
                    return false;
                };
                if side.contains(oldest) {
                    !(down_if_alone && side.len() == 1 && !other.is_empty())
                } else {
                    down_if_alone && other.len() == 1 && !side.is_empty()
                }
            }
        }
    };
    let we_survive = survives(&ours, &theirs);
    let they_survive = !we_survive && survives(&theirs, &ours);

    let sorted = |mut v: Vec<NodeId>| {
        v.sort_unstable();
        v
    };
    let (majority, minority, local_side) = if we_survive {
        (ours, [theirs, indirect].concat(), Side::Majority)
    } else if they_survive {
        (theirs, [ours, indirect].concat(), Side::Minority)
    } else {
        (Vec::new(), [ours, theirs, indirect].concat(), Side::Minority)
    };
    Decision { majority: sorted(majority), minority: sorted(minority), local_side }
}

/// More members, or as many and the lowest id among both sides.
fn keeps_majority(side: &[NodeId], other: &[NodeId]) -> bool {
    match side.len().cmp(&other.len()) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => {
            let lowest = side.iter().chain(other).min();
            lowest.is_some_and(|l| side.contains(l))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u64]) -> Vec<NodeId> {
        v.iter().copied().map(NodeId).collect()
    }

    fn set(v: &[u64]) -> BTreeSet<NodeId> {
        ids(v).into_iter().collect()
    }

    /// Decides for `me`, with `expected` (oldest first), `unreachable` and `indirect`.
    fn run(strategy: Strategy, expected: &[u64], me: u64, unreachable: &[u64], indirect: &[u64]) -> Decision {
        let expected = ids(expected);
        let (unreachable, indirect) = (set(unreachable), set(indirect));
        decide(
            strategy,
            &Situation {
                expected: &expected,
                me: NodeId(me),
                unreachable: &unreachable,
                indirect: &indirect,
                unstable: false,
            },
        )
    }

    fn decision(majority: &[u64], minority: &[u64], local_side: Side) -> Decision {
        Decision { majority: ids(majority), minority: ids(minority), local_side }
    }

    use Side::{Majority, Minority};

    /// Both sides of a clean split, each deciding from its own view, must agree on who
    /// keeps running.
    fn both_sides(strategy: Strategy, expected: &[u64], a: &[u64], b: &[u64]) -> (Decision, Decision) {
        let from_a = run(strategy, expected, a[0], b, &[]);
        let from_b = run(strategy, expected, b[0], a, &[]);
        assert_eq!(from_a.majority, from_b.majority, "{strategy:?}: the sides disagree on who keeps running");
        assert!(
            !(from_a.local_side == Majority && from_b.local_side == Majority),
            "{strategy:?}: both sides keep running"
        );
        (from_a, from_b)
    }

    #[test]
    fn keep_majority_keeps_the_larger_side_and_breaks_ties_by_lowest_id() {
        let km = Strategy::KeepMajority;
        let five = [1, 2, 3, 4, 5];
        assert_eq!(run(km, &five, 1, &[4, 5], &[]), decision(&[1, 2, 3], &[4, 5], Majority));
        assert_eq!(run(km, &five, 4, &[1, 2, 3], &[]), decision(&[1, 2, 3], &[4, 5], Minority));
        both_sides(km, &five, &[1, 2, 3], &[4, 5]);
        both_sides(km, &five, &[4, 5], &[1, 2, 3]);
        // A tie: the side with n1 keeps running, whichever side decides.
        let four = [1, 2, 3, 4];
        let (a, b) = both_sides(km, &four, &[3, 1], &[2, 4]);
        assert_eq!((a.local_side, b.local_side), (Majority, Minority));
        assert_eq!(a, decision(&[1, 3], &[2, 4], Majority));
        let (a, b) = both_sides(km, &four, &[2, 4], &[1, 3]);
        assert_eq!((a.local_side, b.local_side), (Minority, Majority));
        // One member alone in a pair: the lowest id stays.
        assert_eq!(run(km, &[1, 2], 2, &[1], &[]).local_side, Minority);
        assert_eq!(run(km, &[1, 2], 1, &[2], &[]).local_side, Majority);
    }

    #[test]
    fn indirectly_connected_members_count_for_no_side_and_go_down() {
        let km = Strategy::KeepMajority;
        let five = [1, 2, 3, 4, 5];
        // n3 is disputed: 1-2 against 4-5 is a tie, broken by n1; n3 goes down.
        assert_eq!(run(km, &five, 1, &[4, 5], &[3]), decision(&[1, 2], &[3, 4, 5], Majority));
        assert_eq!(run(km, &five, 4, &[1, 2], &[3]), decision(&[1, 2], &[3, 4, 5], Minority));
        // Without n3 counted, two members cannot outvote three unreachable ones.
        assert_eq!(run(km, &five, 1, &[3, 4, 5], &[2]).local_side, Minority);
        // A disputed member cannot tip a side into a majority it does not have.
        assert_eq!(run(km, &[1, 2, 3, 4, 5, 6], 1, &[4, 5, 6], &[3]), decision(&[4, 5, 6], &[1, 2, 3], Minority));
    }

    #[test]
    fn static_quorum_needs_its_count() {
        let sq = Strategy::StaticQuorum { quorum: 3 };
        let five = [1, 2, 3, 4, 5];
        assert_eq!(run(sq, &five, 1, &[4, 5], &[]), decision(&[1, 2, 3], &[4, 5], Majority));
        assert_eq!(run(sq, &five, 5, &[1, 2, 3], &[]), decision(&[1, 2, 3], &[4, 5], Minority));
        both_sides(sq, &five, &[1, 2, 3], &[4, 5]);
        // An indirectly connected member counts for no side: nobody has three, and every
        // side goes down.
        let d = run(sq, &five, 1, &[4, 5], &[3]);
        assert_eq!(d, decision(&[], &[1, 2, 3, 4, 5], Minority));
    }

    #[test]
    fn keep_oldest_keeps_the_oldest_side_unless_it_is_alone() {
        // A member that is not expected (it does not vote) sides with the voters it reaches.
        let voters = [1, 2, 3, 4, 5];
        assert_eq!(run(Strategy::KeepMajority, &voters, 9, &[4, 5], &[]), decision(&[1, 2, 3], &[4, 5], Majority));
        assert_eq!(run(Strategy::KeepMajority, &voters, 9, &[1, 2, 3], &[]), decision(&[1, 2, 3], &[4, 5], Minority));
        assert_eq!(run(Strategy::KeepMajority, &voters, 9, &[1, 2, 3, 4, 5], &[]).local_side, Minority);
        // Oldest first: n5 is the oldest here.
        let by_age = [5, 1, 2, 3, 4];
        let ko = Strategy::KeepOldest { down_if_alone: false };
        assert_eq!(run(ko, &by_age, 5, &[1, 2, 3], &[]), decision(&[4, 5], &[1, 2, 3], Majority));
        assert_eq!(run(ko, &by_age, 1, &[4, 5], &[]), decision(&[4, 5], &[1, 2, 3], Minority));
        both_sides(ko, &by_age, &[5, 4], &[1, 2, 3]);
        // Alone: kept without down_if_alone, downed with it.
        both_sides(ko, &by_age, &[5], &[1, 2, 3, 4]);
        assert_eq!(run(ko, &by_age, 5, &[1, 2, 3, 4], &[]).local_side, Majority);
        let alone = Strategy::KeepOldest { down_if_alone: true };
        let (a, b) = both_sides(alone, &by_age, &[5], &[1, 2, 3, 4]);
        assert_eq!((a.local_side, b.local_side), (Minority, Majority));
        assert_eq!(b, decision(&[1, 2, 3, 4], &[5], Majority));
        // An indirectly connected oldest goes down; the next oldest decides.
        assert_eq!(run(alone, &by_age, 1, &[3, 4], &[5]), decision(&[1, 2], &[3, 4, 5], Majority));
    }

    #[test]
    fn down_all_when_unstable_downs_every_side_only_when_unstable() {
        let five = ids(&[1, 2, 3, 4, 5]);
        let (unreachable, none) = (set(&[4, 5]), set(&[]));
        let situation = |unstable| Situation {
            expected: &five,
            me: NodeId(1),
            unreachable: &unreachable,
            indirect: &none,
            unstable,
        };
        let stable = decide(Strategy::DownAllWhenUnstable, &situation(false));
        assert_eq!(stable, decision(&[1, 2, 3], &[4, 5], Majority));
        let unstable = decide(Strategy::DownAllWhenUnstable, &situation(true));
        assert_eq!(unstable, decision(&[], &[1, 2, 3, 4, 5], Minority));
        // The other strategies ignore instability.
        assert_eq!(decide(Strategy::KeepMajority, &situation(true)).local_side, Majority);
    }

    #[test]
    fn no_split_of_up_to_seven_members_keeps_two_sides_running() {
        // Every two-way split of every cluster size, every strategy: at most one side runs.
        for n in 1..=7u64 {
            let all: Vec<u64> = (1..=n).collect();
            for mask in 1..(1u64 << n) - 1 {
                let a: Vec<u64> = all.iter().copied().filter(|i| mask & (1 << (i - 1)) != 0).collect();
                let b: Vec<u64> = all.iter().copied().filter(|i| mask & (1 << (i - 1)) == 0).collect();
                for strategy in [
                    Strategy::KeepMajority,
                    Strategy::DownAllWhenUnstable,
                    Strategy::StaticQuorum { quorum: n as usize / 2 + 1 },
                    Strategy::KeepOldest { down_if_alone: true },
                    Strategy::KeepOldest { down_if_alone: false },
                ] {
                    both_sides(strategy, &all, &a, &b);
                }
            }
        }
    }
}
