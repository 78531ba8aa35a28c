//! The roll call: while a member's picture shows anyone unreachable or in dispute, it asks
//! every expected member it holds alive for a round trip, and counts as reachable only those
//! that answered lately.
//!
//! The view alone cannot say who is on this side of a cut: a member is found unreachable
//! only by its watchers on the monitoring ring, and a member whose watchers are all across
//! the cut stays Alive in the view until the ring moves to it. Its silence is never
//! observed, so a decision on the view's picture can count it on this side (a decision on
//! part of the picture). The roll call observes everyone: a member counts as reachable
//! only on the evidence of a round trip (a ping from this member, its ack back) that began
//! within the last `fresh`, and as unreachable once it has had `answer_within` to answer
//! and did not. Until every member called has had its chance, nothing is decided.
//!
//! A round trip rather than any datagram heard: across a one-way cut one side hears the
//! other but cannot be heard, and judged on what it hears it would count the other side
//! as its own while that side counts it out. With round trips both sides of a one-way cut
//! see each other unreachable, and the same strategy gives both the same answer.
//!
//! A member is asked every `ask_every` until it answers or its time to answer is over, and
//! then again every `fresh / 2`; an answer counts from when its ping left, not when the ack
//! came back.
//!
//! The roll call costs a ping and an ack per member called and `fresh / 2`, so it pauses
//! once a decision is taken: the standings stay as they were, nobody is asked, and a member
//! held Failed for an hour (a tombstone) costs nothing. The partition watch resumes it when
//! its picture changes; every member is then asked afresh, and one that was missing stays
//! missing until it answers.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::member::NodeId;
use crate::time::Instant;

/// How the roll call paces itself.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timing {
    /// How often a member that has not answered is asked again.
    pub(crate) ask_every: Duration,
    /// How long a member has to answer before it counts as unreachable.
    pub(crate) answer_within: Duration,
    /// How long an answer is evidence that a member is reachable.
    pub(crate) fresh: Duration,
}

/// One member called.
#[derive(Clone, Copy, Debug, Default)]
struct Call {
    /// When the newest ping it answered left.
    answered: Option<Instant>,
    /// The picture it reported with that answer (see [`digest`]).
    picture: Option<u32>,
    /// When it was first asked in this roll call.
    first_asked: Option<Instant>,
    /// When it was last asked.
    last_asked: Option<Instant>,
    /// Missing when the roll call paused, and not heard since it resumed.
    was_missing: bool,
}

/// Where a member stands in the roll call at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    /// Answered a ping that left within `fresh`.
    Reachable,
    /// Had `answer_within` to answer, and no fresh answer.
    Missing,
    /// Not asked yet, or still within its time to answer.
    Pending,
}

/// The roll call of one member.
#[derive(Debug)]
pub(crate) struct RollCall {
    timing: Timing,
    /// Since when it is paused: standings are judged as of then, and nobody is asked.
    paused: Option<Instant>,
    calls: BTreeMap<NodeId, Call>,
    /// Pings out, by sequence number: to whom, and when each left.
    out: BTreeMap<u64, (NodeId, Instant)>,
}

impl RollCall {
    pub(crate) fn new(timing: Timing) -> Self {
        Self { timing, paused: None, calls: BTreeMap::new(), out: BTreeMap::new() }
    }

    /// Calls `members` (the expected members held alive, this one excepted), starting the
    /// roll call if it was not running. A member no longer among them is dropped.
    pub(crate) fn call(&mut self, members: &BTreeSet<NodeId>) {
        self.calls.retain(|id, _| members.contains(id));
        for &id in members {
            self.calls.entry(id).or_default();
        }
    }

    /// Stops: the picture is whole again. Answers from before do not count next time.
    pub(crate) fn stop(&mut self) {
        self.paused = None;
        self.calls.clear();
        self.out.clear();
    }

    /// Pauses at `now` (a decision was taken on the standings as they are).
    pub(crate) fn pause(&mut self, now: Instant) {
        self.paused.get_or_insert(now);
    }

    /// Resumes, if paused (and says whether it was): everyone is asked afresh; a member
    /// missing when it paused stays missing until it answers.
    pub(crate) fn resume(&mut self) -> bool {
        let Some(paused) = self.paused else { return false };
        let missing: BTreeSet<NodeId> = self.missing(paused).collect();
        self.paused = None;
        self.out.clear();
        for (id, call) in &mut self.calls {
            *call = Call { was_missing: missing.contains(id), ..Call::default() };
        }
        true
    }

    /// The members to ask now.
    pub(crate) fn due(&self, now: Instant) -> Vec<NodeId> {
        if self.paused.is_some() {
            return Vec::new();
        }
        self.calls.iter().filter(|(_, call)| self.next_ask(call) <= now).map(|(&id, _)| id).collect()
    }

    /// `id` was asked at `now` with the ping numbered `seq`.
    pub(crate) fn asked(&mut self, id: NodeId, seq: u64, now: Instant) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        call.first_asked.get_or_insert(now);
        call.last_asked = Some(now);
        self.out.insert(seq, (id, now));
        // A ping unanswered for longer than an answer counts is of no more use.
        let fresh = self.timing.fresh;
        self.out.retain(|_, (_, sent)| *sent + fresh > now);
    }

    /// An ack numbered `seq` from `sender`, which reported `picture`: whether it answered
    /// the roll call.
    pub(crate) fn on_ack(&mut self, sender: NodeId, seq: u64, picture: Option<u32>) -> bool {
        match self.out.get(&seq) {
            Some(&(id, sent)) if id == sender => {
                self.out.remove(&seq);
                let Some(call) = self.calls.get_mut(&id) else { return false };
                if call.answered.is_none_or(|a| a <= sent) {
                    call.answered = Some(sent);
                    call.picture = picture;
                    call.was_missing = false;
                }
                true
            }
            _ => false,
        }
    }

    /// Whether a member that counts as reachable last reported a picture other than
    /// `mine`.
    pub(crate) fn disagrees(&self, now: Instant, mine: Option<u32>) -> bool {
        self.calls.values().any(|call| self.standing(call, now) == Standing::Reachable && call.picture != mine)
    }

    /// The members called that have had their chance to answer and have no fresh answer.
    pub(crate) fn missing(&self, now: Instant) -> impl Iterator<Item = NodeId> + '_ {
        self.calls.iter().filter(move |(_, call)| self.standing(call, now) == Standing::Missing).map(|(&id, _)| id)
    }

    /// Whether a member called has not had its chance to answer yet.
    pub(crate) fn is_pending(&self, now: Instant) -> bool {
        self.calls.values().any(|call| self.standing(call, now) == Standing::Pending)
    }

    /// When, after `now`, the roll call next has something to do or a member's standing
    /// next changes.
    pub(crate) fn deadline(&self, now: Instant) -> Option<Instant> {
        if self.paused.is_some() {
            return None;
        }
        let changes = self.calls.values().filter_map(|call| match (call.answered, call.first_asked) {
            (Some(answered), _) => Some(answered + self.timing.fresh),
            (None, Some(first)) => Some(first + self.timing.answer_within),
            (None, None) => None,
        });
        let asks = self.calls.values().map(|call| self.next_ask(call).max(now));
        changes.filter(|&at| at > now).chain(asks).min()
    }

    fn standing(&self, call: &Call, now: Instant) -> Standing {
        // Paused, standings are what they were.
        let now = self.paused.map_or(now, |paused| paused.min(now));
        if call.answered.is_some_and(|a| a + self.timing.fresh > now) {
            Standing::Reachable
        } else if call.was_missing || call.first_asked.is_some_and(|f| f + self.timing.answer_within <= now) {
            Standing::Missing
        } else {
            Standing::Pending
        }
    }

    /// When `call` is next due a ping: at once if never asked; every `ask_every` while it
    /// has its chance to answer; after that (answered or not) every `fresh / 2`.
    fn next_ask(&self, call: &Call) -> Instant {
        let (Some(first), Some(last)) = (call.first_asked, call.last_asked) else { return Instant::ZERO };
        let again = last + self.timing.ask_every;
        if call.answered.is_none() && again < first + self.timing.answer_within {
            again
        } else {
            let renewal = call.answered.unwrap_or(last) + self.timing.fresh / 2;
            again.max(renewal)
        }
    }
}

/// A digest of a picture: of the members in it, in either state, in id order (FNV-1a over
/// their ids). Two members whose pictures name the same members report the same digest.
pub(crate) fn digest<'a>(members: impl Iterator<Item = &'a NodeId>) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for id in members {
        for byte in id.0.to_le_bytes() {
            hash = (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_picture_s_digest_is_fnv_1a_over_its_ids_and_tells_pictures_apart() {
        let ids = |v: &[u64]| v.iter().copied().map(NodeId).collect::<Vec<_>>();
        assert_eq!(digest(ids(&[]).iter()), 0x811c_9dc5, "FNV-1a's offset basis");
        assert_eq!(digest(ids(&[1]).iter()), 0x3e80_1244);
        assert_eq!(digest(ids(&[1, 2, 3]).iter()), 0x414c_d0a5);
        let pictures: [&[u64]; 6] = [&[1], &[2], &[1, 2], &[2, 3], &[1, 2, 3], &[4, 5]];
        let digests: BTreeSet<u32> = pictures.iter().map(|p| digest(ids(p).iter())).collect();
        assert_eq!(digests.len(), pictures.len(), "no two of these alike");
    }
}
