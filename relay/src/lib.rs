//! Skeleton: filled by the relay issues.
