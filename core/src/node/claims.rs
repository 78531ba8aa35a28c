//! Claims: how what a member hears about another (gossip, a push-pull record, its own
//! probe's outcome) moves the view, starts or ends a suspicion, queues the update for
//! others and tells the application. SWIM's precedence decides (see
//! `membership::precedence`); this is where its verdict is carried out.

use std::net::SocketAddr;

use crate::member::{Member, MemberState, NodeId, Tags};
use crate::membership::broadcast::Key;
use crate::membership::suspicion::Suspicion;
use crate::membership::{precedence, Verdict};
use crate::outbox::To;
use crate::output::Event;
use crate::wire::{Gossip, MemberRecord, Message};

use super::Node;

/// Incarnations at or above this are refused: no member bumps its incarnation this often,
/// and refusing them keeps a forged claim from pushing a member where it cannot refute.
pub(super) const MAX_INCARNATION: u64 = 1 << 62;

/// A claim about one member, from gossip, a push-pull record or a probe's outcome.
pub(super) struct Claim {
    id: NodeId,
    incarnation: u64,
    state: MemberState,
    /// Alive claims carry the member's address and tags.
    addr: Option<SocketAddr>,
    tags: Option<Tags>,
    /// Who accuses it (Suspect, Failed); the member itself otherwise.
    accuser: NodeId,
    /// Whether a member this claim introduces is gossiped on. Not when it comes from a
    /// whole-view exchange: the sender's side knows it already, and a new member re-gossiping
    /// the whole cluster it just learned would cost `n` updates per join.
    introduce: bool,
}

impl Claim {
    pub(super) fn accusation(id: NodeId, incarnation: u64, state: MemberState, accuser: NodeId) -> Self {
        Self { id, incarnation, state, addr: None, tags: None, accuser, introduce: true }
    }

    fn from_gossip(item: Gossip) -> Option<Self> {
        Some(match item {
            Gossip::Alive { id, incarnation, addr, tags } => Self {
                id,
                incarnation,
                state: MemberState::Alive,
                addr: Some(addr),
                tags: Some(tags),
                accuser: id,
                introduce: true,
            },
            Gossip::Suspect { id, incarnation, accuser } => {
                Self::accusation(id, incarnation, MemberState::Suspect, accuser)
            }
            Gossip::Failed { id, incarnation, accuser } => {
                Self::accusation(id, incarnation, MemberState::Failed, accuser)
            }
            Gossip::Leave { id, incarnation } => Self::accusation(id, incarnation, MemberState::Left, id),
            Gossip::UserBroadcast { .. } | Gossip::Leader { .. } => return None,
        })
    }
}

impl Node {
    pub(super) fn merge_gossip(&mut self, sender: NodeId, gossip: Vec<Gossip>) {
        for item in gossip {
            let key = Key::of(&item);
            match item {
                Gossip::UserBroadcast { origin, seq, payload } => {
                    self.dissemination.mark_holder(key, sender, &self.view);
                    self.deliver_broadcast(origin, seq, payload);
                }
                Gossip::Leader { term, leader, round } => {
                    if term > super::MAX_TERM {
                        self.out.refused_claim();
                        continue;
                    }
                    self.with_election(|e, ctx| e.on_leader_gossip(ctx, term, leader));
                    // Every member passes on an announcement newer than any it passed on
                    // (voters too: they are most of the members that hear it first).
                    if self.leader_gossiped.is_none_or(|(t, r, _)| (term, round) > (t, r)) {
                        self.leader_gossiped = Some((term, round, leader));
                        self.dissemination.push(Key::Leader, &Gossip::Leader { term, leader, round });
                    }
                    self.dissemination.mark_holder(key, sender, &self.view);
                }
                other => {
                    let Some(claim) = Claim::from_gossip(other) else { continue };
                    // A sender that told us exactly what we now hold needs no copy of it;
                    // one that told us something older still does.
                    if self.apply_claim(claim) {
                        self.dissemination.mark_holder(key, sender, &self.view);
                    }
                }
            }
        }
    }

    fn deliver_broadcast(&mut self, origin: NodeId, seq: u64, payload: Vec<u8>) {
        if !self.dissemination.first_delivery(origin, seq, self.now) {
            return;
        }
        let item = Gossip::UserBroadcast { origin, seq, payload: payload.clone() };
        self.dissemination.push(Key::User(origin, seq), &item);
        self.out.emit(Event::Broadcast { origin, payload });
    }

    /// A push-pull record is a claim, except that a remote verdict of Failed is only a
    /// suspicion here (as memberlist): this member runs its own timer before it agrees.
    pub(super) fn merge_record(&mut self, sender: NodeId, record: MemberRecord, introduce: bool) {
        let state = match record.state {
            MemberState::Failed => MemberState::Suspect,
            other => other,
        };
        if !self.view.contains(record.id) && state == MemberState::Suspect {
            if self.view.was_reaped(record.id, record.incarnation) {
                // A tombstone this member reaped and the sender has not yet.
                return;
            }
            // Learn it alive first, so that it can be suspected and time out here too.
            self.apply_claim(Claim {
                id: record.id,
                incarnation: record.incarnation,
                state: MemberState::Alive,
                addr: Some(record.addr),
                tags: Some(record.tags),
                accuser: record.id,
                introduce,
            });
            self.apply_claim(Claim::accusation(record.id, record.incarnation, state, sender));
            return;
        }
        let accuser = if state == MemberState::Suspect { sender } else { record.id };
        self.apply_claim(Claim {
            id: record.id,
            incarnation: record.incarnation,
            state,
            addr: Some(record.addr),
            tags: Some(record.tags),
            accuser,
            introduce,
        });
    }

    /// Applies one claim under SWIM's precedence, emitting events and re-gossiping what changed.
    ///
    /// Returns whether this member now holds exactly what the claim says (so whoever made
    /// it needs no copy of ours).
    pub(super) fn apply_claim(&mut self, claim: Claim) -> bool {
        if claim.incarnation >= MAX_INCARNATION {
            self.out.refused_claim();
            return false;
        }
        if claim.id == self.id {
            self.claim_about_me(&claim);
            return claim.state == MemberState::Alive && claim.incarnation == self.durable.incarnation;
        }
        if claim.addr == Some(self.addr) {
            // Another member at this member's own address is forged or stale; taking it
            // would make this member send to itself.
            self.out.refused_claim();
            return false;
        }
        let Some(current) = self.view.member(claim.id) else {
            return self.introduce(claim);
        };
        let conflicting = |addr: &SocketAddr| *addr != current.addr && current.state.is_live();
        if let Some(other) = claim.addr.filter(conflicting).filter(|_| claim.incarnation >= current.incarnation) {
            // A live member is where it is until it is held failed or has left: a claim
            // that puts it elsewhere is another process with its id (or a move that did not
            // wait), and taking it would hand the id back and forth (memberlist's conflict).
            let existing = current.clone();
            self.address_conflict(existing, other);
            return false;
        }
        if claim.addr.is_some_and(|addr| conflicting(&addr)) {
            // An older claim of it elsewhere (a past life's address): nothing to take.
            return false;
        }
        let claim = self.weigh_verdict(claim);
        let before = (current.incarnation, current.state);
        let said = (claim.incarnation, claim.state);
        match precedence(before, said) {
            Verdict::Ignore => before == said,
            Verdict::Confirm => {
                // Testimony from across a partition that just healed is not independent.
                if !self.is_revenant(claim.accuser) && self.suspicions.confirm(claim.id, claim.accuser) {
                    let item = Gossip::Suspect { id: claim.id, incarnation: claim.incarnation, accuser: claim.accuser };
                    self.dissemination.push(Key::Suspicion(claim.id, claim.accuser), &item);
                }
                true
            }
            Verdict::Apply => {
                self.change_state(claim);
                true
            }
        }
    }

    /// Another member's verdict of Failed is a verdict here only once this member's own
    /// suspicion of the accused has run its minimum timeout (so the accused had its chance to
    /// hear the claim and refute it) and this member does not hear the accused directly.
    /// Before that it confirms (or starts) the suspicion here. So a verdict made on the far
    /// side of a partition, arriving at the heal with the suspicion that led to it, does not
    /// cross into the side that could reach the accused all along: there it is a suspicion,
    /// and the accused refutes it. After a crash, every member's own suspicion has run by
    /// the time the first verdict spreads, give or take the gossip's lag.
    ///
    /// Nor is it a verdict when its accuser is a revenant (see [`Node::is_revenant`]): a
    /// member this one held failed was on the far side, and its verdicts are about members
    /// it could not reach, not about members that are gone.
    fn weigh_verdict(&self, mut claim: Claim) -> Claim {
        if claim.state != MemberState::Failed || claim.accuser == self.id {
            return claim;
        }
        let (min, _) = self.config.suspicion_timeouts(self.view.live());
        let ripe = self.suspicions.get(claim.id).is_some_and(|s| s.started() + min <= self.now);
        if !ripe || self.hears_directly(claim.id) || self.is_revenant(claim.accuser) {
            claim.state = MemberState::Suspect;
        }
        claim
    }

    /// Whether `accuser` is one this member holds failed, or held failed until less than a
    /// longest suspicion timeout ago: after a partition heals, what it says about the
    /// members of this side is what it could not see while cut off. Its claims still start
    /// suspicions here (a suspicion is a question, and the accused answers it), but neither
    /// confirm them nor count as verdicts.
    pub(super) fn is_revenant(&self, accuser: NodeId) -> bool {
        let Some(peer) = self.view.get(accuser) else { return false };
        if peer.member.state == MemberState::Failed {
            return true;
        }
        let (_, max) = self.config.suspicion_timeouts(self.view.live());
        peer.revived.is_some_and(|at| self.now < at + max)
    }

    /// Whether `id` is a ring neighbour that this member still hears from: anything from it
    /// within two of its probe periods (one lost ack or ping is no silence).
    fn hears_directly(&self, id: NodeId) -> bool {
        self.prober.hears(id, self.now, self.config.probe_period() * 2)
    }

    /// Reports that `existing`, live here, was claimed at `other` (once per address).
    pub(super) fn address_conflict(&mut self, existing: Member, other: SocketAddr) {
        self.out.conflict();
        if self.conflicts.get(&existing.id) == Some(&other) {
            return;
        }
        if self.conflicts.len() >= super::MAX_CONFLICTS_KEPT {
            self.conflicts.clear();
        }
        self.conflicts.insert(existing.id, other);
        trace_event!(warn, member = %existing.id, at = %existing.addr, claimed = %other, "address conflict");
        self.out.emit(Event::AddressConflict { existing, other });
    }

    /// A claim about a member not in the view: only an Alive one brings it in (the others
    /// name no address).
    fn introduce(&mut self, claim: Claim) -> bool {
        let (MemberState::Alive, Some(addr)) = (claim.state, claim.addr) else { return false };
        let member = Member {
            id: claim.id,
            addr,
            incarnation: claim.incarnation,
            state: MemberState::Alive,
            tags: claim.tags.unwrap_or_default(),
        };
        self.view.insert(member.clone(), self.now);
        if claim.introduce {
            self.dissemination.push(Key::Member(claim.id), &gossip_alive(&member));
        }
        self.out.emit(Event::MemberJoined(member));
        true
    }

    fn change_state(&mut self, claim: Claim) {
        let Some(change) =
            self.view.transition(claim.id, (claim.incarnation, claim.state), claim.addr, claim.tags, self.now)
        else {
            debug_assert!(false, "the caller looked the member up");
            return;
        };
        // Whatever the new state, the suspicion that ran (if one did) is over: a new one
        // starts below at a higher incarnation.
        if let Some(ended) = self.suspicions.end(claim.id) {
            self.forget_accusations(claim.id, &ended);
        }
        let member = change.member;
        let item = match claim.state {
            MemberState::Alive => gossip_alive(&member),
            MemberState::Suspect => {
                Gossip::Suspect { id: claim.id, incarnation: claim.incarnation, accuser: claim.accuser }
            }
            MemberState::Failed => {
                Gossip::Failed { id: claim.id, incarnation: claim.incarnation, accuser: claim.accuser }
            }
            MemberState::Left => Gossip::Leave { id: claim.id, incarnation: claim.incarnation },
        };
        match claim.state {
            MemberState::Suspect => {
                // A pending update of its state (a refutation, say) is out of date now.
                self.dissemination.remove(Key::Member(claim.id));
                self.dissemination.push(Key::Suspicion(claim.id, claim.accuser), &item);
            }
            _ => self.dissemination.push(Key::Member(claim.id), &item),
        }
        let event = match (change.old_state, claim.state) {
            (MemberState::Left, MemberState::Alive) => Event::MemberJoined(member),
            (MemberState::Suspect | MemberState::Failed, MemberState::Alive) => Event::MemberRecovered(member),
            (MemberState::Alive, MemberState::Alive) => {
                if !change.moved && !change.retagged {
                    return;
                }
                Event::MemberUpdated(member)
            }
            (old, MemberState::Suspect) => {
                self.suspicions.start(claim.id, claim.accuser, self.now, self.view.live(), &self.config);
                if claim.accuser != self.id {
                    self.ask_the_accused(claim.id, member.addr);
                }
                trace_event!(
                    info,
                    suspect = %claim.id,
                    incarnation = claim.incarnation,
                    accuser = %claim.accuser,
                    deadline = %self.suspicions.get(claim.id).map_or(self.now, |s| s.deadline()),
                    "holds suspect"
                );
                if old == MemberState::Suspect {
                    // A fresh suspicion at a higher incarnation: the member was already
                    // reported suspect.
                    return;
                }
                Event::MemberSuspected(member)
            }
            (_, MemberState::Failed) => {
                trace_event!(
                    warn,
                    failed = %claim.id,
                    incarnation = claim.incarnation,
                    accuser = %claim.accuser,
                    "holds failed"
                );
                Event::MemberFailed(member)
            }
            (_, MemberState::Left) => Event::MemberLeft(member),
        };
        self.out.emit(event);
    }

    /// Drops the pending accusations of a suspicion that is over: what ended it is the
    /// update to spread now.
    pub(super) fn forget_accusations(&mut self, id: NodeId, ended: &Suspicion) {
        for accuser in ended.accusers() {
            self.dissemination.remove(Key::Suspicion(id, accuser));
        }
    }

    /// A suspicion started here on another member's word: ping the accused once with the
    /// claim, unless a probe of it is running already. Its ack brings the refutation, or the
    /// incarnation that refuted it before. The ping carries nothing else: the accused may be
    /// gone, and an update sent there is a send wasted (at five members, one in four).
    fn ask_the_accused(&mut self, id: NodeId, addr: SocketAddr) {
        if !self.config.lifeguard.ask_the_accused || !self.is_active() || self.prober.is_probing(id) {
            return;
        }
        let Some(claim) = self.suspicion_claim(id) else { return };
        let seq = self.prober.next_seq();
        self.out.send(
            To::member(id, addr),
            &Message::Ping { seq, target: id, digest: None, quiet: false, gossip: vec![claim] },
        );
    }

    /// Claims about this member: refute whatever says it is not alive, and take any
    /// incarnation someone remembers above its own. A claim it refuted already means that
    /// the sender has not heard the refutation: it is gossiped afresh, so that this
    /// member's next datagrams (the ack to an accuser's ping first) carry it.
    fn claim_about_me(&mut self, claim: &Claim) {
        if !self.is_active() {
            return;
        }
        let mine = self.durable.incarnation;
        if let Some(addr) = claim.addr.filter(|&addr| {
            addr != self.addr && claim.state == MemberState::Alive && self.awaiting_view && claim.incarnation >= mine
        }) {
            // Joining, this member hears that a member with its id runs elsewhere, at an
            // incarnation it never had (a past life of its own, restarted at a new address,
            // is below the one it restarted at): the id is taken. The member that runs keeps
            // its place; this one stops.
            self.id_in_use(Member { addr, ..self.view.me().clone() }, claim.incarnation);
            return;
        }
        if claim.state != MemberState::Alive && claim.incarnation < mine {
            let item = gossip_alive(self.view.me());
            self.dissemination.push(Key::Member(self.id), &item);
            return;
        }
        let must_refute = match claim.state {
            MemberState::Alive => {
                claim.incarnation > mine || (claim.incarnation == mine && claim.addr.is_some_and(|a| a != self.addr))
            }
            // Test only: the broken protocol that the scenario catalog must catch.
            #[cfg(feature = "__broken_refutation")]
            MemberState::Suspect => false,
            _ => claim.incarnation >= mine,
        };
        if must_refute {
            trace_event!(
                info,
                claim = ?claim.state,
                incarnation = claim.incarnation,
                accuser = %claim.accuser,
                mine,
                "refutes a claim about itself"
            );
            self.prober.note_health(1);
            self.bump_incarnation(claim.incarnation.max(mine));
        }
    }

    /// Stops this member: its id is taken by `holder` (at `incarnation`). Nothing more is
    /// sent, not even a Leave, which would speak for the member that runs.
    fn id_in_use(&mut self, holder: Member, incarnation: u64) {
        trace_event!(error, holder = %holder.addr, incarnation, "id in use: stops");
        self.left = true;
        self.id_taken = true;
        self.awaiting_view = false;
        self.joiner.stop();
        self.prober.stop_probing();
        self.dissemination.clear();
        self.out.emit(Event::IdInUse { holder: Member { incarnation, ..holder } });
    }

    /// Moves this member's incarnation above `above`, persists it, then gossips it.
    pub(super) fn bump_incarnation(&mut self, above: u64) {
        let incarnation = above.saturating_add(1).min(MAX_INCARNATION - 1);
        self.durable.incarnation = incarnation;
        self.out.persist(self.durable.clone());
        let item = gossip_alive(self.view.set_incarnation(incarnation));
        self.dissemination.push(Key::Member(self.id), &item);
    }
}

fn gossip_alive(member: &Member) -> Gossip {
    Gossip::Alive { id: member.id, incarnation: member.incarnation, addr: member.addr, tags: member.tags.clone() }
}
