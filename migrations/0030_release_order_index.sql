-- Released messages keep their creation order per recipient: before a released message is
-- dispatched, the sender asks "is an older released message to this address on this channel
-- still on its way?" (`group/released.rs` `behind_older` for a group, `older_release_pending` on
-- the one-message path). Through `messages_contact_idx` that question read every older message
-- of the recipient, sent ones included, so a recipient's k-th released message read k-1 rows:
-- during the release of 100 held messages per recipient it cost 12 ms a group, as much as the
-- group's claim. This index holds only the released messages still on their way, in the order
-- the question walks; a message leaves it when it is sent, failed or cancelled, so the check
-- reads nothing at all in the common case. Measured in docs/benchmarks.md ("Release after a
-- pause").
CREATE INDEX messages_release_order_idx ON comms.messages (contact_id, channel, created_at, id)
    WHERE held_by_pause IS NOT NULL
      AND delivery_state IN ('held', 'received', 'retrying', 'deferred', 'sending');
