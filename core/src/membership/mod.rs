//! Membership: the rules of the view, and the pieces that keep it true.
//!
//! - [`precedence`](self::precedence): which of two claims about a member wins.
//! - `view`: the members, their order, the down index, the live count and the digest.
//! - `prober`: the monitoring ring, Phi Accrual detectors, direct and indirect probes,
//!   relays and their nacks.
//! - `awareness`: Lifeguard's local health score.
//! - `suspicion`: Lifeguard's dynamic suspicion timeout, and the running suspicions.
//! - `dissemination`: gossip rounds and user broadcasts, over `broadcast`, the queue of
//!   updates that ride on every datagram.
//! - `anti_entropy`: digests along the ring, push-pull, syncs with strangers.
//! - `joiner`: joining through seeds.
//!
//! [`Node`](crate::Node) composes them.

pub(crate) mod anti_entropy;
pub(crate) mod awareness;
pub(crate) mod broadcast;
pub(crate) mod dissemination;
pub(crate) mod joiner;
pub(crate) mod prober;
pub(crate) mod suspicion;
pub(crate) mod view;

use crate::member::MemberState;

/// What a claim about a member does to the local view of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Stale or weaker: ignore it.
    Ignore,
    /// Same incarnation, same suspicion: count the accuser as a confirmation.
    Confirm,
    /// Newer: apply it.
    Apply,
}

/// SWIM's precedence with Lifeguard's refinements: a claim `(incarnation, state)` about a
/// member currently at `(current_incarnation, current)`.
///
/// - Alive needs a strictly higher incarnation (only the member itself bumps it).
/// - Suspect applies to a live member at an equal or higher incarnation; at an equal one
///   it confirms a running suspicion. Nothing suspects a failed or departed member.
/// - Failed applies to a live member at an equal or higher incarnation.
/// - Left applies to any member not already gone at an equal or higher incarnation, and
///   refines Failed (it did not fail, it left).
pub(crate) fn precedence(current: (u64, MemberState), claim: (u64, MemberState)) -> Verdict {
    use MemberState::{Alive, Failed, Left, Suspect};
    let ((cur_inc, cur), (inc, state)) = (current, claim);
    let apply = match state {
        Alive => inc > cur_inc,
        Suspect => match cur {
            Alive => inc >= cur_inc,
            Suspect if inc == cur_inc => return Verdict::Confirm,
            Suspect => inc > cur_inc,
            Failed | Left => false,
        },
        Failed => cur.is_live() && inc >= cur_inc,
        Left => cur != Left && inc >= cur_inc,
    };
    if apply {
        Verdict::Apply
    } else {
        Verdict::Ignore
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemberState::{Alive, Failed, Left, Suspect};
    use Verdict::{Apply, Confirm, Ignore};

    #[test]
    fn precedence_table() {
        type Claim = (u64, MemberState);
        // (current, claim, verdict)
        let table: &[(Claim, Claim, Verdict)] = &[
            ((1, Alive), (1, Alive), Ignore),
            ((1, Alive), (2, Alive), Apply),
            ((2, Alive), (1, Suspect), Ignore),
            ((1, Alive), (1, Suspect), Apply),
            ((1, Suspect), (1, Suspect), Confirm),
            ((1, Suspect), (2, Suspect), Apply),
            ((1, Suspect), (1, Alive), Ignore),
            ((1, Suspect), (2, Alive), Apply),
            ((1, Alive), (1, Failed), Apply),
            ((1, Suspect), (1, Failed), Apply),
            ((2, Alive), (1, Failed), Ignore),
            ((1, Failed), (1, Suspect), Ignore),
            ((1, Failed), (5, Suspect), Ignore),
            ((1, Failed), (1, Alive), Ignore),
            ((1, Failed), (2, Alive), Apply),
            ((1, Failed), (2, Failed), Ignore),
            ((1, Failed), (1, Left), Apply),
            ((1, Alive), (1, Left), Apply),
            ((2, Alive), (1, Left), Ignore),
            ((1, Left), (1, Failed), Ignore),
            ((1, Left), (9, Left), Ignore),
            ((1, Left), (2, Alive), Apply),
        ];
        for &(current, claim, expected) in table {
            assert_eq!(precedence(current, claim), expected, "{current:?} <- {claim:?}");
        }
    }
}
