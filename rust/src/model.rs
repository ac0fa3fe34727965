//! A release folder in ONNX Runtime: the visual and transformer graphs, embeddings, scores.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, OnceLock};

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
/// preprocess.json's name when the manifest's `preprocessing.file` does not give one.
const PREPROCESS: &str = "preprocess.json";

fn poisoned() -> Error {
    Error::new(ErrorKind::InvalidInput, "a session was poisoned by an earlier panic")
}

/// The manifest's `tokenizer.ftfy`, where it has one, must be the ftfy this crate cleans texts as.
fn check_ftfy(manifest: &Value, path: &Path) -> Result<()> {
    match manifest["tokenizer"].get("ftfy") {
        Some(version) if version.as_str() != Some(tokenize::FTFY_VERSION) => error(
            ErrorKind::InvalidInput,
            format!(
                "{}: tokenizer.ftfy is {version}, but this clip-onnx crate cleans texts as ftfy {} does, so token ids could differ \
                 from Python's; upgrade the clip-onnx crate, or use files of a release it reads",
                path.display(),
                tokenize::FTFY_VERSION
            ),
        ),
        _ => Ok(()),
    }
}

/// One exported folder. Nothing a graph needs is read before that graph is used: a folder may hold only
/// some graphs' files (a text-only download has no visual graph and no preprocess.json).
pub struct Model {
    pub folder: PathBuf,
    pub manifest: Value,
    pub context_length: usize,
    pub logit_scale: f32,
    /// Whether each file is checked against the manifest's size and SHA-256 before it is used.
    check: bool,
    /// The files checked so far (a file two graphs need is hashed once).
    checked: Mutex<HashSet<String>>,
    /// tokenizer.json, read at load when the folder has it.
    tokenizer: Option<Tokenizer>,
    /// preprocess.json, read at load when the folder has it.
    preprocessing: Option<preprocess::Preprocessing>,
    /// The sessions, each opened on first use of its graph, after its files are checked.
    visual: Mutex<Option<Session>>,
    transformer: Mutex<Option<Session>>,
}

impl Model {
    /// Load a folder, checking what it holds against the manifest: tokenizer.json and preprocess.json, each
    /// only if present, are checked by size and SHA-256 and read now (a changed one is an `Err` of one line
    /// naming it); a graph's files (`manifest::needed_files`: the graph, its external data, and the
    /// tokenizer.json or preprocess.json feeding it) are checked when the graph is first used, by
    /// `encode_image` (the visual graph) or `encode_text` (the transformer), so a folder with one graph's
    /// files only loads and runs that graph. A missing file is a `MissingFile` naming it when something
    /// needs it. A manifest whose `tokenizer.ftfy` is not `tokenize::FTFY_VERSION` is refused
    /// (`InvalidInput`) when the folder has tokenizer.json, and preprocess.json is read as
    /// `preprocess::Preprocessing::read` does: rules other than the crate's are `UnsupportedFormat`, a
    /// malformed file `BadManifest`.
    pub fn load(folder: impl AsRef<Path>) -> Result<Model> {
        Model::open(folder.as_ref(), true)
    }

    /// Load without checking the files against the manifest; ONNX Runtime still refuses a graph it cannot parse.
    pub fn load_unchecked(folder: impl AsRef<Path>) -> Result<Model> {
        Model::open(folder.as_ref(), false)
    }

    fn open(folder: &Path, check: bool) -> Result<Model> {
        let manifest = manifest::read(folder)?;
        let number = |key: &str, field: &str| manifest[key][field]
            .as_f64()
            .ok_or_else(|| Error::new(ErrorKind::BadManifest, format!("{}: manifest.json lacks {key}.{field}; export the variant again", folder.display())));
        let context_length = number("tokenizer", "context_length")? as usize;
        let logit_scale = number("logit_scale", "exp")? as f32;
        // the files the manifest names
        let tokenizer_file = manifest::file_name(manifest["tokenizer"]["file"].as_str().unwrap_or(tokenize::TOKENIZER))?.to_string();
        let preprocess_file = manifest::file_name(manifest["preprocessing"]["file"].as_str().unwrap_or(PREPROCESS))?.to_string();
        // present ones are checked and read now, so a changed one is refused at load; a missing one only
        // when something needs it
        let present = |name: &str| std::fs::symlink_metadata(folder.join(name)).is_ok();
        let (has_tokenizer, has_preprocessing) = (present(&tokenizer_file), present(&preprocess_file));
        let mut checked = HashSet::new();
        if check {
            for (name, _) in [(&tokenizer_file, has_tokenizer), (&preprocess_file, has_preprocessing)].into_iter().filter(|(_, has)| *has) {
                manifest::check_file(&manifest, folder, name)?;
                checked.insert(name.clone());
            }
        }
        if has_tokenizer {
            check_ftfy(&manifest, &folder.join(manifest::MANIFEST))?;
        }
        let preprocessing = if has_preprocessing {
            let path = folder.join(&preprocess_file);
            let preprocessing = preprocess::Preprocessing::read(&path)?;
            let resolution = number("preprocessing", "resolution")?;
            if resolution != preprocessing.resolution as f64 {
                return error(ErrorKind::BadManifest, format!(
                    "{}: preprocessing.resolution is {resolution}, but {} says {}; export the variant again",
                    folder.join(manifest::MANIFEST).display(),
                    path.display(),
                    preprocessing.resolution
                ));
            }
            Some(preprocessing)
        } else {
            None
        };
        let tokenizer = if has_tokenizer { Some(tokenize::load_file(&folder.join(&tokenizer_file))?) } else { None };
        Ok(Model {
            folder: folder.to_path_buf(),
            context_length,
            logit_scale,
            check,
            checked: Mutex::new(checked),
            tokenizer,
            preprocessing,
            visual: Mutex::new(None),
            transformer: Mutex::new(None),
            manifest,
        })
    }

    /// A file the folder lacks, which `what` needs: `MissingFile`, one line naming it.
    fn missing(&self, section: &str, default: &str, what: &str) -> Error {
        let name = self.manifest[section]["file"].as_str().unwrap_or(default);
        Error::new(ErrorKind::MissingFile, format!(
            "{}: missing; {what} needs it (download it beside {}, or export the variant again)",
            self.folder.join(name).display(),
            manifest::MANIFEST
        ))
    }

    /// tokenizer.json, as `encode_text` reads it: a `MissingFile` error if the folder has none.
    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| self.missing("tokenizer", tokenize::TOKENIZER, "encode_text"))
    }

    /// preprocess.json, as `encode_image` follows it: the resolution, mean and std of the pixels, and the
    /// image files it reads (`input.formats`, `input.max_pixels`); a `MissingFile` error if the folder has none.
    pub fn preprocessing(&self) -> Result<&preprocess::Preprocessing> {
        self.preprocessing.as_ref().ok_or_else(|| self.missing("preprocessing", PREPROCESS, "encode_image"))
    }

    /// The session of `graph` (one of `GRAPHS`), opened on first use after the files it needs
    /// (`manifest::needed_files`) are checked against the manifest; locked for one run.
    fn session(&self, graph: &str) -> Result<MutexGuard<'_, Option<Session>>> {
        let slot = if graph == "visual" { &self.visual } else { &self.transformer };
        let mut session = slot.lock().map_err(|_| poisoned())?;
        if session.is_some() {
            return Ok(session);
        }
        if self.check {
            let mut checked = self.checked.lock().map_err(|_| poisoned())?;
            for name in manifest::needed_files(&self.manifest, &[graph])? {
                if !checked.contains(&name) {
                    manifest::check_file(&self.manifest, &self.folder, &name)?;
                    checked.insert(name);
                }
            }
        }
        let file = self.manifest["graphs"][graph]["file"]
            .as_str()
            .ok_or_else(|| Error::new(ErrorKind::BadManifest, format!("{}: the manifest has no {graph} graph; export it", self.folder.display())))?;
        let path = self.folder.join(manifest::file_name(file)?);
        let opened = Session::builder(environment()?)
            .and_then(|mut builder| builder.commit_from_file(&path))
            .map_err(|e| Error::new(ErrorKind::InvalidInput, format!(
                "{}: ONNX Runtime cannot load it ({e}); download it again, with the .onnx.data files the manifest lists for it",
                path.display()
            )))?;
        *session = Some(opened);
        Ok(session)
    }

    fn run(&self, graph: &str, input: DynValue) -> Result<Vec<Vec<f32>>> {
        let mut session = self.session(graph)?;
        let session = session.as_mut().expect("session() opened it");
        let outputs = session.run(ort::inputs![input]).map_err(ort_error("ONNX Runtime"))?;
        let (shape, data) = outputs[0].try_extract_tensor::<f32>().map_err(ort_error("ONNX Runtime's output"))?;
        let d = shape[1] as usize;
        Ok(data.chunks(d.max(1)).map(<[f32]>::to_vec).collect())
    }

    /// Image embeddings [N][D], not normalised (as CLIP's encode_image returns them). Needs the visual
    /// graph's files (checked on the first call) and preprocess.json.
    pub fn encode_image<P: AsRef<Path>>(&self, images: &[P]) -> Result<Vec<Vec<f32>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        // the graph's files first: a folder without the visual graph is refused naming it
        drop(self.session("visual")?);
        let preprocessing = self.preprocessing()?;
        let pixels = preprocess::load_with(images, preprocessing)?;
        let r = preprocessing.resolution;
        let tensor = Tensor::from_array(([images.len(), 3, r, r], pixels)).map_err(ort_error("the image batch"))?;
        self.run("visual", tensor.into_dyn())
    }

    /// Text embeddings [N][D], not normalised. Texts over the context length are errors unless `truncate`.
    /// Needs the transformer graph's files (checked on the first call) and tokenizer.json.
    pub fn encode_text(&self, texts: &[&str], truncate: bool) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        // the graph's files first: a folder without the transformer graph is refused naming it
        drop(self.session("transformer")?);
        let ids = tokenize::encode(self.tokenizer()?, texts, truncate)?;
        let tensor = Tensor::from_array(([texts.len(), self.context_length], ids)).map_err(ort_error("the token batch"))?;
        self.run("transformer", tensor.into_dyn())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A folder of a manifest, preprocess.json and a stand-in tokenizer.json (no graphs: nothing below
    /// starts ONNX Runtime), removed when dropped.
    struct Folder(PathBuf);

    impl Folder {
        fn new(what: &str, ftfy: Value, preprocessing: Value) -> Folder {
            let folder = Folder::without_tokenizer(what, ftfy, preprocessing);
            std::fs::write(folder.0.join("tokenizer.json"), "{}").unwrap();
            folder
        }

        fn without_tokenizer(what: &str, ftfy: Value, preprocessing: Value) -> Folder {
            let folder = std::env::temp_dir().join(format!("clip-onnx-model-{what}-{}", std::process::id()));
            std::fs::create_dir_all(&folder).unwrap();
            let manifest = json!({
                "format_version": manifest::FORMAT_VERSIONS[0],
                "graphs": {}, "files": {}, "logit_scale": {"exp": 100.0},
                "tokenizer": {"file": "tokenizer.json", "context_length": 77, "ftfy": ftfy},
                "preprocessing": {"file": "preprocess.json", "resolution": 224},
            });
            std::fs::write(folder.join(manifest::MANIFEST), manifest.to_string()).unwrap();
            std::fs::write(folder.join("preprocess.json"), preprocessing.to_string()).unwrap();
            Folder(folder)
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn refusal(folder: &Folder) -> Error {
        Model::load_unchecked(&folder.0).err().expect("the folder was loaded")
    }

    #[test]
    fn a_manifest_naming_another_ftfy_is_an_invalid_input_in_one_line() {
        for (version, shown) in [(json!("6.2.0"), "\"6.2.0\""), (json!(6.3), "6.3"), (Value::Null, "null")] {
            let folder = Folder::new("ftfy", version, json!({}));
            let refused = refusal(&folder);
            assert_eq!(refused.kind(), ErrorKind::InvalidInput, "{refused}");
            assert_eq!(refused.message(), format!(
                "{}: tokenizer.ftfy is {shown}, but this clip-onnx crate cleans texts as ftfy 6.3.1 does, so token ids could differ \
                 from Python's; upgrade the clip-onnx crate, or use files of a release it reads",
                folder.0.join("manifest.json").display()
            ));
        }
        assert_eq!(tokenize::FTFY_VERSION, "6.3.1", "the line above names the version the ftfy crate ports");
        // the version this crate cleans as passes, to the next check: preprocess.json's (here an empty object)
        let folder = Folder::new("same-ftfy", json!("6.3.1"), json!({}));
        assert_eq!(refusal(&folder).kind(), ErrorKind::BadManifest, "{}", refusal(&folder));
    }

    #[test]
    fn preprocess_json_is_read_and_its_refusals_stop_the_load() {
        let spec: Value = json!({
            "resolution": 224, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
            "rules": preprocess::RULES.iter().map(|(rule, value)| (rule.to_string(), Value::from(*value))).collect::<serde_json::Map<_, _>>(),
            "input": {"max_pixels": 100, "formats": {"PNG": {}}},
        });
        let mut lanczos = spec.clone();
        lanczos["rules"]["resize_filter"] = "lanczos".into();
        let mut unknown = spec.clone();
        unknown["rules"]["foo"] = "bar".into();
        let mut missing = spec.clone();
        missing["rules"].as_object_mut().unwrap().remove("resize_filter");
        let mut two = spec.clone();
        two["mean"] = json!([0.5, 0.5]);
        let mut wide = spec.clone();
        wide["resolution"] = 336.into();
        for (what, spec, kind, says) in [
            ("lanczos", lanczos, ErrorKind::UnsupportedFormat, "rule resize_filter is \"lanczos\""),
            ("unknown", unknown, ErrorKind::UnsupportedFormat, "rule \"foo\" is not one"),
            ("missing", missing, ErrorKind::UnsupportedFormat, "lacks rule resize_filter"),
            ("two", two, ErrorKind::BadManifest, "mean is [0.5,0.5]"),
            ("wide", wide, ErrorKind::BadManifest, "preprocessing.resolution is 224, but"),
        ] {
            let folder = Folder::new(what, Value::from("6.3.1"), spec);
            let refused = refusal(&folder);
            assert_eq!(refused.kind(), kind, "{refused}");
            assert!(refused.message().contains(says) && refused.message().contains(&*folder.0.to_string_lossy()), "{refused}");
        }
        // a file that is not JSON is refused, not taken for the crate's own list
        let folder = Folder::new("not-json", Value::from("6.3.1"), Value::Null);
        std::fs::write(folder.0.join("preprocess.json"), "{").unwrap();
        let refused = refusal(&folder);
        assert_eq!(refused.kind(), ErrorKind::BadManifest);
        assert!(refused.message().starts_with(&format!("{}: not valid JSON", folder.0.join("preprocess.json").display())), "{refused}");
    }

    fn valid_preprocess_json() -> Value {
        json!({
            "resolution": 224, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
            "rules": preprocess::RULES.iter().map(|(rule, value)| (rule.to_string(), Value::from(*value))).collect::<serde_json::Map<_, _>>(),
            "input": {"max_pixels": 100, "formats": {"PNG": {}}},
        })
    }

    #[test]
    fn a_folder_without_tokenizer_json_loads_and_refuses_only_what_needs_it() {
        // no tokenizer.json: its ftfy is not checked, nothing is refused at load
        let folder = Folder::without_tokenizer("no-tokenizer", json!("6.2.0"), valid_preprocess_json());
        let model = Model::load_unchecked(&folder.0).expect("a folder without tokenizer.json loads");
        assert_eq!(model.preprocessing().unwrap().resolution, 224);
        let refused = model.tokenizer().expect_err("a tokenizer out of nothing");
        assert_eq!(refused.kind(), ErrorKind::MissingFile);
        assert_eq!(refused.message(), format!(
            "{}: missing; encode_text needs it (download it beside manifest.json, or export the variant again)",
            folder.0.join("tokenizer.json").display()
        ));
        assert!(model.encode_text(&[], false).unwrap().is_empty(), "no text needs nothing");
        // no preprocess.json either: still loads; encode_image's file is named when asked for
        std::fs::remove_file(folder.0.join("preprocess.json")).unwrap();
        let model = Model::load_unchecked(&folder.0).expect("a folder without preprocess.json loads");
        let refused = model.preprocessing().expect_err("preprocessing out of nothing");
        assert_eq!(refused.kind(), ErrorKind::MissingFile);
        assert!(refused.message().contains("preprocess.json: missing; encode_image needs it"), "{refused}");
        // the checked load checks a present file: an unlisted tokenizer.json is refused
        std::fs::write(folder.0.join("tokenizer.json"), "{}").unwrap();
        let refused = Model::load(&folder.0).err().expect("an unlisted tokenizer.json was loaded");
        assert_eq!(refused.kind(), ErrorKind::ChangedFile, "{refused}");
        assert!(refused.message().contains("tokenizer.json: not listed in manifest.json"), "{refused}");
    }
}
