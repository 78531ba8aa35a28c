//! The prober: "is this peer late, and is it only my link?"
//!
//! A [`Prober`] holds this member's place on the monitoring ring: the peers it watches (its
//! live predecessors, each with a [`PhiAccrual`] detector fed by every datagram from it),
//! the peers that watch it, SWIM's protocol period (one ping per `probe_interval`, to the
//! watched peers in turn), the indirect probes it runs when a detector says a peer is late,
//! the pings it relays for others (Lifeguard's nacks), and Lifeguard's local health score,
//! which stretches its timeouts when it is the slow one.
//!
//! It decides and remembers; the node sends what it decides and judges the outcome (a
//! probe that expires without an ack is a suspicion, which is the view's business).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use smallvec::SmallVec;

use crate::detector::{PhiAccrual, PhiParams};
use crate::member::NodeId;
use crate::membership::awareness::Awareness;
use crate::membership::view::View;
use crate::outbox::To;
use crate::time::Instant;

/// Ring neighbours are few (the default `monitors` is 3): kept inline up to this many.
const RING_INLINE: usize = 4;

/// The silence cap: a watched peer that missed this many of its probe periods in a row is
/// probed indirectly, whatever phi says. A member that starts watching a peer has looked at
/// it within this many periods.
pub(crate) const SILENT_PERIODS: u32 = 3;

type Ring<T> = SmallVec<[T; RING_INLINE]>;

/// A peer this member watches.
#[derive(Debug)]
struct Watch {
    id: NodeId,
    addr: SocketAddr,
    detector: PhiAccrual,
    /// No indirect probe of it before this.
    next_indirect: Instant,
    /// The last period's ping to it, by sequence number, and when it left.
    ping: Option<(u64, Instant)>,
    /// When it last pinged us (it watches us too).
    pinged_us: Option<Instant>,
    rtt: RoundTrip,
}

/// The smoothed round trip to one peer and its variation, as TCP's retransmission timer
/// (RFC 6298): what a probe of it may wait for.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct RoundTrip {
    /// Smoothed round-trip time, once sampled.
    srtt: Option<Duration>,
    rttvar: Duration,
}

/// RFC 6298's clock granularity term: the least margin above the smoothed round trip.
const RTT_GRANULARITY: Duration = Duration::from_millis(1);

impl RoundTrip {
    /// Takes one round-trip sample (alpha 1/8, beta 1/4).
    pub(crate) fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let deviation = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + deviation) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// RFC 6298's retransmission timeout, `SRTT + max(G, 4 * RTTVAR)`; zero before any
    /// sample.
    pub(crate) fn rto(&self) -> Duration {
        self.srtt.map_or(Duration::ZERO, |srtt| srtt + RTT_GRANULARITY.max(self.rttvar * 4))
    }

    /// [`Self::rto`] with the round trip counted twice: an indirect probe's answer comes
    /// back through a relay, two round trips. Within `[floor, ceiling]`; `floor` before any
    /// sample.
    pub(crate) fn timeout(&self, floor: Duration, ceiling: Duration) -> Duration {
        let Some(srtt) = self.srtt else { return floor };
        (srtt + self.rto()).clamp(floor, ceiling.max(floor))
    }
}

/// A peer that watches this member: its pings are the usual input.
#[derive(Debug)]
struct Watcher {
    id: NodeId,
    /// When anything last came from it.
    heard: Option<Instant>,
}

/// An indirect probe in flight: a ping to the target plus ping-reqs through relays.
#[derive(Debug)]
struct Probe {
    target: NodeId,
    deadline: Instant,
    expected_nacks: usize,
    nacks: usize,
}

/// A ping sent on another member's behalf.
#[derive(Debug)]
struct Relay {
    /// The member that asked, where its ping-req came from.
    requester: To,
    requester_seq: u64,
    target: NodeId,
    /// When it nacks if no ack came (Lifeguard), and whether it has.
    nack_at: Instant,
    nacked: bool,
    /// A late ack is still passed on until then.
    give_up_at: Instant,
}

impl Relay {
    fn deadline(&self) -> Instant {
        if self.nacked {
            self.give_up_at
        } else {
            self.nack_at
        }
    }
}

/// An indirect probe that timed out without an ack.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ExpiredProbe {
    pub(crate) target: NodeId,
    /// The relays asked to ping it, and how many of them nacked (heard nothing either).
    pub(crate) relays: usize,
    pub(crate) nacks: usize,
}

/// What an ack means to the prober.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AckOutcome {
    /// It answers a ping relayed for `requester`: pass the ack on, under its `seq`.
    Relayed { requester: To, seq: u64 },
    /// Anything else (an indirect probe it ended, a plain ping's answer).
    Done,
}

/// This member's probing state.
#[derive(Debug)]
pub(crate) struct Prober {
    /// The peers this member watches: its `monitors` live predecessors on the ring.
    watches: Ring<Watch>,
    /// The peers that watch it: its `monitors` live successors, the usual senders of the
    /// pings it receives.
    watchers: Ring<Watcher>,
    /// The watched peer pinged last.
    next_watch: usize,
    /// When the next protocol period starts.
    next_period: Instant,
    /// Whether any ack came in since the last period (a healthy member's score decays).
    acked_since_period: bool,
    /// Indirect probes in flight, by sequence number.
    probes: BTreeMap<u64, Probe>,
    /// Pings sent on another member's behalf, by our sequence number.
    relays: BTreeMap<u64, Relay>,
    next_seq: u64,
    /// The protocol period.
    interval: Duration,
    awareness: Awareness,
    /// A detector as a new watch starts it, whose threshold is solved once.
    fresh_detector: PhiAccrual,
}

impl Prober {
    /// A prober with no watches, probing every `interval`, whose first period starts at
    /// `first_period`.
    pub(crate) fn new(params: PhiParams, awareness_max: u32, interval: Duration, first_period: Instant) -> Self {
        Self {
            watches: Ring::new(),
            watchers: Ring::new(),
            next_watch: 0,
            next_period: first_period,
            acked_since_period: false,
            probes: BTreeMap::new(),
            relays: BTreeMap::new(),
            next_seq: 1,
            interval,
            awareness: Awareness::new(awareness_max),
            fresh_detector: PhiAccrual::new(params),
        }
    }

    // ----- what others ask --------------------------------------------------------

    /// The peers watched, nearest first.
    pub(crate) fn watched(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.watches.iter().map(|w| w.id)
    }

    /// The phi of a watched peer at `now`.
    pub(crate) fn phi(&self, id: NodeId, now: Instant) -> Option<f64> {
        self.watches.iter().find(|w| w.id == id).map(|w| w.detector.phi(now))
    }

    /// Whether `id` is a ring neighbour (watched or watching), the usual sender.
    pub(crate) fn is_neighbour(&self, id: NodeId) -> bool {
        self.watchers.iter().any(|w| w.id == id) || self.watches.iter().any(|w| w.id == id)
    }

    /// Whether a ring neighbour (watched or watching) sent anything after `since`.
    pub(crate) fn heard_since(&self, id: NodeId, since: Instant) -> bool {
        self.last_heard(id).is_some_and(|at| at > since)
    }

    /// Whether this member hears `id` directly: a ring neighbour (watched or watching) that
    /// sent something within `window`.
    pub(crate) fn hears(&self, id: NodeId, now: Instant, window: Duration) -> bool {
        self.last_heard(id).is_some_and(|at| now.saturating_duration_since(at) <= window)
    }

    /// When a ring neighbour last sent anything: a watched peer's last heartbeat, or when
    /// a watcher was last heard. `None` for others.
    fn last_heard(&self, id: NodeId) -> Option<Instant> {
        if let Some(watch) = self.watches.iter().find(|w| w.id == id) {
            return watch.detector.last_heartbeat();
        }
        self.watchers.iter().find(|w| w.id == id).and_then(|w| w.heard)
    }

    /// How often each watched peer is pinged: one per interval, in turn.
    fn period(&self) -> Duration {
        self.interval.saturating_mul(u32::try_from(self.watches.len()).unwrap_or(u32::MAX))
    }

    /// Whether an indirect probe of `id` is in flight.
    pub(crate) fn is_probing(&self, id: NodeId) -> bool {
        !self.probes.is_empty() && self.probes.values().any(|p| p.target == id)
    }

    pub(crate) fn awareness(&self) -> &Awareness {
        &self.awareness
    }

    /// Raises (or lowers) the local health score.
    pub(crate) fn note_health(&mut self, delta: i64) {
        self.awareness.apply(delta);
    }

    /// A new sequence number for a ping, a ping-req or a relayed ping.
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    // ----- deadlines --------------------------------------------------------------

    pub(crate) fn next_period(&self) -> Instant {
        self.next_period
    }

    /// When the earliest relayed ping is due its nack, or to be given up.
    pub(crate) fn relay_deadline(&self) -> Option<Instant> {
        // Asked after every input, and nearly always empty: skip the tree walk then.
        if self.relays.is_empty() {
            return None;
        }
        self.relays.values().map(Relay::deadline).min()
    }

    /// When the earliest indirect probe times out.
    pub(crate) fn probe_deadline(&self) -> Option<Instant> {
        if self.probes.is_empty() {
            return None;
        }
        self.probes.values().map(|p| p.deadline).min()
    }

    /// When the earliest indirect probe of a watched peer falls due: when its phi reaches
    /// the threshold, but not while one is in flight.
    pub(crate) fn indirect_deadline(&self) -> Option<Instant> {
        self.watches.iter().filter_map(|w| self.indirect_due(w)).min()
    }

    fn indirect_due(&self, watch: &Watch) -> Option<Instant> {
        if self.is_probing(watch.id) {
            return None;
        }
        // Phi says when the peer is late; under loss it learns long gaps and says it late.
        // A peer that missed `SILENT_PERIODS` of its probes in a row is late whatever phi
        // says.
        let period = self.period();
        // (Counted from the last heartbeat, which is an ack a round trip after its ping: the
        // third ping's ack is due a round trip after three periods, give or take its
        // variation.)
        let silent = watch.detector.last_heartbeat().map(|at| at + period * SILENT_PERIODS + watch.rtt.rto());
        let late = match (watch.detector.deadline(), silent) {
            (Some(phi), Some(silent)) => phi.min(silent),
            (phi, silent) => phi.or(silent)?,
        };
        Some(late.max(watch.next_indirect))
    }

    // ----- inputs -----------------------------------------------------------------

    /// Any datagram from a watched peer is a heartbeat; one from a watcher is noted; any
    /// datagram from the target of an indirect probe ends the probe (it is alive).
    pub(crate) fn heard_from(&mut self, sender: NodeId, now: Instant) {
        if !self.probes.is_empty() {
            self.probes.retain(|_, p| p.target != sender);
        }
        if let Some(watch) = self.watches.iter_mut().find(|w| w.id == sender) {
            watch.detector.heartbeat(now);
        }
        if let Some(watcher) = self.watchers.iter_mut().find(|w| w.id == sender) {
            watcher.heard = Some(now);
        }
    }

    /// Starts a protocol period: returns the watched peer to ping now, if any, and the
    /// ping's sequence number (its ack times the round trip).
    ///
    /// SWIM's period: one probe per `interval` to the watched peers in turn, so each is
    /// pinged every `monitors` intervals and a member sends two datagrams (ping, ack) per
    /// interval whatever the cluster size.
    pub(crate) fn start_period(&mut self, now: Instant) -> Option<(NodeId, SocketAddr, u64)> {
        if self.acked_since_period {
            self.awareness.apply(-1);
        }
        self.acked_since_period = false;
        self.next_period = now + self.interval;
        if self.watches.is_empty() {
            return None;
        }
        self.next_watch = (self.next_watch + 1) % self.watches.len();
        // A watched peer that watches us too and pinged us within our cycle was just heard,
        // and heard our ack: a ping of ours would tell neither side anything new. One ping
        // and one ack per pair and cycle (the pair settles on whichever pinged first). The
        // window is one cycle and a quarter interval: a single lost ping of theirs makes us
        // ping again at once, so under loss both directions carry heartbeats.
        let cycle =
            self.interval.saturating_mul(u32::try_from(self.watches.len()).unwrap_or(u32::MAX)) + self.interval / 4;
        if self.watches[self.next_watch].pinged_us.is_some_and(|at| now.saturating_duration_since(at) < cycle) {
            self.acked_since_period = true;
            return None;
        }
        let seq = self.next_seq();
        let watch = &mut self.watches[self.next_watch];
        watch.ping = Some((seq, now));
        Some((watch.id, watch.addr, seq))
    }

    /// A watched peer pinged us (any datagram from it is a heartbeat already; this is
    /// what lets the period skip pinging it back).
    pub(crate) fn pinged_by(&mut self, sender: NodeId, now: Instant) {
        // Only a peer that watches us pings us every cycle; a relay's ping (an indirect
        // probe on someone's behalf) is no such promise.
        if !self.watchers.iter().any(|w| w.id == sender) {
            return;
        }
        if let Some(watch) = self.watches.iter_mut().find(|w| w.id == sender) {
            watch.pinged_us = Some(now);
        }
    }

    /// How long a probe of `id` may wait for its ack: the round trip measured to it
    /// (RFC 6298) within `[floor, ceiling]`, stretched by the local health score; `floor`
    /// for a peer not watched or not yet measured.
    pub(crate) fn probe_timeout(&self, id: NodeId, floor: Duration, ceiling: Duration) -> Duration {
        let rtt = self.watches.iter().find(|w| w.id == id).map(|w| w.rtt).unwrap_or_default();
        self.awareness.scale(rtt.timeout(floor, ceiling))
    }

    /// The watched peers whose indirect probe is due at `now`, nearest first.
    pub(crate) fn due_indirect(&self, now: Instant) -> Ring<NodeId> {
        self.watches.iter().filter(|w| self.indirect_due(w).is_some_and(|t| t <= now)).map(|w| w.id).collect()
    }

    /// Looks at a watched peer again no earlier than `at`.
    pub(crate) fn defer_indirect(&mut self, id: NodeId, at: Instant) {
        if let Some(watch) = self.watches.iter_mut().find(|w| w.id == id) {
            watch.next_indirect = at;
        }
    }

    /// Records an indirect probe of `target` under `seq`, through `relays` relays, timing
    /// out at `deadline`; no other is started on it before `next`.
    pub(crate) fn probe_started(&mut self, seq: u64, target: NodeId, relays: usize, deadline: Instant, next: Instant) {
        self.probes.insert(seq, Probe { target, deadline, expected_nacks: relays, nacks: 0 });
        self.defer_indirect(target, next);
    }

    /// Records a ping relayed for `requester` (its `requester_seq`) under our `seq`: it
    /// nacks at `nack_at` if no ack came, and passes a late ack on until `give_up_at`.
    pub(crate) fn relay_started(
        &mut self,
        seq: u64,
        requester: To,
        requester_seq: u64,
        target: NodeId,
        (nack_at, give_up_at): (Instant, Instant),
    ) {
        let relay = Relay { requester, requester_seq, target, nack_at, nacked: false, give_up_at };
        self.relays.insert(seq, relay);
    }

    /// An ack numbered `seq` from `sender`, received at `now`.
    pub(crate) fn on_ack(&mut self, sender: NodeId, seq: u64, now: Instant) -> AckOutcome {
        self.acked_since_period = true;
        if let Some(watch) = self.watches.iter_mut().find(|w| w.id == sender) {
            if let Some((ping, sent)) = watch.ping.filter(|(ping, _)| *ping == seq) {
                debug_assert_eq!(ping, seq);
                watch.rtt.sample(now.saturating_duration_since(sent));
                watch.ping = None;
            }
        }
        if let Some(relay) = self.relays.get(&seq) {
            if relay.target == sender {
                let relay = self.relays.remove(&seq).expect("present: just looked up");
                return AckOutcome::Relayed { requester: relay.requester, seq: relay.requester_seq };
            }
            return AckOutcome::Done;
        }
        // An indirect probe ends with an ack from its target or from any of its relays. The
        // target is alive: its next regular ping, not another indirect probe, is what to
        // wait for (an ack through a relay feeds no detector).
        if let Some(probe) = self.probes.remove(&seq) {
            let next = now + self.period();
            self.defer_indirect(probe.target, next);
        }
        AckOutcome::Done
    }

    /// A relay's nack for probe `seq`.
    pub(crate) fn on_nack(&mut self, seq: u64) {
        if let Some(probe) = self.probes.get_mut(&seq) {
            probe.nacks += 1;
        }
    }

    /// The relayed pings due their nack at `now`: each requester and its sequence number,
    /// in our sequence order. Relays past their last chance are given up.
    pub(crate) fn expire_relays(&mut self, now: Instant) -> Vec<(To, u64)> {
        self.relays.retain(|_, r| !(r.nacked && r.give_up_at <= now));
        let mut nacks = Vec::new();
        for relay in self.relays.values_mut().filter(|r| !r.nacked && r.nack_at <= now) {
            relay.nacked = true;
            nacks.push((relay.requester, relay.requester_seq));
        }
        nacks
    }

    /// The next indirect probe that timed out at `now`, if any. Relays that did not even
    /// nack point at this member's own health (Lifeguard), and raise its score.
    pub(crate) fn expire_probe(&mut self, now: Instant) -> Option<ExpiredProbe> {
        let seq = self.probes.iter().find(|(_, p)| p.deadline <= now).map(|(s, _)| *s)?;
        let probe = self.probes.remove(&seq).expect("present: just found");
        let missed = probe.expected_nacks.saturating_sub(probe.nacks);
        self.awareness.apply(i64::try_from(missed).unwrap_or(i64::MAX));
        Some(ExpiredProbe { target: probe.target, relays: probe.expected_nacks, nacks: probe.nacks })
    }

    /// Drops every probe in flight (the member left).
    pub(crate) fn stop_probing(&mut self) {
        self.probes.clear();
    }

    /// Takes the ring from `view`: the `monitors` nearest live predecessors are watched,
    /// the nearest successors are the watchers. A member that stays watched keeps its
    /// detector; a new watch starts from a heartbeat now, so a peer that never answers
    /// still becomes late. An inactive member watches nobody.
    pub(crate) fn refresh_ring(&mut self, view: &View, monitors: usize, active: bool, now: Instant) {
        let (mut watched, mut watchers) = (Ring::<NodeId>::new(), Ring::<NodeId>::new());
        if active {
            view.neighbours(monitors, (&mut watched, &mut watchers));
        }
        let old_watchers = std::mem::take(&mut self.watchers);
        self.watchers = watchers
            .into_iter()
            .map(|id| Watcher { id, heard: old_watchers.iter().find(|w| w.id == id).and_then(|w| w.heard) })
            .collect();
        let mut old = std::mem::take(&mut self.watches);
        for id in watched {
            let Some(addr) = view.member(id).map(|m| m.addr) else { continue };
            let watch = match old.iter().position(|w| w.id == id) {
                Some(i) => Watch { addr, ..old.swap_remove(i) },
                None => {
                    let mut detector = self.fresh_detector.fresh();
                    detector.heartbeat(now);
                    Watch {
                        id,
                        addr,
                        detector,
                        next_indirect: now,
                        ping: None,
                        pinged_us: None,
                        rtt: RoundTrip::default(),
                    }
                }
            };
            self.watches.push(watch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::MemberState;
    use crate::membership::view::test_member as member;
    use crate::Config;

    fn prober_in_ring_of(n: u64) -> (Prober, View) {
        let config = Config::lan();
        let mut view = View::new(member(1), Instant::ZERO);
        for id in 2..=n {
            view.insert(member(id), Instant::ZERO);
        }
        let mut prober = Prober::new(config.phi.clone(), 8, config.probe_interval, Instant::ZERO);
        prober.refresh_ring(&view, config.monitors, true, Instant::ZERO);
        (prober, view)
    }

    const INTERVAL: Duration = Duration::from_millis(250);

    #[test]
    fn periods_ping_the_watched_peers_in_turn() {
        let (mut prober, _) = prober_in_ring_of(6);
        assert_eq!(prober.watched().collect::<Vec<_>>(), [NodeId(6), NodeId(5), NodeId(4)]);
        let mut now = Instant::ZERO;
        let mut pinged = Vec::new();
        for _ in 0..6 {
            pinged.push(prober.start_period(now).expect("watches someone").0);
            now = prober.next_period();
        }
        assert_eq!(now, Instant::ZERO + INTERVAL * 6);
        assert_eq!(pinged, [5, 4, 6, 5, 4, 6].map(NodeId));
    }

    #[test]
    fn a_watched_peer_that_watches_us_and_just_pinged_us_is_not_pinged_back() {
        // In a ring of five, n1 watches n5, n4, n3 and is watched by n2, n3, n4: n3 and n4
        // watch each other with it.
        let (mut prober, _) = prober_in_ring_of(5);
        let mut now = Instant::ZERO + INTERVAL;
        // n4 pinged us just now; n5 too, but n5 does not watch us (a relay's ping).
        prober.pinged_by(NodeId(4), now);
        prober.pinged_by(NodeId(5), now);
        let mut pinged = Vec::new();
        for _ in 0..3 {
            pinged.push(prober.start_period(now).map(|p| p.0));
            now = prober.next_period();
        }
        assert_eq!(
            pinged,
            [None, Some(NodeId(3)), Some(NodeId(5))],
            "n4's turn passes; n5, no watcher of ours, is pinged"
        );
        // One lost ping of theirs: a cycle and a quarter interval later, n4 is pinged again.
        let late = now + INTERVAL * 3 + INTERVAL / 4;
        let mut pinged = Vec::new();
        let mut at = late;
        for _ in 0..3 {
            pinged.push(prober.start_period(at).map(|p| p.0));
            at = prober.next_period();
        }
        assert!(pinged.contains(&Some(NodeId(4))), "{pinged:?}");
    }

    #[test]
    fn a_silent_peer_becomes_due_for_an_indirect_probe_and_a_heard_one_does_not() {
        let (mut prober, _) = prober_in_ring_of(4);
        let due = prober.indirect_deadline().expect("watches start with a heartbeat");
        assert!(due > Instant::ZERO);
        assert!(prober.due_indirect(due - Duration::from_millis(1)).is_empty());
        // Peers 3 and 2 keep talking; 4 falls silent.
        let mut now = Instant::ZERO;
        while now < due + Duration::from_secs(1) {
            now += Duration::from_millis(500);
            prober.heard_from(NodeId(3), now);
            prober.heard_from(NodeId(2), now);
        }
        assert_eq!(prober.due_indirect(now).as_slice(), [NodeId(4)]);
        assert!(prober.phi(NodeId(4), now).expect("watched") > prober.phi(NodeId(3), now).expect("watched"));
    }

    #[test]
    fn a_peer_silent_for_three_of_its_probe_periods_is_due_whatever_phi_says() {
        let (mut prober, _) = prober_in_ring_of(4);
        // Teach n4's detector that gaps vary widely (as under loss): 0.5 s and 1.5 s.
        let mut now = Instant::ZERO;
        for i in 0..200 {
            now += Duration::from_millis(if i % 2 == 0 { 500 } else { 1500 });
            prober.heard_from(NodeId(4), now);
        }
        let watch = prober.watches.iter().find(|w| w.id == NodeId(4)).expect("watched");
        let phi_deadline = watch.detector.deadline().expect("heard");
        let period = INTERVAL * 3; // three watches
        assert!(phi_deadline > now + period * 3, "phi alone would wait past three periods");
        assert!(!prober.due_indirect(now + period * 3 - Duration::from_nanos(1)).contains(&NodeId(4)));
        assert!(prober.due_indirect(now + period * 3).contains(&NodeId(4)));
    }

    #[test]
    fn the_silence_cap_allows_a_retransmission_timeout_for_the_third_ack() {
        let (mut prober, _) = prober_in_ring_of(4);
        // One ping to n4 answered after 100 ms: a round trip to allow for.
        let mut now = Instant::ZERO;
        let seq = loop {
            let (id, _, seq) = prober.start_period(now).expect("watches someone");
            if id == NodeId(4) {
                break seq;
            }
            now = prober.next_period();
        };
        now += Duration::from_millis(100);
        prober.heard_from(NodeId(4), now);
        prober.on_ack(NodeId(4), seq, now);
        // As above: gaps that vary widely, so that phi alone would wait long.
        for i in 0..200 {
            now += Duration::from_millis(if i % 2 == 0 { 500 } else { 1500 });
            prober.heard_from(NodeId(4), now);
        }
        let rto = prober.watches.iter().find(|w| w.id == NodeId(4)).expect("watched").rtt.rto();
        assert!(rto >= Duration::from_millis(100), "the round trip was measured: {rto:?}");
        let silent = now + INTERVAL * 3 * 3 + rto;
        assert!(!prober.due_indirect(silent - Duration::from_nanos(1)).contains(&NodeId(4)));
        assert!(prober.due_indirect(silent).contains(&NodeId(4)));
    }

    #[test]
    fn each_watcher_keeps_when_it_was_last_heard_across_ring_changes() {
        let (mut prober, mut view) = prober_in_ring_of(8);
        assert_eq!(prober.watchers.iter().map(|w| w.id).collect::<Vec<_>>(), [2, 3, 4].map(NodeId));
        prober.heard_from(NodeId(2), Instant::from_secs(1));
        prober.heard_from(NodeId(3), Instant::from_secs(2));
        view.insert(member(9), Instant::from_secs(3));
        prober.refresh_ring(&view, Config::lan().monitors, true, Instant::from_secs(3));
        assert!(!prober.heard_since(NodeId(2), Instant::from_millis(1500)));
        assert!(prober.heard_since(NodeId(2), Instant::from_millis(500)));
        assert!(prober.heard_since(NodeId(3), Instant::from_millis(1500)));
        assert!(!prober.heard_since(NodeId(4), Instant::ZERO), "never heard");
    }

    #[test]
    fn a_probe_ends_with_an_ack_and_otherwise_expires_counting_missed_nacks() {
        let (mut prober, _) = prober_in_ring_of(4);
        let t = Instant::from_secs(1);
        let deadline = t + Duration::from_millis(100);
        let seq = prober.next_seq();
        prober.probe_started(seq, NodeId(4), 3, deadline, t + INTERVAL);
        assert!(prober.is_probing(NodeId(4)));
        assert!(prober.due_indirect(deadline).is_empty(), "not while one is in flight");
        assert_eq!(prober.probe_deadline(), Some(deadline));
        assert_eq!(prober.on_ack(NodeId(4), seq, t), AckOutcome::Done);
        assert!(!prober.is_probing(NodeId(4)));
        assert_eq!(prober.expire_probe(deadline), None);

        let seq = prober.next_seq();
        prober.probe_started(seq, NodeId(4), 3, deadline, t + INTERVAL);
        prober.on_nack(seq);
        assert_eq!(prober.expire_probe(deadline - Duration::from_nanos(1)), None, "not yet");
        assert_eq!(prober.expire_probe(deadline), Some(ExpiredProbe { target: NodeId(4), relays: 3, nacks: 1 }));
        assert_eq!(prober.awareness().score(), 2, "two relays never nacked");
        // A period with an ack heals the score by one.
        prober.on_ack(NodeId(3), 999, deadline);
        prober.start_period(deadline);
        prober.start_period(deadline + INTERVAL);
        assert_eq!(prober.awareness().score(), 1);
    }

    #[test]
    fn any_datagram_from_the_target_ends_its_indirect_probe() {
        let (mut prober, _) = prober_in_ring_of(4);
        let t = Instant::from_secs(1);
        let seq = prober.next_seq();
        prober.probe_started(seq, NodeId(4), 3, t + Duration::from_millis(125), t + INTERVAL);
        prober.heard_from(NodeId(3), t);
        assert!(prober.is_probing(NodeId(4)), "another peer's datagram changes nothing");
        prober.heard_from(NodeId(4), t);
        assert!(!prober.is_probing(NodeId(4)));
        assert_eq!(prober.expire_probe(t + Duration::from_secs(1)), None, "it never expires into a suspicion");
    }

    #[test]
    fn a_relayed_ping_forwards_the_target_s_ack_or_nacks_when_due() {
        let (mut prober, _) = prober_in_ring_of(4);
        let requester = To::member(NodeId(9), "127.0.0.1:9000".parse().expect("an address"));
        let nack_at = Instant::from_secs(2);
        let give_up = nack_at + INTERVAL;
        prober.relay_started(10, requester, 77, NodeId(3), (nack_at, give_up));
        assert_eq!(prober.on_ack(NodeId(2), 10, nack_at), AckOutcome::Done, "only the target's ack counts");
        assert_eq!(prober.on_ack(NodeId(3), 10, nack_at), AckOutcome::Relayed { requester, seq: 77 });
        assert_eq!(prober.relay_deadline(), None);
        prober.relay_started(11, requester, 78, NodeId(3), (nack_at, give_up));
        prober.relay_started(12, requester, 79, NodeId(4), (give_up, give_up + INTERVAL));
        assert_eq!(prober.expire_relays(nack_at), [(requester, 78)]);
        assert_eq!(prober.relay_deadline(), Some(give_up), "the nacked relay waits on, as the other");
        // A late ack after the nack is still passed on ...
        assert_eq!(prober.on_ack(NodeId(3), 11, give_up), AckOutcome::Relayed { requester, seq: 78 });
        // ... until the relay gives up.
        assert_eq!(prober.expire_relays(give_up), [(requester, 79)]);
        assert!(prober.expire_relays(give_up + INTERVAL).is_empty());
        assert_eq!(prober.relay_deadline(), None);
    }

    #[test]
    fn round_trips_follow_rfc_6298_within_their_bounds() {
        let ms = Duration::from_millis;
        let (floor, ceiling) = (ms(125), ms(250));
        let mut rtt = RoundTrip::default();
        assert_eq!(rtt.timeout(floor, ceiling), floor, "before any sample");
        rtt.sample(ms(100));
        // SRTT 100, RTTVAR 50: 2 * 100 + 200, capped.
        assert_eq!(rtt.timeout(floor, ceiling), ceiling);
        assert_eq!(rtt.timeout(floor, Duration::from_secs(1)), ms(400));
        rtt.sample(ms(60));
        // RTTVAR = 3/4 * 50 + 1/4 * 40 = 47.5; SRTT = 7/8 * 100 + 1/8 * 60 = 95.
        assert_eq!(rtt.timeout(floor, Duration::from_secs(1)), ms(190) + ms(190));
        let mut lan = RoundTrip::default();
        for _ in 0..50 {
            lan.sample(ms(2));
        }
        assert_eq!(lan.timeout(floor, ceiling), floor, "a LAN round trip waits the configured floor");
    }

    #[test]
    fn an_acked_period_ping_times_the_round_trip_to_its_peer() {
        let (mut prober, _) = prober_in_ring_of(4);
        let (floor, ceiling) = (Duration::from_millis(125), Duration::from_secs(2));
        let t = Instant::from_secs(1);
        let (id, _, seq) = prober.start_period(t).expect("watches someone");
        assert_eq!(prober.probe_timeout(id, floor, ceiling), floor);
        prober.on_ack(id, seq + 1, t + Duration::from_millis(300));
        assert_eq!(prober.probe_timeout(id, floor, ceiling), floor, "another ping's ack times nothing");
        prober.on_ack(id, seq, t + Duration::from_millis(300));
        assert_eq!(prober.probe_timeout(id, floor, ceiling), Duration::from_millis(1200), "2 * 300 + 4 * 150");
        prober.note_health(1);
        assert_eq!(prober.probe_timeout(id, floor, ceiling), Duration::from_millis(2400), "health stretches it");
    }

    #[test]
    fn a_neighbour_is_heard_directly_while_it_talks() {
        let (mut prober, _) = prober_in_ring_of(7);
        let window = Duration::from_millis(750);
        let t = Instant::from_secs(60);
        // n7 is watched (a predecessor of n1), n2 watches n1 (a successor).
        assert!(!prober.hears(NodeId(7), t, window), "silent for a minute");
        prober.heard_from(NodeId(7), t);
        assert!(prober.hears(NodeId(7), t + window, window));
        assert!(!prober.hears(NodeId(7), t + window * 2, window));
        assert!(!prober.hears(NodeId(2), t, window));
        prober.heard_from(NodeId(2), t);
        assert!(prober.hears(NodeId(2), t + window, window));
        assert!(!prober.hears(NodeId(2), t + window * 2, window));
        assert!(!prober.hears(NodeId(4), t, window), "not a neighbour");
    }

    #[test]
    fn a_watch_that_stays_keeps_its_detector_across_ring_changes() {
        let (mut prober, mut view) = prober_in_ring_of(5);
        let now = Instant::from_secs(3);
        prober.heard_from(NodeId(5), now);
        view.transition(NodeId(4), (0, MemberState::Failed), None, None, now);
        prober.refresh_ring(&view, 3, true, now);
        assert_eq!(prober.watched().collect::<Vec<_>>(), [NodeId(5), NodeId(3), NodeId(2)]);
        let kept = prober.watches.iter().find(|w| w.id == NodeId(5)).expect("still watched");
        assert_eq!(kept.detector.last_heartbeat(), Some(now));
        prober.refresh_ring(&view, 3, false, now);
        assert_eq!(prober.watched().count(), 0, "an inactive member watches nobody");
        assert!(!prober.is_neighbour(NodeId(5)));
    }
}
