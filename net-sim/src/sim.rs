//! The fast engine: a discrete-event loop over `conclave_core::Node`s.
//!
//! One priority queue of events ordered by (global time, sequence number), one seeded RNG
//! for every draw, and each member's own clock between the global time and its `now`.
//! Nothing touches a real socket or the real clock.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use conclave_core::{
    wire, Command, Config, Durable, Event, Instant, MessageKind, Node, NodeConfig, NodeId, Output, Transmit,
};

use crate::check::{
    Checker, ClusterSnapshot, Converges, ElectsAfterHeal, Finding, IncarnationChange, IncarnationsNeverReused,
    LeaseExclusive, NoFalseVerdicts, NodeSnapshot, Observation, OneLeaderPerTerm, Outcome, RefutesClaims, RunInfo,
    Status, SuspicionWithinBounds, Violation,
};
use crate::clock::Clock;
use crate::error::Error;
use crate::fault::{Disk, Fault, FaultPlan};
use crate::network::{nanos, sample_latency, LinkParams, LinkSelector, Network, SimRng};
use crate::queue::EventQueue;
use crate::trace::{fingerprint, hash_event, tag, DropReason, TraceHasher, TraceMode, TraceRecord};

/// The port every simulated member listens on.
pub const SIM_PORT: u16 = 7946;

/// The address of the `index`-th member (from 0) of a built cluster: `127.b.c.d:7946` with
/// the index in the low 24 bits above `127.1.0.0`. Loopback, and never bound: the fast
/// engine sends nothing on a real socket.
pub fn sim_addr(index: usize) -> SocketAddr {
    let i = index as u32;
    let ip = Ipv4Addr::new(127, (1 + (i >> 16)) as u8, (i >> 8) as u8, i as u8);
    SocketAddr::V4(SocketAddrV4::new(ip, SIM_PORT))
}

/// The id of the `index`-th member (from 0) of a built cluster: `n1`, `n2`, ...
pub fn sim_id(index: usize) -> NodeId {
    NodeId(index as u64 + 1)
}

/// A member's seed for its `restart`-th start: splitmix64 of the run's seed, its id and the
/// restart count, so each process of each member draws its own stream.
fn node_seed(run_seed: u64, id: NodeId, restart: u32) -> u64 {
    let mut z = run_seed ^ id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (u64::from(restart) << 48);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Clone, Debug)]
enum Members {
    Count(usize),
    Explicit(Vec<NodeConfig>),
}

/// Builds a [`Sim`]. Every setting has a default; only the member count is usually set.
///
/// ```
/// use std::time::Duration;
/// use conclave_core::Config;
/// use conclave_sim::{LinkParams, SimBuilder};
///
/// let mut sim = SimBuilder::new()
///     .seed(7)
///     .members(5)
///     .config(Config::lan())
///     .network(LinkParams::constant(Duration::from_millis(1)))
///     .voters(5) // they elect a leader; the leader checkers judge it
///     .build()
///     .expect("a valid configuration");
/// sim.run_until_judged(conclave_core::Instant::from_secs(600));
/// let report = sim.finish();
/// report.assert_clean();
/// assert!(report.stats.delivered > 0);
/// ```
#[derive(Clone, Debug)]
pub struct SimBuilder {
    seed: u64,
    config: Config,
    members: Members,
    network: LinkParams,
    links: Vec<(NodeId, NodeId, LinkParams)>,
    plan: FaultPlan,
    seeds: usize,
    join_window: Option<Duration>,
    bootstrap: bool,
    trace: TraceMode,
    default_checkers: bool,
    false_verdict_budget: usize,
    lease_max_drift_ppm: f64,
    convergence_bound: Option<Duration>,
    replay: Option<String>,
    opt_outs: Vec<&'static str>,
    voters: Option<usize>,
}

impl Default for SimBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl SimBuilder {
    /// Seed 0, 3 members, `Config::lan()`, 500 µs constant links, no faults, 3 seeds.
    pub fn new() -> Self {
        Self {
            seed: 0,
            config: Config::lan(),
            members: Members::Count(3),
            network: LinkParams::default(),
            links: Vec::new(),
            plan: FaultPlan::new(),
            seeds: 3,
            join_window: None,
            bootstrap: true,
            trace: TraceMode::Events,
            default_checkers: true,
            false_verdict_budget: 0,
            lease_max_drift_ppm: 500.0,
            convergence_bound: None,
            replay: None,
            opt_outs: Vec::new(),
            voters: None,
        }
    }

    /// Makes the first `count` members (in slot order) the cluster's voters, on top of
    /// whatever config is set: they elect a leader, and the leader checkers judge it.
    pub fn voters(mut self, count: usize) -> Self {
        self.voters = Some(count);
        self
    }

    /// The seed of every random draw, the members' included.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// `n` members `n1..=n{n}` at [`sim_addr`]`(0..n)`, sharing [`SimBuilder::config`].
    pub fn members(mut self, n: usize) -> Self {
        self.members = Members::Count(n);
        self
    }

    /// Explicit members (their own ids, addresses, configs, tags). Their `seed` fields are
    /// used as given; their `durable` is what each finds on disk at the start.
    pub fn node_configs(mut self, configs: Vec<NodeConfig>) -> Self {
        self.members = Members::Explicit(configs);
        self
    }

    /// The protocol settings of counted members.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The default behaviour of every link.
    pub fn network(mut self, params: LinkParams) -> Self {
        self.network = params;
        self
    }

    /// The behaviour of the one direction `from -> to`.
    pub fn link(mut self, from: NodeId, to: NodeId, params: LinkParams) -> Self {
        self.links.push((from, to, params));
        self
    }

    /// The fault plan.
    pub fn plan(mut self, plan: FaultPlan) -> Self {
        self.plan = plan;
        self
    }

    /// How many of the first members serve as seeds (default 3). The first member founds
    /// the cluster; every other joins through the seeds.
    pub fn seeds(mut self, seeds: usize) -> Self {
        self.seeds = seeds.max(1);
        self
    }

    /// The joins are spread uniformly over this window from time zero (default:
    /// 100 ms + 1 ms per member).
    pub fn join_window(mut self, window: Duration) -> Self {
        self.join_window = Some(window);
        self
    }

    /// Whether members join at the start (default yes). Without, the test sends the
    /// commands itself with [`Sim::command`].
    pub fn bootstrap(mut self, bootstrap: bool) -> Self {
        self.bootstrap = bootstrap;
        self
    }

    /// Which of the trace's records to keep (default: the members' events; the hash is
    /// always computed).
    pub fn trace(mut self, mode: TraceMode) -> Self {
        self.trace = mode;
        self
    }

    /// Whether the standard checkers run (default yes): one leader per term, lease
    /// exclusivity, no false failure verdicts, convergence after the last fault,
    /// incarnations never reused after a restart with disk, suspicions within Lifeguard's
    /// bounds, claims about live members refuted within the convergence bound.
    /// Turning them off is for benchmarks and for tests of the engine itself: a test of
    /// the protocol keeps them and opts out, by name, of those that cannot judge it
    /// ([`SimBuilder::opt_out`]).
    pub fn default_checkers(mut self, on: bool) -> Self {
        self.default_checkers = on;
        self
    }

    /// How many distinct false failure verdicts a run may have (default 0).
    pub fn false_verdict_budget(mut self, budget: usize) -> Self {
        self.false_verdict_budget = budget;
        self
    }

    /// The clock drift the leader lease is built to tolerate (default 500 ppm): lease
    /// exclusivity is checked only between members whose clocks stay within it.
    pub fn lease_drift_bound(mut self, ppm: f64) -> Self {
        self.lease_max_drift_ppm = ppm;
        self
    }

    /// How long after the plan's last step every view must have converged (default:
    /// [`SimBuilder::default_convergence_bound`]).
    pub fn convergence_bound(mut self, bound: Duration) -> Self {
        self.convergence_bound = Some(bound);
        self
    }

    /// Opts out of checker `name`'s judgement: [`Report::assert_clean`] then accepts that
    /// it could not judge the run (it still reports violations). For a check that has
    /// nothing to judge in this run, like the leader checkers while no member elects.
    /// Naming no checker of the run makes `assert_clean` fail.
    pub fn opt_out(mut self, name: &'static str) -> Self {
        self.opt_outs.push(name);
        self
    }

    /// Opts out of each of these checkers' judgement (see [`SimBuilder::opt_out`]), like
    /// [`NO_ELECTION`](crate::check::NO_ELECTION).
    pub fn opt_out_of(mut self, names: &[&'static str]) -> Self {
        self.opt_outs.extend_from_slice(names);
        self
    }

    /// The command a violation prints to replay the run (default: `cargo test` of the
    /// current test with `CONCLAVE_SEED` set, when run from a test).
    pub fn replay_command(mut self, command: impl Into<String>) -> Self {
        self.replay = Some(command.into());
        self
    }

    /// The seed.
    pub fn seed_value(&self) -> u64 {
        self.seed
    }

    /// The default convergence bound for `n` members with `config`: the longest suspicion
    /// timeout plus twenty probe periods (`probe_interval * monitors`): 19.5 s at 5 lan
    /// members, 24 s at 100. What the core needs after a heal is measured by `conclave bench
    /// convergence` (BENCHMARKS.md).
    pub fn default_convergence_bound(config: &Config, n: usize) -> Duration {
        let n = n.max(1);
        // Views merge within seconds of a heal (p99 under 2.5 s at 5 and 100 members after
        // 20 s and 5 min partitions, `conclave bench convergence`): a member pings one it
        // holds failed every probe period, and the first ack across sets off a view exchange.
        // The bound leaves a suspicion begun just before the heal time to run out, and twenty
        // probe periods for the exchange, the refutations and their gossip under loss.
        let max_suspicion = crate::check::max_suspicion_timeout(config, n);
        max_suspicion + config.probe_period() * 20
    }

    /// Builds the simulation at time zero: every member started, joins and faults queued.
    pub fn build(self) -> Result<Sim, Error> {
        Sim::new(self)
    }

    /// Runs this simulation twice for `duration` and compares the trace hashes.
    pub fn verify_determinism(&self, duration: Duration) -> Result<u64, Nondeterminism> {
        let run = |mode: TraceMode| -> Result<Report, Nondeterminism> {
            let mut sim = self.clone().trace(mode).build().map_err(|e| Nondeterminism {
                seed: self.seed,
                hashes: (0, 0),
                first_difference: Some(format!("the simulation does not build: {e}")),
            })?;
            sim.run_for(duration);
            Ok(sim.finish())
        };
        let (a, b) = (run(TraceMode::HashOnly)?, run(TraceMode::HashOnly)?);
        if a.trace_hash == b.trace_hash {
            return Ok(a.trace_hash);
        }
        let (a, b) = (run(TraceMode::Record)?, run(TraceMode::Record)?);
        let first = a.records.iter().zip(&b.records).position(|(x, y)| x != y);
        let first_difference = match first {
            Some(i) => Some(format!("record {i}: {} vs {}", a.records[i], b.records[i])),
            None => Some(format!("{} records vs {}", a.records.len(), b.records.len())),
        };
        Err(Nondeterminism { seed: self.seed, hashes: (a.trace_hash, b.trace_hash), first_difference })
    }
}

/// Runs `plan` with `seed` twice on a default cluster (enough members for every id the
/// plan names, at least 3) until 30 s after its last step, and compares the trace hashes.
pub fn verify_determinism(plan: &FaultPlan, seed: u64) -> Result<u64, Nondeterminism> {
    let named = plan.steps.iter().filter_map(|s| named_max(&s.fault)).max().unwrap_or(0);
    let members = (named as usize).max(3);
    let end = plan.last_at().unwrap_or(Instant::ZERO) + Duration::from_secs(30);
    SimBuilder::new().seed(seed).members(members).plan(plan.clone()).verify_determinism(end - Instant::ZERO)
}

fn named_max(fault: &Fault) -> Option<u64> {
    use crate::fault::Touched;
    match fault.touched() {
        Touched::All => match fault {
            Fault::Partition(groups) => groups.iter().flatten().map(|n| n.0).max(),
            _ => None,
        },
        Touched::Members(m) => m.iter().map(|n| n.0).max(),
    }
}

/// Two runs of the same seed and plan diverged: a determinism bug in the core or the
/// simulator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("seed {seed} is not deterministic: trace hashes {:#018x} and {:#018x}; first difference: {}", hashes.0, hashes.1, first_difference.as_deref().unwrap_or("unknown"))]
pub struct Nondeterminism {
    /// The seed.
    pub seed: u64,
    /// The two hashes.
    pub hashes: (u64, u64),
    /// The first record that differs, when the runs were repeated with records.
    pub first_difference: Option<String>,
}

/// Counters of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimStats {
    /// Datagrams handed to a member.
    pub delivered: u64,
    /// Of those, refused by the member (corrupted, say).
    pub rejected: u64,
    /// Dropped by a cut link.
    pub dropped_partition: u64,
    /// Lost on a lossy link.
    pub dropped_loss: u64,
    /// Addressed to a member whose process was not running.
    pub dropped_down: u64,
    /// Addressed to no member.
    pub dropped_no_route: u64,
    /// Extra copies made by duplicating links.
    pub duplicated: u64,
    /// Datagrams damaged by corrupting links.
    pub corrupted: u64,
    /// Stale copies held back to be delivered much later.
    pub stale: u64,
    /// Timer wake-ups handled.
    pub timers: u64,
    /// Events the members emitted.
    pub events: u64,
    /// Faults applied.
    pub faults: u64,
    /// Events the engine processed (all kinds).
    pub steps: u64,
}

impl SimStats {
    /// Datagrams dropped, all reasons.
    pub fn dropped(&self) -> u64 {
        self.dropped_partition + self.dropped_loss + self.dropped_down + self.dropped_no_route
    }
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Global virtual time at the end.
    pub end: Instant,
    /// The trace hash.
    pub trace_hash: u64,
    /// Counters.
    pub stats: SimStats,
    /// Every broken property.
    pub violations: Vec<Violation>,
    /// What every checker concluded, in the order they were added.
    pub checks: Vec<Outcome>,
    /// The checker names the test opted out of.
    pub opt_outs: Vec<&'static str>,
    /// The plan, in its text form (it parses back: `report.plan.parse::<FaultPlan>()`).
    pub plan: String,
    /// The command that replays the run.
    pub replay: String,
    mode: TraceMode,
    records: Vec<TraceRecord>,
}

impl Report {
    /// Panics, naming each checker and why, if a checker was violated, or could not judge
    /// the run and the test did not opt out of it ([`SimBuilder::opt_out`]), or the test
    /// opted out of a checker the run did not have. Every violation prints the seed, the
    /// plan and the replay command.
    #[track_caller]
    pub fn assert_clean(&self) {
        let problems = self.problems();
        if !problems.is_empty() {
            panic!("{}", problems.join("\n"));
        }
    }

    /// Whether [`Report::assert_clean`] passes.
    pub fn is_clean(&self) -> bool {
        self.problems().is_empty()
    }

    /// What [`Report::assert_clean`] complains about, one line each (violations span
    /// several lines).
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self.violations.iter().map(ToString::to_string).collect();
        if !out.is_empty() {
            out.insert(0, format!("{} violation(s):", self.violations.len()));
        }
        for check in &self.checks {
            if let Status::NotJudged(why) = &check.status {
                if !check.opted_out {
                    out.push(format!(
                        "{} could not judge the run (seed {}): {why}; opt out of it by name if no judgement is possible here\n  plan: {}\n  replay: {}",
                        check.checker, self.seed, self.plan, self.replay
                    ));
                }
            }
        }
        for name in &self.opt_outs {
            if !self.checks.iter().any(|c| c.checker == *name) {
                out.push(format!("the test opted out of `{name}`, which is no checker of this run"));
            }
        }
        out
    }

    /// The checker `name`'s conclusion.
    pub fn status(&self, name: &str) -> Option<&Status> {
        self.checks.iter().find(|c| c.checker == name).map(|c| &c.status)
    }

    /// Every record of the trace.
    ///
    /// # Panics
    ///
    /// If the run did not keep them: build it with `.trace(TraceMode::Record)`.
    #[track_caller]
    pub fn records(&self) -> &[TraceRecord] {
        all_records(self.mode, &self.records)
    }

    /// Every event the members emitted: `(time, member, event)`, in order.
    ///
    /// # Panics
    ///
    /// If the run kept no records (`TraceMode::HashOnly`).
    #[track_caller]
    pub fn events(&self) -> impl Iterator<Item = (Instant, NodeId, &Event)> + '_ {
        events_of(self.mode, &self.records)
    }
}

/// Every record, for a run that kept them all.
#[track_caller]
fn all_records(mode: TraceMode, records: &[TraceRecord]) -> &[TraceRecord] {
    assert!(
        mode == TraceMode::Record,
        "the run keeps {} of its trace's records, not all: build it with .trace(TraceMode::Record)",
        mode.kept()
    );
    records
}

#[track_caller]
fn events_of(mode: TraceMode, records: &[TraceRecord]) -> impl Iterator<Item = (Instant, NodeId, &Event)> + '_ {
    assert!(
        mode != TraceMode::HashOnly,
        "the run kept none of its trace's records (TraceMode::HashOnly): build it with the default trace mode, or .trace(TraceMode::Events)"
    );
    records.iter().filter_map(|r| match r {
        TraceRecord::Event { at, node, event } => Some((*at, *node, event)),
        _ => None,
    })
}

/// What the queue holds.
#[derive(Debug)]
enum What {
    /// A datagram reaches `to`'s host.
    Arrive { to: u32, from: u32, payload: Vec<u8>, sent: u64 },
    /// A datagram that waited behind a slow or paused process is handled.
    Handle { to: u32, from: u32, payload: Vec<u8>, sent: u64, life: u32 },
    /// A member's timer.
    Timer { node: u32, life: u32 },
    /// The plan's `index`-th step.
    Fault { index: u32 },
    /// A member joins through the seeds.
    Join { node: u32, life: u32 },
    /// A checker's snapshot.
    Snapshot { checker: u32 },
}

/// What the engine reads of a member at every event: one cache line, and a thousand of
/// them fit in a core's second-level cache beside the members' own state. (Every event
/// also reads the sender's slot or address, so a sparse layout costs a miss per event.)
#[repr(C, align(64))]
struct Slot {
    node: Option<Box<Node>>,
    /// The global time of the timer event in the queue that counts (`u64::MAX`: none).
    timer_at: u64,
    /// The member's latest `poll_timeout`, in its local time (`u64::MAX`: none; a wake-up
    /// then is never queued, as with none).
    deadline: u64,
    /// Until when the process is busy (paused, or working through a slow backlog).
    busy_until: u64,
    /// Processing delay per datagram (a slow member).
    slow: u64,
    last_fire: u64,
    id: NodeId,
    /// Bumped at every crash and start, so events of an older process are ignored.
    life: u32,
    /// Timer wake-ups at the same global instant in a row (a core that never advances
    /// its deadline would spin the engine forever).
    spins: u16,
    /// Whether the member's clock was ever changed (an offset, a drift, a jump): only then
    /// is its host's clock read; until then its readings are the global time.
    skewed: bool,
}

/// The rest of a member: read when it starts, restarts, persists or changes its clock.
struct Host {
    clock: Clock,
    /// The member's own incarnation, as last read (when a checker wants it).
    incarnation: u64,
    /// Its election state as last reported to the checkers: term, leader, leaseholder.
    election: Option<(u64, Option<NodeId>, bool)>,
    restarts: u32,
    config: NodeConfig,
    disk: Option<Vec<u8>>,
}

/// No deadline (see [`Slot::deadline`]).
const NONE: u64 = u64::MAX;

/// The deterministic simulator. See the [crate docs](crate) for the map.
pub struct Sim {
    seed: u64,
    now: u64,
    queue: EventQueue<What>,
    rng: SimRng,
    slots: Vec<Slot>,
    /// Each member's address, by slot: read for every datagram (the sender's, the
    /// destination's check), so kept dense.
    addrs: Vec<SocketAddr>,
    hosts: Vec<Host>,
    by_addr: BTreeMap<SocketAddr, u32>,
    by_id: BTreeMap<NodeId, u32>,
    seed_slots: Vec<u32>,
    net: Network,
    plan: FaultPlan,
    plan_json: String,
    mode: TraceMode,
    hasher: TraceHasher,
    records: Vec<TraceRecord>,
    stats: SimStats,
    checkers: Vec<Box<dyn Checker>>,
    /// The time of the earliest snapshot queued for each checker (`u64::MAX`: none).
    wakes: Vec<u64>,
    /// Whether some checker reads the members' own incarnations.
    incarnations: bool,
    /// Whether any member has voters configured: then every member's election state is
    /// read after each input and reported to the checkers when it changes.
    elects: bool,
    opt_outs: Vec<&'static str>,
    findings: Vec<Finding>,
    violations: Vec<Violation>,
    replay: String,
    outputs: Vec<Output>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("now", &Instant::from_nanos(self.now))
            .field("members", &self.slots.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn default_replay(seed: u64) -> String {
    if let Some(command) = crate::seeded::replay_command(seed) {
        return command;
    }
    format!("build the same simulation with SimBuilder::seed({seed}) and the plan above")
}

impl Sim {
    fn new(b: SimBuilder) -> Result<Self, Error> {
        let mut configs: Vec<NodeConfig> = match b.members {
            Members::Count(n) => (0..n)
                .map(|i| NodeConfig::new(sim_id(i), sim_addr(i), b.config.clone(), node_seed(b.seed, sim_id(i), 0)))
                .collect(),
            Members::Explicit(configs) => configs,
        };
        if let Some(count) = b.voters {
            let voters: Vec<NodeId> = configs.iter().take(count).map(|c| c.id).collect();
            for c in &mut configs {
                c.cluster.election.voters.clone_from(&voters);
            }
        }
        let elects = configs.iter().any(|c| !c.cluster.election.voters.is_empty());
        let n = configs.len();
        let mut by_addr = BTreeMap::new();
        let mut by_id = BTreeMap::new();
        for (i, c) in configs.iter().enumerate() {
            if by_id.insert(c.id, i as u32).is_some() {
                return Err(Error::DuplicateId(c.id));
            }
            if by_addr.insert(c.addr, i as u32).is_some() {
                return Err(Error::DuplicateAddr(c.addr));
            }
        }
        let mut net = Network::new(b.network, n);
        for (from, to, params) in b.links {
            let from = *by_id.get(&from).ok_or(Error::UnknownMember(from))?;
            let to = *by_id.get(&to).ok_or(Error::UnknownMember(to))?;
            net.overrides.insert((from, to), params);
        }
        for step in &b.plan.steps {
            if let Some(id) = named_in(&step.fault).into_iter().find(|id| !by_id.contains_key(id)) {
                return Err(Error::UnknownMember(id));
            }
        }
        let plan_json = b.plan.to_string();
        crate::seeded::note_plan(b.seed, &plan_json);
        let slots = configs
            .iter()
            .map(|config| Slot {
                node: None,
                timer_at: u64::MAX,
                deadline: NONE,
                busy_until: 0,
                slow: 0,
                last_fire: u64::MAX,
                id: config.id,
                life: 0,
                spins: 0,
                skewed: false,
            })
            .collect();
        let addrs = configs.iter().map(|config| config.addr).collect();
        let hosts = configs
            .into_iter()
            .map(|config| Host {
                clock: Clock::default(),
                incarnation: 0,
                election: None,
                restarts: 0,
                disk: config.durable.as_ref().map(Durable::encode),
                config,
            })
            .collect();
        let mut sim = Self {
            seed: b.seed,
            now: 0,
            queue: EventQueue::with_capacity(4 * n + 64),
            rng: SimRng::new(b.seed),
            slots,
            addrs,
            hosts,
            by_addr,
            by_id,
            seed_slots: (0..b.seeds.min(n) as u32).collect(),
            net,
            plan: b.plan,
            plan_json,
            mode: b.trace,
            hasher: TraceHasher::default(),
            records: Vec::new(),
            stats: SimStats::default(),
            checkers: Vec::new(),
            wakes: Vec::new(),
            incarnations: false,
            elects,
            opt_outs: b.opt_outs,
            findings: Vec::new(),
            violations: Vec::new(),
            replay: b.replay.unwrap_or_else(|| default_replay(b.seed)),
            outputs: Vec::with_capacity(64),
        };
        if b.default_checkers {
            let config = sim.hosts.first().map_or_else(Config::lan, |h| h.config.cluster.clone());
            let bound = b.convergence_bound.unwrap_or_else(|| SimBuilder::default_convergence_bound(&config, n));
            sim.add_checker(Box::new(OneLeaderPerTerm::default()));
            sim.add_checker(Box::new(LeaseExclusive::new(b.lease_max_drift_ppm)));
            sim.add_checker(Box::new(NoFalseVerdicts::for_cluster(b.false_verdict_budget, &config, n)));
            sim.add_checker(Box::new(Converges::new(bound)));
            sim.add_checker(Box::new(if elects {
                ElectsAfterHeal::new(ElectsAfterHeal::bound(&config.election))
            } else {
                ElectsAfterHeal::without_voters()
            }));
            sim.add_checker(Box::new(IncarnationsNeverReused::default()));
            sim.add_checker(Box::new(SuspicionWithinBounds::new(config.clone())));
            sim.add_checker(Box::new(RefutesClaims::new(bound)));
        }
        for i in 0..n {
            let durable = sim.hosts[i].config.durable.clone();
            sim.start(i as u32, durable, IncarnationChange::Started)?;
        }
        if b.bootstrap && n > 1 {
            let window = nanos(b.join_window.unwrap_or(Duration::from_millis(100 + n as u64))).max(1);
            for i in 1..n as u32 {
                let at = sim.rng.below(window);
                let life = sim.slots[i as usize].life;
                sim.push(at, What::Join { node: i, life });
            }
        }
        let mut order: Vec<(Instant, usize)> = sim.plan.steps.iter().enumerate().map(|(i, s)| (s.at, i)).collect();
        order.sort();
        for (at, index) in order {
            sim.push(at.as_nanos(), What::Fault { index: index as u32 });
        }
        Ok(sim)
    }

    /// Adds a checker; it sees the run from now on.
    pub fn add_checker(&mut self, mut checker: Box<dyn Checker>) {
        let info =
            RunInfo { seed: self.seed, plan: self.plan.clone(), members: self.slots.iter().map(|s| s.id).collect() };
        let index = self.checkers.len() as u32;
        for at in checker.start(&info) {
            if at.as_nanos() >= self.now {
                self.push(at.as_nanos(), What::Snapshot { checker: index });
            }
        }
        if checker.wants_incarnations() && !self.incarnations {
            self.incarnations = true;
            for i in 0..self.slots.len() {
                if let Some(node) = self.slots[i].node.as_deref() {
                    self.hosts[i].incarnation = node.incarnation();
                }
            }
        }
        self.checkers.push(checker);
        self.wakes.push(u64::MAX);
        self.rearm_checker(index as usize);
    }

    /// Queues a snapshot for checker `c` at its pending judgement, unless one is queued
    /// at or before it.
    fn rearm_checker(&mut self, c: usize) {
        if let Some(at) = self.checkers[c].pending() {
            let at = at.as_nanos().max(self.now);
            if at < self.wakes[c] {
                self.wakes[c] = at;
                self.push(at, What::Snapshot { checker: c as u32 });
            }
        }
    }

    /// Hands `observation` of a member's election state to every checker. The simulator
    /// reports every member's own after each of its inputs (when it changed) in runs with
    /// voters; a test may add its own.
    pub fn observe(&mut self, observation: &Observation) {
        let mut findings = std::mem::take(&mut self.findings);
        for c in 0..self.checkers.len() {
            self.checkers[c].observe(observation, &mut findings);
            self.report(c, &mut findings);
        }
        self.findings = findings;
    }

    /// The earliest judgement a checker still owes, if any.
    pub fn pending_judgement(&self) -> Option<Instant> {
        self.checkers.iter().filter_map(|c| c.pending()).min()
    }

    /// Runs until no checker owes a judgement (every deadline of the run is past and
    /// judged), or until `limit`; returns whether every judgement was made. The clock then
    /// reads the time of the last judgement, or `limit`.
    pub fn run_until_judged(&mut self, limit: Instant) -> bool {
        loop {
            let Some(due) = self.checkers.iter().filter_map(|c| c.pending()).max() else { return true };
            if due > limit {
                self.run_until(limit);
                return self.checkers.iter().all(|c| c.pending().is_none());
            }
            let before = self.now;
            self.run_until(due);
            if self.now == before && self.checkers.iter().filter_map(|c| c.pending()).max() == Some(due) {
                // A checker keeps owing a judgement at a time already reached: it never makes it.
                return false;
            }
        }
    }

    #[inline]
    fn push(&mut self, at: u64, what: What) {
        self.queue.push(at, what);
    }

    /// The global virtual time.
    pub fn now(&self) -> Instant {
        Instant::from_nanos(self.now)
    }

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The members' ids, in slot order.
    pub fn ids(&self) -> Vec<NodeId> {
        self.slots.iter().map(|s| s.id).collect()
    }

    /// The address of member `id`.
    pub fn addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.slot(id).map(|i| self.addrs[i as usize])
    }

    /// Member `id`'s node, if its process runs.
    pub fn node(&self, id: NodeId) -> Option<&Node> {
        self.slot(id).and_then(|i| self.slots[i as usize].node.as_deref())
    }

    /// Whether member `id`'s process runs.
    pub fn is_up(&self, id: NodeId) -> bool {
        self.node(id).is_some()
    }

    /// The durable bytes on member `id`'s disk.
    pub fn disk(&self, id: NodeId) -> Option<&[u8]> {
        self.slot(id).and_then(|i| self.hosts[i as usize].disk.as_deref())
    }

    /// Member `id`'s clock reading now (its `now`).
    pub fn local_now(&mut self, id: NodeId) -> Option<Instant> {
        let i = self.slot(id)? as usize;
        let now = self.now;
        Some(Instant::from_nanos(self.hosts[i].clock.local(now)))
    }

    /// Member `id`'s clock: its drift in parts per million, and whether it ever stepped
    /// (what an [`Observation`] of its lease needs).
    pub fn clock(&self, id: NodeId) -> Option<(f64, bool)> {
        let clock = &self.hosts[self.slot(id)? as usize].clock;
        Some((clock.drift_ppm(), clock.stepped))
    }

    /// Counters so far.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// The trace hash so far.
    pub fn trace_hash(&self) -> u64 {
        self.hasher.finish()
    }

    /// The records so far.
    ///
    /// # Panics
    ///
    /// If the run does not keep them all: build it with `.trace(TraceMode::Record)`.
    #[track_caller]
    pub fn records(&self) -> &[TraceRecord] {
        all_records(self.mode, &self.records)
    }

    /// Every event the members emitted so far: `(time, member, event)`, in order. (A
    /// [`Checker`] sees each as it happens.)
    ///
    /// # Panics
    ///
    /// If the run keeps no records (`TraceMode::HashOnly`).
    #[track_caller]
    pub fn events(&self) -> impl Iterator<Item = (Instant, NodeId, &Event)> + '_ {
        events_of(self.mode, &self.records)
    }

    /// The violations so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// The fault plan.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    fn slot(&self, id: NodeId) -> Option<u32> {
        self.by_id.get(&id).copied()
    }

    #[inline]
    fn slot_of_addr(&self, addr: SocketAddr) -> Option<u32> {
        // Built clusters encode the slot in the address; check it before the map.
        if let SocketAddr::V4(a) = addr {
            let [x, b, c, d] = a.ip().octets();
            if x == 127 && b >= 1 {
                let i = (u32::from(b - 1) << 16) | (u32::from(c) << 8) | u32::from(d);
                if self.addrs.get(i as usize) == Some(&addr) {
                    return Some(i);
                }
            }
        }
        self.by_addr.get(&addr).copied()
    }

    /// Runs until the queue is empty or the next event is after `until`; the clock then
    /// reads `until`.
    pub fn run_until(&mut self, until: Instant) {
        let until = until.as_nanos();
        while let Some((at, what)) = self.queue.pop_until(until) {
            self.process(at, what);
        }
        self.now = self.now.max(until);
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let until = self.now.saturating_add(nanos(duration));
        self.run_until(Instant::from_nanos(until));
    }

    /// Processes the next event; returns its time, or `None` if nothing is queued.
    pub fn step(&mut self) -> Option<Instant> {
        let (at, what) = self.queue.pop()?;
        self.process(at, what);
        Some(Instant::from_nanos(self.now))
    }

    fn process(&mut self, at: u64, what: What) {
        self.now = self.now.max(at);
        self.stats.steps += 1;
        match what {
            What::Arrive { to, from, payload, sent } => self.arrive(to, from, payload, sent),
            What::Handle { to, from, payload, sent, life } => {
                if self.slots[to as usize].node.is_some() && self.slots[to as usize].life == life {
                    self.deliver(to, from, payload, sent);
                } else {
                    self.dropped(from, Some(to), &payload, DropReason::Down);
                }
            }
            What::Timer { node, life } => self.timer(node, life, at),
            What::Fault { index } => {
                let fault = self.plan.steps[index as usize].fault.clone();
                self.apply(fault);
            }
            What::Join { node, life } => {
                if self.slots[node as usize].life == life && self.slots[node as usize].node.is_some() {
                    let seeds = self.seeds_for(node);
                    self.interact(node, |n, now| {
                        // Joining only queues datagrams: it has nothing to refuse.
                        let _ = n.handle_command(now, Command::Join(seeds));
                    });
                }
            }
            What::Snapshot { checker } => {
                let c = checker as usize;
                if self.wakes[c] <= at {
                    self.wakes[c] = u64::MAX;
                }
                let snapshot = self.snapshot();
                let mut findings = std::mem::take(&mut self.findings);
                self.checkers[c].snapshot(&snapshot, &mut findings);
                self.report(c, &mut findings);
                self.findings = findings;
            }
        }
    }

    fn seeds_for(&self, node: u32) -> Vec<SocketAddr> {
        self.seed_slots.iter().filter(|&&s| s != node).map(|&s| self.addrs[s as usize]).collect()
    }

    /// Gives member `id` an application command now (a test's workload).
    pub fn command(&mut self, id: NodeId, command: Command) -> Result<(), Error> {
        let i = self.slot(id).ok_or(Error::UnknownMember(id))?;
        if self.slots[i as usize].node.is_none() {
            return Err(Error::NotRunning(id));
        }
        let mut result = Ok(());
        self.interact(i, |n, now| result = n.handle_command(now, command));
        result.map_err(Error::Core)
    }

    /// Ends the run: final checks on a snapshot of every view, and the report.
    pub fn finish(mut self) -> Report {
        let snapshot = self.snapshot();
        let mut findings = std::mem::take(&mut self.findings);
        for c in 0..self.checkers.len() {
            self.checkers[c].finish(&snapshot, &mut findings);
            self.report(c, &mut findings);
        }
        let mut checks: Vec<Outcome> = self
            .checkers
            .iter()
            .map(|c| {
                let name = c.name();
                let violated = self.violations.iter().filter(|v| v.checker == name).count();
                let status = match c.not_judged() {
                    _ if violated > 0 => Status::Violated(violated),
                    Some(why) => Status::NotJudged(why),
                    None => Status::Held,
                };
                Outcome { checker: name, status, opted_out: self.opt_outs.contains(&name) }
            })
            .collect();
        // The engine's own checks: no member panicked, restarted or spun.
        for name in ["no-panic", "restart", "no-timer-livelock"] {
            let violated = self.violations.iter().filter(|v| v.checker == name).count();
            let status = if violated > 0 { Status::Violated(violated) } else { Status::Held };
            checks.push(Outcome { checker: name, status, opted_out: false });
        }
        Report {
            seed: self.seed,
            end: Instant::from_nanos(self.now),
            trace_hash: self.hasher.finish(),
            stats: self.stats,
            violations: self.violations,
            checks,
            opt_outs: self.opt_outs,
            plan: self.plan_json,
            replay: self.replay,
            mode: self.mode,
            records: self.records,
        }
    }

    /// Every member's view now.
    pub fn snapshot(&self) -> ClusterSnapshot {
        ClusterSnapshot {
            at: Instant::from_nanos(self.now),
            nodes: self
                .slots
                .iter()
                .map(|s| NodeSnapshot {
                    id: s.id,
                    up: s.node.is_some(),
                    view: s.node.as_ref().map(|n| n.members().map(|m| (m.id, m.state)).collect()).unwrap_or_default(),
                    term: s.node.as_ref().map_or(0, |n| n.term()),
                    leader: s.node.as_ref().and_then(|n| n.leader()),
                })
                .collect(),
        }
    }

    /// Turns what checker `checker` just found into violations, and queues the snapshot
    /// its next pending judgement needs.
    fn report(&mut self, checker: usize, findings: &mut Vec<Finding>) {
        let name = self.checkers[checker].name();
        for f in findings.drain(..) {
            self.violation(name, f);
        }
        self.rearm_checker(checker);
    }

    fn violation(&mut self, checker: &'static str, finding: Finding) {
        self.violations.push(Violation {
            checker,
            seed: self.seed,
            at: finding.at,
            message: finding.message,
            plan: self.plan_json.clone(),
            replay: self.replay.clone(),
        });
    }

    // --- The network -------------------------------------------------------------------

    fn kind_of(&self, slot: u32, payload: &[u8]) -> Option<MessageKind> {
        let c = &self.hosts[slot as usize].config.cluster;
        wire::inspect(payload, c.cluster_id, c.max_datagram).ok().map(|(_, kind)| kind)
    }

    fn dropped(&mut self, from: u32, to: Option<u32>, payload: &[u8], reason: DropReason) {
        match reason {
            DropReason::Partition => self.stats.dropped_partition += 1,
            DropReason::Loss => self.stats.dropped_loss += 1,
            DropReason::Down => self.stats.dropped_down += 1,
            DropReason::NoRoute => self.stats.dropped_no_route += 1,
        }
        let h = &mut self.hasher;
        h.lane(tag::DROPPED);
        h.lane(self.now);
        h.lane(self.slots[from as usize].id.0);
        h.lane(to.map_or(u64::MAX, |t| self.slots[t as usize].id.0));
        h.lane(reason as u64);
        h.lane(fingerprint(payload));
        if self.mode == TraceMode::Record {
            let record = TraceRecord::Dropped {
                at: Instant::from_nanos(self.now),
                from: self.slots[from as usize].id,
                to: to.map(|t| self.slots[t as usize].id),
                kind: self.kind_of(from, payload),
                reason,
            };
            self.records.push(record);
        }
    }

    /// Puts a member's datagram on the network.
    fn send(&mut self, from: u32, transmit: Transmit) {
        let Transmit { to, mut payload } = transmit;
        let Some(to) = self.slot_of_addr(to) else {
            self.dropped(from, None, &payload, DropReason::NoRoute);
            return;
        };
        if self.net.is_cut(from, to) {
            self.dropped(from, Some(to), &payload, DropReason::Partition);
            return;
        }
        let params = self.net.params(from, to).clone();
        if self.rng.chance(params.loss) {
            self.dropped(from, Some(to), &payload, DropReason::Loss);
            return;
        }
        let mut delay = sample_latency(&params.latency, &mut self.rng);
        if self.rng.chance(params.reorder) {
            delay += self.rng.below(nanos(params.reorder_delay) + 1);
        }
        if self.rng.chance(params.corrupt) {
            corrupt(&mut payload, &mut self.rng);
            self.stats.corrupted += 1;
        }
        if self.rng.chance(params.duplicate) {
            let again = sample_latency(&params.latency, &mut self.rng);
            self.stats.duplicated += 1;
            let copy = payload.clone();
            self.push(self.now + again, What::Arrive { to, from, payload: copy, sent: self.now });
        }
        if self.rng.chance(params.stale) {
            let later = self.rng.below(nanos(params.stale_delay) + 1);
            self.stats.stale += 1;
            let copy = payload.clone();
            self.push(self.now + delay + later, What::Arrive { to, from, payload: copy, sent: self.now });
        }
        self.push(self.now + delay, What::Arrive { to, from, payload, sent: self.now });
    }

    fn arrive(&mut self, to: u32, from: u32, payload: Vec<u8>, sent: u64) {
        let now = self.now;
        let slot = &mut self.slots[to as usize];
        if slot.node.is_none() {
            self.dropped(from, Some(to), &payload, DropReason::Down);
            return;
        }
        if slot.slow > 0 || now < slot.busy_until {
            let done = now.max(slot.busy_until) + slot.slow;
            slot.busy_until = done;
            let life = slot.life;
            self.push(done, What::Handle { to, from, payload, sent, life });
            return;
        }
        self.deliver(to, from, payload, sent);
    }

    fn deliver(&mut self, to: u32, from: u32, payload: Vec<u8>, sent: u64) {
        let from_addr = self.addrs[from as usize];
        let mut result = Ok(());
        self.interact(to, |n, now| result = n.handle_datagram(now, from_addr, &payload));
        self.stats.delivered += 1;
        let h = &mut self.hasher;
        h.lane(if result.is_ok() { tag::DELIVERED } else { tag::REJECTED });
        h.lane(self.now);
        h.lane(sent);
        h.lane(self.slots[from as usize].id.0);
        h.lane(self.slots[to as usize].id.0);
        h.lane(payload.len() as u64);
        h.lane(fingerprint(&payload));
        if result.is_err() {
            self.stats.rejected += 1;
        }
        if self.mode == TraceMode::Record {
            let record = TraceRecord::Delivered {
                at: Instant::from_nanos(self.now),
                sent: Instant::from_nanos(sent),
                from: self.slots[from as usize].id,
                to: self.slots[to as usize].id,
                kind: self.kind_of(to, &payload),
                len: payload.len(),
                rejected: result.err().map(|e| e.to_string()),
            };
            self.records.push(record);
        }
    }

    // --- Members -----------------------------------------------------------------------

    fn timer(&mut self, i: u32, life: u32, at: u64) {
        let now = self.now;
        let slot = &mut self.slots[i as usize];
        if slot.life != life || slot.node.is_none() || slot.timer_at != at {
            return; // a stale wake-up: a newer one replaced it
        }
        slot.timer_at = u64::MAX;
        if now < slot.busy_until {
            let busy = slot.busy_until;
            slot.timer_at = busy;
            self.push(busy, What::Timer { node: i, life });
            return;
        }
        let local = if slot.skewed { self.hosts[i as usize].clock.local(now) } else { now };
        if slot.deadline <= local {
            if slot.last_fire == now {
                slot.spins = slot.spins.saturating_add(1);
            } else {
                slot.spins = 0;
                slot.last_fire = now;
            }
            if slot.spins == 10_000 {
                let id = slot.id;
                self.violation(
                    "no-timer-livelock",
                    Finding {
                        at: Instant::from_nanos(now),
                        message: format!("{id}'s poll_timeout stays at or before its now after handle_timeout: the engine would spin forever; its timers now wait 1 ms"),
                    },
                );
            }
            self.stats.timers += 1;
            self.interact(i, |n, now| n.handle_timeout(now));
        } else {
            self.arm(i);
        }
    }

    /// Queues a wake-up for the member's latest deadline if it is earlier than the one queued.
    fn arm(&mut self, i: u32) {
        let now = self.now;
        let slot = &mut self.slots[i as usize];
        if slot.deadline == NONE {
            return;
        }
        let deadline = slot.deadline;
        let mut at = if slot.skewed { self.hosts[i as usize].clock.global_at(deadline) } else { deadline }.max(now);
        if slot.spins >= 10_000 && slot.last_fire == now {
            at = now + 1_000_000;
        }
        if at < slot.timer_at {
            slot.timer_at = at;
            let life = slot.life;
            self.push(at, What::Timer { node: i, life });
        }
    }

    /// Calls into member `i`'s node at its local `now`, then acts on everything it output,
    /// re-arms its timer and observes its election state. A panic is a violation and stops
    /// the member's process.
    fn interact(&mut self, i: u32, f: impl FnOnce(&mut Node, Instant)) {
        let now = self.now;
        #[cfg(feature = "tracing")]
        let _virtual_time = tracing::info_span!("sim", t = %Instant::from_nanos(now)).entered();
        let slot = &mut self.slots[i as usize];
        let Some(mut node) = slot.node.take() else { return };
        let local = Instant::from_nanos(if slot.skewed { self.hosts[i as usize].clock.local(now) } else { now });
        let mut outputs = std::mem::take(&mut self.outputs);
        let result = catch_unwind(AssertUnwindSafe(|| {
            f(&mut node, local);
            while let Some(output) = node.poll_output() {
                outputs.push(output);
            }
            node.poll_timeout()
        }));
        match result {
            Ok(deadline) => {
                let incarnation = node.incarnation();
                let slot = &mut self.slots[i as usize];
                slot.node = Some(node);
                slot.deadline = deadline.map_or(NONE, Instant::as_nanos);
                // Before the outputs: what a member sends advertises its incarnation.
                if self.incarnations && incarnation != self.hosts[i as usize].incarnation {
                    self.hosts[i as usize].incarnation = incarnation;
                    self.tell_incarnation(i, incarnation, IncarnationChange::Bumped);
                }
                for output in outputs.drain(..) {
                    self.output(i, output);
                }
                self.outputs = outputs;
                if self.elects {
                    self.observe_election(i);
                }
                self.arm(i);
            }
            Err(panic) => {
                outputs.clear();
                self.outputs = outputs;
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic payload".to_string());
                let id = self.slots[i as usize].id;
                self.hasher.lane(tag::PANICKED);
                self.hasher.lane(now);
                self.hasher.lane(id.0);
                if self.mode == TraceMode::Record {
                    self.records.push(TraceRecord::Panicked { at: self.now(), node: id, message: message.clone() });
                }
                self.violation(
                    "no-panic",
                    Finding { at: self.now(), message: format!("{id} panicked: {message}; its process was stopped") },
                );
                self.stop(i);
            }
        }
    }

    /// Reports member `i`'s election state to the checkers if it changed. A member that
    /// claims the lease makes every other member that last claimed it be read again first
    /// (a lease ends with time, not with an input), so the checker compares the present.
    fn observe_election(&mut self, i: u32) {
        let Some(state) = self.read_election(i) else { return };
        if self.hosts[i as usize].election == Some(state) {
            return;
        }
        if state.2 {
            for j in 0..self.slots.len() as u32 {
                if j != i && self.hosts[j as usize].election.is_some_and(|e| e.2) {
                    // Reported even when unchanged: its clock may have stepped meanwhile.
                    if let Some(other) = self.read_election(j) {
                        self.report_election(j, other);
                    }
                }
            }
        }
        self.report_election(i, state);
    }

    /// Member `i`'s term, leader and whether it holds the lease at its own now.
    fn read_election(&mut self, i: u32) -> Option<(u64, Option<NodeId>, bool)> {
        let now = self.now;
        let local = if self.slots[i as usize].skewed { self.hosts[i as usize].clock.local(now) } else { now };
        let node = self.slots[i as usize].node.as_deref()?;
        Some((node.term(), node.leader(), node.is_leaseholder(Instant::from_nanos(local))))
    }

    fn report_election(&mut self, i: u32, (term, leader, leaseholder): (u64, Option<NodeId>, bool)) {
        self.hosts[i as usize].election = Some((term, leader, leaseholder));
        let clock = &self.hosts[i as usize].clock;
        let observation = Observation {
            at: self.now(),
            node: self.slots[i as usize].id,
            term,
            leader,
            leaseholder,
            drift_ppm: clock.drift_ppm(),
            clock_stepped: clock.stepped,
        };
        self.observe(&observation);
    }

    fn output(&mut self, i: u32, output: Output) {
        match output {
            Output::Transmit(t) => self.send(i, t),
            Output::Event(event) => {
                self.stats.events += 1;
                let id = self.slots[i as usize].id;
                self.hasher.lane(tag::EVENT);
                self.hasher.lane(self.now);
                self.hasher.lane(id.0);
                hash_event(&mut self.hasher, &event);
                let mut findings = std::mem::take(&mut self.findings);
                let at = self.now();
                for c in 0..self.checkers.len() {
                    self.checkers[c].event(at, id, &event, &mut findings);
                    self.report(c, &mut findings);
                }
                self.findings = findings;
                if self.mode != TraceMode::HashOnly {
                    self.records.push(TraceRecord::Event { at: self.now(), node: id, event });
                }
            }
            Output::Persist(durable) => {
                let bytes = durable.encode();
                let id = self.slots[i as usize].id;
                self.hasher.lane(tag::PERSIST);
                self.hasher.lane(self.now);
                self.hasher.lane(id.0);
                self.hasher.bytes(&bytes);
                self.hosts[i as usize].disk = Some(bytes);
                if self.mode == TraceMode::Record {
                    self.records.push(TraceRecord::Persist { at: self.now(), node: id, durable });
                }
            }
        }
    }

    fn tell_incarnation(&mut self, i: u32, incarnation: u64, change: IncarnationChange) {
        let id = self.slots[i as usize].id;
        let at = self.now();
        let mut findings = std::mem::take(&mut self.findings);
        for c in 0..self.checkers.len() {
            if self.checkers[c].wants_incarnations() {
                self.checkers[c].incarnation(at, id, incarnation, change, &mut findings);
                self.report(c, &mut findings);
            }
        }
        self.findings = findings;
    }

    /// Starts member `i`'s process with `durable` on its disk.
    fn start(&mut self, i: u32, durable: Option<Durable>, change: IncarnationChange) -> Result<(), Error> {
        let now = self.now;
        let host = &mut self.hosts[i as usize];
        let slot = &mut self.slots[i as usize];
        let mut config = host.config.clone();
        config.durable = durable.clone();
        if host.restarts > 0 {
            config.seed = node_seed(config.seed, slot.id, host.restarts);
        }
        slot.life += 1;
        slot.timer_at = u64::MAX;
        slot.deadline = NONE;
        slot.busy_until = 0;
        slot.spins = 0;
        let local = Instant::from_nanos(host.clock.local(now));
        let id = slot.id;
        let node = Node::new(config, local).map_err(|e| Error::Start(id, e))?;
        let incarnation = node.incarnation();
        slot.node = Some(Box::new(node));
        self.hasher.lane(tag::STARTED);
        self.hasher.lane(now);
        self.hasher.lane(id.0);
        self.hasher.bytes(&durable.as_ref().map(Durable::encode).unwrap_or_default());
        if self.mode == TraceMode::Record {
            self.records.push(TraceRecord::Started { at: self.now(), node: id, durable });
        }
        if self.incarnations {
            self.hosts[i as usize].incarnation = incarnation;
            self.tell_incarnation(i, incarnation, change);
        }
        self.interact(i, |_, _| ());
        Ok(())
    }

    /// Stops member `i`'s process: its node, timers and input backlog are gone.
    fn stop(&mut self, i: u32) {
        self.hosts[i as usize].election = None;
        let slot = &mut self.slots[i as usize];
        slot.node = None;
        slot.life += 1;
        slot.timer_at = u64::MAX;
        slot.deadline = NONE;
        slot.busy_until = 0;
    }

    // --- Faults ------------------------------------------------------------------------

    fn ids_to_slots(&self, ids: &[NodeId]) -> Vec<u32> {
        ids.iter().filter_map(|&id| self.slot(id)).collect()
    }

    /// Applies `fault` now (the plan's steps go through here too).
    pub fn apply(&mut self, fault: Fault) {
        self.stats.faults += 1;
        self.hasher.lane(tag::FAULT);
        self.hasher.lane(self.now);
        self.hasher.bytes(serde_json::to_string(&fault).unwrap_or_default().as_bytes());
        let mut findings = std::mem::take(&mut self.findings);
        let at = self.now();
        for c in 0..self.checkers.len() {
            self.checkers[c].fault(at, &fault, &mut findings);
            self.report(c, &mut findings);
        }
        self.findings = findings;
        let now = self.now;
        match &fault {
            Fault::Crash(id) => {
                if let Some(i) = self.slot(*id) {
                    self.stop(i);
                }
            }
            Fault::Restart { node, disk } => {
                if let Some(i) = self.slot(*node) {
                    self.stop(i);
                    let host = &mut self.hosts[i as usize];
                    host.restarts += 1;
                    if *disk == Disk::Amnesia {
                        host.disk = None;
                    }
                    let durable = host.disk.as_deref().and_then(|b| Durable::decode(b).ok());
                    match self.start(i, durable, IncarnationChange::Restarted(*disk)) {
                        Ok(()) => {
                            let seeds = self.seeds_for(i);
                            self.interact(i, |n, now| {
                                // Joining only queues datagrams: it has nothing to refuse.
                                let _ = n.handle_command(now, Command::Join(seeds));
                            });
                        }
                        Err(e) => self.violation(
                            "restart",
                            Finding { at: self.now(), message: format!("{node} could not restart: {e}") },
                        ),
                    }
                }
            }
            Fault::Pause { node, duration } => {
                if let Some(i) = self.slot(*node) {
                    let slot = &mut self.slots[i as usize];
                    slot.busy_until = slot.busy_until.max(now + nanos(*duration));
                }
            }
            Fault::Slow { node, per_message } => {
                if let Some(i) = self.slot(*node) {
                    self.slots[i as usize].slow = nanos(*per_message);
                }
            }
            Fault::Partition(groups) => {
                // Unlisted members share group 0; listed groups are 1, 2, ...
                self.net.group.iter_mut().for_each(|g| *g = 0);
                for (g, members) in groups.iter().enumerate() {
                    for i in self.ids_to_slots(members) {
                        self.net.group[i as usize] = g as u32 + 1;
                    }
                }
                self.net.partitioned = true;
            }
            Fault::OneWay { from, to } => {
                let (from, to) = (self.ids_to_slots(from), self.ids_to_slots(to));
                for &a in &from {
                    for &b in &to {
                        self.net.cut.insert((a, b));
                    }
                }
            }
            Fault::CutLinks(links) => {
                for &(a, b) in links {
                    if let (Some(a), Some(b)) = (self.slot(a), self.slot(b)) {
                        self.net.cut.insert((a, b));
                        self.net.cut.insert((b, a));
                    }
                }
            }
            Fault::Heal => self.net.heal(),
            Fault::SetLinks { links, params } => self.set_links(links, params),
            Fault::ClockOffset { node, offset_nanos } => self.change_clock(*node, |c| c.set_offset(*offset_nanos)),
            Fault::ClockDrift { node, ppm } => self.change_clock(*node, |c| c.set_drift(now, *ppm)),
            Fault::ClockJump { node, nanos } => self.change_clock(*node, |c| c.jump(*nanos)),
        }
        if self.mode == TraceMode::Record {
            self.records.push(TraceRecord::Fault { at: self.now(), fault });
        }
    }

    fn set_links(&mut self, links: &LinkSelector, params: &LinkParams) {
        let n = self.slots.len() as u32;
        let set = |pairs: &mut dyn Iterator<Item = (u32, u32)>, net: &mut Network| {
            for pair in pairs {
                net.overrides.insert(pair, params.clone());
            }
        };
        match *links {
            LinkSelector::All => {
                self.net.default = params.clone();
                self.net.overrides.clear();
            }
            LinkSelector::Between(a, b) => {
                if let (Some(a), Some(b)) = (self.slot(a), self.slot(b)) {
                    set(&mut [(a, b), (b, a)].into_iter(), &mut self.net);
                }
            }
            LinkSelector::OneWay { from, to } => {
                if let (Some(a), Some(b)) = (self.slot(from), self.slot(to)) {
                    set(&mut std::iter::once((a, b)), &mut self.net);
                }
            }
            LinkSelector::From(a) => {
                if let Some(a) = self.slot(a) {
                    set(&mut (0..n).filter(|&b| b != a).map(|b| (a, b)), &mut self.net);
                }
            }
            LinkSelector::To(b) => {
                if let Some(b) = self.slot(b) {
                    set(&mut (0..n).filter(|&a| a != b).map(|a| (a, b)), &mut self.net);
                }
            }
        }
    }

    fn change_clock(&mut self, id: NodeId, change: impl FnOnce(&mut Clock)) {
        let Some(i) = self.slot(id) else { return };
        let now = self.now;
        let clock = &mut self.hosts[i as usize].clock;
        // While the clock was not skewed its readings were not taken: catch up with the
        // latest one handed out (now), which the changed clock must not go back past.
        clock.local(now);
        change(clock);
        let slot = &mut self.slots[i as usize];
        slot.skewed = true;
        // The queued wake-up was computed with the old clock: recompute it.
        slot.timer_at = u64::MAX;
        if slot.node.is_some() {
            self.arm(i);
        }
    }
}

/// Flips 1 to 3 bits after the magic and version bytes.
fn corrupt(payload: &mut [u8], rng: &mut SimRng) {
    if payload.is_empty() {
        return;
    }
    let start = if payload.len() > 5 { 5 } else { 0 };
    let bits = ((payload.len() - start) * 8) as u64;
    let flips = 1 + rng.below(3);
    let mut done = Vec::with_capacity(3);
    for _ in 0..flips {
        let bit = rng.below(bits);
        // Flipping the same bit twice would undo the damage.
        if done.contains(&bit) {
            continue;
        }
        done.push(bit);
        payload[start + (bit / 8) as usize] ^= 1 << (bit % 8);
    }
}

fn named_in(fault: &Fault) -> Vec<NodeId> {
    match fault {
        Fault::Partition(groups) => groups.iter().flatten().copied().collect(),
        Fault::SetLinks { links: LinkSelector::All, .. } => Vec::new(),
        other => match other.touched() {
            crate::fault::Touched::Members(m) => m,
            crate::fault::Touched::All => Vec::new(),
        },
    }
}
