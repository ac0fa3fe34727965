//! A release's files from the Hugging Face Hub at a pinned revision (a commit, or a tag), each checked
//! against the release's `manifest.json` before it is kept. Plain HTTP to the Hub's documented
//! endpoint `{endpoint}/{repo}/resolve/{revision}/{path}`, so any mirror speaking it works.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{error, manifest, Error, ErrorKind, Result};

pub const ENDPOINT: &str = "https://huggingface.co";
/// The most a manifest may weigh (they are a few KiB): a larger body is not a manifest.
const MANIFEST_LIMIT: u64 = 16 << 20;

fn get(url: &str, token: Option<&str>) -> Result<Box<dyn Read + Send + Sync>> {
    let mut request = ureq::get(url);
    if let Some(token) = token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    let response = request.call().map_err(|e| Error::new(ErrorKind::InvalidInput, format!("GET {url}: {e}")))?;
    Ok(response.into_reader())
}

/// Stream `body` into `partial` in 1 MiB pieces, hashing as it goes, never past `limit` bytes (one more is
/// read to notice a longer body). Returns its SHA-256 and size.
fn save(body: &mut dyn Read, partial: &Path, limit: u64, url: &str) -> Result<(String, u64)> {
    let written = |e: std::io::Error| Error::new(ErrorKind::InvalidInput, format!("{}: cannot be written ({e})", partial.display()));
    let mut file = File::create(partial).map_err(written)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    let mut body = body.take(limit + 1);
    loop {
        let read = body.read(&mut buffer).map_err(|e| Error::new(ErrorKind::InvalidInput, format!("GET {url}: {e}; try again")))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        file.write_all(&buffer[..read]).map_err(written)?;
        size += read as u64;
    }
    file.sync_all().map_err(written)?;
    Ok((manifest::hex(&hasher.finalize()), size))
}

/// Download `{precision}/` of `repo` at `revision` into `target/{precision}`, every graph its manifest
/// lists: `download_graphs` with no graph named. Returns the folder, ready for `Model::load`.
/// `endpoint`: None for huggingface.co (or `HF_ENDPOINT`).
pub fn download(repo: &str, revision: &str, precision: &str, target: &Path, endpoint: Option<&str>) -> Result<PathBuf> {
    download_graphs(repo, revision, precision, &[], target, endpoint)
}

/// Download the files `graphs` need from `{precision}/` of `repo` at `revision` into `target/{precision}`:
/// its manifest first, then only `manifest::needed_files(manifest, graphs)` (an empty `graphs`: every graph
/// the manifest lists), each streamed to a temporary name while it is hashed (memory stays the same
/// whatever the file's size) and renamed only once its size and SHA-256 match. A file already in the
/// folder is hashed again and kept only if it matches; otherwise it is downloaded again. A graph the
/// manifest does not list, or one named twice, is a `Usage` error before any other file is fetched.
/// Returns the folder, ready for `Model::load` (`["transformer"]`: a folder for `encode_text` only).
/// `endpoint`: None for huggingface.co (or `HF_ENDPOINT`).
pub fn download_graphs(repo: &str, revision: &str, precision: &str, graphs: &[&str], target: &Path, endpoint: Option<&str>) -> Result<PathBuf> {
    let endpoint = endpoint.map(str::to_string).or_else(|| std::env::var("HF_ENDPOINT").ok()).unwrap_or_else(|| ENDPOINT.into());
    let token = std::env::var("HF_TOKEN").ok();
    let folder = target.join(precision);
    std::fs::create_dir_all(&folder).map_err(|e| Error::new(ErrorKind::InvalidInput, format!("{}: cannot be created ({e})", folder.display())))?;
    let url = |path: &str| format!("{}/{repo}/resolve/{revision}/{precision}/{path}", endpoint.trim_end_matches('/'));
    let mut manifest_bytes = Vec::new();
    get(&url(manifest::MANIFEST), token.as_deref())?
        .take(MANIFEST_LIMIT)
        .read_to_end(&mut manifest_bytes)
        .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("GET {}: {e}; try again", url(manifest::MANIFEST))))?;
    let parsed: Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| Error::new(ErrorKind::BadManifest, format!("{repo}@{revision}: {precision}/manifest.json is not JSON ({e})")))?;
    let bad = |what: &str| Error::new(ErrorKind::BadManifest, format!("{repo}@{revision}: {precision}/manifest.json {what}; refused (nothing kept)"));
    let files = parsed["files"].as_object().ok_or_else(|| bad("lacks files"))?;
    let listed: Vec<&str> = parsed["graphs"].as_object().ok_or_else(|| bad("lacks graphs"))?.keys().map(String::as_str).collect();
    let graphs: Vec<&str> = if graphs.is_empty() { listed.clone() } else { graphs.to_vec() };
    let unknown = graphs.iter().any(|g| !listed.contains(g));
    let twice = graphs.iter().enumerate().any(|(i, g)| graphs[..i].contains(g));
    if unknown || twice {
        let asked: Vec<String> = graphs.iter().map(|g| format!("'{g}'")).collect();
        return error(ErrorKind::Usage, format!(
            "graphs {}: name each once, from the graphs {repo}@{revision} has: {}",
            asked.join(", "),
            listed.join(", ")
        ));
    }
    for name in &manifest::needed_files(&parsed, &graphs)? {
        let expected = files.get(name).unwrap_or(&Value::Null);
        let name = manifest::file_name(name)?;
        let refused = |why: &str| format!("{repo}@{revision}: {precision}/{name} {why}; refused (nothing kept)");
        let (Some(sha256), Some(bytes)) = (expected["sha256"].as_str(), expected["bytes"].as_u64()) else {
            return error(ErrorKind::BadManifest, refused("has no sha256 and bytes in its manifest"));
        };
        let path = folder.join(name);
        if manifest::check_file(&parsed, &folder, name).is_ok() {
            continue; // already here, and its size and SHA-256 match
        }
        let partial = folder.join(format!(".{name}.partial"));
        let outcome = match save(&mut *get(&url(name), token.as_deref())?, &partial, bytes, &url(name)) {
            Err(e) => Err(e),
            Ok((_, size)) if size != bytes => error(ErrorKind::ChangedFile, refused(&format!("is not the {bytes} bytes its manifest says"))),
            Ok((digest, _)) if digest != sha256 => error(ErrorKind::ChangedFile, refused("does not match the SHA-256 in its manifest")),
            Ok(_) => Ok(()),
        };
        if let Err(e) = outcome {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, &path).map_err(|e| Error::new(ErrorKind::InvalidInput, format!("{}: {e}", path.display())))?;
    }
    // the manifest last: a folder with a manifest holds every file of the graphs asked for
    std::fs::write(folder.join(manifest::MANIFEST), manifest_bytes).map_err(|e| Error::new(ErrorKind::InvalidInput, format!("{}: {e}", folder.display())))?;
    Ok(folder)
}
