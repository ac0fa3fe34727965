//! Embeds the release table, `release.json`, which the release workflow writes beside Cargo.toml before
//! the crate is packaged (`python -m release table`): copied to `$OUT_DIR/release.json` for `hub::Release`
//! to `include_str!`, and `CLIP_ONNX_RELEASE_TABLE` set to `present`. A checkout has none: `null` is
//! written and the variable is `absent`, so `Release::embedded` says this build pins no release (a
//! `release.json` holding `null` stays a bad table, not a missing one).
//!
//! Cargo re-runs a build script on every build while a `rerun-if-changed` path does not exist, so
//! `release.json` is watched only when it is there; otherwise only this file is. The limitation: a
//! `release.json` added to a checkout that was already built without one is not seen until this script
//! re-runs (`touch build.rs`, or `cargo clean -p clip-onnx`). The release workflow writes the table before
//! the first build, and a package from a registry always carries it from its first build.

use std::path::Path;

fn main() {
    let out = std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    let table = Path::new("release.json");
    println!("cargo:rerun-if-changed=build.rs");
    let (embedded, state) = if table.is_file() {
        println!("cargo:rerun-if-changed=release.json");
        let bytes = std::fs::read(table).unwrap_or_else(|e| panic!("release.json: cannot be read ({e}); write it again with python -m release table"));
        // not UTF-8: embedded as is, lossily, and refused as a bad table when read
        (String::from_utf8_lossy(&bytes).into_owned(), "present")
    } else {
        ("null\n".to_string(), "absent")
    };
    let copy = Path::new(&out).join("release.json");
    // written only when it differs, so a re-run of this script alone does not recompile the crate
    if std::fs::read_to_string(&copy).ok().as_deref() != Some(embedded.as_str()) {
        std::fs::write(&copy, embedded).unwrap_or_else(|e| panic!("{}: cannot be written ({e})", copy.display()));
    }
    println!("cargo:rustc-env=CLIP_ONNX_RELEASE_TABLE={state}");
}
