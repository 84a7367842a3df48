//! Skeleton: filled by the buffer issue.
