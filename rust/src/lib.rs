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
//! size and SHA-256), `preprocess` (CLIP's pixels exactly as Pillow computes them), `tokenize` (CLIP's
//! HTML unescaping and the shipped tokenizer.json), `model` (ONNX Runtime sessions, embeddings, scores),
//! `hub` (a release's files, streamed at a pinned revision and checked).

mod entities;
pub mod hub;
pub mod manifest;
pub mod model;
pub mod preprocess;
pub mod tokenize;

pub use model::Model;

/// Every failure, as one message that names the input and says what to do. Nothing here panics on a bad file.
#[derive(Debug, Clone, PartialEq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn error<T>(message: impl Into<String>) -> Result<T> {
    Err(Error(message.into()))
}
