//! An iterative JSON parser: builds a `serde_json::Value` with an explicit stack, so nesting
//! never recurses, and checks depth and string lengths (keys and values) while parsing
//! (`docs/reference/auth-methods.md` §8.1).
//!
//! Syntax errors win over limit errors (step 15 before step 16): once a limit is exceeded the
//! parser stops building values but keeps validating the syntax to the end.

use std::borrow::Cow;
use std::str::FromStr;

use serde_json::{Map, Number, Value};

/// Why parsing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not one complete JSON value.
    Malformed,
    /// A value is nested deeper than the limit.
    TooDeep,
    /// A key or string value has this many characters, more than the limit.
    StringTooLong(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Array,
    Object,
}

enum Frame {
    Array(Vec<Value>),
    Object(Map<String, Value>, String),
}

struct Cursor<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

type Syntax<T> = Result<T, ()>;

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Syntax<()> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(())
        }
    }

    /// A string starting at the current `"`.
    fn string(&mut self) -> Syntax<Cow<'a, str>> {
        if self.peek() != Some(b'"') {
            return Err(());
        }
        let start = self.i + 1;
        let mut j = start;
        let mut escaped = false;
        loop {
            match *self.b.get(j).ok_or(())? {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    j += 2;
                }
                0x00..=0x1f => return Err(()),
                _ => j += 1,
            }
        }
        self.i = j + 1;
        let raw = self.text.get(start..j).ok_or(())?;
        if !escaped {
            return Ok(Cow::Borrowed(raw));
        }
        unescape(raw).map(Cow::Owned)
    }

    fn digits(&mut self) -> usize {
        let from = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - from
    }

    fn number(&mut self) -> Syntax<Number> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(()),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(());
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(());
            }
        }
        let text = self.text.get(start..self.i).ok_or(())?;
        Number::from_str(text).map_err(|_| ())
    }

    fn literal(&mut self, word: &[u8]) -> Syntax<()> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(())
        }
    }
}

fn hex4(chars: &mut std::str::Chars<'_>) -> Syntax<u32> {
    let mut v = 0u32;
    for _ in 0..4 {
        v = v * 16 + chars.next().and_then(|c| c.to_digit(16)).ok_or(())?;
    }
    Ok(v)
}

/// Resolves the escapes of a JSON string body (without quotes).
fn unescape(raw: &str) -> Syntax<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next().ok_or(())? {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let first = hex4(&mut chars)?;
                let code = if (0xD800..0xDC00).contains(&first) {
                    if chars.next() != Some('\\') || chars.next() != Some('u') {
                        return Err(());
                    }
                    let second = hex4(&mut chars)?;
                    if !(0xDC00..0xE000).contains(&second) {
                        return Err(());
                    }
                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                } else {
                    first
                };
                out.push(char::from_u32(code).ok_or(())?);
            }
            _ => return Err(()),
        }
    }
    Ok(out)
}

/// Parses `text` as one complete JSON value: exact number text, the sender's key order, the
/// last of duplicate keys. Every value must have depth ≤ `max_depth` (the number of arrays
/// and objects enclosing it) and every key and string at most `max_string_chars` characters.
pub fn parse(text: &str, max_depth: usize, max_string_chars: usize) -> Result<Value, ParseError> {
    let mut cur = Cursor {
        text,
        b: text.as_bytes(),
        i: 0,
    };
    let mut limit: Option<ParseError> = None;
    let result = run(&mut cur, max_depth, max_string_chars, &mut limit);
    match (result, limit) {
        (Err(()), _) => Err(ParseError::Malformed),
        (Ok(_), Some(e)) => Err(e),
        (Ok(v), None) => Ok(v),
    }
}

fn run(
    cur: &mut Cursor<'_>,
    max_depth: usize,
    max_chars: usize,
    limit: &mut Option<ParseError>,
) -> Syntax<Value> {
    let mut kinds: Vec<Kind> = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    let check_str = |s: &str, limit: &mut Option<ParseError>| {
        if limit.is_none() && s.len() > max_chars {
            let n = s.chars().count();
            if n > max_chars {
                *limit = Some(ParseError::StringTooLong(n));
            }
        }
    };
    loop {
        // A value starts here, at depth kinds.len().
        cur.skip_ws();
        let depth = kinds.len();
        if depth > max_depth && !matches!(limit, Some(ParseError::TooDeep)) {
            // Depth wins over string length, as it is checked first.
            *limit = Some(ParseError::TooDeep);
        }
        let building = limit.is_none();
        let mut value: Value = match cur.peek().ok_or(())? {
            open @ (b'[' | b'{') => {
                cur.i += 1;
                cur.skip_ws();
                let kind = if open == b'[' {
                    Kind::Array
                } else {
                    Kind::Object
                };
                let close = if open == b'[' { b']' } else { b'}' };
                if cur.peek() == Some(close) {
                    cur.i += 1;
                    if kind == Kind::Array {
                        Value::Array(Vec::new())
                    } else {
                        Value::Object(Map::new())
                    }
                } else {
                    kinds.push(kind);
                    if kind == Kind::Array {
                        if building {
                            frames.push(Frame::Array(Vec::new()));
                        }
                    } else {
                        let key = cur.string()?;
                        check_str(&key, limit);
                        cur.expect(b':')?;
                        if limit.is_none() {
                            frames.push(Frame::Object(Map::new(), key.into_owned()));
                        }
                    }
                    continue;
                }
            }
            b'"' => {
                let s = cur.string()?;
                check_str(&s, limit);
                Value::String(s.into_owned())
            }
            b'-' | b'0'..=b'9' => Value::Number(cur.number()?),
            b't' => {
                cur.literal(b"true")?;
                Value::Bool(true)
            }
            b'f' => {
                cur.literal(b"false")?;
                Value::Bool(false)
            }
            b'n' => {
                cur.literal(b"null")?;
                Value::Null
            }
            _ => return Err(()),
        };
        // The value is complete: attach it and close finished containers.
        loop {
            let Some(&kind) = kinds.last() else {
                cur.skip_ws();
                return if cur.i == cur.b.len() {
                    Ok(value)
                } else {
                    Err(())
                };
            };
            if limit.is_some() {
                frames.clear();
            } else {
                let done = std::mem::take(&mut value);
                match frames.last_mut() {
                    Some(Frame::Array(items)) => items.push(done),
                    Some(Frame::Object(map, key)) => {
                        map.insert(std::mem::take(key), done);
                    }
                    None => {}
                }
            }
            cur.skip_ws();
            match (cur.peek().ok_or(())?, kind) {
                (b',', Kind::Array) => {
                    cur.i += 1;
                    break;
                }
                (b',', Kind::Object) => {
                    cur.i += 1;
                    cur.skip_ws();
                    let key = cur.string()?;
                    check_str(&key, limit);
                    cur.expect(b':')?;
                    if let Some(Frame::Object(_, pending)) = frames.last_mut() {
                        *pending = key.into_owned();
                    }
                    break;
                }
                (b']', Kind::Array) | (b'}', Kind::Object) => {
                    cur.i += 1;
                    kinds.pop();
                    value = match frames.pop() {
                        Some(Frame::Array(items)) if limit.is_none() => Value::Array(items),
                        Some(Frame::Object(map, _)) if limit.is_none() => Value::Object(map),
                        _ => Value::Null,
                    };
                }
                _ => return Err(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Value {
        parse(text, 50, 100).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    #[test]
    fn parses_like_serde_json() {
        for text in [
            "0",
            "-1.5e-3",
            "true",
            " null ",
            r#""a\"b\\c\/\b\f\n\r\t\u00e9\ud83d\ude00""#,
            r#"{"a":[1,{"b":[]},{}],"c":"d"}"#,
            "[[],[[]],{}]",
            r#"{"k":1,"k":2,"j":3}"#,
        ] {
            let expected: Value = serde_json::from_str(text).expect("serde parses");
            assert_eq!(ok(text), expected, "{text}");
        }
    }

    #[test]
    fn refuses_what_json_refuses() {
        for text in [
            "",
            " ",
            "[",
            "]",
            "{",
            "[1,]",
            "{\"a\"}",
            "{\"a\":}",
            "{,}",
            "[1 2]",
            "01",
            "1.",
            "-",
            ".5",
            "1e",
            "tru",
            "nul",
            "\"a",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\t\"",
            "{} {}",
            "[1]]",
            "{\"a\":1,}",
            "{1:2}",
            "\"\\u12\"",
        ] {
            assert_eq!(parse(text, 50, 100), Err(ParseError::Malformed), "{text:?}");
        }
    }

    #[test]
    fn limits_apply_and_syntax_errors_win() {
        assert_eq!(parse("[[1]]", 1, 100), Err(ParseError::TooDeep));
        assert!(parse("[[]]", 1, 100).is_ok());
        assert_eq!(parse("[[1]] x", 1, 100), Err(ParseError::Malformed));
        assert_eq!(
            parse(r#"{"abc":1}"#, 5, 2),
            Err(ParseError::StringTooLong(3))
        );
        assert_eq!(parse(r#"["é1é"]"#, 5, 3), Ok(serde_json::json!(["é1é"])));
        assert_eq!(parse(r#"["abcd", [[1]]]"#, 1, 3), Err(ParseError::TooDeep));
    }

    #[test]
    fn deep_input_does_not_recurse() {
        let deep = format!("{}{}", "[".repeat(2_000_000), "]".repeat(2_000_000));
        assert_eq!(parse(&deep, 1000, 10), Err(ParseError::TooDeep));
        let ok_deep = format!("{}1{}", "[".repeat(1000), "]".repeat(1000));
        let v = parse(&ok_deep, 1000, 10).expect("1000 levels allowed when configured");
        // Drop iteratively-built deep values without overflowing either.
        drop(v);
    }
}
