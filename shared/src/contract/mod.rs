//! The send request (v1): the wire contract upstream apps code against.
