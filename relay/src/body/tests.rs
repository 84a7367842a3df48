//! Unit tests of body parsing and header checks (R-14).

use super::*;

fn parse(body: &[u8]) -> Result<ParsedBody, String> {
    parse_json_body(body, Some("application/json"), &BodyLimits::default()).map_err(|r| {
        assert_eq!(r.status, 400);
        r.detail
    })
}

fn nested(n: usize, inner: &str) -> String {
    format!("{}{inner}{}", "[".repeat(n), "]".repeat(n))
}

#[test]
fn json_depth_50_passes_and_51_fails_r14() {
    assert!(parse(nested(50, "1").as_bytes()).is_ok());
    assert_eq!(
        parse(nested(51, "1").as_bytes()).err().as_deref(),
        Some("JSON too deeply nested: 51 levels (max: 50)")
    );
    // 51 nested empty arrays: the innermost array itself has depth 50.
    assert!(parse(nested(51, "").as_bytes()).is_ok());
}

#[test]
fn very_deep_json_is_refused_without_recursing() {
    let deep = nested(1_000_000, "1");
    assert_eq!(
        parse(deep.as_bytes()).err().as_deref(),
        Some("JSON too deeply nested: 51 levels (max: 50)")
    );
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(500_000), "}".repeat(500_000));
    assert_eq!(
        parse(deep_objects.as_bytes()).err().as_deref(),
        Some("JSON too deeply nested: 51 levels (max: 50)")
    );
}

#[test]
fn malformed_json_wins_over_depth_when_parseable_depth() {
    let text = format!("{},", nested(60, "1"));
    assert_eq!(
        parse(text.as_bytes()).err().as_deref(),
        Some("Malformed JSON payload")
    );
}

#[test]
fn string_length_counts_keys_and_values_in_chars_r14() {
    let limits = BodyLimits {
        max_json_depth: 50,
        max_string_length: 5,
    };
    let ok = "{\"\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\":\"\u{1F600}bcde\"}";
    assert!(parse_json_body(ok.as_bytes(), None, &limits).is_ok());
    let long_key = r#"{"abcdef":1}"#;
    assert_eq!(
        parse_json_body(long_key.as_bytes(), None, &limits)
            .err()
            .map(|r| r.detail),
        Some("String too long: 6 chars (max: 5)".into())
    );
    let long_value = r#"[["abcdefg"]]"#;
    assert_eq!(
        parse_json_body(long_value.as_bytes(), None, &limits)
            .err()
            .map(|r| r.detail),
        Some("String too long: 7 chars (max: 5)".into())
    );
}

#[test]
fn numbers_keep_exact_text_and_keys_keep_order() {
    let p = parse(
        br#"{"z":1.10,"a":12345678901234567890123,"m":-0.000000000000000000000001, "d":1,"d":2}"#,
    )
    .expect("parses");
    assert_eq!(
        p.compact.get(),
        r#"{"z":1.10,"a":12345678901234567890123,"m":-0.000000000000000000000001,"d":2}"#
    );
    // Exponents keep their digits; the parser writes the sign explicitly (same number).
    let p = parse(br#"[1e400,2E-5,3.5e+7]"#).expect("parses");
    assert_eq!(p.compact.get(), "[1e+400,2e-5,3.5e+7]");
}

#[test]
fn compact_payload_has_no_raw_newlines() {
    let p = parse(b"{\n  \"a\": \"line\\nbreak\",\n  \"b\": [1,\n2]\n}\n").expect("parses");
    assert!(!p.compact.get().contains('\n'));
    assert_eq!(p.compact.get(), r#"{"a":"line\nbreak","b":[1,2]}"#);
}

#[test]
fn empty_undecodable_or_incomplete_bodies_are_malformed() {
    for body in [&b""[..], b"   ", b"\xff\xfe", b"{\"a\":1", b"{} {}", b"nul"] {
        assert_eq!(parse(body).err().as_deref(), Some("Malformed JSON payload"));
    }
    assert!(parse(b"42").is_ok());
}

#[test]
fn charsets_from_content_type_are_honoured() {
    let utf16: Vec<u8> = "{\"k\":\"\u{e9}\"}"
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let p = parse_json_body(
        &utf16,
        Some("application/json; charset=utf-16le"),
        &BodyLimits::default(),
    )
    .expect("utf-16le");
    assert_eq!(p.value["k"], "\u{e9}");
    let p = parse_json_body(
        b"{\"k\":\"\xe9\"}",
        Some("application/json; charset=ISO-8859-1"),
        &BodyLimits::default(),
    )
    .expect("latin-1");
    assert_eq!(p.value["k"], "\u{e9}");
    let p = parse_json_body(b"\xEF\xBB\xBF{\"k\":1}", None, &BodyLimits::default()).expect("bom");
    assert_eq!(p.value["k"], 1);
    // Unknown charsets are read as UTF-8.
    assert!(
        parse_json_body(
            b"{}",
            Some("application/json; charset=koi8-r"),
            &BodyLimits::default()
        )
        .is_ok()
    );
}

fn header_map(pairs: &[(&str, &[u8])]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            http::HeaderValue::from_bytes(v).expect("value"),
        );
    }
    h
}

#[test]
fn header_count_just_under_passes_just_over_fails_r14() {
    let limits = HeaderLimits::default();
    let mut h = HeaderMap::new();
    for i in 0..100 {
        h.append(
            http::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).expect("name"),
            http::HeaderValue::from_static("v"),
        );
    }
    assert!(check_headers(&h, &limits).is_ok());
    h.append("x-h", http::HeaderValue::from_static("v"));
    assert_eq!(
        check_headers(&h, &limits).err().map(|r| r.detail),
        Some("Too many headers: 101 (max: 100)".into())
    );
}

#[test]
fn header_size_just_under_passes_just_over_fails_r14() {
    let limits = HeaderLimits::default();
    let value = vec![b'a'; 8192 - 3];
    let h = header_map(&[("x-a", &value)]);
    assert!(check_headers(&h, &limits).is_ok());
    let value = vec![b'a'; 8192 - 2];
    let h = header_map(&[("x-a", &value)]);
    assert_eq!(
        check_headers(&h, &limits).err().map(|r| r.detail),
        Some("Headers too large: 8193 bytes (max: 8192)".into())
    );
}

#[test]
fn forbidden_characters_in_header_values_are_refused_r14() {
    let limits = HeaderLimits::default();
    for v in ["a\u{2028}b", "a\u{2029}b"] {
        let h = header_map(&[("x-a", v.as_bytes())]);
        assert_eq!(
            check_headers(&h, &limits).err().map(|r| r.detail),
            Some("Invalid header value: contains forbidden character".into())
        );
    }
    let h = header_map(&[("x-a", "caf\u{e9}".as_bytes())]);
    assert!(check_headers(&h, &limits).is_ok());
}

#[test]
fn depth_prescan_agrees_with_parsed_depth_property() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    fn depth_of(v: &Value, d: usize) -> usize {
        match v {
            Value::Array(a) => a
                .iter()
                .map(|x| depth_of(x, d + 1))
                .max()
                .unwrap_or(d)
                .max(d),
            Value::Object(o) => o
                .values()
                .map(|x| depth_of(x, d + 1))
                .max()
                .unwrap_or(d)
                .max(d),
            _ => d,
        }
    }
    fn gen_json(rng: &mut rand::rngs::StdRng, budget: usize) -> String {
        match rng.random_range(0..7) {
            0 if budget > 0 => {
                let n = rng.random_range(0..4);
                let items: Vec<String> = (0..n).map(|_| gen_json(rng, budget - 1)).collect();
                format!("[{}]", items.join(","))
            }
            1 if budget > 0 => {
                let n = rng.random_range(0..4);
                let items: Vec<String> = (0..n)
                    .map(|i| format!("\"k{i}[{{\\\"\":{}", gen_json(rng, budget - 1)))
                    .collect();
                format!("{{{}}}", items.join(","))
            }
            2 => "\"s]}\\\\\"".to_string(),
            3 => "\"[{\\\"[\"".to_string(),
            4 => "-1.5e3".to_string(),
            5 => "true".to_string(),
            _ => "null".to_string(),
        }
    }
    for _ in 0..2000 {
        let budget = rng.random_range(0..12);
        let text = gen_json(&mut rng, budget);
        let v: Value = serde_json::from_str(&text).expect("generator makes valid JSON");
        assert_eq!(
            depth::max_value_depth(text.as_bytes(), usize::MAX),
            depth_of(&v, 0),
            "{text}"
        );
    }
}

#[test]
fn random_bytes_never_panic_parse_json_body() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let alphabet = b"[]{}\",:\\ 0123456789.eE+-truefalsn\n\t\xff\xfe\x00\xe2\x80\xa8u";
    let cts = [
        None,
        Some("application/json; charset=utf-16"),
        Some("application/json; charset=utf-16be"),
        Some("application/json; charset=windows-1252"),
        Some("application/json; charset=us-ascii"),
    ];
    let limits = BodyLimits {
        max_json_depth: 5,
        max_string_length: 8,
    };
    for i in 0..20_000 {
        let len = rng.random_range(0..64);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if rng.random_bool(0.8) {
                    alphabet[rng.random_range(0..alphabet.len())]
                } else {
                    rng.random()
                }
            })
            .collect();
        let ct = cts[i % cts.len()];
        if let Ok(p) = parse_json_body(&bytes, ct, &limits) {
            let reparsed: Value = serde_json::from_str(p.compact.get()).expect("compact is JSON");
            assert_eq!(reparsed, p.value);
        }
    }
}

#[test]
fn header_forbidden_check_property() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    for _ in 0..5000 {
        let len = rng.random_range(0..20);
        let bytes: Vec<u8> = (0..len)
            .map(|_| [b'a', b' ', 0xe2, 0x80, 0xa8, 0xa9, b'\t', 0xff][rng.random_range(0..8)])
            .collect();
        let Ok(value) = http::HeaderValue::from_bytes(&bytes) else {
            continue;
        };
        let mut h = HeaderMap::new();
        h.insert("x-a", value);
        let expect_bad = bytes
            .windows(3)
            .any(|w| w == [0xe2, 0x80, 0xa8] || w == [0xe2, 0x80, 0xa9]);
        assert_eq!(
            check_headers(&h, &HeaderLimits::default()).is_err(),
            expect_bad
        );
    }
}

#[test]
fn unclosed_deep_json_is_malformed_not_too_deep() {
    let unclosed = "{\"a\":".repeat(500_000);
    assert_eq!(
        parse(unclosed.as_bytes()).err().as_deref(),
        Some("Malformed JSON payload")
    );
}

#[test]
fn configured_depth_above_serde_limit_is_honoured() {
    let limits = BodyLimits {
        max_json_depth: 1000,
        ..BodyLimits::default()
    };
    assert!(parse_json_body(nested(1000, "1").as_bytes(), None, &limits).is_ok());
    assert_eq!(
        parse_json_body(nested(1001, "1").as_bytes(), None, &limits)
            .err()
            .map(|r| r.detail),
        Some("JSON too deeply nested: 1001 levels (max: 1000)".into())
    );
}

#[test]
fn iterative_parser_agrees_with_serde_json_on_random_inputs() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let pieces = [
        "[",
        "]",
        "{",
        "}",
        ",",
        ":",
        r#""k""#,
        r#""a\"b""#,
        r#""\u00e9""#,
        r#""\ud83d\ude00""#,
        r#""\ud83d""#,
        "1",
        "-0.5",
        "2e3",
        "01",
        "true",
        "null",
        "fals",
        " ",
        "\n",
        r#""\x""#,
        "\"",
    ];
    for _ in 0..50_000 {
        let n = rng.random_range(1..10);
        let text: String = (0..n)
            .map(|_| pieces[rng.random_range(0..pieces.len())])
            .collect();
        let ours = parser::parse(&text, 100, 1000);
        let theirs = serde_json::from_str::<Value>(&text);
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{text}"),
            (Err(parser::ParseError::Malformed), Err(_)) => {}
            _ => panic!("{text:?}: ours {ours:?}, serde {theirs:?}"),
        }
    }
}
