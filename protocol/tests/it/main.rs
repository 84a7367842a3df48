//! Integration tests of the protocol crate: property round-trips and random-input robustness.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod fuzz_corpus;
mod no_panic;
mod round_trip;
