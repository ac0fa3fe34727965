//! CLIP's tokenizer: the shipped `tokenizer.json` (normalisation, BPE, start and end tokens, padding),
//! after the cleaning it cannot express, `html.unescape(html.unescape(ftfy.fix_text(text)))`: ftfy 6.3.1
//! by the `ftfy` crate of this repository (rust/ftfy, an exact port) and Python's `html.unescape`,
//! ported here exactly (`unescape`).

use std::path::Path;

use tokenizers::Tokenizer;

use crate::entities::HTML5;
use crate::{error, Error, ErrorKind, Result};

pub const TOKENIZER: &str = "tokenizer.json";
/// The ftfy version `clean` cleans texts as (the `ftfy` crate's port): the `tokenizer.ftfy` a manifest may
/// name, since another version's cleaning could give other token ids.
pub const FTFY_VERSION: &str = ftfy::VERSION;

/// CLIP's `basic_clean`: `html.unescape(html.unescape(ftfy.fix_text(text)))`.
pub fn clean(text: &str) -> String {
    unescape(&unescape(&ftfy::fix_text(text)))
}

fn named(name: &str) -> Option<&'static str> {
    HTML5.binary_search_by(|(key, _)| key.as_bytes().cmp(name.as_bytes())).ok().map(|i| HTML5[i].1)
}

/// Python's `html.unescape`, exactly: every match of `&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)`
/// replaced as `html._replace_charref` does (HTML5's named references, with and without `;`, the longest
/// known prefix of an unknown name, Windows-1252 for `&#128;`..`&#159;`, U+FFFD for surrogates and numbers
/// past U+10FFFF, nothing for the code points HTML5 forbids).
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((before, after)) = rest.split_once('&') {
        out.push_str(before);
        match reference(after) {
            Some((replacement, used)) => {
                out.push_str(&replacement);
                rest = &after[used..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The character reference at the start of `s` (the text after an `&`): its replacement and its length in bytes.
fn reference(s: &str) -> Option<(String, usize)> {
    let bytes = s.as_bytes();
    if bytes.first() == Some(&b'#') {
        let (radix, start) = if matches!(bytes.get(1), Some(b'x' | b'X')) { (16, 2) } else { (10, 1) };
        let digits = bytes[start..].iter().take_while(|b| (**b as char).is_digit(radix)).count();
        if digits == 0 {
            return None; // `&#` and `&#x` without digits are left as they are
        }
        // saturated past U+10FFFF, where every number means U+FFFD
        let number = bytes[start..start + digits].iter().fold(0u32, |n, b| (n * radix + (*b as char).to_digit(radix).unwrap_or(0)).min(0x110000));
        let used = start + digits + usize::from(bytes.get(start + digits) == Some(&b';'));
        return Some((ftfy::fixes::charref(number), used));
    }
    // a name: up to 32 characters other than tab, newline, form feed, space, `<`, `&`, `#` and `;`, then an optional `;`
    let mut end = 0;
    for (count, c) in s.chars().enumerate() {
        if count == 32 || matches!(c, '\t' | '\n' | '\x0C' | ' ' | '<' | '&' | '#' | ';') {
            break;
        }
        end += c.len_utf8();
    }
    if end == 0 {
        return None;
    }
    if bytes.get(end) == Some(&b';') {
        end += 1;
    }
    let name = &s[..end];
    if let Some(value) = named(name) {
        return Some((value.to_string(), end));
    }
    // the longest prefix of two or more characters that is a name, the rest kept as it is
    let bounds: Vec<usize> = name.char_indices().map(|(i, _)| i).skip(2).collect();
    for &cut in bounds.iter().rev() {
        if let Some(value) = named(&name[..cut]) {
            return Some((format!("{value}{}", &name[cut..]), end));
        }
    }
    Some((format!("&{name}"), end))
}

/// The folder's `tokenizer.json`.
pub fn load(folder: &Path) -> Result<Tokenizer> {
    load_file(&folder.join(TOKENIZER))
}

/// A tokenizer file (`Model` loads the one its manifest names, the file it checked).
pub fn load_file(path: &Path) -> Result<Tokenizer> {
    if !path.exists() {
        return error(ErrorKind::MissingFile, format!("{}: missing; download it again, beside manifest.json", path.display()));
    }
    Tokenizer::from_file(path).map_err(|e| Error::new(ErrorKind::InvalidInput, format!("{}: not a tokenizer file ({e}); download it again", path.display())))
}

/// `clip.tokenize(texts, truncate)`: int32 ids [N, context_length], zero padded. A text longer than the
/// context is an error unless `truncate`, which keeps its first tokens and the end token.
pub fn encode(tokenizer: &Tokenizer, texts: &[&str], truncate: bool) -> Result<Vec<i32>> {
    let mut ids = Vec::new();
    for text in texts {
        let encoding = tokenizer.encode(clean(text), true).map_err(|e| Error::new(ErrorKind::InvalidInput, format!("text {text:?}: {e}")))?;
        if !encoding.get_overflowing().is_empty() && !truncate {
            let shown: String = text.chars().take(60).collect();
            return error(ErrorKind::TextTooLong, format!("text {shown:?} is longer than {} tokens; shorten it or pass truncate (--truncate)", encoding.len()));
        }
        ids.extend(encoding.get_ids().iter().map(|&id| id as i32));
    }
    Ok(ids)
}
