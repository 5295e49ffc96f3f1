//! Which delivery state may move to which: the legal transitions of a message's life, as one pure
//! function, so a new writer (or a reviewer) can check a move against the whole map instead of
//! reading every worker.
//!
//! The map is what the fleet does today, gathered from every writer in
//! [`crate::messages::ledger`]:
//!
//! - the sender claims a dispatchable message (`sending`), defers it, holds it, sends it for
//!   approval or blocks it; from `sending` it records `sent`, `retrying`, `failed`, or `held` when
//!   a pause arrived between the claim and the provider call, and releases to `retrying` a claim
//!   whose process stopped before its provider call started;
//! - the pause release moves `held` back to `received`; an approval decision moves
//!   `awaiting_approval` to `received` or `blocked`;
//! - erasure and a sequence's rollback cancel a message that has not gone out;
//! - a provider callback only moves a message forward ([`DeliveryState::callback_rank`]): from
//!   before dispatch or `sent`/`unknown_delivery` to `sent` or a provider's final word;
//! - the reconciler moves `sent` to `unknown_delivery` when the provider never answered.
//!
//! `delivered`, `undelivered`, `failed`, `blocked` and `cancelled` are never left.

use super::DeliveryState;

/// Whether a message in `from` may move to `to`.
pub fn is_legal(from: DeliveryState, to: DeliveryState) -> bool {
    use DeliveryState::*;
    match (from, to) {
        // The sender's decisions on a message that has not gone out yet.
        (f, Sending | Deferred | Blocked) if f.is_dispatchable() => true,
        (Received | Deferred | Held | Retrying, AwaitingApproval) => true,
        (Received | Deferred | AwaitingApproval | Retrying, Held) => true,
        // Erasure, a sequence's rollback.
        (f, Cancelled) if f.is_dispatchable() => true,
        // The pause release; an approval.
        (Held | AwaitingApproval, Received) => true,
        // The provider's answer to a dispatch.
        (Sending, Sent | Retrying | Failed | Held) => true,
        // The reconciler: the provider never said.
        (Sent, UnknownDelivery) => true,
        // A provider callback moves a message forward only.
        (f, Sent | Delivered | Undelivered | Failed) => {
            matches!((f.callback_rank(), to.callback_rank()), (Some(a), Some(b)) if b > a)
        }
        _ => false,
    }
}

impl DeliveryState {
    /// Whether a message in this state may move to `to` ([`is_legal`]).
    pub fn may_move_to(self, to: DeliveryState) -> bool {
        is_legal(self, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryState::*;

    /// Every legal move, by source state. Anything not listed is illegal.
    #[rustfmt::skip]
    const TABLE: &[(DeliveryState, &[DeliveryState])] = &[
        (Received, &[Deferred, AwaitingApproval, Held, Sending, Blocked, Cancelled, Sent, Delivered, Undelivered, Failed]),
        (Deferred, &[Deferred, AwaitingApproval, Held, Sending, Blocked, Cancelled, Sent, Delivered, Undelivered, Failed]),
        (AwaitingApproval, &[Received, Deferred, Held, Sending, Blocked, Cancelled, Sent, Delivered, Undelivered, Failed]),
        (Held, &[Received, Deferred, AwaitingApproval, Sending, Blocked, Cancelled, Sent, Delivered, Undelivered, Failed]),
        (Retrying, &[Deferred, AwaitingApproval, Held, Sending, Blocked, Cancelled, Sent, Delivered, Undelivered, Failed]),
        (Sending, &[Sent, Retrying, Failed, Held]),
        (Sent, &[UnknownDelivery, Delivered, Undelivered, Failed]),
        (UnknownDelivery, &[Delivered, Undelivered, Failed]),
        (Delivered, &[]),
        (Undelivered, &[]),
        (Failed, &[]),
        (Blocked, &[]),
        (Cancelled, &[]),
    ];

    #[test]
    fn the_table_covers_every_state() {
        for state in DeliveryState::ALL {
            assert!(TABLE.iter().any(|(from, _)| from == state), "{state}");
        }
    }

    #[test]
    fn every_move_is_legal_exactly_when_the_table_says_so() {
        for (from, allowed) in TABLE {
            for to in DeliveryState::ALL {
                assert_eq!(is_legal(*from, *to), allowed.contains(to), "{from} → {to}");
            }
        }
    }

    /// The moves the ledger's fixed statements make (those whose states are in their SQL).
    #[test]
    fn the_ledgers_fixed_moves_are_legal() {
        let fixed: &[(&str, &[DeliveryState], DeliveryState)] = &[
            ("record::record_and_claim", &[Received], Sending),
            ("batch::mark_sent", &[Sending], Sent),
            ("batch::claim_released", &[Received], Sending),
            ("calls::release_unstarted", &[Sending], Retrying),
            ("moves::mark_unknown_delivery", &[Sent], UnknownDelivery),
            ("moves::release_held", &[Held], Received),
            ("moves::decide_approval", &[AwaitingApproval], Received),
            ("moves::decide_approval", &[AwaitingApproval], Blocked),
            (
                "moves::cancel_erased",
                DeliveryState::DISPATCHABLE,
                Cancelled,
            ),
            (
                "moves::cancel_sequence_unsent",
                DeliveryState::DISPATCHABLE,
                Cancelled,
            ),
        ];
        for (writer, from, to) in fixed {
            for state in *from {
                assert!(state.may_move_to(*to), "{writer}: {state} → {to}");
            }
        }
    }

    #[test]
    fn final_states_are_never_left() {
        for from in DeliveryState::FINAL.iter().chain([&Cancelled]) {
            for to in DeliveryState::ALL {
                assert!(!from.may_move_to(*to), "{from} → {to}");
            }
        }
    }
}
