//! The crate against the committed conformance artifact (tests/conformance/vectors.json, written by
//! tests/conformance.py): pixels bit for bit (the SHA-256 of Python's float32 values), token ids and
//! CLIP's cleaning, html.unescape, embeddings within the precision's tolerance, the CLI's scores, and an
//! `Err` of its kind for the bad inputs the shared `bad_inputs` table (rust/tests/bad_inputs.rs) does not
//! cover. Bare `cargo test --locked` runs it (ONNX Runtime: `ORT_DYLIB_PATH`, else the .venv's onnxruntime
//! wheel); the downloads from a loopback Hub are ignored there and run under `python -m pytest
//! tests/test_rust.py`, which serves that Hub and passes `--include-ignored`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use clip_onnx::{hub, preprocess, tokenize, ErrorKind, Model};
use common::{strings, text, vectors, with_ort, Scratch, Vectors};
use serde_json::{json, Value};

/// preprocess.json as the first export writes it, as the crate reads it.
fn preprocessing(v: &Vectors) -> preprocess::Preprocessing {
    preprocess::Preprocessing::read(&v.export().join("preprocess.json")).unwrap()
}

#[test]
fn pixels_equal_pythons_bit_for_bit_in_every_mode_size_and_kind_of_file() {
    // `images` at each R of `pixels`; `all_images` at 224 (PNG in every mode and 16 bits; JPEG baseline,
    // progressive, 4:2:0/4:2:2/4:4:4, grey, CMYK, EXIF-rotated, ICC profiles; WebP lossy, lossless, alpha;
    // GIF, BMP, TIFF); the JPEG; `more_pixels`' files and sizes. Through preprocess.json's parameters.
    let v = vectors();
    let listed = preprocessing(v);
    let mut cases: Vec<(PathBuf, usize, String)> = Vec::new();
    for (resolution, hashes) in v["pixels"].as_object().unwrap() {
        let r: usize = resolution.parse().unwrap();
        assert_eq!(hashes.as_array().unwrap().len(), v["images"].as_array().unwrap().len(), "pixels[{r}] and images");
        cases.extend(v.paths(&v["images"]).into_iter().zip(strings(hashes)).map(|(path, hash)| (path, r, hash)));
    }
    let all = v.paths(&v["all_images"]);
    assert_eq!(all.len(), v["all_pixels"].as_array().unwrap().len(), "all_pixels and all_images");
    let listed_kinds = cases.len()..cases.len() + all.len(); // reported on a line of their own too
    cases.extend(all.iter().cloned().zip(strings(&v["all_pixels"])).map(|(path, hash)| (path, 224, hash)));
    cases.push((v.path(&v["jpeg"]), 224, text(&v["jpeg_pixels"])));
    for case in v["more_pixels"].as_array().unwrap() {
        cases.push((v.path(&case["file"]), case["resolution"].as_u64().unwrap() as usize, text(&case["sha256"])));
    }
    let mut wrong = Vec::new();
    let mut listed_wrong = 0;
    for (i, (image, r, expected)) in cases.iter().enumerate() {
        let shown = image.strip_prefix(&v.root).unwrap_or(image).display();
        let why = match preprocess::load_with(&[image], &preprocess::Preprocessing { resolution: *r, ..listed.clone() }) {
            Err(e) => format!("{shown} at R={r}: refused ({e})"),
            Ok(actual) if actual.len() != 3 * r * r => format!("{shown} at R={r}: {} values, not 3 x {r} x {r}", actual.len()),
            Ok(actual) if common::pixels_sha256(&actual) != *expected => format!("{shown} at R={r}: other pixels than Python's"),
            Ok(_) => continue,
        };
        listed_wrong += usize::from(listed_kinds.contains(&i));
        wrong.push(why);
    }
    println!("{} of {} image files bit-identical to Pillow, 0 skipped", all.len() - listed_wrong, all.len());
    common::report(&format!("{} pixel cases ran, {} differ, 0 skipped", cases.len(), wrong.len()));
    assert!(wrong.is_empty(), "{} of {} pixel cases differ from Python's:\n{}", wrong.len(), cases.len(), wrong.join("\n"));
    for kind in ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"] {
        let count = all.iter().filter(|p| preprocess::format(&std::fs::read(p).unwrap()) == Some(kind)).count();
        assert!(count >= 3, "only {count} {kind} files among all_images");
    }
}

#[test]
fn jpeg_pixels_equal_libjpeg_turbos_as_pillow_decodes() {
    let v = vectors();
    let actual = preprocess::load_with(&[v.path(&v["jpeg"])], &preprocess::Preprocessing { resolution: 224, ..preprocessing(v) }).unwrap();
    let same = common::pixels_sha256(&actual) == text(&v["jpeg_pixels"]);
    println!("JPEG: {} {} values as Pillow's (libjpeg-turbo, islow IDCT, fancy upsampling)", if same { "all" } else { "not all" }, actual.len());
    assert!(same, "{}: other pixels than Pillow's", text(&v["jpeg"]));
}

#[test]
fn unlisted_and_bad_image_files_are_refused_as_unreadable_naming_the_file() {
    let v = vectors();
    let preprocessing = preprocessing(v);
    let mut wrong = Vec::new();
    let mut counts = Vec::new();
    for key in ["unlisted_images", "bad_images"] {
        let files = v.paths(&v[key]);
        for file in &files {
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            match preprocess::decode_with(file, &preprocessing) {
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
fn what_the_model_reads_is_preprocess_jsons_and_it_is_the_crates_own() {
    let v = with_ort();
    let listed = preprocessing(v);
    let model = Model::load(v.export()).unwrap();
    assert_eq!(model.preprocessing().unwrap(), &listed);
    let mut own = preprocess::Preprocessing { resolution: listed.resolution, ..preprocess::Preprocessing::default() };
    own.formats.sort();
    assert_eq!(listed, own, "preprocess.json says other values, or lists other files, than the crate implements");
    // a narrower list is obeyed: a JPEG, an RGB TIFF and an 8-bit BMP refused, naming the file and the list
    let narrow = preprocess::Preprocessing {
        formats: vec!["PNG".into(), "TIFF".into(), "BMP".into()],
        tiff_modes: vec!["L".into()],
        bmp_bits: vec![24, 32],
        ..preprocess::Preprocessing::default()
    };
    for (name, says) in [
        ("jpeg-420.jpg", "is in the JPEG format; this crate reads PNG, TIFF, BMP"),
        ("tiff-raw.tiff", "is a TIFF of mode RGB with raw compression"),
        ("bmp-8.bmp", "is a BMP of 8 bits per pixel with raw compression; this crate reads BMP of 24, 32 bits per pixel with raw compression"),
    ] {
        let file = v.paths(&v["all_images"]).into_iter().find(|p| p.file_name().unwrap() == name).unwrap();
        let refused = preprocess::decode_with(&file, &narrow).err().unwrap_or_else(|| panic!("{name} was read"));
        assert!(refused.kind() == ErrorKind::UnreadableImage && refused.message().contains(says) && refused.message().contains(name), "{refused}");
    }
    // a list naming BMP kinds the crate cannot decode: refused as such, not decoded wrongly
    let wide = preprocess::Preprocessing { bmp_bits: vec![4], ..preprocess::Preprocessing::default() };
    let file = v.paths(&v["unlisted_images"]).into_iter().find(|p| p.file_name().unwrap() == "bmp-4.bmp").unwrap();
    let refused = preprocess::decode_with(&file, &wide).err().unwrap();
    assert!(refused.message().contains("is a BMP of 4 bits per pixel with raw compression, which preprocess.json lists but this crate cannot decode"), "{refused}");
    let tiny = preprocess::Preprocessing { max_pixels: 1000, ..preprocess::Preprocessing::default() };
    let refused = preprocess::decode_with(&v.paths(&v["all_images"])[0], &tiny).err().unwrap();
    assert!(refused.message().contains("more than the 1000 that preprocess.json's input.max_pixels allows"), "{refused}");
}

#[test]
fn the_pixels_are_normalised_by_the_mean_and_std_preprocess_json_states() {
    let v = with_ort();
    let image = &v.paths(&v["images"])[..1];
    let (copy, _scratch) = v.changed_export("mean", &json!([
        {"op": "json", "file": "preprocess.json", "path": ["mean"], "value": [0.5, 0.5, 0.5]},
        {"op": "json", "file": "preprocess.json", "path": ["std"], "value": [0.25, 0.25, 0.25]},
        {"op": "rehash", "file": "preprocess.json"},
    ]));
    let model = Model::load(&copy).unwrap();
    assert_eq!((model.preprocessing().unwrap().mean, model.preprocessing().unwrap().std), ([0.5; 3], [0.25; 3]));
    let original = Model::load(v.export()).unwrap();
    assert_ne!(model.encode_image(image).unwrap(), original.encode_image(image).unwrap(), "the file's mean and std were not used");
    let pixels = preprocess::load_with(image, model.preprocessing().unwrap()).unwrap();
    let own = preprocess::load(image, model.preprocessing().unwrap().resolution).unwrap();
    let r = model.preprocessing().unwrap().resolution;
    for (ours, clips) in pixels.iter().zip(&own).take(r * r).step_by(97) {
        let value = clips * preprocess::STD[0] + preprocess::MEAN[0]; // the red channel's samples come first
        assert!((ours - (value - 0.5) / 0.25).abs() < 1e-4, "{ours} is not ({value} - 0.5) / 0.25");
    }
}

#[test]
fn the_pixel_limit_is_the_one_preprocess_json_states() {
    let v = vectors();
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(v.export().join("preprocess.json")).unwrap()).unwrap();
    assert_eq!(spec["input"]["max_pixels"].as_u64(), Some(preprocess::MAX_PIXELS));
}

#[test]
fn token_ids_and_cleaning_equal_pythons_on_every_text() {
    let v = vectors();
    let tokenizer = tokenize::load(&v.export()).unwrap();
    let texts = strings(&v["texts"]);
    let (expected, cleaned) = (v.ids(&v["token_ids"]), strings(&v["cleaned"]));
    assert_eq!((expected.len(), cleaned.len()), (texts.len() * 77, texts.len()), "token_ids and cleaned hold one row per text");
    let differ: Vec<&String> = texts.iter().enumerate()
        .filter(|(i, text)| {
            tokenize::encode(&tokenizer, &[text], true).unwrap() != expected[i * 77..(i + 1) * 77] || tokenize::clean(text) != cleaned[*i]
        })
        .map(|(_, text)| text).collect();
    common::report(&format!("{} token cases ran, {} differ, 0 skipped", texts.len(), differ.len()));
    assert!(differ.is_empty(), "{} of {} texts get other ids or cleaning than Python's: {differ:?}", differ.len(), texts.len());
    println!("token ids: {} texts, all equal Python's ({} with HTML that only the double unescape changes)", texts.len(),
             v["html_texts"].as_array().unwrap().len());
}

#[test]
fn clip_cleaning_and_token_ids_equal_pythons_on_ftfys_cases_the_corpus_and_generated_texts() {
    let v = vectors();
    let cleaning: Value = serde_json::from_slice(&std::fs::read(v.path(&v["cleaning"]["file"])).unwrap()).unwrap();
    let expected = v.ids(&v["cleaning"]["token_ids"]);
    let tokenizer = tokenize::load(&v.export()).unwrap();
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
    common::report(&format!("{row} token cases ran, 0 differ, 0 skipped"));
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
    let v = with_ort();
    let images = v.paths(&v["images"]);
    let texts = strings(&v["embedded_texts"]);
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut ran = 0;
    for export in v["exports"].as_array().unwrap() {
        let model = Model::load(v.path(&export["folder"])).unwrap();
        let (min_cosine, max_relative) = (export["min_cosine"].as_f64().unwrap() as f32, export["max_relative"].as_f64().unwrap() as f32);
        for (actual, expected) in [
            (model.encode_image(&images).unwrap(), v.floats(&export["image_embeds"])),
            (model.encode_text(&texts, true).unwrap(), v.floats(&export["text_embeds"])),
        ] {
            let d = expected.len() / actual.len();
            assert_eq!(actual.len() * d, expected.len(), "{}: one row of Python's per input", export["folder"]);
            let scale = expected.iter().map(|x| x.abs()).fold(0f32, f32::max);
            for (row, reference) in actual.iter().zip(expected.chunks(d)) {
                let cosine = row_cosine(row, reference);
                let worst = row.iter().zip(reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
                assert!(cosine >= min_cosine, "{}: cosine {cosine} < {min_cosine}", export["folder"]);
                assert!(worst <= max_relative * scale, "{}: difference {worst} > {}", export["folder"], max_relative * scale);
                ran += 1;
            }
        }
    }
    common::report(&format!("{ran} embedding cases ran, 0 skipped"));
}

#[test]
fn the_cli_classifies_as_the_python_cli_does() {
    let v = with_ort();
    // as the artifact's lines were made: in its folder, with its relative paths
    let output = Command::new(env!("CARGO_BIN_EXE_clip-onnx"))
        .arg("classify")
        .args(strings(&v["images"]))
        .args(["-m", &text(&v["exports"][0]["folder"]), "--labels", &strings(&v["labels"]).join(","), "--top", "9"])
        .current_dir(&v.root)
        .output()
        .unwrap();
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
        assert_eq!(scores_r.len(), scores_p.len(), "{rust} vs {python}");
        for ((label_r, p_r), (label_p, p_p)) in scores_r.iter().zip(&scores_p) {
            assert!(label_r == label_p || (p_r - p_p).abs() <= 0.001, "{rust} vs {python}");
            assert!((p_r - p_p).abs() <= 0.0011, "{rust} vs {python}");
        }
    }
}

/// The files in `folder`, sorted.
fn files_in(folder: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
#[ignore = "needs the loopback Hub that python -m pytest tests/test_rust.py serves"]
fn a_release_is_downloaded_at_its_tag_and_a_tampered_file_is_refused() {
    let v = with_ort();
    let hub = common::hub();
    let scratch = Scratch::new("download");
    let target = &scratch.0;
    let folder = hub::download(hub["repo"].as_str().unwrap(), hub["tag"].as_str().unwrap(), "fp32", target, hub["endpoint"].as_str()).unwrap();
    // every graph: every file the manifest lists, and the manifest
    let manifest = clip_onnx::manifest::read(&folder).unwrap();
    let mut all: Vec<String> = manifest["files"].as_object().unwrap().keys().cloned().collect();
    all.push("manifest.json".into());
    all.sort();
    assert_eq!(files_in(&folder), all, "the default download is not every file of the manifest");
    assert_eq!(files_in(&folder), files_in(&v.export()), "the release is the export");
    let model = Model::load(&folder).unwrap();
    let images = v.paths(&v["images"]);
    assert_eq!(model.encode_image(&images[..1]).unwrap(), Model::load(v.export()).unwrap().encode_image(&images[..1]).unwrap());
    let refused = hub::download(hub["tampered_repo"].as_str().unwrap(), hub["tag"].as_str().unwrap(), "fp32", &target.join("t"), hub["endpoint"].as_str());
    let refused = refused.expect_err("a tampered file was accepted");
    assert_eq!(refused.kind(), ErrorKind::ChangedFile);
    let message = refused.to_string();
    assert!(message.contains("_visual.onnx does not match the SHA-256 in its manifest; refused"), "{message}");
    let leftovers = files_in(&target.join("t").join("fp32"));
    assert!(!leftovers.iter().any(|n| n.ends_with("_visual.onnx") || n.contains("partial") || n == "manifest.json"), "a refused file was kept: {leftovers:?}");
}

#[test]
#[ignore = "needs the loopback Hub that python -m pytest tests/test_rust.py serves"]
fn a_text_only_download_fetches_the_transformers_files_alone_and_encodes_texts_as_the_whole_folder() {
    let v = with_ort();
    let hub = common::hub();
    let (repo, tag, endpoint) = (hub["repo"].as_str().unwrap(), hub["tag"].as_str().unwrap(), hub["endpoint"].as_str());
    let scratch = Scratch::new("text-only");
    let folder = hub::download_graphs(repo, tag, "fp32", &["transformer"], &scratch.0, endpoint).unwrap();
    let manifest = clip_onnx::manifest::read(&v.export()).unwrap();
    let transformer = text(&manifest["graphs"]["transformer"]["file"]);
    let data: Vec<String> = strings(&manifest["graphs"]["transformer"]["files"]).into_iter().filter(|n| n.ends_with(".onnx.data")).collect();
    assert_eq!(data.len(), 1, "{data:?}");
    let mut expected = vec!["manifest.json".to_string(), transformer, data[0].clone(), "tokenizer.json".into()];
    expected.sort();
    assert_eq!(files_in(&folder), expected, "a text-only download fetched other files");
    let texts = strings(&v["embedded_texts"]);
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let model = Model::load(&folder).expect("the text-only folder loads with the check on");
    assert_eq!(model.encode_text(&texts, true).unwrap(), Model::load(v.export()).unwrap().encode_text(&texts, true).unwrap());
    let refused = model.encode_image(&v.paths(&v["images"])[..1]).expect_err("images encoded without the visual graph");
    assert_eq!(refused.kind(), ErrorKind::MissingFile, "{refused}");
    // a graph the release does not have, or one named twice: a usage error, nothing fetched
    for graphs in [&["text"][..], &["visual", "visual"]] {
        let elsewhere = Scratch::new("usage");
        let refused = hub::download_graphs(repo, tag, "fp32", graphs, &elsewhere.0, endpoint).expect_err("a wrong graph list was fetched");
        assert_eq!(refused.kind(), ErrorKind::Usage, "{refused}");
        assert!(refused.message().contains("name each once, from the graphs") && refused.message().contains("forward, transformer, visual"), "{refused}");
        assert!(files_in(&elsewhere.0.join("fp32")).is_empty(), "{graphs:?}: files were kept");
    }
    // the command line's --graphs: the same folder, printed
    let target = Scratch::new("cli-text-only");
    let output = Command::new(env!("CARGO_BIN_EXE_clip-onnx"))
        .args(["download", repo, "--revision", tag, "--graphs", "transformer", "-o", target.0.to_str().unwrap(), "--endpoint", endpoint.unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), target.0.join("fp32").display().to_string());
    assert_eq!(files_in(&target.0.join("fp32")), expected);
    let output = Command::new(env!("CARGO_BIN_EXE_clip-onnx"))
        .args(["download", repo, "--revision", tag, "--graphs", "forward,text", "-o", target.0.to_str().unwrap(), "--endpoint", endpoint.unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "clip-onnx: error: argument --graphs: invalid choice: 'text' (choose from 'forward', 'visual', 'transformer'); see clip-onnx --help\n"
    );
}

/// What the shared `bad_inputs` table (rust/tests/bad_inputs.rs) does not cover: using its broken graphs
/// without the check, images it has no case for, an empty label list, a folder that does not exist.
#[test]
fn bad_inputs_the_table_lacks_are_errors_of_their_kind_never_a_panic() {
    let v = with_ort();
    let images = v.paths(&v["images"]);
    let manifest = clip_onnx::manifest::read(&v.export()).unwrap();
    let visual_data = strings(&manifest["graphs"]["visual"]["files"]).into_iter().find(|name| name.ends_with(".onnx.data")).unwrap();
    for suffix in [format!("{visual_data} missing"), "_visual.onnx cut in half".to_string()] {
        let (broken, _scratch) = v.case_folder(v.case(&suffix));
        // the graph is read when it is first used, not at load
        let model = Model::load_unchecked(&broken).unwrap_or_else(|e| panic!("{suffix}: the unchecked load read the graph: {e}"));
        let refused = model.encode_image(&images[..1]).err().unwrap_or_else(|| panic!("{suffix}: the broken graph ran"));
        assert!(refused.message().contains("ONNX Runtime cannot load it"), "{refused}");
        assert_eq!(refused.kind(), ErrorKind::InvalidInput, "{refused}");
    }
    let model = Model::load(v.export()).unwrap();
    let refused = model.probabilities(&images[..1], &[], false).err().unwrap();
    assert!(refused.message().starts_with("probabilities over no texts") && refused.kind() == ErrorKind::Usage, "{refused:?}");
    let refused = Model::load("/nonexistent").err().unwrap();
    assert!(refused.message().contains("/nonexistent does not exist") && refused.kind() == ErrorKind::NotAnExport, "{refused:?}");
}

/// A copy of `folder` at `copy` whose file `changed` has one byte flipped in its middle (same size).
fn with_a_flipped_byte(v: &Vectors, folder: &std::path::Path, changed: &str, copy: &std::path::Path) -> PathBuf {
    let middle = std::fs::metadata(folder.join(changed)).unwrap().len() / 2;
    common::apply(folder, &json!([{"op": "bytes", "file": changed, "flip": middle}]), copy, &v.root)
}

/// The folder loaded with the check on, and both encoders used: the first error, if any.
fn load_and_encode(folder: &std::path::Path, image: &std::path::Path) -> clip_onnx::Result<()> {
    let model = Model::load(folder)?;
    model.encode_text(&["a cat"], false)?;
    model.encode_image(&[image])?;
    Ok(())
}

/// `clip-onnx classify image -m folder` exits 1 with `message` as its one line on stderr, and prints nothing.
fn classify_refuses(image: &std::path::Path, folder: &std::path::Path, message: &str, what: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_clip-onnx"))
        .args(["classify", image.to_str().unwrap(), "-m", folder.to_str().unwrap(), "--labels", "a cat,a dog"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{what}: the CLI ran: {stderr}");
    assert_eq!(stderr, format!("clip-onnx: error: {message}\n"), "{what}: not one line naming the file");
    assert!(output.stdout.is_empty());
}

#[test]
fn a_same_size_change_to_any_file_a_graph_needs_is_refused_by_load_and_by_the_cli() {
    let v = with_ort();
    // the export, whose graphs keep their weights in external-data files
    let folder = v.export();
    let manifest = clip_onnx::manifest::read(&folder).unwrap();
    let needed = clip_onnx::manifest::needed_files(&manifest, &clip_onnx::model::GRAPHS).unwrap();
    let mut expected = strings(&manifest["graphs"]["visual"]["files"]);
    expected.extend(strings(&manifest["graphs"]["transformer"]["files"]));
    assert_eq!(needed, expected, "the graphs' own lists, in order");
    for graph in clip_onnx::model::GRAPHS {
        let file = text(&manifest["graphs"][graph]["file"]);
        let listed = strings(&manifest["graphs"][graph]["files"]);
        assert!(listed.contains(&file) && listed.iter().any(|name| name.ends_with(".onnx.data")), "{graph}: {listed:?}");
    }
    for name in ["tokenizer.json", "preprocess.json"] {
        assert!(needed.iter().any(|n| n == name), "{name} is not needed: {needed:?}");
    }
    let images = v.paths(&v["images"]);
    load_and_encode(&folder, &images[0]).expect("the intact export loads and runs both graphs");
    let scratch = Scratch::new("flipped");
    for name in &needed {
        let copy = with_a_flipped_byte(v, &folder, name, &scratch.0.join(name));
        let shown = copy.join(name).display().to_string();
        let refused = load_and_encode(&copy, &images[0]).err().unwrap_or_else(|| panic!("{name} with a flipped byte was used"));
        assert_eq!(refused.kind(), ErrorKind::ChangedFile, "{refused}");
        let message = refused.to_string();
        assert_eq!(message, format!("{shown}: does not match the SHA-256 in manifest.json; download it again"));
        classify_refuses(&images[0], &copy, &message, &format!("{name} changed"));
    }
}

/// The rows of `actual` within the export's tolerance of `expected` (a float32 file's values), as the
/// embedding test compares them.
fn assert_close(export: &Value, actual: &[Vec<f32>], expected: &[f32], what: &str) {
    let (min_cosine, max_relative) = (export["min_cosine"].as_f64().unwrap() as f32, export["max_relative"].as_f64().unwrap() as f32);
    assert!(!actual.is_empty(), "{what}: no rows");
    let d = expected.len() / actual.len();
    assert_eq!(actual.len() * d, expected.len(), "{what}: one row of Python's per input");
    let scale = expected.iter().map(|x| x.abs()).fold(0f32, f32::max);
    for (row, reference) in actual.iter().zip(expected.chunks(d)) {
        let cosine = row_cosine(row, reference);
        let worst = row.iter().zip(reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(cosine >= min_cosine, "{what}: cosine {cosine} < {min_cosine}");
        assert!(worst <= max_relative * scale, "{what}: difference {worst} > {}", max_relative * scale);
    }
}

/// The artifact's `partial_folders`: the first export reduced to one encoder's files (its
/// `graphs.<graph>.files`) and the manifest loads with the check on, encodes as the whole folder does,
/// and refuses the other encoder's input with `missing_file` naming the file it lacks.
#[test]
fn a_folder_of_one_graphs_files_encodes_with_it_and_refuses_the_other_naming_the_missing_file() {
    let v = with_ort();
    let export = &v["exports"][0];
    let images = v.paths(&v["images"]);
    let texts = strings(&v["embedded_texts"]);
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let cases = v["partial_folders"].as_array().expect("the vectors have partial_folders");
    assert!(!cases.is_empty(), "no partial-folder case");
    let manifest = clip_onnx::manifest::read(&v.export()).unwrap();
    for case in cases {
        let (graph, call, refuses, missing) = (text(&case["graph"]), text(&case["call"]), text(&case["refuses"]), text(&case["missing"]));
        let (folder, _scratch) = v.changed_export(&format!("partial-{graph}"), &case["changes"]);
        let mut kept: Vec<String> = std::fs::read_dir(&folder).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        kept.sort();
        let mut listed = strings(&manifest["graphs"][&graph]["files"]);
        listed.push("manifest.json".into());
        listed.sort();
        assert_eq!(kept, listed, "{graph}: the folder holds other files than the graph's and the manifest");
        let model = Model::load(&folder).unwrap_or_else(|e| panic!("the {graph}-only folder was refused: {e}"));
        let encode = |call: &str| match call {
            "encode_text" => model.encode_text(&texts, true).map(|rows| (rows, v.floats(&export["text_embeds"]))),
            "encode_image" => model.encode_image(&images).map(|rows| (rows, v.floats(&export["image_embeds"]))),
            other => panic!("unknown call {other}"),
        };
        let (actual, expected) = encode(&call).unwrap_or_else(|e| panic!("{graph}-only folder, {call}: {e}"));
        assert_close(export, &actual, &expected, &format!("{graph}-only folder, {call}"));
        let refused = encode(&refuses).err().unwrap_or_else(|| panic!("{graph}-only folder: {refuses} ran without its files"));
        assert_eq!(refused.kind(), ErrorKind::MissingFile, "{refused}");
        let message = refused.message();
        assert!(message.contains(&missing) && message.contains("missing") && !message.contains(['\n', '\r']), "{graph}-only folder, {refuses}: {message}");
        // classify needs both graphs: the command line refuses the folder in one line naming the file, exit 1
        classify_refuses(&images[0], &folder, message, &format!("{graph}-only folder"));
    }
    common::report(&format!("{} partial-folder cases ran, 0 skipped", cases.len()));
}

#[test]
#[ignore = "needs the loopback Hub that python -m pytest tests/test_rust.py serves"]
fn a_corrupted_file_already_in_the_target_folder_is_downloaded_again() {
    let v = with_ort();
    let hub = common::hub();
    let export = v.export();
    let visual = text(&clip_onnx::manifest::read(&export).unwrap()["graphs"]["visual"]["file"]);
    let scratch = Scratch::new("redownload");
    let target = &scratch.0;
    // a same-size corrupted copy of the visual graph where the download puts it
    let flipped = with_a_flipped_byte(v, &export, &visual, &target.join("flipped"));
    std::fs::create_dir_all(target.join("fp32")).unwrap();
    std::fs::rename(flipped.join(&visual), target.join("fp32").join(&visual)).unwrap();
    assert_ne!(std::fs::read(target.join("fp32").join(&visual)).unwrap(), std::fs::read(export.join(&visual)).unwrap());
    let folder = hub::download(hub["repo"].as_str().unwrap(), hub["tag"].as_str().unwrap(), "fp32", target, hub["endpoint"].as_str()).unwrap();
    assert_eq!(std::fs::read(folder.join(&visual)).unwrap(), std::fs::read(export.join(&visual)).unwrap(), "the corrupted file was kept");
    let model = Model::load(&folder).expect("the folder, its corrupted file replaced, loads");
    model.encode_image(&v.paths(&v["images"])[..1]).expect("the visual graph, its corrupted file replaced, runs");
}

#[test]
fn the_tokenizer_loaded_is_the_file_the_manifest_names_and_the_check_covered() {
    let v = with_ort();
    let export = v.export();
    let from = format!("{}/tokenizer.json", text(&v["exports"][0]["folder"]));
    // the transformer's list of files names the renamed tokenizer too
    let listed = strings(&clip_onnx::manifest::read(&export).unwrap()["graphs"]["transformer"]["files"]);
    let renamed: Vec<String> = listed.iter().map(|name| if name == "tokenizer.json" { "clip-tokenizer.json".into() } else { name.clone() }).collect();
    assert_ne!(listed, renamed, "the transformer's files do not list tokenizer.json");
    let (copy, _scratch) = v.changed_export("renamed-tokenizer", &json!([
        {"op": "write", "file": "tokenizer.json", "text": "not the tokenizer the manifest names"},
        {"op": "copy", "file": "clip-tokenizer.json", "from": from},
        {"op": "json", "file": "manifest.json", "path": ["tokenizer", "file"], "value": "clip-tokenizer.json"},
        {"op": "json", "file": "manifest.json", "path": ["graphs", "transformer", "files"], "value": renamed},
        {"op": "rehash", "file": "clip-tokenizer.json"},
        {"op": "json", "file": "manifest.json", "path": ["files", "tokenizer.json"]},
    ]));
    let model = Model::load(&copy).expect("the tokenizer the manifest names is intact");
    let original = Model::load(&export).unwrap();
    let texts = ["a photo of an astronaut", "<b>fish &amp;amp; chips</b>"];
    assert_eq!(model.encode_text(&texts, false).unwrap(), original.encode_text(&texts, false).unwrap());
}
