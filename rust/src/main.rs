//! `clip-onnx classify IMAGE... -m FOLDER --labels "a cat,a dog"`: what the Python `clip-onnx classify`
//! prints, from Rust. `clip-onnx download REPO --revision COMMIT -o DIR`: one variant's release files.

use std::process::ExitCode;

use clip_onnx::{hub, Model};

const USAGE: &str = "usage:
  clip-onnx classify IMAGE... -m FOLDER --labels \"a cat,a dog\" [--template \"a photo of {}.\"] [--top N] [--truncate]
  clip-onnx download REPO --revision COMMIT_OR_TAG [--precision fp32|fp16] -o DIR [--endpoint URL]

FOLDER is an exported variant (manifest.json, graphs, tokenizer.json); every file's SHA-256 is checked first.
ORT_DYLIB_PATH must name libonnxruntime 1.18 or newer (the onnxruntime Python wheel ships one in onnxruntime/capi/).";

struct Args {
    positional: Vec<String>,
    options: Vec<(String, String)>,
    truncate: bool,
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let mut args = Args { positional: Vec::new(), options: Vec::new(), truncate: false };
    let mut i = 0;
    while i < argv.len() {
        let arg = &argv[i];
        if arg == "--truncate" {
            args.truncate = true;
        } else if arg == "-h" || arg == "--help" {
            return Err(String::new());
        } else if arg.starts_with('-') {
            let value = argv.get(i + 1).ok_or(format!("{arg} needs a value"))?;
            args.options.push((arg.clone(), value.clone()));
            i += 1;
        } else {
            args.positional.push(arg.clone());
        }
        i += 1;
    }
    Ok(args)
}

impl Args {
    fn get(&self, names: &[&str]) -> Option<&str> {
        self.options.iter().rev().find(|(k, _)| names.contains(&k.as_str())).map(|(_, v)| v.as_str())
    }
    fn require(&self, names: &[&str]) -> Result<&str, String> {
        self.get(names).ok_or(format!("{} is required", names.join("/")))
    }
}

fn classify(args: &Args) -> Result<(), String> {
    let images = &args.positional[1..];
    if images.is_empty() {
        return Err("give at least one IMAGE".into());
    }
    let labels: Vec<&str> = args.require(&["--labels"])?.split(',').map(str::trim).filter(|l| !l.is_empty()).collect();
    if labels.is_empty() {
        return Err("--labels names no label; give comma-separated labels".into());
    }
    let template = args.get(&["--template"]).unwrap_or("{}");
    if template.matches("{}").count() != 1 {
        return Err(format!("--template {template:?} must hold {{}} exactly once, where the label goes"));
    }
    let top: usize = args.get(&["--top"]).unwrap_or("5").parse().map_err(|_| "--top must be a whole number".to_string())?;
    let model = Model::load(args.require(&["-m", "--model"])?).map_err(|e| e.to_string())?;
    let captions: Vec<String> = labels.iter().map(|label| template.replacen("{}", label, 1)).collect();
    let captions: Vec<&str> = captions.iter().map(String::as_str).collect();
    let logits = model.logits(
        &model.encode_image(images).map_err(|e| e.to_string())?,
        &model.encode_text(&captions, args.truncate).map_err(|e| e.to_string())?,
    );
    for (image, row) in images.iter().zip(logits) {
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let exp: Vec<f32> = row.iter().map(|x| (x - max).exp()).collect();
        let sum: f32 = exp.iter().sum();
        let mut order: Vec<usize> = (0..labels.len()).collect();
        order.sort_by(|&a, &b| exp[b].total_cmp(&exp[a]));
        let shown: Vec<String> = order.iter().take(top.max(1)).map(|&i| format!("{} {:.3}", labels[i], exp[i] / sum)).collect();
        println!("{image}: {}", shown.join(", "));
    }
    Ok(())
}

fn download(args: &Args) -> Result<(), String> {
    let repo = args.positional.get(1).ok_or("give the Hub REPO, e.g. org/clip-onnx-ViT-B-32")?;
    let folder = hub::download(
        repo,
        args.require(&["--revision"])?,
        args.get(&["--precision"]).unwrap_or("fp32"),
        std::path::Path::new(args.require(&["-o", "--output"])?),
        args.get(&["--endpoint"]),
    )
    .map_err(|e| e.to_string())?;
    println!("{}", folder.display());
    Ok(())
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = parse(&argv).and_then(|args| match args.positional.first().map(String::as_str) {
        Some("classify") => classify(&args),
        Some("download") => download(&args),
        _ => Err(String::new()),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            ExitCode::from(2)
        }
        Err(message) => {
            eprintln!("clip-onnx: error: {message}");
            ExitCode::from(1)
        }
    }
}
