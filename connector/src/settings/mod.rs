//! Reading settings out of JSON objects, below both the connector configuration ([`crate::config`])
//! and the output modules ([`crate::output`]): a [`Reader`] that records every problem with its
//! field path and source, and the [`Problems`] it records them in.

mod problems;
pub(crate) mod reader;

pub use problems::Problems;
pub(crate) use reader::Reader;
