//! The crate against the shared test vectors Python writes (tests/vectors.py, driven by
//! tests/test_rust.py): pixels bit for bit, token ids, embeddings within each precision's tolerance,
//! the CLI's scores, downloads at a tag from the loopback Hub, and an `Err` of its kind for the bad inputs
//! the shared `bad_inputs` table (rust/tests/bad_inputs.rs) does not cover.
//! `CLIP_ONNX_VECTORS` names vectors.json; `ORT_DYLIB_PATH` the ONNX Runtime library.

use std::path::{Path, PathBuf};
use std::process::Command;

use clip_onnx::{hub, preprocess, tokenize, ErrorKind, Model};
use serde_json::Value;

fn vectors() -> Value {
    let path = std::env::var("CLIP_ONNX_VECTORS")
        .expect("CLIP_ONNX_VECTORS is not set: run these tests through `python -m pytest tests/test_rust.py`, which writes the vectors");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(path: &Value) -> Vec<f32> {
    std::fs::read(path.as_str().unwrap()).unwrap().chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

fn paths(value: &Value) -> Vec<PathBuf> {
    strings(value).into_iter().map(PathBuf::from).collect()
}

#[test]
fn pixels_equal_pythons_bit_for_bit_in_every_mode_and_size() {
    let v = vectors();
    let images = paths(&v["images"]);
    for (resolution, file) in v["pixels"].as_object().unwrap() {
        let expected = floats(file);
        let r: usize = resolution.parse().unwrap();
        for (n, image) in images.iter().enumerate() {
            let actual = preprocess::load(&[image], r).unwrap();
            let reference = &expected[n * 3 * r * r..(n + 1) * 3 * r * r];
            let differing = actual.iter().zip(reference).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(differing, 0, "{}: {differing} of {} values differ from Python's at R={r}", image.display(), reference.len());
        }
    }
}

/// preprocess.json's list of what may be read, as the first export writes it.
fn readable(v: &Value) -> preprocess::Readable {
    preprocess::Readable::read(&Path::new(v["exports"][0]["folder"].as_str().unwrap()).join("preprocess.json"))
}

#[test]
fn every_listed_kind_of_image_file_equals_pillows_pixels_bit_for_bit() {
    // all_images: PNG in every mode and 16 bits, JPEG (baseline, progressive, 4:2:0/4:2:2/4:4:4, grey, CMYK,
    // EXIF-rotated, ICC profiles), WebP (lossy, lossless, alpha), GIF, BMP, TIFF; all_pixels Python's at 224
    let v = vectors();
    let (images, expected, readable) = (paths(&v["all_images"]), floats(&v["all_pixels"]), readable(&v));
    let r = 224;
    let n = 3 * r * r;
    assert_eq!(expected.len(), images.len() * n, "all_pixels holds {} values for {} images", expected.len(), images.len());
    let mut wrong = Vec::new();
    for (i, image) in images.iter().enumerate() {
        let reference = &expected[i * n..(i + 1) * n];
        match preprocess::load_with(&[image], r, &readable) {
            Err(e) => wrong.push(format!("{}: refused ({e})", image.display())),
            Ok(actual) => {
                let differing = actual.iter().zip(reference).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
                let worst = actual.iter().zip(reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                if differing != 0 {
                    wrong.push(format!("{}: {differing} of {n} values differ from Pillow's, by at most {worst}", image.display()));
                }
            }
        }
    }
    println!("{} of {} image files bit-identical to Pillow, 0 skipped", images.len() - wrong.len(), images.len());
    assert!(wrong.is_empty(), "{} of {} image files differ from Pillow's pixels:\n{}", wrong.len(), images.len(), wrong.join("\n"));
    let kinds = ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"];
    for kind in kinds {
        let count = images.iter().filter(|p| preprocess::format(&std::fs::read(p).unwrap()) == Some(kind)).count();
        assert!(count >= 3, "only {count} {kind} files among all_images");
    }
}

#[test]
fn jpeg_pixels_equal_libjpeg_turbos_as_pillow_decodes() {
    let v = vectors();
    let expected = floats(&v["jpeg_pixels"]);
    let r = (expected.len() / 3) as f64;
    let actual = preprocess::load(&[v["jpeg"].as_str().unwrap()], r.sqrt() as usize).unwrap();
    let differing = actual.iter().zip(&expected).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    println!("JPEG: {differing} of {} values differ from Pillow's (libjpeg-turbo, islow IDCT, fancy upsampling)", expected.len());
    assert_eq!(differing, 0);
}

#[test]
fn unlisted_and_bad_image_files_are_refused_as_unreadable_naming_the_file() {
    let v = vectors();
    let readable = readable(&v);
    let mut wrong = Vec::new();
    let mut counts = Vec::new();
    for key in ["unlisted_images", "bad_images"] {
        let files = paths(&v[key]);
        for file in &files {
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            match preprocess::decode_with(file, &readable) {
                Ok(p) => wrong.push(format!("{name}: read as {} x {} {}", p.width, p.height, p.mode.name())),
                Err(e) if e.kind() != ErrorKind::UnreadableImage || !e.message().contains(&file.display().to_string()) || e.message().contains('\n') => {
                    wrong.push(format!("{name}: {} {:?}", e.kind(), e.message()))
                }
                Err(e) => println!("  refused: {}", e.message()),
            }
        }
        counts.push(files.len());
    }
    println!("{} unlisted and {} bad image files refused as unreadable_image, each in one line naming its file", counts[0], counts[1]);
    assert!(wrong.is_empty(), "{} files were not refused as they should be:\n{}", wrong.len(), wrong.join("\n"));
    assert!(counts[0] >= 7 && counts[1] >= 8, "only {counts:?} files");
}

#[test]
fn the_list_read_is_preprocess_jsons_and_it_is_the_crates_own() {
    let v = vectors();
    let listed = readable(&v);
    let model = Model::load(v["exports"][0]["folder"].as_str().unwrap()).unwrap();
    assert_eq!(model.readable, listed);
    let mut own = preprocess::Readable::default();
    own.formats.sort();
    assert_eq!(listed, own, "preprocess.json lists other files than the crate reads");
    // a narrower list is obeyed: a JPEG and an RGB TIFF refused, naming the file and the list
    let narrow = preprocess::Readable { formats: vec!["PNG".into(), "TIFF".into()], tiff_modes: vec!["L".into()], ..preprocess::Readable::default() };
    for (name, says) in [("jpeg-420.jpg", "is in the JPEG format; this crate reads PNG, TIFF"), ("tiff-raw.tiff", "is a TIFF of mode RGB with raw compression")] {
        let file = paths(&v["all_images"]).into_iter().find(|p| p.file_name().unwrap() == name).unwrap();
        let refused = preprocess::decode_with(&file, &narrow).err().unwrap_or_else(|| panic!("{name} was read"));
        assert!(refused.kind() == ErrorKind::UnreadableImage && refused.message().contains(says) && refused.message().contains(name), "{refused}");
    }
    let tiny = preprocess::Readable { max_pixels: 1000, ..preprocess::Readable::default() };
    let refused = preprocess::decode_with(&paths(&v["all_images"])[0], &tiny).err().unwrap();
    assert!(refused.message().contains("more than the 1000 that preprocess.json's input.max_pixels allows"), "{refused}");
}

#[test]
fn the_pixel_limit_is_the_one_preprocess_json_states() {
    let v = vectors();
    let spec = Path::new(v["exports"][0]["folder"].as_str().unwrap()).join("preprocess.json");
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(spec).unwrap()).unwrap();
    assert_eq!(spec["input"]["max_pixels"].as_u64(), Some(preprocess::MAX_PIXELS));
}

#[test]
fn token_ids_equal_pythons_on_every_text() {
    let v = vectors();
    let model_folder = PathBuf::from(v["exports"][0]["folder"].as_str().unwrap());
    let tokenizer = tokenize::load(&model_folder).unwrap();
    let texts = strings(&v["texts"]);
    let expected = ids(v["token_ids"].as_str().unwrap());
    let length = expected.len() / texts.len();
    let differ: Vec<&String> = texts.iter().enumerate()
        .filter(|(i, text)| tokenize::encode(&tokenizer, &[text], true).unwrap() != expected[i * length..(i + 1) * length])
        .map(|(_, text)| text).collect();
    assert!(differ.is_empty(), "{} of {} texts get other ids than Python's: {differ:?}", differ.len(), texts.len());
    println!("token ids: {} texts, all equal Python's ({} with HTML that only the double unescape changes)", texts.len(),
             v["html_texts"].as_array().unwrap().len());
}

/// A little-endian int32 file as ids.
fn ids(path: &str) -> Vec<i32> {
    std::fs::read(path).unwrap().chunks(4).map(|b| i32::from_le_bytes(b.try_into().unwrap())).collect()
}

#[test]
fn clip_cleaning_and_token_ids_equal_pythons_on_ftfys_cases_the_corpus_and_generated_texts() {
    let v = vectors();
    let cleaning: Value = serde_json::from_str(&std::fs::read_to_string(v["cleaning"]["file"].as_str().unwrap()).unwrap()).unwrap();
    let expected = ids(v["cleaning"]["token_ids"].as_str().unwrap());
    let tokenizer = tokenize::load(Path::new(v["exports"][0]["folder"].as_str().unwrap())).unwrap();
    let mut row = 0;
    let mut wrong = Vec::new();
    for set in strings(&v["cleaning"]["order"]) {
        let cases = &cleaning["sets"][&set];
        let (mut cleaned, mut other_ids) = (0, 0);
        for case in cases.as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            if tokenize::clean(text) != case["cleaned"].as_str().unwrap() {
                cleaned += 1;
                wrong.push(text.to_string());
            }
            if tokenize::encode(&tokenizer, &[text], true).unwrap() != expected[row * 77..(row + 1) * 77] {
                other_ids += 1;
            }
            row += 1;
        }
        println!("{set}: {} texts, {cleaned} cleaned differ, {other_ids} ids differ", cases.as_array().unwrap().len());
        assert_eq!((cleaned, other_ids), (0, 0), "{set}: first differing texts {:?}", &wrong[..wrong.len().min(5)]);
    }
    assert_eq!(row * 77, expected.len(), "every text of the cleaning set was compared");
}

#[test]
fn html_is_unescaped_twice_as_clip_does() {
    assert_eq!(tokenize::clean("Caf&eacute; &amp;amp; cr&#232;me"), "Café & crème");
    assert_eq!(tokenize::clean("<b>fish &amp;amp; chips</b>"), "<b>fish & chips</b>");
}

#[test]
fn html_unescape_equals_pythons_on_every_name_and_edge() {
    let v = vectors();
    let cases = v["unescape"].as_array().unwrap();
    for case in cases {
        let (text, python) = (case[0].as_str().unwrap(), case[1].as_str().unwrap());
        let rust = tokenize::unescape(text);
        if rust != python {
            let at = rust.chars().zip(python.chars()).take_while(|(a, b)| a == b).count();
            let show = |s: &str| s.chars().skip(at.saturating_sub(20)).take(60).collect::<String>();
            panic!("html.unescape differs at character {at}: Rust {:?}, Python {:?}", show(&rust), show(python));
        }
    }
    assert!(cases.len() > 200, "only {} cases", cases.len());
}

fn row_cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    dot / (a.iter().map(|x| x * x).sum::<f32>().sqrt() * b.iter().map(|x| x * x).sum::<f32>().sqrt())
}

#[test]
fn embeddings_are_within_each_precisions_tolerance_of_pythons() {
    let v = vectors();
    let images = paths(&v["images"]);
    let texts = strings(&v["embedded_texts"]);
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    for export in v["exports"].as_array().unwrap() {
        let model = Model::load(export["folder"].as_str().unwrap()).unwrap();
        let (min_cosine, max_relative) = (export["min_cosine"].as_f64().unwrap() as f32, export["max_relative"].as_f64().unwrap() as f32);
        for (actual, expected) in [
            (model.encode_image(&images).unwrap(), floats(&export["image_embeds"])),
            (model.encode_text(&texts, true).unwrap(), floats(&export["text_embeds"])),
        ] {
            let d = expected.len() / actual.len();
            let scale = expected.iter().map(|x| x.abs()).fold(0f32, f32::max);
            for (row, reference) in actual.iter().zip(expected.chunks(d)) {
                let cosine = row_cosine(row, reference);
                let worst = row.iter().zip(reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(cosine >= min_cosine, "{}: cosine {cosine} < {min_cosine}", export["folder"]);
                assert!(worst <= max_relative * scale, "{}: difference {worst} > {}", export["folder"], max_relative * scale);
            }
        }
    }
}

#[test]
fn the_cli_classifies_as_the_python_cli_does() {
    let v = vectors();
    let folder = v["exports"][0]["folder"].as_str().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_clip-onnx"));
    command.arg("classify").args(strings(&v["images"])).args(["-m", folder, "--labels", &strings(&v["labels"]).join(","), "--top", "9"]);
    let output = command.output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<String> = String::from_utf8(output.stdout).unwrap().lines().map(str::to_string).collect();
    let parse = |line: &str| -> (String, Vec<(String, f32)>) {
        let (image, scores) = line.rsplit_once(": ").unwrap();
        let scores = scores.split(", ").map(|s| {
            let (label, p) = s.rsplit_once(' ').unwrap();
            (label.to_string(), p.parse().unwrap())
        }).collect();
        (image.to_string(), scores)
    };
    let expected = strings(&v["classify"]);
    assert_eq!(lines.len(), expected.len());
    for (rust, python) in lines.iter().zip(&expected) {
        let ((image_r, scores_r), (image_p, scores_p)) = (parse(rust), parse(python));
        assert_eq!(image_r, image_p);
        for ((label_r, p_r), (label_p, p_p)) in scores_r.iter().zip(&scores_p) {
            assert!(label_r == label_p || (p_r - p_p).abs() <= 0.001, "{rust} vs {python}");
            assert!((p_r - p_p).abs() <= 0.0011, "{rust} vs {python}");
        }
    }
}

#[test]
fn a_release_is_downloaded_at_its_tag_and_a_tampered_file_is_refused() {
    let v = vectors();
    let hub = &v["hub"];
    let target = std::env::temp_dir().join(format!("clip-onnx-download-{}", std::process::id()));
    let folder = hub::download(hub["repo"].as_str().unwrap(), hub["tag"].as_str().unwrap(), "fp32", &target, hub["endpoint"].as_str()).unwrap();
    assert!(Model::load(&folder).is_ok());
    let refused = hub::download(hub["tampered_repo"].as_str().unwrap(), hub["tag"].as_str().unwrap(), "fp32", &target.join("t"), hub["endpoint"].as_str());
    let refused = refused.expect_err("a tampered file was accepted");
    assert_eq!(refused.kind(), ErrorKind::ChangedFile);
    let message = refused.to_string();
    assert!(message.contains("does not match the SHA-256 in its manifest; refused"), "{message}");
    let leftovers: Vec<_> = std::fs::read_dir(target.join("t").join("fp32")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!leftovers.iter().any(|n| n.to_string_lossy().contains("visual")), "a refused file was kept: {leftovers:?}");
    std::fs::remove_dir_all(target).ok();
}

/// The folder of the shared `bad_inputs` case whose name ends with `suffix`.
fn bad_input_folder(v: &Value, suffix: &str) -> PathBuf {
    let cases = v["bad_inputs"].as_array().unwrap();
    let case = cases.iter().find(|c| c["name"].as_str().unwrap().ends_with(suffix));
    PathBuf::from(case.unwrap_or_else(|| panic!("no bad_inputs case named ...{suffix}"))["folder"].as_str().unwrap())
}

/// What the shared `bad_inputs` table (rust/tests/bad_inputs.rs) does not cover: loading its broken graphs
/// without the check, images it has no case for, an empty label list, a folder that does not exist.
#[test]
fn bad_inputs_the_table_lacks_are_errors_of_their_kind_never_a_panic() {
    let v = vectors();
    let err = |result: clip_onnx::Result<Model>| result.err().expect("a broken folder loaded");
    for broken in [bad_input_folder(&v, "external data missing"), bad_input_folder(&v, "_visual.onnx cut in half")] {
        let refused = err(Model::load_unchecked(&broken));
        assert!(refused.message().contains("ONNX Runtime cannot load it"), "{refused}");
        assert_eq!(refused.kind(), ErrorKind::InvalidInput, "{refused}");
    }
    let model = Model::load(v["exports"][0]["folder"].as_str().unwrap()).unwrap();
    let refused = model.probabilities(&paths(&v["images"])[..1], &[], false).err().unwrap();
    assert!(refused.message().starts_with("probabilities over no texts") && refused.kind() == ErrorKind::Usage, "{refused:?}");
    let refused = Model::load("/nonexistent").err().unwrap();
    assert!(refused.message().contains("/nonexistent does not exist") && refused.kind() == ErrorKind::NotAnExport, "{refused:?}");
}

/// A copy of `folder`: `changed` copied with one byte flipped in its middle (same size), manifest.json copied,
/// every other file a hard link (never written: that would change the shared vectors).
fn copy_with_a_flipped_byte(folder: &Path, changed: &str, copy: &Path) {
    std::fs::create_dir_all(copy).unwrap();
    for entry in std::fs::read_dir(folder).unwrap().flatten() {
        let name = entry.file_name();
        if name.to_str() == Some(changed) {
            let mut bytes = std::fs::read(entry.path()).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
            std::fs::write(copy.join(&name), bytes).unwrap();
        } else if name.to_str() == Some("manifest.json") {
            std::fs::copy(entry.path(), copy.join(&name)).unwrap();
        } else {
            std::fs::hard_link(entry.path(), copy.join(&name)).unwrap();
        }
    }
}

/// A folder under the temporary directory, removed when dropped, a failing test's included.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        Scratch(std::env::temp_dir().join(format!("clip-onnx-{what}-{}", std::process::id())))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_same_size_change_to_any_file_a_graph_needs_is_refused_by_load_and_by_the_cli() {
    let v = vectors();
    // an export whose visual graph keeps its weights in external data (made by tests/test_rust.py)
    let folder = Path::new(v["external_data"].as_str().unwrap());
    let manifest = clip_onnx::manifest::read(folder).unwrap();
    let needed = clip_onnx::manifest::needed_files(&manifest, &clip_onnx::model::GRAPHS).unwrap();
    let visual = manifest["graphs"]["visual"]["file"].as_str().unwrap();
    let transformer = manifest["graphs"]["transformer"]["file"].as_str().unwrap();
    let data = format!("{visual}.data");
    let mut expected = vec![visual, data.as_str(), transformer, "tokenizer.json", "preprocess.json"];
    expected.sort();
    assert_eq!(needed, expected);
    let model = Model::load(folder).expect("the intact copy with external data loads");
    let images = paths(&v["images"]);
    let reference = Model::load(v["exports"][0]["folder"].as_str().unwrap()).unwrap().encode_image(&images[..1]).unwrap();
    assert_eq!(model.encode_image(&images[..1]).unwrap(), reference, "the weights in external data are the export's");
    let scratch = Scratch::new("flipped");
    let root = &scratch.0;
    for name in &needed {
        let copy = root.join(name);
        copy_with_a_flipped_byte(folder, name, &copy);
        let shown = copy.join(name).display().to_string();
        let refused = Model::load(&copy).err().unwrap_or_else(|| panic!("{name} with a flipped byte was loaded"));
        assert_eq!(refused.kind(), ErrorKind::ChangedFile, "{refused}");
        let message = refused.to_string();
        assert_eq!(message, format!("{shown}: does not match the SHA-256 in manifest.json; download it again"));
        let output = Command::new(env!("CARGO_BIN_EXE_clip-onnx"))
            .args(["classify", v["images"][0].as_str().unwrap(), "-m", copy.to_str().unwrap(), "--labels", "a cat,a dog"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "the CLI ran with {name} changed: {stderr}");
        assert_eq!(stderr, format!("clip-onnx: error: {message}\n"), "not one line naming {name}");
        assert!(output.stdout.is_empty());
    }
}

#[test]
fn a_corrupted_file_already_in_the_target_folder_is_downloaded_again() {
    let v = vectors();
    let hub = &v["hub"];
    let export = Path::new(v["exports"][0]["folder"].as_str().unwrap());
    let visual = clip_onnx::manifest::read(export).unwrap()["graphs"]["visual"]["file"].as_str().unwrap().to_string();
    let scratch = Scratch::new("redownload");
    let target = &scratch.0;
    // a same-size corrupted copy of the visual graph where the download puts it
    copy_with_a_flipped_byte(export, &visual, &target.join("flipped"));
    std::fs::create_dir_all(target.join("fp32")).unwrap();
    std::fs::rename(target.join("flipped").join(&visual), target.join("fp32").join(&visual)).unwrap();
    assert_ne!(std::fs::read(target.join("fp32").join(&visual)).unwrap(), std::fs::read(export.join(&visual)).unwrap());
    let folder = hub::download(hub["repo"].as_str().unwrap(), hub["tag"].as_str().unwrap(), "fp32", target, hub["endpoint"].as_str()).unwrap();
    assert_eq!(std::fs::read(folder.join(&visual)).unwrap(), std::fs::read(export.join(&visual)).unwrap(), "the corrupted file was kept");
    Model::load(&folder).expect("the folder, its corrupted file replaced, loads");
}

#[test]
fn the_tokenizer_loaded_is_the_file_the_manifest_names_and_the_check_covered() {
    let v = vectors();
    let export = Path::new(v["exports"][0]["folder"].as_str().unwrap());
    let scratch = Scratch::new("renamed-tokenizer");
    let copy = &scratch.0;
    copy_with_a_flipped_byte(export, "tokenizer.json", copy); // a copy, not a link, so it can be overwritten:
    std::fs::write(copy.join("tokenizer.json"), "not the tokenizer the manifest names").unwrap();
    std::fs::hard_link(export.join("tokenizer.json"), copy.join("clip-tokenizer.json")).unwrap();
    let mut manifest = clip_onnx::manifest::read(export).unwrap();
    manifest["tokenizer"]["file"] = "clip-tokenizer.json".into();
    let record = manifest["files"]["tokenizer.json"].take();
    manifest["files"]["clip-tokenizer.json"] = record;
    manifest["files"].as_object_mut().unwrap().remove("tokenizer.json");
    std::fs::write(copy.join("manifest.json"), manifest.to_string()).unwrap();
    let model = Model::load(copy).expect("the tokenizer the manifest names is intact");
    let original = Model::load(export).unwrap();
    let texts = ["a photo of an astronaut", "<b>fish &amp;amp; chips</b>"];
    assert_eq!(model.encode_text(&texts, false).unwrap(), original.encode_text(&texts, false).unwrap());
}
