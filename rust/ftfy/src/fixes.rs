//! ftfy's `fixes.py`: the individual fixes `fix_text` applies, each the same function of its input
//! as ftfy's.

use regex::bytes::Captures as ByteCaptures;
use regex::Captures;

use crate::chardata::{
    in_ranges, utf8_detector_matches, ALTERED_UTF8_RE, ANSI_RE, C1_CONTROL_RE, DOUBLE_QUOTE_RE, HTML_ENTITY_RE,
    LOSSY_UTF8_RE, SINGLE_QUOTE_RE,
};
use crate::codecs;
use crate::tables::{CONTROL_CHARS, HTML_ENTITIES, INVALID_CHARREFS, INVALID_CODEPOINTS, LIGATURES, WIDTH_MAP};

/// `html.unescape` of a numeric character reference `&#...;` as ftfy meets it: `body` is what lies
/// between `&#` and the final `;` (1 to 23 ASCII letters and digits). Returns the replacement when
/// the reference is the whole text and the result has no `;` (ftfy's `_unescape_fixup` rule), else None.
fn numeric_reference(body: &str) -> Option<String> {
    let bytes = body.as_bytes();
    let (radix, start) = if matches!(bytes.first(), Some(b'x' | b'X')) { (16, 1) } else { (10, 0) };
    let digits = bytes[start..].iter().take_while(|b| (**b as char).is_digit(radix)).count();
    if digits == 0 || start + digits != bytes.len() {
        return None; // html.unescape leaves part of it (always with the final `;`)
    }
    // saturated past U+10FFFF, where every number means U+FFFD
    let number = bytes[start..].iter().fold(0u32, |n, b| {
        (n.saturating_mul(radix).saturating_add((*b as char).to_digit(radix).unwrap_or(0))).min(0x110000)
    });
    let replacement = charref(number);
    if replacement.contains(';') {
        None
    } else {
        Some(replacement)
    }
}

/// What Python's `html.unescape` puts for the numeric reference `&#number;` (`html._replace_charref`):
/// Windows-1252 for 0x80-0x9F and the other remapped numbers, U+FFFD for surrogates and numbers past
/// U+10FFFF (give those saturated at 0x110000), nothing for the code points HTML5 forbids. Shared with
/// the clip-onnx crate's `html.unescape` port.
pub fn charref(number: u32) -> String {
    if let Ok(i) = INVALID_CHARREFS.binary_search_by_key(&number, |&(n, _)| n) {
        INVALID_CHARREFS[i].1.to_string()
    } else if (0xD800..=0xDFFF).contains(&number) || number > 0x10FFFF {
        '\u{FFFD}'.to_string()
    } else if INVALID_CODEPOINTS.binary_search(&number).is_ok() {
        String::new()
    } else {
        char::from_u32(number).map(String::from).unwrap_or_default()
    }
}

/// `fixes.unescape_html`: decode the HTML entities in `chardata.HTML_ENTITIES` and numeric
/// references, each only in its full `&...;` form.
pub fn unescape_html(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    HTML_ENTITY_RE
        .replace_all(text, |caps: &Captures| {
            let whole = &caps[0];
            if let Ok(i) = HTML_ENTITIES.binary_search_by(|e| e.0.as_bytes().cmp(whole.as_bytes())) {
                HTML_ENTITIES[i].1.to_owned()
            } else if let Some(body) = whole.strip_prefix("&#") {
                numeric_reference(&body[..body.len() - 1]).unwrap_or_else(|| whole.to_owned())
            } else {
                whole.to_owned()
            }
        })
        .into_owned()
}

/// `fixes.remove_terminal_escapes`: strip ANSI terminal escapes.
pub fn remove_terminal_escapes(text: &str) -> String {
    if !text.contains('\x1b') {
        return text.to_owned();
    }
    ANSI_RE.replace_all(text, "").into_owned()
}

/// `fixes.uncurl_quotes`: curly quotation marks to straight ones.
pub fn uncurl_quotes(text: &str) -> String {
    let doubled = DOUBLE_QUOTE_RE.replace_all(text, "\"");
    SINGLE_QUOTE_RE.replace_all(&doubled, "'").into_owned()
}

fn translate(text: &str, table: &[(char, &str)], lowest: char) -> String {
    if text.chars().all(|c| c < lowest) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c >= lowest {
            if let Ok(i) = table.binary_search_by_key(&c, |e| e.0) {
                out.push_str(table[i].1);
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// `fixes.fix_latin_ligatures`: `text.translate(LIGATURES)`.
pub fn fix_latin_ligatures(text: &str) -> String {
    translate(text, &LIGATURES, LIGATURES[0].0)
}

/// `fixes.fix_character_width`: `text.translate(WIDTH_MAP)`.
pub fn fix_character_width(text: &str) -> String {
    translate(text, &WIDTH_MAP, WIDTH_MAP[0].0)
}

/// `fixes.fix_line_breaks`: CRLF, CR, U+2028, U+2029 and U+0085 become `\n`.
pub fn fix_line_breaks(text: &str) -> String {
    if !text.contains(['\r', '\u{2028}', '\u{2029}', '\u{85}']) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                out.push('\n');
            }
            '\u{2028}' | '\u{2029}' | '\u{85}' => out.push('\n'),
            _ => out.push(c),
        }
    }
    out
}

/// `fixes.remove_control_chars`: `text.translate(CONTROL_CHARS)` (deletions).
pub fn remove_control_chars(text: &str) -> String {
    if !text.chars().any(|c| in_ranges(&CONTROL_CHARS, c)) {
        return text.to_owned();
    }
    text.chars().filter(|&c| !in_ranges(&CONTROL_CHARS, c)).collect()
}

/// `fixes.restore_byte_a0`: put back byte A0 where a space broke a UTF-8 sequence.
pub fn restore_byte_a0(bytes: &[u8]) -> Vec<u8> {
    // A_GRAVE_WORD_RE = b"\xc3 (?! |quele|quela|quilo|s )" -> b"\xc3\xa0 "
    let mut staged = Vec::with_capacity(bytes.len() + 8);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0xC3 && bytes.get(i + 1) == Some(&b' ') {
            let after = &bytes[i + 2..];
            let excluded = [&b" "[..], b"quele", b"quela", b"quilo", b"s "].iter().any(|w| after.starts_with(w));
            if !excluded {
                staged.extend_from_slice(b"\xc3\xa0 ");
                i += 2;
                continue;
            }
        }
        staged.push(bytes[i]);
        i += 1;
    }
    ALTERED_UTF8_RE
        .replace_all(&staged, |caps: &ByteCaptures| {
            caps[0].iter().map(|&b| if b == 0x20 { 0xA0 } else { b }).collect::<Vec<u8>>()
        })
        .into_owned()
}

/// `fixes.replace_lossy_sequences`: UTF-8 sequences with lost bytes (0x1A) become U+FFFD's bytes.
pub fn replace_lossy_sequences(bytes: &[u8]) -> Vec<u8> {
    LOSSY_UTF8_RE.replace_all(bytes, &b"\xef\xbf\xbd"[..]).into_owned()
}

/// `fixes.decode_inconsistent_utf8`: fix UTF-8 mojibake embedded in otherwise different text.
pub fn decode_inconsistent_utf8(text: &str) -> String {
    let matches = utf8_detector_matches(text);
    if matches.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (start, end) in matches {
        out.push_str(&text[last..start]);
        let substr = &text[start..end];
        // the match must be shorter than the text, so this does not recurse forever
        if substr.len() < text.len() && crate::badness::is_bad(substr) {
            out.push_str(&crate::fix_encoding(substr));
        } else {
            out.push_str(substr);
        }
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

/// `fixes.fix_c1_controls`: C1 controls read as their sloppy-windows-1252 characters.
pub fn fix_c1_controls(text: &str) -> String {
    if !C1_CONTROL_RE.is_match(text) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| if ('\u{80}'..='\u{9f}').contains(&c) { codecs::latin1_to_sloppy_windows_1252(c) } else { c })
        .collect()
}
