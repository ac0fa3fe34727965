//! CLIP's tokenizer: the shipped `tokenizer.json` (normalisation, BPE, start and end tokens, padding),
//! after the cleaning it cannot express. CLIP unescapes HTML twice, as here; ftfy's other repairs
//! (mojibake, curly quotes, ligatures) have no Rust port and are left out: texts that ftfy would change
//! may get other ids than in Python (the file itself applies ftfy's NFC and the whitespace rules).

use std::path::Path;

use tokenizers::Tokenizer;

use crate::{error, Error, Result};

pub const TOKENIZER: &str = "tokenizer.json";

pub fn clean(text: &str) -> String {
    let once = html_escape::decode_html_entities(text);
    html_escape::decode_html_entities(&once).into_owned()
}

pub fn load(folder: &Path) -> Result<Tokenizer> {
    let path = folder.join(TOKENIZER);
    Tokenizer::from_file(&path).map_err(|e| Error(format!("{}: not a tokenizer file ({e}); download it again", path.display())))
}

/// `clip.tokenize(texts, truncate)`: int32 ids [N, context_length], zero padded. A text longer than the
/// context is an error unless `truncate`, which keeps its first tokens and the end token.
pub fn encode(tokenizer: &Tokenizer, texts: &[&str], truncate: bool) -> Result<Vec<i32>> {
    let mut ids = Vec::new();
    for text in texts {
        let encoding = tokenizer.encode(clean(text), true).map_err(|e| Error(format!("text {text:?}: {e}")))?;
        if !encoding.get_overflowing().is_empty() && !truncate {
            let shown: String = text.chars().take(60).collect();
            return error(format!("text {shown:?} is longer than {} tokens; shorten it or pass truncate (--truncate)", encoding.len()));
        }
        ids.extend(encoding.get_ids().iter().map(|&id| id as i32));
    }
    Ok(ids)
}
