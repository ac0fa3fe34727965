//! Unicode NFC as Python 3.11's `unicodedata.normalize("NFC", text)` computes it: Unicode 14.0.0
//! data (combining classes, canonical decompositions, primary composites) generated from Python's
//! `unicodedata` into `tables.rs`, so the result does not depend on the Unicode version of any Rust
//! crate. The algorithm is the standard one of UAX #15 (decompose, order, compose), Hangul included.

use crate::chardata::in_ranges;
use crate::tables::{CCC, COMPOSE, NFC_QUICK_CHECK_NOT_YES, NFD};

const S_BASE: u32 = 0xAC00;
const L_BASE: u32 = 0x1100;
const V_BASE: u32 = 0x1161;
const T_BASE: u32 = 0x11A7;
const L_COUNT: u32 = 19;
const V_COUNT: u32 = 21;
const T_COUNT: u32 = 28;
const N_COUNT: u32 = V_COUNT * T_COUNT;
const S_COUNT: u32 = L_COUNT * N_COUNT;

/// The canonical combining class of `c` (Unicode 14.0.0).
pub(crate) fn ccc(c: char) -> u8 {
    let code = c as u32;
    if code < 0x300 {
        return 0;
    }
    match CCC.binary_search_by(|&(lo, hi, _)| {
        if hi < code {
            std::cmp::Ordering::Less
        } else if lo > code {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        }
    }) {
        Ok(i) => CCC[i].2,
        Err(_) => 0,
    }
}

fn decompose(c: char, out: &mut Vec<char>) {
    let code = c as u32;
    if (S_BASE..S_BASE + S_COUNT).contains(&code) {
        let s = code - S_BASE;
        out.push(char::from_u32(L_BASE + s / N_COUNT).unwrap());
        out.push(char::from_u32(V_BASE + (s % N_COUNT) / T_COUNT).unwrap());
        if s % T_COUNT != 0 {
            out.push(char::from_u32(T_BASE + s % T_COUNT).unwrap());
        }
        return;
    }
    if code >= 0xC0 {
        if let Ok(i) = NFD.binary_search_by_key(&c, |e| e.0) {
            out.extend(NFD[i].1.chars());
            return;
        }
    }
    out.push(c);
}

fn compose(a: char, b: char) -> Option<char> {
    let (ca, cb) = (a as u32, b as u32);
    if (L_BASE..L_BASE + L_COUNT).contains(&ca) && (V_BASE..V_BASE + V_COUNT).contains(&cb) {
        return char::from_u32(S_BASE + ((ca - L_BASE) * V_COUNT + (cb - V_BASE)) * T_COUNT);
    }
    if (S_BASE..S_BASE + S_COUNT).contains(&ca)
        && (ca - S_BASE) % T_COUNT == 0
        && (T_BASE + 1..T_BASE + T_COUNT).contains(&cb)
    {
        return char::from_u32(ca + (cb - T_BASE));
    }
    COMPOSE.binary_search_by(|e| (e.0, e.1).cmp(&(a, b))).ok().map(|i| COMPOSE[i].2)
}

/// Whether NFC leaves the text as it is for certain (no character that NFC could change).
fn quick_check_yes(text: &str) -> bool {
    text.chars().all(|c| (c as u32) < 0x300 || !in_ranges(&NFC_QUICK_CHECK_NOT_YES, c))
}

/// `unicodedata.normalize("NFC", text)` with Python 3.11's Unicode 14.0.0 data.
pub fn nfc(text: &str) -> String {
    if quick_check_yes(text) {
        return text.to_owned();
    }
    let mut chars: Vec<char> = Vec::with_capacity(text.len());
    for c in text.chars() {
        decompose(c, &mut chars);
    }
    // canonical ordering: stable sort of every run of non-starters by combining class
    let classes: Vec<u8> = chars.iter().map(|&c| ccc(c)).collect();
    let mut i = 0;
    while i < chars.len() {
        if classes[i] == 0 {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && classes[i] != 0 {
            i += 1;
        }
        if i - start > 1 {
            let mut run: Vec<(u8, char)> = (start..i).map(|k| (classes[k], chars[k])).collect();
            run.sort_by_key(|&(k, _)| k); // stable
            for (k, (_, c)) in run.into_iter().enumerate() {
                chars[start + k] = c;
            }
        }
    }
    // canonical composition
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    let mut starter: Option<usize> = None;
    let mut last_class: u8 = 0;
    for c in chars {
        let class = ccc(c);
        if let Some(s) = starter {
            let adjacent = out.len() - 1 == s;
            // blocked when something between the starter and c has class 0 or >= c's class; between
            // them lie only uncombined non-starters in non-decreasing order, the last one the largest
            let blocked = !adjacent && (last_class >= class || last_class == 0);
            if !blocked {
                if let Some(composed) = compose(out[s], c) {
                    out[s] = composed;
                    continue;
                }
            }
        }
        if class == 0 {
            starter = Some(out.len());
            last_class = 0;
        } else {
            last_class = class;
        }
        out.push(c);
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::nfc;

    #[test]
    fn compositions() {
        assert_eq!(nfc("e\u{301}"), "\u{e9}");
        assert_eq!(nfc("\u{1100}\u{1161}\u{11A8}"), "\u{AC01}");
        assert_eq!(nfc("a\u{323}\u{302}"), "\u{1EAD}");
        assert_eq!(nfc("a\u{302}\u{323}"), "\u{1EAD}");
        assert_eq!(nfc("\u{212B}"), "\u{C5}");
        assert_eq!(nfc("\u{0344}"), "\u{308}\u{301}");
        assert_eq!(nfc("plain"), "plain");
    }
}
