//! `manifest.json`: the contract beside the graphs, and every file's SHA-256 checked before use.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{error, Error, Result};

pub const MANIFEST: &str = "manifest.json";
/// The `format_version`s this crate reads (clip_onnx/manifest.py says when it rises).
pub const FORMAT_VERSIONS: [u64; 1] = [1];

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error(format!("{}: cannot be read ({e})", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(|e| Error(format!("{}: cannot be read ({e})", path.display())))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The manifest of `folder`.
pub fn read(folder: &Path) -> Result<Value> {
    let path = folder.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Error(format!("{}: no readable {MANIFEST} ({e}); give a folder written by `clip-onnx export` or downloaded from a release", folder.display()))
    })?;
    let manifest: Value = serde_json::from_str(&text).map_err(|e| Error(format!("{}: not valid JSON ({e})", path.display())))?;
    let version = manifest["format_version"].as_u64().unwrap_or(0);
    if !FORMAT_VERSIONS.contains(&version) {
        return error(format!("{}: format_version {version}, this crate reads {FORMAT_VERSIONS:?}; use a matching release", path.display()));
    }
    Ok(manifest)
}

/// Every file the manifest lists, by size and SHA-256: a missing, truncated or altered file is an error naming it.
pub fn check_files(manifest: &Value, folder: &Path) -> Result<()> {
    let files = manifest["files"].as_object().ok_or_else(|| Error(format!("{}: {MANIFEST} lists no files", folder.display())))?;
    for (name, expected) in files {
        let path = folder.join(name);
        let bytes = std::fs::metadata(&path)
            .map_err(|_| Error(format!("{}: missing; the manifest lists it (download it beside {MANIFEST})", path.display())))?
            .len();
        if Some(bytes) != expected["bytes"].as_u64() {
            return error(format!("{}: {bytes} bytes, the manifest says {}; download it again", path.display(), expected["bytes"]));
        }
        if Some(sha256_file(&path)?.as_str()) != expected["sha256"].as_str() {
            return error(format!("{}: does not match the SHA-256 in {MANIFEST}; download it again", path.display()));
        }
    }
    Ok(())
}
