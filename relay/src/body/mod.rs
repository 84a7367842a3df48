//! Decoding and checking ingest bodies (`auth-methods.md` §8.1). Being written.
