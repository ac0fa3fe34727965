//! Decode speed of the artifact's image files, printed, not asserted, and ignored in ordinary runs (and
//! skipped by name under tests/test_rust.py's `--include-ignored`):
//! `cargo test --release --test decode_speed -- --ignored --nocapture`.

mod common;

use std::time::Instant;

#[test]
#[ignore = "a measurement: run it in release mode with --ignored"]
fn decode_speed() {
    let v = common::vectors();
    let all = v.paths(&v["all_images"]);
    for name in ["jpeg-camera-icc.jpg", "jpeg-420.jpg", "jpeg-progressive.jpg", "webp-lossy.webp", "chelsea.png"] {
        let Some(path) = all.iter().find(|p| p.ends_with(name)) else { continue };
        let path = path.as_path();
        let n = 200;
        let _ = clip_onnx::preprocess::decode(path);
        let start = Instant::now();
        for _ in 0..n {
            let _ = std::hint::black_box(clip_onnx::preprocess::decode(path));
        }
        let decode = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
        let start = Instant::now();
        for _ in 0..n {
            let _ = std::hint::black_box(clip_onnx::preprocess::load(&[path], 224));
        }
        let load = start.elapsed().as_secs_f64() * 1000.0 / n as f64;
        println!("speed: {name}: decode {decode:.3} ms, decode+preprocess {load:.3} ms (mean of {n})");
    }
}
