//! The built-in catalog: named, documented scenarios, each a fault plan drawn from a seed,
//! a cluster, and the bounds it must keep on top of the standard checkers.
//!
//! Every scenario runs with every standard checker of `conclave-sim` (at most one leader
//! per term, exclusive leases, no false failure verdicts, convergence within its bound
//! after the last fault, a leader after it, incarnations never reused, suspicions within
//! Lifeguard's bounds, claims refuted, bytes per member-second within a bound, a leader in
//! contact with a majority, no pre-vote granted while a leader is heard, no vote on the
//! wire before its write) and must be judged by each, not merely not violate it; a
//! scenario opts out of a checker only when that checker has nothing to judge (no member
//! votes, so the leader checkers cannot judge). The two standard checkers that judge only
//! what a run provokes (a crash detected within its bound, the stopping side of a
//! partition read-only: `conclave_sim::check::WHEN_PROVOKED`) report whether they judged,
//! and fail a run only by a violation. Its own bounds are checkers too ([`bounds`]),
//! judged the same way.
//!
//! | scenario | members | what it checks |
//! |---|---|---|
//! | `crash-detection` | 10 | a crashed member is declared failed by every other within the bound |
//! | `partition-heal` | 5 | a minority cut off for 20 s to 5 min: both sides decide, the minority goes read-only, all heal |
//! | `slow-member` | 6 | a member 20 ms slow per datagram is never declared failed |
//! | `leader-crash` | 5 | the leader crashes; a new one is elected within the bound |
//! | `lease-fast-network` | 5 | 20 us links, clocks at the drift bound, pairs cut off: leases within the voters' promises |
//! | `partial-connectivity` | 5 | the Cloudflare topology: one stable leader for ten minutes |
//! | `one-way-cut` | 5 | two hear the others but cannot reach them: a running side is one that can act together |
//! | `bridge-member` | 6 | two pairs apart, one member reaching both: nobody counts the bridge on its side |
//! | `flapping-link` | 6 | one link goes down and up for a minute: no verdict at all |
//! | `heavy-packet-loss` | 10 | 20 % loss for ten minutes: no verdict at all |
//! | `clock-skew` | 6 | drift at the lease's bound, an hour's offset, steps both ways: no verdict |
//! | `mass-restart` | 8 | every member killed and restarted with its disk: the cluster re-forms and elects |
//! | `mass-restart-amnesia` | 8 | the same on wiped disks (no voters): the cluster re-forms |
//! | `crash-recovery` | 6 | members crash and come back, with and without disk, again and again |
//! | `churn` | 12 | members replaced one after another for two minutes |
//! | `large-cluster` | 100 | a hundred members form, lose three, take them back |
//! | `big-partition` | 100 | cut in half along the ids: every member decides on the whole picture within the bound |
//! | `cascading-failure` | 10 | a worker crashes under 85 % load: no other crashes overloaded, most calls complete |
//! | `retry-storm` | 10 | every worker down for 10 s under load: retries within the budget, service back within 5 s |
//! | `random-chaos` | drawn | [`conclave_sim::chaos`]: each seed its own fault kinds, cluster and plan |
//!
//! The service scenarios run a workload ([`Scenario::service`], from
//! [`crate::service`]): clients calling workers through `conclave_core::resilience`, judged
//! by the simulator's workload checkers (every call ends once in time, no request runs
//! twice in its idempotency window, retries within the budget) beside their own bounds.
//!
//! Adding a scenario is one [`Scenario`] value in [`CATALOG`]: its plan as a function of
//! (seed, members), its bounds as checkers; `cargo test` then runs it (one test per
//! scenario in `scenarios/tests/catalog.rs`), `conclave list` lists it, `conclave sweep`
//! sweeps it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use conclave_core::{Config, NodeId};
use conclave_sim::{sim_id, Checker, FaultPlan, Workload};

pub mod bounds;
mod chaos;
mod election;
mod membership;
mod partitions;
mod service;

pub use partitions::{big_partition_plan, BIG_CUT, BIG_SPLIT};

/// A protocol configuration preset (`Config::lan()`, `wan()`, `local()`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Preset {
    /// `Config::lan()`: a data-centre network.
    #[default]
    Lan,
    /// `Config::wan()`: a wide-area network.
    Wan,
    /// `Config::local()`: one machine.
    Local,
}

impl Preset {
    /// The configuration.
    pub fn config(self) -> Config {
        match self {
            Self::Lan => Config::lan(),
            Self::Wan => Config::wan(),
            Self::Local => Config::local(),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Lan => "lan",
            Self::Wan => "wan",
            Self::Local => "local",
        })
    }
}

impl FromStr for Preset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "lan" => Ok(Self::Lan),
            "wan" => Ok(Self::Wan),
            "local" => Ok(Self::Local),
            other => Err(format!("`{other}` is no preset (lan, wan, local)")),
        }
    }
}

/// How many members a scenario runs by default.
#[derive(Clone, Copy)]
pub enum Members {
    /// Always this many (unless asked for another size).
    Fixed(usize),
    /// Drawn from the seed; `label` says how, for `conclave list`.
    Drawn {
        /// The size of a seed's cluster.
        by: fn(u64) -> usize,
        /// How it is drawn, in a few words.
        label: &'static str,
    },
}

impl fmt::Debug for Members {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(n) => write!(f, "Fixed({n})"),
            Self::Drawn { label, .. } => write!(f, "Drawn({label})"),
        }
    }
}

impl fmt::Display for Members {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(n) => write!(f, "{n}"),
            Self::Drawn { label, .. } => f.write_str(label),
        }
    }
}

/// What a scenario's bounds are built for: the cluster a run has.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The protocol settings every member runs (voters included).
    pub config: Config,
    /// How many members.
    pub members: usize,
    /// The voters (the first members), empty when none votes.
    pub voters: Vec<NodeId>,
}

/// One named scenario of the catalog.
pub struct Scenario {
    /// Its name, kebab-case: `conclave run <name>`.
    pub name: &'static str,
    /// One line, for `conclave list`.
    pub summary: &'static str,
    /// One paragraph: the faults, the cluster, what must hold and why the bounds are what
    /// they are.
    pub doc: &'static str,
    /// The cluster size by default.
    pub members: Members,
    /// The smallest cluster the plan makes sense on.
    pub min_members: usize,
    /// The protocol settings.
    pub preset: Preset,
    /// How many of the first members vote (all, when fewer); 0: none, and the leader
    /// checkers are opted out of.
    pub voters: usize,
    /// How many seeds `cargo test` and `conclave sweep` run by default.
    pub default_seeds: u64,
    /// The fault plan of a seed on a cluster of this many members.
    pub plan: fn(seed: u64, members: usize) -> FaultPlan,
    /// Its own bounds, as checkers, for a cluster.
    pub bounds: fn(&Setup) -> Vec<Box<dyn Checker>>,
    /// The service workload it runs on a cluster of this many members (clients calling
    /// workers through the resilience policies, with the workload checkers), if any.
    pub service: Option<fn(members: usize) -> Workload>,
}

impl fmt::Debug for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scenario")
            .field("name", &self.name)
            .field("members", &self.members)
            .field("voters", &self.voters)
            .field("default_seeds", &self.default_seeds)
            .finish_non_exhaustive()
    }
}

impl Scenario {
    /// The cluster size of `seed` by default.
    pub fn members_for(&self, seed: u64) -> usize {
        match self.members {
            Members::Fixed(n) => n,
            Members::Drawn { by, .. } => by(seed),
        }
    }

    /// How many of `members` vote.
    pub fn voters_for(&self, members: usize) -> usize {
        self.voters.min(members)
    }

    /// The setup of a cluster of `members` running `preset` with `voters` voters.
    pub fn setup(preset: Preset, members: usize, voters: usize) -> Setup {
        let voters: Vec<NodeId> = (0..voters.min(members)).map(sim_id).collect();
        let mut config = preset.config();
        config.election.voters.clone_from(&voters);
        Setup { config, members, voters }
    }
}

/// Every scenario, in the order `conclave list` shows them.
pub static CATALOG: &[Scenario] = &[
    membership::CRASH_DETECTION,
    partitions::PARTITION_HEAL,
    membership::SLOW_MEMBER,
    election::LEADER_CRASH,
    election::LEASE_FAST_NETWORK,
    partitions::PARTIAL_CONNECTIVITY,
    partitions::ONE_WAY_CUT,
    partitions::BRIDGE_MEMBER,
    membership::FLAPPING_LINK,
    membership::HEAVY_PACKET_LOSS,
    membership::CLOCK_SKEW,
    membership::MASS_RESTART,
    membership::MASS_RESTART_AMNESIA,
    membership::CRASH_RECOVERY,
    membership::CHURN,
    membership::LARGE_CLUSTER,
    partitions::BIG_PARTITION,
    service::CASCADING_FAILURE,
    service::RETRY_STORM,
    chaos::RANDOM_CHAOS,
];

/// The scenario named `name`.
pub fn find(name: &str) -> Option<&'static Scenario> {
    CATALOG.iter().find(|s| s.name == name)
}

/// The catalog's names, for a message that lists them.
pub fn names() -> String {
    CATALOG.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

/// A seeded draw for a scenario's plan: the same seed always draws the same values, and
/// each scenario its own stream.
pub(crate) fn draws(seed: u64, scenario: &str) -> conclave_sim::SimRng {
    let salt = scenario.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    conclave_sim::SimRng::new(seed ^ salt)
}

/// `k` distinct members of the first `n`, in id order.
pub(crate) fn some_members(rng: &mut conclave_sim::SimRng, n: usize, k: usize) -> Vec<NodeId> {
    let mut pool: Vec<NodeId> = (0..n).map(sim_id).collect();
    let mut out = Vec::with_capacity(k);
    for _ in 0..k.min(n) {
        let i = rng.below(pool.len() as u64) as usize;
        out.push(pool.swap_remove(i));
    }
    out.sort();
    out
}

/// Uniform in `[lo, hi]` milliseconds.
pub(crate) fn millis_between(rng: &mut conclave_sim::SimRng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(lo + rng.below(hi - lo + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_kebab_case_and_every_entry_is_documented() {
        let mut seen = std::collections::BTreeSet::new();
        for s in CATALOG {
            assert!(seen.insert(s.name), "{} twice", s.name);
            assert!(s.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'), "{}", s.name);
            assert!(!s.summary.is_empty() && !s.summary.contains('\n'), "{}: one line", s.name);
            assert!(s.doc.len() > 100, "{}: a paragraph", s.name);
            assert!(s.default_seeds > 0);
            assert_eq!(find(s.name).map(|f| f.name), Some(s.name));
        }
        assert!(find("no-such-scenario").is_none());
    }

    #[test]
    fn every_plan_is_a_function_of_its_seed_and_names_only_its_members() {
        for s in CATALOG {
            for seed in 1..=6 {
                let n = s.members_for(seed);
                assert!(n >= s.min_members, "{} seed {seed}: {n} members", s.name);
                let plan = (s.plan)(seed, n);
                assert_eq!(plan, (s.plan)(seed, n), "{} seed {seed}", s.name);
                assert!(!plan.is_empty(), "{} seed {seed}: no faults", s.name);
                assert!(plan.highest_member().is_none_or(|m| m.0 as usize <= n), "{} seed {seed}: {plan}", s.name);
                let small = (s.plan)(seed, s.min_members);
                assert!(small.highest_member().is_none_or(|m| m.0 as usize <= s.min_members), "{}: {small}", s.name);
            }
        }
    }
}
