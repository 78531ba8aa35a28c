//! [`NoFalseVerdicts`]: no failure verdict that no fault excuses.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use conclave_core::{Config, Event, Instant, NodeId};

use super::{cuts, max_suspicion_timeout, Checker, Finding};
use crate::fault::Fault;
use crate::network::LinkSelector;

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
            // Only armed: the crash itself comes as a `Crash` when it happens.
            Fault::CrashAtPersist(_) | Fault::ClockDrift { .. } => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Disk;
    use crate::network::LinkParams;
    use conclave_core::{Member, MemberState};

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
}
