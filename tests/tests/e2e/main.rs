//! End-to-end: a real relay (embedded store) and our connector in one process, delivering to a
//! real local HTTP target.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod config_reference;
mod dashboard;
mod docker_files;
mod message_trace;
mod operator_defects;
mod relay_to_modules;
mod relay_to_target;
