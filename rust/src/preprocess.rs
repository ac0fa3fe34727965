//! CLIP's image preprocessing exactly as `preprocess.json` writes it down, so the pixels equal those of
//! Pillow and torchvision (`clip_onnx.preprocess` in Python) bit for bit.
//!
//! preprocess.json is data (`Preprocessing::read`): the resolution, mean and std; the identifier of each
//! rule of the algorithm, which must be exactly those this crate implements (`RULES`, the behaviour below);
//! and what may be read (`input`). Without a model folder, `Preprocessing::default()` is what this crate
//! implements: CLIP's `MEAN` and `STD`, every file it decodes.
//!
//! Decoding: every file a `preprocess.json` lists in `input.formats`, opened in the mode Pillow opens it in:
//! - JPEG through libjpeg-turbo (the decoder in Pillow's wheels; built from source by turbojpeg-sys),
//!   with Pillow's settings, libjpeg's defaults: the accurate integer IDCT and fancy upsampling. Baseline,
//!   progressive, any subsampling; grey opens as "L", CMYK and YCCK as "CMYK" with Adobe's inverted values
//!   (Pillow's "CMYK;I"). A file that ends before its end-of-image marker is refused (`jpeg_ends`).
//! - WebP through libwebp (built from source by libwebp-sys), as Pillow's WebPAnimDecoder: the first
//!   frame, "RGBA" if the file has alpha, else "RGB".
//! - PNG through the image crate at every colour type and bit depth: palette images as "P", 1-bit grey as
//!   "1", 16-bit grey as "I;16", other 16-bit kinds as Pillow unpacks them, by their high bytes.
//! - GIF: the first frame's palette indices (the gif crate) on a canvas of the transparent index, "P"
//!   (a palette of greys 0, 1, 2... is no palette: "L"); transparency is ignored, as Pillow's RGB
//!   conversion ignores it.
//! - BMP, read here, of the bits per pixel and compressions preprocess.json lists (`BMP_BITS`: 1, 8, 24
//!   and 32, 32 as BGRX, the fourth byte ignored; uncompressed);
//!   palettes of black and white or of greys 0, 1, 2... are modes "1" and "L", others "P".
//! - TIFF through the image crate, of the modes and compressions preprocess.json lists (`TIFF_MODES`, 8-bit
//!   RGB or grey; `TIFF_COMPRESSIONS`, uncompressed, LZW, Adobe deflate), judged from the first
//!   directory's tags before decoding.
//!
//! Anything else is refused with `ErrorKind::UnreadableImage`, in one line naming the file, as are
//! truncated or damaged files and images of more than `input.max_pixels` pixels (checked from the header,
//! before decoding). Embedded colour profiles are ignored and EXIF orientation is not applied, as Pillow.
//!
//! Resampling: Pillow's fixed-point bicubic with its pass order (16-bit grey in doubles, Pillow's
//! 16-bit store), NEAREST for palette and bilevel images, premultiplied alpha, torchvision's crop
//! rounding, Pillow's RGB conversion after the resize (CMYK by its cmyk2rgb, 16-bit grey clamped),
//! float32 scaling and normalisation by preprocess.json's mean and std.

use std::ffi::{c_int, CStr};
use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageFormat, ImageReader};
use serde_json::Value;

use crate::{error, Error, ErrorKind, Result};

/// CLIP's normalisation, the `mean` and `std` of every preprocess.json clip-onnx writes: the values of
/// `Preprocessing::default()`, for images preprocessed without a model folder.
pub const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
/// The side of `Preprocessing::default()`: ViT-B/32's input.
pub const RESOLUTION: usize = 224;
const PRECISION_BITS: u32 = 22; // Pillow's 8-bit resampling: 32 - 8 - 2
/// The most pixels (width times height) an image may have: Pillow's decompression-bomb limit at its
/// defaults, the limit every clip-onnx consumer shares (preprocess.json's `input.max_pixels`).
pub const MAX_PIXELS: u64 = 2 * 89_478_485;
/// The formats this crate decodes, by Pillow's names (the keys of preprocess.json's `input.formats`).
pub const FORMATS: [&str; 6] = ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"];
/// Within BMP, the bits per pixel and compressions (Pillow's names) this crate decodes.
pub const BMP_BITS: [u64; 4] = [1, 8, 24, 32];
pub const BMP_COMPRESSIONS: [&str; 1] = ["raw"];
/// Within TIFF, the modes and compressions (Pillow's names) this crate decodes.
pub const TIFF_MODES: [&str; 2] = ["RGB", "L"];
pub const TIFF_COMPRESSIONS: [&str; 3] = ["raw", "tiff_lzw", "tiff_adobe_deflate"];
/// Every rule of the algorithm this crate implements, by the identifier preprocess.json's `rules` gives it
/// (Python's `clip_onnx.preprocess.RULES`; docs/consumers.md#preprocessing-rules says what each means). A
/// file naming another value, another rule, or lacking one of these is refused when read.
pub const RULES: [(&str, &str); 20] = [
    ("orientation", "exif_ignored"),
    ("color_profile", "ignored"),
    ("jpeg_decoder", "libjpeg_turbo_islow_fancy_upsampling"),
    ("webp_decoder", "libwebp"),
    ("gif_frame", "first"),
    ("resize_size", "shorter_edge_floor"),
    ("resize_filter", "pillow_bicubic_antialiased"),
    ("resize_arithmetic", "pillow_fixed_point_22"),
    ("resize_pass_order", "pillow_vertical_first_if_larger_cut"),
    ("resize_same_size", "skipped"),
    ("resize_palette", "nearest"),
    ("resize_alpha", "premultiplied"),
    ("resize_wide", "own_precision_then_clamped"),
    ("crop", "center_round_half_even"),
    ("to_rgb", "pillow_convert_alpha_dropped"),
    ("scale", "float32_divide_255"),
    ("normalize", "float32_subtract_then_divide"),
    ("layout", "NCHW"),
    ("color_order", "RGB"),
    ("dtype", "float32"),
];

/// Pillow's image modes, as far as this crate opens files in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    L,
    LA,
    RGB,
    RGBA,
    CMYK,
    /// A palette image, held here expanded to its RGB colours: resized with NEAREST, as Pillow does.
    P,
    /// Pillow's "1", held as 0 and 255: resized with NEAREST.
    Bilevel,
    /// Pillow's "I;16": 16-bit grey, held as little-endian pairs of bytes.
    I16,
}

impl Mode {
    /// Samples per pixel.
    pub fn channels(self) -> usize {
        match self {
            Mode::L | Mode::Bilevel | Mode::I16 => 1,
            Mode::LA => 2,
            Mode::RGB | Mode::P => 3,
            Mode::RGBA | Mode::CMYK => 4,
        }
    }

    /// Pillow's name of the mode.
    pub fn name(self) -> &'static str {
        match self {
            Mode::L => "L",
            Mode::LA => "LA",
            Mode::RGB => "RGB",
            Mode::RGBA => "RGBA",
            Mode::CMYK => "CMYK",
            Mode::P => "P",
            Mode::Bilevel => "1",
            Mode::I16 => "I;16",
        }
    }

    fn bytes_per_pixel(self) -> usize {
        if self == Mode::I16 { 2 } else { self.channels() }
    }
}

/// An image as Pillow holds it before the resize: interleaved samples in the mode Pillow opened it in.
pub struct Pixels {
    pub width: usize,
    pub height: usize,
    pub mode: Mode,
    pub data: Vec<u8>, // 8-bit samples; for `Mode::I16`, two bytes per pixel, little-endian
}

/// Everything preprocess.json says, as `Preprocessing::read` checks it: the side and normalisation of the
/// pixels, and what may be read (`input.formats`, with BMP's `bits` and `compression` and TIFF's `modes`
/// and `compression`, and `input.max_pixels`). Its `rules` are not kept: a file is read only if they are
/// exactly `RULES`.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessing {
    pub resolution: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub formats: Vec<String>,
    pub bmp_bits: Vec<u64>,
    pub bmp_compressions: Vec<String>,
    pub tiff_modes: Vec<String>,
    pub tiff_compressions: Vec<String>,
    pub max_pixels: u64,
}

impl Default for Preprocessing {
    /// What this crate implements, as Python's `clip_onnx.preprocess` writes it to preprocess.json, at
    /// `RESOLUTION`.
    fn default() -> Preprocessing {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        Preprocessing {
            resolution: RESOLUTION,
            mean: MEAN,
            std: STD,
            formats: strings(&FORMATS),
            bmp_bits: BMP_BITS.to_vec(),
            bmp_compressions: strings(&BMP_COMPRESSIONS),
            tiff_modes: strings(&TIFF_MODES),
            tiff_compressions: strings(&TIFF_COMPRESSIONS),
            max_pixels: MAX_PIXELS,
        }
    }
}

/// A value from a file as JSON writes it, cut short: quoted and escaped, so a message stays one line.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= 80 { text } else { format!("{}...", text.chars().take(77).collect::<String>()) }
}

impl Preprocessing {
    /// The preprocess.json at `path`: a missing file is `MissingFile`, one that is not JSON or has a
    /// malformed key `BadManifest`, and rules other than `RULES` `UnsupportedFormat`, each in one line
    /// naming the file (`Model::load` has checked it against the manifest already).
    pub fn read(path: &Path) -> Result<Preprocessing> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let kind = match e.kind() {
                std::io::ErrorKind::NotFound => ErrorKind::MissingFile,
                std::io::ErrorKind::InvalidData => ErrorKind::BadManifest,
                _ => ErrorKind::InvalidInput,
            };
            Error::new(kind, format!("{}: cannot be read ({e}); download it again, beside manifest.json", path.display()))
        })?;
        let spec: Value = serde_json::from_str(&text)
            .map_err(|e| Error::new(ErrorKind::BadManifest, format!("{}: not valid JSON ({e}); download or export it again", path.display())))?;
        Preprocessing::from_spec(&spec, path)
    }

    /// A parsed preprocess.json; `path` is the file its messages name. Its rules are checked first: a file
    /// of another release may mean other things by its other keys.
    pub fn from_spec(spec: &Value, path: &Path) -> Result<Preprocessing> {
        let path = path.display();
        let malformed = |key: &str, what: &str, value: &Value| {
            Error::new(ErrorKind::BadManifest, format!("{path}: {key} is {}, not {what}; export the variant again", shown(value)))
        };
        if !spec.is_object() {
            return Err(malformed("the file", "a JSON object", spec));
        }
        let rules = spec["rules"].as_object().ok_or_else(|| malformed("rules", "an object of rule names and identifiers", &spec["rules"]))?;
        let upgrade = "upgrade the clip-onnx crate, or use files of a release it reads";
        for (name, value) in rules {
            let Some(&(rule, implemented)) = RULES.iter().find(|(rule, _)| rule == name) else {
                let name = Value::from(name.as_str());
                return error(ErrorKind::UnsupportedFormat, format!("{path}: rule {name} is not one this clip-onnx crate knows; {upgrade}"));
            };
            if value.as_str() != Some(implemented) {
                return error(
                    ErrorKind::UnsupportedFormat,
                    format!("{path}: rule {rule} is {}, which this clip-onnx crate does not implement (it implements {}); {upgrade}", shown(value), Value::from(implemented)),
                );
            }
        }
        if let Some((rule, _)) = RULES.iter().find(|(rule, _)| !rules.contains_key(*rule)) {
            return error(ErrorKind::UnsupportedFormat, format!("{path} lacks rule {rule}; export the variant again with a clip-onnx that writes it"));
        }
        let positive = |key: &str, value: &Value| value.as_u64().filter(|&n| n > 0).ok_or_else(|| malformed(key, "a positive integer", value));
        let resolution = positive("resolution", &spec["resolution"])?;
        let resolution = usize::try_from(resolution).map_err(|_| malformed("resolution", "a positive integer", &spec["resolution"]))?;
        // three finite float32s, one per RGB channel; a std of zero would divide by it
        let channels = |key: &str, nonzero: bool| -> Result<[f32; 3]> {
            let what = if nonzero { "3 finite non-zero numbers (R, G, B)" } else { "3 finite numbers (R, G, B)" };
            let numbers: Option<Vec<f32>> = spec[key].as_array().filter(|a| a.len() == 3).and_then(|a| a.iter().map(|v| v.as_f64().map(|x| x as f32)).collect());
            numbers
                .filter(|n| n.iter().all(|x| x.is_finite() && (!nonzero || *x != 0.0)))
                .map(|n| [n[0], n[1], n[2]])
                .ok_or_else(|| malformed(key, what, &spec[key]))
        };
        let (mean, std) = (channels("mean", false)?, channels("std", true)?);
        let input = &spec["input"];
        if !input.is_object() {
            return Err(malformed("input", "an object", input));
        }
        let formats = input["formats"].as_object().ok_or_else(|| malformed("input.formats", "an object of format names", &input["formats"]))?;
        for (name, kinds) in formats {
            if !kinds.is_object() {
                return Err(malformed(&format!("input.formats.{name}"), "an object", kinds));
            }
        }
        let max_pixels = positive("input.max_pixels", &input["max_pixels"])?;
        // a listed BMP or TIFF says which of its kinds may be read; an unlisted one needs no list
        let list = |format: &str, key: &str, item: &str, check: &dyn Fn(&Value) -> bool| -> Result<Vec<Value>> {
            let Some(kinds) = formats.get(format) else { return Ok(Vec::new()) };
            let value = &kinds[key];
            match value.as_array() {
                Some(items) if items.iter().all(check) => Ok(items.clone()),
                _ => Err(malformed(&format!("input.formats.{format}.{key}"), &format!("a list of {item}"), value)),
            }
        };
        let is_string = |v: &Value| v.is_string();
        let strings = |items: Vec<Value>| items.into_iter().filter_map(|v| v.as_str().map(str::to_string)).collect();
        Ok(Preprocessing {
            resolution,
            mean,
            std,
            formats: formats.keys().cloned().collect(),
            bmp_bits: list("BMP", "bits", "bits per pixel", &|v| v.as_u64().is_some_and(|n| n > 0))?.iter().filter_map(Value::as_u64).collect(),
            bmp_compressions: strings(list("BMP", "compression", "compression names", &is_string)?),
            tiff_modes: strings(list("TIFF", "modes", "mode names", &is_string)?),
            tiff_compressions: strings(list("TIFF", "compression", "compression names", &is_string)?),
            max_pixels,
        })
    }

    fn list(&self) -> String {
        self.formats.join(", ")
    }
}

/// The image format by the file's first bytes, by Pillow's name: those this crate decodes, and a few
/// others Pillow opens, to name them in errors. None for anything else.
pub fn format(bytes: &[u8]) -> Option<&'static str> {
    Some(match bytes {
        [0x89, b'P', b'N', b'G', ..] => "PNG",
        [0xff, 0xd8, 0xff, ..] => "JPEG",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "WEBP",
        [b'G', b'I', b'F', b'8', ..] => "GIF",
        [b'B', b'M', ..] if bytes.len() >= 18 => "BMP",
        [b'I', b'I', b'*', 0, ..] | [b'M', b'M', 0, b'*', ..] => "TIFF",
        [0, 0, 0, 0x0c, b'j', b'P', b' ', b' ', ..] | [0xff, 0x4f, 0xff, 0x51, ..] => "JPEG2000",
        [0, 0, 1, 0, ..] => "ICO",
        [b'P', b'1'..=b'7', b' ' | b'\t' | b'\n' | b'\r', ..] => "PPM",
        [0x0a, 0 | 2 | 3 | 4 | 5, 1, ..] => "PCX",
        _ if bytes.len() >= 18 && &bytes[bytes.len() - 18..bytes.len() - 2] == b"TRUEVISION-XFILE" => "TGA",
        _ => return None,
    })
}

/// Whether a JPEG's markers run from SOI to its EOI marker: a file cut short (its entropy-coded data, or a
/// segment, ending before EOI) does not. Pillow refuses such a file (it ends before libjpeg has read to
/// EOI); libjpeg-turbo alone would fill it in, with a warning that names only the first problem it met.
pub fn jpeg_ends(bytes: &[u8]) -> bool {
    let mut at = 2; // after SOI
    loop {
        // the next marker: 0xFF, fill bytes (more 0xFF) and stray bytes before it skipped, as libjpeg does
        let Some(ff) = bytes.get(at..).and_then(|rest| rest.iter().position(|&b| b == 0xff)) else { return false };
        at += ff;
        let Some(&marker) = bytes.get(at + 1) else { return false };
        match marker {
            0xd9 => return true,
            0xff | 0x00 => at += 1,
            0x01 | 0xd0..=0xd8 => at += 2, // markers without a segment
            _ => {
                let Some(&[high, low]) = bytes.get(at + 2..at + 4) else { return false };
                at += 2 + usize::from(u16::from_be_bytes([high, low]));
                if marker == 0xda {
                    // entropy-coded data runs to the next 0xFF that is neither a stuffed zero nor a restart marker
                    let data = bytes.get(at..).unwrap_or_default();
                    let Some(end) = data.windows(2).position(|w| w[0] == 0xff && !matches!(w[1], 0x00 | 0xd0..=0xd7)) else {
                        return false;
                    };
                    at += end;
                }
            }
        }
    }
}

/// How a decoder failure reads: one line naming the file.
struct Failure<'a> {
    path: &'a Path,
    kind: &'static str,
    max_pixels: u64,
}

impl Failure<'_> {
    fn damaged(&self, why: impl std::fmt::Display) -> Error {
        let why = why.to_string();
        let why = why.lines().next().unwrap_or_default().trim_end_matches('.');
        Error::new(
            ErrorKind::UnreadableImage,
            format!("image {}: this {} file cannot be decoded ({why}); it may be truncated or damaged", self.path.display(), self.kind),
        )
    }

    fn refused(&self, why: impl std::fmt::Display) -> Error {
        Error::new(ErrorKind::UnreadableImage, format!("image {}: {why}", self.path.display()))
    }

    /// The pixel limit, checked from the header before any pixel is decoded.
    fn limit(&self, width: u64, height: u64) -> Result<()> {
        if width * height > self.max_pixels {
            return Err(self.refused(format_args!(
                "is {width} x {height} pixels, more than the {} that preprocess.json's input.max_pixels allows, the limit every clip-onnx consumer shares; resize it first",
                self.max_pixels
            )));
        }
        Ok(())
    }
}

/// Decode `path` into the mode Pillow would open it in, reading what this crate decodes
/// (`Preprocessing::default()`).
pub fn decode(path: &Path) -> Result<Pixels> {
    decode_with(path, &Preprocessing::default())
}

/// Decode `path` into the mode Pillow would open it in, if `preprocessing` lists its format and kind.
pub fn decode_with(path: &Path, preprocessing: &Preprocessing) -> Result<Pixels> {
    let bytes = std::fs::read(path).map_err(|e| {
        let kind = if e.kind() == std::io::ErrorKind::NotFound { ErrorKind::MissingFile } else { ErrorKind::UnreadableImage };
        Error::new(kind, format!("image {}: cannot be read ({e}); check the path", path.display()))
    })?;
    let list = preprocessing.list();
    if bytes.is_empty() {
        return error(ErrorKind::UnreadableImage, format!("image {}: an empty file, not an image; this crate reads {list}", path.display()));
    }
    let Some(kind) = format(&bytes) else {
        return error(
            ErrorKind::UnreadableImage,
            format!("image {}: not an image format this crate reads ({list}, as preprocess.json's input.formats lists): convert it to PNG", path.display()),
        );
    };
    let failure = Failure { path, kind, max_pixels: preprocessing.max_pixels };
    if !preprocessing.formats.iter().any(|f| f == kind) {
        return Err(failure.refused(format_args!("is in the {kind} format; this crate reads {list}: convert it to PNG")));
    }
    if !FORMATS.contains(&kind) {
        return Err(failure.refused(format_args!("is in the {kind} format, which preprocess.json lists but this crate cannot decode: convert it to PNG")));
    }
    match kind {
        "PNG" => png(&bytes, &failure),
        "JPEG" => jpeg(&bytes, &failure),
        "WEBP" => webp(&bytes, &failure),
        "GIF" => gif(&bytes, &failure),
        "BMP" => bmp(&bytes, &failure, preprocessing),
        _ => tiff(&bytes, &failure, preprocessing),
    }
}

/// The image crate's decoder for `format`, within the pixel limit (its own allocation limit lifted: the
/// pixel limit is the one every consumer shares).
fn image_crate(bytes: &[u8], format: ImageFormat, failure: &Failure) -> Result<DynamicImage> {
    let reader = || {
        let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
        reader.no_limits();
        reader
    };
    let (width, height) = reader().into_dimensions().map_err(|e| failure.damaged(e))?;
    failure.limit(u64::from(width), u64::from(height))?;
    reader().decode().map_err(|e| failure.damaged(e))
}

/// The high byte of each big-endian 16-bit sample, as Pillow's unpackers ("RGB;16B", "LA;16B"...) keep it.
fn high_bytes(samples: Vec<u16>) -> Vec<u8> {
    samples.into_iter().map(|v| (v >> 8) as u8).collect()
}

/// The first `keep` of each pixel's `channels` samples: grey without its alpha, or the colours before it.
fn keep<T: Copy>(data: &[T], channels: usize, keep: usize) -> Vec<T> {
    data.chunks_exact(channels).flat_map(|p| p[..keep].iter().copied()).collect()
}

fn png(bytes: &[u8], failure: &Failure) -> Result<Pixels> {
    // colour type and bit depth from the IHDR chunk, which must come first
    let (colour, depth) = if bytes.len() >= 26 && &bytes[12..16] == b"IHDR" { (bytes[25], bytes[24]) } else { return Err(failure.damaged("no IHDR chunk")) };
    let image = image_crate(bytes, ImageFormat::Png, failure)?;
    let (width, height) = (image.width() as usize, image.height() as usize);
    // Palette images open as "P" (their transparency dropped with the palette), 1-bit grey as "1", a tRNS
    // colour key on grey or RGB is no alpha channel to Pillow, 16-bit grey is "I;16", other 16-bit kinds
    // are unpacked by their high bytes.
    let (mode, data) = match image {
        DynamicImage::ImageLuma8(i) => (if depth == 1 { Mode::Bilevel } else { Mode::L }, i.into_raw()),
        DynamicImage::ImageLumaA8(i) if colour == 0 => (if depth == 1 { Mode::Bilevel } else { Mode::L }, keep(&i.into_raw(), 2, 1)),
        DynamicImage::ImageLumaA8(i) => (Mode::LA, i.into_raw()),
        DynamicImage::ImageRgb8(i) => (if colour == 3 { Mode::P } else { Mode::RGB }, i.into_raw()),
        DynamicImage::ImageRgba8(i) if colour == 3 => (Mode::P, keep(&i.into_raw(), 4, 3)),
        DynamicImage::ImageRgba8(i) if colour == 2 => (Mode::RGB, keep(&i.into_raw(), 4, 3)),
        DynamicImage::ImageRgba8(i) => (Mode::RGBA, i.into_raw()),
        DynamicImage::ImageLuma16(i) => (Mode::I16, i.into_raw().into_iter().flat_map(u16::to_le_bytes).collect()),
        DynamicImage::ImageLumaA16(i) if colour == 0 => (Mode::I16, keep(&i.into_raw(), 2, 1).into_iter().flat_map(u16::to_le_bytes).collect()),
        DynamicImage::ImageLumaA16(i) => (Mode::LA, high_bytes(i.into_raw())),
        DynamicImage::ImageRgb16(i) => (Mode::RGB, high_bytes(i.into_raw())),
        DynamicImage::ImageRgba16(i) if colour == 2 => (Mode::RGB, high_bytes(keep(&i.into_raw(), 4, 3))),
        DynamicImage::ImageRgba16(i) => (Mode::RGBA, high_bytes(i.into_raw())),
        other => return Err(failure.damaged(format_args!("pixel format {:?}", other.color()))),
    };
    Ok(Pixels { width, height, mode, data })
}

/// A TurboJPEG decompressor, destroyed when dropped.
struct TurboJpeg(turbojpeg_sys::tjhandle);

impl Drop for TurboJpeg {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once
        unsafe { turbojpeg_sys::tj3Destroy(self.0) }
    }
}

impl TurboJpeg {
    fn message(&self) -> String {
        // SAFETY: tj3GetErrorStr returns a NUL-terminated string owned by the handle
        unsafe { CStr::from_ptr(turbojpeg_sys::tj3GetErrorStr(self.0)) }.to_string_lossy().into_owned()
    }
}

fn jpeg(bytes: &[u8], failure: &Failure) -> Result<Pixels> {
    use turbojpeg_sys as tj;
    if !jpeg_ends(bytes) {
        return Err(failure.refused("this JPEG file ends before its end-of-image marker; it is truncated or damaged"));
    }
    // SAFETY: tj3Init has no preconditions; a null handle is checked
    let handle = TurboJpeg(unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as c_int) });
    if handle.0.is_null() {
        return Err(failure.damaged("libjpeg-turbo could not start"));
    }
    // SAFETY: the buffer is valid for its length; the handle is a decompressor
    if unsafe { tj::tj3DecompressHeader(handle.0, bytes.as_ptr(), bytes.len() as _) } != 0 {
        return Err(failure.damaged(handle.message()));
    }
    // SAFETY: reading parameters of a valid handle
    let get = |parameter: tj::TJPARAM| unsafe { tj::tj3Get(handle.0, parameter as c_int) };
    let (width, height) = (get(tj::TJPARAM_TJPARAM_JPEGWIDTH), get(tj::TJPARAM_TJPARAM_JPEGHEIGHT));
    if width <= 0 || height <= 0 {
        return Err(failure.damaged(format_args!("a size of {width} x {height}")));
    }
    failure.limit(width as u64, height as u64)?;
    // Pillow's modes by the number of components: 1 "L", 3 "RGB", 4 "CMYK" (libjpeg converting YCCK)
    let (mode, pixel_format) = match get(tj::TJPARAM_TJPARAM_COLORSPACE) as tj::TJCS {
        tj::TJCS_TJCS_GRAY => (Mode::L, tj::TJPF_TJPF_GRAY),
        tj::TJCS_TJCS_CMYK | tj::TJCS_TJCS_YCCK => (Mode::CMYK, tj::TJPF_TJPF_CMYK),
        _ => (Mode::RGB, tj::TJPF_TJPF_RGB),
    };
    let (width, height) = (width as usize, height as usize);
    let mut data = vec![0u8; width * height * mode.channels()];
    // The defaults are Pillow's: the accurate integer IDCT (TJPARAM_FASTDCT 0) and fancy upsampling
    // (TJPARAM_FASTUPSAMPLE 0). A warning (libjpeg's "corrupt data" kind) is no error to Pillow either;
    // truncation, the one Pillow refuses, was ruled out above.
    // SAFETY: `data` holds height rows of width pixels of the pixel format; pitch 0 means packed rows
    let decoded = unsafe { tj::tj3Decompress8(handle.0, bytes.as_ptr(), bytes.len() as _, data.as_mut_ptr(), 0, pixel_format) };
    // SAFETY: reading the error code of a valid handle
    if decoded != 0 && unsafe { tj::tj3GetErrorCode(handle.0) } != tj::TJERR_TJERR_WARNING as c_int {
        return Err(failure.damaged(handle.message()));
    }
    if mode == Mode::CMYK {
        // Pillow reads CMYK JPEGs as Adobe writes them, inverted ("CMYK;I")
        data.iter_mut().for_each(|v| *v = 255 - *v);
    }
    Ok(Pixels { width, height, mode, data })
}

/// A libwebp animation decoder, deleted when dropped.
struct WebPDecoder(*mut libwebp_sys::WebPAnimDecoder);

impl Drop for WebPDecoder {
    fn drop(&mut self) {
        // SAFETY: the decoder came from WebPAnimDecoderNew and is deleted once
        unsafe { libwebp_sys::WebPAnimDecoderDelete(self.0) }
    }
}

fn webp(bytes: &[u8], failure: &Failure) -> Result<Pixels> {
    use libwebp_sys as webp;
    // SAFETY: a zeroed struct of integers, filled by WebPGetFeatures from a buffer valid for its length
    let mut features: webp::WebPBitstreamFeatures = unsafe { std::mem::zeroed() };
    let status = unsafe { webp::WebPGetFeatures(bytes.as_ptr(), bytes.len(), &mut features) };
    if status != webp::VP8StatusCode::VP8_STATUS_OK {
        return Err(failure.damaged(format_args!("libwebp: {status:?}")));
    }
    failure.limit(features.width.max(0) as u64, features.height.max(0) as u64)?;
    // Pillow decodes every WebP with WebPAnimDecoder into RGBA, and opens it as "RGB" if it has no alpha
    // SAFETY: options initialised by libwebp; the data outlives the decoder, which copies what it keeps
    let mut options: webp::WebPAnimDecoderOptions = unsafe { std::mem::zeroed() };
    if unsafe { webp::WebPAnimDecoderOptionsInit(&mut options) } == 0 {
        return Err(failure.damaged("libwebp's version differs from its header's"));
    }
    options.color_mode = webp::WEBP_CSP_MODE::MODE_RGBA;
    options.use_threads = 0;
    let data = webp::WebPData { bytes: bytes.as_ptr(), size: bytes.len() };
    let decoder = WebPDecoder(unsafe { webp::WebPAnimDecoderNew(&data, &options) });
    if decoder.0.is_null() {
        return Err(failure.damaged("libwebp cannot parse it"));
    }
    let mut info = webp::WebPAnimInfo::default();
    let mut frame: *mut u8 = std::ptr::null_mut();
    let mut timestamp: c_int = 0;
    // SAFETY: a valid decoder; the frame it returns holds canvas_width * canvas_height RGBA pixels and
    // stays valid until the decoder is deleted, after the copy below
    if unsafe { webp::WebPAnimDecoderGetInfo(decoder.0, &mut info) } == 0 || unsafe { webp::WebPAnimDecoderGetNext(decoder.0, &mut frame, &mut timestamp) } == 0 || frame.is_null() {
        return Err(failure.damaged("libwebp cannot decode its first frame"));
    }
    let (width, height) = (info.canvas_width as usize, info.canvas_height as usize);
    let rgba = unsafe { std::slice::from_raw_parts(frame, width * height * 4) };
    let (mode, data) = if features.has_alpha != 0 { (Mode::RGBA, rgba.to_vec()) } else { (Mode::RGB, keep(rgba, 4, 3)) };
    Ok(Pixels { width, height, mode, data })
}

/// Whether a palette is Pillow's "no palette": the greys 0, 1, 2... in order.
fn grey_ramp(palette: &[[u8; 3]]) -> bool {
    palette.iter().enumerate().all(|(i, c)| c.iter().all(|&v| usize::from(v) == i))
}

/// A palette image's indices as Pillow opens it: "L" if `grey` (its palette no palette to Pillow), else
/// "P", expanded to its colours (an index past the palette black).
fn palette_pixels(width: usize, height: usize, indices: Vec<u8>, palette: &[[u8; 3]], grey: bool) -> Pixels {
    if grey {
        return Pixels { width, height, mode: Mode::L, data: indices };
    }
    let data = indices.iter().flat_map(|&i| palette.get(usize::from(i)).copied().unwrap_or([0; 3])).collect();
    Pixels { width, height, mode: Mode::P, data }
}

fn gif(bytes: &[u8], failure: &Failure) -> Result<Pixels> {
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    let mut decoder = options.read_info(Cursor::new(bytes)).map_err(|e| failure.damaged(e))?;
    let (width, height) = (usize::from(decoder.width()), usize::from(decoder.height()));
    failure.limit(width as u64, height as u64)?;
    let global = decoder.global_palette().map(<[u8]>::to_vec);
    let frame = decoder.read_next_frame().map_err(|e| failure.damaged(e))?.ok_or_else(|| failure.damaged("it has no image"))?;
    // Pillow's first frame: a canvas of the transparent index (else 0), the frame's indices on it
    let mut indices = vec![frame.transparent.unwrap_or(0); width * height];
    let (left, top, w) = (usize::from(frame.left), usize::from(frame.top), usize::from(frame.width));
    for (y, row) in frame.buffer.chunks(w.max(1)).enumerate().filter(|(y, _)| top + y < height) {
        for (x, &index) in row.iter().enumerate().filter(|(x, _)| left + x < width) {
            indices[(top + y) * width + left + x] = index;
        }
    }
    let colours = frame.palette.as_ref().or(global.as_ref()).map(|p| p.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect::<Vec<_>>()).unwrap_or_default();
    Ok(palette_pixels(width, height, indices, &colours, grey_ramp(&colours)))
}

/// Pillow's names of the BMP compression field's values (BmpImagePlugin.COMPRESSIONS, lower case).
fn bmp_compression(code: u32) -> String {
    let name = match code {
        0 => "raw",
        1 => "rle8",
        2 => "rle4",
        3 => "bitfields",
        4 => "jpeg",
        5 => "png",
        _ => return format!("compression {code}"),
    };
    name.to_string()
}

fn bmp(bytes: &[u8], failure: &Failure, preprocessing: &Preprocessing) -> Result<Pixels> {
    let u16_at = |at: usize| bytes.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let truncated = || failure.damaged("image file is truncated");
    let header_size = u32_at(14).ok_or_else(truncated)? as usize;
    if ![12, 40, 52, 56, 64, 108, 124].contains(&header_size) || bytes.len() < 14 + header_size {
        return Err(failure.damaged(format_args!("a BMP header of {header_size} bytes")));
    }
    // sizes signed 32-bit, a negative height meaning top-down rows; the 12-byte OS/2 header's 16-bit
    let core = header_size == 12;
    let (width, stored) = if core {
        (i64::from(u16_at(18).ok_or_else(truncated)?), i64::from(u16_at(20).ok_or_else(truncated)?))
    } else {
        (i64::from(u32_at(18).ok_or_else(truncated)? as i32), i64::from(u32_at(22).ok_or_else(truncated)? as i32))
    };
    let bits = u16_at(if core { 24 } else { 28 }).ok_or_else(truncated)? as usize;
    let compression = bmp_compression(if core { 0 } else { u32_at(30).ok_or_else(truncated)? });
    let colours = match if core { 0 } else { u32_at(46).ok_or_else(truncated)? } {
        0 => 1usize << bits.min(24),
        n => n as usize,
    };
    let (height, top_down) = (stored.unsigned_abs() as usize, stored < 0);
    if width <= 0 || height == 0 {
        return Err(failure.damaged(format_args!("a size of {width} x {stored}")));
    }
    let width = width as usize;
    failure.limit(width as u64, height as u64)?;
    if !preprocessing.bmp_bits.contains(&(bits as u64)) || !preprocessing.bmp_compressions.contains(&compression) {
        let listed: Vec<String> = preprocessing.bmp_bits.iter().map(u64::to_string).collect();
        return Err(failure.refused(format_args!(
            "is a BMP of {bits} bits per pixel with {compression} compression; this crate reads BMP of {} bits per pixel with {} compression (preprocess.json's input.formats.BMP): convert it to PNG",
            listed.join(", "),
            preprocessing.bmp_compressions.join(", ")
        )));
    }
    if !BMP_BITS.contains(&(bits as u64)) || !BMP_COMPRESSIONS.contains(&compression.as_str()) {
        return Err(failure.refused(format_args!(
            "is a BMP of {bits} bits per pixel with {compression} compression, which preprocess.json lists but this crate cannot decode: convert it to PNG"
        )));
    }
    let stride = (width * bits).div_ceil(32) * 4; // rows padded to 4 bytes
    let offset = u32_at(10).ok_or_else(truncated)? as usize;
    if offset.checked_add(stride * height).is_none_or(|end| end > bytes.len()) {
        return Err(truncated());
    }
    let row = |y: usize| &bytes[offset + stride * if top_down { y } else { height - 1 - y }..][..stride];
    if bits >= 24 {
        // BGR, or BGRX with the fourth byte ignored, as Pillow reads a 32-bit BI_RGB file
        let step = bits / 8;
        let data = (0..height).flat_map(|y| row(y).chunks_exact(step).take(width).flat_map(|p| [p[2], p[1], p[0]])).collect();
        return Ok(Pixels { width, height, mode: Mode::RGB, data });
    }
    let entry = if core { 3 } else { 4 };
    let table = bytes.get(14 + header_size..14 + header_size + entry * colours).ok_or_else(truncated)?;
    let palette: Vec<[u8; 3]> = table.chunks_exact(entry).map(|c| [c[2], c[1], c[0]]).collect();
    let indices: Vec<u8> = (0..height)
        .flat_map(|y| (0..width).map(move |x| if bits == 8 { row(y)[x] } else { (row(y)[x / 8] >> (7 - x % 8)) & 1 }))
        .collect();
    // Pillow's BmpImagePlugin: two colours black and white are mode "1", greys 0, 1, 2... mode "L"
    if colours == 2 && palette == [[0; 3], [255; 3]] {
        return Ok(Pixels { width, height, mode: Mode::Bilevel, data: indices.iter().map(|&i| i * 255).collect() });
    }
    Ok(palette_pixels(width, height, indices, &palette, colours != 2 && grey_ramp(&palette)))
}

/// Pillow's names of the TIFF Compression tag's values (TiffImagePlugin.COMPRESSION_INFO).
fn tiff_compression(code: u32) -> String {
    let name = match code {
        1 => "raw",
        2 => "tiff_ccitt",
        3 => "group3",
        4 => "group4",
        5 => "tiff_lzw",
        6 => "tiff_jpeg",
        7 => "jpeg",
        8 => "tiff_adobe_deflate",
        32771 => "tiff_raw_16",
        32773 => "packbits",
        32809 => "tiff_thunderscan",
        32946 => "tiff_deflate",
        34676 => "tiff_sgilog",
        34677 => "tiff_sgilog24",
        34925 => "lzma",
        50000 => "zstd",
        50001 => "webp",
        _ => return format!("compression {code}"),
    };
    name.to_string()
}

/// The mode Pillow opens a TIFF in and its compression, by Pillow's names, from the first directory's
/// tags (photometric interpretation, samples, bits and sample format, compression); an error if a strip
/// or tile of image data lies past the end of the file (libtiff would read a cut one as zeros).
fn tiff_kind(bytes: &[u8]) -> std::result::Result<(String, String), String> {
    let big = bytes[0] == b'M';
    let u16_at = |at: usize| bytes.get(at..at + 2).map(|b| if big { u16::from_be_bytes([b[0], b[1]]) } else { u16::from_le_bytes([b[0], b[1]]) });
    let u32_at = |at: usize| bytes.get(at..at + 4).map(|b| if big { u32::from_be_bytes([b[0], b[1], b[2], b[3]]) } else { u32::from_le_bytes([b[0], b[1], b[2], b[3]]) });
    let truncated = || "image file is truncated".to_string();
    let ifd = u32_at(4).ok_or_else(truncated)? as usize;
    let mut tags = std::collections::HashMap::new();
    for n in 0..usize::from(u16_at(ifd).ok_or_else(truncated)?) {
        let at = ifd + 2 + 12 * n;
        let (tag, kind, count) = (u16_at(at).ok_or_else(truncated)?, u16_at(at + 2).ok_or_else(truncated)?, u32_at(at + 4).ok_or_else(truncated)? as usize);
        if ![258, 259, 262, 273, 277, 279, 324, 325, 339].contains(&tag) {
            continue;
        }
        let size = if kind == 3 { 2 } else { 4 }; // SHORT or LONG, the types of the tags read here
        let start = if count * size <= 4 { at + 8 } else { u32_at(at + 8).ok_or_else(truncated)? as usize };
        let values: Option<Vec<u64>> =
            (0..count).map(|i| if size == 2 { u16_at(start + 2 * i).map(u64::from) } else { u32_at(start + 4 * i).map(u64::from) }).collect();
        tags.insert(tag, values.ok_or_else(|| format!("tag {tag} lies past the end of the file"))?);
    }
    let (offsets, counts) = if tags.contains_key(&273) { (tags.get(&273), tags.get(&279)) } else { (tags.get(&324), tags.get(&325)) };
    let (Some(offsets), Some(counts)) = (offsets, counts) else { return Err(truncated()) };
    if offsets.iter().enumerate().any(|(i, start)| counts.get(i).is_none_or(|count| start + count > bytes.len() as u64)) {
        return Err(truncated());
    }
    let photometric = tags.get(&262).and_then(|v| v.first().copied());
    let samples = tags.get(&277).and_then(|v| v.first().copied()).unwrap_or(1);
    let bits = tags.get(&258).cloned().unwrap_or(vec![1]);
    let eight = bits.iter().all(|&b| b == 8) && tags.get(&339).is_none_or(|f| f.iter().all(|&f| f == 1));
    let mode = match (photometric, samples) {
        (Some(2), 3) if eight => "RGB".to_string(),
        (Some(0 | 1), 1) if eight => "L".to_string(),
        _ => {
            let name = match photometric {
                Some(0 | 1) => "grey".to_string(),
                Some(2) => "RGB".to_string(),
                Some(3) => "palette".to_string(),
                Some(5) => "CMYK".to_string(),
                Some(6) => "YCbCr".to_string(),
                Some(8) => "CIELab".to_string(),
                other => format!("photometric {}", other.map_or("missing".to_string(), |p| p.to_string())),
            };
            let bits: Vec<String> = bits.iter().map(u64::to_string).collect();
            format!("{name} ({samples} × {} bits)", bits.join("/"))
        }
    };
    let code = tags.get(&259).and_then(|v| v.first().copied()).unwrap_or(1);
    Ok((mode, tiff_compression(code as u32)))
}

fn tiff(bytes: &[u8], failure: &Failure, preprocessing: &Preprocessing) -> Result<Pixels> {
    let (mode, compression) = tiff_kind(bytes).map_err(|e| failure.damaged(e))?;
    if !preprocessing.tiff_modes.contains(&mode) || !preprocessing.tiff_compressions.contains(&compression) {
        return Err(failure.refused(format_args!(
            "is a TIFF of mode {mode} with {compression} compression; this crate reads TIFF of mode {} with {} compression (preprocess.json's input.formats.TIFF): convert it to PNG",
            preprocessing.tiff_modes.join(" or "),
            preprocessing.tiff_compressions.join(", ")
        )));
    }
    if !TIFF_MODES.contains(&mode.as_str()) || !TIFF_COMPRESSIONS.contains(&compression.as_str()) {
        return Err(failure.refused(format_args!(
            "is a TIFF of mode {mode} with {compression} compression, which preprocess.json lists but this crate cannot decode: convert it to PNG"
        )));
    }
    let image = image_crate(bytes, ImageFormat::Tiff, failure)?;
    let (width, height) = (image.width() as usize, image.height() as usize);
    let (mode, data) = match image {
        // WhiteIsZero grey comes inverted, as Pillow's "L;I"
        DynamicImage::ImageLuma8(i) if mode == "L" => (Mode::L, i.into_raw()),
        DynamicImage::ImageRgb8(i) if mode == "RGB" => (Mode::RGB, i.into_raw()),
        other => return Err(failure.damaged(format_args!("pixel format {:?}", other.color()))),
    };
    Ok(Pixels { width, height, mode, data })
}

/// torchvision's `Resize(R)`: shorter side to R, the longer floored.
pub fn resized_size(width: usize, height: usize, resolution: usize) -> (usize, usize) {
    if width <= height { (resolution, resolution * height / width) } else { (resolution * width / height, resolution) }
}

/// torchvision's centre crop offset: round((side - R) / 2), halves to even as Python rounds.
pub fn crop_offset(side: usize, resolution: usize) -> usize {
    let d = side - resolution;
    d / 2 + usize::from(d % 4 == 3)
}

fn cubic(x: f64) -> f64 {
    let (a, x) = (-0.5, x.abs());
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// Pillow's precompute_coeffs for one axis: per output sample, its first input sample and its weights
/// normalised in float64, with the C code's float operations in its order.
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let end = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let weights: Vec<f64> = (first..end).map(|j| cubic((j as f64 - center + 0.5) * ss)).collect();
            let sum: f64 = weights.iter().sum();
            (first, weights.iter().map(|&w| if sum != 0.0 { w / sum } else { w }).collect())
        })
        .collect()
}

/// normalize_coeffs_8bpc: the weights as integers scaled by 2^22.
fn fixed_point(weights: &[f64]) -> Vec<i64> {
    weights
        .iter()
        .map(|&w| {
            let w = w * f64::from(1u32 << PRECISION_BITS);
            (if w < 0.0 { w - 0.5 } else { w + 0.5 }) as i64
        })
        .collect()
}

/// Pillow's 16-bit sample store (ImagingResample*_16bpc): ROUND_UP of the float64 sum, then its low and
/// high bytes each clipped to 0..255 on their own.
fn store16(sum: f64) -> [u8; 2] {
    let v = (if sum >= 0.0 { sum + 0.5 } else { sum - 0.5 }) as i64;
    [(v % 256).clamp(0, 255) as u8, (v >> 8).clamp(0, 255) as u8]
}

/// One pass of ImagingResampleHorizontal / ImagingResampleVertical: 8-bit channels in fixed point (sums
/// started at 2^21, shifted right by 22, clamped to 0..255), "I;16" in float64 with `store16`.
fn bicubic_pass(p: &Pixels, out_size: usize, horizontal: bool) -> Pixels {
    let sixteen = p.mode == Mode::I16;
    let c = p.mode.channels();
    let (in_size, lines) = if horizontal { (p.width, p.height) } else { (p.height, p.width) };
    let (width, height) = if horizontal { (out_size, p.height) } else { (p.width, out_size) };
    let (along, across) = if horizontal { (c, c * p.width) } else { (c * p.width, c) }; // input steps
    let (out_along, out_across) = if horizontal { (c, c * width) } else { (c * width, c) };
    let mut data = vec![0u8; width * height * p.mode.bytes_per_pixel()];
    for (i, (first, weights)) in coefficients(in_size, out_size).iter().enumerate() {
        if sixteen {
            for line in 0..lines {
                let base = first * along + line * across;
                let mut sum = 0.0;
                for (j, k) in weights.iter().enumerate() {
                    let at = 2 * (base + j * along);
                    sum += f64::from(u16::from_le_bytes([p.data[at], p.data[at + 1]])) * k;
                }
                let out = 2 * (i * out_along + line * out_across);
                data[out..out + 2].copy_from_slice(&store16(sum));
            }
            continue;
        }
        let fixed = fixed_point(weights);
        for line in 0..lines {
            for channel in 0..c {
                let base = first * along + line * across + channel;
                let mut sum: i64 = 1 << (PRECISION_BITS - 1);
                for (j, k) in fixed.iter().enumerate() {
                    sum += k * i64::from(p.data[base + j * along]);
                }
                data[i * out_along + line * out_across + channel] = (sum >> PRECISION_BITS).clamp(0, 255) as u8;
            }
        }
    }
    Pixels { width, height, mode: p.mode, data }
}

/// Pillow's NEAREST resize (ImagingScaleAffine): source positions accumulated in float64 and truncated.
fn nearest(p: &Pixels, width: usize, height: usize) -> Pixels {
    let positions = |in_size: usize, out_size: usize| {
        let step = in_size as f64 / out_size as f64;
        let mut at = step * 0.5;
        (0..out_size)
            .map(|_| {
                let index = (at as usize).min(in_size - 1);
                at += step;
                index
            })
            .collect::<Vec<_>>()
    };
    let (xs, ys, c) = (positions(p.width, width), positions(p.height, height), p.mode.bytes_per_pixel());
    let mut data = Vec::with_capacity(width * height * c);
    for &y in &ys {
        for &x in &xs {
            data.extend_from_slice(&p.data[(y * p.width + x) * c..][..c]);
        }
    }
    Pixels { width, height, mode: p.mode, data }
}

/// Pillow's RGBA -> RGBa (MULDIV255), or back (RGBa -> RGBA), on the colour channels, in place.
fn premultiply(p: &mut Pixels, divide: bool) {
    let c = p.mode.channels();
    for pixel in p.data.chunks_mut(c) {
        let alpha = u32::from(pixel[c - 1]);
        for value in &mut pixel[..c - 1] {
            let v = u32::from(*value);
            *value = if !divide {
                let t = v * alpha + 128;
                ((t >> 8) + t) >> 8
            } else if alpha != 0 && alpha != 255 {
                (255 * v / alpha).min(255)
            } else {
                v
            } as u8;
        }
    }
}

/// `Image.resize(size, BICUBIC)` as Pillow does it for this mode.
pub fn resize(mut p: Pixels, width: usize, height: usize) -> Pixels {
    if (width, height) == (p.width, p.height) {
        return p;
    }
    if matches!(p.mode, Mode::P | Mode::Bilevel) {
        return nearest(&p, width, height);
    }
    let alpha = matches!(p.mode, Mode::LA | Mode::RGBA);
    if alpha {
        premultiply(&mut p, false);
    }
    let (in_w, in_h) = (p.width as i64, p.height as i64);
    let vertical_first = (height as i64) < in_h && in_h - height as i64 > 2 * (in_w - width as i64);
    let order: [bool; 2] = if vertical_first { [false, true] } else { [true, false] };
    for horizontal in order {
        if horizontal && width != p.width {
            p = bicubic_pass(&p, width, true);
        } else if !horizontal && height != p.height {
            p = bicubic_pass(&p, height, false);
        }
    }
    if alpha {
        premultiply(&mut p, true);
    }
    p
}

/// Pillow's `convert("RGB")` of the pixel at `index`: grey copied, alpha dropped (not composited), CMYK by
/// cmyk2rgb (nk - MULDIV255(c, nk), nk = 255 - K), 16-bit grey clamped to 255.
fn rgb(p: &Pixels, index: usize) -> [u8; 3] {
    let c = p.mode.channels();
    let at = index * p.mode.bytes_per_pixel();
    match p.mode {
        Mode::I16 => [u16::from_le_bytes([p.data[at], p.data[at + 1]]).min(255) as u8; 3],
        Mode::L | Mode::LA | Mode::Bilevel => [p.data[at]; 3],
        Mode::CMYK => {
            let nk = 255 - i32::from(p.data[at + 3]);
            [0, 1, 2].map(|k| {
                let t = i32::from(p.data[at + k]) * nk + 128;
                (nk - (((t >> 8) + t) >> 8)).clamp(0, 255) as u8
            })
        }
        Mode::RGB | Mode::RGBA | Mode::P => {
            debug_assert!(c >= 3);
            [p.data[at], p.data[at + 1], p.data[at + 2]]
        }
    }
}

/// One image as CLIP's visual input: float32 [3, R, R], CHW, at `preprocessing`'s resolution R and
/// normalised by its mean and std.
pub fn preprocess(image: Pixels, preprocessing: &Preprocessing) -> Vec<f32> {
    let Preprocessing { resolution, mean, std, .. } = *preprocessing;
    let (w, h) = resized_size(image.width, image.height, resolution);
    let image = resize(image, w, h);
    let (left, top) = (crop_offset(w, resolution), crop_offset(h, resolution));
    let mut out = vec![0f32; 3 * resolution * resolution];
    for y in 0..resolution {
        for x in 0..resolution {
            let colour = rgb(&image, (top + y) * image.width + left + x);
            for channel in 0..3 {
                // every step rounded to float32, as numpy and torch compute it (no fused multiply-add)
                out[(channel * resolution + y) * resolution + x] = (f32::from(colour[channel]) / 255.0 - mean[channel]) / std[channel];
            }
        }
    }
    out
}

/// Image files as one float32 batch [N, 3, R, R] at `resolution`, as this crate preprocesses without a
/// model folder (`Preprocessing::default()`: CLIP's mean and std, every file it decodes).
pub fn load<P: AsRef<Path>>(paths: &[P], resolution: usize) -> Result<Vec<f32>> {
    load_with(paths, &Preprocessing { resolution, ..Preprocessing::default() })
}

/// Image files as one float32 batch [N, 3, R, R] as `preprocessing` says: its resolution, mean and std,
/// reading what it lists.
pub fn load_with<P: AsRef<Path>>(paths: &[P], preprocessing: &Preprocessing) -> Result<Vec<f32>> {
    let r = preprocessing.resolution;
    let mut batch = Vec::with_capacity(paths.len() * 3 * r * r);
    for path in paths {
        batch.extend(preprocess(decode_with(path.as_ref(), preprocessing)?, preprocessing));
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jpeg_ends_at_its_eoi_marker_and_not_before() {
        // SOI, a segment, SOS with entropy-coded data holding a stuffed 0xFF00 and a restart marker, EOI
        let whole = [0xff, 0xd8, 0xff, 0xe0, 0, 4, 1, 2, 0xff, 0xda, 0, 3, 9, 5, 0xff, 0x00, 6, 0xff, 0xd0, 7, 0xff, 0xd9];
        assert!(jpeg_ends(&whole));
        assert!(jpeg_ends(&[&whole[..], b"trailing bytes"].concat()), "bytes after EOI are ignored");
        for cut in 2..whole.len() {
            assert!(!jpeg_ends(&whole[..cut]), "cut at {cut} was taken for whole");
        }
        let mut huge = whole;
        huge[11] = 0xff; // the SOS segment's length runs past the file
        assert!(!jpeg_ends(&huge[..]));
    }

    #[test]
    fn pillows_16_bit_store_clips_each_byte_on_its_own() {
        assert_eq!(store16(300.4), [44, 1]);
        assert_eq!(store16(-3.0), [0, 0]);
        assert_eq!(store16(70000.0), [112, 255]); // 70000 = 273 * 256 + 112: the high byte clipped
        assert_eq!(store16(2.5), [3, 0]); // ROUND_UP: halves away from zero
    }

    #[test]
    fn cmyk_converts_as_pillows_cmyk2rgb() {
        let p = Pixels { width: 2, height: 1, mode: Mode::CMYK, data: vec![0, 0, 0, 0, 255, 128, 0, 64] };
        assert_eq!(rgb(&p, 0), [255, 255, 255]);
        assert_eq!(rgb(&p, 1), [0, 95, 191]);
    }

    /// preprocess.json as Python's `clip_onnx.preprocess.spec(224)` writes it.
    fn spec() -> Value {
        serde_json::json!({
            "resolution": 224,
            "mean": [0.48145466, 0.4578275, 0.40821073],
            "std": [0.26862954, 0.26130258, 0.27577711],
            "rules": RULES.iter().map(|(rule, value)| (rule.to_string(), Value::from(*value))).collect::<serde_json::Map<_, _>>(),
            "input": {
                "max_pixels": 178956970,
                "formats": {
                    "PNG": {}, "JPEG": {}, "WEBP": {}, "GIF": {},
                    "BMP": {"bits": [1, 8, 24, 32], "compression": ["raw"]},
                    "TIFF": {"modes": ["RGB", "L"], "compression": ["raw", "tiff_lzw", "tiff_adobe_deflate"]},
                },
            },
        })
    }

    const PATH: &str = "/models/fp32/preprocess.json";

    fn refusal(spec: &Value) -> Error {
        Preprocessing::from_spec(spec, Path::new(PATH)).expect_err("the file was read")
    }

    #[test]
    fn the_file_python_writes_reads_as_the_crates_own() {
        let mut own = Preprocessing::default();
        own.formats.sort(); // a JSON object's keys, in serde_json's order
        assert_eq!(Preprocessing::from_spec(&spec(), Path::new(PATH)).unwrap(), own);
    }

    #[test]
    fn every_value_is_the_files() {
        let mut spec = spec();
        spec["resolution"] = 336.into();
        spec["mean"] = serde_json::json!([0.5, 0.25, 0.125]);
        spec["std"] = serde_json::json!([2, 4, 8]);
        spec["input"] = serde_json::json!({"max_pixels": 100, "formats": {"PNG": {}, "BMP": {"bits": [24], "compression": ["raw"]}, "TIFF": {"modes": ["L"], "compression": ["raw"]}}});
        let read = Preprocessing::from_spec(&spec, Path::new(PATH)).unwrap();
        assert_eq!(read, Preprocessing {
            resolution: 336,
            mean: [0.5, 0.25, 0.125],
            std: [2.0, 4.0, 8.0],
            formats: vec!["BMP".into(), "PNG".into(), "TIFF".into()],
            bmp_bits: vec![24],
            bmp_compressions: vec!["raw".into()],
            tiff_modes: vec!["L".into()],
            tiff_compressions: vec!["raw".into()],
            max_pixels: 100,
        });
        // the pixels are normalised by the file's mean and std: a white 1 x 1 image at R = 1
        let white = Pixels { width: 1, height: 1, mode: Mode::L, data: vec![255] };
        assert_eq!(preprocess(white, &Preprocessing { resolution: 1, ..read }), [0.25, 0.1875, 0.109375]);
    }

    #[test]
    fn a_rule_of_another_value_an_unknown_rule_and_a_missing_rule_are_unsupported_formats_in_one_line() {
        let upgrade = "upgrade the clip-onnx crate, or use files of a release it reads";
        let mut other = spec();
        other["rules"]["resize_filter"] = "lanczos".into();
        let mut unknown = spec();
        unknown["rules"]["foo"] = "bar".into();
        let mut odd = spec();
        odd["rules"]["crop\nline"] = "x".into();
        let mut number = spec();
        number["rules"]["dtype"] = 32.into();
        let mut missing = spec();
        missing["rules"].as_object_mut().unwrap().remove("resize_filter");
        for (spec, line) in [
            (other, format!("{PATH}: rule resize_filter is \"lanczos\", which this clip-onnx crate does not implement (it implements \"pillow_bicubic_antialiased\"); {upgrade}")),
            (unknown, format!("{PATH}: rule \"foo\" is not one this clip-onnx crate knows; {upgrade}")),
            (odd, format!("{PATH}: rule \"crop\\nline\" is not one this clip-onnx crate knows; {upgrade}")),
            (number, format!("{PATH}: rule dtype is 32, which this clip-onnx crate does not implement (it implements \"float32\"); {upgrade}")),
            (missing, format!("{PATH} lacks rule resize_filter; export the variant again with a clip-onnx that writes it")),
        ] {
            let refused = refusal(&spec);
            assert_eq!((refused.kind(), refused.message()), (ErrorKind::UnsupportedFormat, line.as_str()));
        }
    }

    #[test]
    fn a_malformed_key_is_a_bad_manifest_naming_it_and_the_file() {
        let cases: [(&str, Value, &str); 17] = [
            ("/rules", Value::Null, "rules is null, not an object of rule names and identifiers"),
            ("/rules", serde_json::json!(["resize_filter"]), "rules is [\"resize_filter\"], not an object"),
            ("/resolution", Value::from(0), "resolution is 0, not a positive integer"),
            ("/resolution", Value::from(224.5), "resolution is 224.5, not a positive integer"),
            ("/resolution", Value::from("224"), "resolution is \"224\", not a positive integer"),
            ("/mean", serde_json::json!([0.5, 0.5]), "mean is [0.5,0.5], not 3 finite numbers (R, G, B)"),
            ("/mean", serde_json::json!([0.5, 0.5, "0.5"]), "mean is [0.5,0.5,\"0.5\"], not 3 finite numbers"),
            ("/mean", serde_json::json!([1e300, 0.5, 0.5]), "mean is [1e+300,0.5,0.5], not 3 finite numbers"),
            ("/std", serde_json::json!([0.5, 0, 0.5]), "std is [0.5,0,0.5], not 3 finite non-zero numbers"),
            ("/std", Value::Null, "std is null, not 3 finite non-zero numbers"),
            ("/input", Value::from(1), "input is 1, not an object"),
            ("/input/formats", serde_json::json!(["PNG"]), "input.formats is [\"PNG\"], not an object of format names"),
            ("/input/formats/PNG", Value::from("every kind"), "input.formats.PNG is \"every kind\", not an object"),
            ("/input/max_pixels", Value::from(-1), "input.max_pixels is -1, not a positive integer"),
            ("/input/formats/BMP/bits", serde_json::json!(["8"]), "input.formats.BMP.bits is [\"8\"], not a list of bits per pixel"),
            ("/input/formats/TIFF/modes", Value::Null, "input.formats.TIFF.modes is null, not a list of mode names"),
            ("/input/formats/TIFF/compression", serde_json::json!([5]), "input.formats.TIFF.compression is [5], not a list of compression names"),
        ];
        for (pointer, value, says) in cases {
            let mut spec = spec();
            *spec.pointer_mut(pointer).unwrap() = value;
            let refused = refusal(&spec);
            assert_eq!(refused.kind(), ErrorKind::BadManifest, "{refused}");
            assert!(refused.message().starts_with(&format!("{PATH}: {says}")) && refused.message().ends_with("; export the variant again"), "{refused}");
            assert!(!refused.message().contains('\n'), "{refused}");
        }
        let mut long = spec();
        long["mean"] = Value::from(vec![0.5; 100]);
        assert!(refusal(&long).message().len() < 200, "a long value is cut short: {}", refusal(&long));
        assert_eq!(refusal(&Value::from(7)).message(), format!("{PATH}: the file is 7, not a JSON object; export the variant again"));
    }

    #[test]
    fn a_file_that_is_missing_or_not_json_is_refused_naming_it() {
        let folder = std::env::temp_dir().join(format!("clip-onnx-preprocess-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let path = folder.join("preprocess.json");
        assert_eq!(Preprocessing::read(&path).unwrap_err().kind(), ErrorKind::MissingFile);
        std::fs::write(&path, "{\"resolution\": ").unwrap();
        let refused = Preprocessing::read(&path).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::BadManifest);
        assert!(refused.message().starts_with(&format!("{}: not valid JSON (", path.display())), "{refused}");
        std::fs::write(&path, spec().to_string()).unwrap();
        assert_eq!(Preprocessing::read(&path).unwrap().resolution, 224);
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
