//! CLIP's image preprocessing exactly as `preprocess.json` writes it down, so the pixels equal those of
//! Pillow and torchvision (`clip_onnx.preprocess` in Python) bit for bit: Pillow's fixed-point bicubic
//! with its pass order, NEAREST for palette and bilevel images, premultiplied alpha, torchvision's crop
//! rounding, RGB conversion after the resize, float32 scaling and normalisation.

use std::path::Path;

use image::{DynamicImage, ImageReader};

use crate::{error, Error, Result};

pub const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];
const PRECISION_BITS: u32 = 22; // Pillow's 8-bit resampling: 32 - 8 - 2

/// An image as Pillow holds it before the resize: interleaved 8-bit channels and the rule its mode follows.
pub struct Pixels {
    pub width: usize,
    pub height: usize,
    pub channels: usize, // 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA)
    pub data: Vec<u8>,
    pub nearest: bool, // palette ("P") and bilevel ("1") images: Pillow resizes them with NEAREST
}

/// The format by the file's first bytes, to name it in errors.
pub fn format(bytes: &[u8]) -> &'static str {
    match bytes {
        [] => "an empty file",
        [0x89, b'P', b'N', b'G', ..] => "PNG",
        [0xff, 0xd8, 0xff, ..] => "JPEG",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "a WebP file",
        [b'G', b'I', b'F', b'8', ..] => "a GIF file",
        [b'I', b'I', b'*', 0, ..] | [b'M', b'M', 0, b'*', ..] => "a TIFF file",
        [b'B', b'M', ..] => "a BMP file",
        _ => "not an image format this crate knows",
    }
}

/// PNG colour type and bit depth from the IHDR chunk, which must come first.
fn png_header(bytes: &[u8]) -> Option<(u8, u8)> {
    (bytes.len() >= 26 && &bytes[12..16] == b"IHDR").then(|| (bytes[25], bytes[24]))
}

/// Decode `path` into the mode Pillow would open it in.
pub fn decode(path: &Path) -> Result<Pixels> {
    let bytes = std::fs::read(path).map_err(|e| Error(format!("image {}: cannot be read ({e}); check the path", path.display())))?;
    let kind = format(&bytes);
    if kind != "PNG" && kind != "JPEG" {
        return error(format!("image {}: {kind}; this crate reads PNG and JPEG: convert it to PNG", path.display()));
    }
    let (colour, depth) = if kind == "PNG" { png_header(&bytes).unwrap_or((2, 8)) } else { (2, 8) };
    if depth == 16 {
        return error(format!("image {}: a 16-bit PNG, which Pillow reads without rescaling; convert it to 8-bit", path.display()));
    }
    let reader = ImageReader::new(std::io::Cursor::new(&bytes)).with_guessed_format().map_err(|e| Error(e.to_string()))?;
    let image = reader
        .decode()
        .map_err(|e| Error(format!("image {}: this {kind} file cannot be decoded ({e}); it may be truncated or damaged", path.display())))?;
    let (width, height) = (image.width() as usize, image.height() as usize);
    // Palette images open as "P" (NEAREST; their transparency is dropped with the palette), 1-bit grey as "1".
    let nearest = kind == "PNG" && (colour == 3 || (colour == 0 && depth == 1));
    let (channels, data) = match image {
        DynamicImage::ImageLuma8(i) => (1, i.into_raw()),
        // grey with a tRNS colour key: Pillow keeps it "L", the key is not an alpha channel
        DynamicImage::ImageLumaA8(i) if colour == 0 => (1, i.into_raw().chunks(2).map(|p| p[0]).collect()),
        DynamicImage::ImageLumaA8(i) => (2, i.into_raw()),
        DynamicImage::ImageRgb8(i) => (3, i.into_raw()),
        DynamicImage::ImageRgba8(i) if colour == 3 => (3, DynamicImage::ImageRgba8(i).to_rgb8().into_raw()),
        // RGB with a tRNS colour key: Pillow keeps it "RGB"
        DynamicImage::ImageRgba8(i) if colour == 2 => (3, DynamicImage::ImageRgba8(i).to_rgb8().into_raw()),
        DynamicImage::ImageRgba8(i) => (4, i.into_raw()),
        other => return error(format!("image {}: pixel format {:?} is not supported; convert it to 8-bit RGB", path.display(), other.color())),
    };
    Ok(Pixels { width, height, channels, data, nearest })
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

/// Pillow's precompute_coeffs and normalize_coeffs_8bpc for one axis: per output sample, its first
/// input sample and integer weights scaled by 2^22, with the C code's float operations in its order.
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i64>)> {
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
            let fixed = weights
                .iter()
                .map(|&w| {
                    let w = (if sum != 0.0 { w / sum } else { w }) * f64::from(1u32 << PRECISION_BITS);
                    (if w < 0.0 { w - 0.5 } else { w + 0.5 }) as i64
                })
                .collect();
            (first, fixed)
        })
        .collect()
}

/// One pass of ImagingResampleHorizontal_8bpc / ImagingResampleVertical_8bpc.
fn bicubic_pass(p: &Pixels, out_size: usize, horizontal: bool) -> Pixels {
    let c = p.channels;
    let (in_size, lines) = if horizontal { (p.width, p.height) } else { (p.height, p.width) };
    let (width, height) = if horizontal { (out_size, p.height) } else { (p.width, out_size) };
    let (along, across) = if horizontal { (c, c * p.width) } else { (c * p.width, c) }; // input steps
    let (out_along, out_across) = if horizontal { (c, c * width) } else { (c * width, c) };
    let mut data = vec![0u8; width * height * c];
    for (i, (first, fixed)) in coefficients(in_size, out_size).iter().enumerate() {
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
    Pixels { width, height, channels: c, data, nearest: p.nearest }
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
    let (xs, ys, c) = (positions(p.width, width), positions(p.height, height), p.channels);
    let mut data = Vec::with_capacity(width * height * c);
    for &y in &ys {
        for &x in &xs {
            data.extend_from_slice(&p.data[(y * p.width + x) * c..][..c]);
        }
    }
    Pixels { width, height, channels: c, data, nearest: true }
}

/// Pillow's RGBA -> RGBa (MULDIV255), or back (RGBa -> RGBA), on the colour channels, in place.
fn premultiply(p: &mut Pixels, divide: bool) {
    let c = p.channels;
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
    if p.nearest {
        return nearest(&p, width, height);
    }
    let alpha = p.channels == 2 || p.channels == 4;
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

/// One image as CLIP's visual input: float32 [3, R, R], CHW.
pub fn preprocess(image: Pixels, resolution: usize) -> Vec<f32> {
    let (w, h) = resized_size(image.width, image.height, resolution);
    let image = resize(image, w, h);
    let (left, top) = (crop_offset(w, resolution), crop_offset(h, resolution));
    let mut out = vec![0f32; 3 * resolution * resolution];
    for channel in 0..3 {
        // L and LA images become RGB by copying their grey; alpha is dropped, not composited
        let source = if image.channels <= 2 { 0 } else { channel };
        for y in 0..resolution {
            for x in 0..resolution {
                let value = image.data[((top + y) * image.width + left + x) * image.channels + source];
                // every step rounded to float32, as numpy and torch compute it (no fused multiply-add)
                out[(channel * resolution + y) * resolution + x] = (f32::from(value) / 255.0 - MEAN[channel]) / STD[channel];
            }
        }
    }
    out
}

/// Image files as one float32 batch [N, 3, R, R].
pub fn load<P: AsRef<Path>>(paths: &[P], resolution: usize) -> Result<Vec<f32>> {
    let mut batch = Vec::with_capacity(paths.len() * 3 * resolution * resolution);
    for path in paths {
        batch.extend(preprocess(decode(path.as_ref())?, resolution));
    }
    Ok(batch)
}
