//! QR code images for TOTP enrolment: turns an `otpauth://` URI into a small
//! 300×300, 1-bit PNG that authenticator apps can scan.
//!
//! This file owns the public API and the renderer: the error type, the finished
//! [`Symbol`], and drawing it as a PNG (whole pixels per module, a four-module quiet
//! zone, fdeflate). The symbol itself comes from `qrcodegen` (byte mode, ECC level M,
//! boosted when free) except for the choice of data mask, which `mask.rs` makes with a
//! faster search proved equal to qrcodegen's own (`mask_proof.rs`); `bits.rs` holds
//! the word-wide row type that search and the renderer share. Pure: no I/O, no clock.

mod bits;
mod mask;
#[cfg(test)]
mod testing;

use std::fmt;

use bits::{set_bits, U192};

/// Width and height of the PNG produced by [`otpauth_png`].
pub(crate) const PNG_SIDE: u32 = 300;

/// Quiet zone required around the symbol, in modules (ISO/IEC 18004 §6.3.8).
const QUIET_ZONE: usize = 4;

/// No QR symbol holds more than 2,953 bytes (version 40-L); refusing longer
/// input early avoids building a huge bit vector only to have it rejected.
const MAX_BYTES: usize = 2953;

/// Words per row in the widest representation: 3 × 64 ≥ 177 modules.
const WORDS: usize = 3;

/// Why an otpauth URI could not be turned into a PNG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QrError {
    /// The text does not fit in a version-40 symbol at ECC level M.
    TooLong { bytes: usize },
    /// The symbol plus its quiet zone needs more pixels than the image has.
    TooSmall { modules: usize, side: u32 },
    /// The PNG encoder failed (not expected when writing to memory).
    Png(String),
}

impl fmt::Display for QrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QrError::TooLong { bytes } => write!(
                f,
                "text of {bytes} bytes does not fit in a QR code at error-correction level M"
            ),
            QrError::TooSmall { modules, side } => write!(
                f,
                "a {modules}-module QR code with its quiet zone does not fit in {side}×{side} pixels"
            ),
            QrError::Png(msg) => write!(f, "PNG encoding failed: {msg}"),
        }
    }
}

impl std::error::Error for QrError {}

/// A finished QR symbol (modules after masking, row by row), ready for
/// [`render_png`].
pub struct Symbol {
    size: usize,
    rows: Vec<[u64; WORDS]>,
}

impl Symbol {
    /// Modules per side (21 to 177).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether the module at column `x`, row `y` is dark; light outside.
    #[cfg(test)]
    pub fn module(&self, x: usize, y: usize) -> bool {
        x < self.size
            && self
                .rows
                .get(y)
                .is_some_and(|r| (r[x / 64] >> (x % 64)) & 1 != 0)
    }
}

/// Renders `text` (an otpauth URI) as a 300×300 1-bit grayscale PNG.
pub fn otpauth_png(text: &str) -> Result<Vec<u8>, QrError> {
    render_png(&encode(text)?)
}

/// Encodes `text` byte for byte with the mask ISO/IEC 18004 prescribes.
pub fn encode(text: &str) -> Result<Symbol, QrError> {
    mask::select(text).map(|(symbol, _, _)| symbol)
}

/// Draws `symbol` as a [`PNG_SIDE`]-square 1-bit PNG: black modules on
/// white, each module the same whole number of pixels (no resampling, so no
/// grey edges for scanners to misjudge), centred, with at least a four-module
/// quiet zone.
pub(crate) fn render_png(symbol: &Symbol) -> Result<Vec<u8>, QrError> {
    render(symbol, PNG_SIDE)
}

fn render(symbol: &Symbol, side: u32) -> Result<Vec<u8>, QrError> {
    let size = symbol.size();
    let side_px = side as usize;
    let scale = side_px / (size + 2 * QUIET_ZONE);
    if scale == 0 {
        return Err(QrError::TooSmall {
            modules: size,
            side,
        });
    }
    let margin = (side_px - scale * size) / 2;
    let stride = side_px.div_ceil(8);
    // 1-bit grayscale, most significant bit first: a set bit is white.
    let mut pixels = vec![0xFF_u8; stride * side_px];
    // One pixel row as big-endian words, plus a spare word so that clearing
    // a span never needs a bounds test.
    let mut line = vec![0u64; side_px.div_ceil(64) + 1];
    // Where each module column lands in `line`: the word holding its first
    // pixel and the masks for that word and the next (enough for scale ≤ 64;
    // wider modules get the rest cleared in a loop).
    let head = scale.min(64);
    let columns: Vec<(usize, u64, u64)> = (0..size)
        .map(|x| {
            let start = margin + x * scale;
            let span = (u128::MAX << (128 - head)) >> (start % 64);
            (start / 64, (span >> 64) as u64, span as u64)
        })
        .collect();
    for (y, row) in symbol.rows.iter().enumerate() {
        line.fill(!0);
        // Module colours are as good as random, so visit only the dark ones
        // rather than branch on every module.
        for x in set_bits(U192(*row)) {
            let (w, first, second) = columns[x];
            line[w] &= !first;
            line[w + 1] &= !second;
            if scale > head {
                for px in margin + x * scale + head..margin + (x + 1) * scale {
                    line[px / 64] &= !(1 << (63 - px % 64));
                }
            }
        }
        let top = margin + y * scale;
        let band = &mut pixels[top * stride..(top + scale) * stride];
        for (bytes, word) in band[..stride].chunks_mut(8).zip(&line) {
            bytes.copy_from_slice(&word.to_be_bytes()[..bytes.len()]);
        }
        // Repeat the pixel row down the band, doubling the copied block.
        let mut filled = stride;
        while filled < band.len() {
            let n = filled.min(band.len() - filled);
            band.copy_within(..n, filled);
            filled += n;
        }
    }

    let png_err = |e: png::EncodingError| QrError::Png(e.to_string());
    let mut out = Vec::with_capacity(4096);
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    // Fastest = fdeflate with the Up filter: repeated pixel rows become zero
    // runs, which is most of what a scaled-up QR code consists of.
    encoder.set_compression(png::Compression::Fastest);
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(&pixels).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::testing::{qrcodegen_with, random_uri, text_for_version, Rng, TYPICAL};
    use super::*;

    fn decode_png(png_bytes: &[u8]) -> image::GrayImage {
        image::load_from_memory_with_format(png_bytes, image::ImageFormat::Png)
            .expect("valid PNG")
            .to_luma8()
    }

    /// Scans the PNG with rqrr and returns the raw payload and mask.
    fn scan(png_bytes: &[u8]) -> (Vec<u8>, u16) {
        let img = decode_png(png_bytes);
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
            img.get_pixel(x as u32, y as u32)[0]
        });
        let grids = prepared.detect_grids();
        assert_eq!(grids.len(), 1, "exactly one QR code found");
        let mut out = Vec::new();
        let meta = grids[0].decode_to(&mut out).expect("rqrr decodes");
        (out, meta.mask)
    }

    fn fixed_uris() -> Vec<String> {
        let mut uris = vec![
            TYPICAL.to_string(),
            "otpauth://totp/ACME%20Co:john.doe%40email.com?secret=HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ&issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30".to_string(),
            "otpauth://totp/%C3%89cole%20%E2%82%AC:%C3%A9l%C3%A8ve?secret=JBSWY3DPEHPK3PXP&issuer=%C3%89cole".to_string(),
            "otpauth://totp/A:b?secret=JBSWY3DPEHPK3PXP".to_string(),
            "HELLO WORLD 0123456789 $%*+-./:".to_string(),
            String::new(),
        ];
        let mut rng = Rng(0x5EED_0001);
        let u300 = random_uri(&mut rng, 300);
        uris.push(u300[..300].to_string());
        let u800 = random_uri(&mut rng, 760);
        uris.push(u800[..800].to_string());
        let u1000 = random_uri(&mut rng, 1000);
        uris.push(u1000[..1000].to_string());
        uris
    }

    #[test]
    fn round_trip_through_png_and_rqrr() {
        for uri in fixed_uris() {
            let png_bytes = otpauth_png(&uri).expect("encodes");
            let (payload, mask) = scan(&png_bytes);
            assert_eq!(payload, uri.as_bytes(), "payload of {} bytes", uri.len());
            let (_, chosen, _) = mask::select(&uri).expect("encodes");
            assert_eq!(mask, u16::from(chosen), "mask read back by rqrr");
        }
    }

    #[test]
    fn png_geometry() {
        let mut rng = Rng(0x5EED_0002);
        let mut uris = fixed_uris();
        uris.push(text_for_version(&mut rng, 40));
        for uri in uris {
            let symbol = encode(&uri).expect("encodes");
            let png_bytes = otpauth_png(&uri).expect("encodes");

            let decoder = png::Decoder::new(std::io::Cursor::new(&png_bytes));
            let reader = decoder.read_info().expect("PNG header");
            let info = reader.info();
            assert_eq!((info.width, info.height), (300, 300));
            assert_eq!(info.bit_depth, png::BitDepth::One);
            assert_eq!(info.color_type, png::ColorType::Grayscale);

            let img = decode_png(&png_bytes);
            let px = |x: usize, y: usize| img.get_pixel(x as u32, y as u32)[0];
            assert!(
                img.pixels().all(|p| p[0] == 0 || p[0] == 255),
                "pure black and white"
            );

            // Find the symbol from the pixels alone: the bounding box of dark.
            let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
            for y in 0..300 {
                for x in 0..300 {
                    if px(x, y) == 0 {
                        (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1));
                    }
                }
            }
            let size = symbol.size();
            // Finder patterns reach every edge of the symbol, so the box is it.
            assert_eq!(x1 - x0, y1 - y0, "square symbol");
            assert_eq!((x1 - x0) % size, 0, "whole pixels per module");
            let scale = (x1 - x0) / size;
            assert_eq!(
                scale,
                300 / (size + 8),
                "largest scale with a 4-module quiet zone"
            );
            assert!(
                x0.min(y0).min(300 - x1).min(300 - y1) >= 4 * scale,
                "quiet zone ≥ 4 modules"
            );
            assert!(
                x0.abs_diff(300 - x1) <= 1 && y0.abs_diff(300 - y1) <= 1,
                "centred"
            );

            let reference = qrcodegen_with(&uri, None);
            for my in 0..size {
                for mx in 0..size {
                    let want = if reference.get_module(mx as i32, my as i32) {
                        0
                    } else {
                        255
                    };
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let (x, y) = (x0 + mx * scale + dx, y0 + my * scale + dy);
                            assert_eq!(px(x, y), want, "module ({mx}, {my}) pixel ({x}, {y})");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn typical_png_is_small() {
        let png_bytes = otpauth_png(TYPICAL).expect("encodes");
        assert!(png_bytes.len() <= 3 * 1024, "{} bytes", png_bytes.len());
    }

    #[test]
    fn rqrr_reads_random_typical_uris() {
        let mut rng = Rng(0x5EED_0006);
        for _ in 0..500 {
            let label_len = 1 + rng.below(40);
            let uri = random_uri(&mut rng, label_len);
            let png_bytes = otpauth_png(&uri).expect("encodes");
            assert_eq!(scan(&png_bytes).0, uri.as_bytes(), "{uri}");
        }
    }

    #[test]
    fn too_long_is_an_error() {
        for len in [2332, 2953, 2954, 100_000] {
            let text = "a".repeat(len);
            assert_eq!(encode(&text).err(), Some(QrError::TooLong { bytes: len }));
            assert!(otpauth_png(&text).is_err());
        }
        // Longest byte string that fits at level M (version 40).
        assert!(encode(&"a".repeat(2331)).is_ok());
        let err = otpauth_png(&"a".repeat(5000)).expect_err("too long");
        assert!(err.to_string().contains("5000 bytes"), "{err}");
    }

    #[test]
    fn too_small_image_is_an_error() {
        let symbol = encode(TYPICAL).expect("encodes");
        let needed = (symbol.size() + 8) as u32;
        assert!(matches!(
            render(&symbol, needed - 1),
            Err(QrError::TooSmall { .. })
        ));
        assert!(render(&symbol, needed).is_ok());
        assert!(render(&symbol, 0).is_err());
    }
}
