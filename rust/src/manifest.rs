//! `manifest.json`: the contract beside the graphs, and the files a graph needs, each checked by size and
//! SHA-256 before use.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{error, Error, ErrorKind, Result};

pub const MANIFEST: &str = "manifest.json";
/// The `format_version`s this crate reads (clip_onnx/manifest.py says when it rises).
pub const FORMAT_VERSIONS: [u64; 1] = [2];
/// The sections this crate reads, each an object: a manifest without one is refused when read.
pub const READ_KEYS: [&str; 5] = ["graphs", "files", "tokenizer", "preprocessing", "logit_scale"];

/// A SHA-256 as lowercase hex, as the manifest writes it.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a file, read in 1 MiB pieces: memory stays the same whatever the file's size.
pub fn sha256_file(path: &Path) -> Result<String> {
    let unreadable = |e: std::io::Error| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::MissingFile } else { ErrorKind::InvalidInput };
        Error::new(kind, format!("{}: cannot be read ({e})", path.display()))
    };
    let mut file = File::open(path).map_err(unreadable)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(unreadable)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex(&hasher.finalize()))
}

/// The manifest of `folder`.
pub fn read(folder: &Path) -> Result<Value> {
    let path = folder.join(MANIFEST);
    if !folder.exists() {
        return error(ErrorKind::NotAnExport, format!("{} does not exist; point at a folder written by `clip-onnx export`", folder.display()));
    }
    if folder.is_file() {
        return error(ErrorKind::NotAnExport, format!("{} is a file; pass the folder that holds {MANIFEST}", folder.display()));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::InvalidData { ErrorKind::BadManifest } else { ErrorKind::NotAnExport };
        Error::new(kind, format!("{}: no readable {MANIFEST} ({e}); give a folder written by `clip-onnx export` or downloaded from a release", folder.display()))
    })?;
    let manifest: Value = serde_json::from_str(&text)
        .map_err(|e| Error::new(ErrorKind::BadManifest, format!("{}: not valid JSON ({e}); download or export it again", path.display())))?;
    if !manifest.is_object() {
        return error(ErrorKind::BadManifest, format!("{}: is not a JSON object; export the variant again", path.display()));
    }
    let version = &manifest["format_version"];
    if !version.as_u64().is_some_and(|v| FORMAT_VERSIONS.contains(&v)) {
        let reads: Vec<String> = FORMAT_VERSIONS.iter().map(u64::to_string).collect();
        return error(ErrorKind::UnsupportedFormat, format!(
            "{}: format_version {version}, but this clip-onnx crate reads {}; upgrade the clip-onnx crate (depend on a \
             newer tag of it), or use files of a release with format_version {}",
            path.display(),
            reads.join(", "),
            FORMAT_VERSIONS[FORMAT_VERSIONS.len() - 1]
        ));
    }
    let absent: Vec<&str> = READ_KEYS.into_iter().filter(|key| !manifest[*key].is_object()).collect();
    if !absent.is_empty() {
        return error(ErrorKind::BadManifest, format!("{}: lacks {}; export the variant again, or download a release made by clip-onnx", path.display(), absent.join(", ")));
    }
    Ok(manifest)
}

/// A name the manifest gives a file: one plain file name inside the folder, never a path out of it.
pub fn file_name(name: &str) -> Result<&str> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\']) || name.contains('\0') {
        return error(ErrorKind::BadManifest, format!("{MANIFEST} names a file {name:?}, which is not a file name in its folder; download the release again"));
    }
    Ok(name)
}

/// The files `graphs` need: the union of each graph's `graphs.<graph>.files`, the manifest's one list of
/// what running that graph reads (the graph, the external-data files holding its weights, the forward
/// graph reading the encoders', and tokenizer.json and/or preprocess.json, whichever feed its inputs).
/// In the manifest's order, each once. A graph without a list of file names is a `BadManifest` naming
/// its `graphs.<graph>.files`. These, and only these, are what `Model` checks before it opens a graph and
/// what `hub::download_graphs` fetches: a folder may hold only some graphs' files.
pub fn needed_files(manifest: &Value, graphs: &[&str]) -> Result<Vec<String>> {
    let lacks = |what: String| Error::new(ErrorKind::BadManifest, format!("{MANIFEST} lacks {what}; export the variant again, or download a release made by clip-onnx"));
    let mut names: Vec<String> = Vec::new();
    for &graph in graphs {
        let spec = &manifest["graphs"][graph];
        if !spec.is_object() {
            return Err(lacks(format!("graphs.{graph}.files (this folder has no {graph} graph)")));
        }
        let files = spec["files"].as_array().ok_or_else(|| lacks(format!("graphs.{graph}.files, the list of the files the {graph} graph needs")))?;
        for name in files {
            let name = name.as_str().ok_or_else(|| lacks(format!("a file name in graphs.{graph}.files (it holds {name})")))?;
            let name = file_name(name)?;
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    Ok(names)
}

/// One file against the manifest's record of it: listed, present, its size, then its SHA-256 (streamed).
/// Each refusal is one line naming the file and saying what to do.
pub fn check_file(manifest: &Value, folder: &Path, name: &str) -> Result<()> {
    let path = folder.join(file_name(name)?);
    let expected = &manifest["files"][name];
    if !expected.is_object() {
        return error(ErrorKind::ChangedFile, format!("{}: not listed in {MANIFEST}, so it cannot be checked; download the release again", path.display()));
    }
    let bytes = std::fs::metadata(&path)
        .map_err(|_| Error::new(ErrorKind::MissingFile, format!("{}: missing; the manifest lists it (download it again, beside {MANIFEST})", path.display())))?
        .len();
    if Some(bytes) != expected["bytes"].as_u64() {
        return error(ErrorKind::ChangedFile, format!("{}: {bytes} bytes, the manifest says {}; download it again", path.display(), expected["bytes"]));
    }
    if Some(sha256_file(&path)?.as_str()) != expected["sha256"].as_str() {
        return error(ErrorKind::ChangedFile, format!("{}: does not match the SHA-256 in {MANIFEST}; download it again", path.display()));
    }
    Ok(())
}

/// Every file `graphs` need (`needed_files`), each by `check_file`: a missing, truncated or altered one is an error naming it.
pub fn check_graphs(manifest: &Value, folder: &Path, graphs: &[&str]) -> Result<()> {
    for name in needed_files(manifest, graphs)? {
        check_file(manifest, folder, &name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest() -> Value {
        json!({
            "graphs": {
                "forward": {"file": "m.onnx", "files": ["m.onnx", "m_transformer.onnx.data", "m_visual.onnx.data", "tokenizer.json", "preprocess.json"]},
                "visual": {"file": "m_visual.onnx", "files": ["m_visual.onnx", "m_visual.onnx.data", "preprocess.json"]},
                "transformer": {"file": "m_transformer.onnx", "files": ["m_transformer.onnx", "m_transformer.onnx.data", "tokenizer.json"]},
            },
            "tokenizer": {"file": "tokenizer.json"},
            "preprocessing": {"file": "preprocess.json"},
        })
    }

    #[test]
    fn the_needed_files_are_the_union_of_the_graphs_files_lists_in_order_each_once() {
        let needed = needed_files(&manifest(), &["visual", "transformer"]).unwrap();
        assert_eq!(needed, ["m_visual.onnx", "m_visual.onnx.data", "preprocess.json", "m_transformer.onnx", "m_transformer.onnx.data", "tokenizer.json"]);
        assert_eq!(needed_files(&manifest(), &["transformer"]).unwrap(), ["m_transformer.onnx", "m_transformer.onnx.data", "tokenizer.json"]);
        assert_eq!(
            needed_files(&manifest(), &["forward"]).unwrap(),
            ["m.onnx", "m_transformer.onnx.data", "m_visual.onnx.data", "tokenizer.json", "preprocess.json"]
        );
        assert_eq!(needed_files(&manifest(), &["visual", "visual"]).unwrap().len(), 3, "each file once");
        assert_eq!(needed_files(&manifest(), &["forward", "visual", "transformer"]).unwrap().len(), 7, "each file once");
        assert!(needed_files(&manifest(), &[]).unwrap().is_empty(), "no graph needs no file");
        // only the graph's own list counts: the tokenizer and preprocessing sections add nothing
        let mut m = manifest();
        m["graphs"]["visual"]["files"] = json!(["m_visual.onnx"]);
        assert_eq!(needed_files(&m, &["visual"]).unwrap(), ["m_visual.onnx"]);
    }

    #[test]
    fn a_manifest_without_a_graphs_files_list_is_a_bad_manifest_naming_it() {
        for (value, names) in [
            (Value::Null, "graphs.visual.files, the list"),
            (json!("m_visual.onnx"), "graphs.visual.files, the list"),
            (json!({"m_visual.onnx": 1}), "graphs.visual.files, the list"),
            (json!(["m_visual.onnx", 7]), "a file name in graphs.visual.files (it holds 7)"),
        ] {
            let mut m = manifest();
            m["graphs"]["visual"]["files"] = value;
            let refused = needed_files(&m, &["visual"]).unwrap_err();
            assert_eq!(refused.kind(), ErrorKind::BadManifest);
            let message = refused.to_string();
            assert!(message.contains(names) && !message.contains('\n'), "{message}");
            assert!(needed_files(&m, &["transformer"]).is_ok(), "another graph's list is not read");
        }
        let mut m = manifest();
        m["graphs"]["visual"].as_object_mut().unwrap().remove("files");
        assert!(needed_files(&m, &["visual"]).unwrap_err().to_string().contains("lacks graphs.visual.files"));
        let refused = needed_files(&manifest(), &["text"]).unwrap_err();
        assert!(refused.kind() == ErrorKind::BadManifest && refused.to_string().contains("graphs.text.files (this folder has no text graph)"), "{refused}");
    }

    #[test]
    fn a_manifest_without_a_section_the_crate_reads_is_a_bad_manifest_naming_it() {
        let folder = std::env::temp_dir().join(format!("clip-onnx-sections-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        for key in READ_KEYS {
            let mut m = manifest();
            m["format_version"] = json!(FORMAT_VERSIONS[0]);
            m["files"] = json!({});
            m["logit_scale"] = json!({"exp": 100.0});
            std::fs::write(folder.join(MANIFEST), m.to_string()).unwrap();
            read(&folder).expect("a manifest with every section is read");
            m.as_object_mut().unwrap().remove(key);
            std::fs::write(folder.join(MANIFEST), m.to_string()).unwrap();
            let refused = read(&folder).unwrap_err();
            assert_eq!(refused.kind(), ErrorKind::BadManifest, "{refused}");
            assert!(refused.message().contains(&format!("lacks {key};")), "{refused}");
        }
        std::fs::remove_dir_all(&folder).unwrap();
    }

    #[test]
    fn a_name_that_leaves_the_folder_is_refused() {
        for name in ["", ".", "..", "../x", "a/b", "a\\b", "/etc/passwd", "a\0b"] {
            assert!(file_name(name).is_err(), "{name:?} was accepted");
        }
        assert_eq!(file_name("ViT-B-32_visual.onnx.data").unwrap(), "ViT-B-32_visual.onnx.data");
        let mut m = manifest();
        m["graphs"]["transformer"]["files"] = json!(["m_transformer.onnx", "../tokenizer.json"]);
        let refused = needed_files(&m, &["transformer"]).unwrap_err();
        assert!(refused.kind() == ErrorKind::BadManifest && refused.to_string().contains("\"../tokenizer.json\", which is not a file name"), "{refused}");
        m["graphs"]["visual"]["files"] = json!(["/tmp/x"]);
        assert!(needed_files(&m, &["visual"]).is_err());
    }

    #[test]
    fn sha256_file_is_the_sha256_of_the_bytes() {
        let path = std::env::temp_dir().join(format!("clip-onnx-sha-{}", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(sha256_file(&path).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        std::fs::write(&path, vec![7u8; (1 << 20) + 3]).unwrap(); // more than one read
        assert_eq!(sha256_file(&path).unwrap(), hex(&Sha256::digest(vec![7u8; (1 << 20) + 3])));
        std::fs::remove_file(&path).unwrap();
        let refused = sha256_file(&path).unwrap_err();
        assert!(refused.to_string().contains("cannot be read") && refused.kind() == ErrorKind::MissingFile, "{refused:?}");
    }
}
