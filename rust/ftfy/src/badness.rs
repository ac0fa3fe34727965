//! ftfy's `badness.py`: the heuristic that detects likely mojibake (`BADNESS_RE`, generated from
//! ftfy's own pattern with every character class spelled out as Python 3.11 reads it).

use std::sync::LazyLock;

use regex::Regex;

static BADNESS_RE: LazyLock<Regex> = LazyLock::new(|| crate::chardata::build(crate::tables::BADNESS_RE));

/// `ftfy.badness.is_bad`: whether the text contains a sequence that looks like mojibake.
pub fn is_bad(text: &str) -> bool {
    BADNESS_RE.is_match(text)
}

/// `ftfy.badness.badness`: the number of (non-overlapping) mojibake-looking sequences.
pub fn badness(text: &str) -> usize {
    BADNESS_RE.find_iter(text).count()
}
