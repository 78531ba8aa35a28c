//! Configuration: the cluster-wide [`Config`] with its presets, and the per-member [`NodeConfig`].

use std::net::SocketAddr;
use std::time::Duration;

use crate::detector::PhiParams;
use crate::durable::Durable;
use crate::member::{NodeId, Tags};
use crate::wire;

pub use crate::error::ConfigError;

/// The protocol settings, the same on every member of a cluster.
///
/// Start from a preset ([`Config::lan`], [`Config::wan`], [`Config::local`]) and change
/// fields; [`Config::validate`] says what is impossible. `Node::new` validates for you.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// Identifies the cluster on the wire: datagrams from another cluster are dropped.
    pub cluster_id: u64,
    /// The largest datagram conclave sends or accepts, in bytes (a hard cap, default 1400).
    pub max_datagram: usize,

    /// SWIM's protocol period: each member sends one probe per interval, to the peers it
    /// watches in turn (so each watched peer is pinged every `monitors` intervals).
    pub probe_interval: Duration,
    /// How long a watcher waits for an ack, directly or through indirect probes, before it
    /// gives up on a probe. Below `probe_interval`.
    pub probe_timeout: Duration,
    /// How many watchers each member has on the monitoring ring.
    pub monitors: usize,
    /// How many members are asked to probe a late peer on the watcher's behalf (SWIM ping-req).
    pub indirect_checks: usize,
    /// Lifeguard: the minimum suspicion timeout is
    /// `suspicion_mult * max(1, log10 n) * probe_interval`.
    pub suspicion_mult: u32,
    /// Lifeguard's K: how many independent confirmations shrink the suspicion timeout from
    /// its maximum to its minimum (logarithmically). memberlist ties it to
    /// `suspicion_mult - 2`; here it is its own setting: 2 in `lan()` (memberlist's LAN
    /// value; `lan()`'s shorter `suspicion_mult` would give 1, with which 30 % loss made
    /// 0.04 false downs per member-hour at 20 members, BENCHMARKS.md) and 4 in `wan()`.
    /// Only a member's `monitors` watchers probe it, so with K = `monitors - 1` (as in
    /// `lan()`) the timeout reaches its minimum once every watcher has accused; each
    /// accusation is gossiped as its own update, so all of them reach every member.
    pub suspicion_confirmations: u32,
    /// Lifeguard: the maximum suspicion timeout is this times the minimum.
    pub suspicion_max_timeout_mult: u32,
    /// Each update is piggybacked at most `retransmit_mult * ceil(log10(n + 1))` times.
    pub retransmit_mult: u32,
    /// How often pending updates are gossiped on their own, besides riding on probes.
    pub gossip_interval: Duration,
    /// How many random members each gossip round goes to.
    pub gossip_nodes: usize,
    /// How often a member exchanges its whole view with a random member (push-pull).
    pub push_pull_interval: Duration,
    /// How long failed and departed members are still gossiped to, so a partition that
    /// healed merges again.
    pub gossip_to_the_dead_time: Duration,
    /// Lifeguard: the local health score's ceiling; timeouts stretch up to `1 + score`.
    pub awareness_max_multiplier: u32,
    /// The first delay between join attempts through the seeds; it doubles each attempt.
    pub join_retry_base: Duration,
    /// The longest delay between join attempts.
    pub join_retry_max: Duration,
    /// How long a failed or departed member stays in the view (as a tombstone that stops
    /// stale gossip from reviving it) before it is forgotten.
    pub tombstone_ttl: Duration,
    /// The Phi Accrual detectors' parameters.
    pub phi: PhiParams,
    /// Lifeguard's three mechanisms and one of conclave's, each on by default and switchable
    /// for measurement.
    pub lifeguard: Lifeguard,
    /// Leader election among a static voter set; no voters (the default) elects nobody.
    pub election: ElectionConfig,
    /// Partition detection and split-brain resolution; `None` turns it off.
    pub partition: Option<PartitionConfig>,
}

/// Leader election (Raft's, without the log) among a static set of voters.
///
/// Defaults follow openraft's: election timeouts of 150-300 ms, a heartbeat every 50 ms.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ElectionConfig {
    /// The members that vote and may lead; empty: the cluster elects nobody. Every member
    /// must be configured with the same set.
    pub voters: Vec<NodeId>,
    /// The shortest election timeout; also how long a voter that heard its leader refuses
    /// other candidates, which is what the leader's lease rests on.
    pub election_timeout_min: Duration,
    /// The longest election timeout (each is drawn uniformly between the two).
    pub election_timeout_max: Duration,
    /// How often the leader sends its heartbeat round. Well below `election_timeout_min`.
    pub heartbeat_interval: Duration,
    /// The most any two members' clocks may run apart, as a fraction (0.0005 is 500 ppm).
    /// The lease is shortened by it; a larger real drift can break its exclusivity.
    pub max_clock_drift: f64,
    /// Raft's PreVote: ask before raising the term (on by default).
    pub pre_vote: bool,
    /// Raft's CheckQuorum: a leader that does not hear a majority steps down (on by default).
    pub check_quorum: bool,
    /// How often the leader gossips that it leads, for members that do not vote.
    pub leader_announce_interval: Duration,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        Self {
            voters: Vec::new(),
            election_timeout_min: Duration::from_millis(150),
            election_timeout_max: Duration::from_millis(300),
            heartbeat_interval: Duration::from_millis(50),
            max_clock_drift: 0.0005,
            pre_vote: true,
            check_quorum: true,
            leader_announce_interval: Duration::from_secs(5),
        }
    }
}

impl ElectionConfig {
    /// The defaults with these voters.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Self { voters: voters.into_iter().collect(), ..Self::default() }
    }
}

/// Partition detection and split-brain resolution (after Akka's Split Brain Resolver).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PartitionConfig {
    /// Which side of a partition keeps running.
    pub strategy: Strategy,
    /// How long the set of unreachable members must stay the same before a member
    /// decides which side it is on.
    pub stable_after: Duration,
}

impl PartitionConfig {
    /// Keep-majority, deciding after `stable_after`.
    pub fn new(stable_after: Duration) -> Self {
        Self { strategy: Strategy::KeepMajority, stable_after }
    }
}

/// Which side of a partition keeps running: the rule
/// [`partition::decide`](crate::partition::decide) applies (also `partition::Strategy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Strategy {
    /// The side with more of the expected members; on a tie, the side with the lowest id.
    KeepMajority,
    /// The side with at least `quorum` members (set it above half the cluster, or both
    /// sides of an even split may keep running).
    StaticQuorum {
        /// The members a side needs.
        quorum: usize,
    },
    /// The side with the oldest member (the first voter, or the lowest id). With
    /// `down_if_alone`, an oldest member cut off alone goes down and the rest keep running.
    KeepOldest {
        /// Whether an oldest member alone on its side goes down instead of the others.
        down_if_alone: bool,
    },
    /// Keep-majority while the unreachable set settles; if it keeps changing for twice
    /// `stable_after`, every side goes down.
    DownAllWhenUnstable,
}

/// Lifeguard's mechanisms (Dadgar, Phillips, Currey, 2017), and one that extends them. Each
/// is on by default; turning one off is for measuring what it is worth (the paper's
/// ablation), not for production.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lifeguard {
    /// Local health awareness: a member that misses nacks or must refute stretches its own
    /// timeouts. Off: the score stays 0.
    pub local_health: bool,
    /// Dynamic suspicion: the timeout starts at its maximum and independent confirmations
    /// shrink it to the minimum. Off: SWIM's fixed timeout, the minimum.
    pub dynamic_suspicion: bool,
    /// The buddy system: a member that suspects a peer puts the claim on every probe to
    /// it, so the suspect hears it and can refute. Off: the claim travels as gossip only.
    pub buddy_system: bool,
    /// Asking the accused (not in the paper; it extends the buddy system to every member):
    /// a member that starts a suspicion on another's word pings the suspect once, with the
    /// claim on board. A live suspect refutes in its ack, or, if it refuted already, answers
    /// with the incarnation that did. So a member the refutation's gossip missed (a bounded
    /// epidemic misses some, most after a partition heals, when every queue is full) still
    /// hears it before its own timer runs out. Off: the refutation reaches it as gossip only.
    pub ask_the_accused: bool,
}

impl Lifeguard {
    /// Every mechanism on.
    pub const ALL: Self =
        Self { local_health: true, dynamic_suspicion: true, buddy_system: true, ask_the_accused: true };
    /// None of them: SWIM with nacks.
    pub const NONE: Self =
        Self { local_health: false, dynamic_suspicion: false, buddy_system: false, ask_the_accused: false };
}

impl Default for Lifeguard {
    fn default() -> Self {
        Self::ALL
    }
}

impl Config {
    /// A data-centre network: sub-millisecond RTTs, rare loss.
    ///
    /// Faster than memberlist's LAN profile (1 s probes, which cannot detect a crash at 100
    /// members in under 8 s): a probe every 250 ms (each watched peer every 750 ms),
    /// suspicion at least `3 * max(1, log10 n) * 250 ms`, phi tolerating 100 ms of pause.
    pub fn lan() -> Self {
        Self {
            cluster_id: 0,
            max_datagram: 1400,
            probe_interval: Duration::from_millis(250),
            probe_timeout: Duration::from_millis(125),
            monitors: 3,
            indirect_checks: 3,
            suspicion_mult: 3,
            suspicion_confirmations: 2,
            suspicion_max_timeout_mult: 6,
            retransmit_mult: 4,
            gossip_interval: Duration::from_millis(100),
            gossip_nodes: 3,
            push_pull_interval: Duration::from_secs(30),
            gossip_to_the_dead_time: Duration::from_secs(30),
            awareness_max_multiplier: 8,
            join_retry_base: Duration::from_millis(200),
            join_retry_max: Duration::from_secs(10),
            tombstone_ttl: Duration::from_secs(3600),
            phi: PhiParams {
                threshold: 8.0,
                max_sample_size: 1000,
                min_std_dev: Duration::from_millis(50),
                acceptable_pause: Duration::from_millis(100),
                // Each watched peer is probed every `monitors` intervals.
                first_heartbeat_estimate: Duration::from_millis(750),
            },
            lifeguard: Lifeguard::ALL,
            election: ElectionConfig::default(),
            partition: Some(PartitionConfig::new(Duration::from_secs(5))),
        }
    }

    /// A wide-area network: tens of milliseconds of RTT, more loss (memberlist's WAN profile).
    pub fn wan() -> Self {
        Self {
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            suspicion_mult: 6,
            suspicion_confirmations: 4,
            gossip_interval: Duration::from_millis(500),
            gossip_nodes: 4,
            push_pull_interval: Duration::from_secs(60),
            gossip_to_the_dead_time: Duration::from_secs(60),
            join_retry_base: Duration::from_secs(1),
            join_retry_max: Duration::from_secs(30),
            phi: PhiParams {
                threshold: 8.0,
                max_sample_size: 1000,
                min_std_dev: Duration::from_millis(500),
                acceptable_pause: Duration::from_secs(3),
                first_heartbeat_estimate: Duration::from_secs(15),
            },
            election: ElectionConfig {
                election_timeout_min: Duration::from_millis(1000),
                election_timeout_max: Duration::from_millis(2000),
                heartbeat_interval: Duration::from_millis(250),
                ..ElectionConfig::default()
            },
            partition: Some(PartitionConfig::new(Duration::from_secs(30))),
            ..Self::lan()
        }
    }

    /// One machine (loopback, tests): everything fast.
    pub fn local() -> Self {
        Self {
            probe_interval: Duration::from_millis(100),
            probe_timeout: Duration::from_millis(50),
            gossip_interval: Duration::from_millis(50),
            push_pull_interval: Duration::from_secs(5),
            gossip_to_the_dead_time: Duration::from_secs(10),
            join_retry_base: Duration::from_millis(50),
            join_retry_max: Duration::from_secs(2),
            phi: PhiParams {
                threshold: 8.0,
                max_sample_size: 1000,
                min_std_dev: Duration::from_millis(20),
                acceptable_pause: Duration::from_millis(50),
                first_heartbeat_estimate: Duration::from_millis(300),
            },
            partition: Some(PartitionConfig::new(Duration::from_secs(2))),
            ..Self::lan()
        }
    }

    /// How often each watched peer is probed: `probe_interval * monitors` (a member probes
    /// its watched peers in turn, one per interval). The longest a probe may wait, and the
    /// silence after which a member is "not heard directly".
    pub fn probe_period(&self) -> Duration {
        self.probe_interval.saturating_mul(u32::try_from(self.monitors).unwrap_or(u32::MAX))
    }

    /// Lifeguard's suspicion timeouts for a view of `n` live members: the minimum,
    /// `suspicion_mult * max(1, log10 n) * probe_interval` (memberlist's), and the maximum,
    /// `suspicion_max_timeout_mult` times it.
    pub fn suspicion_timeouts(&self, n: usize) -> (Duration, Duration) {
        let min = suspicion_min(self.suspicion_mult, n, self.probe_interval);
        (min, min.saturating_mul(self.suspicion_max_timeout_mult))
    }

    /// Checks every setting that would make the protocol impossible or meaningless.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_datagram < wire::MIN_MAX_DATAGRAM {
            return Err(ConfigError::DatagramTooSmall { max_datagram: self.max_datagram, min: wire::MIN_MAX_DATAGRAM });
        }
        if self.max_datagram > wire::MAX_MAX_DATAGRAM {
            return Err(ConfigError::DatagramTooLarge { max_datagram: self.max_datagram, max: wire::MAX_MAX_DATAGRAM });
        }
        let durations = [
            ("probe_interval", self.probe_interval),
            ("probe_timeout", self.probe_timeout),
            ("gossip_interval", self.gossip_interval),
            ("push_pull_interval", self.push_pull_interval),
            ("join_retry_base", self.join_retry_base),
            ("join_retry_max", self.join_retry_max),
            ("phi.min_std_dev", self.phi.min_std_dev),
            ("phi.first_heartbeat_estimate", self.phi.first_heartbeat_estimate),
        ];
        if let Some((field, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::ZeroDuration { field });
        }
        let counts = [
            ("monitors", self.monitors as u64),
            ("gossip_nodes", self.gossip_nodes as u64),
            ("suspicion_mult", u64::from(self.suspicion_mult)),
            ("suspicion_confirmations", u64::from(self.suspicion_confirmations)),
            ("suspicion_max_timeout_mult", u64::from(self.suspicion_max_timeout_mult)),
            ("retransmit_mult", u64::from(self.retransmit_mult)),
            ("awareness_max_multiplier", u64::from(self.awareness_max_multiplier)),
            ("phi.max_sample_size", self.phi.max_sample_size as u64),
        ];
        if let Some((field, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Err(ConfigError::ZeroCount { field });
        }
        if self.probe_timeout >= self.probe_interval {
            return Err(ConfigError::ProbeTimeoutNotBelowInterval {
                probe_timeout: self.probe_timeout,
                probe_interval: self.probe_interval,
            });
        }
        if self.join_retry_max < self.join_retry_base {
            return Err(ConfigError::JoinRetryMaxBelowBase { base: self.join_retry_base, max: self.join_retry_max });
        }
        if !(self.phi.threshold > 0.0 && self.phi.threshold.is_finite()) {
            return Err(ConfigError::PhiThreshold { threshold: self.phi.threshold });
        }
        self.validate_election()?;
        if let Some(partition) = &self.partition {
            if partition.stable_after.is_zero() {
                return Err(ConfigError::ZeroDuration { field: "partition.stable_after" });
            }
            if let Strategy::StaticQuorum { quorum } = partition.strategy {
                if quorum == 0 {
                    return Err(ConfigError::ZeroCount { field: "partition.strategy.quorum" });
                }
            }
        }
        Ok(())
    }

    fn validate_election(&self) -> Result<(), ConfigError> {
        let e = &self.election;
        let durations = [
            ("election.election_timeout_min", e.election_timeout_min),
            ("election.heartbeat_interval", e.heartbeat_interval),
            ("election.leader_announce_interval", e.leader_announce_interval),
        ];
        if let Some((field, _)) = durations.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::ZeroDuration { field });
        }
        if e.election_timeout_max < e.election_timeout_min {
            return Err(ConfigError::Election {
                why: "election_timeout_max is below election_timeout_min".to_string(),
            });
        }
        if e.heartbeat_interval >= e.election_timeout_min {
            return Err(ConfigError::Election {
                why: format!(
                    "heartbeat_interval ({:?}) must be shorter than election_timeout_min ({:?})",
                    e.heartbeat_interval, e.election_timeout_min
                ),
            });
        }
        if !(0.0..0.1).contains(&e.max_clock_drift) {
            return Err(ConfigError::Election {
                why: format!("max_clock_drift is {}; it must be in [0, 0.1)", e.max_clock_drift),
            });
        }
        let mut voters = e.voters.clone();
        voters.sort_unstable();
        if let Some(w) = voters.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::Election { why: format!("voter {} is listed twice", w[0]) });
        }
        Ok(())
    }
}

impl Default for Config {
    /// [`Config::lan`].
    fn default() -> Self {
        Self::lan()
    }
}

/// One member's settings: who it is, where it listens, and what it remembers.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct NodeConfig {
    /// Its identity.
    pub id: NodeId,
    /// The address other members send to.
    pub addr: SocketAddr,
    /// The cluster-wide settings.
    pub cluster: Config,
    /// Seeds the node's RNG: the same seed and inputs give the same outputs.
    pub seed: u64,
    /// What the node persisted before it stopped, or `None` on first start (or amnesia).
    pub durable: Option<Durable>,
    /// The metadata it publishes.
    pub tags: Tags,
    /// For a voter started without `durable` state: what the operator says about the
    /// cluster it starts into (etcd's `--initial-cluster-state`). `None` (the default): the
    /// operator did not say. Ignored when `durable` is given (but for a wait persisted in
    /// it, which goes on); an error on a member that is not one of the voters. See
    /// [`InitialClusterState`].
    pub initial_cluster_state: Option<InitialClusterState>,
}

impl NodeConfig {
    /// A node with no tags, nothing persisted, and no word on the initial cluster state.
    pub fn new(id: NodeId, addr: SocketAddr, cluster: Config, seed: u64) -> Self {
        Self { id, addr, cluster, seed, durable: None, tags: Tags::new(), initial_cluster_state: None }
    }

    /// Checks the cluster settings ([`Config::validate`]), and that the initial cluster
    /// state is said of a voter only. `Node::new` validates for you.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.cluster.validate()?;
        if let Some(state) = self.initial_cluster_state {
            if !self.cluster.election.voters.contains(&self.id) {
                return Err(ConfigError::Election {
                    why: format!(
                        "initial_cluster_state is `{state}` on {}, which is not one of the voters; it says how a \
                         voter starts without its disk: set it on voters only, or add {} to the voters",
                        self.id, self.id
                    ),
                });
            }
        }
        Ok(())
    }
}

/// What the operator says, when a voter starts without durable state, about the cluster it
/// starts into: etcd's `--initial-cluster-state new|existing`.
///
/// An empty disk is either a first start, when the voter cannot have voted yet, or a lost
/// disk, when it may have voted in terms it no longer knows and must not vote in them
/// again. Nothing on the disk tells the two apart; the operator can. A voter started with
/// its durable state ignores the switch, but for one thing: a wait it persisted before a
/// crash goes on (by `Existing`'s rules if the switch says `Existing`). Without it (`NodeConfig::initial_cluster_state`
/// is `None`) a voter on an empty disk waits for the terms of a majority of the other
/// voters, whichever of the two it is. The election module's documentation (`election`
/// in the source) gives the argument and the recovery after a majority lost their disks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InitialClusterState {
    /// A brand-new cluster: an empty disk is a first start, so the voter votes and stands
    /// at once, from term 0. Say it only of a cluster whose voters never ran before (or
    /// after the old cluster is gone for good): a voter that in fact lost its disk could
    /// vote twice in a term.
    New,
    /// A cluster that exists: an empty disk is a lost one. The voter neither votes nor
    /// stands, nor answers vote requests, until an election timeout has passed and a
    /// majority of the other voters reported their terms in answers, heartbeats or
    /// candidacies (never in the term queries of other voters that wait, which it does not
    /// count), or until the operator sends `Command::ResumeVoting`. When a majority of the
    /// voters lost their disks (and all of them were restarted with `Existing`), their
    /// waits end only on the operator's word.
    Existing,
}

impl std::fmt::Display for InitialClusterState {
    /// `new` or `existing`, as etcd spells them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::New => "new",
            Self::Existing => "existing",
        })
    }
}

impl std::str::FromStr for InitialClusterState {
    type Err = String;

    /// `new` or `existing` (etcd's spelling); anything else is an error that says so.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "new" => Ok(Self::New),
            "existing" => Ok(Self::Existing),
            other => Err(format!("initial cluster state {other:?}: expected `new` or `existing`")),
        }
    }
}

/// memberlist's minimum suspicion timeout: `mult * max(1, log10 n) * interval`.
pub(crate) fn suspicion_min(mult: u32, n: usize, interval: Duration) -> Duration {
    // libm's log10 and ln, not the platform's: the same timeout, to the nanosecond, everywhere.
    let scale = libm::log10(n.max(1) as f64).max(1.0);
    interval.mul_f64(f64::from(mult) * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        for config in [Config::lan(), Config::wan(), Config::local(), Config::default()] {
            assert_eq!(config.validate(), Ok(()));
        }
    }

    #[test]
    fn impossible_settings_are_named() {
        type Case = (fn(&mut Config), &'static str);
        let cases: &[Case] = &[
            (|c| c.probe_interval = Duration::ZERO, "`probe_interval` is zero"),
            (|c| c.probe_timeout = Duration::ZERO, "`probe_timeout` is zero"),
            (|c| c.gossip_interval = Duration::ZERO, "`gossip_interval` is zero"),
            (|c| c.push_pull_interval = Duration::ZERO, "`push_pull_interval` is zero"),
            (|c| c.monitors = 0, "`monitors` is zero"),
            (|c| c.gossip_nodes = 0, "`gossip_nodes` is zero"),
            (|c| c.suspicion_mult = 0, "`suspicion_mult` is zero"),
            (|c| c.suspicion_confirmations = 0, "`suspicion_confirmations` is zero"),
            (|c| c.retransmit_mult = 0, "`retransmit_mult` is zero"),
            (|c| c.awareness_max_multiplier = 0, "`awareness_max_multiplier` is zero"),
            (|c| c.phi.max_sample_size = 0, "`phi.max_sample_size` is zero"),
            (|c| c.phi.min_std_dev = Duration::ZERO, "`phi.min_std_dev` is zero"),
            (|c| c.probe_timeout = c.probe_interval, "must be shorter than probe_interval"),
            (|c| c.phi.threshold = 0.0, "phi.threshold is 0"),
            (|c| c.phi.threshold = -1.0, "phi.threshold is -1"),
            (|c| c.phi.threshold = f64::NAN, "phi.threshold is NaN"),
            (|c| c.max_datagram = 100, "max_datagram 100 B is below"),
            (|c| c.max_datagram = 70_000, "max_datagram 70000 B is above"),
            (|c| c.join_retry_max = Duration::from_millis(1), "join_retry_max"),
        ];
        for (break_it, expected) in cases {
            let mut config = Config::lan();
            break_it(&mut config);
            let message = config.validate().expect_err(expected).to_string();
            assert!(message.contains(expected), "{message:?} should contain {expected:?}");
        }
    }

    #[test]
    fn the_initial_cluster_state_reads_and_prints_as_etcd_spells_it() {
        for (text, state) in [("new", InitialClusterState::New), ("existing", InitialClusterState::Existing)] {
            assert_eq!(text.parse::<InitialClusterState>(), Ok(state));
            assert_eq!(state.to_string(), text);
        }
        for bad in ["", "New", "exist", "existing "] {
            let why = bad.parse::<InitialClusterState>().expect_err(bad);
            assert!(why.contains("expected `new` or `existing`"), "{why}");
        }
    }
}
