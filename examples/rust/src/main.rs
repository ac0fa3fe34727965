//! CLIP zero-shot scores from an exported clip-onnx folder, with `ort` and `tokenizers`.
//!
//!     cargo run --release -- dist/ViT-B-32 cat.jpg "a cat" "a dog"
//!
//! Token ids equal `clip.tokenize` for texts that need no ftfy/HTML cleaning (tokenizer.json does the
//! rest: lowercase, whitespace, start/end tokens, padding and truncation to 77). Pixels approximate
//! CLIP's: the `image` crate's Catmull-Rom filter is not Pillow's antialiased bicubic; for bit-identical
//! pixels implement preprocess.json's algorithm, as examples/node/clip.mjs does.
use std::path::Path;

use anyhow::{Context, Result};
use image::imageops::FilterType;
use ort::session::Session;
use ort::value::Tensor;
use tokenizers::Tokenizer;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (folder, image_path, labels) = match args.as_slice() {
        [folder, image, labels @ ..] if !labels.is_empty() => (Path::new(folder), image, labels),
        _ => anyhow::bail!("usage: clip-onnx-example FOLDER IMAGE LABEL..."),
    };
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(folder.join("manifest.json"))?)?;
    let graph = |key: &str| folder.join(manifest["graphs"][key]["file"].as_str().unwrap_or_default());
    let logit_scale = manifest["logit_scale"]["exp"].as_f64().context("manifest has no logit_scale")? as f32;

    // Texts -> int32 [N, 77]: the file pads with 0 and truncates, keeping the end token.
    let tokenizer = Tokenizer::from_file(folder.join("tokenizer.json")).map_err(anyhow::Error::msg)?;
    let encodings = tokenizer.encode_batch(labels.to_vec(), true).map_err(anyhow::Error::msg)?;
    let ids: Vec<i32> = encodings.iter().flat_map(|e| e.get_ids().iter().map(|&id| id as i32)).collect();
    let text = Tensor::from_array(([labels.len(), ids.len() / labels.len()], ids.into_boxed_slice()))?;

    // Image -> float32 [1, 3, R, R]: shorter side to R, centre crop, RGB, /255, normalise (preprocess.json).
    let pre: serde_json::Value = serde_json::from_slice(&std::fs::read(folder.join("preprocess.json"))?)?;
    let r = pre["resolution"].as_u64().context("preprocess.json has no resolution")? as u32;
    let (mean, std) = (&pre["mean"], &pre["std"]);
    let img = image::open(image_path)?.to_rgb8();
    let (w, h) = img.dimensions();
    let (rw, rh) = if w <= h { (r, (r as u64 * h as u64 / w as u64) as u32) } else { ((r as u64 * w as u64 / h as u64) as u32, r) };
    let resized = image::imageops::resize(&img, rw, rh, FilterType::CatmullRom);
    let (left, top) = ((rw - r) as f32 / 2.0, (rh - r) as f32 / 2.0);
    let crop = image::imageops::crop_imm(&resized, left.round_ties_even() as u32, top.round_ties_even() as u32, r, r).to_image();
    let mut pixels = vec![0f32; (3 * r * r) as usize];
    for (x, y, p) in crop.enumerate_pixels() {
        for c in 0..3 {
            let v = p[c] as f32 / 255.0;
            pixels[(c as u32 * r * r + y * r + x) as usize] = (v - mean[c].as_f64().unwrap() as f32) / std[c].as_f64().unwrap() as f32;
        }
    }
    let image = Tensor::from_array(([1usize, 3, r as usize, r as usize], pixels.into_boxed_slice()))?;

    let mut visual = Session::builder()?.commit_from_file(graph("visual"))?;
    let mut transformer = Session::builder()?.commit_from_file(graph("transformer"))?;
    let image_out = visual.run(ort::inputs!["image" => image])?;
    let text_out = transformer.run(ort::inputs!["text" => text])?;
    let (_, image_embeds) = image_out["image_embeds"].try_extract_tensor::<f32>()?;
    let (_, text_embeds) = text_out["text_embeds"].try_extract_tensor::<f32>()?;

    // CLIP.forward: logit_scale * cosine similarity, then softmax over the labels.
    let dim = image_embeds.len();
    let unit = |v: &[f32]| { let n = v.iter().map(|x| x * x).sum::<f32>().sqrt(); v.iter().map(|x| x / n).collect::<Vec<_>>() };
    let image_unit = unit(image_embeds);
    let logits: Vec<f32> = text_embeds.chunks(dim).map(|t| logit_scale * unit(t).iter().zip(&image_unit).map(|(a, b)| a * b).sum::<f32>()).collect();
    let max = logits.iter().cloned().fold(f32::MIN, f32::max);
    let total: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    for (label, logit) in labels.iter().zip(&logits) {
        println!("{label}: {:.3}", (logit - max).exp() / total);
    }
    Ok(())
}
