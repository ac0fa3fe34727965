//! A release's files from the Hugging Face Hub at a pinned revision (a commit, or a tag), each checked
//! against the release's `manifest.json` before it is kept. Plain HTTP to the Hub's documented
//! endpoint `{endpoint}/{repo}/resolve/{revision}/{path}`, so any mirror speaking it works.
//!
//! Two ways to name a release:
//!
//! - `download(repo, revision, ...)`: any repo at any revision, trusted as far as its own manifest.
//! - `Release::embedded()?.download(name, ...)`: variant `name` (`"ViT-B-32"`) of the release this crate
//!   pins. The crate published to crates.io carries the release table, `release.json` (its tag and the
//!   size and SHA-256 of every file of every variant), written by the release workflow before the crate
//!   is packaged and embedded by build.rs. The download is the one by repo and tag, and also refuses
//!   (`ChangedFile`, nothing kept) a manifest or a file that is not the one the table pins: a tag moved
//!   on the Hub is noticed. A build from a checkout has no table: `Release::embedded` is a `Usage` error.
//!
//! ```no_run
//! # fn main() -> clip_onnx::Result<()> {
//! use clip_onnx::hub::Release;
//! let release = Release::embedded()?; // Usage error in a build from a checkout
//! let folder = release.download("ViT-B-32", "fp32", &[], std::path::Path::new("models"), None)?;
//! let model = clip_onnx::Model::load(&folder)?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
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
    fetch(repo, revision, precision, graphs, target, endpoint, None)
}

/// `download_graphs`, and with `pins` (a release table's files of that precision folder) every file,
/// the manifest first, must also be the one pinned: the manifest's bytes before it is read, each other
/// file's manifest entry before any file is fetched.
fn fetch(repo: &str, revision: &str, precision: &str, graphs: &[&str], target: &Path, endpoint: Option<&str>, pins: Option<&Pins>) -> Result<PathBuf> {
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
    if let Some(pins) = pins {
        let got = Pin { sha256: manifest::hex(&Sha256::digest(&manifest_bytes)), bytes: manifest_bytes.len() as u64 };
        if pins.get(manifest::MANIFEST) != Some(&got) {
            return Err(unpinned(repo, revision, precision, manifest::MANIFEST));
        }
    }
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
    // every file's facts, and its pin, checked before any file is fetched
    let needed_files = manifest::needed_files(&parsed, &graphs)?;
    let mut needed = Vec::new();
    for name in &needed_files {
        let expected = files.get(name).unwrap_or(&Value::Null);
        let name = manifest::file_name(name)?;
        let (Some(sha256), Some(bytes)) = (expected["sha256"].as_str(), expected["bytes"].as_u64()) else {
            return error(ErrorKind::BadManifest, format!("{repo}@{revision}: {precision}/{name} has no sha256 and bytes in its manifest; refused (nothing kept)"));
        };
        if pins.is_some_and(|pins| pins.get(name) != Some(&Pin { sha256: sha256.to_string(), bytes })) {
            return Err(unpinned(repo, revision, precision, name));
        }
        needed.push((name, sha256, bytes));
    }
    for (name, sha256, bytes) in needed {
        let refused = |why: &str| format!("{repo}@{revision}: {precision}/{name} {why}; refused (nothing kept)");
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

/// A file as a release table pins it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pin {
    sha256: String,
    bytes: u64,
}

/// One precision folder's pins, by file name (`manifest.json`, `ViT-B-32_visual.onnx`, ...).
type Pins = BTreeMap<String, Pin>;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Variant {
    hub_repo: String,
    /// by the path the Hub repo holds each file at: `fp32/manifest.json`, ...
    files: BTreeMap<String, Pin>,
}

/// The release table's name, in the crate's sources and in its messages.
const RELEASE_FILE: &str = "release.json";
/// The table format this crate reads (clip_onnx/pinned.py `FORMAT_VERSION`).
const FORMAT_VERSION: u64 = 1;
/// The table build.rs embedded: `release.json` as the package carried it, or `null` when it had none.
const EMBEDDED: &str = include_str!(concat!(env!("OUT_DIR"), "/release.json"));
/// This build had no release table to embed (see build.rs); the usage error says what to do instead.
const NO_RELEASE: &str = "this clip-onnx pins no release (it was built from a checkout, not from a registry); download a \
release by repo and revision instead: hub::download(repo, revision, ...), or clip-onnx download REPO --revision COMMIT_OR_TAG";

/// The release a crate pins, its release table: its tag and, for every variant, the Hub repo and the
/// size and SHA-256 of every file it publishes (clip_onnx/pinned.py documents the format; the Python and
/// Node packages read the same file). `Release::embedded()` is the one this build carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    tag: String,
    variants: BTreeMap<String, Variant>,
}

impl Release {
    /// The table this crate was built with: the published crate's `release.json`. A build from a checkout
    /// has none: a `Usage` error saying to download by repo and revision instead (`hub::download`).
    pub fn embedded() -> Result<Release> {
        if env!("CLIP_ONNX_RELEASE_TABLE") != "present" {
            return error(ErrorKind::Usage, NO_RELEASE);
        }
        Release::parse(EMBEDDED)
    }

    /// A release table from its JSON text, checked key by key: not JSON, not an object, no tag, no
    /// variants, a variant without `hub_repo` or `files`, a file without a 64-hex `sha256` and whole
    /// `bytes`: `BadManifest`; a `format_version` other than 1: `UnsupportedFormat`.
    pub fn parse(json: &str) -> Result<Release> {
        let bad = |what: &str| Error::new(ErrorKind::BadManifest, format!("{RELEASE_FILE}: {what}; reinstall clip-onnx from its registry"));
        let data: Value = serde_json::from_str(json).map_err(|e| bad(&format!("is not JSON ({e})")))?;
        let data = data.as_object().ok_or_else(|| bad("is not a JSON object"))?;
        let version = data.get("format_version").unwrap_or(&Value::Null);
        if version.as_u64() != Some(FORMAT_VERSION) {
            return error(ErrorKind::UnsupportedFormat, format!(
                "{RELEASE_FILE}: format_version {version}, but this clip-onnx reads {FORMAT_VERSION}; reinstall clip-onnx"
            ));
        }
        let tag = data.get("tag").and_then(Value::as_str).filter(|t| !t.is_empty()).ok_or_else(|| bad("names no tag"))?;
        let listed = data.get("variants").and_then(Value::as_object).ok_or_else(|| bad("lists no variants"))?;
        let mut variants = BTreeMap::new();
        for (name, variant) in listed {
            let (Some(hub_repo), Some(listed_files)) = (variant.get("hub_repo").and_then(Value::as_str), variant.get("files").and_then(Value::as_object)) else {
                return Err(bad(&format!("variant '{name}' lacks hub_repo or files")));
            };
            let mut files = BTreeMap::new();
            for (path, facts) in listed_files {
                let sha256 = facts.get("sha256").and_then(Value::as_str).filter(|s| s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
                let (Some(sha256), Some(bytes)) = (sha256, facts.get("bytes").and_then(Value::as_u64)) else {
                    return Err(bad(&format!("{name} {path} has no sha256 and bytes")));
                };
                files.insert(path.clone(), Pin { sha256: sha256.to_string(), bytes });
            }
            variants.insert(name.clone(), Variant { hub_repo: hub_repo.to_string(), files });
        }
        Ok(Release { tag: tag.to_string(), variants })
    }

    /// The release's tag (`v1.2.0`): the revision its files are downloaded at.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The variants the release pins (`ViT-B-32`, ...), sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.variants.keys().map(String::as_str)
    }

    /// Download the files `graphs` need (empty: every graph) of variant `name`'s `precision` folder into
    /// `target/{precision}`: `download_graphs` of its Hub repo at the release's tag, and every file, the
    /// manifest first, must also be the one this table pins, else `ChangedFile` naming it, nothing kept
    /// (the tag was moved, or the file replaced). A variant or precision the table lacks is a `Usage`
    /// error naming the ones it has. Returns the folder, ready for `Model::load`.
    pub fn download(&self, name: &str, precision: &str, graphs: &[&str], target: &Path, endpoint: Option<&str>) -> Result<PathBuf> {
        let tag = &self.tag;
        let Some(variant) = self.variants.get(name) else {
            let names: Vec<&str> = self.names().collect();
            return error(ErrorKind::Usage, format!("release {tag} has no variant '{name}'; choose one of {}", names.join(", ")));
        };
        let prefix = format!("{precision}/");
        let pins: Pins = variant.files.iter().filter_map(|(path, pin)| Some((path.strip_prefix(&prefix)?.to_string(), pin.clone()))).collect();
        if !pins.contains_key(manifest::MANIFEST) {
            let mut published: Vec<&str> = variant.files.keys().filter(|p| p.ends_with("/manifest.json")).filter_map(|p| p.split('/').next()).collect();
            published.dedup();
            return error(ErrorKind::Usage, format!("release {tag} has no {precision} files of {name}; choose one of {}", published.join(", ")));
        }
        fetch(&variant.hub_repo, tag, precision, graphs, target, endpoint, Some(&pins))
    }
}

/// The refusal of a file that is not the one the release table pins.
fn unpinned(repo: &str, revision: &str, precision: &str, name: &str) -> Error {
    Error::new(ErrorKind::ChangedFile, format!(
        "{repo}@{revision}: {precision}/{name} is not the file this clip-onnx pins for release {revision} (its size or SHA-256 \
         differs from {RELEASE_FILE}'s): the tag was moved or the file replaced; refused (nothing kept), report it"
    ))
}
