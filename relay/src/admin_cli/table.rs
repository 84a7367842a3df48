//! Plain-text rendering of admin API answers: aligned tables and `key: value` blocks.

use serde_json::Value;

/// A JSON value as a table cell: `-` for null, lists joined with commas.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Columns padded to their widest cell, two spaces apart, no trailing blanks.
pub fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![line(headers.iter().map(|h| (*h).to_owned()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

/// The rows of `items` (an array; anything else gives none), one cell per key of `keys`.
pub fn rows(items: &Value, keys: &[&str]) -> Vec<Vec<String>> {
    items
        .as_array()
        .into_iter()
        .flatten()
        .map(|item| keys.iter().map(|k| cell(&item[*k])).collect())
        .collect()
}

/// `key: value` lines for `keys` of `object`, keys padded to one width.
pub fn fields(object: &Value, keys: &[&str]) -> String {
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(0) + 1;
    keys.iter()
        .map(|k| format!("{:<width$} {}", format!("{k}:"), cell(&object[*k])))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The JSON to print with `--json`.
pub fn pretty(body: &Value) -> String {
    serde_json::to_string_pretty(body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(&["A", "LONGER"], vec![vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1");
    }

    #[test]
    fn fields_align_values() {
        let v = serde_json::json!({"name": "orders", "paused": false, "gone": null});
        assert_eq!(
            fields(&v, &["name", "paused", "gone"]),
            "name:   orders\npaused: false\ngone:   -"
        );
    }
}
