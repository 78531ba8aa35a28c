//! The view: every member this one knows, with the indexes and summaries that must always
//! agree with it.
//!
//! A [`View`] keeps, beside the members themselves, their ids in order (the monitoring
//! ring, and the order of `Node::members`), the index of members that are down (Failed or
//! Left), the count of live members and the digest of the live view. Every change goes
//! through [`View::insert`], [`View::transition`], [`View::set_incarnation`] or
//! [`View::reap`], and each keeps all of them true: nothing outside this module can let
//! them drift.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use indexmap::IndexMap;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxBuildHasher;

use crate::member::{Member, MemberState, NodeId, Tags};
use crate::time::Instant;

/// One known member, and when its state last changed.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) member: Member,
    /// When its state last changed.
    pub(crate) since: Instant,
    /// When it last came back from Failed (a refutation or a healed partition).
    pub(crate) revived: Option<Instant>,
}

/// What [`View::transition`] changed.
#[derive(Debug)]
pub(crate) struct Transition {
    /// The member as it is now.
    pub(crate) member: Member,
    /// Its state before.
    pub(crate) old_state: MemberState,
    /// Whether its address changed.
    pub(crate) moved: bool,
    /// Whether its tags changed.
    pub(crate) retagged: bool,
}

/// Every member known, this one included.
#[derive(Debug)]
pub(crate) struct View {
    me: NodeId,
    /// By id. A fixed-hash map in insertion order: lookups are O(1) (a thousand-member view
    /// is looked up for every gossip item), random draws index it directly, and iteration is
    /// the same on every run.
    peers: IndexMap<NodeId, Peer, FxBuildHasher>,
    /// The keys of `peers`, sorted: the ring.
    sorted: BTreeSet<NodeId>,
    /// The other members that are Failed or Left (tombstones): what reaping and the reach
    /// past the live view look at, without a scan of the whole view.
    down: BTreeSet<NodeId>,
    /// Members Alive or Suspect, this one included.
    live: usize,
    /// XOR of [`digest_term`] over the live members: equal live views, equal digests.
    digest: u64,
    /// Whether the live ring changed (a member came, went live or down, or moved) since
    /// [`View::take_ring_change`] was last asked.
    ring_changed: bool,
    /// The other members held Suspect.
    suspects: BTreeSet<NodeId>,
    /// Counts changes of membership and of members' states (not of incarnations alone):
    /// what the partition watch and the election look at.
    version: u64,
    /// Counts every change a reader of the members sees: a member comes or goes, or its
    /// state, incarnation, address or tags change (`Node::view_version`).
    changes: u64,
    /// Tombstones reaped within the last tombstone ttl: id, incarnation and when. A member
    /// that has not reaped one yet (each reaps at its own push-pull ticks) still passes it
    /// on in state transfers, and taking it back would give it a fresh time to live: it
    /// would bounce between the two for ever.
    reaped: BTreeMap<NodeId, (u64, Instant)>,
}

impl View {
    /// A view that holds only `me`, alive.
    pub(crate) fn new(me: Member, now: Instant) -> Self {
        let id = me.id;
        let digest = digest_term(id, me.incarnation);
        let mut peers = IndexMap::default();
        peers.insert(id, Peer { member: me, since: now, revived: None });
        Self {
            me: id,
            peers,
            sorted: BTreeSet::from([id]),
            down: BTreeSet::new(),
            live: 1,
            digest,
            ring_changed: false,
            suspects: BTreeSet::new(),
            version: 0,
            changes: 0,
            reaped: BTreeMap::new(),
        }
    }

    pub(crate) fn get(&self, id: NodeId) -> Option<&Peer> {
        self.peers.get(&id)
    }

    pub(crate) fn member(&self, id: NodeId) -> Option<&Member> {
        self.peers.get(&id).map(|p| &p.member)
    }

    pub(crate) fn contains(&self, id: NodeId) -> bool {
        self.peers.contains_key(&id)
    }

    /// This member's own entry.
    pub(crate) fn me(&self) -> &Member {
        &self.peers[&self.me].member
    }

    /// Every member, in id order.
    pub(crate) fn members(&self) -> impl Iterator<Item = &Member> + '_ {
        self.sorted.iter().filter_map(|id| self.peers.get(id)).map(|p| &p.member)
    }

    /// Every member, in the map's order (what a state transfer sends).
    pub(crate) fn members_unordered(&self) -> impl Iterator<Item = &Member> + '_ {
        self.peers.values().map(|p| &p.member)
    }

    /// How many members are known, tombstones included.
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// Members Alive or Suspect, this one included.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// The digest of the live view.
    pub(crate) fn digest(&self) -> u64 {
        self.digest
    }

    /// The other members held Failed or Left (tombstones).
    pub(crate) fn down(&self) -> &BTreeSet<NodeId> {
        &self.down
    }

    /// The other members held Suspect.
    pub(crate) fn suspects(&self) -> &BTreeSet<NodeId> {
        &self.suspects
    }

    /// Goes up whenever a member comes or goes or changes state.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Goes up whenever anything in [`View::members`] changes.
    pub(crate) fn changes(&self) -> u64 {
        self.changes
    }

    /// Whether the live ring changed since last asked; asking clears it.
    pub(crate) fn take_ring_change(&mut self) -> bool {
        std::mem::take(&mut self.ring_changed)
    }

    /// Makes room for about `total` members at once, rather than doubling the map's
    /// storage a dozen times while a large view arrives.
    pub(crate) fn reserve_for(&mut self, total: usize) {
        if total > self.peers.len() {
            self.peers.reserve(total - self.peers.len());
        }
    }

    /// Adds a member not known before, alive.
    pub(crate) fn insert(&mut self, member: Member, now: Instant) {
        debug_assert!(member.state == MemberState::Alive && !self.contains(member.id));
        self.live += 1;
        self.digest ^= digest_term(member.id, member.incarnation);
        self.ring_changed = true;
        self.version += 1;
        self.changes += 1;
        self.sorted.insert(member.id);
        self.reaped.remove(&member.id);
        self.peers.insert(member.id, Peer { member, since: now, revived: None });
    }

    /// Moves a known member to `(incarnation, state)`, and to `addr` and `tags` where
    /// given; `None` if it is not known.
    pub(crate) fn transition(
        &mut self,
        id: NodeId,
        (incarnation, state): (u64, MemberState),
        addr: Option<SocketAddr>,
        tags: Option<Tags>,
        now: Instant,
    ) -> Option<Transition> {
        let peer = self.peers.get_mut(&id)?;
        let (old_incarnation, old_state) = (peer.member.incarnation, peer.member.state);
        let moved = addr.is_some_and(|addr| addr != peer.member.addr);
        let retagged = tags.as_ref().is_some_and(|tags| *tags != peer.member.tags);
        peer.member.incarnation = incarnation;
        peer.member.state = state;
        if let Some(addr) = addr {
            peer.member.addr = addr;
        }
        if let Some(tags) = tags {
            peer.member.tags = tags;
        }
        if moved || retagged || old_incarnation != incarnation || old_state != state {
            self.changes += 1;
        }
        if old_state != state {
            peer.since = now;
            if old_state == MemberState::Failed && state.is_live() {
                peer.revived = Some(now);
            }
            self.version += 1;
            if id != self.me {
                if state == MemberState::Suspect {
                    self.suspects.insert(id);
                } else if old_state == MemberState::Suspect {
                    self.suspects.remove(&id);
                }
            }
        }
        let member = peer.member.clone();
        // Watches keep their peer's address.
        self.ring_changed |= moved;
        let (live_before, live_after) = (old_state.is_live(), state.is_live());
        if live_before {
            self.digest ^= digest_term(id, old_incarnation);
        }
        if live_after {
            self.digest ^= digest_term(id, incarnation);
        }
        if live_before != live_after {
            self.ring_changed = true;
            if live_after {
                self.live += 1;
                self.down.remove(&id);
            } else {
                self.live -= 1;
                if id != self.me {
                    self.down.insert(id);
                }
            }
        }
        Some(Transition { member, old_state, moved, retagged })
    }

    /// Sets this member's own incarnation.
    pub(crate) fn set_incarnation(&mut self, incarnation: u64) -> &Member {
        let me = &mut self.peers.get_mut(&self.me).expect("a view always holds its own member").member;
        if me.state.is_live() {
            self.digest ^= digest_term(self.me, me.incarnation) ^ digest_term(self.me, incarnation);
        }
        if me.incarnation != incarnation {
            self.changes += 1;
        }
        me.incarnation = incarnation;
        me
    }

    /// Sets this member's own tags.
    pub(crate) fn set_tags(&mut self, tags: Tags) {
        let me = &mut self.peers.get_mut(&self.me).expect("a view always holds its own member").member;
        if me.tags != tags {
            me.tags = tags;
            self.changes += 1;
        }
    }

    /// Forgets the tombstones whose state changed more than `ttl` before `now`, and
    /// returns their ids. Each is remembered as reaped for another `ttl` (see
    /// [`View::was_reaped`]).
    pub(crate) fn reap(&mut self, now: Instant, ttl: Duration) -> Vec<NodeId> {
        let horizon = now.saturating_sub(ttl);
        self.reaped.retain(|_, &mut (_, at)| at >= horizon);
        let gone: Vec<NodeId> =
            self.down.iter().copied().filter(|id| self.peers.get(id).is_some_and(|p| p.since < horizon)).collect();
        for id in &gone {
            if let Some(peer) = self.peers.swap_remove(id) {
                self.reaped.insert(*id, (peer.member.incarnation, now));
            }
            self.sorted.remove(id);
            self.down.remove(id);
        }
        if !gone.is_empty() {
            self.version += 1;
            self.changes += 1;
        }
        gone
    }

    /// Whether this view reaped the tombstone of `id` at `incarnation` or above within the
    /// last tombstone ttl: a claim that it is not alive, at that incarnation, is one this
    /// member is done with.
    pub(crate) fn was_reaped(&self, id: NodeId, incarnation: u64) -> bool {
        self.reaped.get(&id).is_some_and(|&(reaped, _)| incarnation <= reaped)
    }

    /// Up to `count` distinct random other members that pass `eligible`.
    ///
    /// Draws at random from all ids first (the eligible are usually most of them), and
    /// falls back to a scan of the eligible when draws keep missing.
    pub(crate) fn random_members(
        &self,
        rng: &mut ChaCha8Rng,
        count: usize,
        eligible: impl Fn(&Peer) -> bool,
    ) -> Vec<NodeId> {
        let mut chosen = Vec::with_capacity(count);
        if count == 0 || self.peers.len() < 2 {
            return chosen;
        }
        for _ in 0..count * 4 {
            let (&id, peer) = self.peers.get_index(rng.random_range(0..self.peers.len())).expect("drawn in range");
            if id != self.me && !chosen.contains(&id) && eligible(peer) {
                chosen.push(id);
                if chosen.len() == count {
                    return chosen;
                }
            }
        }
        let mut candidates: Vec<NodeId> = self
            .peers
            .values()
            .filter(|p| p.member.id != self.me && !chosen.contains(&p.member.id) && eligible(p))
            .map(|p| p.member.id)
            .collect();
        let wanted = (count - chosen.len()).min(candidates.len());
        // A partial Fisher-Yates shuffle: the first `wanted` are a uniform sample.
        for i in 0..wanted {
            let j = rng.random_range(i..candidates.len());
            candidates.swap(i, j);
        }
        chosen.extend_from_slice(&candidates[..wanted]);
        chosen
    }

    /// A random member held Failed, if any.
    pub(crate) fn random_failed(&self, rng: &mut ChaCha8Rng) -> Option<NodeId> {
        let failed: Vec<NodeId> = self
            .down
            .iter()
            .copied()
            .filter(|id| self.peers.get(id).is_some_and(|p| p.member.state == MemberState::Failed))
            .collect();
        (!failed.is_empty()).then(|| failed[rng.random_range(0..failed.len())])
    }

    /// This member's ring neighbours: its first `count` live predecessors (the peers it
    /// watches) and its first `count` live successors (the peers that watch it), each
    /// nearest first, wrapping round.
    pub(crate) fn neighbours(&self, count: usize, into: (&mut impl Extend<NodeId>, &mut impl Extend<NodeId>)) {
        let (before, after) = (self.sorted.range(..self.me), self.sorted.range(self.me..));
        self.first_live(before.clone().rev().chain(after.clone().rev()), count, into.0);
        self.first_live(after.chain(before), count, into.1);
    }

    fn first_live<'a>(&self, ids: impl Iterator<Item = &'a NodeId>, count: usize, into: &mut impl Extend<NodeId>) {
        let live = ids
            .filter(|&&id| id != self.me && self.peers.get(&id).is_some_and(|p| p.member.state.is_live()))
            .take(count)
            .copied();
        into.extend(live);
    }

    /// Checks every index and summary against the members, from scratch.
    #[cfg(test)]
    pub(crate) fn assert_consistent(&self) {
        let sorted: BTreeSet<NodeId> = self.peers.keys().copied().collect();
        assert_eq!(sorted, self.sorted, "the sorted ids drifted from the view");
        let down: BTreeSet<NodeId> = self
            .peers
            .values()
            .filter(|p| !p.member.state.is_live() && p.member.id != self.me)
            .map(|p| p.member.id)
            .collect();
        assert_eq!(down, self.down, "the index of failed and departed members drifted");
        let suspects: BTreeSet<NodeId> = self
            .peers
            .values()
            .filter(|p| p.member.state == MemberState::Suspect && p.member.id != self.me)
            .map(|p| p.member.id)
            .collect();
        assert_eq!(suspects, self.suspects, "the index of suspects drifted");
        let live = self.peers.values().filter(|p| p.member.state.is_live()).count();
        assert_eq!(live, self.live, "the live count drifted");
        let digest = self
            .peers
            .values()
            .filter(|p| p.member.state.is_live())
            .fold(0, |d, p| d ^ digest_term(p.member.id, p.member.incarnation));
        assert_eq!(digest, self.digest, "the incremental digest drifted");
    }
}

/// Member `id` at `127.0.0.1:(7000 + id)`, alive at incarnation 0, with no tags: for tests.
#[cfg(test)]
pub(crate) fn test_member(id: u64) -> Member {
    use std::net::{IpAddr, Ipv4Addr};
    let port = 7000 + u16::try_from(id).expect("test ids are small");
    Member {
        id: NodeId(id),
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        incarnation: 0,
        state: MemberState::Alive,
        tags: Tags::new(),
    }
}

/// One live member's share of the view digest: a SplitMix64 mix of its id and incarnation.
pub(crate) fn digest_term(id: NodeId, incarnation: u64) -> u64 {
    let mut z = id.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ incarnation.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::membership::view::test_member as member;

    fn view_of(n: u64) -> View {
        let mut view = View::new(member(1), Instant::ZERO);
        for id in 2..=n {
            view.insert(member(id), Instant::ZERO);
        }
        view
    }

    #[test]
    fn every_change_keeps_the_indexes_and_digest_true() {
        let mut view = view_of(6);
        view.assert_consistent();
        let t = Instant::from_secs(1);
        let steps: &[(u64, u64, MemberState)] = &[
            (3, 0, MemberState::Suspect),
            (3, 0, MemberState::Failed),
            (4, 2, MemberState::Alive),
            (5, 2, MemberState::Left),
            (3, 1, MemberState::Alive),
            (6, 0, MemberState::Failed),
        ];
        for &(id, incarnation, state) in steps {
            view.transition(NodeId(id), (incarnation, state), None, None, t).expect("known");
            view.assert_consistent();
        }
        assert_eq!(view.live(), 4);
        view.set_incarnation(9);
        view.assert_consistent();
        assert_eq!(view.reap(Instant::from_secs(2), Duration::ZERO), vec![NodeId(5), NodeId(6)]);
        view.assert_consistent();
        assert_eq!(view.len(), 4);
        assert!(view.transition(NodeId(5), (3, MemberState::Alive), None, None, t).is_none(), "reaped");
    }

    #[test]
    fn equal_live_views_have_equal_digests_whatever_the_history() {
        let mut a = view_of(4);
        let mut b = view_of(4);
        a.transition(NodeId(2), (0, MemberState::Suspect), None, None, Instant::ZERO);
        a.transition(NodeId(2), (1, MemberState::Alive), None, None, Instant::ZERO);
        b.transition(NodeId(2), (1, MemberState::Alive), None, None, Instant::ZERO);
        b.transition(NodeId(4), (0, MemberState::Failed), None, None, Instant::ZERO);
        assert_ne!(a.digest(), b.digest());
        a.transition(NodeId(4), (0, MemberState::Failed), None, None, Instant::ZERO);
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn the_ring_changes_only_when_the_live_set_or_an_address_does() {
        let mut view = view_of(3);
        assert!(view.take_ring_change());
        assert!(!view.take_ring_change(), "asking clears it");
        view.transition(NodeId(2), (0, MemberState::Suspect), None, None, Instant::ZERO);
        assert!(!view.take_ring_change(), "a suspect is still live");
        let elsewhere = "127.0.0.1:9".parse().expect("an address");
        view.transition(NodeId(2), (1, MemberState::Alive), Some(elsewhere), None, Instant::ZERO);
        assert!(view.take_ring_change(), "moved");
        view.transition(NodeId(3), (0, MemberState::Failed), None, None, Instant::ZERO);
        assert!(view.take_ring_change(), "went down");
    }

    #[test]
    fn neighbours_are_the_nearest_live_members_each_way_round_the_ring() {
        let mut view = View::new(member(4), Instant::ZERO);
        for id in [1, 2, 3, 5, 6, 7] {
            view.insert(member(id), Instant::ZERO);
        }
        view.transition(NodeId(3), (0, MemberState::Failed), None, None, Instant::ZERO);
        let (mut watched, mut watchers) = (Vec::new(), Vec::new());
        view.neighbours(3, (&mut watched, &mut watchers));
        assert_eq!(watched, [NodeId(2), NodeId(1), NodeId(7)]);
        assert_eq!(watchers, [NodeId(5), NodeId(6), NodeId(7)]);
    }

    /// The digest travels on pings and acks: every version must compute the same terms.
    /// SplitMix64's finalizer over `id * golden ratio ^ incarnation rotated by 32`; the
    /// first is SplitMix64's first output from seed 0, as published.
    #[test]
    fn digest_terms_are_golden() {
        let max = u64::MAX;
        for ((id, incarnation), term) in [
            ((1, 0), 0xe220_a839_7b1d_cdaf_u64),
            ((2, 5), 0x6555_c706_62e2_5629),
            ((max, max), 0xe4d9_7177_1b65_2c20),
            ((1000, 1), 0x2010_5c39_4d2d_be70),
        ] {
            assert_eq!(digest_term(NodeId(id), incarnation), term, "n{id} at {incarnation}");
        }
    }

    #[test]
    fn every_change_a_reader_sees_moves_the_change_count_and_nothing_else_does() {
        let mut view = view_of(3);
        let t = Instant::from_secs(1);
        let mut last = view.changes();
        let mut changed = |view: &View, what: &str, expected: bool| {
            assert_eq!(view.changes() != last, expected, "{what}");
            last = view.changes();
        };
        view.insert(test_member(4), t);
        changed(&view, "a new member", true);
        view.transition(NodeId(2), (0, MemberState::Alive), None, None, t);
        changed(&view, "the same state again", false);
        view.transition(NodeId(2), (1, MemberState::Alive), None, None, t);
        changed(&view, "an incarnation alone (not a version change)", true);
        let moved: SocketAddr = "10.0.0.9:1".parse().expect("an address");
        view.transition(NodeId(2), (1, MemberState::Alive), Some(moved), None, t);
        changed(&view, "an address", true);
        let tags: Tags = [("role".to_string(), "db".to_string())].into_iter().collect();
        view.transition(NodeId(2), (1, MemberState::Alive), Some(moved), Some(tags.clone()), t);
        changed(&view, "tags", true);
        view.transition(NodeId(2), (1, MemberState::Alive), Some(moved), Some(tags.clone()), t);
        changed(&view, "the same record again", false);
        view.transition(NodeId(2), (1, MemberState::Failed), None, None, t);
        changed(&view, "a state", true);
        view.set_incarnation(view.me().incarnation);
        changed(&view, "its own incarnation, unchanged", false);
        view.set_incarnation(view.me().incarnation + 1);
        changed(&view, "its own incarnation", true);
        view.set_tags(tags.clone());
        changed(&view, "its own tags", true);
        view.set_tags(tags);
        changed(&view, "its own tags, unchanged", false);
        let ttl = Duration::from_secs(1);
        view.reap(t + ttl + ttl, ttl);
        changed(&view, "a tombstone reaped", true);
    }

    #[test]
    fn a_tombstone_is_reaped_only_once_its_change_is_older_than_the_horizon() {
        let mut view = view_of(3);
        let at = Instant::from_secs(10);
        view.transition(NodeId(2), (0, MemberState::Failed), None, None, at);
        let ttl = Duration::from_secs(60);
        let version = view.version();
        assert!(view.reap(at + ttl, ttl).is_empty(), "changed at the horizon itself");
        assert_eq!(view.version(), version, "nothing reaped, nothing changed");
        let reaped_at = at + ttl + Duration::from_nanos(1);
        assert_eq!(view.reap(reaped_at, ttl), [NodeId(2)]);
        assert_eq!(view.version(), version + 1);
        assert!(!view.contains(NodeId(2)));
        // Remembered for a ttl, at its incarnation and below.
        assert!(view.was_reaped(NodeId(2), 0) && !view.was_reaped(NodeId(2), 1) && !view.was_reaped(NodeId(3), 0));
        view.reap(reaped_at + ttl, ttl);
        assert!(view.was_reaped(NodeId(2), 0));
        view.reap(reaped_at + ttl + Duration::from_nanos(1), ttl);
        assert!(!view.was_reaped(NodeId(2), 0), "forgotten a ttl later");
        // Back alive, it is no longer reaped.
        view.transition(NodeId(3), (0, MemberState::Failed), None, None, at);
        view.reap(reaped_at, ttl);
        assert!(view.was_reaped(NodeId(3), 0));
        let version = view.version();
        view.insert(member(3), reaped_at);
        assert!(!view.was_reaped(NodeId(3), 0));
        assert_eq!(view.version(), version + 1);
    }

    #[test]
    fn random_members_come_in_the_number_asked_when_few_are_eligible() {
        // Random draws mostly miss seven eligible among a hundred: the scan makes up the rest.
        let view = view_of(100);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for _ in 0..100 {
            let chosen = view.random_members(&mut rng, 6, |p| p.member.id.0 <= 8);
            let distinct: BTreeSet<NodeId> = chosen.iter().copied().collect();
            assert_eq!((chosen.len(), distinct.len()), (6, 6), "{chosen:?}");
            assert!(chosen.iter().all(|id| (2..=8).contains(&id.0)));
        }
        // A view of two: the other one.
        let two = view_of(2);
        assert_eq!(two.random_members(&mut rng, 3, |_| true), [NodeId(2)]);
    }

    #[test]
    fn random_members_are_distinct_others_that_pass_the_filter() {
        let mut view = view_of(10);
        view.transition(NodeId(5), (0, MemberState::Failed), None, None, Instant::ZERO);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..100 {
            let chosen = view.random_members(&mut rng, 4, |p| p.member.state.is_live());
            assert_eq!(chosen.len(), 4);
            let distinct: BTreeSet<NodeId> = chosen.iter().copied().collect();
            assert_eq!(distinct.len(), 4);
            assert!(!chosen.contains(&NodeId(1)) && !chosen.contains(&NodeId(5)));
        }
        assert_eq!(view.random_members(&mut rng, 20, |p| p.member.state.is_live()).len(), 8, "all the eligible");
        assert_eq!(view.random_failed(&mut rng), Some(NodeId(5)));
    }
}
