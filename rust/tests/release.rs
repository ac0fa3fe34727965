//! `hub::Release`, the release table a published crate carries (`release.json`, embedded by build.rs):
//! its parsing and its refusals, which need no Hub, run under bare `cargo test --locked`; the downloads
//! by it from the loopback Hub are ignored there and run under `python -m pytest tests/test_rust.py`, which
//! serves that Hub (intact at `repo`, and `moved_repo`: the same tag with one byte of the visual graph and
//! its manifest entry changed, a release consistent with itself but not the one the table pins) and passes
//! `--include-ignored`.

mod common;

use std::path::Path;

use clip_onnx::hub::{self, Release};
use clip_onnx::{ErrorKind, Model};
use common::{sha256_hex, text, vectors, with_ort, Scratch};
use serde_json::{json, Value};

/// The table a release of the artifact's first export at v1.0.0 would carry (release/table.py `build`):
/// `fp32/manifest.json` and every file the manifest lists, under the manifest's name.
fn table() -> Value {
    let export = vectors().export();
    let manifest = clip_onnx::manifest::read(&export).unwrap();
    let bytes = std::fs::read(export.join("manifest.json")).unwrap();
    let mut files = json!({"fp32/manifest.json": {"sha256": sha256_hex(&bytes), "bytes": bytes.len()}});
    for (name, facts) in manifest["files"].as_object().unwrap() {
        files[format!("fp32/{name}")] = json!({"sha256": facts["sha256"], "bytes": facts["bytes"]});
    }
    json!({"format_version": 1, "tag": "v1.0.0",
           "variants": {text(&manifest["name"]): {"hub_repo": "org/clip-onnx-tiny-ViT", "files": files}}})
}

/// The files in `folder`, sorted; none when it does not exist.
fn files_in(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder).into_iter().flatten().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn parse(table: &Value) -> Release {
    Release::parse(&table.to_string()).unwrap_or_else(|e| panic!("{e}: {table}"))
}

#[test]
fn a_build_from_a_checkout_pins_no_release_and_says_to_download_by_repo_and_revision() {
    if Path::new(env!("CARGO_MANIFEST_DIR")).join("release.json").exists() {
        // a table written into the checkout (as the release workflow does) is embedded: it must parse
        Release::embedded().expect("the embedded release.json is refused");
        return;
    }
    let refused = Release::embedded().expect_err("a checkout build embedded a release table");
    assert_eq!(refused.kind(), ErrorKind::Usage, "{refused}");
    assert_eq!(
        refused.message(),
        "this clip-onnx pins no release (it was built from a checkout, not from a registry); download a release by repo \
         and revision instead: hub::download(repo, revision, ...), or clip-onnx download REPO --revision COMMIT_OR_TAG"
    );
}

#[test]
fn a_table_is_read_key_by_key_and_a_bad_one_is_refused_by_its_kind() {
    let good = table();
    let release = parse(&good);
    assert_eq!(release.tag(), "v1.0.0");
    assert_eq!(release.names().collect::<Vec<_>>(), [text(&clip_onnx::manifest::read(&vectors().export()).unwrap()["name"])]);
    let name = release.names().next().unwrap().to_string();
    let variant = |change: &dyn Fn(&mut Value)| {
        let mut table = good.clone();
        change(&mut table["variants"][&name]);
        table.to_string()
    };
    let manifest_pin = |value: Value| variant(&|v| v["files"]["fp32/manifest.json"] = value.clone());
    let bad = [
        ("not JSON", "{\"format_version\": 1,".to_string(), "is not JSON"),
        ("a list", "[]".to_string(), "is not a JSON object"),
        ("null", "null".to_string(), "is not a JSON object"),
        ("no tag", json!({"format_version": 1, "variants": good["variants"]}).to_string(), "names no tag"),
        ("an empty tag", json!({"format_version": 1, "tag": "", "variants": good["variants"]}).to_string(), "names no tag"),
        ("no variants", json!({"format_version": 1, "tag": "v1.0.0"}).to_string(), "lists no variants"),
        ("variants a list", json!({"format_version": 1, "tag": "v1.0.0", "variants": []}).to_string(), "lists no variants"),
        ("no hub_repo", variant(&|v| v.as_object_mut().unwrap().retain(|k, _| k != "hub_repo")), "lacks hub_repo or files"),
        ("no files", variant(&|v| v.as_object_mut().unwrap().retain(|k, _| k != "files")), "lacks hub_repo or files"),
        ("a short sha256", manifest_pin(json!({"sha256": "ab", "bytes": 1})), "fp32/manifest.json has no sha256 and bytes"),
        ("an upper-case sha256", manifest_pin(json!({"sha256": "A".repeat(64), "bytes": 1})), "has no sha256 and bytes"),
        ("negative bytes", manifest_pin(json!({"sha256": "a".repeat(64), "bytes": -1})), "has no sha256 and bytes"),
        ("fractional bytes", manifest_pin(json!({"sha256": "a".repeat(64), "bytes": 1.5})), "has no sha256 and bytes"),
        ("no bytes", manifest_pin(json!({"sha256": "a".repeat(64)})), "has no sha256 and bytes"),
    ];
    for (what, json, message) in bad {
        let refused = Release::parse(&json).expect_err(what);
        assert_eq!(refused.kind(), ErrorKind::BadManifest, "{what}: {refused}");
        assert!(refused.message().starts_with("release.json: ") && refused.message().contains(message), "{what}: {refused}");
        assert!(!refused.message().contains('\n'), "{what}: {refused}");
    }
    for version in [json!(2), json!("1"), json!(1.0), json!(true), Value::Null] {
        let mut table = good.clone();
        table["format_version"] = version.clone();
        let refused = Release::parse(&table.to_string()).expect_err("another format_version was read");
        assert_eq!(refused.kind(), ErrorKind::UnsupportedFormat, "{version}: {refused}");
        assert!(refused.message().contains(&format!("format_version {version}, but this clip-onnx reads 1")), "{refused}");
    }
    let mut table = good.clone();
    table.as_object_mut().unwrap().remove("format_version");
    assert_eq!(Release::parse(&table.to_string()).unwrap_err().kind(), ErrorKind::UnsupportedFormat);
}

#[test]
fn an_unknown_variant_or_a_precision_the_table_lacks_is_a_usage_error_before_anything_is_fetched() {
    let release = parse(&table());
    let name = release.names().next().unwrap().to_string();
    let scratch = Scratch::new("release-usage");
    // a closed port: a request would be an InvalidInput error, not a usage error
    let endpoint = Some("http://127.0.0.1:9");
    let refused = release.download("ViT-B-32", "fp32", &[], &scratch.0, endpoint).expect_err("an unknown variant was downloaded");
    assert_eq!(refused.kind(), ErrorKind::Usage, "{refused}");
    assert_eq!(refused.message(), format!("release v1.0.0 has no variant 'ViT-B-32'; choose one of {name}"));
    let refused = release.download(&name, "fp16", &[], &scratch.0, endpoint).expect_err("a precision the table lacks was downloaded");
    assert_eq!(refused.kind(), ErrorKind::Usage, "{refused}");
    assert_eq!(refused.message(), format!("release v1.0.0 has no fp16 files of {name}; choose one of fp32"));
    assert!(files_in(&scratch.0).is_empty(), "a refused download wrote {:?}", files_in(&scratch.0));
}

/// The loopback Hub's details, and its table (`release`) parsed.
fn hub_and_release() -> (Value, Release) {
    let hub = common::hub();
    let release = parse(&hub["release"]);
    assert_eq!(release.tag(), text(&hub["tag"]));
    (hub, release)
}

#[test]
#[ignore = "needs the loopback Hub that python -m pytest tests/test_rust.py serves"]
fn a_download_by_the_release_table_is_the_download_by_repo_and_tag() {
    let v = with_ort();
    let (hub, release) = hub_and_release();
    let (name, endpoint) = (text(&hub["name"]), hub["endpoint"].as_str());
    let scratch = Scratch::new("release");
    let pinned = release.download(&name, "fp32", &[], &scratch.0.join("pinned"), endpoint).unwrap();
    let plain = hub::download(&text(&hub["repo"]), &text(&hub["tag"]), "fp32", &scratch.0.join("plain"), endpoint).unwrap();
    assert_eq!(pinned, scratch.0.join("pinned").join("fp32"));
    assert_eq!(files_in(&pinned), files_in(&plain));
    assert!(files_in(&pinned).contains(&"manifest.json".to_string()), "{:?}", files_in(&pinned));
    for file in files_in(&pinned) {
        assert!(std::fs::read(pinned.join(&file)).unwrap() == std::fs::read(plain.join(&file)).unwrap(), "{file} differs");
    }
    let images = &v.paths(&v["images"])[..1];
    let (a, b) = (Model::load(&pinned).unwrap(), Model::load(&plain).unwrap());
    assert_eq!(a.encode_image(images).unwrap(), b.encode_image(images).unwrap());
    assert_eq!(a.encode_text(&["a photo of a cat."], false).unwrap(), b.encode_text(&["a photo of a cat."], false).unwrap());
    // the graphs asked for, as the download by repo fetches them
    let text_only = release.download(&name, "fp32", &["transformer"], &scratch.0.join("text"), endpoint).unwrap();
    let plain_text = hub::download_graphs(&text(&hub["repo"]), &text(&hub["tag"]), "fp32", &["transformer"], &scratch.0.join("plain-text"), endpoint).unwrap();
    assert_eq!(files_in(&text_only), files_in(&plain_text));
    assert!(files_in(&text_only).len() < files_in(&pinned).len(), "{:?}", files_in(&text_only));
}

#[test]
#[ignore = "needs the loopback Hub that python -m pytest tests/test_rust.py serves"]
fn a_moved_tag_is_refused_at_its_manifest_though_the_release_is_consistent_with_itself() {
    with_ort();
    let (hub, _) = hub_and_release();
    let (name, tag, moved, endpoint) = (text(&hub["name"]), text(&hub["tag"]), text(&hub["moved_repo"]), hub["endpoint"].as_str());
    let mut table = hub["release"].clone();
    table["variants"][&name]["hub_repo"] = json!(moved);
    let scratch = Scratch::new("moved");
    let refused = parse(&table).download(&name, "fp32", &[], &scratch.0, endpoint).expect_err("a moved tag was accepted");
    assert_eq!(refused.kind(), ErrorKind::ChangedFile, "{refused}");
    assert!(
        refused.message().starts_with(&format!("{moved}@{tag}: fp32/manifest.json is not the file this clip-onnx pins for release {tag} ")),
        "{refused}"
    );
    assert!(refused.message().contains("the tag was moved or the file replaced"), "{refused}");
    assert!(files_in(&scratch.0.join("fp32")).is_empty(), "a refused download kept {:?}", files_in(&scratch.0.join("fp32")));
    // by repo and tag the same release is accepted: its files match its manifest; the pin is what refuses it
    let accepted = hub::download(&moved, &tag, "fp32", &scratch.0.join("plain"), endpoint).expect("the moved release, by repo and tag");
    Model::load(&accepted).expect("the moved release loads: it is consistent with itself");
}

#[test]
#[ignore = "needs the loopback Hub that python -m pytest tests/test_rust.py serves"]
fn a_file_pinned_otherwise_than_the_manifest_lists_it_is_refused_before_it_is_fetched() {
    let v = with_ort();
    let (hub, _) = hub_and_release();
    let (name, tag, endpoint) = (text(&hub["name"]), text(&hub["tag"]), hub["endpoint"].as_str());
    let visual = text(&clip_onnx::manifest::read(&v.export()).unwrap()["graphs"]["visual"]["file"]);
    let pinned = format!("fp32/{visual}");
    for (what, facts) in [("sha256", json!("0".repeat(64))), ("bytes", json!(1))] {
        let mut table = hub["release"].clone();
        table["variants"][&name]["files"][&pinned][what] = facts;
        let release = parse(&table);
        let scratch = Scratch::new("mispinned");
        let refused = release.download(&name, "fp32", &[], &scratch.0, endpoint).expect_err("a file pinned otherwise was fetched");
        assert_eq!(refused.kind(), ErrorKind::ChangedFile, "{what}: {refused}");
        assert!(refused.message().starts_with(&format!("{}@{tag}: {pinned} is not the file this clip-onnx pins for release {tag} ", text(&hub["repo"]))), "{refused}");
        // refused before any file was fetched: the folder holds neither the graph nor the manifest
        assert!(files_in(&scratch.0.join("fp32")).is_empty(), "{what}: kept {:?}", files_in(&scratch.0.join("fp32")));
        // a download that does not need the visual graph does not need its pin
        let folder = release.download(&name, "fp32", &["transformer"], &scratch.0.join("text"), endpoint).expect("the text graphs, pinned right");
        assert!(!files_in(&folder).contains(&visual), "{:?}", files_in(&folder));
    }
}
