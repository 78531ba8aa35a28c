//! Each fault does what it says, observed in virtual time through the trace and the
//! members' own counters.

use std::time::Duration;

use conclave_core::{Durable, Instant, NodeId};
use conclave_sim::{
    seed_from_env, Disk, DropReason, Fault, FaultPlan, LinkParams, LinkSelector, Sim, SimBuilder, TraceMode,
    TraceRecord,
};

const LATENCY: Duration = Duration::from_micros(500);

fn n(i: u64) -> NodeId {
    NodeId(i)
}

fn sim(members: usize, plan: FaultPlan) -> Sim {
    SimBuilder::new()
        .seed(seed_from_env(3))
        .members(members)
        .network(LinkParams::constant(LATENCY))
        .plan(plan)
        .trace(TraceMode::Record)
        .default_checkers(false)
        .build()
        .expect("valid settings")
}

/// `(at, from, to)` of every delivered datagram, accepted or not.
fn delivered(sim: &Sim) -> Vec<(Instant, Instant, NodeId, NodeId, bool)> {
    sim.records()
        .iter()
        .filter_map(|r| match r {
            TraceRecord::Delivered { at, sent, from, to, rejected, .. } => {
                Some((*at, *sent, *from, *to, rejected.is_none()))
            }
            _ => None,
        })
        .collect()
}

fn dropped(sim: &Sim, reason: DropReason) -> Vec<(Instant, NodeId, Option<NodeId>)> {
    sim.records()
        .iter()
        .filter_map(|r| match r {
            TraceRecord::Dropped { at, from, to, reason: why, .. } if *why == reason => Some((*at, *from, *to)),
            _ => None,
        })
        .collect()
}

fn sent_total(sim: &Sim) -> u64 {
    sim.ids().into_iter().filter_map(|id| sim.node(id)).map(|node| node.stats().sent.total()).sum()
}

#[test]
fn partition_drops_exactly_the_cut_links() {
    let (start, end) = (Instant::from_secs(5), Instant::from_secs(15));
    let plan = FaultPlan::new().at(start, Fault::Partition(vec![vec![n(1), n(2)]])).at(end, Fault::Heal);
    let mut sim = sim(5, plan);
    sim.run_for(Duration::from_secs(60));
    let side = |id: NodeId| id.0 <= 2;
    let during = |at: Instant| at >= start && at < end;
    // Sent during the partition across the cut: dropped, all of them, and nothing else.
    let cut = dropped(&sim, DropReason::Partition);
    assert!(cut.len() > 20, "the sides kept probing each other: {}", cut.len());
    for &(at, from, to) in &cut {
        assert!(during(at), "dropped outside the partition at {at}");
        assert_ne!(side(from), side(to.expect("a member")), "{from} -> {to:?} is not across the cut");
    }
    let sent_during = |a: bool, b: bool| {
        delivered(&sim)
            .iter()
            .filter(|&&(_, sent, from, to, _)| during(sent) && side(from) == a && side(to) == b)
            .count()
    };
    assert_eq!(sent_during(true, false) + sent_during(false, true), 0, "a datagram crossed the cut");
    assert!(sent_during(true, true) > 0 && sent_during(false, false) > 0, "a side stopped talking within itself");
    // After the heal, the sides talk again.
    assert!(delivered(&sim).iter().any(|&(at, _, from, to, _)| at > end && side(from) != side(to)));
    assert_eq!(sim.stats().dropped_partition, cut.len() as u64);
}

#[test]
fn one_way_cut_drops_one_direction() {
    let plan = FaultPlan::new().at(Instant::from_secs(5), Fault::OneWay { from: vec![n(1)], to: vec![n(2)] });
    let mut sim = sim(4, plan);
    sim.run_for(Duration::from_secs(15));
    let after = |at: Instant| at >= Instant::from_secs(5);
    let cut = dropped(&sim, DropReason::Partition);
    assert!(!cut.is_empty());
    assert!(cut.iter().all(|&(at, from, to)| after(at) && from == n(1) && to == Some(n(2))));
    let d = delivered(&sim);
    assert!(!d.iter().any(|&(_, sent, from, to, _)| after(sent) && from == n(1) && to == n(2)));
    assert!(d.iter().any(|&(_, sent, from, to, _)| after(sent) && from == n(2) && to == n(1)), "n2 -> n1 still works");
}

#[test]
fn partial_connectivity_cuts_only_named_links() {
    let plan = FaultPlan::new().at(Instant::from_secs(5), Fault::CutLinks(vec![(n(1), n(2))]));
    let mut sim = sim(4, plan);
    sim.run_for(Duration::from_secs(15));
    let cut = dropped(&sim, DropReason::Partition);
    assert!(!cut.is_empty());
    let pair = |a: NodeId, b: Option<NodeId>| (a, b) == (n(1), Some(n(2))) || (a, b) == (n(2), Some(n(1)));
    assert!(cut.iter().all(|&(_, from, to)| pair(from, to)));
    let d = delivered(&sim);
    let late = |&&(_, sent, ..): &&(Instant, Instant, NodeId, NodeId, bool)| sent >= Instant::from_secs(5);
    assert!(!d.iter().filter(late).any(|&(_, _, from, to, _)| pair(from, Some(to))));
    assert!(d.iter().filter(late).any(|&(_, _, from, to, _)| from == n(1) && to == n(3)));
}

#[test]
fn one_way_latency_change_applies_to_one_direction() {
    let slow = LinkParams::constant(Duration::from_millis(40));
    let plan = FaultPlan::new().at(
        Instant::from_secs(2),
        Fault::SetLinks { links: LinkSelector::OneWay { from: n(1), to: n(2) }, params: slow },
    );
    let mut sim = sim(3, plan);
    sim.run_for(Duration::from_secs(10));
    let d = delivered(&sim);
    let after = |sent: Instant| sent >= Instant::from_secs(2);
    let mut checked = (0, 0);
    for &(at, sent, from, to, _) in d.iter().filter(|x| after(x.1)) {
        if (from, to) == (n(1), n(2)) {
            assert_eq!(at - sent, Duration::from_millis(40));
            checked.0 += 1;
        } else {
            assert_eq!(at - sent, LATENCY, "{from} -> {to}");
            checked.1 += 1;
        }
    }
    assert!(checked.0 > 0 && checked.1 > 0);
}

#[test]
fn loss_rate_is_honoured() {
    let plan = FaultPlan::new().at(
        Instant::ZERO,
        Fault::SetLinks { links: LinkSelector::All, params: LinkParams::constant(LATENCY).with_loss(0.3) },
    );
    let mut sim =
        SimBuilder::new().seed(seed_from_env(5)).members(6).plan(plan).default_checkers(false).build().unwrap();
    sim.run_for(Duration::from_secs(60));
    let s = *sim.stats();
    let rate = s.dropped_loss as f64 / (s.dropped_loss + s.delivered) as f64;
    assert!((rate - 0.3).abs() < 0.03, "loss rate {rate}");
}

#[test]
fn corruption_is_rejected_and_counted() {
    let params = LinkParams::constant(LATENCY).with_corrupt(1.0);
    let plan = FaultPlan::new().at(Instant::from_secs(3), Fault::SetLinks { links: LinkSelector::All, params });
    let mut sim = sim(4, plan);
    sim.run_for(Duration::from_secs(3));
    let clean_before: u64 = sim.ids().iter().map(|&id| sim.node(id).unwrap().stats().dropped.checksum).sum();
    assert_eq!(clean_before, 0);
    sim.run_for(Duration::from_secs(5));
    let checksum: u64 = sim.ids().iter().map(|&id| sim.node(id).unwrap().stats().dropped.checksum).sum();
    let dropped_total: u64 = sim.ids().iter().map(|&id| sim.node(id).unwrap().stats().dropped.total()).sum();
    let s = *sim.stats();
    assert!(s.corrupted > 50);
    // Every corrupted datagram that arrived was refused, by its checksum.
    assert_eq!(checksum, s.rejected);
    assert_eq!(dropped_total, s.rejected);
    let late: Vec<_> = delivered(&sim).into_iter().filter(|x| x.1 >= Instant::from_secs(3)).collect();
    assert!(!late.is_empty() && late.iter().all(|x| !x.4), "a corrupted datagram was accepted");
}

#[test]
fn duplication_delivers_twice() {
    let params = LinkParams::constant(LATENCY).with_duplicate(1.0);
    let mut sim = sim(4, FaultPlan::new().at(Instant::ZERO, Fault::SetLinks { links: LinkSelector::All, params }));
    sim.run_for(Duration::from_secs(5));
    let sent = sent_total(&sim);
    // Stop new datagrams at the source, then let everything in flight land.
    let lossy = LinkParams::constant(LATENCY).with_loss(1.0);
    sim.apply(Fault::SetLinks { links: LinkSelector::All, params: lossy });
    let before = sim.stats().delivered;
    sim.run_for(Duration::from_millis(10));
    let s = *sim.stats();
    assert!(sent > 100);
    assert_eq!(s.duplicated, sent);
    assert_eq!(s.delivered, 2 * sent, "delivered {} (+{} after the stop)", s.delivered, s.delivered - before);
}

#[test]
fn crash_stops_output_and_restart_resumes_it() {
    let (crash, restart) = (Instant::from_secs(5), Instant::from_secs(10));
    let plan =
        FaultPlan::new().at(crash, Fault::Crash(n(3))).at(restart, Fault::Restart { node: n(3), disk: Disk::Kept });
    let mut sim = sim(4, plan);
    sim.run_for(Duration::from_secs(7));
    assert!(!sim.is_up(n(3)));
    sim.run_for(Duration::from_secs(8));
    assert!(sim.is_up(n(3)));
    let d = delivered(&sim);
    let from3 = |lo: Instant, hi: Instant| d.iter().filter(|x| x.2 == n(3) && x.1 >= lo && x.1 < hi).count();
    assert!(from3(Instant::ZERO, crash) > 0);
    assert_eq!(from3(crash, restart), 0, "a crashed member sent");
    assert!(from3(restart, Instant::from_secs(15)) > 0, "the restarted member is silent");
    let to3: Vec<_> = dropped(&sim, DropReason::Down);
    assert!(!to3.is_empty());
    assert!(to3.iter().all(|&(at, _, to)| to == Some(n(3)) && at >= crash && at < restart + LATENCY));
    assert!(!d.iter().any(|x| x.3 == n(3) && x.0 >= crash && x.0 < restart), "a crashed member received");
}

fn started(sim: &Sim, id: NodeId) -> Vec<Option<Durable>> {
    sim.records()
        .iter()
        .filter_map(|r| match r {
            TraceRecord::Started { node, durable, .. } if *node == id => Some(durable.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn restart_with_disk_keeps_durable_state_and_amnesia_loses_it() {
    for disk in [Disk::Kept, Disk::Amnesia] {
        let plan = FaultPlan::new()
            .at(Instant::from_secs(3), Fault::Crash(n(2)))
            .at(Instant::from_secs(4), Fault::Restart { node: n(2), disk });
        let mut sim = sim(3, plan);
        sim.run_for(Duration::from_secs(3) + Duration::from_millis(500));
        let persisted = sim.disk(n(2)).map(|b| Durable::decode(b).expect("the engine stores valid bytes"));
        assert!(persisted.is_some(), "the member persisted its state before the crash");
        sim.run_for(Duration::from_secs(1));
        let starts = started(&sim, n(2));
        assert_eq!(starts.len(), 2);
        match disk {
            Disk::Kept => assert_eq!(starts[1], persisted),
            Disk::Amnesia => assert_eq!(starts[1], None, "amnesia must lose the durable bytes"),
        }
    }
}

#[test]
fn pause_delays_timers_and_input() {
    let (start, len) = (Instant::from_secs(5), Duration::from_secs(2));
    let mut sim = sim(4, FaultPlan::new().at(start, Fault::Pause { node: n(2), duration: len }));
    sim.run_until(start + Duration::from_millis(1));
    let counts = |sim: &Sim| {
        let s = sim.node(n(2)).unwrap().stats();
        (s.sent.total(), s.received.total())
    };
    let at_pause = counts(&sim);
    sim.run_until(start + len - Duration::from_nanos(1));
    assert_eq!(counts(&sim), at_pause, "a paused member handled something");
    sim.run_until(start + len + Duration::from_millis(1));
    let resumed = counts(&sim);
    assert!(resumed.0 > at_pause.0 && resumed.1 > at_pause.1, "{at_pause:?} -> {resumed:?}");
    // The backlog was handled at the end of the pause, in arrival order.
    let backlog: Vec<_> = delivered(&sim).into_iter().filter(|x| x.3 == n(2) && x.0 == start + len).collect();
    assert!(backlog.len() > 5, "{}", backlog.len());
    assert!(backlog.windows(2).all(|w| w[0].1 <= w[1].1));
}

#[test]
fn slow_member_takes_its_processing_time_per_message() {
    let per = Duration::from_millis(30);
    let plan = FaultPlan::new().at(Instant::from_secs(3), Fault::Slow { node: n(2), per_message: per });
    let mut sim = sim(4, plan);
    sim.run_for(Duration::from_secs(10));
    let to2: Vec<_> = delivered(&sim).into_iter().filter(|x| x.3 == n(2) && x.1 >= Instant::from_secs(3)).collect();
    assert!(to2.len() > 10);
    for w in to2.windows(2) {
        assert!(w[1].0 - w[0].0 >= per, "handled {} then {}", w[0].0, w[1].0);
    }
    assert!(to2.iter().all(|x| x.0 - x.1 >= per + LATENCY));
    let others = delivered(&sim).into_iter().filter(|x| x.3 != n(2) && x.1 >= Instant::from_secs(3));
    assert!(others.into_iter().all(|x| x.0 - x.1 == LATENCY), "only the slow member is slow");
}

/// Runs a lone member to `at`, then finds the global time its next timer fires.
fn next_timer_fire(fault: Option<Fault>) -> (Instant, Instant) {
    let mut sim = SimBuilder::new().members(1).default_checkers(false).build().unwrap();
    if let Some(fault) = fault {
        sim.apply(fault);
    }
    sim.run_until(Instant::from_secs(10));
    let deadline = sim.node(n(1)).unwrap().poll_timeout().expect("a member always has a timer");
    loop {
        let before = sim.node(n(1)).unwrap().poll_timeout();
        let at = sim.step().expect("the timer is queued");
        if sim.node(n(1)).unwrap().poll_timeout() != before {
            return (deadline, at);
        }
    }
}

#[test]
fn drift_makes_timers_fire_early_or_late_by_the_drift() {
    let (deadline, at) = next_timer_fire(None);
    assert_eq!(at, deadline, "without drift, local time is global time");
    // 1 % fast: local = 1.01 * global, so a local deadline D comes at D / 1.01.
    let (deadline, at) = next_timer_fire(Some(Fault::ClockDrift { node: n(1), ppm: 10_000.0 }));
    let expected = (deadline.as_nanos() as u128 * 100).div_ceil(101) as u64;
    assert_eq!(at.as_nanos(), expected, "fast clock: deadline {deadline}, fired {at}");
    assert!(at < deadline);
    // 1 % slow: late.
    let (deadline, at) = next_timer_fire(Some(Fault::ClockDrift { node: n(1), ppm: -10_000.0 }));
    let expected = (deadline.as_nanos() as u128 * 100).div_ceil(99) as u64;
    assert_eq!(at.as_nanos(), expected, "slow clock: deadline {deadline}, fired {at}");
    assert!(at > deadline);
}

#[test]
fn clock_offset_and_jumps_shift_the_members_now() {
    let mut sim = SimBuilder::new().members(2).default_checkers(false).build().unwrap();
    sim.run_until(Instant::from_secs(1));
    sim.apply(Fault::ClockOffset { node: n(1), offset_nanos: 5_000_000_000 });
    assert_eq!(sim.local_now(n(1)), Some(Instant::from_secs(6)));
    assert_eq!(sim.local_now(n(2)), Some(Instant::from_secs(1)));
    sim.apply(Fault::ClockJump { node: n(1), nanos: 2_000_000_000 });
    assert_eq!(sim.local_now(n(1)), Some(Instant::from_secs(8)));
    // A backward step: the member's now holds still until the clock catches up.
    sim.apply(Fault::ClockJump { node: n(1), nanos: -4_000_000_000 });
    assert_eq!(sim.local_now(n(1)), Some(Instant::from_secs(8)));
    sim.run_until(Instant::from_secs(3));
    assert_eq!(sim.local_now(n(1)), Some(Instant::from_secs(8)));
    sim.run_until(Instant::from_secs(5));
    assert_eq!(sim.local_now(n(1)), Some(Instant::from_secs(8)));
    sim.run_until(Instant::from_secs(6));
    assert_eq!(sim.local_now(n(1)), Some(Instant::from_secs(9)));
}

#[test]
fn fault_plans_round_trip_through_json() {
    let plan = FaultPlan::new()
        .at(Instant::from_millis(1), Fault::Crash(n(1)))
        .at(Instant::from_millis(2), Fault::Restart { node: n(1), disk: Disk::Amnesia })
        .at(Instant::from_millis(3), Fault::Pause { node: n(2), duration: Duration::from_millis(700) })
        .at(Instant::from_millis(4), Fault::Slow { node: n(2), per_message: Duration::from_micros(30) })
        .at(Instant::from_millis(5), Fault::Partition(vec![vec![n(1)], vec![n(2), n(3)]]))
        .at(Instant::from_millis(6), Fault::OneWay { from: vec![n(1)], to: vec![n(2), n(3)] })
        .at(Instant::from_millis(7), Fault::CutLinks(vec![(n(1), n(2))]))
        .at(Instant::from_millis(8), Fault::Heal)
        .at(
            Instant::from_millis(9),
            Fault::SetLinks {
                links: LinkSelector::Between(n(1), n(2)),
                params: LinkParams::default()
                    .with_latency(conclave_sim::Latency::Pareto { scale: Duration::from_micros(200), shape: 1.5 })
                    .with_loss(0.25)
                    .with_duplicate(0.125)
                    .with_reorder(0.5, Duration::from_millis(3))
                    .with_corrupt(0.0625),
            },
        )
        .at(Instant::from_millis(10), Fault::ClockOffset { node: n(3), offset_nanos: -5 })
        .at(Instant::from_millis(11), Fault::ClockDrift { node: n(3), ppm: -12.5 })
        .at(Instant::from_millis(12), Fault::ClockJump { node: n(3), nanos: 1_000_000 });
    let json = plan.to_json();
    assert_eq!(FaultPlan::from_json(&json).expect("its own output"), plan);
    // And the plan runs.
    let mut sim = sim(3, plan);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.stats().faults, 12);
}

#[test]
fn stale_copies_arrive_up_to_their_delay_later() {
    let delay = Duration::from_secs(120);
    let params = LinkParams::constant(LATENCY).with_stale(0.5, delay);
    let plan = FaultPlan::new()
        .at(Instant::from_secs(2), Fault::SetLinks { links: LinkSelector::All, params })
        .at(Instant::from_secs(6), Fault::SetLinks { links: LinkSelector::All, params: LinkParams::constant(LATENCY) });
    let mut sim = sim(4, plan);
    sim.run_for(Duration::from_secs(200));
    let late: Vec<_> = delivered(&sim).into_iter().filter(|x| x.0 - x.1 > LATENCY).collect();
    let stale = sim.stats().stale;
    assert!(stale > 20, "{stale}");
    assert_eq!(late.len() as u64, stale, "every stale copy arrived once, late");
    assert!(late.iter().all(|x| x.1 >= Instant::from_secs(2) && x.1 < Instant::from_secs(6)));
    assert!(late.iter().all(|x| x.0 - x.1 <= LATENCY + delay));
    assert!(late.iter().any(|x| x.0 - x.1 > Duration::from_secs(60)), "minutes later");
}
