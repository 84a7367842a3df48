//! End-to-end test support (filled by the delivery and connector issues).
