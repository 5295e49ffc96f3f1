//! Report digests (filled in below).
