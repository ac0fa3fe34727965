//! Applies `fix_text` or `nfc` to every string of a JSON list, for comparisons with Python
//! (`scripts/compare_with_python.py`), or times `fix_text` on a set of the conformance file.
//!
//! `ftfy_map fix_text|nfc IN.json OUT.json` | `ftfy_map bench CASES.json SET`

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: ftfy_map fix_text|nfc IN.json OUT.json | ftfy_map bench CASES.json SET";
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    match args.get(1).map(String::as_str) {
        Some("bench") if args.len() == 4 => {
            let json: serde_json::Value = serde_json::from_str(&read(&args[2])).expect("JSON");
            let texts: Vec<&str> =
                json["sets"][&args[3]].as_array().expect("a set").iter().map(|i| i["text"].as_str().unwrap()).collect();
            let _ = ftfy::fix_text("warm up Ã©"); // compile the regexes
            for _ in 0..5 {
                let start = Instant::now();
                let bytes: usize = texts.iter().map(|t| ftfy::fix_text(t).len()).sum();
                let seconds = start.elapsed().as_secs_f64();
                println!(
                    "{} texts in {seconds:.4} s: {:.0} texts/s ({bytes} bytes out)",
                    texts.len(),
                    texts.len() as f64 / seconds
                );
            }
        }
        Some(which @ ("fix_text" | "nfc")) if args.len() == 4 => {
            let f: fn(&str) -> String = if which == "nfc" { ftfy::nfc } else { ftfy::fix_text };
            let input: Vec<String> = serde_json::from_str(&read(&args[2])).expect("a JSON list of strings");
            let output: Vec<String> = input.iter().map(|s| f(s)).collect();
            std::fs::write(&args[3], serde_json::to_string(&output).unwrap()).expect("write");
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
