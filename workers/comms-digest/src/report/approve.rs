//! The owner's decisions on digests live in `comms_shared::digests::decide`, so `commsctl` and
//! the gateway's admin API use them without depending on this worker; re-exported here.

pub use comms_shared::digests::decide::{Approval, DecideError, approve, release};
