//! foca 1.0 on a simulated network: the other side of `conclave bench compare`.
//!
//! A small discrete-event loop of its own, built like the simulator's fast engine: one
//! queue of (virtual time, sequence) events, one seeded [`SimRng`] for every link draw
//! (loss first, then a uniform latency: the same draws, in the same order, as net-sim's
//! `LinkParams` with `Latency::Uniform`), a seeded ChaCha generator per `foca::Foca`, and
//! no wall clock. foca's timers are events in virtual time.
//!
//! Each member is a `Foca` with `Config::new_lan(n)` and the postcard codec. Its identity
//! is an IPv4 socket address with a generation that `Identity::renew` bumps, so a member
//! that the others declared down rejoins as a fresh identity (foca's `Rejoin`) instead of
//! staying out of the cluster: a false down costs the cluster the down, not the member.
//!
//! What is counted: datagrams and their bytes as handed to the link (lost ones included,
//! as conclave's `Stats` counts what a member sends), `MemberDown` notifications per
//! observer and target, and transitions to `Suspect` per observer and target. foca 1.0 has
//! no notification for a suspicion, so after each input the member's active list is
//! scanned when suspicions are tracked (`FocaCluster::track_suspicions`).
//!
//! foca leaves one thing to its application: a member that holds every other down (`Idle`),
//! or that was declared down and took a new identity (`Rejoin`), stops its timers and
//! waits for a message; if the one gossip round of its rejoin is lost, nobody ever sends
//! it one. Here, as an application would, it announces itself to a seed every 5 s until
//! foca says `Active` again.
//!
//! A slowed member (a CPU-starved process) handles each datagram `per_message` late, one
//! after another, and its timers wait behind that backlog: net-sim's `Fault::Slow`. A
//! paused member's datagrams and timers wait until the pause ends: net-sim's `Fault::Pause`.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::num::NonZeroU32;
use std::time::Duration;

use conclave_sim::SimRng;
use foca::{Foca, NoCustomBroadcast, Notification, PostcardCodec, Runtime, State, Timer};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A member's identity: its address and a generation bumped at each rejoin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Peer {
    addr: SocketAddrV4,
    generation: u16,
}

impl Peer {
    /// The first identity of the `index`-th member: `10.a.b.c:7946`, the index in `a.b.c`.
    fn first(index: usize) -> Self {
        let i = index as u32;
        let ip = Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8);
        Self { addr: SocketAddrV4::new(ip, 7946), generation: 0 }
    }

    /// Which member this identity belongs to.
    fn index(&self) -> usize {
        let [_, a, b, c] = self.addr.ip().octets();
        (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c)
    }
}

impl foca::Identity for Peer {
    type Addr = SocketAddrV4;

    fn renew(&self) -> Option<Self> {
        Some(Self { addr: self.addr, generation: self.generation.wrapping_add(1) })
    }

    fn addr(&self) -> SocketAddrV4 {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// One direction of every link: loss, then a delay uniform in `[min, max]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Link {
    /// The shortest delay.
    pub(crate) min: Duration,
    /// The longest delay.
    pub(crate) max: Duration,
    /// The fraction of datagrams lost, each independently.
    pub(crate) loss: f64,
}

impl Link {
    /// The delay of one datagram in nanoseconds, or `None` if it is lost. The draws are
    /// net-sim's: a loss draw only when `loss` is above 0, then the latency.
    pub(crate) fn carry(&self, rng: &mut SimRng) -> Option<u64> {
        if rng.chance(self.loss) {
            return None;
        }
        let (lo, hi) = (nanos(self.min), nanos(self.max));
        Some(if hi <= lo { lo } else { lo + rng.below(hi - lo + 1) })
    }
}

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What the members said and sent; indexed by member where a `Vec`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    /// Datagrams sent.
    pub(crate) sent: u64,
    /// Their bytes.
    pub(crate) bytes: u64,
    /// Per target: how many times an observer began to hold it suspect.
    pub(crate) suspected: Vec<u64>,
    /// Per target: `MemberDown` notifications about it (each observer counts).
    pub(crate) downs: Vec<u64>,
    /// `MemberDown` notifications about a member whose process runs.
    pub(crate) false_downs: u64,
    /// Per observer: when it first reported a crashed member down, `(target, time)`.
    pub(crate) crashed_down_at: Vec<Vec<(usize, u64)>>,
    /// Errors foca returned from an input (a datagram for an older identity, say).
    pub(crate) errors: u64,
    /// `Idle` and `Rejoin` notifications: a member stopped its timers to wait for a message.
    pub(crate) disconnects: u64,
    /// `MemberDown` notifications, since the last split, about a member on the observer's
    /// own side of it.
    pub(crate) same_side_downs: u64,
}

/// The outputs of one call into a `Foca`: foca's `Runtime`, drained after each call.
#[derive(Default)]
struct Effects {
    sends: Vec<(Peer, Vec<u8>)>,
    timers: Vec<(Duration, Timer<Peer>)>,
    downs: Vec<Peer>,
    /// foca went `Idle` or `Rejoin`ed: it waits, timers stopped, for a message.
    disconnected: bool,
    /// foca went `Active`: connected again.
    active: bool,
}

impl Runtime<Peer> for Effects {
    fn notify(&mut self, notification: Notification<'_, Peer>) {
        match notification {
            Notification::MemberDown(peer) => self.downs.push(*peer),
            Notification::Idle | Notification::Rejoin(_) => {
                self.disconnected = true;
                self.active = false;
            }
            Notification::Active => {
                self.active = true;
                self.disconnected = false;
            }
            _ => {}
        }
    }

    fn send_to(&mut self, to: Peer, data: &[u8]) {
        self.sends.push((to, data.to_vec()));
    }

    fn submit_after(&mut self, event: Timer<Peer>, after: Duration) {
        self.timers.push((after, event));
    }
}

/// The members an idle member announces itself to, in turn (conclave's simulated clusters
/// have three seeds too).
const SEEDS: usize = 3;

/// How often a waiting member announces itself again. foca stops every timer when it holds
/// all other members down (`Idle`) and when it rejoins under a new identity (`Rejoin`), and
/// connects again only when a message reaches it; this loop plays the application that
/// announces it to a seed until it is `Active`, as conclave's own join retries do.
const REJOIN_EVERY: Duration = Duration::from_secs(5);

type Agent = Foca<Peer, PostcardCodec, ChaCha8Rng, NoCustomBroadcast>;

struct Member {
    agent: Agent,
    up: bool,
    /// Bumped at a crash, so the older process's timers and backlog do nothing.
    life: u32,
    /// Processing time per datagram, in nanoseconds (a slowed member).
    slow: u64,
    /// Extra delay of every datagram to this member, in nanoseconds (a lagging receiver).
    lag: u64,
    busy_until: u64,
    /// foca went `Idle` or rejoined and has not been `Active` since: announce it again.
    waiting: bool,
    /// Per target: whether this member holds it suspect (kept when suspicions are tracked).
    suspect: Vec<bool>,
}

enum What {
    Arrive {
        to: usize,
        data: Vec<u8>,
    },
    Handle {
        to: usize,
        life: u32,
        data: Vec<u8>,
    },
    Timer {
        node: usize,
        life: u32,
        timer: Timer<Peer>,
    },
    Join {
        node: usize,
    },
    /// A waiting member announces itself to a seed again (the `attempt`-th time).
    Rejoin {
        node: usize,
        life: u32,
        attempt: usize,
    },
}

struct Event {
    at: u64,
    seq: u64,
    what: What,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Event {}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Event {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// `n` foca members on simulated links, in virtual time.
pub(crate) struct FocaCluster {
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Event>>,
    rng: SimRng,
    link: Link,
    members: Vec<Member>,
    effects: Effects,
    scratch: Vec<bool>,
    track_suspicions: bool,
    tally: Tally,
    /// The last split: members below this index on one side, the others on the other.
    split: Option<usize>,
    /// Whether the split still cuts the links between the sides.
    cut: bool,
}

/// splitmix64 of the run's seed and a member's index: each member's own generator.
fn member_seed(seed: u64, index: usize) -> u64 {
    let mut z = seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl FocaCluster {
    /// `n` members; members 1.. announce themselves to member 0 within the first 100 ms.
    pub(crate) fn new(n: usize, seed: u64, link: Link) -> Self {
        let size = NonZeroU32::new(n.max(1) as u32).expect("at least 1");
        let members = (0..n)
            .map(|i| Member {
                agent: Foca::new(
                    Peer::first(i),
                    foca::Config::new_lan(size),
                    ChaCha8Rng::seed_from_u64(member_seed(seed, i)),
                    PostcardCodec,
                ),
                up: true,
                life: 0,
                slow: 0,
                lag: 0,
                busy_until: 0,
                waiting: false,
                suspect: vec![false; n],
            })
            .collect();
        let mut cluster = Self {
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            rng: SimRng::new(seed),
            link,
            members,
            effects: Effects::default(),
            scratch: vec![false; n],
            track_suspicions: false,
            split: None,
            cut: false,
            tally: Tally {
                suspected: vec![0; n],
                downs: vec![0; n],
                crashed_down_at: vec![Vec::new(); n],
                ..Tally::default()
            },
        };
        for node in 1..n {
            let at = cluster.rng.below(100_000_000);
            cluster.push(at, What::Join { node });
        }
        cluster
    }

    /// Counts transitions to `Suspect` from now on (a scan of the member's list per input).
    pub(crate) fn track_suspicions(&mut self) {
        self.track_suspicions = true;
    }

    /// The members' count.
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// Virtual time, in nanoseconds.
    pub(crate) fn now(&self) -> u64 {
        self.now
    }

    /// What was counted so far.
    pub(crate) fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Whether member `i`'s process runs.
    pub(crate) fn is_up(&self, i: usize) -> bool {
        self.members[i].up
    }

    /// The fraction of (running member, other running member) pairs where the first holds
    /// the second active (alive or suspect).
    pub(crate) fn coverage(&self) -> f64 {
        let up = self.members.iter().filter(|m| m.up).count();
        if up < 2 {
            return 1.0;
        }
        let held: usize = self
            .members
            .iter()
            .filter(|m| m.up)
            .map(|m| m.agent.iter_members().filter(|o| self.members[o.id().index()].up).count())
            .sum();
        held as f64 / (up * (up - 1)) as f64
    }

    /// Every running member holds every other running member active, and alive.
    pub(crate) fn converged(&self) -> bool {
        let up = self.members.iter().filter(|m| m.up).count();
        self.members.iter().filter(|m| m.up).all(|m| {
            m.agent.num_members() + 1 == up
                && m.agent.iter_members().all(|o| o.state() == State::Alive && self.members[o.id().index()].up)
        })
    }

    /// From now on, links behave like `link`.
    pub(crate) fn set_link(&mut self, link: Link) {
        self.link = link;
    }

    /// Member `i`'s process dies.
    pub(crate) fn crash(&mut self, i: usize) {
        let m = &mut self.members[i];
        m.up = false;
        m.life += 1;
    }

    /// Cuts members `0..first` off from the others, both ways (net-sim's `Fault::Partition`).
    pub(crate) fn split(&mut self, first: usize) {
        self.split = Some(first);
        self.cut = true;
    }

    /// Ends the cut (net-sim's `Fault::Heal`).
    pub(crate) fn heal(&mut self) {
        self.cut = false;
    }

    /// Whether `a` and `b` are on the same side of the last split (if there was one).
    fn same_side(&self, a: usize, b: usize) -> Option<bool> {
        self.split.map(|first| (a < first) == (b < first))
    }

    /// Member `i` handles each datagram `per_message` late, one after another.
    pub(crate) fn slow(&mut self, i: usize, per_message: Duration) {
        self.members[i].slow = nanos(per_message);
    }

    /// Every datagram to member `i` arrives `d` later than the link's own delay, while its
    /// timers keep time (net-sim's `Fault::SetLinks` on `LinkSelector::To(i)`).
    pub(crate) fn lag(&mut self, i: usize, d: Duration) {
        self.members[i].lag = nanos(d);
    }

    /// Member `i` stalls for `d` (net-sim's `Fault::Pause`): datagrams and timers wait, and
    /// are handled, in arrival order, when the pause ends.
    pub(crate) fn pause(&mut self, i: usize, d: Duration) {
        let until = self.now + nanos(d);
        let m = &mut self.members[i];
        m.busy_until = m.busy_until.max(until);
    }

    /// Runs every event up to `now + d`.
    pub(crate) fn run_for(&mut self, d: Duration) {
        let until = self.now + nanos(d);
        while self.queue.peek().is_some_and(|Reverse(e)| e.at <= until) {
            let Some(Reverse(event)) = self.queue.pop() else { break };
            self.now = self.now.max(event.at);
            self.process(event.what);
        }
        self.now = until;
    }

    fn push(&mut self, at: u64, what: What) {
        self.seq += 1;
        self.queue.push(Reverse(Event { at, seq: self.seq, what }));
    }

    fn process(&mut self, what: What) {
        match what {
            What::Arrive { to, data } => {
                let m = &mut self.members[to];
                if !m.up {
                    return;
                }
                if m.slow > 0 || self.now < m.busy_until {
                    let done = self.now.max(m.busy_until) + m.slow;
                    m.busy_until = done;
                    let life = m.life;
                    self.push(done, What::Handle { to, life, data });
                } else {
                    self.interact(to, |agent, fx| agent.handle_data(&data, fx));
                }
            }
            What::Handle { to, life, data } => {
                if self.members[to].up && self.members[to].life == life {
                    self.interact(to, |agent, fx| agent.handle_data(&data, fx));
                }
            }
            What::Timer { node, life, timer } => {
                let m = &self.members[node];
                if !m.up || m.life != life {
                    return;
                }
                if self.now < m.busy_until {
                    let at = m.busy_until;
                    self.push(at, What::Timer { node, life, timer });
                } else {
                    self.interact(node, |agent, fx| agent.handle_timer(timer, fx));
                }
            }
            What::Join { node } => {
                if self.members[node].up {
                    self.interact(node, |agent, fx| agent.announce(Peer::first(0), fx));
                }
            }
            What::Rejoin { node, life, attempt } => {
                let m = &self.members[node];
                if m.up && m.life == life && m.waiting {
                    let seeds: Vec<usize> = (0..SEEDS.min(self.members.len())).filter(|&s| s != node).collect();
                    if let Some(&seed) = seeds.get(attempt % seeds.len().max(1)) {
                        self.interact(node, |agent, fx| agent.announce(Peer::first(seed), fx));
                    }
                    let at = self.now + nanos(REJOIN_EVERY);
                    self.push(at, What::Rejoin { node, life, attempt: attempt + 1 });
                }
            }
        }
    }

    /// One call into member `i`'s `Foca`, then its outputs: datagrams onto the links,
    /// timers into the queue, notifications into the tally.
    fn interact(&mut self, i: usize, call: impl FnOnce(&mut Agent, &mut Effects) -> Result<(), foca::Error>) {
        let mut fx = std::mem::take(&mut self.effects);
        if call(&mut self.members[i].agent, &mut fx).is_err() {
            self.tally.errors += 1;
        }
        for (to, data) in fx.sends.drain(..) {
            self.tally.sent += 1;
            self.tally.bytes += data.len() as u64;
            let to = to.index();
            if self.cut && self.same_side(i, to) == Some(false) {
                continue;
            }
            if let Some(delay) = self.link.carry(&mut self.rng) {
                let at = self.now + delay + self.members[to].lag;
                self.push(at, What::Arrive { to, data });
            }
        }
        let life = self.members[i].life;
        for (after, timer) in fx.timers.drain(..) {
            let at = self.now + nanos(after);
            self.push(at, What::Timer { node: i, life, timer });
        }
        for peer in fx.downs.drain(..) {
            let t = peer.index();
            self.tally.downs[t] += 1;
            if self.same_side(i, t) == Some(true) {
                self.tally.same_side_downs += 1;
            }
            if self.members[t].up {
                self.tally.false_downs += 1;
            } else if !self.tally.crashed_down_at[i].iter().any(|&(c, _)| c == t) {
                self.tally.crashed_down_at[i].push((t, self.now));
            }
        }
        if std::mem::take(&mut fx.active) {
            self.members[i].waiting = false;
        }
        if std::mem::take(&mut fx.disconnected) {
            self.tally.disconnects += 1;
            if !self.members[i].waiting {
                self.members[i].waiting = true;
                let at = self.now + nanos(REJOIN_EVERY);
                self.push(at, What::Rejoin { node: i, life, attempt: 0 });
            }
        }
        self.effects = fx;
        if self.track_suspicions {
            self.scan(i);
        }
    }

    /// Counts the members `i` has begun to hold suspect since its last input.
    fn scan(&mut self, i: usize) {
        self.scratch.iter_mut().for_each(|s| *s = false);
        for m in self.members[i].agent.iter_members() {
            if m.state() == State::Suspect {
                self.scratch[m.id().index()] = true;
            }
        }
        let member = &mut self.members[i];
        for (t, (now, before)) in self.scratch.iter().zip(member.suspect.iter_mut()).enumerate() {
            if *now && !*before {
                self.tally.suspected[t] += 1;
            }
            *before = *now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAN: Link = Link { min: Duration::from_micros(200), max: Duration::from_millis(2), loss: 0.0 };

    #[test]
    fn the_link_loses_its_fraction_and_delays_within_its_range() {
        let link = Link { loss: 0.2, ..LAN };
        let mut rng = SimRng::new(7);
        let draws = 100_000;
        let delays: Vec<u64> = (0..draws).filter_map(|_| link.carry(&mut rng)).collect();
        let lost = (draws - delays.len()) as f64 / draws as f64;
        assert!((lost - 0.2).abs() < 0.005, "lost {lost}");
        assert!(delays.iter().all(|d| (200_000..=2_000_000).contains(d)));
        let mean = delays.iter().sum::<u64>() as f64 / delays.len() as f64;
        assert!((mean - 1_100_000.0).abs() < 10_000.0, "mean delay {mean} ns");
    }

    #[test]
    fn identities_map_back_to_their_member() {
        for i in [0, 1, 255, 256, 70_000] {
            let peer = Peer::first(i);
            assert_eq!(peer.index(), i);
            assert_eq!(foca::Identity::renew(&peer).map(|p| p.index()), Some(i));
        }
    }

    #[test]
    fn a_crash_is_reported_down_by_every_live_member_and_nothing_else_is() {
        let mut cluster = FocaCluster::new(5, 3, LAN);
        cluster.track_suspicions();
        let mut waited = 0;
        while !cluster.converged() {
            cluster.run_for(Duration::from_millis(100));
            waited += 1;
            assert!(waited < 600, "5 foca members did not converge in 60 s");
        }
        cluster.crash(2);
        cluster.run_for(Duration::from_secs(60));
        let tally = cluster.tally();
        for observer in [0, 1, 3, 4] {
            assert_eq!(tally.crashed_down_at[observer].len(), 1, "member {observer}: {:?}", tally.crashed_down_at);
        }
        assert_eq!(tally.false_downs, 0);
        assert!(tally.suspected[2] >= 1, "the crashed member was suspected first");
        assert!(tally.sent > 0 && tally.bytes > tally.sent);
    }

    #[test]
    fn a_long_pause_reads_as_a_crash_and_the_member_comes_back() {
        let mut cluster = FocaCluster::new(5, 5, LAN);
        let mut waited = 0;
        while !cluster.converged() {
            cluster.run_for(Duration::from_millis(100));
            waited += 1;
            assert!(waited < 600, "5 foca members did not converge in 60 s");
        }
        cluster.pause(1, Duration::from_secs(30));
        cluster.run_for(Duration::from_secs(29));
        assert_eq!(cluster.tally().false_downs, 4, "each other member reports the stalled one down once");
        cluster.run_for(Duration::from_secs(60));
        assert!(cluster.converged(), "after the pause it rejoins under a new identity");
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let run = |seed| {
            let mut cluster = FocaCluster::new(8, seed, Link { loss: 0.1, ..LAN });
            cluster.run_for(Duration::from_secs(20));
            (cluster.tally().sent, cluster.tally().bytes)
        };
        assert_eq!(run(11), run(11));
        assert_ne!(run(11), run(12));
    }
}
