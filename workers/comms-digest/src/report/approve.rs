//! The owner's decisions on digests live in `comms_domain::digests::decide`, so `commsctl` and
//! the gateway's admin API use them without depending on this worker; re-exported here.

pub use comms_domain::digests::decide::{Approval, DecideError, approve, release};
