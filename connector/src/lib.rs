//! Skeleton: filled by the connector issue.
