//! A release's files from the Hugging Face Hub at a pinned revision (a commit, or a tag), each checked
//! against the release's `manifest.json` before it is kept. Plain HTTP to the Hub's documented
//! endpoint `{endpoint}/{repo}/resolve/{revision}/{path}`, so any mirror speaking it works.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::{error, manifest, Error, Result};

pub const ENDPOINT: &str = "https://huggingface.co";

fn get(url: &str, token: Option<&str>) -> Result<Vec<u8>> {
    let mut request = ureq::get(url);
    if let Some(token) = token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    let response = request.call().map_err(|e| Error(format!("GET {url}: {e}")))?;
    let mut body = Vec::new();
    response.into_reader().read_to_end(&mut body).map_err(|e| Error(format!("GET {url}: {e}; try again")))?;
    Ok(body)
}

/// Download `{precision}/` of `repo` at `revision` into `target/{precision}`: its manifest first, then every
/// file it lists, each written under a temporary name and renamed only once its SHA-256 matches.
/// Returns the folder, ready for `Model::load`. `endpoint`: None for huggingface.co (or `HF_ENDPOINT`).
pub fn download(repo: &str, revision: &str, precision: &str, target: &Path, endpoint: Option<&str>) -> Result<PathBuf> {
    let endpoint = endpoint.map(str::to_string).or_else(|| std::env::var("HF_ENDPOINT").ok()).unwrap_or_else(|| ENDPOINT.into());
    let token = std::env::var("HF_TOKEN").ok();
    let folder = target.join(precision);
    std::fs::create_dir_all(&folder).map_err(|e| Error(format!("{}: cannot be created ({e})", folder.display())))?;
    let url = |path: &str| format!("{}/{repo}/resolve/{revision}/{precision}/{path}", endpoint.trim_end_matches('/'));
    let manifest_bytes = get(&url(manifest::MANIFEST), token.as_deref())?;
    let parsed: serde_json::Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| Error(format!("{repo}@{revision}: {precision}/manifest.json is not JSON ({e})")))?;
    let files = parsed["files"].as_object().ok_or_else(|| Error(format!("{repo}@{revision}: the manifest lists no files")))?;
    for (name, expected) in files {
        let path = folder.join(name);
        if path.exists() && manifest::sha256_file(&path).ok().as_deref() == expected["sha256"].as_str() {
            continue; // already here and intact
        }
        let partial = folder.join(format!(".{name}.partial"));
        std::fs::write(&partial, get(&url(name), token.as_deref())?).map_err(|e| Error(format!("{}: cannot be written ({e})", partial.display())))?;
        if manifest::sha256_file(&partial)?.as_str() != expected["sha256"].as_str().unwrap_or_default() {
            let _ = std::fs::remove_file(&partial);
            return error(format!("{repo}@{revision}: {precision}/{name} does not match the SHA-256 in its manifest; refused (nothing kept)"));
        }
        std::fs::rename(&partial, &path).map_err(|e| Error(format!("{}: {e}", path.display())))?;
    }
    // the manifest last: a folder with a manifest is complete
    std::fs::write(folder.join(manifest::MANIFEST), manifest_bytes).map_err(|e| Error(format!("{}: {e}", folder.display())))?;
    Ok(folder)
}
