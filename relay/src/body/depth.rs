//! A non-recursive pre-scan of JSON nesting depth, so that deep documents are refused before a
//! recursive parser sees them.

/// The greatest depth of any value in `text`, where the depth of a value is the number of
/// arrays and objects enclosing it (§8.1). Only brackets outside strings count; escapes inside
/// strings are honoured. Malformed input gives some number; the parser decides malformedness.
///
/// Scanning stops early once `stop_above` is exceeded, returning that depth.
pub fn max_value_depth(text: &[u8], stop_above: usize) -> usize {
    let mut open = 0usize;
    let mut max = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'[' | b'{' => {
                // The container itself is a value at depth `open`.
                max = max.max(open);
                open += 1;
            }
            b']' | b'}' => open = open.saturating_sub(1),
            b' ' | b'\t' | b'\n' | b'\r' | b',' | b':' => {}
            b'"' => {
                in_string = true;
                max = max.max(open);
            }
            _ => max = max.max(open),
        }
        if max > stop_above {
            return max;
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize, inner: &str) -> String {
        format!("{}{inner}{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn depth_counts_enclosing_containers() {
        assert_eq!(max_value_depth(b"1", 100), 0);
        assert_eq!(max_value_depth(b"[]", 100), 0);
        assert_eq!(max_value_depth(b"[1]", 100), 1);
        assert_eq!(max_value_depth(br#"{"a":{"b":[1,2]}}"#, 100), 3);
        assert_eq!(max_value_depth(nested(51, "").as_bytes(), 100), 50);
        assert_eq!(max_value_depth(nested(51, "1").as_bytes(), 100), 51);
    }

    #[test]
    fn brackets_inside_strings_do_not_count() {
        assert_eq!(max_value_depth(br#"["[[[[\"[[", "]]]"]"#, 100), 1);
        assert_eq!(max_value_depth(br#"{"k\\":"[["}"#, 100), 1);
    }

    #[test]
    fn scan_stops_early_past_the_bound() {
        let deep = nested(100_000, "1");
        assert_eq!(max_value_depth(deep.as_bytes(), 50), 51);
    }
}
