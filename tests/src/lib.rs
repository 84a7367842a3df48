//! Support for end-to-end runs: a real local HTTP target ([`sink`]) and starters for a relay and
//! a connector in one process ([`stack`]).

pub mod sink;
pub mod stack;
