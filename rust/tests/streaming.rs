//! Files over 2 GiB are hashed and downloaded in bounded memory, and the download keeps only what its
//! manifest says: a tiny HTTP server in a thread serves zeros, of the size and SHA-256 the conformance
//! artifact's `large_file` gives (no ONNX Runtime needed). Peak memory is the process's VmHWM (Linux);
//! elsewhere it is printed as unknown. Bare `cargo test --locked` runs it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use clip_onnx::{hub, manifest, ErrorKind};
use common::Scratch;
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;

enum Body {
    Text(String),
    Zeros(u64),
}

/// Serves `routes` (path, body) over HTTP/1.1 on loopback, one connection at a time; logs every path asked for.
fn serve(routes: Vec<(String, Body)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let asked = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let path = request.split(' ').nth(1).unwrap_or("").to_string();
            asked.lock().unwrap().push(path.clone());
            let mut stream = stream;
            let _ = match routes.iter().find(|(p, _)| *p == path).map(|(_, body)| body) {
                None => stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
                Some(Body::Text(text)) => stream.write_all(
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len()).as_bytes(),
                ),
                Some(Body::Zeros(size)) => (|| -> std::io::Result<()> {
                    stream.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n").as_bytes())?;
                    let zeros = vec![0u8; MIB as usize];
                    let mut left = *size;
                    while left > 0 {
                        let n = left.min(MIB);
                        stream.write_all(&zeros[..n as usize])?;
                        left -= n;
                    }
                    Ok(())
                })(),
            };
        }
    });
    (endpoint, log)
}

fn manifest_of(files: &[(&str, u64, &str)]) -> Body {
    let files: serde_json::Map<String, serde_json::Value> =
        files.iter().map(|(name, bytes, sha256)| (name.to_string(), serde_json::json!({"sha256": sha256, "bytes": bytes}))).collect();
    // one graph needing every file, as `download` fetches the files of every graph the manifest lists
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    Body::Text(serde_json::json!({"format_version": 2, "graphs": {"forward": {"file": names[0], "files": names}}, "files": files}).to_string())
}

fn route(repo: &str, name: &str) -> String {
    format!("/{repo}/resolve/v1/fp32/{name}")
}

/// The process's peak resident memory in bytes (VmHWM), where Linux reports it.
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

fn assert_bounded(before: Option<u64>, what: &str) {
    match (before, peak_memory()) {
        (Some(before), Some(after)) => {
            println!("memory: {what}: peak resident memory grew by {} MiB", (after - before) / MIB);
            assert!(after - before < 256 * MIB, "{what}: peak memory grew by {} MiB", (after - before) / MIB);
        }
        _ => println!("memory: {what}: peak memory unknown on this system"),
    }
}

#[test]
fn files_over_2_gib_are_hashed_and_downloaded_in_bounded_memory() {
    // past every 32-bit size (2 GiB and 4 KiB), and the SHA-256 of that many zero bytes
    let v = common::vectors();
    let (big, big_sha256) = (v["large_file"]["bytes"].as_u64().unwrap(), common::text(&v["large_file"]["sha256"]));
    assert!(big > i32::MAX as u64, "large_file is {big} bytes, not past signed 32-bit sizes");
    let scratch = Scratch::new("big");
    let folder = &scratch.0;
    let before = peak_memory();
    // a sparse file: 2 GiB of zeros that take no disk
    let sparse = folder.join("sparse.bin");
    std::fs::File::create(&sparse).unwrap().set_len(big).unwrap();
    assert_eq!(manifest::sha256_file(&sparse).unwrap(), big_sha256);
    std::fs::remove_file(&sparse).unwrap();
    assert_bounded(before, "sha256_file of a 2 GiB file");

    let (endpoint, _) = serve(vec![
        (route("org/big", "manifest.json"), manifest_of(&[("big.bin", big, &big_sha256)])),
        (route("org/big", "big.bin"), Body::Zeros(big)),
    ]);
    let downloaded = hub::download("org/big", "v1", "fp32", folder, Some(&endpoint)).unwrap();
    assert_eq!(std::fs::metadata(downloaded.join("big.bin")).unwrap().len(), big);
    assert!(downloaded.join("manifest.json").exists());
    std::fs::remove_dir_all(downloaded).unwrap();
    assert_bounded(before, "hub::download of a 2 GiB file");
}

fn zeros_sha256(size: usize) -> String {
    manifest::hex(&Sha256::digest(vec![0u8; size]))
}

fn files_in(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn a_body_longer_or_shorter_than_the_manifest_says_is_refused_and_nothing_is_kept() {
    let small = 1000;
    let sha = zeros_sha256(small);
    let (endpoint, _) = serve(vec![
        // the first `small` bytes of the longer body are exactly the file the manifest describes
        (route("org/long", "manifest.json"), manifest_of(&[("a.bin", small as u64, &sha)])),
        (route("org/long", "a.bin"), Body::Zeros(5 * MIB)),
        (route("org/short", "manifest.json"), manifest_of(&[("a.bin", small as u64 + 1, &sha)])),
        (route("org/short", "a.bin"), Body::Zeros(small as u64)),
        (route("org/wrong", "manifest.json"), manifest_of(&[("a.bin", small as u64, &zeros_sha256(small + 1))])),
        (route("org/wrong", "a.bin"), Body::Zeros(small as u64)),
    ]);
    for (repo, says) in [
        ("org/long", "fp32/a.bin is not the 1000 bytes its manifest says; refused (nothing kept)"),
        ("org/short", "fp32/a.bin is not the 1001 bytes its manifest says; refused (nothing kept)"),
        ("org/wrong", "fp32/a.bin does not match the SHA-256 in its manifest; refused (nothing kept)"),
    ] {
        let scratch = Scratch::new(&repo.replace('/', "-"));
        let target = &scratch.0;
        let refused = hub::download(repo, "v1", "fp32", target, Some(&endpoint)).expect_err("a wrong body was kept");
        assert_eq!(refused.message(), format!("{repo}@v1: {says}"));
        assert_eq!(refused.kind(), ErrorKind::ChangedFile, "{repo}");
        assert!(files_in(&target.join("fp32")).is_empty(), "{repo}: {:?} left behind", files_in(&target.join("fp32")));
    }
}

#[test]
fn an_intact_file_is_not_downloaded_again_and_a_name_outside_the_folder_is_refused() {
    let content = vec![0u8; 3000];
    let sha = zeros_sha256(content.len());
    let (endpoint, log) = serve(vec![
        (route("org/ok", "manifest.json"), manifest_of(&[("a.bin", 3000, &sha), ("b.bin", 3000, &sha)])),
        (route("org/ok", "a.bin"), Body::Zeros(3000)),
        (route("org/ok", "b.bin"), Body::Zeros(3000)),
        (route("org/evil", "manifest.json"), manifest_of(&[("../escaped.bin", 3000, &sha)])),
        (route("org/evil", "../escaped.bin"), Body::Zeros(3000)),
        (route("org/bare", "manifest.json"), Body::Text(r#"{"format_version": 2, "graphs": {"forward": {"file": "a.bin", "files": ["a.bin"]}}, "files": {"a.bin": {"bytes": 3000}}}"#.into())),
        (route("org/bare", "a.bin"), Body::Zeros(3000)),
    ]);
    let intact = Scratch::new("intact");
    let target = &intact.0;
    std::fs::create_dir_all(target.join("fp32")).unwrap();
    std::fs::write(target.join("fp32").join("a.bin"), &content).unwrap();
    let folder = hub::download("org/ok", "v1", "fp32", target, Some(&endpoint)).unwrap();
    assert_eq!(files_in(&folder), ["a.bin", "b.bin", "manifest.json"]);
    assert_eq!(std::fs::read(folder.join("b.bin")).unwrap(), content);
    let asked = log.lock().unwrap().clone();
    assert_eq!(asked, [route("org/ok", "manifest.json"), route("org/ok", "b.bin")], "the intact a.bin was fetched again");

    let scratch = Scratch::new("evil");
    let evil = &scratch.0;
    let refused = hub::download("org/evil", "v1", "fp32", evil, Some(&endpoint)).expect_err("a name outside the folder was written");
    assert_eq!(refused.kind(), ErrorKind::BadManifest);
    let message = refused.to_string();
    assert!(message.contains("\"../escaped.bin\", which is not a file name in its folder"), "{message}");
    assert!(!evil.join("escaped.bin").exists());
    let refused = hub::download("org/bare", "v1", "fp32", evil, Some(&endpoint)).expect_err("a file without a SHA-256 was kept");
    assert_eq!(refused.kind(), ErrorKind::BadManifest);
    assert_eq!(refused.message(), "org/bare@v1: fp32/a.bin has no sha256 and bytes in its manifest; refused (nothing kept)");
    assert!(files_in(&evil.join("fp32")).is_empty());
}

#[test]
fn only_the_files_of_the_graphs_asked_for_are_fetched_and_a_graph_the_release_lacks_is_a_usage_error() {
    let sha = zeros_sha256(100);
    let entry = serde_json::json!({"sha256": sha, "bytes": 100});
    let manifest = serde_json::json!({
        "format_version": 2,
        "graphs": {
            "visual": {"file": "v.onnx", "files": ["v.onnx", "v.onnx.data", "preprocess.json"]},
            "transformer": {"file": "t.onnx", "files": ["t.onnx", "t.onnx.data", "tokenizer.json"]},
        },
        "files": {"v.onnx": entry, "v.onnx.data": entry, "preprocess.json": entry, "t.onnx": entry, "t.onnx.data": entry, "tokenizer.json": entry},
    });
    let names = ["v.onnx", "v.onnx.data", "preprocess.json", "t.onnx", "t.onnx.data", "tokenizer.json"];
    let mut routes = vec![(route("org/two", "manifest.json"), Body::Text(manifest.to_string()))];
    routes.extend(names.iter().map(|name| (route("org/two", name), Body::Zeros(100))));
    let (endpoint, log) = serve(routes);
    let asked = |from: usize| log.lock().unwrap()[from..].to_vec();

    let text = Scratch::new("text-only");
    let folder = hub::download_graphs("org/two", "v1", "fp32", &["transformer"], &text.0, Some(&endpoint)).unwrap();
    assert_eq!(files_in(&folder), ["manifest.json", "t.onnx", "t.onnx.data", "tokenizer.json"]);
    let fetched: Vec<String> = ["manifest.json", "t.onnx", "t.onnx.data", "tokenizer.json"].iter().map(|n| route("org/two", n)).collect();
    assert_eq!(asked(0), fetched, "other files were fetched for the transformer alone");

    let all = Scratch::new("all-graphs");
    let before = log.lock().unwrap().len();
    let folder = hub::download("org/two", "v1", "fp32", &all.0, Some(&endpoint)).unwrap();
    let mut every: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    every.push("manifest.json".into());
    every.sort();
    assert_eq!(files_in(&folder), every, "the default is every graph");
    assert_eq!(asked(before).len(), 1 + names.len(), "each file once");

    for graphs in [&["text"][..], &["visual", "visual"], &["visual", "forward"]] {
        let refused_folder = Scratch::new("refused-graphs");
        let before = log.lock().unwrap().len();
        let refused = hub::download_graphs("org/two", "v1", "fp32", graphs, &refused_folder.0, Some(&endpoint)).expect_err("a wrong graph list was fetched");
        assert_eq!(refused.kind(), ErrorKind::Usage, "{refused}");
        let shown: Vec<String> = graphs.iter().map(|g| format!("'{g}'")).collect();
        assert_eq!(refused.message(), format!("graphs {}: name each once, from the graphs org/two@v1 has: transformer, visual", shown.join(", ")));
        assert_eq!(asked(before), [route("org/two", "manifest.json")], "{graphs:?}: more than the manifest was fetched");
        assert!(files_in(&refused_folder.0.join("fp32")).is_empty());
    }
}
