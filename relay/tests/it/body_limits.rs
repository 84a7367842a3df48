//! Body decoding, JSON limits and header checks through the public API (§8.1, R-14).

use http::{HeaderMap, HeaderName, HeaderValue};
use webhook_relay::body::{BodyLimits, HeaderLimits, check_headers, parse_json_body};

fn nested_objects(levels: usize) -> String {
    format!("{}1{}", "{\"k\":".repeat(levels), "}".repeat(levels))
}

#[test]
fn json_depth_limit_just_under_passes_just_over_fails_r14() {
    let limits = BodyLimits::default();
    assert!(parse_json_body(nested_objects(50).as_bytes(), None, &limits).is_ok());
    let r = parse_json_body(nested_objects(51).as_bytes(), None, &limits).expect_err("too deep");
    assert_eq!(r.status.as_u16(), 400);
    assert_eq!(r.detail, "JSON too deeply nested: 51 levels (max: 50)");
    let custom = BodyLimits {
        max_json_depth: 3,
        ..BodyLimits::default()
    };
    assert!(parse_json_body(b"[[[1]]]", None, &custom).is_ok());
    assert_eq!(
        parse_json_body(b"[[[[1]]]]", None, &custom)
            .map(|_| ())
            .map_err(|r| r.detail),
        Err("JSON too deeply nested: 4 levels (max: 3)".to_string())
    );
}

#[test]
fn string_limit_just_under_passes_just_over_fails_r14() {
    let limits = BodyLimits {
        max_string_length: 1_048_576,
        ..BodyLimits::default()
    };
    let ok = format!("{{\"k\":\"{}\"}}", "\u{e9}".repeat(1_048_576));
    assert!(parse_json_body(ok.as_bytes(), None, &limits).is_ok());
    let over = format!("{{\"{}\":1}}", "a".repeat(1_048_577));
    let r = parse_json_body(over.as_bytes(), None, &limits).expect_err("too long");
    assert_eq!(r.detail, "String too long: 1048577 chars (max: 1048576)");
}

#[test]
fn header_limits_use_configured_values_r14() {
    let limits = HeaderLimits {
        max_header_count: 2,
        max_header_bytes: 1024,
    };
    let mut h = HeaderMap::new();
    h.append("a", HeaderValue::from_static("1"));
    h.append("a", HeaderValue::from_static("2"));
    assert!(check_headers(&h, &limits).is_ok());
    h.append("b", HeaderValue::from_static("3"));
    assert_eq!(
        check_headers(&h, &limits).map_err(|r| r.detail),
        Err("Too many headers: 3 (max: 2)".to_string())
    );
    let mut h = HeaderMap::new();
    h.insert(
        HeaderName::from_static("x"),
        HeaderValue::from_str(&"v".repeat(1024)).expect("value"),
    );
    assert_eq!(
        check_headers(&h, &limits).map_err(|r| r.detail),
        Err("Headers too large: 1025 bytes (max: 1024)".to_string())
    );
}

#[test]
fn payload_keeps_key_order_exact_numbers_and_last_duplicate() {
    let p = parse_json_body(
        br#"{ "b": 0.1000, "a": [1, 2.50], "b": 123456789012345678901234567890 }"#,
        Some("application/json; charset=utf-8"),
        &BodyLimits::default(),
    )
    .expect("parses");
    assert_eq!(
        p.compact.get(),
        r#"{"b":123456789012345678901234567890,"a":[1,2.50]}"#
    );
}
