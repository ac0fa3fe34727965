//! Conformance with Python's ftfy 6.3.1: every text of the committed cases file,
//! tests/conformance/cleaning.json (`{"ftfy": "6.3.1", "sets": {name: [{"text", "fixed", "cleaned"}, ...]}}`,
//! written by the project's `tests/ftfy_cases.py`), or of the file `CLIP_ONNX_FTFY_CASES` names, must give
//! `fixed` exactly.

use std::collections::BTreeMap;

use serde_json::Value;

#[test]
fn conformance() {
    let path = std::env::var("CLIP_ONNX_FTFY_CASES")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/conformance/cleaning.json").to_string());
    let data = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let json: Value = serde_json::from_str(&data).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(json["ftfy"], "6.3.1", "{path}: cases from another ftfy version");
    let sets = json["sets"].as_object().expect("sets");
    let mut failures = BTreeMap::new();
    for (name, items) in sets {
        let items = items.as_array().expect("a list of cases");
        let mut differ = 0;
        for (i, item) in items.iter().enumerate() {
            let text = item["text"].as_str().expect("text");
            let fixed = item["fixed"].as_str().expect("fixed");
            let got = ftfy::fix_text(text);
            if got != fixed {
                if differ < 5 {
                    eprintln!("{name}[{i}]:\n  text:   {text:?}\n  python: {fixed:?}\n  rust:   {got:?}");
                }
                differ += 1;
            }
        }
        println!("{name}: {} texts, {differ} differ", items.len());
        if differ > 0 {
            failures.insert(name.clone(), differ);
        }
    }
    assert!(failures.is_empty(), "texts that differ from Python's ftfy: {failures:?}");
}
