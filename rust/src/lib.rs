//! OpenAI CLIP from the ONNX graphs clip-onnx exports and publishes, without Python or PyTorch.
//!
//! ```no_run
//! # fn main() -> clip_onnx::Result<()> {
//! let folder = clip_onnx::hub::download("org/clip-onnx-ViT-B-32", "<commit>", "fp32", std::path::Path::new("models"), None)?;
//! let model = clip_onnx::Model::load(&folder)?; // checks every file's SHA-256 against manifest.json
//! let probabilities = model.classify("cat.png", &["a cat", "a dog"])?;
//! # Ok(()) }
//! ```
//!
//! This example is the one the model cards and docs/consumers.md show (release/cards.py reads it here).
//!
//! Modules, one concern each: `manifest` (the contract file, the files a graph needs, each checked by
//! size and SHA-256), `preprocess` (CLIP's pixels exactly as Pillow computes them, from every image file
//! preprocess.json's `input.formats` lists: PNG, JPEG, WebP, GIF, BMP, TIFF), `tokenize` (CLIP's HTML
//! unescaping and the shipped tokenizer.json), `model` (ONNX Runtime sessions, embeddings, scores), `hub`
//! (a release's files, streamed at a pinned revision and checked).
//!
//! Building needs cmake and a C compiler besides Rust: JPEG is decoded by libjpeg-turbo and WebP by
//! libwebp, the decoders in Pillow's wheels, compiled from the sources the turbojpeg-sys and libwebp-sys
//! crates carry (nasm, where installed, adds libjpeg-turbo's SIMD code; the pixels are the same).
//! Nothing is downloaded at build time.
//!
//! At run time `ORT_DYLIB_PATH` names the libonnxruntime to load, 1.18 or newer (ort's `load-dynamic`:
//! the onnxruntime Python wheel ships one in `onnxruntime/capi/`). The default feature `tls` lets
//! `hub::download` fetch from `https://huggingface.co`; without it (`default-features = false`), plain
//! `http://` mirrors only.
//!
//! The crate's version is the clip-onnx release's: the same tag publishes the Python package, the npm
//! package, this crate and `clip-onnx-ftfy`, the exact port of ftfy 6.3.1 that cleans CLIP's texts.

mod entities;
pub mod hub;
pub mod manifest;
pub mod model;
pub mod preprocess;
pub mod tokenize;

pub use model::Model;

/// Which kind of failure an `Error` is: the same names, for the same bad inputs, as Python's
/// `ClipOnnxError.kind` and the Node consumer's `error.kind` (the conformance artifact's `bad_inputs` table
/// holds all three to it), so a program can branch on the kind in any language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The folder has no manifest.json.
    NotAnExport,
    /// manifest.json is not JSON, or lacks a key the crate reads; or preprocess.json is not JSON, or a key
    /// of it is malformed.
    BadManifest,
    /// manifest.json's format_version is not one this crate reads, or preprocess.json's rules are not the
    /// ones it implements (`preprocess::RULES`).
    UnsupportedFormat,
    /// A file the manifest needs, or an input file, does not exist.
    MissingFile,
    /// A file differs from its size and SHA-256 in the manifest, or is not listed there.
    ChangedFile,
    /// Not an image, a format or kind preprocess.json's `input.formats` does not list, truncated or
    /// damaged, or over its `input.max_pixels` pixels (`preprocess::MAX_PIXELS`).
    UnreadableImage,
    /// A text over the context length, without truncation.
    TextTooLong,
    /// The command line or a call asks for something contradictory or empty.
    Usage,
    /// Any other bad input or environment (a manifest whose `tokenizer.ftfy` is another ftfy than the one
    /// the crate cleans texts as, among them).
    InvalidInput,
}

impl ErrorKind {
    /// Every kind, in the order of the shared vocabulary (`clip_onnx/errors.py` KINDS).
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::NotAnExport,
        ErrorKind::BadManifest,
        ErrorKind::UnsupportedFormat,
        ErrorKind::MissingFile,
        ErrorKind::ChangedFile,
        ErrorKind::UnreadableImage,
        ErrorKind::TextTooLong,
        ErrorKind::Usage,
        ErrorKind::InvalidInput,
    ];

    /// The kind's name, as Python and Node spell it: `not_an_export`, `bad_manifest`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotAnExport => "not_an_export",
            ErrorKind::BadManifest => "bad_manifest",
            ErrorKind::UnsupportedFormat => "unsupported_format",
            ErrorKind::MissingFile => "missing_file",
            ErrorKind::ChangedFile => "changed_file",
            ErrorKind::UnreadableImage => "unreadable_image",
            ErrorKind::TextTooLong => "text_too_long",
            ErrorKind::Usage => "usage",
            ErrorKind::InvalidInput => "invalid_input",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every failure, as one message that names the input and says what to do, and its kind (`kind()`), one of:
///
/// - `not_an_export`: the folder has no manifest.json;
/// - `bad_manifest`: manifest.json is not JSON, or lacks a key the crate reads (graphs, files, tokenizer,
///   preprocessing, logit_scale); preprocess.json is not JSON, or a key of it is malformed;
/// - `unsupported_format`: manifest.json's format_version is not one this crate reads, or preprocess.json
///   names a rule this crate does not implement, one it does not know, or lacks one;
/// - `missing_file`: a file the manifest needs, or an input file, does not exist;
/// - `changed_file`: a file differs from its size and SHA-256 in the manifest, or is not listed there;
/// - `unreadable_image`: not an image, a format not read, truncated or damaged, or too many pixels;
/// - `text_too_long`: a text over the context length, without truncation;
/// - `usage`: the command line or a call asks for something contradictory or empty;
/// - `invalid_input`: any other bad input or environment (a manifest's `tokenizer.ftfy` naming another ftfy).
///
/// Python's `ClipOnnxError.kind` and the Node consumer's `error.kind` use the same names
/// (`ErrorKind::as_str`) for the same bad inputs. Nothing here panics on a bad file. Display is the message.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// An error of `kind` with `message` (one line naming the input and saying what to do).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into() }
    }

    /// Which kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message: one line naming the input and saying what to do.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn error<T>(kind: ErrorKind, message: impl Into<String>) -> Result<T> {
    Err(Error::new(kind, message))
}
