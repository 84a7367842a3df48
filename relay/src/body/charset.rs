//! Decoding a body to text by the `Content-Type` charset (`docs/reference/auth-methods.md` §8.1).

/// The charsets that are honoured; any other is read as UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// `utf-8` (default), a leading BOM allowed.
    Utf8,
    /// `utf-16`: BOM decides, little-endian without one.
    Utf16,
    /// `utf-16le`.
    Utf16Le,
    /// `utf-16be`.
    Utf16Be,
    /// `iso-8859-1` / `latin-1`.
    Latin1,
    /// `windows-1252` / `cp1252`.
    Windows1252,
    /// `us-ascii` / `ascii`.
    Ascii,
}

/// The charset named by a `Content-Type` value (`None`: UTF-8).
pub fn charset_of(content_type: Option<&str>) -> Charset {
    let Some(ct) = content_type else {
        return Charset::Utf8;
    };
    for param in ct.split(';').skip(1) {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("charset") {
            continue;
        }
        let value = value.trim().trim_matches('"').to_ascii_lowercase();
        return match value.as_str() {
            "utf-16" | "utf16" => Charset::Utf16,
            "utf-16le" | "utf-16-le" | "utf16le" => Charset::Utf16Le,
            "utf-16be" | "utf-16-be" | "utf16be" => Charset::Utf16Be,
            "iso-8859-1" | "iso8859-1" | "latin-1" | "latin1" | "iso_8859-1" | "l1" => {
                Charset::Latin1
            }
            "windows-1252" | "cp1252" => Charset::Windows1252,
            "us-ascii" | "ascii" => Charset::Ascii,
            _ => Charset::Utf8,
        };
    }
    Charset::Utf8
}

/// Characters of windows-1252 for bytes 0x80–0x9F; `None` where the code page has no character.
const CP1252_HIGH: [Option<char>; 32] = [
    Some('\u{20AC}'),
    None,
    Some('\u{201A}'),
    Some('\u{0192}'),
    Some('\u{201E}'),
    Some('\u{2026}'),
    Some('\u{2020}'),
    Some('\u{2021}'),
    Some('\u{02C6}'),
    Some('\u{2030}'),
    Some('\u{0160}'),
    Some('\u{2039}'),
    Some('\u{0152}'),
    None,
    Some('\u{017D}'),
    None,
    None,
    Some('\u{2018}'),
    Some('\u{2019}'),
    Some('\u{201C}'),
    Some('\u{201D}'),
    Some('\u{2022}'),
    Some('\u{2013}'),
    Some('\u{2014}'),
    Some('\u{02DC}'),
    Some('\u{2122}'),
    Some('\u{0161}'),
    Some('\u{203A}'),
    Some('\u{0153}'),
    None,
    Some('\u{017E}'),
    Some('\u{0178}'),
];

fn utf16(bytes: &[u8], little_endian: bool) -> Option<String> {
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    let units = bytes.chunks_exact(2).map(|p| {
        if little_endian {
            u16::from_le_bytes([p[0], p[1]])
        } else {
            u16::from_be_bytes([p[0], p[1]])
        }
    });
    char::decode_utf16(units)
        .collect::<Result<String, _>>()
        .ok()
}

/// Decodes `bytes`; `None` when they are not valid in the charset.
pub fn decode(bytes: &[u8], charset: Charset) -> Option<std::borrow::Cow<'_, str>> {
    use std::borrow::Cow;
    match charset {
        Charset::Utf8 => {
            let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            std::str::from_utf8(bytes).ok().map(Cow::Borrowed)
        }
        Charset::Utf16 => {
            if let Some(rest) = bytes.strip_prefix(b"\xFF\xFE") {
                utf16(rest, true).map(Cow::Owned)
            } else if let Some(rest) = bytes.strip_prefix(b"\xFE\xFF") {
                utf16(rest, false).map(Cow::Owned)
            } else {
                utf16(bytes, true).map(Cow::Owned)
            }
        }
        Charset::Utf16Le => {
            utf16(bytes.strip_prefix(b"\xFF\xFE").unwrap_or(bytes), true).map(Cow::Owned)
        }
        Charset::Utf16Be => {
            utf16(bytes.strip_prefix(b"\xFE\xFF").unwrap_or(bytes), false).map(Cow::Owned)
        }
        Charset::Latin1 => Some(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect())),
        Charset::Windows1252 => bytes
            .iter()
            .map(|&b| match b {
                0x80..=0x9F => CP1252_HIGH[usize::from(b - 0x80)],
                _ => Some(char::from(b)),
            })
            .collect::<Option<String>>()
            .map(Cow::Owned),
        Charset::Ascii => {
            if bytes.is_ascii() {
                std::str::from_utf8(bytes).ok().map(Cow::Borrowed)
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charset_parameter_is_read_case_insensitively() {
        assert_eq!(charset_of(None), Charset::Utf8);
        assert_eq!(charset_of(Some("application/json")), Charset::Utf8);
        assert_eq!(
            charset_of(Some("application/json; Charset=\"UTF-16LE\"")),
            Charset::Utf16Le
        );
        assert_eq!(
            charset_of(Some("text/plain;charset=latin-1")),
            Charset::Latin1
        );
        assert_eq!(charset_of(Some("x; charset=cp1252")), Charset::Windows1252);
        assert_eq!(charset_of(Some("x; charset=koi8-r")), Charset::Utf8);
    }

    #[test]
    fn each_charset_decodes() {
        assert_eq!(
            decode(b"\xEF\xBB\xBF{}", Charset::Utf8).as_deref(),
            Some("{}")
        );
        assert_eq!(decode(b"\xFF", Charset::Utf8), None);
        assert_eq!(decode(b"{\0}\0", Charset::Utf16Le).as_deref(), Some("{}"));
        assert_eq!(decode(b"\0{\0}", Charset::Utf16Be).as_deref(), Some("{}"));
        assert_eq!(
            decode(b"\xFE\xFF\0{\0}", Charset::Utf16).as_deref(),
            Some("{}")
        );
        assert_eq!(decode(b"{\0", Charset::Utf16).as_deref(), Some("{"));
        assert_eq!(decode(b"{", Charset::Utf16), None);
        assert_eq!(decode(b"\xE9", Charset::Latin1).as_deref(), Some("\u{e9}"));
        assert_eq!(
            decode(b"\x80", Charset::Windows1252).as_deref(),
            Some("\u{20ac}")
        );
        assert_eq!(decode(b"\x81", Charset::Windows1252), None);
        assert_eq!(decode(b"\x80", Charset::Ascii), None);
    }
}
