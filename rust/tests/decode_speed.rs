//! Decode speed, printed, not asserted, and ignored in ordinary runs: with `CLIP_ONNX_VECTORS` set (see
//! tests/vectors.rs), `cargo test --release --test decode_speed -- --ignored --nocapture`.
use std::time::Instant;

#[test]
#[ignore = "a measurement: run it in release mode with --ignored"]
fn decode_speed() {
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(std::env::var("CLIP_ONNX_VECTORS").unwrap()).unwrap()).unwrap();
    let all: Vec<String> = v["all_images"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    for name in ["jpeg-camera-icc.jpg", "jpeg-420.jpg", "jpeg-progressive.jpg", "webp-lossy.webp", "chelsea.png"] {
        let Some(path) = all.iter().find(|p| p.ends_with(name)) else { continue };
        let path = std::path::Path::new(path);
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
