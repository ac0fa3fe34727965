//! What every test binary shares: the committed conformance artifact (tests/conformance/vectors.json,
//! written by tests/conformance.py, whose docstring documents every key), its paths resolved against its
//! folder, the scratch copies of exports with a case's `changes` made, the ONNX Runtime library, and the
//! loopback Hub that only `python -m pytest tests/test_rust.py` serves.
//!
//! `CLIP_ONNX_VECTORS` may name another vectors.json (its paths are relative to its folder too).
#![allow(dead_code)] // each test binary uses its own part

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The artifact version these tests read (tests/conformance.py `VERSION`).
pub const VERSION: u64 = 2;
const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/conformance/vectors.json");

/// vectors.json, parsed, and the folder its paths are relative to.
pub struct Vectors {
    pub root: PathBuf,
    pub json: Value,
}

impl std::ops::Deref for Vectors {
    type Target = Value;
    fn deref(&self) -> &Value {
        &self.json
    }
}

/// The artifact, read once per test binary.
pub fn vectors() -> &'static Vectors {
    static READ: OnceLock<Vectors> = OnceLock::new();
    READ.get_or_init(|| {
        let path = std::env::var_os("CLIP_ONNX_VECTORS").map_or_else(|| PathBuf::from(COMMITTED), PathBuf::from);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(json["version"].as_u64(), Some(VERSION), "{}: an artifact of another version", path.display());
        let root = std::fs::canonicalize(path.parent().unwrap()).unwrap();
        Vectors { root, json }
    })
}

/// The artifact, with ONNX Runtime found first: for tests that load a model or run the binary.
pub fn with_ort() -> &'static Vectors {
    ort();
    vectors()
}

impl Vectors {
    /// A path of the artifact (a string relative to its folder), made absolute.
    pub fn path(&self, value: &Value) -> PathBuf {
        self.root.join(text(value))
    }

    pub fn paths(&self, value: &Value) -> Vec<PathBuf> {
        strings(value).iter().map(|p| self.root.join(p)).collect()
    }

    /// The first export's folder.
    pub fn export(&self) -> PathBuf {
        self.path(&self["exports"][0]["folder"])
    }

    /// A little-endian float32 file of the artifact.
    pub fn floats(&self, value: &Value) -> Vec<f32> {
        read(&self.path(value)).chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
    }

    /// A little-endian int32 file of the artifact.
    pub fn ids(&self, value: &Value) -> Vec<i32> {
        read(&self.path(value)).chunks(4).map(|b| i32::from_le_bytes(b.try_into().unwrap())).collect()
    }

    /// The folder of a `bad_inputs` case: as it is when `changes` is empty or it does not exist (a case
    /// about a missing folder), else a scratch copy with the changes made (removed with the `Scratch`).
    pub fn case_folder(&self, case: &Value) -> (PathBuf, Option<Scratch>) {
        let folder = self.path(&case["folder"]);
        let changes = case["changes"].as_array().map_or(&[][..], Vec::as_slice);
        if changes.is_empty() || !folder.exists() {
            return (folder, None);
        }
        let scratch = Scratch::new("case");
        let changed = apply(&folder, &case["changes"], &scratch.0.join("export"), &self.root);
        (changed, Some(scratch))
    }

    /// The first export with `changes` made, in a scratch folder.
    pub fn changed_export(&self, what: &str, changes: &Value) -> (PathBuf, Scratch) {
        let scratch = Scratch::new(what);
        let folder = apply(&self.export(), changes, &scratch.0.join("export"), &self.root);
        (folder, scratch)
    }

    /// The `bad_inputs` case whose name ends with `suffix`.
    pub fn case(&self, suffix: &str) -> &Value {
        let cases = self["bad_inputs"].as_array().unwrap();
        cases.iter().find(|c| text(&c["name"]).ends_with(suffix)).unwrap_or_else(|| panic!("no bad_inputs case named ...{suffix}"))
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn text(value: &Value) -> String {
    value.as_str().unwrap_or_else(|| panic!("not a string: {value}")).to_string()
}

pub fn strings(value: &Value) -> Vec<String> {
    value.as_array().unwrap_or_else(|| panic!("not a list: {value}")).iter().map(text).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 the artifact gives pixels: of the float32 values' little-endian bytes.
pub fn pixels_sha256(pixels: &[f32]) -> String {
    let mut digest = Sha256::new();
    for value in pixels {
        digest.update(value.to_le_bytes());
    }
    digest.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A folder of its own, removed when dropped (a failing test's included). Beside the build's files rather
/// than in the system's temporary folder, so it is on the file system of the committed files and can hold
/// hard links to them.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(what: &str) -> Scratch {
        static MADE: AtomicUsize = AtomicUsize::new(0); // the tests run in threads of one process: one name each
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("clip-onnx-{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A copy of the export `base` at `scratch` with `changes` made, as tests/conformance.py `apply` makes it:
/// each file hard-linked, and a changed file unlinked before it is written, so the committed files never
/// change. Ops: delete, write (text), json (set the value at `path`, or remove it without `value`; written
/// as compact JSON), bytes (`flip`: that byte XOR 1, negative from the end; or `keep` the first N),
/// copy (the file replaced by `from`, relative to `root`), rehash (the manifest's `files` entry of `file`).
pub fn apply(base: &Path, changes: &Value, scratch: &Path, root: &Path) -> PathBuf {
    std::fs::create_dir_all(scratch).unwrap();
    for entry in std::fs::read_dir(base).unwrap_or_else(|e| panic!("{}: {e}", base.display())).flatten() {
        let copy = scratch.join(entry.file_name());
        // a copy where a hard link cannot be made (CLIP_ONNX_VECTORS on another file system)
        if std::fs::hard_link(entry.path(), &copy).is_err() {
            std::fs::copy(entry.path(), &copy).unwrap();
        }
    }
    for change in changes.as_array().unwrap_or_else(|| panic!("changes are not a list: {changes}")) {
        let target = scratch.join(text(&change["file"]));
        match change["op"].as_str() {
            Some("delete") => std::fs::remove_file(&target).unwrap_or_else(|e| panic!("{}: {e}", target.display())),
            Some("write") => replace(&target, text(&change["text"]).as_bytes()),
            Some("json") => {
                let mut data: Value = serde_json::from_slice(&read(&target)).unwrap();
                let keys = strings(&change["path"]);
                let (last, keys) = keys.split_last().expect("a json change names a path");
                let inner = keys.iter().fold(&mut data, |inner, key| inner.get_mut(key).unwrap_or_else(|| panic!("no {key} in {change}")));
                let object = inner.as_object_mut().unwrap_or_else(|| panic!("{change}: not an object"));
                if let Some(value) = change.get("value") {
                    object.insert(last.clone(), value.clone());
                } else {
                    object.remove(last);
                }
                replace(&target, data.to_string().as_bytes());
            }
            Some("bytes") => {
                let mut content = read(&target);
                if let Some(flip) = change["flip"].as_i64() {
                    let at = if flip < 0 { content.len() as i64 + flip } else { flip } as usize;
                    content[at] ^= 0x01;
                } else {
                    content.truncate(change["keep"].as_u64().unwrap_or_else(|| panic!("{change}: neither flip nor keep")) as usize);
                }
                replace(&target, &content);
            }
            Some("copy") => replace(&target, &read(&root.join(text(&change["from"])))),
            Some("rehash") => {
                let manifest = scratch.join("manifest.json");
                let mut listed: Value = serde_json::from_slice(&read(&manifest)).unwrap();
                let content = read(&target);
                listed["files"][text(&change["file"])] = serde_json::json!({"sha256": sha256_hex(&content), "bytes": content.len()});
                replace(&manifest, listed.to_string().as_bytes());
            }
            _ => panic!("unknown change {change}"),
        }
    }
    scratch.to_path_buf()
}

/// `content` written to `path`, unlinked first: it may be a hard link to a committed file, which writing
/// through would change.
pub fn replace(path: &Path, content: &[u8]) {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("{}: {e}", path.display()),
        _ => {}
    }
    std::fs::write(path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// ONNX Runtime for ort's `load-dynamic`: `ORT_DYLIB_PATH` when set, else the onnxruntime wheel's library in
/// the repository's .venv (README's setup makes it), set as ORT_DYLIB_PATH for this process and the
/// binaries it runs. None found: the test fails saying how to give one.
pub fn ort() {
    static FOUND: OnceLock<Result<(), String>> = OnceLock::new();
    let found = FOUND.get_or_init(|| {
        if std::env::var_os("ORT_DYLIB_PATH").is_some() {
            return Ok(());
        }
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/lib");
        let mut libraries: Vec<PathBuf> = std::fs::read_dir(&venv).into_iter().flatten().flatten()
            .filter(|python| python.file_name().to_string_lossy().starts_with("python3"))
            .flat_map(|python| std::fs::read_dir(python.path().join("site-packages/onnxruntime/capi")).into_iter().flatten().flatten())
            .map(|entry| entry.path())
            .filter(|path| {
                let name = path.file_name().unwrap().to_string_lossy();
                name.starts_with("libonnxruntime.so") || (name.starts_with("libonnxruntime.") && name.ends_with(".dylib"))
            })
            .collect();
        libraries.sort();
        match libraries.pop() {
            // before ort reads it: the first model load in this process comes after this
            Some(library) => {
                std::env::set_var("ORT_DYLIB_PATH", library);
                Ok(())
            }
            None => Err(format!(
                "no ONNX Runtime library: set ORT_DYLIB_PATH=/path/to/libonnxruntime.so (1.18 or newer; `pip install onnxruntime` \
                 ships one in onnxruntime/capi/), or create the repository's .venv as README.md says (none in {})",
                venv.display()
            )),
        }
    });
    if let Err(why) = found {
        panic!("{why}");
    }
}

/// The loopback Hub's details ({endpoint, repo, tampered_repo, tag}) from `CLIP_ONNX_TEST_HUB`: the JSON
/// itself, or a file holding it; tests/test_rust.py serves the Hub and sets it.
pub fn hub() -> Value {
    let given = std::env::var("CLIP_ONNX_TEST_HUB")
        .expect("CLIP_ONNX_TEST_HUB is not set: this test needs the loopback Hub that `python -m pytest tests/test_rust.py` serves");
    let json = if given.trim_start().starts_with('{') { given } else { std::fs::read_to_string(&given).unwrap_or_else(|e| panic!("{given}: {e}")) };
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("CLIP_ONNX_TEST_HUB: {e}"))
}

/// A summary line (how many cases ran) that a bare `cargo test` shows too: written to stderr directly,
/// which libtest's capture of passing tests' `print!` and `eprint!` output does not take.
pub fn report(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}
