//! The `clip-onnx` binary on what a newcomer gets wrong: every bad argument, folder, image and text is
//! exactly one line on stderr starting `clip-onnx: error: `, nothing on stdout, exit 2 for a usage error and
//! 1 for the rest (as the Python CLI), never a panic or a backtrace, and no file written in the model folder
//! or the working directory. Uses the committed conformance artifact (tests/conformance/vectors.json; an
//! altered export is a scratch copy made by rust/tests/common `apply`); bare `cargo test --locked` runs it
//! (ONNX Runtime: `ORT_DYLIB_PATH`, else the .venv's onnxruntime wheel).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{text, with_ort, Scratch};
use serde_json::{json, Value};

/// Every file and folder under `root`: its size and modification time.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, Option<std::time::SystemTime>)> {
    let mut seen = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            seen.insert(entry.path(), (meta.len(), meta.modified().ok()));
        }
    }
    seen
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// The binary with `args`, from an empty working directory, with backtraces on (so a panic would show one);
/// asserts that neither that directory nor `watched` (the model folder) changed.
fn run(args: &[&str], watched: &Path) -> Ran {
    let cwd = Scratch::new("cwd");
    let before = snapshot(watched);
    let output = Command::new(env!("CARGO_BIN_EXE_clip-onnx"))
        .args(args)
        .current_dir(&cwd.0)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(snapshot(watched), before, "clip-onnx {args:?} changed {}", watched.display());
    assert!(snapshot(&cwd.0).is_empty(), "clip-onnx {args:?} wrote into its working directory: {:?}", snapshot(&cwd.0));
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `args` fail with exit `code` and exactly the one line `line` on stderr, nothing on stdout.
fn refused(args: &[&str], watched: &Path, code: i32, line: &str) {
    let ran = run(args, watched);
    assert_eq!(ran.stderr, format!("{line}\n"), "clip-onnx {args:?}: not the one expected line");
    assert_eq!(ran.code, Some(code), "clip-onnx {args:?}: exit code; stderr: {}", ran.stderr);
    assert!(ran.stdout.is_empty(), "clip-onnx {args:?} printed {:?}", ran.stdout);
}

fn usage_error(args: &[&str], watched: &Path, message: &str) {
    refused(args, watched, 2, &format!("clip-onnx: error: {message}; see clip-onnx --help"));
}

fn error(args: &[&str], watched: &Path, message: &str) {
    refused(args, watched, 1, &format!("clip-onnx: error: {message}"));
}

/// The file of `list` (a list of the artifact's paths) whose file name is `name`, absolute.
fn file_named(list: &Value, name: &str) -> String {
    let v = with_ort();
    let found = v.paths(list).into_iter().find(|path| path.file_name().is_some_and(|n| n == name));
    found.unwrap_or_else(|| panic!("no {name} in {list}")).display().to_string()
}

/// The first export's folder and the first PNG, absolute: the binary runs in an empty folder.
fn model_and_image() -> (String, String) {
    let v = with_ort();
    (v.export().display().to_string(), v.paths(&v["images"])[0].display().to_string())
}

#[test]
fn a_bad_top_is_a_usage_error_before_anything_is_read() {
    let (folder, image) = model_and_image();
    let watched = Path::new(&folder);
    let classify = |top: &str| vec!["classify", image.as_str(), "-m", folder.as_str(), "--labels", "a cat,a dog", "--top", top].into_iter().map(String::from).collect::<Vec<_>>();
    for (top, message) in [
        ("0", "argument --top: 0 is less than 1"),
        ("-3", "argument --top: -3 is less than 1"),
        ("x", "argument --top: invalid whole number value: 'x'"),
        ("2.5", "argument --top: invalid whole number value: '2.5'"),
        ("-.5", "argument --top: invalid whole number value: '-.5'"),
        ("", "argument --top: invalid whole number value: ''"),
    ] {
        let args = classify(top);
        usage_error(&args.iter().map(String::as_str).collect::<Vec<_>>(), watched, message);
    }
    // --top with no value, and a missing model folder that is never opened: the --top error comes first
    usage_error(&["classify", &image, "--labels", "a cat", "--top"], watched, "argument --top: expected one argument");
    usage_error(&["classify", &image, "--labels", "a cat", "--top", "-x"], watched, "argument --top: expected one argument");
    usage_error(&["classify", &image, "--labels", "a cat", "--top", "-inf"], watched, "argument --top: expected one argument");
    usage_error(&["classify", &image, "-m", "/nonexistent", "--labels", "a cat", "--top", "0"], watched, "argument --top: 0 is less than 1");
}

#[test]
fn top_1_shows_one_label_per_image_and_a_large_top_shows_every_label() {
    let (folder, image) = model_and_image();
    for (top, shown) in [("1", 1), ("+2", 2), ("99", 3)] {
        let ran = run(&["classify", &image, &image, "-m", &folder, "--labels", "a cat,a dog,a fish", "--top", top], Path::new(&folder));
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        let lines: Vec<&str> = ran.stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{}", ran.stdout);
        for line in lines {
            assert!(line.starts_with(&format!("{image}: ")), "{line}");
            assert_eq!(line.matches(", ").count() + 1, shown, "--top {top}: {line}");
        }
    }
}

#[test]
fn blank_labels_a_bad_template_and_missing_or_unknown_arguments_are_usage_errors() {
    let (folder, image) = model_and_image();
    let watched = Path::new(&folder);
    let m = folder.as_str();
    for (labels, shown) in [("", "''"), (" , ,", "' , ,'"), (",", "','")] {
        usage_error(&["classify", &image, "-m", m, "--labels", labels], watched, &format!("argument --labels: {shown} names no label; give comma-separated labels"));
    }
    usage_error(&["classify", &image, "-m", m, "--labels="], watched, "argument --labels: '' names no label; give comma-separated labels");
    let template = |t: &str| format!("argument --template: '{t}' must hold {{}} exactly once, where the label goes, and no other {{...}} field; write a literal brace as {{{{ or }}}}");
    for t in ["a photo", "{} and {}", "a {x} {}", "{0}", "a } {}", "{"] {
        usage_error(&["classify", &image, "-m", m, "--labels", "a cat", "--template", t], watched, &template(t));
    }
    usage_error(&["classify"], watched, "the following arguments are required: IMAGE, --labels, -m/--model");
    usage_error(&["classify", "-m", m, "--labels", "a cat"], watched, "the following arguments are required: IMAGE");
    usage_error(&["classify", &image, "-m", m], watched, "the following arguments are required: --labels");
    usage_error(&["classify", &image, "--labels", "a cat"], watched, "the following arguments are required: -m/--model");
    usage_error(&["classify", &image, "-m", m, "--labels", "--top", "2"], watched, "argument --labels: expected one argument");
    usage_error(&["classify", &image, "-m", m, "--labels", "a cat", "--tpo", "2"], watched, "unrecognized arguments: --tpo");
    usage_error(&["classify", &image, "-m", m, "--labels", "a cat", "--truncate=yes"], watched, "argument --truncate: ignored explicit argument 'yes'");
    usage_error(&[], watched, "the following arguments are required: COMMAND (classify or download)");
    usage_error(&["clasify", &image], watched, "argument COMMAND: invalid choice: 'clasify' (choose from 'classify', 'download')");
    usage_error(&["download"], watched, "the following arguments are required: NAME or REPO, -o/--output (NAME of a variant of the release this build pins, e.g. ViT-B-32; or REPO as org/name with --revision)");
    usage_error(&["download", "org/x", "-o", "out"], watched, "the following arguments are required: --revision (REPO as org/name, e.g. org/clip-onnx-ViT-B-32)");
    // a variant name downloads the release the build pins, at its tag: a revision with it is a contradiction
    usage_error(
        &["download", "tiny-ViT", "--revision", "v1", "-o", "d"],
        watched,
        "argument --revision: goes with REPO (org/name); a variant name ('tiny-ViT') downloads the release this build pins, at its tag: drop --revision, or give REPO as org/name",
    );
    usage_error(&["download", "org/x", "--revision", "v1", "-o", "out", "--precision", "fp8"], watched, "argument --precision: invalid choice: 'fp8' (choose from 'fp32', 'fp16')");
    // --graphs: each a graph a release may hold, each once, at least one; refused before anything is fetched
    let download = |graphs: &str| ["download", "org/x", "--revision", "v1", "-o", "out", "--endpoint", "http://127.0.0.1:9", "--graphs", graphs].map(String::from);
    let choices = "'forward', 'visual', 'transformer'";
    for (graphs, message) in [
        ("visual,text", format!("argument --graphs: invalid choice: 'text' (choose from {choices})")),
        ("Visual", format!("argument --graphs: invalid choice: 'Visual' (choose from {choices})")),
        ("visual, transformer,visual", "argument --graphs: 'visual' is named twice; give each graph once".to_string()),
        (" , ", format!("argument --graphs: ' , ' names no graph; give comma-separated graphs from {choices}")),
    ] {
        let args = download(graphs);
        usage_error(&args.iter().map(String::as_str).collect::<Vec<_>>(), watched, &message);
    }
}

#[test]
fn a_missing_unreadable_or_undecodable_image_is_an_error_naming_it() {
    let v = with_ort();
    let (folder, image) = model_and_image();
    let watched = Path::new(&folder);
    let classify = |image: &str| ["classify", image, "-m", folder.as_str(), "--labels", "a cat"].map(String::from);
    let missing = "/nonexistent/cat.png";
    let reason = std::fs::metadata(missing).unwrap_err();
    let args = classify(missing);
    error(&args.each_ref().map(String::as_str), watched, &format!("image {missing}: cannot be read ({reason}); check the path"));
    let a_folder = folder.as_str();
    let args = classify(a_folder);
    error(&args.each_ref().map(String::as_str), watched, &format!("image {a_folder}: is a folder, not an image file; give image files (PNG, JPEG, WebP, GIF, BMP or TIFF)"));
    // the formats the model's preprocess.json lists, as the messages name them
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(Path::new(&folder).join("preprocess.json")).unwrap()).unwrap();
    let list = spec["input"]["formats"].as_object().unwrap().keys().cloned().collect::<Vec<_>>().join(", ");
    for (file, says) in [
        (file_named(&v["bad_images"], "empty.png"), format!("an empty file, not an image; this crate reads {list}")),
        (file_named(&v["bad_images"], "text.png"), format!("not an image format this crate reads ({list}, as preprocess.json's input.formats lists): convert it to PNG")),
        (file_named(&v["unlisted_images"], "pixmap.ppm"), format!("is in the PPM format; this crate reads {list}: convert it to PNG")),
    ] {
        let args = classify(&file);
        error(&args.each_ref().map(String::as_str), watched, &format!("image {file}: {says}"));
    }
    // a truncated PNG: the decoder's reason is its own, the line's shape is ours
    let truncated = file_named(&v["bad_images"], "truncated-chelsea.png");
    let ran = run(&classify(&truncated).each_ref().map(String::as_str), watched);
    assert_eq!(ran.code, Some(1), "{}", ran.stderr);
    assert!(ran.stdout.is_empty());
    let prefix = format!("clip-onnx: error: image {truncated}: this PNG file cannot be decoded (");
    assert!(ran.stderr.starts_with(&prefix) && ran.stderr.ends_with("); it may be truncated or damaged\n"), "{}", ran.stderr);
    assert_eq!(ran.stderr.lines().count(), 1, "{}", ran.stderr);
    // a good image beside a bad one: nothing printed for the good one either
    let ran = run(&["classify", &image, &file_named(&v["bad_images"], "empty.png"), "-m", &folder, "--labels", "a cat"], watched);
    assert_eq!((ran.code, ran.stdout.as_str(), ran.stderr.lines().count()), (Some(1), "", 1), "{}", ran.stderr);
}

#[test]
fn a_truncated_jpeg_is_an_error_naming_it() {
    let v = with_ort();
    let (folder, _) = model_and_image();
    let jpeg = file_named(&v["bad_images"], "truncated-chelsea.jpg");
    let ran = run(&["classify", &jpeg, "-m", &folder, "--labels", "a cat"], Path::new(&folder));
    assert_eq!(ran.code, Some(1), "a truncated JPEG was classified: {}", ran.stdout);
    assert!(ran.stderr.starts_with(&format!("clip-onnx: error: image {jpeg}: ")), "{}", ran.stderr);
}

#[test]
fn a_folder_without_a_manifest_or_with_a_format_version_this_crate_does_not_read_is_refused() {
    let (_, image) = model_and_image();
    let empty = Scratch::new("no-manifest");
    let shown = empty.0.display().to_string();
    let reason = std::fs::read_to_string(empty.0.join("manifest.json")).unwrap_err();
    error(&["classify", &image, "-m", &shown, "--labels", "a cat"], &empty.0, &format!(
        "{shown}: no readable manifest.json ({reason}); give a folder written by `clip-onnx export` or downloaded from a release"
    ));
    // a copy of the export (hard links) whose manifest says format_version 1, or says none
    for (version, shown_version) in [(Value::from(1), "1"), (Value::Null, "null"), (Value::from("2"), "\"2\"")] {
        let (copy, _scratch) = with_ort().changed_export("format-version", &json!([
            {"op": "json", "file": "manifest.json", "path": ["format_version"], "value": version},
        ]));
        error(&["classify", &image, "-m", copy.to_str().unwrap(), "--labels", "a cat"], &copy, &format!(
            "{}: format_version {shown_version}, but this clip-onnx crate reads 2; upgrade the clip-onnx crate (depend on a newer tag of it), or use files of a release with format_version 2",
            copy.join("manifest.json").display()
        ));
    }
    assert_eq!(clip_onnx::manifest::FORMAT_VERSIONS, [2], "the expected lines above name the versions read");
}

/// A copy of the export (hard links) whose manifest.json is `manifest` and, if given, whose preprocess.json
/// is `spec`, re-hashed in the manifest so the SHA-256 check passes.
fn copy_with(what: &str, manifest: Value, spec: Option<Value>) -> (PathBuf, Scratch) {
    let mut changes = vec![json!({"op": "write", "file": "manifest.json", "text": manifest.to_string()})];
    if let Some(spec) = spec {
        changes.push(json!({"op": "write", "file": "preprocess.json", "text": spec.to_string()}));
        changes.push(json!({"op": "rehash", "file": "preprocess.json"}));
    }
    with_ort().changed_export(what, &Value::from(changes))
}

#[test]
fn preprocess_json_naming_rules_this_crate_does_not_implement_or_malformed_is_refused_in_one_line() {
    let (folder, image) = model_and_image();
    let read = |name: &str| -> Value { serde_json::from_str(&std::fs::read_to_string(Path::new(&folder).join(name)).unwrap()).unwrap() };
    let (manifest, spec) = (read("manifest.json"), read("preprocess.json"));
    let upgrade = "upgrade the clip-onnx crate, or use files of a release it reads";
    let changed = |change: &dyn Fn(&mut Value)| {
        let mut spec = spec.clone();
        change(&mut spec);
        spec
    };
    for (what, spec, line) in [
        ("lanczos", changed(&|s| s["rules"]["resize_filter"] = "lanczos".into()),
         format!("rule resize_filter is \"lanczos\", which this clip-onnx crate does not implement (it implements \"pillow_bicubic_antialiased\"); {upgrade}")),
        ("unknown-rule", changed(&|s| s["rules"]["foo"] = "bar".into()), format!("rule \"foo\" is not one this clip-onnx crate knows; {upgrade}")),
        ("missing-rule", changed(&|s| drop(s["rules"].as_object_mut().unwrap().remove("resize_filter"))), String::new()),
        ("two-means", changed(&|s| s["mean"] = serde_json::json!([0.5, 0.5])), "mean is [0.5,0.5], not 3 finite numbers (R, G, B); export the variant again".into()),
    ] {
        let (copy, _scratch) = copy_with(what, manifest.clone(), Some(spec));
        let path = copy.join("preprocess.json").display().to_string();
        let message = if line.is_empty() {
            format!("{path} lacks rule resize_filter; export the variant again with a clip-onnx that writes it")
        } else {
            format!("{path}: {line}")
        };
        error(&["classify", &image, "-m", copy.to_str().unwrap(), "--labels", "a cat"], &copy, &message);
    }
}

#[test]
fn a_manifest_naming_another_ftfy_is_refused_in_one_line() {
    let (folder, image) = model_and_image();
    let mut manifest: Value = serde_json::from_str(&std::fs::read_to_string(Path::new(&folder).join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["tokenizer"]["ftfy"], "6.3.1", "the export names the ftfy its texts are cleaned with");
    manifest["tokenizer"]["ftfy"] = "6.2.0".into();
    let (copy, _scratch) = copy_with("ftfy", manifest, None);
    error(&["classify", &image, "-m", copy.to_str().unwrap(), "--labels", "a cat"], &copy, &format!(
        "{}: tokenizer.ftfy is \"6.2.0\", but this clip-onnx crate cleans texts as ftfy 6.3.1 does, so token ids could differ from Python's; \
         upgrade the clip-onnx crate, or use files of a release it reads",
        copy.join("manifest.json").display()
    ));
}

#[test]
fn an_over_long_caption_is_an_error_without_truncate_and_classified_with_it() {
    let (folder, image) = model_and_image();
    let watched = Path::new(&folder);
    let long = vec!["cat"; 100].join(" ");
    let args = ["classify", image.as_str(), "-m", folder.as_str(), "--labels", long.as_str(), "--template", "a photo of {}."];
    let shown: String = format!("a photo of {long}.").chars().take(60).collect();
    error(&args, watched, &format!("text {shown:?} is longer than 77 tokens; shorten it or pass truncate (--truncate)"));
    let ran = run(&[&args[..], &["--truncate"]].concat(), watched);
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(ran.stdout, format!("{image}: {long} 1.000\n"));
}

#[test]
fn no_sha256_check_skips_the_check_and_onnx_runtime_still_refuses_a_broken_graph() {
    let v = with_ort();
    let (folder, image) = model_and_image();
    // the shared bad_inputs table's visual graph cut in half (rust/tests/bad_inputs.rs checks the refusal's kind)
    let (truncated, _scratch) = v.case_folder(v.case("_visual.onnx cut in half"));
    let truncated = truncated.display().to_string();
    let watched = Path::new(&truncated);
    let args = ["classify", image.as_str(), "-m", truncated.as_str(), "--labels", "a cat"];
    let checked = run(&args, watched);
    assert!(checked.stderr.contains("bytes, the manifest says"), "{}", checked.stderr);
    let unchecked = run(&[&args[..], &["--no-sha256-check"]].concat(), watched);
    assert!(unchecked.stderr.starts_with("clip-onnx: error: ") && unchecked.stderr.contains("ONNX Runtime cannot load it"), "{}", unchecked.stderr);
    for ran in [checked, unchecked] {
        assert_eq!((ran.code, ran.stdout.as_str(), ran.stderr.lines().count()), (Some(1), "", 1), "{}", ran.stderr);
    }
    let ran = run(&["classify", &image, "-m", &folder, "--labels", "a cat", "--no-sha256-check"], Path::new(&folder));
    assert_eq!((ran.code, ran.stdout), (Some(0), format!("{image}: a cat 1.000\n")), "{}", ran.stderr);
}

#[test]
fn a_variant_name_without_a_release_table_is_a_usage_error_saying_to_download_by_repo_and_revision() {
    let (folder, _) = model_and_image();
    if Path::new(env!("CARGO_MANIFEST_DIR")).join("release.json").exists() {
        return; // a table written into the checkout is embedded; rust/tests/release.rs checks it parses
    }
    let out = Scratch::new("no-release");
    let target = out.0.join("models");
    usage_error(
        &["download", "tiny-ViT", "-o", target.to_str().unwrap(), "--endpoint", "http://127.0.0.1:9"],
        Path::new(&folder),
        "this clip-onnx pins no release (it was built from a checkout, not from a registry); download a release by repo and revision \
         instead: hub::download(repo, revision, ...), or clip-onnx download REPO --revision COMMIT_OR_TAG",
    );
    assert!(!target.exists(), "a refused download created {}", target.display());
}

#[test]
fn help_teaches_the_usage_with_an_example_on_stdout_and_exits_0() {
    let (folder, _) = model_and_image();
    for args in [&["--help"][..], &["-h"], &["classify", "--help"], &["download", "-h"]] {
        let ran = run(args, Path::new(&folder));
        assert_eq!(ran.code, Some(0), "{args:?}: {}", ran.stderr);
        assert!(ran.stderr.is_empty(), "{}", ran.stderr);
        assert!(ran.stdout.contains("usage:\n  clip-onnx classify IMAGE... -m FOLDER --labels"), "{}", ran.stdout);
        let example = ran.stdout.lines().skip_while(|l| *l != "examples:").find(|l| l.trim_start().starts_with("clip-onnx classify "));
        let example = example.unwrap_or_else(|| panic!("no example of classify after 'examples:': {}", ran.stdout));
        assert!(example.contains(" -m ") && example.contains("--labels \"a cat,a dog\""), "{example}");
        for option in ["--top N", "--truncate", "--template", "ORT_DYLIB_PATH", "clip-onnx download ", "--graphs GRAPHS", "REPO --revision"] {
            assert!(ran.stdout.contains(option), "--help does not mention {option}");
        }
        // both forms of download, each with an example: a variant of the pinned release, and a repo at a revision
        let examples: Vec<&str> = ran.stdout.lines().skip_while(|l| *l != "examples:").collect();
        assert!(examples.iter().any(|l| l.trim() == "clip-onnx download ViT-B-32 -o models"), "{}", ran.stdout);
        assert!(examples.iter().any(|l| l.trim().starts_with("clip-onnx download org/") && l.contains("--revision")), "{}", ran.stdout);
    }
}

#[test]
fn a_reader_that_goes_away_ends_the_program_quietly() {
    let v = with_ort();
    let (folder, image) = model_and_image();
    let images: Vec<String> = std::iter::repeat_n(image, 3).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_clip-onnx"))
        .arg("classify")
        .args(&images)
        .args(["-m", &folder, "--labels", &v["labels"].as_array().unwrap().iter().map(text).collect::<Vec<_>>().join(",")])
        .env("RUST_BACKTRACE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // closed before the model is even loaded: its first line meets a closed pipe
    let output = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stderr), "", "a closed stdout is not an error to report");
    assert_eq!(output.status.code(), Some(141), "as the Python CLI: 128 + SIGPIPE");
}
