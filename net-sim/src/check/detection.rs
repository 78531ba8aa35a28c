//! Whole-cluster bounds of failure detection: how soon a crash is known to every live
//! member ([`DetectedWithinBound`]), and what the protocol costs on the wire
//! ([`BytesWithinBound`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use conclave_core::{Config, Event, Instant, NodeId};

use super::{cuts, max_suspicion_timeout, Checker, ClusterSnapshot, Finding, RunInfo};
use crate::fault::Fault;
use crate::network::LinkSelector;

/// A disturbance in force that excuses slow detection: by whom (`None`: anyone), until when.
#[derive(Clone, Debug)]
struct Disturbance {
    whom: Option<NodeId>,
    from: Instant,
    until: Option<Instant>,
    ends: Ends,
}

#[derive(Clone, Debug, PartialEq)]
enum Ends {
    Nothing,
    Heal,
    Speed(NodeId),
    Links(LinkSelector),
}

/// Every crash is detected: within `bound` of a member's crash (if it is not restarted
/// before), every member that ran all along has declared it failed (`MemberFailed`).
///
/// An observer is excused for a crash when, between the crash and the deadline, a fault
/// was in force that could hold its verdict back: a partition, a one-way cut or cut links
/// (for everyone: the verdict's gossip crosses them), a link change that cuts (for the
/// members on those links, or everyone), a pause, a slow process or a clock step (for that
/// member). Clock drift excuses nothing: the bound stretches with the drift the config
/// allows and the drift applied. A crash none of whose observers was left to judge, or
/// restarted before its deadline, is not judged; a run without one could not be judged.
#[derive(Debug)]
pub struct DetectedWithinBound {
    bound: Duration,
    up_since: BTreeMap<NodeId, Instant>,
    /// Crashes to judge: (deadline, crashed member, when).
    pending: BTreeSet<(Instant, NodeId, Instant)>,
    /// Who holds whom failed, since when.
    verdicts: BTreeMap<(NodeId, NodeId), Instant>,
    disturbances: Vec<Disturbance>,
    grace: Duration,
    max_drift: f64,
    judged: usize,
    ended: Option<Instant>,
}

impl DetectedWithinBound {
    /// The checker's name.
    pub const NAME: &'static str = "failure-detected-within-bound";

    /// A checker giving every live member `bound` to declare a crashed member failed.
    pub fn new(bound: Duration) -> Self {
        Self {
            bound,
            up_since: BTreeMap::new(),
            pending: BTreeSet::new(),
            verdicts: BTreeMap::new(),
            disturbances: Vec::new(),
            grace: Duration::ZERO,
            max_drift: 0.0,
            judged: 0,
            ended: None,
        }
    }

    /// The checker for `n` members running `config`, with [`DetectedWithinBound::bound`];
    /// an excuse lasts one longest suspicion timeout past its fault's end.
    pub fn for_cluster(config: &Config, n: usize) -> Self {
        let mut c = Self::new(Self::bound(config, n));
        c.grace = max_suspicion_timeout(config, n) + config.probe_period();
        c
    }

    /// The default bound: the longest suspicion timeout at this size, plus four probe
    /// periods to notice the silence, probe indirectly and spread the verdict (the
    /// catalog's `crash-detection` bound, 7.5 s at 10 lan members), doubled: under chaos
    /// several members crash at once, relays among them, and Lifeguard's local health
    /// stretches the probes of a member that misses their nacks (up to
    /// `awareness_max_multiplier` times).
    pub fn bound(config: &Config, n: usize) -> Duration {
        (max_suspicion_timeout(config, n) + config.probe_period() * 4) * 2
    }

    /// How many crashes were judged.
    pub fn judged(&self) -> usize {
        self.judged
    }

    fn open(&mut self, whom: Option<NodeId>, from: Instant, until: Option<Instant>, ends: Ends) {
        self.disturbances.push(Disturbance { whom, from, until, ends });
    }

    fn close(&mut self, at: Instant, which: impl Fn(&Ends) -> bool) {
        for d in self.disturbances.iter_mut().filter(|d| d.until.is_none() && which(&d.ends)) {
            d.until = Some(at);
        }
    }

    fn excused(&self, observer: NodeId, from: Instant, to: Instant) -> bool {
        self.disturbances.iter().any(|d| {
            d.whom.is_none_or(|w| w == observer) && d.from <= to && d.until.is_none_or(|u| u + self.grace >= from)
        })
    }
}

impl Checker for DetectedWithinBound {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn start(&mut self, info: &RunInfo) -> Vec<Instant> {
        self.up_since = info.members.iter().map(|&m| (m, Instant::ZERO)).collect();
        Vec::new()
    }

    fn fault(&mut self, at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        match fault {
            Fault::Crash(node) => {
                // Verdicts reached already (while it was paused, say) and still held count.
                if self.up_since.remove(node).is_some() {
                    let drift = 1.0 + 2.0 * self.max_drift;
                    self.pending.insert((at + self.bound.mul_f64(drift), *node, at));
                }
            }
            Fault::Restart { node, .. } => {
                // Back before its deadline: that crash needs no judgement.
                self.pending.retain(|&(_, crashed, _)| crashed != *node);
                self.verdicts.retain(|(_, subject), _| subject != node);
                self.up_since.insert(*node, at);
            }
            Fault::Pause { node, duration } => self.open(Some(*node), at, Some(at + *duration), Ends::Nothing),
            Fault::Slow { node, per_message } => {
                self.close(at, |e| *e == Ends::Speed(*node));
                if !per_message.is_zero() {
                    self.open(Some(*node), at, None, Ends::Speed(*node));
                }
            }
            Fault::ClockOffset { node, .. } | Fault::ClockJump { node, .. } => {
                // A step either way moves the member's deadlines; a backward one by up to
                // the chaos's largest (a minute).
                self.open(Some(*node), at, Some(at + Duration::from_secs(60)), Ends::Nothing);
            }
            Fault::CrashAtPersist(_) => {}
            Fault::ClockDrift { ppm, .. } => self.max_drift = self.max_drift.max(ppm.abs() * 1e-6),
            Fault::Partition(_) | Fault::OneWay { .. } | Fault::CutLinks(_) => self.open(None, at, None, Ends::Heal),
            Fault::Heal => self.close(at, |e| *e == Ends::Heal),
            Fault::SetLinks { links, params } => {
                self.close(at, |e| match e {
                    Ends::Links(l) => *links == LinkSelector::All || l == links,
                    _ => false,
                });
                if cuts(params) || params.loss > 0.0 {
                    // Loss delays the verdict's gossip and the probes: every link change
                    // that loses datagrams excuses, for as long as it lasts.
                    let whom = match *links {
                        LinkSelector::From(a) | LinkSelector::To(a) if cuts(params) => Some(a),
                        _ => None,
                    };
                    self.open(whom, at, None, Ends::Links(links.clone()));
                }
            }
        }
    }

    fn event(&mut self, at: Instant, node: NodeId, event: &Event, _findings: &mut Vec<Finding>) {
        match event {
            Event::MemberFailed(m) => {
                self.verdicts.entry((node, m.id)).or_insert(at);
            }
            // Held live again: a verdict before this one no longer stands.
            Event::MemberJoined(m)
            | Event::MemberUpdated(m)
            | Event::MemberRecovered(m)
            | Event::MemberSuspected(m) => {
                self.verdicts.remove(&(node, m.id));
            }
            _ => {}
        }
    }

    fn snapshot(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        while let Some(&(deadline, crashed, at)) = self.pending.first() {
            if deadline > snapshot.at {
                break;
            }
            self.pending.pop_first();
            let mut observers = 0;
            let mut missing = Vec::new();
            for n in snapshot.nodes.iter().filter(|n| n.up && n.id != crashed) {
                if self.up_since.get(&n.id).is_none_or(|&since| since > at) || self.excused(n.id, at, deadline) {
                    continue;
                }
                observers += 1;
                if self.verdicts.get(&(n.id, crashed)).is_none_or(|&when| when > deadline) {
                    missing.push(n.id.to_string());
                }
            }
            if observers == 0 {
                continue;
            }
            self.judged += 1;
            if !missing.is_empty() {
                findings.push(Finding {
                    at: deadline,
                    message: format!(
                        "{crashed} crashed at {at} and stayed down; {:?} later {} had not declared it failed",
                        deadline - at,
                        missing.join(", ")
                    ),
                });
            }
        }
    }

    fn finish(&mut self, snapshot: &ClusterSnapshot, _findings: &mut Vec<Finding>) {
        self.ended = Some(snapshot.at);
    }

    fn pending(&self) -> Option<Instant> {
        self.pending.first().map(|&(deadline, _, _)| deadline)
    }

    fn not_judged(&self) -> Option<String> {
        if self.judged > 0 {
            return None;
        }
        Some(match (self.pending.first(), self.ended) {
            (Some((deadline, crashed, _)), Some(end)) => {
                format!("the run ended at {end}, before {crashed}'s crash was to be judged at {deadline}")
            }
            _ => {
                "no member crashed and stayed down past the bound with a live, undisturbed member to time its detection"
                    .to_string()
            }
        })
    }
}

/// The protocol's cost on the wire stays within a bound: no member sends more than
/// `bound` bytes of datagrams per second of its own running time (averaged over the run,
/// each life counted from its start to its stop).
///
/// It judges every member that ran at least ten virtual seconds; a run in which none did
/// could not be judged.
#[derive(Debug)]
pub struct BytesWithinBound {
    bound: f64,
    sent: BTreeMap<NodeId, u64>,
    up_since: BTreeMap<NodeId, Instant>,
    uptime: BTreeMap<NodeId, Duration>,
    judged: usize,
}

impl BytesWithinBound {
    /// The checker's name.
    pub const NAME: &'static str = "bytes-per-member-second-within-bound";

    /// The shortest running time a member is judged on.
    pub const MIN_UPTIME: Duration = Duration::from_secs(10);

    /// A checker allowing `bound` bytes per member-second.
    pub fn new(bound: f64) -> Self {
        Self { bound, sent: BTreeMap::new(), up_since: BTreeMap::new(), uptime: BTreeMap::new(), judged: 0 }
    }

    /// The default bound for `n` members running `config` (with its voters): the most
    /// datagrams one member sends in the steady state, at 64 bytes each (a ping with a few
    /// gossip items; most datagrams are 12-20 bytes), plus a push-pull of the whole view
    /// (40 bytes a member, both ways) every push-pull interval. The datagrams: a ping and
    /// an ack per probe interval, a gossip message to each of `gossip_nodes` per gossip
    /// interval, and for a leader a heartbeat to every other voter and its ack per
    /// heartbeat interval. With `Config::lan()` at 5 members, 5 voting: 64 x (8 + 30 +
    /// 160) + 13 = 12.7 kB/s, about 8 times the busiest member measured (the leader,
    /// 1.4-1.6 kB/s over 1,000 chaos seeds and the catalog's sweep; members average
    /// 340-840 B/s, BENCHMARKS.md); without voters 2.4 kB/s, 5 times the 450 B/s measured.
    pub fn bound(config: &Config, n: usize) -> f64 {
        let per = |d: Duration| 1.0 / d.as_secs_f64().max(1e-3);
        let voters = config.election.voters.len().saturating_sub(1) as f64;
        let datagrams = 2.0 * per(config.probe_interval)
            + config.gossip_nodes as f64 * per(config.gossip_interval)
            + 2.0 * voters * per(config.election.heartbeat_interval);
        64.0 * datagrams + 2.0 * 40.0 * n as f64 * per(config.push_pull_interval)
    }

    fn stop(&mut self, node: NodeId, at: Instant) {
        if let Some(since) = self.up_since.remove(&node) {
            *self.uptime.entry(node).or_default() += at - since;
        }
    }
}

impl Checker for BytesWithinBound {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn start(&mut self, info: &RunInfo) -> Vec<Instant> {
        self.up_since = info.members.iter().map(|&m| (m, Instant::ZERO)).collect();
        Vec::new()
    }

    fn wants_datagrams(&self) -> bool {
        true
    }

    fn sent(&mut self, _at: Instant, from: NodeId, len: usize, _findings: &mut Vec<Finding>) {
        *self.sent.entry(from).or_default() += len as u64;
    }

    fn fault(&mut self, at: Instant, fault: &Fault, _findings: &mut Vec<Finding>) {
        match fault {
            Fault::Crash(node) => self.stop(*node, at),
            Fault::Restart { node, .. } => {
                self.stop(*node, at);
                self.up_since.insert(*node, at);
            }
            _ => {}
        }
    }

    fn finish(&mut self, snapshot: &ClusterSnapshot, findings: &mut Vec<Finding>) {
        let running: Vec<NodeId> = self.up_since.keys().copied().collect();
        for node in running {
            self.stop(node, snapshot.at);
        }
        for (&node, &uptime) in &self.uptime {
            if uptime < Self::MIN_UPTIME {
                continue;
            }
            self.judged += 1;
            let bytes = self.sent.get(&node).copied().unwrap_or(0);
            let rate = bytes as f64 / uptime.as_secs_f64();
            if rate > self.bound {
                findings.push(Finding {
                    at: snapshot.at,
                    message: format!(
                        "{node} sent {bytes} B in {uptime:?} of running time: {rate:.0} B/s, above the bound of {:.0} B/s",
                        self.bound
                    ),
                });
            }
        }
    }

    fn not_judged(&self) -> Option<String> {
        (self.judged == 0).then(|| format!("no member ran {:?}, the least a rate is judged on", Self::MIN_UPTIME))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::NodeSnapshot;
    use conclave_core::{Member, MemberState};

    fn failed(id: u64) -> Event {
        Event::MemberFailed(Member {
            id: NodeId(id),
            addr: "127.0.0.1:1".parse().expect("a literal address"),
            incarnation: 0,
            state: MemberState::Failed,
            tags: Default::default(),
        })
    }

    fn snapshot(at: Instant, up: &[u64]) -> ClusterSnapshot {
        ClusterSnapshot {
            at,
            nodes: (1..=4)
                .map(|id| NodeSnapshot {
                    id: NodeId(id),
                    up: up.contains(&id),
                    view: BTreeMap::new(),
                    term: 0,
                    leader: None,
                })
                .collect(),
        }
    }

    fn started(c: &mut dyn Checker) {
        let info = RunInfo { seed: 1, plan: crate::FaultPlan::new(), members: (1..=4).map(NodeId).collect() };
        c.start(&info);
    }

    #[test]
    fn a_crash_some_live_member_did_not_detect_in_time_is_caught() {
        let run = |verdicts: &[(u64, u64)], faults: &[(u64, Fault)]| {
            let mut c = DetectedWithinBound::new(Duration::from_secs(10));
            started(&mut c);
            let mut f = Vec::new();
            c.fault(Instant::from_secs(20), &Fault::Crash(NodeId(4)), &mut f);
            for (at, fault) in faults {
                c.fault(Instant::from_secs(*at), fault, &mut f);
            }
            for &(at, observer) in verdicts {
                c.event(Instant::from_secs(at), NodeId(observer), &failed(4), &mut f);
            }
            assert_eq!(c.pending(), Some(Instant::from_secs(30)));
            c.snapshot(&snapshot(Instant::from_secs(30), &[1, 2, 3]), &mut f);
            c.finish(&snapshot(Instant::from_secs(40), &[1, 2, 3]), &mut f);
            (f, c.not_judged())
        };
        let (f, judged) = run(&[(22, 1), (23, 2), (25, 3)], &[]);
        assert!(f.is_empty() && judged.is_none(), "{f:?}");
        let (f, _) = run(&[(22, 1), (23, 2), (35, 3)], &[]);
        assert_eq!(f.len(), 1, "n3 was late");
        assert!(f[0].message.contains("n3") && !f[0].message.contains("n2"), "{}", f[0].message);
        let (f, _) = run(&[(22, 1), (23, 2)], &[]);
        assert_eq!(f.len(), 1, "n3 never declared it");
        // n3 paused: excused; a partition: everyone excused, and nothing judged.
        let pause = Fault::Pause { node: NodeId(3), duration: Duration::from_secs(5) };
        let (f, judged) = run(&[(22, 1), (23, 2)], &[(21, pause)]);
        assert!(f.is_empty() && judged.is_none(), "{f:?}");
        let split = Fault::Partition(vec![vec![NodeId(1)]]);
        let (f, judged) = run(&[], &[(21, split)]);
        assert!(f.is_empty(), "{f:?}");
        assert!(judged.is_some_and(|w| w.contains("no member crashed")));
    }

    #[test]
    fn a_verdict_reached_before_the_crash_and_still_held_counts() {
        let mut c = DetectedWithinBound::new(Duration::from_secs(10));
        started(&mut c);
        let mut f = Vec::new();
        // n4 paused, declared failed by all before it crashed; n3 then heard it again.
        for o in 1..=3 {
            c.event(Instant::from_secs(15), NodeId(o), &failed(4), &mut f);
        }
        let alive = Member {
            id: NodeId(4),
            addr: "127.0.0.1:1".parse().expect("a literal address"),
            incarnation: 1,
            state: MemberState::Alive,
            tags: Default::default(),
        };
        c.event(Instant::from_secs(16), NodeId(3), &Event::MemberRecovered(alive), &mut f);
        c.fault(Instant::from_secs(20), &Fault::Crash(NodeId(4)), &mut f);
        c.snapshot(&snapshot(Instant::from_secs(30), &[1, 2, 3]), &mut f);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.ends_with("n3 had not declared it failed"), "{}", f[0].message);
    }

    #[test]
    fn a_crash_restarted_before_its_deadline_or_no_crash_is_not_judged() {
        let mut c = DetectedWithinBound::new(Duration::from_secs(10));
        started(&mut c);
        let mut f = Vec::new();
        c.fault(Instant::from_secs(20), &Fault::Crash(NodeId(4)), &mut f);
        c.fault(Instant::from_secs(25), &Fault::Restart { node: NodeId(4), disk: crate::fault::Disk::Kept }, &mut f);
        assert_eq!(c.pending(), None);
        c.finish(&snapshot(Instant::from_secs(60), &[1, 2, 3, 4]), &mut f);
        assert!(f.is_empty());
        assert!(c.not_judged().is_some());
    }

    #[test]
    fn a_member_sending_beyond_the_byte_bound_is_caught() {
        let mut c = BytesWithinBound::new(1000.0);
        started(&mut c);
        let mut f = Vec::new();
        for s in 0..20 {
            c.sent(Instant::from_secs(s), NodeId(1), 900, &mut f);
            c.sent(Instant::from_secs(s), NodeId(2), 1200, &mut f);
        }
        // n3 ran only 5 s: too short to judge; n4 sent nothing.
        c.fault(Instant::from_secs(5), &Fault::Crash(NodeId(3)), &mut f);
        c.sent(Instant::from_secs(1), NodeId(3), 100_000, &mut f);
        c.finish(&snapshot(Instant::from_secs(20), &[1, 2, 4]), &mut f);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].message.starts_with("n2 sent 24000 B"), "{}", f[0].message);
        assert_eq!(c.not_judged(), None);
        let mut short = BytesWithinBound::new(1000.0);
        started(&mut short);
        short.finish(&snapshot(Instant::from_secs(5), &[1, 2, 3, 4]), &mut f);
        assert!(short.not_judged().is_some());
    }

    #[test]
    fn the_default_bounds_follow_the_config() {
        let lan = Config::lan();
        assert_eq!(DetectedWithinBound::bound(&lan, 10), Duration::from_secs(15));
        let quiet = BytesWithinBound::bound(&lan, 5);
        let mut voting = lan.clone();
        voting.election.voters = (1..=5).map(NodeId).collect();
        assert!(BytesWithinBound::bound(&voting, 5) > quiet);
        assert!(BytesWithinBound::bound(&lan, 300) > quiet);
    }
}
