//! Property-based fuzzing of everything that reads bytes from outside the fleet: the send-request
//! and incident-event decoders, the Twilio and SendGrid webhook bodies, parsers and signature
//! checks, template rendering, the SMS segmenter and the portal-safe check.
//!
//! It runs on the stable toolchain (proptest), starting from the committed seed corpus in
//! `tests/fuzz/corpus/` and mutating it: byte flips, insertions, truncations, splices, NULs,
//! lone surrogates, deep nesting and huge numbers. `cargo test` runs a bounded number of cases per
//! property (`FUZZ_CASES`, 256 by default, a few seconds each); `make fuzz` runs many more.
//! A failure prints the smallest input proptest could shrink it to; add it to the corpus when
//! fixed.

mod contracts;
mod inputs;
mod signatures;
mod text;
mod webhooks;

use proptest::test_runner::Config;

/// Cases per property: `FUZZ_CASES`, or 256.
pub fn config() -> Config {
    let cases = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    Config {
        cases,
        // Shrinking a failure is worth a while; the default is unbounded.
        max_shrink_iters: 4096,
        failure_persistence: None,
        ..Config::default()
    }
}
