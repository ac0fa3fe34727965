//! The codecs ftfy uses to re-interpret text: the single-byte encodings of `CHARMAP_ENCODINGS`
//! (Python's latin-1, iso-8859-2, macroman and cp437, and ftfy's "sloppy" Windows code pages from
//! `bad_codecs/sloppy.py`), strict windows-1252, strict UTF-8 and ftfy's `utf-8-variants`
//! (`bad_codecs/utf8_variants.py`). The byte tables are generated from Python (`tables.rs`).

use crate::tables::{DECODE, ENCODABLE, WINDOWS_1252_C1};

/// The number of encodings in `CHARMAP_ENCODINGS`.
pub(crate) const COUNT: usize = crate::tables::CHARMAP_ENCODINGS.len();
/// Index of "latin-1" in `CHARMAP_ENCODINGS`.
pub(crate) const LATIN_1: usize = 0;
/// Index of "sloppy-windows-1252".
pub(crate) const SLOPPY_WINDOWS_1252: usize = 1;
/// Index of "macroman".
pub(crate) const MACROMAN: usize = 8;

/// Whether `CHARMAP_ENCODINGS[index]` is one of ftfy's sloppy codecs.
pub(crate) fn is_sloppy(index: usize) -> bool {
    crate::tables::CHARMAP_ENCODINGS[index].starts_with("sloppy")
}

fn encodable(c: char) -> Option<&'static (char, u16, [u8; COUNT])> {
    ENCODABLE.binary_search_by_key(&c, |e| e.0).ok().map(|i| &ENCODABLE[i])
}

/// `chardata.possible_encoding(text, "ascii")`.
pub(crate) fn is_ascii(text: &str) -> bool {
    text.is_ascii()
}

/// The bit mask of `CHARMAP_ENCODINGS` for which `chardata.possible_encoding(text, encoding)` holds
/// (bit i for `CHARMAP_ENCODINGS[i]`).
pub(crate) fn possible_encodings(text: &str) -> u16 {
    let mut mask: u16 = (1 << COUNT) - 1;
    for c in text.chars() {
        if (c as u32) < 0x80 && c != '\x1a' {
            continue;
        }
        match encodable(c) {
            Some(e) => mask &= e.1,
            None => return 0,
        }
        if mask == 0 {
            return 0;
        }
    }
    mask
}

/// `text.encode(CHARMAP_ENCODINGS[index])`, for text that `possible_encodings` allows.
pub(crate) fn encode(text: &str, index: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if (c as u32) < 0x80 && c != '\x1a' {
            out.push(c as u8);
        } else {
            let e = encodable(c).expect("encode: text not in the encoding");
            debug_assert!(e.1 >> index & 1 == 1);
            out.push(e.2[index]);
        }
    }
    out
}

/// One character encoded as Latin-1 and decoded as sloppy-windows-1252 (`fixes._c1_fixer`).
pub(crate) fn latin1_to_sloppy_windows_1252(c: char) -> char {
    let code = c as u32;
    if code < 0x100 {
        DECODE[SLOPPY_WINDOWS_1252][code as usize]
    } else {
        c
    }
}

/// `text.encode("latin-1").decode("windows-1252")` (strict): None where Python raises.
pub(crate) fn latin1_to_windows_1252(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let code = c as u32;
        if code >= 0x100 {
            return None; // not reached: the text is known to be Latin-1
        }
        if (0x80..0xA0).contains(&code) {
            let d = WINDOWS_1252_C1[(code - 0x80) as usize];
            if d == '\0' {
                return None;
            }
            out.push(d);
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// `bytes.decode("utf-8")` (strict).
pub(crate) fn decode_utf8(bytes: &[u8]) -> Option<String> {
    std::str::from_utf8(bytes).ok().map(str::to_owned)
}

/// `bytes.decode("utf-8-variants")`: UTF-8 that also accepts CESU-8 surrogate pairs and Java's
/// two-byte null `C0 80`, reproducing Python's incremental decoder in `utf8_variants.py`, including
/// the way its regular expressions' `$` also matches before a final newline byte.
pub(crate) fn decode_utf8_variants(input: &[u8]) -> Option<String> {
    let n = input.len();
    // Python's `$` in a bytes pattern without MULTILINE: at the end, or before a final b"\n"
    let at_end = |k: usize| k == n || (k + 1 == n && input[n - 1] == b'\n');
    let in_range = |k: usize, lo: u8, hi: u8| k < n && (lo..=hi).contains(&input[k]);
    // SPECIAL_BYTES_RE matches at i: NULL_EXPR `\xc0(\x80|$)`, or SURROGATE_EXPR
    // `\xed([\xa0-\xbf]|$)([\x80-\xbf]|$)` (CESU8_EXPR matches only where SURROGATE_EXPR does)
    let special_at = |i: usize| match input[i] {
        0xC0 => (i + 1 < n && input[i + 1] == 0x80) || at_end(i + 1),
        0xED => (in_range(i + 1, 0xA0, 0xBF) && (in_range(i + 2, 0x80, 0xBF) || at_end(i + 2))) || at_end(i + 1),
        _ => false,
    };
    let mut out = String::with_capacity(n);
    let mut pos = 0;
    while pos < n {
        let found = (pos..n).find(|&i| special_at(i));
        let Some(cutoff) = found else {
            out.push_str(std::str::from_utf8(&input[pos..]).ok()?);
            break;
        };
        if cutoff > pos {
            out.push_str(std::str::from_utf8(&input[pos..cutoff]).ok()?);
            pos = cutoff;
            continue;
        }
        let rest = &input[pos..];
        if rest[0] == 0xC0 {
            if rest.len() > 1 {
                out.push('\0');
                pos += 2;
                continue;
            }
            return None; // a lone C0 at the end: the real decoder raises
        }
        // an ED byte starting a surrogate: a CESU-8 pair, or an error
        if rest.len() < 6 {
            return None;
        }
        let l = rest.len();
        let cesu = (0xA0..=0xAF).contains(&rest[1])
            && (0x80..=0xBF).contains(&rest[2])
            && rest[3] == 0xED
            && (0xB0..=0xBF).contains(&rest[4])
            && ((0x80..=0xBF).contains(&rest[5]) || (l == 6 && rest[5] == b'\n'));
        if !cesu {
            return None;
        }
        let code = (((rest[1] & 0x0F) as u32) << 16)
            + (((rest[2] & 0x3F) as u32) << 10)
            + (((rest[4] & 0x0F) as u32) << 6)
            + ((rest[5] & 0x3F) as u32)
            + 0x10000;
        out.push(char::from_u32(code)?);
        pos += 6;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants() {
        assert_eq!(decode_utf8_variants(b"here comes a null! \xc0\x80").as_deref(), Some("here comes a null! \0"));
        assert_eq!(decode_utf8_variants(b"\xed\xa0\xbd\xed\xb2\xa9").as_deref(), Some("\u{1F4A9}"));
        assert_eq!(decode_utf8_variants(b"\xed\xa0\xbd"), None);
        assert_eq!(decode_utf8_variants(b"\xc3\xa9\xc0\n").as_deref(), Some("\u{e9}\0"));
        assert_eq!(decode_utf8_variants(b"\xed\xa0\xbd\xed\xb2\n").as_deref(), Some("\u{1F48A}"));
        assert_eq!(decode_utf8_variants(b"\xc0"), None);
        assert_eq!(decode_utf8_variants("한국".as_bytes()).as_deref(), Some("한국"));
    }
}
