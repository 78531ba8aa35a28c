//! [`SimBuilder`]: the settings of a run, and the simulation it builds at time zero.

use std::collections::BTreeMap;
use std::time::Duration;

use conclave_core::{Config, Durable, Instant, NodeConfig, NodeId};

use super::host::{node_seed, sim_addr, sim_id, Host, Slot, NONE};
use super::{Report, Sim, SimStats, What};
use crate::check::{
    AttemptsWithinBudget, BytesWithinBound, CallsEnd, Converges, DetectedWithinBound, ElectsAfterHeal,
    IncarnationChange, IncarnationsNeverReused, LeaderHearsMajority, LeaseExclusive, LeaseWithinPromises,
    MinorityReadOnly, NoDuplicateExecution, NoFalseVerdicts, OneLeaderPerTerm, PreVoteSticky, RefutesClaims,
    SuspicionWithinBounds, VotePersistedFirst, WHEN_PROVOKED,
};
use crate::clock::Clock;
use crate::error::Error;
use crate::fault::{Fault, FaultPlan};
use crate::network::{nanos, LinkParams, LinkSelector, Network, SimRng};
use crate::queue::EventQueue;
use crate::trace::{TraceHasher, TraceMode};
use crate::workload::Workload;

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
    workload: Option<Workload>,
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
            workload: None,
        }
    }

    /// Makes the first `count` members (in slot order) the cluster's voters, on top of
    /// whatever config is set: they elect a leader, and the leader checkers judge it.
    pub fn voters(mut self, count: usize) -> Self {
        self.voters = Some(count);
        self
    }

    /// A service workload: clients calling workers through the resilience policies (see
    /// [`crate::workload`]). With the standard checkers on, the workload's checkers run
    /// too ([`CallsEnd`], [`NoDuplicateExecution`], [`AttemptsWithinBudget`]).
    pub fn workload(mut self, workload: Workload) -> Self {
        self.workload = Some(workload);
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
    /// bounds, claims about live members refuted within the convergence bound, every crash
    /// detected within its bound, bytes per member-second within their bound, the
    /// stopping side of a partition read-only, a leader in contact with a majority, no
    /// pre-vote granted while a leader is heard, no vote or candidacy on the wire before
    /// its durable write. The two of
    /// [`WHEN_PROVOKED`](crate::check::WHEN_PROVOKED) judge only what a run provokes, and
    /// are opted out of: a violation still fails the run, and the report says whether each
    /// judged.
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
        let (a_records, b_records) = (a.records(), b.records());
        let first = a_records.iter().zip(b_records).position(|(x, y)| x != y);
        let first_difference = match first {
            Some(i) => Some(format!("record {i}: {} vs {}", a_records[i], b_records[i])),
            None => Some(format!("{} records vs {}", a_records.len(), b_records.len())),
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
        if let Some(workload) = &b.workload {
            workload.validate(&configs.iter().map(|c| c.id).collect::<Vec<_>>())?;
            workload.tag_workers(&mut configs);
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
        let plan_text = b.plan.to_string();
        crate::seeded::note_plan(b.seed, &plan_text);
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
                crash_at_persist: false,
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
            plan_text,
            mode: b.trace,
            hasher: TraceHasher::default(),
            records: Vec::new(),
            stats: SimStats::default(),
            checkers: Vec::new(),
            wakes: Vec::new(),
            incarnations: false,
            datagrams: false,
            elects,
            opt_outs: b.opt_outs,
            findings: Vec::new(),
            violations: Vec::new(),
            replay: b.replay.unwrap_or_else(|| default_replay(b.seed)),
            outputs: Vec::with_capacity(64),
            workload: None,
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
            sim.add_checker(Box::new(DetectedWithinBound::for_cluster(&config, n)));
            sim.add_checker(Box::new(BytesWithinBound::new(BytesWithinBound::bound(&config, n))));
            sim.add_checker(Box::new(MinorityReadOnly::new(MinorityReadOnly::bound(&config))));
            sim.add_checker(Box::new(LeaderHearsMajority::new(&config.election)));
            sim.add_checker(Box::new(PreVoteSticky::new(&config.election)));
            sim.add_checker(Box::new(LeaseWithinPromises::new(&config.election)));
            sim.add_checker(Box::new(VotePersistedFirst::default()));
            // Whether a run provokes them is the run's own doing (a crash restarted before
            // its deadline, a cut too short to decide): opted out of, the report still
            // says whether each judged.
            for name in WHEN_PROVOKED {
                if !sim.opt_outs.contains(name) {
                    sim.opt_outs.push(name);
                }
            }
            if let Some(workload) = &b.workload {
                sim.add_checker(Box::new(CallsEnd::new()));
                sim.add_checker(Box::new(NoDuplicateExecution::new(workload.policy.idempotency.clone())));
                sim.add_checker(Box::new(AttemptsWithinBudget::for_policy(&workload.policy)));
            }
        }
        if let Some(workload) = b.workload {
            sim.workload = Some(Box::new(super::workload::Driver::new(workload, &sim.ids())));
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
