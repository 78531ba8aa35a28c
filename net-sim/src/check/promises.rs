//! Checkers of the protocol's own promises, not only of its verdicts.
//!
//! - [`IncarnationsNeverReused`]: a member that restarts with its disk never advertises an
//!   incarnation at or below one it advertised before (else an old claim about it, at
//!   that incarnation, would win over its new life).
//! - [`SuspicionWithinBounds`]: every failure verdict comes after a suspicion that lasted
//!   within Lifeguard's bounds for the accuser's view size.
//! - [`RefutesClaims`]: a live member that can reach a member holding a claim about it
//!   (Suspect, Failed or Left) gets it refuted within a bound.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use conclave_core::{Config, Event, Instant, MemberState, NodeId};

use super::{
    max_suspicion_timeout, min_suspicion_timeout, Checker, ClusterSnapshot, Finding, IncarnationChange, RunInfo,
};
use crate::fault::{Disk, Fault};
use crate::network::LinkSelector;

/// A member that restarts with its disk never advertises an incarnation at or below one
/// it advertised before, and no running member's incarnation ever goes down.
///
/// After a restart on a wiped disk (amnesia) a member may start over; what it advertises
/// from then on is what its disk must cover at its next restart with the disk.
#[derive(Debug, Default)]
pub struct IncarnationsNeverReused {
    /// Per member: the highest incarnation it advertised since its disk was last wiped,
    /// and in its current life.
    advertised: BTreeMap<NodeId, (u64, u64)>,
}

impl IncarnationsNeverReused {
    /// The checker's name.
    pub const NAME: &'static str = "incarnation-never-reused-after-restart";
}

impl Checker for IncarnationsNeverReused {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn wants_incarnations(&self) -> bool {
        true
    }

    fn incarnation(
        &mut self,
        at: Instant,
        node: NodeId,
        incarnation: u64,
        change: IncarnationChange,
        findings: &mut Vec<Finding>,
    ) {
        let entry = self.advertised.entry(node).or_insert((incarnation, incarnation));
        match change {
            IncarnationChange::Started => *entry = (incarnation, incarnation),
            IncarnationChange::Restarted(Disk::Amnesia) => *entry = (incarnation, incarnation),
            IncarnationChange::Restarted(Disk::Kept) => {
                if incarnation <= entry.0 {
                    findings.push(Finding {
                        at,
                        message: format!(
                            "{node} restarted with its disk at incarnation {incarnation}, though it had advertised incarnation {} before",
                            entry.0
                        ),
                    });
                }
                *entry = (entry.0.max(incarnation), incarnation);
            }
            IncarnationChange::Bumped => {
                if incarnation < entry.1 {
                    findings.push(Finding {
                        at,
                        message: format!(
                            "{node}'s incarnation went down from {} to {incarnation} while it ran",
                            entry.1
                        ),
                    });
                }
                *entry = (entry.0.max(incarnation), incarnation);
            }
        }
    }
}

/// A suspicion as its accuser reported it.
#[derive(Clone, Copy, Debug)]
struct Suspected {
    at: Instant,
    incarnation: u64,
    /// Live members in the accuser's view then.
    view: usize,
}

/// Every failure verdict came after a suspicion that lasted within Lifeguard's bounds.
///
/// The first member to declare a member failed at an incarnation is the one whose
/// suspicion timer expired (the others adopt its verdict through gossip, sooner than
/// their own timers). That member must have reported the suspicion (`MemberSuspected`),
/// and the time between must lie within the suspicion timeouts of its view size: at least
/// `suspicion_mult * max(1, log10 n) * probe_interval`, at most
/// `suspicion_max_timeout_mult` times that. The view size is counted from the member's own
/// events, give or take one member; the bounds stretch with its clock's drift, and the
/// upper bound does not hold for a member that was paused, slow or whose clock stepped
/// during the suspicion (its timers fired late), nor across an incarnation change that
/// restarted the suspicion without an event.
#[derive(Debug)]
pub struct SuspicionWithinBounds {
    config: Config,
    /// Each member's view as its events tell it: who it holds live.
    views: BTreeMap<NodeId, BTreeSet<NodeId>>,
    suspicions: BTreeMap<(NodeId, NodeId), Suspected>,
    /// Verdicts (member, incarnation) already reached by someone.
    verdicts: BTreeSet<(NodeId, u64)>,
    /// Members whose timers were held back (paused, slow), until when.
    held_back: BTreeMap<NodeId, Instant>,
    /// Members whose clocks stepped: their deadlines moved, both ways.
    stepped: BTreeSet<NodeId>,
    drift_ppm: BTreeMap<NodeId, f64>,
}

impl SuspicionWithinBounds {
    /// The checker's name.
    pub const NAME: &'static str = "suspicion-within-lifeguard-bounds";

    /// A checker for members running `config`.
    pub fn new(config: Config) -> Self {
        Self {
            config,
            views: BTreeMap::new(),
            suspicions: BTreeMap::new(),
            verdicts: BTreeSet::new(),
            held_back: BTreeMap::new(),
            stepped: BTreeSet::new(),
            drift_ppm: BTreeMap::new(),
        }
    }

    fn view(&mut self, node: NodeId) -> &mut BTreeSet<NodeId> {
        self.views.entry(node).or_insert_with(|| BTreeSet::from([node]))
    }

    fn restarted(&mut self, node: NodeId) {
        self.views.insert(node, BTreeSet::from([node]));
        self.suspicions.retain(|&(accuser, _), _| accuser != node);
    }
}

impl Checker for SuspicionWithinBounds {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn start(&mut self, info: &RunInfo) -> Vec<Instant> {
        for &m in &info.members {
            self.view(m);
        }
        Vec::new()
    }

    fn fault(&mut self, at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        match fault {
            Fault::Crash(node) | Fault::Restart { node, .. } => self.restarted(*node),
            Fault::Pause { node, duration } => {
                let until = at + *duration;
                let e = self.held_back.entry(*node).or_insert(until);
                *e = (*e).max(until);
            }
            // A backlog drains after the speed is restored: held back for good.
            Fault::Slow { node, per_message } if !per_message.is_zero() => {
                self.held_back.insert(*node, Instant::from_nanos(u64::MAX));
            }
            Fault::ClockOffset { node, .. } | Fault::ClockJump { node, .. } => {
                self.stepped.insert(*node);
            }
            Fault::ClockDrift { node, ppm } => {
                let e = self.drift_ppm.entry(*node).or_insert(0.0);
                *e = e.abs().max(ppm.abs());
            }
            _ => {}
        }
    }

    fn event(&mut self, at: Instant, node: NodeId, event: &Event, findings: &mut Vec<Finding>) {
        match event {
            Event::MemberJoined(m) | Event::MemberUpdated(m) | Event::MemberRecovered(m) => {
                self.view(node).insert(m.id);
                self.suspicions.remove(&(node, m.id));
            }
            Event::MemberSuspected(m) => {
                let view = self.view(node).len();
                self.view(node).insert(m.id);
                self.suspicions.insert((node, m.id), Suspected { at, incarnation: m.incarnation, view });
            }
            Event::MemberLeft(m) => {
                self.view(node).remove(&m.id);
                self.suspicions.remove(&(node, m.id));
            }
            Event::MemberFailed(m) => {
                self.view(node).remove(&m.id);
                let suspected = self.suspicions.remove(&(node, m.id));
                if !self.verdicts.insert((m.id, m.incarnation)) {
                    return; // adopted from an earlier verdict
                }
                let Some(s) = suspected else {
                    findings.push(Finding {
                        at,
                        message: format!(
                            "{node} declared {} failed (incarnation {}) first in the cluster without having suspected it",
                            m.id, m.incarnation
                        ),
                    });
                    return;
                };
                if self.stepped.contains(&node) {
                    return;
                }
                let drift = self.drift_ppm.get(&node).copied().unwrap_or(0.0) * 1e-6;
                let lasted = at - s.at;
                let slack = Duration::from_millis(1);
                let low = min_suspicion_timeout(&self.config, s.view.saturating_sub(1).max(1)).mul_f64(1.0 - drift);
                if lasted + slack < low {
                    findings.push(Finding {
                        at,
                        message: format!(
                            "{node} declared {} failed {lasted:?} after suspecting it, below the shortest suspicion timeout ({low:?} for a view of {})",
                            m.id, s.view
                        ),
                    });
                }
                let held_back = self.held_back.get(&node).is_some_and(|&until| until >= s.at);
                if held_back || s.incarnation != m.incarnation {
                    return;
                }
                let high = max_suspicion_timeout(&self.config, s.view + 1).mul_f64(1.0 + drift);
                if lasted > high + slack {
                    findings.push(Finding {
                        at,
                        message: format!(
                            "{node} declared {} failed {lasted:?} after suspecting it, beyond the longest suspicion timeout ({high:?} for a view of {})",
                            m.id, s.view
                        ),
                    });
                }
            }
            _ => {}
        }
    }
}

/// A claim one member holds about another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Claim {
    state: MemberState,
    since: Instant,
}

/// A live member that can reach a member holding a claim about it (Suspect, Failed or
/// Left) gets the claim refuted within `bound`: the holder sees it alive again.
///
/// The clock of a claim starts when it is made, or when the network and the members last
/// changed (any fault; a pause or a backward clock step when it ends), whichever is later.
/// At the deadline the claim is judged on a snapshot: a violation if the holder and the
/// subject both run, no partition, cut or cutting link separates them, the subject does
/// not itself say it left, and the holder still does not hold it alive.
#[derive(Debug)]
pub struct RefutesClaims {
    bound: Duration,
    /// Every claim held, as the holders' events tell.
    claims: BTreeMap<(NodeId, NodeId), Claim>,
    /// The claims still to judge (all of them again after every fault), by their start.
    pending: BTreeSet<(Instant, NodeId, NodeId)>,
    settled: Instant,
    /// Partition side per member (absent: side 0).
    sides: BTreeMap<NodeId, usize>,
    /// Directed cut links.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Members all of whose links are cut by a link change (by selector).
    cut_links: Vec<LinkSelector>,
    /// Each member's clock offset, to size the step of the next one.
    offsets: BTreeMap<NodeId, i64>,
    judged: u64,
}

impl RefutesClaims {
    /// The checker's name.
    pub const NAME: &'static str = "live-member-refutes-claims";

    /// A checker giving each claim `bound` to be refuted.
    pub fn new(bound: Duration) -> Self {
        Self {
            bound,
            claims: BTreeMap::new(),
            pending: BTreeSet::new(),
            settled: Instant::ZERO,
            sides: BTreeMap::new(),
            cut: BTreeSet::new(),
            cut_links: Vec::new(),
            offsets: BTreeMap::new(),
            judged: 0,
        }
    }

    /// How many claims were judged (refuted in time, or not).
    pub fn judged(&self) -> u64 {
        self.judged
    }

    fn reachable(&self, a: NodeId, b: NodeId) -> bool {
        let side = |n: NodeId| self.sides.get(&n).copied().unwrap_or(0);
        let link_cut = |from: NodeId, to: NodeId| {
            self.cut.contains(&(from, to))
                || self.cut_links.iter().any(|l| match *l {
                    LinkSelector::All => true,
                    LinkSelector::Between(x, y) => (x, y) == (from, to) || (y, x) == (from, to),
                    LinkSelector::OneWay { from: x, to: y } => (x, y) == (from, to),
                    LinkSelector::From(x) => x == from,
                    LinkSelector::To(y) => y == to,
                })
        };
        side(a) == side(b) && !link_cut(a, b) && !link_cut(b, a)
    }
}

impl Checker for RefutesClaims {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn fault(&mut self, at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        let step_back = |nanos: i64| at + Duration::from_nanos(if nanos < 0 { nanos.unsigned_abs() } else { 0 });
        let settled = match fault {
            Fault::Pause { duration, .. } => at + *duration,
            // A clock stepped back stands still for the size of the step.
            Fault::ClockJump { nanos, .. } => step_back(*nanos),
            Fault::ClockOffset { node, offset_nanos } => {
                let before = self.offsets.insert(*node, *offset_nanos).unwrap_or(0);
                step_back(offset_nanos.saturating_sub(before))
            }
            _ => at,
        };
        self.settled = self.settled.max(settled);
        // The network or a member changed: every claim held is to be judged again.
        self.pending = self.claims.iter().map(|(&(h, m), c)| (c.since, h, m)).collect();
        match fault {
            Fault::Partition(groups) => {
                self.sides = groups.iter().enumerate().flat_map(|(g, m)| m.iter().map(move |&n| (n, g + 1))).collect();
            }
            Fault::OneWay { from, to } => {
                self.cut.extend(from.iter().flat_map(|&a| to.iter().map(move |&b| (a, b))));
            }
            Fault::CutLinks(links) => self.cut.extend(links.iter().flat_map(|&(a, b)| [(a, b), (b, a)])),
            Fault::Heal => {
                self.sides.clear();
                self.cut.clear();
            }
            Fault::SetLinks { links, params } => {
                if *links == LinkSelector::All {
                    self.cut_links.clear();
                } else {
                    self.cut_links.retain(|l| l != links);
                }
                if super::cuts(params) {
                    self.cut_links.push(links.clone());
                }
            }
            Fault::Crash(node) | Fault::Restart { node, .. } => {
                // A new process holds no claims; claims about it are judged afresh.
                self.claims.retain(|&(holder, _), _| holder != *node);
                self.pending.retain(|&(_, holder, _)| holder != *node);
            }
            _ => {}
        }
    }

    fn event(&mut self, at: Instant, node: NodeId, event: &Event, _findings: &mut Vec<Finding>) {
        match event {
            Event::MemberJoined(m) | Event::MemberUpdated(m) | Event::MemberRecovered(m) => {
                if let Some(c) = self.claims.remove(&(node, m.id)) {
                    self.pending.remove(&(c.since, node, m.id));
                }
            }
            Event::MemberSuspected(m) | Event::MemberFailed(m) | Event::MemberLeft(m) => {
                let state = match event {
                    Event::MemberSuspected(_) => MemberState::Suspect,
                    Event::MemberFailed(_) => MemberState::Failed,
                    _ => MemberState::Left,
                };
                let since = self.claims.get(&(node, m.id)).map_or(at, |c| c.since);
                self.claims.insert((node, m.id), Claim { state, since });
                self.pending.insert((since, node, m.id));
            }
            _ => {}
        }
    }

    fn snapshot(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        let due: Vec<((NodeId, NodeId), Claim)> = self
            .pending
            .iter()
            .take_while(|(since, _, _)| (*since).max(self.settled) + self.bound <= snapshot.at)
            .filter_map(|&(_, h, m)| self.claims.get(&(h, m)).map(|c| ((h, m), *c)))
            .collect();
        let nodes: BTreeMap<NodeId, &super::NodeSnapshot> = snapshot.nodes.iter().map(|n| (n.id, n)).collect();
        for ((holder, subject), claim) in due {
            // Judged now; again only after the next fault.
            self.pending.remove(&(claim.since, holder, subject));
            self.judged += 1;
            let (Some(h), Some(s)) = (nodes.get(&holder), nodes.get(&subject)) else { continue };
            let left = s.view.get(&subject) == Some(&MemberState::Left);
            let held = h.view.get(&subject).copied();
            if h.up && s.up && !left && self.reachable(holder, subject) && held != Some(MemberState::Alive) {
                let held = held.map_or_else(|| "forgotten".to_string(), |s| s.to_string());
                findings.push(Finding {
                    at: snapshot.at,
                    message: format!(
                        "{holder} still holds {subject} {held} ({} since {}), though both run and reach each other: not refuted within {:?}",
                        claim.state,
                        claim.since,
                        self.bound
                    ),
                });
            }
        }
    }

    fn pending(&self) -> Option<Instant> {
        self.pending.first().map(|&(since, _, _)| since.max(self.settled) + self.bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::NodeSnapshot;
    use conclave_core::Member;

    fn member(id: u64, incarnation: u64, state: MemberState) -> Member {
        Member {
            id: NodeId(id),
            addr: "127.0.0.1:1".parse().expect("a literal address"),
            incarnation,
            state,
            tags: Default::default(),
        }
    }

    fn secs(s: f64) -> Instant {
        Instant::from_nanos((s * 1e9) as u64)
    }

    #[test]
    fn an_incarnation_reused_after_a_restart_with_disk_is_caught() {
        let mut c = IncarnationsNeverReused::default();
        let mut f = Vec::new();
        let n = NodeId(2);
        c.incarnation(secs(0.0), n, 0, IncarnationChange::Started, &mut f);
        c.incarnation(secs(5.0), n, 3, IncarnationChange::Bumped, &mut f);
        c.incarnation(secs(9.0), n, 4, IncarnationChange::Restarted(Disk::Kept), &mut f);
        assert!(f.is_empty(), "4 is above 3: {f:?}");
        c.incarnation(secs(10.0), n, 6, IncarnationChange::Bumped, &mut f);
        // Its disk missed the bump to 6: restarting at 5 or 6 reuses an incarnation.
        c.incarnation(secs(12.0), n, 6, IncarnationChange::Restarted(Disk::Kept), &mut f);
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("advertised incarnation 6 before"), "{}", f[0].message);
        // A wiped disk starts over; what it advertises after is what counts next time.
        c.incarnation(secs(13.0), n, 0, IncarnationChange::Restarted(Disk::Amnesia), &mut f);
        c.incarnation(secs(14.0), n, 1, IncarnationChange::Restarted(Disk::Kept), &mut f);
        assert_eq!(f.len(), 1);
        // And no running member's incarnation goes down.
        c.incarnation(secs(15.0), n, 0, IncarnationChange::Bumped, &mut f);
        assert_eq!(f.len(), 2);
    }

    fn suspicion_checker() -> SuspicionWithinBounds {
        let mut c = SuspicionWithinBounds::new(Config::lan());
        let info = RunInfo { seed: 1, plan: crate::FaultPlan::new(), members: (1..=5).map(NodeId).collect() };
        c.start(&info);
        let mut f = Vec::new();
        for o in 1..=5 {
            for m in 1..=5 {
                if o != m {
                    c.event(secs(0.0), NodeId(o), &Event::MemberJoined(member(m, 0, MemberState::Alive)), &mut f);
                }
            }
        }
        assert!(f.is_empty());
        c
    }

    #[test]
    fn a_verdict_outside_the_suspicion_bounds_or_without_suspicion_is_caught() {
        let lan = Config::lan();
        let (low, high) = (min_suspicion_timeout(&lan, 5), max_suspicion_timeout(&lan, 5));
        let run = |lasted: Option<Duration>| {
            let mut c = suspicion_checker();
            let mut f = Vec::new();
            if let Some(lasted) = lasted {
                c.event(secs(10.0), NodeId(1), &Event::MemberSuspected(member(3, 0, MemberState::Suspect)), &mut f);
                c.event(
                    secs(10.0) + lasted,
                    NodeId(1),
                    &Event::MemberFailed(member(3, 0, MemberState::Failed)),
                    &mut f,
                );
            } else {
                c.event(secs(10.0), NodeId(1), &Event::MemberFailed(member(3, 0, MemberState::Failed)), &mut f);
            }
            // Another member adopting the verdict through gossip, at once, is no verdict of its own.
            c.event(secs(30.0), NodeId(2), &Event::MemberFailed(member(3, 0, MemberState::Failed)), &mut f);
            f
        };
        assert!(run(Some(low)).is_empty());
        assert!(run(Some(high)).is_empty());
        assert!(run(Some((low + high) / 2)).is_empty());
        let early = run(Some(low / 2));
        assert!(early.len() == 1 && early[0].message.contains("below the shortest"), "{early:?}");
        let late = run(Some(high * 2));
        assert!(late.len() == 1 && late[0].message.contains("beyond the longest"), "{late:?}");
        let unsuspected = run(None);
        assert!(
            unsuspected.len() == 1 && unsuspected[0].message.contains("without having suspected"),
            "{unsuspected:?}"
        );
    }

    #[test]
    fn a_paused_accuser_may_be_late_but_never_early() {
        let lan = Config::lan();
        let high = max_suspicion_timeout(&lan, 5);
        let mut c = suspicion_checker();
        let mut f = Vec::new();
        c.fault(secs(11.0), &Fault::Pause { node: NodeId(1), duration: Duration::from_secs(30) }, &mut f);
        c.event(secs(10.0), NodeId(1), &Event::MemberSuspected(member(3, 0, MemberState::Suspect)), &mut f);
        c.event(secs(10.0) + high * 5, NodeId(1), &Event::MemberFailed(member(3, 0, MemberState::Failed)), &mut f);
        assert!(f.is_empty(), "{f:?}");
        c.event(secs(50.0), NodeId(1), &Event::MemberSuspected(member(4, 0, MemberState::Suspect)), &mut f);
        c.event(secs(50.1), NodeId(1), &Event::MemberFailed(member(4, 0, MemberState::Failed)), &mut f);
        assert_eq!(f.len(), 1);
    }

    fn snapshot(at: Instant, up: &[u64], views: &[(u64, u64, MemberState)]) -> ClusterSnapshot {
        ClusterSnapshot {
            at,
            nodes: (1..=3)
                .map(|id| NodeSnapshot {
                    id: NodeId(id),
                    up: up.contains(&id),
                    view: views.iter().filter(|v| v.0 == id).map(|v| (NodeId(v.1), v.2)).collect(),
                    term: 0,
                    leader: None,
                })
                .collect(),
        }
    }

    #[test]
    fn a_claim_about_a_reachable_live_member_left_standing_is_caught() {
        let bound = Duration::from_secs(60);
        let claim = |c: &mut RefutesClaims, f: &mut Vec<Finding>| {
            c.event(secs(10.0), NodeId(1), &Event::MemberFailed(member(3, 0, MemberState::Failed)), f);
        };
        let stale = [(1, 3, MemberState::Failed), (3, 3, MemberState::Alive)];
        // Both run, nothing between them: not refuted in 60 s is a violation.
        let mut c = RefutesClaims::new(bound);
        let mut f = Vec::new();
        claim(&mut c, &mut f);
        assert_eq!(c.pending(), Some(secs(70.0)));
        c.snapshot(&snapshot(secs(70.0), &[1, 2, 3], &stale), &mut f);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.contains("n1 still holds n3 failed"), "{}", f[0].message);
        assert_eq!(c.pending(), None);
        // Refuted in time: nothing.
        let mut c = RefutesClaims::new(bound);
        let mut f = Vec::new();
        claim(&mut c, &mut f);
        c.event(secs(20.0), NodeId(1), &Event::MemberRecovered(member(3, 1, MemberState::Alive)), &mut f);
        assert_eq!(c.pending(), None);
        // The subject down, or cut off: the claim is true, or cannot be refuted.
        for fault in [Fault::Crash(NodeId(3)), Fault::Partition(vec![vec![NodeId(3)]])] {
            let mut c = RefutesClaims::new(bound);
            let mut f = Vec::new();
            claim(&mut c, &mut f);
            c.fault(secs(15.0), &fault, &mut f);
            assert_eq!(c.pending(), Some(secs(75.0)), "a fault restarts the clock");
            let up: &[u64] = if matches!(fault, Fault::Crash(_)) { &[1, 2] } else { &[1, 2, 3] };
            c.snapshot(&snapshot(secs(75.0), up, &stale), &mut f);
            assert!(f.is_empty(), "{fault:?}: {f:?}");
            // After the restart or the heal, it is judged again.
            let back = match fault {
                Fault::Crash(n) => Fault::Restart { node: n, disk: Disk::Kept },
                _ => Fault::Heal,
            };
            c.fault(secs(100.0), &back, &mut f);
            c.snapshot(&snapshot(secs(160.0), &[1, 2, 3], &stale), &mut f);
            assert_eq!(f.len(), 1, "{back:?}");
        }
    }
}
