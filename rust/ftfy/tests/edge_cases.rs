//! Edge cases whose Python results are known (computed with ftfy 6.3.1 on Python 3.11).

#[test]
fn long_multibyte_line() {
    // 400,001 code points on one line: segment lengths count code points, not bytes
    let text = "€".repeat(400_001);
    assert_eq!(ftfy::fix_text(&text), text);
}

#[test]
fn line_longer_than_max_decode_length() {
    // cut into segments of 1,000,000 code points; "Ã©" across the cut is not re-joined
    let mut text = "a".repeat(999_999);
    text.push_str("Ã©");
    let fixed = ftfy::fix_text(&text);
    assert_eq!(fixed.chars().count(), 1_000_001);
    assert!(fixed.ends_with("aÃ©"));
    let mut short = "a".repeat(999_998);
    short.push_str("Ã©");
    assert!(ftfy::fix_text(&short).ends_with("aé"));
}

#[test]
fn html_rule() {
    // entities are decoded unless a `<` appears: from that line on, they stay
    assert_eq!(ftfy::fix_text("&lt;tag&gt;\n&amp;"), "<tag>\n&");
    assert_eq!(ftfy::fix_text("a&amp;\n<b>&amp;\n&amp;"), "a&\n<b>&amp;\n&amp;");
    assert_eq!(ftfy::fix_text("&#59; &#x41; &EACUTE; &nTILDE;"), "&#59; A É &nTILDE;");
}

#[test]
fn terminal_escapes_and_controls() {
    assert_eq!(ftfy::fix_text("\u{1b}[36;44mblue\u{1b}[0m\u{0}x\u{feff}"), "bluex");
    assert_eq!(ftfy::fix_text("a\r\nb\rc\u{2028}d\u{85}e"), "a\nb\nc\nd…e");
}

#[test]
fn mojibake_detector_look_behind_stays_linear() {
    // every candidate match is preceded by a "strict continuation" character: Python's look-behind
    // rejects each at once; a naive retry loop would take quadratic time here
    let text = format!("©{}", "Ã©".repeat(200_000));
    assert_eq!(ftfy::fix_text(&text), text);
}
