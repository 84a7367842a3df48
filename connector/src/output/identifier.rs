//! The SQL identifiers the table-writing modules accept for table and column names
//! (`postgresql`, `mysql`, `clickhouse`): plain names only, so they can be written unquoted.

/// `^[A-Za-z_][A-Za-z0-9_]{0,62}$`.
pub(crate) fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    text.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
