//! Inbound validation of ingest requests (`auth-methods.md`). Being written.
