//! A release folder in ONNX Runtime: the visual and transformer graphs, embeddings, scores.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;

use ort::session::Session;
use ort::value::{DynValue, Tensor};
use serde_json::Value;
use tokenizers::Tokenizer;

use crate::{error, manifest, preprocess, tokenize, Error, ErrorKind, Result};

fn ort_error(what: &str) -> impl Fn(ort::Error) -> Error + '_ {
    move |e| Error::new(ErrorKind::InvalidInput, format!("{what}: {e}"))
}

/// The ONNX Runtime library at `ORT_DYLIB_PATH`, loaded once (ort's `load-dynamic`), and its environment.
fn environment() -> Result<&'static Environment> {
    static ENVIRONMENT: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();
    ENVIRONMENT
        .get_or_init(|| match std::env::var_os("ORT_DYLIB_PATH") {
            None => Err("ORT_DYLIB_PATH is not set: point it at libonnxruntime (1.18 or newer), e.g. the one in the \
                         onnxruntime Python wheel, onnxruntime/capi/libonnxruntime.so.<version>"
                .to_string()),
            Some(path) => ort::init_from(PathBuf::from(&path))
                .map_err(|e| format!("ORT_DYLIB_PATH {}: cannot be loaded ({e})", Path::new(&path).display()))
                .and_then(|builder| builder.with_name("clip-onnx").build().map_err(|e| e.to_string())),
        })
        .as_ref()
        .map_err(|e| Error::new(ErrorKind::InvalidInput, e.clone()))
}

/// The graphs a `Model` runs: `encode_image` and `encode_text`. The forward graph is never needed.
pub const GRAPHS: [&str; 2] = ["visual", "transformer"];

pub struct Model {
    pub folder: PathBuf,
    pub manifest: Value,
    pub tokenizer: Tokenizer,
    pub resolution: usize,
    pub context_length: usize,
    pub logit_scale: f32,
    /// The image files `encode_image` reads: preprocess.json's `input.formats` and `input.max_pixels`.
    pub readable: preprocess::Readable,
    visual: Mutex<Session>,
    transformer: Mutex<Session>,
}

impl Model {
    /// Load a folder after checking the files its graphs need (`manifest::needed_files` of `GRAPHS`: the
    /// graphs, their external data, tokenizer.json and preprocess.json) by size and SHA-256; a missing or
    /// changed one is an `Err` of one line naming it.
    pub fn load(folder: impl AsRef<Path>) -> Result<Model> {
        Model::open(folder.as_ref(), true)
    }

    /// Load without checking the files against the manifest; ONNX Runtime still refuses a graph it cannot parse.
    pub fn load_unchecked(folder: impl AsRef<Path>) -> Result<Model> {
        Model::open(folder.as_ref(), false)
    }

    fn open(folder: &Path, check: bool) -> Result<Model> {
        let manifest = manifest::read(folder)?;
        if check {
            manifest::check_graphs(&manifest, folder, &GRAPHS)?;
        }
        let environment = environment()?;
        let session = |graph: &str| -> Result<Mutex<Session>> {
            let file = manifest["graphs"][graph]["file"]
                .as_str()
                .ok_or_else(|| Error::new(ErrorKind::BadManifest, format!("{}: the manifest has no {graph} graph; export it", folder.display())))?;
            let path = folder.join(file);
            let session = Session::builder(environment)
                .and_then(|mut builder| builder.commit_from_file(&path))
                .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("{}: ONNX Runtime cannot load it ({e}); download it again, with its .onnx.data file if the manifest lists one", path.display())))?;
            Ok(Mutex::new(session))
        };
        let number = |key: &str, field: &str| manifest[key][field]
            .as_f64()
            .ok_or_else(|| Error::new(ErrorKind::BadManifest, format!("{}: manifest.json lacks {key}.{field}; export the variant again", folder.display())));
        Ok(Model {
            folder: folder.to_path_buf(),
            // the file the manifest names, which the check above covered
            tokenizer: tokenize::load_file(&folder.join(manifest::file_name(manifest["tokenizer"]["file"].as_str().unwrap_or(tokenize::TOKENIZER))?))?,
            resolution: number("preprocessing", "resolution")? as usize,
            context_length: number("tokenizer", "context_length")? as usize,
            logit_scale: number("logit_scale", "exp")? as f32,
            // the file the manifest names, which the check above covered; the crate's own list without one
            readable: preprocess::Readable::read(&folder.join(manifest::file_name(manifest["preprocessing"]["file"].as_str().unwrap_or("preprocess.json"))?)),
            visual: session("visual")?,
            transformer: session("transformer")?,
            manifest,
        })
    }

    fn run(&self, session: &Mutex<Session>, input: DynValue) -> Result<Vec<Vec<f32>>> {
        let mut session = session.lock().map_err(|_| Error::new(ErrorKind::InvalidInput, "a session was poisoned by an earlier panic"))?;
        let outputs = session.run(ort::inputs![input]).map_err(ort_error("ONNX Runtime"))?;
        let (shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(ort_error("ONNX Runtime's output"))?;
        let d = shape[1] as usize;
        Ok(data.chunks(d.max(1)).map(<[f32]>::to_vec).collect())
    }

    /// Image embeddings [N][D], not normalised (as CLIP's encode_image returns them).
    pub fn encode_image<P: AsRef<Path>>(&self, images: &[P]) -> Result<Vec<Vec<f32>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let pixels = preprocess::load_with(images, self.resolution, &self.readable)?;
        let r = self.resolution;
        let tensor = Tensor::from_array(([images.len(), 3, r, r], pixels)).map_err(ort_error("the image batch"))?;
        self.run(&self.visual, tensor.into_dyn())
    }

    /// Text embeddings [N][D], not normalised. Texts over the context length are errors unless `truncate`.
    pub fn encode_text(&self, texts: &[&str], truncate: bool) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let ids = tokenize::encode(&self.tokenizer, texts, truncate)?;
        let tensor = Tensor::from_array(([texts.len(), self.context_length], ids)).map_err(ort_error("the token batch"))?;
        self.run(&self.transformer, tensor.into_dyn())
    }

    /// CLIP's logits_per_image [images][texts]: exp(logit_scale) times the cosine similarities.
    pub fn logits(&self, image_embeds: &[Vec<f32>], text_embeds: &[Vec<f32>]) -> Vec<Vec<f32>> {
        let unit = |v: &Vec<f32>| {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / norm).collect::<Vec<f32>>()
        };
        let texts: Vec<Vec<f32>> = text_embeds.iter().map(unit).collect();
        image_embeds
            .iter()
            .map(unit)
            .map(|image| texts.iter().map(|text| self.logit_scale * image.iter().zip(text).map(|(a, b)| a * b).sum::<f32>()).collect())
            .collect()
    }

    /// Per image, the softmax over `labels` of its logits (`CLIP.forward`'s `logits_per_image`):
    /// zero-shot classification, as Python's `Model.probabilities` and Node's `probabilities`.
    /// `truncate` cuts texts over the context length, as in `encode_text`; texts are encoded first, so
    /// an over-long one is refused before any image is decoded.
    pub fn probabilities<P: AsRef<Path>>(&self, images: &[P], labels: &[&str], truncate: bool) -> Result<Vec<Vec<f32>>> {
        if labels.is_empty() {
            return error(ErrorKind::Usage, "probabilities over no texts: give at least one label");
        }
        let text_embeds = self.encode_text(labels, truncate)?;
        let logits = self.logits(&self.encode_image(images)?, &text_embeds);
        Ok(logits
            .into_iter()
            .map(|row| {
                let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let exp: Vec<f32> = row.iter().map(|x| (x - max).exp()).collect();
                let sum: f32 = exp.iter().sum();
                exp.iter().map(|x| x / sum).collect()
            })
            .collect())
    }

    /// One image's probabilities over `labels`.
    pub fn classify(&self, image: impl AsRef<Path>, labels: &[&str]) -> Result<Vec<f32>> {
        Ok(self.probabilities(&[image], labels, false)?.remove(0))
    }
}
