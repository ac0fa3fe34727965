//! ftfy's `chardata.py`: the compiled regular expressions that find mojibake, HTML entities and
//! other character classes, and helpers over the generated code point tables.

use std::sync::LazyLock;

use regex::{bytes, Regex, RegexBuilder};

use crate::tables;

pub(crate) fn build(pattern: &str) -> Regex {
    RegexBuilder::new(pattern).size_limit(1 << 27).dfa_size_limit(1 << 26).build().expect("generated pattern compiles")
}

fn build_bytes(pattern: &str) -> bytes::Regex {
    bytes::RegexBuilder::new(pattern).build().expect("generated pattern compiles")
}

/// Whether `c` lies in one of the sorted, disjoint `(first, last)` ranges.
pub(crate) fn in_ranges(ranges: &[(u32, u32)], c: char) -> bool {
    let c = c as u32;
    ranges
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

static UTF8_DETECTOR_AT_START_RE: LazyLock<Regex> = LazyLock::new(|| build(tables::UTF8_DETECTOR_AT_START_RE));
static UTF8_DETECTOR_AFTER_RE: LazyLock<Regex> = LazyLock::new(|| build(tables::UTF8_DETECTOR_AFTER_RE));
pub(crate) static HTML_ENTITY_RE: LazyLock<Regex> = LazyLock::new(|| build(tables::HTML_ENTITY_RE));
pub(crate) static ANSI_RE: LazyLock<Regex> = LazyLock::new(|| build(tables::ANSI_RE));
pub(crate) static C1_CONTROL_RE: LazyLock<Regex> = LazyLock::new(|| build(tables::C1_CONTROL_RE));
pub(crate) static SINGLE_QUOTE_RE: LazyLock<Regex> = LazyLock::new(|| build(tables::SINGLE_QUOTE_RE));
pub(crate) static DOUBLE_QUOTE_RE: LazyLock<Regex> = LazyLock::new(|| build(tables::DOUBLE_QUOTE_RE));
pub(crate) static ALTERED_UTF8_RE: LazyLock<bytes::Regex> = LazyLock::new(|| build_bytes(tables::ALTERED_UTF8_RE));
pub(crate) static LOSSY_UTF8_RE: LazyLock<bytes::Regex> = LazyLock::new(|| build_bytes(tables::LOSSY_UTF8_RE));

/// The next match of `UTF8_DETECTOR_RE` at or after byte `pos` (Python's `search(text, pos)`).
///
/// The pattern begins with a look-behind, `(?<! [utf8_continuation_strict])`, which the `regex`
/// crate lacks: at the start of the text the match is that of `^(?:BODY)`; elsewhere it is found as
/// one character outside that class (the one before the match, consumed rather than looked at)
/// followed by the match. Leftmost match and leftmost-first preferences are those of Python's engine.
fn utf8_detector_find(text: &str, pos: usize) -> Option<(usize, usize)> {
    if pos == 0 {
        if let Some(m) = UTF8_DETECTOR_AT_START_RE.find(text) {
            return Some((m.start(), m.end()));
        }
    }
    // start at the character before `pos`, the context of a match starting at `pos`
    let from = text[..pos].chars().next_back().map_or(0, |c| pos - c.len_utf8());
    let m = UTF8_DETECTOR_AFTER_RE.find_at(text, from)?;
    let context = text[m.start()..].chars().next().map_or(0, char::len_utf8);
    Some((m.start() + context, m.end()))
}

/// The matches of `UTF8_DETECTOR_RE` in `text`, as byte ranges (`finditer`).
pub(crate) fn utf8_detector_matches(text: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let Some((start, end)) = utf8_detector_find(text, pos) else { break };
        found.push((start, end));
        pos = end;
    }
    found
}

/// `UTF8_DETECTOR_RE.search(text)`.
pub(crate) fn utf8_detector_search(text: &str) -> bool {
    utf8_detector_find(text, 0).is_some()
}
