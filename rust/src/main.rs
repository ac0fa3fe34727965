//! `clip-onnx classify IMAGE... -m FOLDER --labels "a cat,a dog"`: what the Python `clip-onnx classify`
//! prints, from Rust. `clip-onnx download NAME -o DIR`: one variant of the release this build pins (its
//! release table, `hub::Release`); `clip-onnx download REPO --revision COMMIT -o DIR`: any repo's.
//!
//! Every failure is one line on stderr, `clip-onnx: error: ...`, with nothing on stdout, and exits 2 for a
//! usage error (an unknown or missing argument, a value its option refuses) or 1 for the rest (a folder, a
//! file, an image or a text that cannot be used), as the Python CLI does. Usage errors are found before
//! anything is read; nothing is written by `classify`.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clip_onnx::{hub, Error, ErrorKind, Model};

const HELP: &str = "clip-onnx: OpenAI CLIP from the ONNX folders clip-onnx exports, without Python.

usage:
  clip-onnx classify IMAGE... -m FOLDER --labels \"a cat,a dog\" [--template \"a photo of {}.\"] [--top N] [--truncate] [--no-sha256-check]
  clip-onnx download NAME [--precision fp32|fp16] [--graphs visual,transformer] -o DIR [--endpoint URL]
  clip-onnx download REPO --revision COMMIT_OR_TAG [--precision fp32|fp16] [--graphs visual,transformer] -o DIR [--endpoint URL]

classify prints, per image, its most likely labels with softmax probabilities:
  IMAGE...            PNG or JPEG files
  -m, --model FOLDER  an exported variant (manifest.json, graphs, tokenizer.json, preprocess.json); every
                      file the visual and transformer graphs need is checked against the manifest's SHA-256
                      before it is used
  --labels LABELS     comma-separated labels, e.g. \"a cat,a dog\"
  --template TEXT     the caption made of each label, {} where the label goes (default: the label as is)
  --top N             labels shown per image, 1 or more (default: 5)
  --truncate          cut captions longer than 77 tokens instead of failing
  --no-sha256-check   skip the SHA-256 check (for files already checked)

download fetches one precision of a release at a pinned revision into DIR/PRECISION, checks every file's
size and SHA-256, and prints that folder (--endpoint, else HF_ENDPOINT, else https://huggingface.co):
  NAME                a variant (ViT-B-32) of the release this clip-onnx pins: its Hub repo at the
                      release's tag, every file also checked against the SHA-256 the crate carries (a tag
                      moved on the Hub is refused); a build from a checkout pins no release: give REPO
  REPO --revision R   any Hub repo (org/name) at a commit (what to pin) or a tag, checked against its manifest
  --precision P       fp32 (default) or fp16
  --graphs GRAPHS     comma-separated graphs to fetch the files of, each once, from forward, visual and
                      transformer (default: every graph the release's manifest lists); e.g. transformer
                      alone: the files encode_text needs, without the visual graph's

examples:
  clip-onnx download ViT-B-32 -o models
  clip-onnx download org/clip-onnx-ViT-B-32 --revision v1.0.0 -o models
  clip-onnx download org/clip-onnx-ViT-B-32 --revision v1.0.0 --graphs transformer -o text-models
  clip-onnx classify cat.png dog.jpg -m models/fp32 --labels \"a cat,a dog\" --template \"a photo of {}.\"

ORT_DYLIB_PATH must name libonnxruntime 1.18 or newer (the onnxruntime Python wheel ships one in
onnxruntime/capi/). Exit status: 0 done, 1 an error, 2 a usage error; each error is one line on stderr.";

/// Why the program stops early: a usage error (exit 2), any other error (exit 1, the crate's `Error` with its
/// kind), or stdout closed by its reader (`| head`: exit 141, silently, as the Python CLI does).
enum Stop {
    Usage(String),
    Error(Error),
    ClosedPipe,
}

impl From<Error> for Stop {
    fn from(error: Error) -> Stop {
        match error.kind() {
            ErrorKind::Usage => Stop::Usage(error.message().to_string()),
            _ => Stop::Error(error),
        }
    }
}

fn failed<T>(kind: ErrorKind, message: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Error(Error::new(kind, message)))
}

fn usage<T>(message: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Usage(message.into()))
}

/// A value as Python's repr quotes it, so the messages read as the Python CLI's do.
fn repr(value: &str) -> String {
    if value.contains('\'') && !value.contains('"') {
        format!("\"{value}\"")
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// One command's arguments: its positionals (the command first), its options' values (the last one of an
/// option counts) and its flags.
struct Args {
    positional: Vec<OsString>,
    options: Vec<(&'static str, String)>,
    flags: Vec<&'static str>,
}

/// Options taking a value, each with its other spelling (the first name is the one messages use).
const CLASSIFY_OPTIONS: [&[&str]; 4] = [&["-m", "--model"], &["--labels"], &["--template"], &["--top"]];
const CLASSIFY_FLAGS: [&str; 2] = ["--truncate", "--no-sha256-check"];
const DOWNLOAD_OPTIONS: [&[&str]; 5] = [&["--revision"], &["--precision"], &["--graphs"], &["-o", "--output"], &["--endpoint"]];
/// The graphs a release may hold (clip_onnx/contract.py `GRAPHS`), which `download --graphs` names.
const RELEASE_GRAPHS: [&str; 3] = ["forward", "visual", "transformer"];

/// Parse `argv` (after the command) as argparse would: `--option value` or `--option=value`, a value that
/// looks like an option refused, `--` ending the options, anything unknown refused.
fn parse(argv: &[OsString], options: &[&[&'static str]], flags: &[&'static str]) -> Result<Args, Stop> {
    let mut args = Args { positional: Vec::new(), options: Vec::new(), flags: Vec::new() };
    let mut rest = argv.iter();
    while let Some(arg) = rest.next() {
        let Some(text) = arg.to_str().filter(|a| a.starts_with('-') && *a != "-" && !is_number(a)) else {
            args.positional.push(arg.clone());
            continue;
        };
        if text == "--" {
            args.positional.extend(rest.by_ref().cloned());
            break;
        }
        let (name, inline) = match text.split_once('=') {
            Some((name, value)) if name.starts_with("--") => (name, Some(value)),
            _ => (text, None),
        };
        if let Some(&flag) = flags.iter().find(|&&f| f == name) {
            if let Some(value) = inline {
                return usage(format!("argument {flag}: ignored explicit argument {}", repr(value)));
            }
            args.flags.push(flag);
        } else if let Some(names) = options.iter().find(|names| names.contains(&name)) {
            let shown = names.join("/");
            let value = match inline {
                Some(value) => value.to_string(),
                None => match rest.next() {
                    Some(value) if !value.to_str().is_some_and(|v| v.starts_with('-') && v != "-" && !is_number(v)) => value
                        .to_str()
                        .ok_or_else(|| Stop::Usage(format!("argument {shown}: {} is not valid UTF-8", value.to_string_lossy())))?
                        .to_string(),
                    _ => return usage(format!("argument {shown}: expected one argument")),
                },
            };
            args.options.push((names[0], value));
        } else {
            return usage(format!("unrecognized arguments: {text}"));
        }
    }
    Ok(args)
}

/// A negative number (`-3`, `-.5`, `-2.5`) is a value, not an option: argparse's rule when no option looks like one.
fn is_number(arg: &str) -> bool {
    let Some(number) = arg.strip_prefix('-') else { return false };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
    !number.is_empty() && !fraction.is_empty() && [whole, fraction].iter().all(|part| part.chars().all(|c| c.is_ascii_digit()))
}

impl Args {
    fn get(&self, name: &str) -> Option<&str> {
        self.options.iter().rev().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
    fn flag(&self, name: &str) -> bool {
        self.flags.contains(&name)
    }
}

/// `--top`: a whole number, 1 or more (Python's `whole_number(1)`).
fn top(value: &str) -> Result<usize, Stop> {
    let digits = value.trim();
    let number: i128 = digits
        .strip_prefix('+')
        .unwrap_or(digits)
        .replace('_', "")
        .parse()
        .map_err(|_| Stop::Usage(format!("argument --top: invalid whole number value: {}", repr(value))))?;
    if number < 1 {
        return usage(format!("argument --top: {number} is less than 1"));
    }
    Ok(usize::try_from(number).unwrap_or(usize::MAX))
}

/// `--labels`: comma-separated, each trimmed, blanks dropped; at least one, each once (a label named twice
/// would have its probability split between the two).
fn labels(value: &str) -> Result<Vec<String>, Stop> {
    let labels: Vec<String> = value.split(',').map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
    if labels.is_empty() {
        return usage(format!("argument --labels: {} names no label; give comma-separated labels", repr(value)));
    }
    if let Some(twice) = labels.iter().find(|label| labels.iter().filter(|other| other == label).count() > 1) {
        return usage(format!("argument --labels: {} is named twice; give each label once", repr(twice)));
    }
    Ok(labels)
}

/// `--graphs`: comma-separated, each trimmed, blanks dropped; at least one, each once, each a graph a
/// release may hold (`RELEASE_GRAPHS`).
fn graphs(value: &str) -> Result<Vec<String>, Stop> {
    let graphs: Vec<String> = value.split(',').map(str::trim).filter(|g| !g.is_empty()).map(str::to_string).collect();
    let choices = RELEASE_GRAPHS.map(repr).join(", ");
    if graphs.is_empty() {
        return usage(format!("argument --graphs: {} names no graph; give comma-separated graphs from {choices}", repr(value)));
    }
    if let Some(unknown) = graphs.iter().find(|graph| !RELEASE_GRAPHS.contains(&graph.as_str())) {
        return usage(format!("argument --graphs: invalid choice: {} (choose from {choices})", repr(unknown)));
    }
    if let Some(twice) = graphs.iter().find(|graph| graphs.iter().filter(|other| other == graph).count() > 1) {
        return usage(format!("argument --graphs: {} is named twice; give each graph once", repr(twice)));
    }
    Ok(graphs)
}

/// `--template`: Python's `str.format` with one `{}` field and `{{`, `}}` for literal braces; the text
/// before and after the field.
fn template(value: &str) -> Result<(String, String), Stop> {
    let refused = || {
        Stop::Usage(format!(
            "argument --template: {} must hold {{}} exactly once, where the label goes, and no other {{...}} field; \
             write a literal brace as {{{{ or }}}}",
            repr(value)
        ))
    };
    let (mut before, mut after, mut fields) = (String::new(), String::new(), 0);
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        let literal = match (c, chars.peek()) {
            ('{', Some('{')) | ('}', Some('}')) => {
                chars.next();
                c
            }
            ('{', Some('}')) => {
                chars.next();
                fields += 1;
                continue;
            }
            ('{', _) | ('}', _) => return Err(refused()),
            _ => c,
        };
        if fields == 0 { &mut before } else { &mut after }.push(literal);
    }
    if fields != 1 {
        return Err(refused());
    }
    Ok((before, after))
}

/// argparse's refusal of missing required arguments: every one not `given`, named in one line (then `hint`).
fn required(arguments: &[(&str, bool)], hint: &str) -> Result<(), Stop> {
    let missing: Vec<&str> = arguments.iter().filter(|(_, given)| !given).map(|(name, _)| *name).collect();
    if missing.is_empty() {
        return Ok(());
    }
    usage(format!("the following arguments are required: {}{hint}", missing.join(", ")))
}

fn classify(argv: &[OsString]) -> Result<(), Stop> {
    let args = parse(argv, &CLASSIFY_OPTIONS, &CLASSIFY_FLAGS)?;
    let top = top(args.get("--top").unwrap_or("5"))?;
    let labels = args.get("--labels").map(labels).transpose()?;
    let (before, after) = template(args.get("--template").unwrap_or("{}"))?;
    let images: Vec<PathBuf> = args.positional.iter().map(PathBuf::from).collect();
    required(&[("IMAGE", !images.is_empty()), ("--labels", labels.is_some()), ("-m/--model", args.get("-m").is_some())], "")?;
    let labels = labels.unwrap_or_default();
    let folder = args.get("-m").unwrap_or_default();
    // a path that is no file is refused before the model's files are hashed (seconds for the large variants)
    for image in &images {
        match std::fs::metadata(image) {
            Err(e) => {
                let kind = if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::MissingFile } else { ErrorKind::UnreadableImage };
                return failed(kind, format!("image {}: cannot be read ({e}); check the path", image.display()));
            }
            Ok(meta) if meta.is_dir() => {
                return failed(ErrorKind::UnreadableImage, format!("image {}: is a folder, not an image file; give image files (PNG, JPEG, WebP, GIF, BMP or TIFF)", image.display()))
            }
            Ok(_) => {}
        }
    }
    let model = if args.flag("--no-sha256-check") { Model::load_unchecked(folder) } else { Model::load(folder) }?;
    let captions: Vec<String> = labels.iter().map(|label| format!("{before}{label}{after}")).collect();
    let captions: Vec<&str> = captions.iter().map(String::as_str).collect();
    let probabilities = model.probabilities(&images, &captions, args.flag("--truncate"))?;
    let mut lines = Vec::new();
    for (image, row) in images.iter().zip(probabilities) {
        let mut order: Vec<usize> = (0..labels.len()).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let shown: Vec<String> = order.iter().take(top).map(|&i| format!("{} {:.3}", labels[i], row[i])).collect();
        lines.push(format!("{}: {}", image.display(), shown.join(", ")));
    }
    print(&lines)
}

fn download(argv: &[OsString]) -> Result<(), Stop> {
    let args = parse(argv, &DOWNLOAD_OPTIONS, &[])?;
    let precision = args.get("--precision").unwrap_or("fp32");
    if !["fp32", "fp16"].contains(&precision) {
        return usage(format!("argument --precision: invalid choice: {} (choose from 'fp32', 'fp16')", repr(precision)));
    }
    let graphs = args.get("--graphs").map(graphs).transpose()?.unwrap_or_default();
    if args.positional.len() > 1 {
        return usage(format!("unrecognized arguments: {}", args.positional[1].to_string_lossy()));
    }
    let graphs: Vec<&str> = graphs.iter().map(String::as_str).collect();
    let (revision, output) = (args.get("--revision"), args.get("-o"));
    let target = std::path::Path::new(output.unwrap_or_default());
    let folder = match args.positional.first().map(|r| r.to_string_lossy()) {
        None => {
            return required(
                &[("NAME or REPO", false), ("-o/--output", output.is_some())],
                " (NAME of a variant of the release this build pins, e.g. ViT-B-32; or REPO as org/name with --revision)",
            )
        }
        // a variant name (no '/'): the release this build pins, at its tag, every file checked against its table
        Some(name) if !name.contains('/') => {
            if revision.is_some() {
                return usage(format!(
                    "argument --revision: goes with REPO (org/name); a variant name ({}) downloads the release this build pins, \
                     at its tag: drop --revision, or give REPO as org/name",
                    repr(&name)
                ));
            }
            required(&[("-o/--output", output.is_some())], "")?;
            hub::Release::embedded()?.download(&name, precision, &graphs, target, args.get("--endpoint"))?
        }
        Some(repo) => {
            required(&[("--revision", revision.is_some()), ("-o/--output", output.is_some())], " (REPO as org/name, e.g. org/clip-onnx-ViT-B-32)")?;
            hub::download_graphs(&repo, revision.unwrap_or_default(), precision, &graphs, target, args.get("--endpoint"))?
        }
    };
    print(&[folder.display().to_string()])
}

/// Lines on stdout; a reader that went away (`| head`) stops the program quietly rather than panicking.
fn print(lines: &[String]) -> Result<(), Stop> {
    let mut stdout = std::io::stdout().lock();
    let written = lines.iter().try_for_each(|line| writeln!(stdout, "{line}")).and_then(|()| stdout.flush());
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Stop::ClosedPipe),
        Err(e) => failed(ErrorKind::InvalidInput, format!("stdout: cannot be written ({e})")),
        Ok(()) => Ok(()),
    }
}

fn run(argv: &[OsString]) -> Result<(), Stop> {
    if argv.iter().any(|a| a == "-h" || a == "--help") {
        return print(&[HELP.to_string()]);
    }
    match argv.first().map(|c| c.to_string_lossy()) {
        None => usage("the following arguments are required: COMMAND (classify or download)"),
        Some(command) if command == "classify" => classify(&argv[1..]),
        Some(command) if command == "download" => download(&argv[1..]),
        Some(command) => usage(format!("argument COMMAND: invalid choice: {} (choose from 'classify', 'download')", repr(&command))),
    }
}

/// One line on stderr, whatever the message holds.
fn error_line(message: &str) -> String {
    let flat: Vec<&str> = message.split(['\r', '\n']).map(str::trim).filter(|l| !l.is_empty()).collect();
    format!("clip-onnx: error: {}", flat.join(" "))
}

/// One line on stderr; a closed stderr is no reason to panic.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn main() -> ExitCode {
    // a bug is one line too, never a backtrace: the hook replaces Rust's panic message
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let what = payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        say(&error_line(&format!("internal error{at}: {}; please report it", what.unwrap_or_default())));
    }));
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Ok(result) = std::panic::catch_unwind(|| run(&argv)) else {
        return ExitCode::from(1); // the hook said what
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Stop::ClosedPipe) => ExitCode::from(141),
        Err(Stop::Usage(message)) => {
            say(&format!("{}; see clip-onnx --help", error_line(&message)));
            ExitCode::from(2)
        }
        Err(Stop::Error(error)) => {
            say(&error_line(error.message()));
            ExitCode::from(1)
        }
    }
}
