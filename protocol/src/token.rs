//! Reading the channel token from an `Authorization` header (`docs/reference/wire-protocol.md` §0.3).

/// What an `Authorization` header value yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresentedToken<'a> {
    /// No header, or a header holding an empty token.
    Missing,
    /// A value of another form, e.g. `Basic abc` or `Bearer a b`.
    Invalid,
    /// The token bytes (any bytes; compare them in constant time).
    Token(&'a [u8]),
}

fn is_blank(b: &u8) -> bool {
    *b == b' ' || *b == b'\t'
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let Some((first, rest)) = v.split_first() {
        if !is_blank(first) {
            break;
        }
        v = rest;
    }
    while let Some((last, rest)) = v.split_last() {
        if !is_blank(last) {
            break;
        }
        v = rest;
    }
    v
}

/// Parses an `Authorization` header value:
///
/// 1. trim spaces and tabs;
/// 2. `Bearer` (any case) + one or more spaces → the rest, trimmed;
/// 3. otherwise a value without spaces or tabs is itself the token (the original accepted a bare
///    token);
/// 4. anything else is invalid; an empty token counts as missing.
///
/// `Bearer Bearer x` is the token `Bearer x`, which holds a space, so it is invalid (R-124).
///
/// ```
/// use webhook_connect_protocol::token::{parse_authorization, PresentedToken};
/// assert_eq!(parse_authorization(Some(b"Bearer abc")), PresentedToken::Token(b"abc"));
/// assert_eq!(parse_authorization(Some(b"Basic abc")), PresentedToken::Invalid);
/// ```
pub fn parse_authorization(value: Option<&[u8]>) -> PresentedToken<'_> {
    let Some(value) = value else {
        return PresentedToken::Missing;
    };
    let value = trim(value);
    if value.is_empty() {
        return PresentedToken::Missing;
    }
    let token = if value.len() > 6 && value[..6].eq_ignore_ascii_case(b"bearer") && value[6] == b' '
    {
        trim(&value[6..])
    } else if value.eq_ignore_ascii_case(b"bearer") {
        return PresentedToken::Missing;
    } else {
        value
    };
    if token.is_empty() {
        PresentedToken::Missing
    } else if token.iter().any(is_blank) {
        PresentedToken::Invalid
    } else {
        PresentedToken::Token(token)
    }
}

#[cfg(test)]
mod tests {
    use super::PresentedToken::*;
    use super::*;

    #[test]
    fn header_forms_are_parsed_strictly_r124() {
        let p = |v: &'static [u8]| parse_authorization(Some(v));
        assert_eq!(parse_authorization(None), Missing);
        assert_eq!(p(b""), Missing);
        assert_eq!(p(b"  \t "), Missing);
        assert_eq!(p(b"Bearer"), Missing);
        assert_eq!(p(b"Bearer    "), Missing);
        assert_eq!(p(b"Bearer abc"), Token(b"abc"));
        assert_eq!(p(b"bEaReR   abc  "), Token(b"abc"));
        assert_eq!(p(b"\tabc "), Token(b"abc"));
        assert_eq!(p(b"Basic abc"), Invalid);
        assert_eq!(p(b"Bearer a b"), Invalid);
        assert_eq!(p(b"Bearer Bearer x"), Invalid);
        assert_eq!(p(b"Bearer\tabc"), Invalid);
        assert_eq!(p("Bearer tök".as_bytes()), Token("tök".as_bytes()));
        assert_eq!(p(&[0xff, 0xfe]), Token(&[0xff, 0xfe]));
    }
}
