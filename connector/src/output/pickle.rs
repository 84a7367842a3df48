//! A small Python pickle encoder (protocol 2) for the values an RQ job holds (`docs/reference/module-contract.md` §3.7):
//! `None`, strings, tuples, empty dicts and any JSON value (null, bool, int of any size, float,
//! str, list, dict). Only encoding: the connector never unpickles anything.
//!
//! Integers keep their exact value: numbers are kept as their decimal text (serde_json's
//! `arbitrary_precision`), and integers beyond 32 bits are written as `LONG1` in two's
//! complement, so Python sees the same `int`. Numbers with a fraction or exponent become
//! `float`s. No memo is written; pickle does not need one.

use serde_json::{Number, Value};

const PROTO: u8 = 0x80;
const STOP: u8 = b'.';
const NONE: u8 = b'N';
const NEWTRUE: u8 = 0x88;
const NEWFALSE: u8 = 0x89;
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const LONG1: u8 = 0x8a;
const BINFLOAT: u8 = b'G';
const BINUNICODE: u8 = b'X';
const EMPTY_LIST: u8 = b']';
const EMPTY_DICT: u8 = b'}';
const EMPTY_TUPLE: u8 = b')';
const MARK: u8 = b'(';
const APPENDS: u8 = b'e';
const SETITEMS: u8 = b'u';
const TUPLE: u8 = b't';
const TUPLE1: u8 = 0x85;
const TUPLE2: u8 = 0x86;
const TUPLE3: u8 = 0x87;

/// A Python value to pickle.
#[derive(Debug, Clone, Copy)]
pub enum Py<'a> {
    /// `None`.
    None,
    /// `str`.
    Str(&'a str),
    /// A JSON value as Python's `json.loads` would give it.
    Json(&'a Value),
    /// A `tuple`.
    Tuple(&'a [Py<'a>]),
    /// `{}`.
    EmptyDict,
}

/// The pickle (protocol 2) of `value`.
pub fn dumps(value: &Py<'_>) -> Vec<u8> {
    let mut out = vec![PROTO, 2];
    write(&mut out, value);
    out.push(STOP);
    out
}

fn write(out: &mut Vec<u8>, value: &Py<'_>) {
    match value {
        Py::None => out.push(NONE),
        Py::Str(s) => write_str(out, s),
        Py::Json(v) => write_json(out, v),
        Py::EmptyDict => out.push(EMPTY_DICT),
        Py::Tuple(items) => {
            match items.len() {
                0 => {
                    out.push(EMPTY_TUPLE);
                    return;
                }
                1..=3 => {}
                _ => out.push(MARK),
            }
            for item in *items {
                write(out, item);
            }
            out.push(match items.len() {
                1 => TUPLE1,
                2 => TUPLE2,
                3 => TUPLE3,
                _ => TUPLE,
            });
        }
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(BINUNICODE);
    // A JSON string over 4 GiB cannot reach the connector (body limits); truncating the length
    // is impossible in practice, so saturate rather than panic.
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn write_json(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => out.push(NONE),
        Value::Bool(true) => out.push(NEWTRUE),
        Value::Bool(false) => out.push(NEWFALSE),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(EMPTY_LIST);
            if !items.is_empty() {
                out.push(MARK);
                for item in items {
                    write_json(out, item);
                }
                out.push(APPENDS);
            }
        }
        Value::Object(map) => {
            out.push(EMPTY_DICT);
            if !map.is_empty() {
                out.push(MARK);
                for (k, item) in map {
                    write_str(out, k);
                    write_json(out, item);
                }
                out.push(SETITEMS);
            }
        }
    }
}

fn write_number(out: &mut Vec<u8>, n: &Number) {
    let text = n.to_string();
    let is_integer = !text.contains(['.', 'e', 'E']);
    if is_integer {
        if let Ok(i) = text.parse::<i64>() {
            write_int(out, i);
            return;
        }
        if let Some(bytes) = decimal_to_twos_complement(&text) {
            write_long(out, &bytes);
            return;
        }
    }
    let f = n
        .as_f64()
        .or_else(|| text.parse::<f64>().ok())
        .unwrap_or(f64::NAN);
    out.push(BINFLOAT);
    out.extend_from_slice(&f.to_be_bytes());
}

fn write_int(out: &mut Vec<u8>, i: i64) {
    if let Ok(small) = u8::try_from(i) {
        out.extend_from_slice(&[BININT1, small]);
    } else if let Ok(half) = u16::try_from(i) {
        out.push(BININT2);
        out.extend_from_slice(&half.to_le_bytes());
    } else if let Ok(word) = i32::try_from(i) {
        out.push(BININT);
        out.extend_from_slice(&word.to_le_bytes());
    } else {
        write_long(out, &minimal_twos_complement(&i.to_le_bytes()));
    }
}

fn write_long(out: &mut Vec<u8>, le_bytes: &[u8]) {
    // LONG1 holds at most 255 bytes (an integer of about 610 decimal digits); longer ones would
    // need LONG4. JSON from a webhook never holds such numbers in practice, but be exact anyway.
    match u8::try_from(le_bytes.len()) {
        Ok(len) => {
            out.extend_from_slice(&[LONG1, len]);
        }
        Err(_) => {
            out.push(0x8b); // LONG4
            let len = u32::try_from(le_bytes.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
        }
    }
    out.extend_from_slice(le_bytes);
}

/// Drops redundant sign bytes of a little-endian two's-complement integer.
fn minimal_twos_complement(le: &[u8]) -> Vec<u8> {
    let mut v = le.to_vec();
    while v.len() > 1 {
        let last = v[v.len() - 1];
        let prev_sign = v[v.len() - 2] & 0x80;
        if (last == 0x00 && prev_sign == 0) || (last == 0xff && prev_sign != 0) {
            v.pop();
        } else {
            break;
        }
    }
    v
}

/// The little-endian two's-complement bytes of a decimal integer text (`-?[0-9]+`), minimal.
fn decimal_to_twos_complement(text: &str) -> Option<Vec<u8>> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Magnitude, little-endian bytes: multiply by 10 and add each digit.
    let mut mag: Vec<u8> = vec![0];
    for d in digits.bytes() {
        let mut carry = u32::from(d - b'0');
        for byte in &mut mag {
            let x = u32::from(*byte) * 10 + carry;
            *byte = (x & 0xff) as u8;
            carry = x >> 8;
        }
        while carry > 0 {
            mag.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    mag.push(0); // room for the sign bit
    if negative {
        // Two's complement: invert and add one.
        let mut carry = 1u16;
        for byte in &mut mag {
            let x = u16::from(!*byte) + carry;
            *byte = (x & 0xff) as u8;
            carry = x >> 8;
        }
    }
    Some(minimal_twos_complement(&mag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json_pickle(v: &Value) -> Vec<u8> {
        dumps(&Py::Json(v))
    }

    /// Scalars are byte for byte what Python 3's `pickle.dumps(x, protocol=2)` gives; containers
    /// are Python's without its memo opcodes (`BINPUT`, which loading does not need) and with
    /// `MARK … APPENDS`/`SETITEMS` also for one item. The integration tests load these with
    /// Python's own `pickle`.
    #[test]
    fn matches_python_for_simple_values() {
        assert_eq!(json_pickle(&json!(null)), b"\x80\x02N.");
        assert_eq!(json_pickle(&json!(true)), b"\x80\x02\x88.");
        assert_eq!(json_pickle(&json!(false)), b"\x80\x02\x89.");
        assert_eq!(json_pickle(&json!(7)), b"\x80\x02K\x07.");
        assert_eq!(json_pickle(&json!(-1)), b"\x80\x02J\xff\xff\xff\xff.");
        assert_eq!(json_pickle(&json!(256)), b"\x80\x02M\x00\x01.");
        assert_eq!(json_pickle(&json!(65536)), b"\x80\x02J\x00\x00\x01\x00.");
        assert_eq!(
            json_pickle(&json!(1.5)),
            b"\x80\x02G?\xf8\x00\x00\x00\x00\x00\x00."
        );
        assert_eq!(
            json_pickle(&json!("é")),
            b"\x80\x02X\x02\x00\x00\x00\xc3\xa9."
        );
        assert_eq!(json_pickle(&json!([])), b"\x80\x02].");
        assert_eq!(json_pickle(&json!({})), b"\x80\x02}.");
        assert_eq!(json_pickle(&json!([1])), b"\x80\x02](K\x01e.");
        assert_eq!(
            json_pickle(&json!({"a": 1})),
            b"\x80\x02}(X\x01\x00\x00\x00aK\x01u."
        );
        assert_eq!(
            dumps(&Py::Tuple(&[Py::None, Py::Str("f"), Py::EmptyDict])),
            b"\x80\x02NX\x01\x00\x00\x00f}\x87."
        );
        assert_eq!(dumps(&Py::Tuple(&[])), b"\x80\x02).");
    }

    #[test]
    fn integers_beyond_64_bits_are_exact_two_complement() {
        // Python: (2**64).to_bytes(9, 'little', signed=True)
        assert_eq!(
            decimal_to_twos_complement("18446744073709551616"),
            Some(vec![0, 0, 0, 0, 0, 0, 0, 0, 1])
        );
        // -(2**63) fits in 8 bytes; -(2**63)-1 needs 9.
        assert_eq!(
            decimal_to_twos_complement("-9223372036854775808"),
            Some(vec![0, 0, 0, 0, 0, 0, 0, 0x80])
        );
        assert_eq!(
            decimal_to_twos_complement("-9223372036854775809"),
            Some(vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff])
        );
        assert_eq!(decimal_to_twos_complement("255"), Some(vec![0xff, 0]));
        assert_eq!(decimal_to_twos_complement("-1"), Some(vec![0xff]));
        assert_eq!(decimal_to_twos_complement("0"), Some(vec![0]));
        assert_eq!(
            json_pickle(&json!(4294967296_i64)),
            b"\x80\x02\x8a\x05\x00\x00\x00\x00\x01."
        );
    }
}
