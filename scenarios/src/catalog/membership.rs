//! Scenarios of membership: crashes, slow members, lossy and flapping links, clocks,
//! restarts, churn, a large cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use conclave_core::{Config, Instant, NodeId};
use conclave_sim::check::max_suspicion_timeout;
use conclave_sim::{sim_id, Checker, Disk, Fault, FaultPlan, LinkParams, LinkSelector};

use super::bounds::{DetectsCrashes, FormsWithin, NoFailureVerdicts, OneSideRuns, RejoinsWithin, SlowNotFailed};
use super::{draws, millis_between, some_members, Members, Preset, Scenario, Setup};

/// Within this of a crash, every other member has declared it failed: the longest
/// suspicion timeout at this size (no confirmation shortening it) plus four probe periods
/// to notice the silence, probe indirectly and spread the verdict. 7.5 s at 10 lan members
/// (`bench membership` measures a p99 of 2.7 s at 5 members, 3.1 s at 100).
pub(crate) fn detection_bound(config: &Config, n: usize) -> Duration {
    max_suspicion_timeout(config, n) + config.probe_period() * 4
}

/// Within this of its restart, a member and the others hold each other alive again: a
/// join retried at its longest backoff (its seeds may be restarting too), then a
/// suspicion and four probe periods to refute what the others remember of its old life.
pub(crate) fn rejoin_bound(config: &Config, n: usize) -> Duration {
    config.join_retry_max + max_suspicion_timeout(config, n) + config.probe_period() * 4
}

/// A crashed member is declared failed by every other.
pub(crate) const CRASH_DETECTION: Scenario = Scenario {
    name: "crash-detection",
    summary: "one member crashes and stays down: every other declares it failed within the bound",
    doc: "Ten members (five vote) form a cluster; between 10 and 11 s one of them, drawn from the \
          seed, crashes and never comes back. Every member that keeps running must declare it failed \
          within the detection bound: the longest Lifeguard suspicion at this size plus four probe \
          periods (7.5 s at ten lan members; `bench membership` measures a p99 of 2.7 s at five). \
          The standard checkers watch that no other member is declared failed, that views converge \
          and that a leader is elected after it (the crashed member may have led).",
    members: Members::Fixed(10),
    min_members: 3,
    preset: Preset::Lan,
    voters: 5,
    default_seeds: 4,
    plan: crash_detection_plan,
    bounds: |s| vec![Box::new(DetectsCrashes::new(detection_bound(&s.config, s.members)))],
    service: None,
};

fn crash_detection_plan(seed: u64, n: usize) -> FaultPlan {
    let mut rng = draws(seed, "crash-detection");
    let victim = some_members(&mut rng, n, 1)[0];
    let at = Instant::from_secs(10) + millis_between(&mut rng, 0, 999);
    FaultPlan::new().at(at, Fault::Crash(victim))
}

/// A slow member falls behind but is never declared failed.
pub(crate) const SLOW_MEMBER: Scenario = Scenario {
    name: "slow-member",
    summary: "a member takes 20 ms per datagram for a minute: it is never declared failed",
    doc: "Six members (five vote); from 5 s to 65 s one member, drawn from the seed, takes 20 ms \
          to handle each datagram, one after another, and its timers wait behind the backlog (a \
          process starved of CPU). It falls behind but keeps answering, so nobody may declare it \
          failed: the standard checker of false verdicts excuses verdicts about a slow member, \
          this scenario's own bound does not. Lifeguard's local health (the slow member stretches \
          its own timeouts) and the buddy system (it hears every suspicion of it and refutes) are \
          what keep it in.",
    members: Members::Fixed(6),
    min_members: 3,
    preset: Preset::Lan,
    voters: 5,
    default_seeds: 4,
    plan: |seed, n| {
        let mut rng = draws(seed, "slow-member");
        let node = some_members(&mut rng, n, 1)[0];
        FaultPlan::new()
            .at(Instant::from_secs(5), Fault::Slow { node, per_message: Duration::from_millis(20) })
            .at(Instant::from_secs(65), Fault::Slow { node, per_message: Duration::ZERO })
    },
    bounds: |_| vec![Box::new(SlowNotFailed::default())],
    service: None,
};

/// One link flaps: SWIM's indirect probes route around it.
pub(crate) const FLAPPING_LINK: Scenario = Scenario {
    name: "flapping-link",
    summary: "the link between two members goes down and up for a minute: nobody is declared failed",
    doc: "Six members (five vote). From 5 s to about 65 s the link between two members, drawn from \
          the seed, is cut for 0.5 to 4 s at a time and restored for 1 to 6 s, again and again. \
          Each of the two still reaches everyone else, so SWIM's indirect probes (other members ping \
          the peer on the prober's behalf) must keep both alive: no member may be declared failed \
          at all, and no side may ever decide it keeps running without the other.",
    members: Members::Fixed(6),
    min_members: 3,
    preset: Preset::Lan,
    voters: 5,
    default_seeds: 4,
    plan: |seed, n| {
        let mut rng = draws(seed, "flapping-link");
        let pair = some_members(&mut rng, n, 2);
        let mut plan = FaultPlan::new();
        let mut at = Instant::from_secs(5);
        while at < Instant::from_secs(65) {
            plan.push(at, Fault::CutLinks(vec![(pair[0], pair[1])]));
            at += millis_between(&mut rng, 500, 4_000);
            plan.push(at, Fault::Heal);
            at += millis_between(&mut rng, 1_000, 6_000);
        }
        plan
    },
    bounds: |_| vec![Box::new(NoFailureVerdicts::default()), Box::new(OneSideRuns::default())],
    service: None,
};

/// Heavy uniform loss for ten minutes.
pub(crate) const HEAVY_PACKET_LOSS: Scenario = Scenario {
    name: "heavy-packet-loss",
    summary: "20 % of all datagrams lost for ten minutes: nobody is declared failed",
    doc: "Ten members (five vote); from 5 s to 605 s every link loses 20 % of its datagrams, then \
          the links are whole again. Lost probes are retried through other members and suspicions \
          are refuted in time, so no member may be declared failed at all (foca, driven the same \
          way, declares 27 false downs per member-hour at 20 % loss: `bench compare`). The leader \
          may change under the loss; one per term and exclusive leases must still hold, and after \
          the loss the views converge and a leader is elected within their bounds.",
    members: Members::Fixed(10),
    min_members: 3,
    preset: Preset::Lan,
    voters: 5,
    default_seeds: 2,
    plan: |_, _| {
        let lossy = LinkParams::default().with_loss(0.2);
        FaultPlan::new()
            .at(Instant::from_secs(5), Fault::SetLinks { links: LinkSelector::All, params: lossy })
            .at(Instant::from_secs(605), Fault::SetLinks { links: LinkSelector::All, params: LinkParams::default() })
    },
    bounds: |_| vec![Box::new(NoFailureVerdicts::default())],
    service: None,
};

/// Clocks that drift, sit an hour off and step.
pub(crate) const CLOCK_SKEW: Scenario = Scenario {
    name: "clock-skew",
    summary: "clocks drift by ±500 ppm, one sits an hour ahead, two step by 2 s: nobody is declared failed",
    doc: "Six members (five vote); five of them, drawn from the seed, get their clocks changed: at \
          1 s one runs 500 ppm fast and one 500 ppm slow (the drift the lease is built for), one \
          is set an hour ahead; at 30 s one steps 2 s forward and at 60 s one steps 2 s back (its \
          monotonic clock then stands still for 2 s, like a pause). Members never compare clocks, \
          so none may be declared failed at all; the lease checker holds leases exclusive between \
          members whose clocks stay within the bound and never step.",
    members: Members::Fixed(6),
    min_members: 5,
    preset: Preset::Lan,
    voters: 5,
    default_seeds: 4,
    plan: |seed, n| {
        let mut rng = draws(seed, "clock-skew");
        let mut who = some_members(&mut rng, n, 5);
        // Shuffled, so that the roles fall on voters and others alike.
        for i in (1..who.len()).rev() {
            who.swap(i, rng.below(i as u64 + 1) as usize);
        }
        FaultPlan::new()
            .at(Instant::from_secs(1), Fault::ClockDrift { node: who[0], ppm: 500.0 })
            .at(Instant::from_secs(1), Fault::ClockDrift { node: who[1], ppm: -500.0 })
            .at(Instant::from_secs(1), Fault::ClockOffset { node: who[2], offset_nanos: 3_600_000_000_000 })
            .at(Instant::from_secs(30), Fault::ClockJump { node: who[3], nanos: 2_000_000_000 })
            .at(Instant::from_secs(60), Fault::ClockJump { node: who[4], nanos: -2_000_000_000 })
    },
    bounds: |_| vec![Box::new(NoFailureVerdicts::default())],
    service: None,
};

/// Every member's process is killed and restarted with `disk`, staggered over three
/// seconds from 20 s.
fn mass_restart(seed: u64, n: usize, disk: Disk, salt: &str) -> FaultPlan {
    let mut rng = draws(seed, salt);
    let down = Instant::from_secs(20);
    let mut plan = FaultPlan::new();
    for i in 0..n {
        plan.push(down, Fault::Crash(sim_id(i)));
    }
    for i in 0..n {
        let node = sim_id(i);
        plan.push(down + Duration::from_secs(2) + millis_between(&mut rng, 0, 3_000), Fault::Restart { node, disk });
    }
    plan
}

/// Everyone down at once, back with their disks.
pub(crate) const MASS_RESTART: Scenario = Scenario {
    name: "mass-restart",
    summary: "every member is killed at once and restarted with its disk: the cluster re-forms and elects",
    doc: "Eight members (five vote) form a cluster and elect; at 20 s every process is killed, and \
          each restarts with its disk between 22 and 25 s, in an order drawn from the seed. The \
          restarted members must find each other again through the seeds (which may still be down: \
          joins retry with backoff), each must be held alive by every member up before it within \
          the rejoin bound, no incarnation may be reused, no term may get two leaders (the votes \
          are on disk), and a leader is elected after the last restart.",
    members: Members::Fixed(8),
    min_members: 3,
    preset: Preset::Lan,
    voters: 5,
    default_seeds: 3,
    plan: |seed, n| mass_restart(seed, n, Disk::Kept, "mass-restart"),
    bounds: |s| vec![Box::new(RejoinsWithin::new(rejoin_bound(&s.config, s.members)))],
    service: None,
};

/// Everyone down at once, back on wiped disks.
pub(crate) const MASS_RESTART_AMNESIA: Scenario = Scenario {
    name: "mass-restart-amnesia",
    summary: "every member is killed at once and restarted on a wiped disk: the cluster re-forms",
    doc: "As mass-restart, but every member comes back on a wiped disk (new machines, or volumes \
          lost), and nobody votes: a majority of voters that lost their votes is outside what a \
          quorum survives (the election waits rather than risk two leaders in a term; its \
          documentation says to rebuild the voter set), so the leader checkers have nothing to \
          judge. Membership must recover on its own: each member comes back at a fresh incarnation \
          that the others, which remember its old one, must not hold against it.",
    members: Members::Fixed(8),
    min_members: 3,
    preset: Preset::Lan,
    voters: 0,
    default_seeds: 3,
    plan: |seed, n| mass_restart(seed, n, Disk::Amnesia, "mass-restart-amnesia"),
    bounds: |s| vec![Box::new(RejoinsWithin::new(rejoin_bound(&s.config, s.members)))],
    service: None,
};

/// Members crash and come back, again and again.
pub(crate) const CRASH_RECOVERY: Scenario = Scenario {
    name: "crash-recovery",
    summary: "two members crash and come back three times each, with and without disk",
    doc: "Six members (five vote). Two members, drawn from the seed, each go through three cycles \
          from 5 s: crash, stay down 8 to 20 s, restart (with the disk or on a wiped one, drawn per \
          restart; at most two voters ever wipe theirs, a minority), run 5 to 15 s. Each crash must \
          be detected by every running member within the detection bound, each restarted member must \
          be held alive again within the rejoin bound, and a member restarted with its disk must \
          never advertise an incarnation it used before (memberlist's issue 311 is the opposite \
          failure: a member that stays dead because its peers remember a higher incarnation).",
    members: Members::Fixed(6),
    min_members: 3,
    preset: Preset::Lan,
    voters: 5,
    default_seeds: 4,
    plan: |seed, n| {
        let mut rng = draws(seed, "crash-recovery");
        let mut plan = FaultPlan::new();
        let mut steps: Vec<(Instant, Fault)> = Vec::new();
        for node in some_members(&mut rng, n, 2) {
            let mut at = Instant::from_secs(5) + millis_between(&mut rng, 0, 5_000);
            for _ in 0..3 {
                steps.push((at, Fault::Crash(node)));
                at += millis_between(&mut rng, 8_000, 20_000);
                let disk = if rng.below(2) == 0 { Disk::Kept } else { Disk::Amnesia };
                steps.push((at, Fault::Restart { node, disk }));
                at += millis_between(&mut rng, 5_000, 15_000);
            }
        }
        steps.sort_by_key(|(at, _)| *at);
        for (at, fault) in steps {
            plan.push(at, fault);
        }
        plan
    },
    bounds: |s| {
        vec![
            Box::new(DetectsCrashes::new(detection_bound(&s.config, s.members))) as Box<dyn Checker>,
            Box::new(RejoinsWithin::new(rejoin_bound(&s.config, s.members))),
        ]
    },
    service: None,
};

/// Members replaced one after another.
pub(crate) const CHURN: Scenario = Scenario {
    name: "churn",
    summary: "for two minutes, a member goes down every 2-5 s and comes back 4-10 s later",
    doc: "Twelve members (five vote). From 10 s to 130 s, every 2 to 5 s a member that runs, drawn \
          from the seed, goes down and comes back 4 to 10 s later: a voter with its disk (a restart), \
          any other on a wiped disk (a machine replaced). Several are down at once. Each restarted \
          member must be held alive again within the rejoin bound, and once the churn stops the \
          views must converge and a leader be elected within their bounds.",
    members: Members::Fixed(12),
    min_members: 6,
    preset: Preset::Lan,
    voters: 5,
    default_seeds: 3,
    plan: |seed, n| {
        let mut rng = draws(seed, "churn");
        let voters: BTreeSet<NodeId> = (0..n.min(5)).map(sim_id).collect();
        let mut back: Vec<(Instant, NodeId)> = Vec::new();
        let mut steps: Vec<(Instant, Fault)> = Vec::new();
        let mut at = Instant::from_secs(10);
        while at < Instant::from_secs(130) {
            back.retain(|&(when, _)| when > at);
            let down: BTreeSet<NodeId> = back.iter().map(|&(_, m)| m).collect();
            let running: Vec<NodeId> = (0..n).map(sim_id).filter(|m| !down.contains(m)).collect();
            // At most a third down at once: churn, not a mass outage.
            if down.len() < n / 3 {
                let node = running[rng.below(running.len() as u64) as usize];
                let disk = if voters.contains(&node) { Disk::Kept } else { Disk::Amnesia };
                let restart = at + millis_between(&mut rng, 4_000, 10_000);
                steps.push((at, Fault::Crash(node)));
                steps.push((restart, Fault::Restart { node, disk }));
                back.push((restart, node));
            }
            at += millis_between(&mut rng, 2_000, 5_000);
        }
        steps.sort_by_key(|(at, _)| *at);
        let mut plan = FaultPlan::new();
        for (at, fault) in steps {
            plan.push(at, fault);
        }
        plan
    },
    bounds: |s| vec![Box::new(RejoinsWithin::new(rejoin_bound(&s.config, s.members)))],
    service: None,
};

/// A hundred members.
pub(crate) const LARGE_CLUSTER: Scenario = Scenario {
    name: "large-cluster",
    summary: "a hundred members form within 10 s, lose three at 30 s and take them back at 60 s",
    doc: "A hundred members (five vote) join through three seeds over the first 200 ms and must all \
          hold each other alive within 10 s. At 30 s three members, drawn from the seed, crash; each \
          must be declared failed by every other within the detection bound at this size (12 s at a \
          hundred: suspicions last longer in larger views); at 60 s they restart with their disks \
          and must be held alive again within the rejoin bound, and the views converge after.",
    members: Members::Fixed(100),
    min_members: 10,
    preset: Preset::Lan,
    voters: 5,
    default_seeds: 2,
    plan: |seed, n| {
        let mut rng = draws(seed, "large-cluster");
        let victims = some_members(&mut rng, n, 3);
        let mut plan = FaultPlan::new();
        for &node in &victims {
            plan.push(Instant::from_secs(30), Fault::Crash(node));
        }
        for &node in &victims {
            plan.push(Instant::from_secs(60), Fault::Restart { node, disk: Disk::Kept });
        }
        plan
    },
    bounds: |s: &Setup| {
        vec![
            Box::new(FormsWithin::new(Duration::from_secs(10))) as Box<dyn Checker>,
            Box::new(DetectsCrashes::new(detection_bound(&s.config, s.members))),
            Box::new(RejoinsWithin::new(rejoin_bound(&s.config, s.members))),
        ]
    },
    service: None,
};
