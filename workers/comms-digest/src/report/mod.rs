//! Report digests (`digest.report`): a period's report, client notes, communication outcomes and
//! sourced figures, rendered from approved templates, approved by the owner, then handed to the
//! sender once per recipient and channel. See docs/digests.md.

pub mod approve;
pub mod build;
pub mod facts;
pub mod publish;
pub mod render;
pub mod store;
