//! The shared table of bad inputs (tests/conformance/vectors.json `bad_inputs`) through the crate: each API case is an
//! `Err` of the case's kind (`Error::kind`), in one line naming the input at fault, and leaves its folder as
//! it was; each command-line case exits with its code, nothing on stdout and one line on stderr naming the
//! input. Python (tests/test_bad_inputs.py) and the Node consumer run the same table, so the same bad input
//! gives the same kind of error in every language. A case's folder with `changes` is a scratch copy of its
//! export with them made (rust/tests/common `apply`, hard links: the committed files never change). Every
//! case runs; the mismatches are listed together. Bare `cargo test --locked` runs it (ONNX Runtime:
//! `ORT_DYLIB_PATH`, else the .venv's onnxruntime wheel).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use clip_onnx::{ErrorKind, Model};
use common::{strings, text, vectors, with_ort, Vectors};
use serde_json::Value;

/// The table's cases whose `call` is (or, with `cli` false, is not) "cli".
fn cases(v: &Vectors, cli: bool) -> Vec<Value> {
    v["bad_inputs"].as_array().expect("the vectors have a bad_inputs table").iter().filter(|c| (c["call"] == "cli") == cli).cloned().collect()
}

/// Every file and folder under `root`: its size and modification time.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, Option<std::time::SystemTime>)> {
    let mut seen = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            seen.insert(entry.path(), (meta.len(), meta.modified().ok()));
        }
    }
    seen
}

/// The case's call through the public API, after loading its folder with the SHA-256 check on: the error
/// it ends in, or None if it succeeded.
fn run(v: &Vectors, case: &Value, folder: &Path) -> Result<Option<clip_onnx::Error>, String> {
    let model = match Model::load(folder) {
        Ok(model) => model,
        Err(error) => return Ok(Some(error)),
    };
    let outcome = match case["call"].as_str() {
        Some("load") => Ok(()),
        Some("encode_image") => model.encode_image(&v.paths(&case["images"])).map(drop),
        Some("encode_text") => {
            let texts = strings(&case["texts"]);
            model.encode_text(&texts.iter().map(String::as_str).collect::<Vec<_>>(), false).map(drop)
        }
        other => return Err(format!("unknown call {other:?}")),
    };
    Ok(outcome.err())
}

#[test]
fn the_vectors_name_the_kinds_the_crate_gives() {
    let v = vectors();
    let names: Vec<&str> = ErrorKind::ALL.iter().map(|kind| kind.as_str()).collect();
    assert_eq!(strings(&v["error_kinds"]), names);
    for case in v["bad_inputs"].as_array().unwrap() {
        assert!(names.contains(&case["kind"].as_str().unwrap()), "{}: kind {} is not one of the crate's", case["name"], case["kind"]);
    }
}

#[test]
fn each_api_case_is_an_error_of_its_kind_in_one_line_naming_the_input() {
    let v = with_ort();
    let cases = cases(v, false);
    assert!(!cases.is_empty(), "the table has no API case");
    let committed = snapshot(&v.root);
    let mut wrong = BTreeMap::new();
    for case in &cases {
        let (kind, names) = (text(&case["kind"]), text(&case["names"]));
        let (folder, _scratch) = v.case_folder(case);
        let before = snapshot(&folder);
        let outcome = run(v, case, &folder);
        if snapshot(&folder) != before {
            wrong.insert(text(&case["name"]), format!("{} changed", folder.display()));
            continue;
        }
        match outcome {
            Err(why) => wrong.insert(text(&case["name"]), why),
            Ok(None) => wrong.insert(text(&case["name"]), format!("no error; expected {kind}")),
            Ok(Some(error)) if error.kind().as_str() != kind || !error.message().contains(&names) || error.message().contains(['\n', '\r']) => {
                wrong.insert(text(&case["name"]), format!("{} {:?}; expected {kind} naming {names:?} in one line", error.kind(), error.message()))
            }
            Ok(Some(_)) => None,
        };
    }
    assert!(wrong.is_empty(), "{} of {} API cases are wrong:\n{wrong:#?}", wrong.len(), cases.len());
    assert!(snapshot(&v.root) == committed, "a case changed the committed files under {}", v.root.display());
    common::report(&format!("{} API cases ran, 0 skipped", cases.len()));
}

#[test]
fn each_command_line_case_exits_with_its_code_and_one_line_naming_the_input() {
    let v = with_ort();
    let cases = cases(v, true);
    assert!(!cases.is_empty(), "the table has no command-line case");
    let mut wrong = BTreeMap::new();
    for case in &cases {
        let (folder, _scratch) = v.case_folder(case);
        // in the artifact's folder: the images are paths relative to it
        let output = Command::new(env!("CARGO_BIN_EXE_clip-onnx"))
            .arg("classify")
            .args(strings(&case["images"]))
            .arg("-m")
            .arg(&folder)
            .args(["--labels", &text(&case["labels"]), "--top", &text(&case["top"])])
            .current_dir(&v.root)
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        // a note (the Python CLI's on random weights) is not part of the error
        let lines: Vec<&str> = stderr.lines().filter(|line| !line.starts_with("clip-onnx: note:")).collect();
        let names = text(&case["names"]);
        let exit = case["exit"].as_i64().map(|code| code as i32);
        if output.status.code() != exit || !output.stdout.is_empty() || lines.len() != 1 || !lines[0].contains(&names) {
            let stdout = String::from_utf8_lossy(&output.stdout);
            wrong.insert(text(&case["name"]), format!("exit {:?}, stdout {stdout:?}, stderr {stderr:?}; expected exit {exit:?} and one line naming {names:?}", output.status.code()));
        }
    }
    assert!(wrong.is_empty(), "{} of {} command-line cases are wrong:\n{wrong:#?}", wrong.len(), cases.len());
    common::report(&format!("{} command-line cases ran, 0 skipped", cases.len()));
}
