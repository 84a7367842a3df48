//! Constant-time comparison of secrets, on bytes (`docs/reference/auth-methods.md` §1.4).

use subtle::ConstantTimeEq;

/// True when `a` and `b` are equal. Inputs of different lengths compare as unequal; the time
/// taken depends only on the lengths, never on the content.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        // Still touch the presented bytes so the work does not depend on where they differ.
        let _ = a.ct_eq(a);
        return false;
    }
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_compares_bytes_and_lengths() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
        assert!(ct_eq(b"", b""));
    }
}
