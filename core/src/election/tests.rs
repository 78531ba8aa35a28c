//! The election on whole clusters of real nodes (the in-crate harness), and on one node
//! fed by hand where the order of its outputs is the point.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::ElectionConfig;
use crate::testkit::{addr, Cluster};
use crate::wire::{self, Header, Message};
use crate::{
    Command, Config, ConfigError, Durable, Error, Event, InitialClusterState, Instant, Node, NodeConfig, NodeId, Output,
};

/// The lan preset with members `0..voters` voting.
fn config(voters: u64) -> Config {
    Config { election: ElectionConfig::with_voters((0..voters).map(NodeId)), ..Config::lan() }
}

/// Runs `d` in steps of 5 ms, checking at every step that at most one member holds the
/// lease and that no term has two leaders.
fn run_checked(c: &mut Cluster, d: Duration) {
    let until = c.now + d;
    while c.now < until {
        c.run_for(Duration::from_millis(5));
        let now = c.now;
        let holders: Vec<usize> = (0..c.len()).filter(|&i| c.is_up(i) && c.node(i).is_leaseholder(now)).collect();
        assert!(holders.len() <= 1, "at {now}: {holders:?} all hold the lease");
        let mut leaders = std::collections::BTreeMap::new();
        for s in c.seen(|e| matches!(e, Event::LeaderElected { .. })) {
            let Event::LeaderElected { term, leader } = s.event else { unreachable!() };
            let first = *leaders.entry(term).or_insert(leader);
            assert_eq!(first, leader, "term {term} has two leaders");
        }
    }
}

/// The leader every running member agrees on, if they all do.
fn agreed_leader(c: &Cluster) -> Option<NodeId> {
    let up: Vec<usize> = (0..c.len()).filter(|&i| c.is_up(i)).collect();
    let first = c.node(up[0]).leader()?;
    up.iter().all(|&i| c.node(i).leader() == Some(first)).then_some(first)
}

#[test]
fn one_leader_is_elected_and_every_member_learns_it() {
    let mut c = Cluster::new(7, config(5), 1);
    run_checked(&mut c, Duration::from_secs(3));
    let leader = agreed_leader(&c).expect("every member knows the leader");
    assert!(leader.0 < 5, "a voter leads");
    let term = c.node(leader.0 as usize).term();
    assert!(term >= 1);
    for i in 0..7 {
        assert_eq!(c.node(i).term(), term, "n{i} knows the term");
    }
    assert!(c.node(leader.0 as usize).is_leaseholder(c.now), "the leader holds the lease");
    // The members that do not vote learned it through gossip, and said so once.
    for i in [5, 6] {
        let told: Vec<_> = c
            .seen(|e| matches!(e, Event::LeaderElected { .. }))
            .into_iter()
            .filter(|s| s.observer == NodeId(i))
            .collect();
        assert_eq!(told.len(), 1, "n{i}: {told:?}");
    }
    // Votes and terms were persisted by every voter.
    for i in 0..5 {
        assert_eq!(c.durable(i).map(|d| d.term), Some(term), "n{i}'s disk");
    }
}

#[test]
fn a_crashed_leader_is_replaced_within_the_election_timeouts() {
    let mut c = Cluster::new(5, config(5), 2);
    run_checked(&mut c, Duration::from_secs(2));
    let old = agreed_leader(&c).expect("a leader");
    let old_term = c.node(old.0 as usize).term();
    c.crash(old.0 as usize);
    let crashed_at = c.now;
    run_checked(&mut c, Duration::from_secs(2));
    let new = agreed_leader(&c).expect("a new leader");
    assert_ne!(new, old);
    let elected = c
        .seen(|e| matches!(e, Event::LeaderElected { leader, .. } if *leader == new))
        .first()
        .map(|s| s.at)
        .expect("its election was told");
    let downtime = elected.saturating_duration_since(crashed_at);
    assert!(downtime < Duration::from_millis(1000), "downtime {downtime:?}");
    assert!(c.node(new.0 as usize).term() > old_term);
    // Each follower said it lost the old leader before it learned the new one.
    for i in (0..5).filter(|&i| c.is_up(i) && NodeId(i as u64) != new) {
        let lost =
            c.seen(|e| *e == Event::LeaderLost { term: old_term }).into_iter().any(|s| s.observer == NodeId(i as u64));
        assert!(lost, "n{i} never said it lost {old}");
    }
}

/// A cluster of five voters that elected a leader, then one of its followers cut off:
/// the cluster, the leader, its term and the follower.
fn one_follower_cut_off(config: Config) -> (Cluster, NodeId, u64, usize) {
    let mut c = Cluster::new(5, config, 3);
    run_checked(&mut c, Duration::from_secs(2));
    let leader = agreed_leader(&c).expect("a leader");
    let term = c.node(0).term();
    let cut = (0..5).find(|&i| NodeId(i as u64) != leader).expect("a follower");
    c.isolate(cut);
    (c, leader, term, cut)
}

#[test]
fn a_cut_off_voter_does_not_raise_its_term_or_depose_the_leader() {
    let (mut c, leader, term, cut) = one_follower_cut_off(config(5));
    run_checked(&mut c, Duration::from_secs(5));
    assert_eq!(c.node(cut).term(), term, "PreVote: asking moved no term");
    c.link_loss.clear();
    run_checked(&mut c, Duration::from_secs(2));
    assert_eq!(agreed_leader(&c), Some(leader), "the leader stayed");
    assert_eq!(c.node(leader.0 as usize).term(), term, "and so did its term");
}

#[test]
fn without_prevote_the_cut_off_voter_deposes_the_leader_on_its_return() {
    // The contrast that shows PreVote's worth: the same cut, PreVote off.
    let mut config = config(5);
    config.election.pre_vote = false;
    let (mut c, _, term, cut) = one_follower_cut_off(config);
    run_checked(&mut c, Duration::from_secs(5));
    assert!(c.node(cut).term() > term + 5, "it kept standing: term {}", c.node(cut).term());
}

#[test]
fn check_quorum_steps_down_a_cut_off_leader_before_another_is_elected() {
    let mut c = Cluster::new(5, config(5), 4);
    run_checked(&mut c, Duration::from_secs(2));
    let old = agreed_leader(&c).expect("a leader").0 as usize;
    c.isolate(old);
    let cut_at = c.now;
    // `run_checked` holds the lease exclusive at every step through it.
    run_checked(&mut c, Duration::from_secs(2));
    let stepped_down = c
        .seen(|e| matches!(e, Event::LeaderLost { .. }))
        .into_iter()
        .find(|s| s.observer == NodeId(old as u64))
        .map(|s| s.at)
        .expect("the cut-off leader stepped down");
    assert!(stepped_down.saturating_duration_since(cut_at) <= Duration::from_millis(400));
    assert!(!c.node(old).is_leaseholder(c.now));
    let new = (0..5).filter(|&i| i != old).find_map(|i| c.node(i).leader()).expect("the majority elected");
    assert_ne!(new.0 as usize, old);
}

#[test]
fn a_leader_that_leaves_hands_over_at_once() {
    let mut c = Cluster::new(5, config(5), 5);
    run_checked(&mut c, Duration::from_secs(2));
    let old = agreed_leader(&c).expect("a leader");
    let left_at = c.now;
    c.command(old.0 as usize, Command::Leave);
    run_checked(&mut c, Duration::from_millis(500));
    let new = (0..5).filter(|&i| i != old.0 as usize).find_map(|i| c.node(i).leader()).expect("a successor");
    assert_ne!(new, old);
    let elected = c
        .seen(|e| matches!(e, Event::LeaderElected { leader, .. } if *leader == new))
        .first()
        .map(|s| s.at)
        .expect("told");
    // No election timeout was waited out: a few round trips.
    assert!(elected.saturating_duration_since(left_at) < Duration::from_millis(20), "{elected} after {left_at}");
}

#[test]
fn leadership_moves_on_request_and_only_the_leader_may_move_it() {
    let mut c = Cluster::new(5, config(5), 6);
    run_checked(&mut c, Duration::from_secs(2));
    let old = agreed_leader(&c).expect("a leader");
    let follower = NodeId((old.0 + 1) % 5);
    let now = c.now;
    assert_eq!(
        c.node_mut(follower.0 as usize).handle_command(now, Command::TransferLeadership(old)),
        Err(Error::NotLeader { leader: Some(old) })
    );
    c.command(old.0 as usize, Command::TransferLeadership(follower));
    run_checked(&mut c, Duration::from_millis(500));
    assert_eq!(agreed_leader(&c), Some(follower));
}

// ----- one node, by hand ---------------------------------------------------------------

fn datagram(from: NodeId, message: &Message) -> Vec<u8> {
    wire::encode(Header { cluster_id: 0, sender: from }, message, 1400).expect("fits")
}

fn outputs(node: &mut Node) -> Vec<Output> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

/// The votes `node` sent, as (term, granted).
fn votes(outputs: &[Output]) -> Vec<(u64, bool)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Transmit(t) => match wire::decode(&t.payload, 0, 1400) {
                Ok((_, Message::Vote { term, granted, pre_vote: false })) => Some((term, granted)),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn voter(durable: Option<Durable>) -> Node {
    let mut config = NodeConfig::new(NodeId(0), addr(0), config(5), 9);
    config.durable = durable;
    Node::new(config, Instant::ZERO).expect("valid")
}

fn ask(node: &mut Node, at: Instant, from: u64, term: u64) -> Vec<Output> {
    let request = Message::RequestVote { term, pre_vote: false, transfer: false };
    let from_addr: SocketAddr = addr(from as usize);
    node.handle_datagram(at, from_addr, &datagram(NodeId(from), &request)).expect("accepted");
    outputs(node)
}

#[test]
fn a_vote_is_persisted_before_it_leaves_and_granted_once_per_term() {
    let mut node = voter(Some(Durable::new(3, 4, None)));
    let _ = outputs(&mut node);
    // Past the minimum timeout from its start, through which a restarted voter refuses.
    let at = |ms| after_restart_window(ms);
    let out = ask(&mut node, at(1), 1, 5);
    let persist =
        out.iter().position(|o| matches!(o, Output::Persist(d) if d.term == 5 && d.voted_for == Some(NodeId(1))));
    let vote = out.iter().position(|o| !votes(std::slice::from_ref(o)).is_empty());
    assert!(persist.is_some() && persist < vote, "persist first: {out:?}");
    assert_eq!(votes(&out), [(5, true)]);
    // A second candidate in the same term is refused; the first is granted again (a retry).
    assert_eq!(votes(&ask(&mut node, at(2), 2, 5)), [(5, false)]);
    assert_eq!(votes(&ask(&mut node, at(3), 1, 5)), [(5, true)]);
    // A lower term is refused with the voter's own.
    assert_eq!(votes(&ask(&mut node, at(4), 2, 4)), [(5, false)]);
}

/// `ms` milliseconds after the window from a voter's start at zero through which, restarted
/// with its disk, it refuses every vote.
fn after_restart_window(ms: u64) -> Instant {
    Instant::ZERO + config(5).election.election_timeout_min + Duration::from_millis(ms)
}

#[test]
fn a_voter_restarted_with_its_disk_keeps_its_vote() {
    let mut node = voter(Some(Durable::new(3, 5, Some(NodeId(1)))));
    let _ = outputs(&mut node);
    let at = after_restart_window;
    assert_eq!(votes(&ask(&mut node, at(1), 2, 5)), [(5, false)], "it voted for n1 in term 5");
    assert_eq!(votes(&ask(&mut node, at(2), 2, 6)), [(6, true)]);
}

#[test]
fn a_voter_restarted_with_its_disk_refuses_every_vote_for_the_minimum_timeout_from_its_start() {
    // It may have acked a leader just before it stopped, and its ack may be part of that
    // leader's lease: it keeps the promise through the restart.
    let mut node = voter(Some(Durable::new(3, 5, None)));
    let _ = outputs(&mut node);
    let min = config(5).election.election_timeout_min;
    assert_eq!(votes(&ask(&mut node, Instant::ZERO + min - Duration::from_millis(1), 2, 6)), [(5, false)]);
    assert_eq!(node.term(), 5, "refused, as while it hears a leader: the asker's term is not taken up");
    assert_eq!(votes(&ask(&mut node, Instant::ZERO + min, 2, 6)), [(6, true)]);
    // A voter that never took part in an election has nothing to keep.
    let mut node = voter(Some(Durable::new(1, 0, None)));
    let _ = outputs(&mut node);
    assert_eq!(votes(&ask(&mut node, Instant::from_millis(1), 2, 1)), [(1, true)]);
}

#[test]
fn a_voter_that_lost_its_disk_waits_for_a_majority_of_terms_before_it_votes() {
    // Before the crash it voted in term 7 (lost with its disk). The others are at 6 or 7.
    let mut node = voter(None);
    let first = outputs(&mut node);
    assert!(first.iter().any(|o| matches!(o, Output::Persist(d) if d.abstaining)), "the wait is persisted");
    assert!(node.is_abstaining());
    // It refuses everyone while it waits, even a higher term.
    assert_eq!(votes(&ask(&mut node, Instant::from_millis(1), 2, 7)), [(7, false)]);
    // Reports from others (as answers to its pre-votes): n2 at 7 and n3 at 6.
    let report = |node: &mut Node, at: Instant, from: u64, term: u64| {
        let vote = Message::Vote { term, pre_vote: true, granted: false };
        node.handle_datagram(at, addr(from as usize), &datagram(NodeId(from), &vote)).expect("accepted");
        outputs(node)
    };
    let late = Instant::from_secs(1);
    let _ = report(&mut node, late, 2, 7);
    let _ = report(&mut node, late, 3, 6);
    assert!(node.is_abstaining(), "two reports of four others are not a majority of them");
    assert_eq!(votes(&ask(&mut node, late, 4, 8)), [(8, false)], "still waiting");
    // n4's request above reported term 8; with three reports it votes again, above them all.
    assert!(!node.is_abstaining());
    assert_eq!(node.term(), 8);
    assert_eq!(votes(&ask(&mut node, late, 4, 8)), [(8, false)], "term 8 is closed to it");
    assert_eq!(votes(&ask(&mut node, late, 4, 9)), [(9, true)]);
    // A second crash while it waited would have kept the wait: the flag is on disk.
    let again = voter(Some(Durable { abstaining: true, ..Durable::new(1, 0, None) }));
    assert!(again.is_abstaining());
}

#[test]
fn a_voter_that_lost_its_disk_does_not_end_its_wait_early() {
    let mut node = voter(None);
    let _ = outputs(&mut node);
    let early = Instant::from_millis(100);
    for from in 1..5 {
        let vote = Message::Vote { term: 3, pre_vote: true, granted: false };
        node.handle_datagram(early, addr(from), &datagram(NodeId(from as u64), &vote)).expect("accepted");
    }
    assert!(node.is_abstaining(), "a candidate's election may still be running");
}

#[test]
fn a_fresh_cluster_elects_although_every_voter_starts_without_a_disk() {
    // (Not told the cluster is new, every voter of it abstains first: nothing on an empty
    // disk tells a first start from a lost disk.)
    let mut c = Cluster::new(3, config(3), 7);
    run_checked(&mut c, Duration::from_secs(2));
    assert!(agreed_leader(&c).is_some());
}

#[test]
fn a_member_restarted_without_its_disk_rejoins_the_election_safely() {
    let mut c = Cluster::new(5, config(5), 8);
    run_checked(&mut c, Duration::from_secs(2));
    let leader = agreed_leader(&c).expect("a leader");
    let follower = ((leader.0 + 1) % 5) as usize;
    c.crash(follower);
    run_checked(&mut c, Duration::from_millis(500));
    c.restart(follower, false);
    run_checked(&mut c, Duration::from_secs(3));
    assert!(!c.node(follower).is_abstaining(), "it heard a majority's terms");
    assert_eq!(c.node(follower).leader(), Some(leader));
    // Then the leader goes: the restarted member takes part in the next election.
    c.crash(leader.0 as usize);
    run_checked(&mut c, Duration::from_secs(2));
    assert!(agreed_leader(&c).is_some_and(|l| l != leader));
}

#[test]
fn a_deposed_leader_learns_the_new_term_from_its_first_heartbeat_answer() {
    let mut node = voter(Some(Durable::new(1, 9, None)));
    let _ = outputs(&mut node);
    let stale = Message::Heartbeat { term: 4, seq: 7 };
    node.handle_datagram(Instant::from_millis(1), addr(3), &datagram(NodeId(3), &stale)).expect("accepted");
    let out = outputs(&mut node);
    let answers: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Transmit(t) => match wire::decode(&t.payload, 0, 1400) {
                Ok((_, m @ (Message::Vote { .. } | Message::HeartbeatAck { .. }))) => Some(m),
                _ => None,
            },
            _ => None,
        })
        .collect();
    // A refusal, not an ack: see the next test.
    assert_eq!(answers, [Message::Vote { term: 9, pre_vote: false, granted: false }], "the newer term");
    assert_eq!(node.leader(), None, "and the stale leader is not followed");
    // The leader it was steps down on that answer.
    let mut a = Alone::new(0, 3, 0, false);
    let (at, _) = a.elect();
    a.hear(at, 1, Message::Vote { term: 9, pre_vote: false, granted: false });
    assert!(matches!(a.election.role, super::Role::Follower));
    assert_eq!(a.election.term(), 9);
}

#[test]
fn a_forged_term_beyond_any_election_is_refused_and_changes_nothing() {
    let mut node = voter(Some(Durable::new(1, 3, None)));
    let _ = outputs(&mut node);
    for message in [
        Message::Heartbeat { term: u64::MAX, seq: 1 },
        Message::RequestVote { term: u64::MAX, pre_vote: false, transfer: false },
        Message::Vote { term: 1 << 62 | 1, pre_vote: false, granted: false },
        Message::TimeoutNow { term: u64::MAX },
    ] {
        let result = node.handle_datagram(Instant::from_millis(1), addr(2), &datagram(NodeId(2), &message));
        assert!(matches!(result, Err(wire::WireError::Invalid { .. })), "{message:?}: {result:?}");
        assert_eq!(node.term(), 3);
        assert!(outputs(&mut node).iter().all(|o| !matches!(o, Output::Persist(_))));
    }
}

#[test]
fn simultaneous_pre_candidates_yield_to_the_lowest_id_and_one_round_elects() {
    // Timeouts of 150-155 ms and 8 ms links: after the leader crashes, every follower
    // stands within a few ms of the others, before any request arrives. Without yielding
    // they all campaign and split the vote, round after round.
    let mut config = config(5);
    config.election.election_timeout_max = Duration::from_millis(155);
    for seed in 1..=5 {
        let mut c = Cluster::new(5, config.clone(), seed);
        c.latency = Duration::from_millis(8);
        run_checked(&mut c, Duration::from_secs(3));
        let old = agreed_leader(&c).expect("a leader");
        let term = c.node(old.0 as usize).term();
        c.crash(old.0 as usize);
        let crashed_at = c.now;
        run_checked(&mut c, Duration::from_secs(1));
        let new = agreed_leader(&c).expect("a new leader");
        assert_eq!(c.node(new.0 as usize).term(), term + 1, "seed {seed}: one round");
        let lowest = (0..5).map(NodeId).find(|&id| id != old).expect("a survivor");
        assert_eq!(new, lowest, "seed {seed}: the lowest id among the simultaneous pre-candidates");
        let elected =
            c.seen(|e| matches!(e, Event::LeaderElected { leader, .. } if *leader == new)).last().map(|s| s.at);
        assert!(elected.is_some_and(|at| at.saturating_duration_since(crashed_at) < Duration::from_millis(250)));
    }
}

#[test]
fn a_voter_that_just_heard_its_leader_never_stands_even_when_its_timer_comes_due() {
    // A voter restarted without its disk keeps its timer running through heartbeats (it
    // asks for terms with it). When its wait ends, that timer may come due moments after a
    // heartbeat it acked, and the ack is part of the leader's lease: standing then would let
    // a second leader in while the first holds its lease (a chaos seed found it).
    let mut node = voter(None);
    let _ = outputs(&mut node);
    node.handle_timeout(Instant::from_millis(500));
    let _ = outputs(&mut node);
    assert!(node.is_abstaining());
    let due = node.election_deadline().expect("its timer runs");
    let heard = due - Duration::from_millis(20);
    let beat = Message::Heartbeat { term: 1, seq: 1 };
    node.handle_datagram(heard, addr(1), &datagram(NodeId(1), &beat)).expect("accepted");
    for from in 2..5 {
        let vote = Message::Vote { term: 1, pre_vote: true, granted: false };
        node.handle_datagram(heard, addr(from), &datagram(NodeId(from as u64), &vote)).expect("accepted");
    }
    assert!(!node.is_abstaining(), "three of the four others reported: the wait is over");
    assert_eq!(node.election_deadline(), Some(due), "the timer the wait left");
    node.handle_timeout(due);
    let stood: Vec<u64> = outputs(&mut node)
        .iter()
        .filter_map(|o| match o {
            Output::Transmit(t) => match wire::decode(&t.payload, 0, 1400) {
                Ok((_, Message::RequestVote { term, .. })) => Some(term),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert!(stood.is_empty(), "stood 20 ms after hearing its leader: {stood:?}");
    assert_eq!(node.leader(), Some(NodeId(1)));
}

// ----- the operator's switch: what an empty disk is ------------------------------------

/// Voter n0 of five, started with `durable` and told `state` of the cluster.
fn voter_told(durable: Option<Durable>, state: Option<InitialClusterState>) -> Node {
    let mut config = NodeConfig::new(NodeId(0), addr(0), config(5), 9);
    config.durable = durable;
    config.initial_cluster_state = state;
    Node::new(config, Instant::ZERO).expect("valid")
}

/// `from` answers a term query (or a pre-vote) of `node`'s: it is at `term`.
fn answer(node: &mut Node, at: Instant, from: u64, term: u64) -> Vec<Output> {
    let vote = Message::Vote { term, pre_vote: true, granted: false };
    node.handle_datagram(at, addr(from as usize), &datagram(NodeId(from), &vote)).expect("accepted");
    outputs(node)
}

/// `from` asks `node` for a pre-vote for `term`, or queries its term (as a waiting voter does).
fn ask_pre_vote(node: &mut Node, at: Instant, from: u64, term: u64) -> Vec<Output> {
    let request = Message::RequestVote { term, pre_vote: true, transfer: false };
    node.handle_datagram(at, addr(from as usize), &datagram(NodeId(from), &request)).expect("accepted");
    outputs(node)
}

/// Every vote `node` sent, pre-votes included.
fn any_votes(outputs: &[Output]) -> usize {
    outputs
        .iter()
        .filter(|o| match o {
            Output::Transmit(t) => matches!(wire::decode(&t.payload, 0, 1400), Ok((_, Message::Vote { .. }))),
            _ => false,
        })
        .count()
}

#[test]
fn a_voter_told_its_cluster_is_new_votes_at_once_on_an_empty_disk() {
    let mut new = voter_told(None, Some(InitialClusterState::New));
    let first = outputs(&mut new);
    assert!(!new.is_abstaining());
    assert!(first.iter().all(|o| !matches!(o, Output::Persist(d) if d.abstaining)), "no wait persisted");
    assert_eq!(
        votes(&ask(&mut new, Instant::from_millis(1), 1, 1)),
        [(1, true)],
        "a first start has no vote to forget"
    );
    // Not told, the same voter on the same empty disk waits (a lost disk looks the same).
    let mut unsaid = voter(None);
    let _ = outputs(&mut unsaid);
    assert_eq!(votes(&ask(&mut unsaid, Instant::from_millis(1), 1, 1)), [(1, false)]);
}

#[test]
fn a_voter_told_its_cluster_exists_answers_nobody_and_counts_no_waiting_voters_query() {
    let mut node = voter_told(None, Some(InitialClusterState::Existing));
    let first = outputs(&mut node);
    assert!(first.iter().any(|o| matches!(o, Output::Persist(d) if d.abstaining)), "the wait is persisted");
    assert!(node.is_abstaining());
    // It answers no request, so that voters waiting with it learn no term from it.
    assert_eq!(any_votes(&ask(&mut node, Instant::from_millis(1), 2, 1)), 0);
    let late = Instant::from_secs(1);
    // Term queries from all four others (the others might all be waiting too, after a
    // majority lost their disks): not reports.
    for from in 1..5 {
        assert_eq!(any_votes(&ask_pre_vote(&mut node, late, from, 3)), 0, "silent to n{from}");
    }
    assert!(node.is_abstaining(), "a query from a voter that may wait too is no report");
    // The same queries end the wait of a voter not told anything (the default, as before).
    let mut unsaid = voter(None);
    let _ = outputs(&mut unsaid);
    for from in 1..5 {
        let _ = ask_pre_vote(&mut unsaid, late, from, 3);
    }
    assert!(!unsaid.is_abstaining());
    // Answers from voters that vote are reports: n2 at 7, n3 at 6 (n2's candidacy of term 1
    // reported 1 already, its answer raises that), then n4 at 8: three of four others.
    let _ = answer(&mut node, late, 2, 7);
    let _ = answer(&mut node, late, 3, 6);
    assert!(node.is_abstaining(), "n2 and n3 are two of four others, no majority of them");
    let _ = answer(&mut node, late, 4, 8);
    assert!(!node.is_abstaining(), "a majority of the others reported");
    assert_eq!(node.term(), 8);
    assert_eq!(votes(&ask(&mut node, late, 4, 8)), [(8, false)], "the highest term reported is closed to it");
    assert_eq!(votes(&ask(&mut node, late, 4, 9)), [(9, true)]);
}

#[test]
fn a_voter_told_its_cluster_exists_waits_for_the_operator_when_too_few_report() {
    let mut node = voter_told(None, Some(InitialClusterState::Existing));
    let _ = outputs(&mut node);
    // One candidacy heard (term 7), and the operator's word long before the wait is over.
    assert_eq!(any_votes(&ask(&mut node, Instant::from_millis(1), 2, 7)), 0);
    for at in [100, 1000, 5000] {
        let _ = answer(&mut node, Instant::from_millis(at), 2, 7);
        node.handle_timeout(Instant::from_millis(at));
        let _ = outputs(&mut node);
        assert!(node.is_abstaining(), "at {at} ms: one report of four others");
    }
    let resumed = Instant::from_millis(5001);
    node.handle_command(resumed, Command::ResumeVoting).expect("accepted");
    let out = outputs(&mut node);
    assert!(!node.is_abstaining());
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Persist(d) if !d.abstaining && d.term == 7 && d.voted_for == Some(NodeId(0)))),
        "the end of the wait is persisted, term 7 closed: {out:?}"
    );
    assert_eq!(votes(&ask(&mut node, resumed, 3, 7)), [(7, false)]);
    assert_eq!(votes(&ask(&mut node, resumed, 3, 8)), [(8, true)]);
    // On a voter that does not wait, the command changes nothing.
    node.handle_command(resumed, Command::ResumeVoting).expect("accepted");
    assert!(outputs(&mut node).is_empty());
}

#[test]
fn a_lone_voter_told_its_cluster_exists_never_ends_its_wait_by_itself() {
    // Its lost disk is a majority's: nobody can tell it the terms it voted in.
    let run = |state: Option<InitialClusterState>| {
        let mut config = NodeConfig::new(NodeId(0), addr(0), config(1), 9);
        config.initial_cluster_state = state;
        let mut node = Node::new(config, Instant::ZERO).expect("valid");
        let until = Instant::from_secs(5);
        while let Some(at) = node.poll_timeout().filter(|at| *at <= until) {
            node.handle_timeout(at);
            let _ = outputs(&mut node);
        }
        node
    };
    let told = run(Some(InitialClusterState::Existing));
    assert!(told.is_abstaining());
    assert_eq!(told.leader(), None);
    let unsaid = run(None);
    assert_eq!(unsaid.leader(), Some(NodeId(0)), "not told, it leads after its wait, as before");
    let mut told = told;
    let at = Instant::from_secs(5);
    told.handle_command(at, Command::ResumeVoting).expect("accepted");
    let until = at + Duration::from_secs(1);
    while let Some(next) = told.poll_timeout().filter(|next| *next <= until) {
        told.handle_timeout(next);
        let _ = outputs(&mut told);
    }
    assert_eq!(told.leader(), Some(NodeId(0)), "on the operator's word it leads");
}

#[test]
fn a_voter_with_its_disk_ignores_the_initial_cluster_state() {
    for state in [InitialClusterState::New, InitialClusterState::Existing] {
        let mut node = voter_told(Some(Durable::new(3, 5, Some(NodeId(1)))), Some(state));
        let _ = outputs(&mut node);
        assert!(!node.is_abstaining(), "{state}");
        let at = after_restart_window;
        assert_eq!(votes(&ask(&mut node, at(1), 2, 5)), [(5, false)], "{state}: it voted for n1");
        assert_eq!(votes(&ask(&mut node, at(2), 2, 6)), [(6, true)], "{state}");
    }
    // A wait persisted before a crash goes on, even if the operator now says `new`.
    let waiting = Durable { abstaining: true, ..Durable::new(1, 0, None) };
    let mut node = voter_told(Some(waiting), Some(InitialClusterState::New));
    let _ = outputs(&mut node);
    assert!(node.is_abstaining());
    assert_eq!(votes(&ask(&mut node, Instant::from_millis(1), 2, 1)), [(1, false)]);
}

#[test]
fn an_initial_cluster_state_on_a_member_that_does_not_vote_is_a_config_error() {
    let mut config = NodeConfig::new(NodeId(7), addr(7), config(5), 9);
    config.initial_cluster_state = Some(InitialClusterState::Existing);
    let Err(Error::Config(ConfigError::Election { why })) = Node::new(config.clone(), Instant::ZERO) else {
        panic!("n7 does not vote: an error");
    };
    assert!(why.contains("`existing` on n7, which is not one of the voters"), "{why}");
    config.initial_cluster_state = None;
    assert!(Node::new(config, Instant::ZERO).is_ok(), "a member that does not vote, told nothing");
}

/// Three voters elect; the leader and a follower crash and come back on empty disks, told
/// `state`, and run 5 s. The cluster, the two restarted, the survivor, the old term and
/// when they restarted.
fn majority_loses_its_disks(state: Option<InitialClusterState>) -> (Cluster, [usize; 2], usize, u64, Instant) {
    let mut c = Cluster::new(3, config(3), 11);
    run_checked(&mut c, Duration::from_secs(2));
    let leader = agreed_leader(&c).expect("a leader").0 as usize;
    let old_term = c.node(leader).term();
    let (follower, survivor) = ((leader + 1) % 3, (leader + 2) % 3);
    c.crash(leader);
    c.crash(follower);
    run_checked(&mut c, Duration::from_millis(500));
    c.restart_told(leader, false, state);
    c.restart_told(follower, false, state);
    let restarted_at = c.now;
    run_checked(&mut c, Duration::from_secs(5));
    (c, [leader, follower], survivor, old_term, restarted_at)
}

#[test]
fn a_majority_that_lost_its_disks_elects_on_the_operators_word_only_when_told_the_cluster_exists() {
    let (mut c, lost, survivor, old_term, restarted_at) = majority_loses_its_disks(Some(InitialClusterState::Existing));
    assert!(lost.iter().all(|&i| c.node(i).is_abstaining()), "one report of two others each");
    let elected_since = |c: &Cluster| {
        c.seen(|e| matches!(e, Event::LeaderElected { .. })).into_iter().filter(|s| s.at > restarted_at).count()
    };
    assert_eq!(elected_since(&c), 0, "nobody was elected without the operator");
    assert_eq!(c.node(survivor).term(), old_term, "and no term moved");
    for i in lost {
        c.command(i, Command::ResumeVoting);
    }
    run_checked(&mut c, Duration::from_secs(2));
    let new = agreed_leader(&c).expect("a leader after the operator's word");
    assert!(c.node(new.0 as usize).term() > old_term, "above every term the survivor reported");
    // Not told, the two end each other's wait with their reports (the default, as before):
    // safe only while a majority keep their disks, which here they did not.
    let (c, lost, _, _, restarted_at) = majority_loses_its_disks(None);
    assert!(lost.iter().all(|&i| !c.node(i).is_abstaining()));
    let elected = c.seen(|e| matches!(e, Event::LeaderElected { .. })).into_iter().filter(|s| s.at > restarted_at);
    assert!(elected.count() > 0, "elected without anyone's word");
}

// ----- the state machine alone, fed by hand ---------------------------------------------

/// One member's election on its own, among voters `0..voters`: messages in, outputs out.
struct Alone {
    election: super::Election,
    rng: rand_chacha::ChaCha8Rng,
    out: crate::outbox::Outbox,
    durable: Durable,
}

impl Alone {
    /// Member `me` of `voters` voters, started at zero on a disk holding `term`, or on an
    /// empty disk (`lost_disk`: it waits for a majority's terms before it votes).
    fn new(me: u64, voters: u64, term: u64, lost_disk: bool) -> Self {
        Self::on_disk(me, voters, Durable::new(1, term, None), lost_disk)
    }

    /// Member `me` of `voters` voters, started at zero on a disk holding `durable`.
    fn on_disk(me: u64, voters: u64, durable: Durable, lost_disk: bool) -> Self {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let election = super::Election::new(
            NodeId(me),
            config(voters).election,
            &durable,
            lost_disk,
            None,
            Instant::ZERO,
            &mut rng,
        );
        let out = crate::outbox::Outbox::new(Header { cluster_id: 0, sender: NodeId(me) }, 1400);
        Self { election, rng, out, durable }
    }

    fn at<R>(&mut self, now: Instant, f: impl FnOnce(&mut super::Election, &mut super::Ctx<'_>) -> R) -> R {
        let addrs = |id: NodeId| Some(addr(id.0 as usize));
        let mut ctx =
            super::Ctx { now, rng: &mut self.rng, out: &mut self.out, durable: &mut self.durable, addrs: &addrs };
        f(&mut self.election, &mut ctx)
    }

    fn hear(&mut self, now: Instant, from: u64, message: Message) {
        self.at(now, |e, ctx| e.on_message(ctx, NodeId(from), addr(from as usize), message));
    }

    fn timeout(&mut self, now: Instant) {
        self.at(now, |e, ctx| e.on_timeout(ctx));
    }

    /// The messages it sent since last asked.
    fn sent(&mut self) -> Vec<Message> {
        std::iter::from_fn(|| self.out.pop())
            .filter_map(|o| match o {
                Output::Transmit(t) => wire::decode(&t.payload, 0, 1400).ok().map(|(_, m)| m),
                _ => None,
            })
            .collect()
    }

    /// Leads until `until`: every heartbeat round that comes due is acked by n1 at once.
    fn lead_until(&mut self, until: Instant) {
        while let Some(due) = self.election.next_deadline().filter(|&d| d <= until) {
            self.timeout(due);
            for m in self.sent() {
                if let Message::Heartbeat { term, seq } = m {
                    self.hear(due, 1, Message::HeartbeatAck { term, seq });
                }
            }
        }
        self.timeout(until);
        assert!(matches!(self.election.role, super::Role::Leader(_)), "still leads");
    }

    /// Its election timer runs out: it asks n1 for a pre-vote and then a vote, both granted,
    /// and leads. Returns when it was elected and the number of the heartbeat round that
    /// went out then.
    fn elect(&mut self) -> (Instant, u64) {
        let due = self.election.next_deadline().expect("a voter's timer runs");
        self.timeout(due);
        let term = self.election.term();
        self.hear(due, 1, Message::Vote { term, pre_vote: true, granted: true });
        self.hear(due, 1, Message::Vote { term: term + 1, pre_vote: false, granted: true });
        assert!(matches!(self.election.role, super::Role::Leader(_)), "elected");
        let seq = self.sent().iter().find_map(|m| match m {
            Message::Heartbeat { seq, .. } => Some(*seq),
            _ => None,
        });
        (due, seq.expect("a first heartbeat round"))
    }
}

#[test]
fn the_lease_is_the_acked_rounds_send_time_plus_the_minimum_timeout_shrunk_by_the_drift_bound() {
    let mut a = Alone::new(0, 3, 0, false);
    let (round, seq) = a.elect();
    let config = config(3).election;
    assert!(!a.election.is_leaseholder(round), "no ack yet");
    a.hear(round + Duration::from_millis(1), 1, Message::HeartbeatAck { term: a.election.term(), seq });
    // Counted from when the acked round left, never from when the ack came back; shrunk so
    // that a leader's clock running slow and a voter's running fast, each by the bound, do
    // not let the lease outlast the voter's refusal to vote.
    let d = config.max_clock_drift;
    let until = round + config.election_timeout_min.mul_f64((1.0 - d) / (1.0 + d));
    assert!(until < round + config.election_timeout_min, "the drift bound shortens it");
    assert!(a.election.is_leaseholder(until - Duration::from_nanos(1)));
    assert!(!a.election.is_leaseholder(until), "the lease ends at `until`");
}

#[test]
fn a_leader_announces_itself_once_on_election_and_again_each_announce_interval() {
    let mut a = Alone::new(0, 3, 0, false);
    assert!(!a.election.take_announcement(), "a follower has nothing to announce");
    let (elected, _) = a.elect();
    assert!(a.election.take_announcement());
    assert!(!a.election.take_announcement(), "asking clears it");
    let every = config(3).election.leader_announce_interval;
    a.lead_until(elected + every - Duration::from_millis(1));
    assert!(!a.election.take_announcement(), "not yet due");
    a.lead_until(elected + every);
    assert!(a.election.take_announcement(), "due");
    assert!(!a.election.take_announcement());
}

#[test]
fn a_voter_that_lost_its_disk_queries_terms_only_after_its_first_wait() {
    let mut a = Alone::new(0, 3, 0, true);
    assert!(a.election.is_abstaining());
    let not_before = a.election.abstention.as_ref().expect("waits").not_before;
    a.at(not_before - Duration::from_millis(1), |e, ctx| e.stand(ctx, false));
    assert!(a.sent().is_empty(), "too early to ask");
    a.at(not_before, |e, ctx| e.stand(ctx, false));
    let asked = a.sent();
    assert!(
        !asked.is_empty() && asked.iter().all(|m| matches!(m, Message::RequestVote { term: 0, pre_vote: true, .. }))
    );
    // While it waits it grants no pre-vote, whatever the term asked for.
    a.hear(not_before, 1, Message::RequestVote { term: 1, pre_vote: true, transfer: false });
    assert_eq!(a.sent(), [Message::Vote { term: 0, pre_vote: true, granted: false }]);
}

#[test]
fn a_waiting_voter_keeps_the_leader_it_hears_and_forgets_one_it_stopped_hearing() {
    let mut a = Alone::new(0, 3, 0, true);
    let beat = Instant::from_millis(10);
    a.hear(beat, 1, Message::Heartbeat { term: 1, seq: 0 });
    assert_eq!(a.election.leader(), Some(NodeId(1)));
    let min = config(3).election.election_timeout_min;
    a.at(beat + min - Duration::from_millis(1), |e, ctx| e.stand(ctx, false));
    assert_eq!(a.election.leader(), Some(NodeId(1)), "heard within the minimum timeout");
    a.at(beat + min, |e, ctx| e.stand(ctx, false));
    assert_eq!(a.election.leader(), None, "no longer heard");
}

#[test]
fn messages_from_members_that_do_not_vote_are_ignored() {
    let mut a = Alone::new(0, 3, 0, false);
    a.hear(Instant::from_millis(1), 7, Message::RequestVote { term: 1, pre_vote: false, transfer: false });
    a.hear(Instant::from_millis(1), 7, Message::Heartbeat { term: 1, seq: 0 });
    assert!(a.sent().is_empty());
    assert_eq!((a.election.term(), a.election.leader()), (0, None));
    // A member that does not vote ignores the voters' messages too.
    let mut a = Alone::new(5, 3, 0, false);
    a.hear(Instant::from_millis(1), 1, Message::RequestVote { term: 1, pre_vote: false, transfer: false });
    assert!(a.sent().is_empty());
    assert_eq!(a.election.term(), 0);
}

#[test]
fn only_the_leader_of_the_voters_own_term_hands_over_and_not_to_a_waiting_voter() {
    let stands = |a: &mut Alone| a.sent().iter().any(|m| matches!(m, Message::RequestVote { transfer: true, .. }));
    let at = Instant::from_millis(20);
    let following = |me: u64, lost_disk: bool| {
        let mut a = Alone::new(me, 3, 0, lost_disk);
        a.hear(Instant::from_millis(10), 1, Message::Heartbeat { term: 2, seq: 0 });
        let _ = a.sent();
        a
    };
    let mut a = following(0, false);
    a.hear(at, 1, Message::TimeoutNow { term: 2 });
    assert!(stands(&mut a), "its leader, its term: it stands at once");
    let mut a = following(0, false);
    a.hear(at, 2, Message::TimeoutNow { term: 2 });
    assert!(!stands(&mut a), "not from its leader");
    let mut a = following(0, false);
    a.hear(at, 1, Message::TimeoutNow { term: 1 });
    a.hear(at, 1, Message::TimeoutNow { term: 3 });
    assert!(!stands(&mut a), "not in its term");
    assert_eq!(a.election.term(), 2);
    let mut a = following(0, true);
    assert!(a.election.is_abstaining());
    a.hear(at, 1, Message::TimeoutNow { term: 2 });
    assert!(!stands(&mut a), "a voter still waiting out the loss of its disk does not stand");
}

#[test]
fn a_pre_vote_for_the_voters_own_term_is_refused() {
    let mut a = Alone::new(0, 3, 4, false);
    let at = after_restart_window(1);
    a.hear(at, 1, Message::RequestVote { term: 4, pre_vote: true, transfer: false });
    a.hear(at, 2, Message::RequestVote { term: 5, pre_vote: true, transfer: false });
    assert_eq!(
        a.sent(),
        [
            Message::Vote { term: 4, pre_vote: true, granted: false },
            Message::Vote { term: 4, pre_vote: true, granted: true }
        ]
    );
    assert_eq!(a.election.term(), 4, "a pre-vote moves no term");
}

#[test]
fn a_candidate_asked_for_its_own_term_refuses_and_stays_a_candidate() {
    let mut a = Alone::new(0, 3, 0, false);
    let due = a.election.next_deadline().expect("runs");
    a.timeout(due);
    a.hear(due, 1, Message::Vote { term: 0, pre_vote: true, granted: true });
    assert!(matches!(a.election.role, super::Role::Candidate { .. }));
    let _ = a.sent();
    a.hear(due, 2, Message::RequestVote { term: 1, pre_vote: false, transfer: false });
    assert_eq!(a.sent(), [Message::Vote { term: 1, pre_vote: false, granted: false }], "it voted for itself");
    a.hear(due, 1, Message::Vote { term: 1, pre_vote: false, granted: true });
    assert!(matches!(a.election.role, super::Role::Leader(_)), "still counting its grants");
}

#[test]
fn a_refusal_from_a_later_term_ends_a_candidacy_and_one_from_its_own_term_does_not() {
    let candidate = || {
        let mut a = Alone::new(0, 5, 0, false);
        let due = a.election.next_deadline().expect("runs");
        a.timeout(due);
        a.hear(due, 1, Message::Vote { term: 0, pre_vote: true, granted: true });
        a.hear(due, 2, Message::Vote { term: 0, pre_vote: true, granted: true });
        assert!(matches!(a.election.role, super::Role::Candidate { .. }));
        (a, due)
    };
    let (mut a, due) = candidate();
    a.hear(due, 3, Message::Vote { term: 1, pre_vote: false, granted: false });
    a.hear(due, 1, Message::Vote { term: 1, pre_vote: false, granted: true });
    a.hear(due, 2, Message::Vote { term: 1, pre_vote: false, granted: true });
    assert!(matches!(a.election.role, super::Role::Leader(_)), "one refusal in its term changes nothing");
    let (mut a, due) = candidate();
    a.hear(due, 3, Message::Vote { term: 3, pre_vote: false, granted: false });
    assert!(matches!(a.election.role, super::Role::Follower));
    assert_eq!(a.election.term(), 3, "it learnt the later term");
    a.hear(due, 1, Message::Vote { term: 1, pre_vote: false, granted: true });
    a.hear(due, 2, Message::Vote { term: 1, pre_vote: false, granted: true });
    assert!(matches!(a.election.role, super::Role::Follower), "grants of the old term count no more");
    // A pre-candidate told of a later term by a refusal steps down to it too.
    let mut a = Alone::new(0, 5, 0, false);
    let due = a.election.next_deadline().expect("runs");
    a.timeout(due);
    assert!(matches!(a.election.role, super::Role::PreCandidate { .. }));
    a.hear(due, 1, Message::Vote { term: 0, pre_vote: true, granted: false });
    assert!(matches!(a.election.role, super::Role::PreCandidate { .. }), "a refusal at its own term");
    a.hear(due, 1, Message::Vote { term: 2, pre_vote: true, granted: false });
    assert!(matches!(a.election.role, super::Role::Follower));
    assert_eq!(a.election.term(), 2);
}

#[test]
fn an_answer_to_a_heartbeat_of_the_leaders_earlier_term_is_no_ack_of_this_term() {
    // The same member leads again, in the term of a voter that then gets a heartbeat of
    // its earlier term, delivered late, with the number of one of the new rounds.
    let mut a = Alone::new(0, 3, 0, false);
    let (first, _) = a.elect();
    let old_term = a.election.term();
    a.hear(first + Duration::from_millis(10), 2, Message::Heartbeat { term: old_term + 1, seq: 7 });
    let (later, seq) = a.elect();
    let term = a.election.term();
    let mut voter = Alone::new(1, 3, term, false);
    voter.hear(later, 0, Message::Heartbeat { term: old_term, seq });
    let answers = voter.sent();
    assert_eq!(answers, [Message::Vote { term, pre_vote: false, granted: false }], "a refusal, not an ack");
    for answer in answers {
        a.hear(later + Duration::from_millis(1), 1, answer);
    }
    assert!(matches!(a.election.role, super::Role::Leader(_)), "nothing to step down for: the same term");
    assert!(!a.election.is_leaseholder(later + Duration::from_millis(1)), "the answer counted as an ack");
    a.hear(later + Duration::from_millis(1), 1, Message::HeartbeatAck { term, seq });
    assert!(a.election.is_leaseholder(later + Duration::from_millis(1)));
}

impl Alone {
    /// The events it emitted since last asked (its other outputs are dropped).
    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.out.pop())
            .filter_map(|o| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn role(&self) -> &super::Role {
        &self.election.role
    }
}

#[test]
fn a_member_that_does_not_vote_follows_the_leader_gossip_names_once_per_term() {
    let mut a = Alone::new(5, 3, 0, false);
    let t = Instant::from_millis(1);
    let gossip = |a: &mut Alone, term, leader| a.at(t, |e, ctx| e.on_leader_gossip(ctx, term, NodeId(leader)));
    assert!(gossip(&mut a, 2, 1));
    assert_eq!((a.election.term(), a.election.leader()), (2, Some(NodeId(1))));
    assert_eq!(a.events(), [Event::LeaderElected { term: 2, leader: NodeId(1) }]);
    assert!(!gossip(&mut a, 2, 1), "the same news twice");
    assert!(!gossip(&mut a, 2, 0), "a term has one leader: the first heard is kept");
    assert!(!gossip(&mut a, 1, 0), "an earlier term");
    assert!(!gossip(&mut a, 3, 7), "a leader that does not vote");
    assert_eq!((a.election.term(), a.election.leader()), (2, Some(NodeId(1))));
    assert!(a.events().is_empty());
    // Forgotten (declared down), the leader of the same term is taken back from gossip.
    a.at(t, |e, ctx| e.on_member_down(ctx, NodeId(1)));
    assert!(gossip(&mut a, 2, 1), "its own term again, with no leader");
    // A voter learns the leader from the leader itself, never from gossip.
    let mut v = Alone::new(0, 3, 0, false);
    assert!(!gossip(&mut v, 2, 1));
    assert_eq!(v.election.leader(), None);
    // Nor does a member that left.
    let mut gone = Alone::new(5, 3, 0, false);
    gone.at(t, |e, ctx| e.retire(ctx));
    assert!(!gossip(&mut gone, 2, 1));
}

#[test]
fn a_member_that_does_not_vote_forgets_a_leader_declared_down_and_takes_it_back_if_it_returns() {
    let mut a = Alone::new(5, 3, 0, false);
    let t = Instant::from_millis(1);
    a.at(t, |e, ctx| e.on_leader_gossip(ctx, 2, NodeId(1)));
    let _ = a.events();
    a.at(t, |e, ctx| e.on_member_down(ctx, NodeId(2)));
    assert_eq!((a.election.leader(), a.election.forgotten_leader()), (Some(NodeId(1)), None), "not its leader");
    a.at(t, |e, ctx| e.on_member_down(ctx, NodeId(1)));
    assert_eq!((a.election.leader(), a.election.forgotten_leader()), (None, Some(NodeId(1))));
    assert_eq!(a.events(), [Event::LeaderLost { term: 2 }]);
    a.at(t, |e, ctx| e.on_member_up(ctx, NodeId(2)));
    assert_eq!(a.election.leader(), None, "another member's return changes nothing");
    a.at(t, |e, ctx| e.on_member_up(ctx, NodeId(1)));
    assert_eq!((a.election.leader(), a.election.forgotten_leader()), (Some(NodeId(1)), None));
    assert_eq!(a.events(), [Event::LeaderElected { term: 2, leader: NodeId(1) }]);
    // Once another leader is heard of, the forgotten one is no longer remembered.
    a.at(t, |e, ctx| e.on_member_down(ctx, NodeId(1)));
    a.at(t, |e, ctx| e.on_leader_gossip(ctx, 3, NodeId(2)));
    assert_eq!(a.election.forgotten_leader(), None);
    // A voter follows the leader it hears, whatever the membership says.
    let mut v = Alone::new(0, 3, 0, false);
    v.hear(t, 1, Message::Heartbeat { term: 2, seq: 0 });
    v.at(t, |e, ctx| e.on_member_down(ctx, NodeId(1)));
    assert_eq!((v.election.leader(), v.election.forgotten_leader()), (Some(NodeId(1)), None));
}

#[test]
fn a_leader_remembers_its_last_rounds_and_counts_acks_of_those_only() {
    let mut a = Alone::new(0, 3, 0, false);
    let (elected, first) = a.elect();
    let every = config(3).election.heartbeat_interval;
    // Rounds go out unacked (CheckQuorum would depose it after an election timeout, so the
    // clock is not moved that far): ROUNDS_KEPT more after the first.
    let mut seqs = vec![first];
    for _ in 0..super::ROUNDS_KEPT {
        let Some(Message::Heartbeat { seq, .. }) = ({
            let at = elected;
            a.at(at, |e, ctx| e.heartbeat_round(ctx));
            a.sent().into_iter().next()
        }) else {
            panic!("a round went out")
        };
        seqs.push(seq);
    }
    let term = a.election.term();
    let now = elected + every;
    a.hear(now, 1, Message::HeartbeatAck { term, seq: seqs[0] });
    assert!(!a.election.is_leaseholder(now), "the first round is forgotten");
    a.hear(now, 1, Message::HeartbeatAck { term, seq: seqs[1] });
    assert!(a.election.is_leaseholder(now), "the oldest round kept");
}

#[test]
fn a_leader_refuses_every_vote_and_keeps_leading_and_steps_down_only_for_a_later_term() {
    let mut a = Alone::new(0, 3, 0, false);
    let (at, _) = a.elect();
    let term = a.election.term();
    a.hear(at, 1, Message::RequestVote { term: term + 1, pre_vote: true, transfer: false });
    a.hear(at, 2, Message::RequestVote { term: term + 1, pre_vote: false, transfer: false });
    assert_eq!(
        a.sent(),
        [
            Message::Vote { term, pre_vote: true, granted: false },
            Message::Vote { term, pre_vote: false, granted: false }
        ]
    );
    assert!(matches!(a.role(), super::Role::Leader(_)));
    a.hear(at, 1, Message::HeartbeatAck { term: term - 1, seq: 0 });
    assert!(matches!(a.role(), super::Role::Leader(_)), "an ack of an earlier term deposes nobody");
    a.hear(at, 1, Message::HeartbeatAck { term: term + 1, seq: 0 });
    assert!(matches!(a.role(), super::Role::Follower));
    assert_eq!(a.election.term(), term + 1);
    let min = config(3).election.election_timeout_min;
    assert!(a.election.next_deadline().is_some_and(|d| d >= at + min), "not back in the running at once");
}

#[test]
fn a_follower_hears_its_leader_for_the_minimum_timeout_after_each_heartbeat() {
    let mut a = Alone::new(0, 3, 0, false);
    let heard = Instant::from_millis(10);
    a.hear(heard, 1, Message::Heartbeat { term: 1, seq: 0 });
    let min = config(3).election.election_timeout_min;
    assert!(a.election.next_deadline().is_some_and(|d| d >= heard + min), "its timer starts again");
    // The heartbeat closes the term to anyone else: the vote it would have cast.
    assert_eq!((a.durable.term, a.durable.voted_for), (1, Some(NodeId(1))));
    let _ = a.sent();
    let ask = |a: &mut Alone, at| {
        a.hear(at, 2, Message::RequestVote { term: 2, pre_vote: true, transfer: false });
        a.sent()
    };
    assert_eq!(
        ask(&mut a, heard + min - Duration::from_nanos(1)),
        [Message::Vote { term: 1, pre_vote: true, granted: false }]
    );
    assert_eq!(ask(&mut a, heard + min), [Message::Vote { term: 1, pre_vote: true, granted: true }]);
    // A voter that voted in the term keeps that vote when it hears the leader.
    let mut b = Alone::new(0, 3, 0, false);
    b.hear(heard, 2, Message::RequestVote { term: 1, pre_vote: false, transfer: false });
    b.hear(heard, 1, Message::Heartbeat { term: 1, seq: 0 });
    assert_eq!((b.durable.term, b.durable.voted_for), (1, Some(NodeId(2))));
}

#[test]
fn a_hand_over_goes_to_the_voter_named_or_else_to_the_one_that_acked_last() {
    // n0 leads three voters; n2 acked its first round. Whom its TimeoutNow goes to.
    let target = |to: Option<u64>| {
        let mut a = Alone::new(0, 3, 0, false);
        let (at, seq) = a.elect();
        let term = a.election.term();
        a.hear(at, 2, Message::HeartbeatAck { term, seq });
        let now = at + Duration::from_millis(1);
        assert!(a.election.is_leaseholder(now));
        assert!(a.at(now, |e, ctx| e.transfer(ctx, to.map(NodeId))), "it led");
        assert!(!a.election.is_leaseholder(now), "the lease ends at once");
        let max = config(3).election.election_timeout_max;
        assert_eq!(a.election.next_deadline(), Some(now + max), "back in the running after the successor's chance");
        std::iter::from_fn(|| a.out.pop())
            .find_map(|o| match o {
                Output::Transmit(t)
                    if matches!(wire::decode(&t.payload, 0, 1400), Ok((_, Message::TimeoutNow { .. }))) =>
                {
                    t.to_id
                }
                _ => None,
            })
            .expect("a TimeoutNow")
    };
    assert_eq!(target(Some(1)), NodeId(1), "the voter named");
    assert_eq!(target(Some(0)), NodeId(2), "not to itself: to the last that acked");
    assert_eq!(target(Some(7)), NodeId(2), "not to a member that does not vote");
    assert_eq!(target(None), NodeId(2));
    // A member that does not lead hands nothing over.
    let mut a = Alone::new(0, 3, 0, false);
    assert!(!a.at(Instant::from_millis(1), |e, ctx| e.transfer(ctx, Some(NodeId(1)))));
    assert!(a.sent().is_empty());
}

#[test]
fn a_voter_that_lost_its_disk_ends_its_wait_at_its_first_moment_with_a_majoritys_terms() {
    let mut a = Alone::new(0, 5, 0, true);
    let config = config(5).election;
    let not_before = a.election.abstention.as_ref().expect("waits").not_before;
    assert_eq!(
        not_before,
        Instant::ZERO + config.election_timeout_max.mul_f64(1.0 + 2.0 * config.max_clock_drift),
        "the longest timeout on a clock running fast by the bound"
    );
    let early = Instant::from_millis(1);
    a.hear(early, 1, Message::Heartbeat { term: 3, seq: 0 });
    a.hear(early, 2, Message::Vote { term: 4, pre_vote: true, granted: false });
    a.hear(early, 3, Message::Vote { term: 2, pre_vote: true, granted: false });
    assert!(a.election.is_abstaining(), "reports enough, but too early");
    a.at(not_before - Duration::from_nanos(1), |e, ctx| e.stand(ctx, false));
    assert!(a.election.is_abstaining());
    a.at(not_before, |e, ctx| e.stand(ctx, false));
    assert!(!a.election.is_abstaining(), "waited, and a majority of the others reported");
    // The highest term reported is its own now, closed with a vote for itself; the leader
    // of an earlier term is forgotten.
    assert_eq!((a.durable.term, a.durable.voted_for, a.durable.abstaining), (4, Some(NodeId(0)), false));
    assert_eq!(a.election.leader(), None);
    // At its own term, a waiting voter keeps the vote its disk holds.
    let mut b = Alone::on_disk(0, 5, Durable { abstaining: true, ..Durable::new(1, 5, Some(NodeId(2))) }, false);
    assert!(b.election.is_abstaining());
    b.at(Instant::from_millis(1), |e, ctx| e.resume_voting(ctx));
    assert_eq!((b.durable.term, b.durable.voted_for), (5, Some(NodeId(2))));
    // A member that left does not take the operator's word to vote again.
    let mut c = Alone::new(0, 5, 0, true);
    c.at(early, |e, ctx| e.retire(ctx));
    c.at(early, |e, ctx| e.resume_voting(ctx));
    assert!(c.election.is_abstaining());
}

#[test]
fn a_candidate_counts_only_grants_of_its_own_term_and_a_pre_candidate_only_pre_vote_grants() {
    let mut a = Alone::new(0, 5, 0, false);
    let due = a.election.next_deadline().expect("runs");
    a.timeout(due);
    for from in [1, 2] {
        a.hear(due, from, Message::Vote { term: 0, pre_vote: true, granted: false });
        a.hear(due, from, Message::Vote { term: 0, pre_vote: false, granted: true });
    }
    assert!(matches!(a.role(), super::Role::PreCandidate { .. }), "refusals and votes are not pre-vote grants");
    for from in [1, 2] {
        a.hear(due, from, Message::Vote { term: 0, pre_vote: true, granted: true });
    }
    assert!(matches!(a.role(), super::Role::Candidate { .. }));
    let term = a.election.term();
    for from in [1, 2] {
        a.hear(due, from, Message::Vote { term, pre_vote: false, granted: false });
        a.hear(due, from, Message::Vote { term, pre_vote: true, granted: true });
    }
    for from in [3, 4] {
        a.hear(due, from, Message::Vote { term: term - 1, pre_vote: false, granted: true });
    }
    assert!(matches!(a.role(), super::Role::Candidate { .. }), "refusals, pre-votes, grants of another term");
    for from in [1, 2] {
        a.hear(due, from, Message::Vote { term, pre_vote: false, granted: true });
    }
    assert!(matches!(a.role(), super::Role::Leader(_)));
}

#[test]
fn a_lone_voter_leads_on_its_own_rounds() {
    let mut a = Alone::new(0, 1, 0, false);
    let due = a.election.next_deadline().expect("runs");
    a.timeout(due);
    assert!(matches!(a.role(), super::Role::Leader(_)), "a majority of one");
    assert!(a.election.is_leaseholder(due), "its own latest round is the majority's");
}

#[test]
fn a_candidate_that_hears_the_leader_of_its_term_follows_it_and_keeps_its_own_vote() {
    let mut a = Alone::new(0, 5, 0, false);
    let due = a.election.next_deadline().expect("runs");
    a.timeout(due);
    for from in [1, 2] {
        a.hear(due, from, Message::Vote { term: 0, pre_vote: true, granted: true });
    }
    let term = a.election.term();
    assert!(matches!(a.role(), super::Role::Candidate { .. }));
    a.hear(due, 3, Message::Heartbeat { term, seq: 0 });
    assert!(matches!(a.role(), super::Role::Follower), "someone else won its term");
    assert_eq!(a.election.leader(), Some(NodeId(3)));
    assert_eq!((a.durable.term, a.durable.voted_for), (term, Some(NodeId(0))), "the vote it cast stays cast");
    for from in [1, 2] {
        a.hear(due, from, Message::Vote { term, pre_vote: false, granted: true });
    }
    assert!(matches!(a.role(), super::Role::Follower), "late grants make no second leader of the term");
}

#[test]
fn a_waiting_voter_that_ends_its_wait_in_a_later_term_forgets_the_leader_it_heard() {
    let waiting = |reported: u64| {
        let mut a = Alone::new(0, 3, 0, true);
        let t = Instant::from_millis(1);
        a.hear(t, 1, Message::Heartbeat { term: 3, seq: 0 });
        a.hear(t, 2, Message::Vote { term: reported, pre_vote: true, granted: false });
        assert_eq!(a.election.leader(), Some(NodeId(1)));
        let _ = a.events();
        a.at(t + Duration::from_millis(1), |e, ctx| e.resume_voting(ctx));
        assert!(!a.election.is_abstaining());
        a
    };
    let mut a = waiting(4);
    assert_eq!((a.election.term(), a.election.leader()), (4, None), "a later term than its leader's");
    assert_eq!(a.events(), [Event::LeaderLost { term: 3 }]);
    let mut a = waiting(2);
    assert_eq!((a.election.term(), a.election.leader()), (3, Some(NodeId(1))), "its leader's term is the highest");
    assert!(a.events().is_empty());
}
