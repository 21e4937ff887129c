//! QR code images for TOTP enrolment: turns an `otpauth://` URI into a small
//! 300×300, 1-bit PNG that authenticator apps can scan.
//!
//! The symbol itself comes from `qrcodegen` (byte mode, ECC level M, boosted
//! when free). The one thing done by hand is the mask choice. ISO/IEC 18004
//! §7.8.3 requires the encoder to evaluate all eight data masks and keep the
//! one with the lowest penalty (rules N1–N4, §7.8.3.1). `qrcodegen` does that
//! with module-at-a-time loops that cost far more than the encoding itself
//! (over 90% of its time for a typical URI), which would make the setup
//! endpoint needlessly slow. So we encode once with a fixed mask, strip that
//! mask off again (the function-module map depends only on the version), and
//! score all eight candidates with word-wide bit operations on whole rows,
//! treating columns in parallel across the bits of consecutive rows so that
//! no transpose is needed. The scores are exactly
//! `qrcodegen`'s, including its quirks (the area outside the symbol counts as
//! light for the finder-like rule, and 1:1:3:1:1 patterns of any module width
//! count), so the chosen mask — lowest score, ties to the lowest number — and
//! the resulting modules are identical to `qrcodegen`'s automatic choice.

use std::fmt;
use std::ops::{BitAnd, BitOr, BitXor, Not};

use qrcodegen::{Mask, QrCode, QrCodeEcc, QrSegment, Version};

/// Width and height of the PNG produced by [`otpauth_png`].
pub const PNG_SIDE: u32 = 300;

/// Quiet zone required around the symbol, in modules (ISO/IEC 18004 §6.3.8).
const QUIET_ZONE: usize = 4;

/// No QR symbol holds more than 2,953 bytes (version 40-L); refusing longer
/// input early avoids building a huge bit vector only to have it rejected.
const MAX_BYTES: usize = 2953;

/// Words per row in the widest representation: 3 × 64 ≥ 177 modules.
const WORDS: usize = 3;

/// Light rows kept above and below the symbol while scoring, so the
/// finder-like rule can look four modules past the edge without bounds checks.
const PAD: usize = 4;

// Penalty weights of ISO/IEC 18004 Table 11 (as used by qrcodegen).
const N1: u32 = 3;
const N2: u32 = 3;
const N3: u32 = 40;
const N4: u32 = 10;

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
    select(text).map(|(symbol, _, _)| symbol)
}

/// Draws `symbol` as a [`PNG_SIDE`]-square 1-bit PNG: black modules on
/// white, each module the same whole number of pixels (no resampling, so no
/// grey edges for scanners to misjudge), centred, with at least a four-module
/// quiet zone.
pub fn render_png(symbol: &Symbol) -> Result<Vec<u8>, QrError> {
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

/// Encodes `text` and returns the symbol, the chosen mask and the penalty
/// score of every mask.
fn select(text: &str) -> Result<(Symbol, u8, [u32; 8]), QrError> {
    let too_long = QrError::TooLong { bytes: text.len() };
    if text.len() > MAX_BYTES {
        return Err(too_long);
    }
    // Byte mode only: an otpauth URI must come back exactly as given, and a
    // mixed-mode segmentation would buy at most a version for these lengths.
    let segment = QrSegment::make_bytes(text.as_bytes());
    let code = QrCode::encode_segments_advanced(
        &[segment],
        QrCodeEcc::Medium,
        Version::MIN,
        Version::MAX,
        Some(Mask::new(0)),
        true,
    )
    .map_err(|_| too_long)?;
    let size = code.size() as usize;
    // Pick the narrowest row type that holds the symbol: one machine word
    // covers versions 1–11, which includes every ordinary otpauth URI.
    Ok(if size <= 64 {
        Candidates::<u64>::new(&code).select()
    } else if size <= 128 {
        Candidates::<u128>::new(&code).select()
    } else {
        Candidates::<U192>::new(&code).select()
    })
}

/// A row of up to 64·k modules as a bit set; bit x is column x.
trait Line:
    Copy
    + PartialEq
    + BitAnd<Output = Self>
    + BitOr<Output = Self>
    + BitXor<Output = Self>
    + Not<Output = Self>
{
    const ZERO: Self;
    /// Bit x of the result is bit x + k of `self` (0 past the end); 0 < k < 64.
    fn right(self, k: u32) -> Self;
    /// Bit x of the result is bit x − k of `self` (0 before the start); 0 < k < 64.
    fn left(self, k: u32) -> Self;
    fn ones(self) -> u32;
    fn from_words(words: &[u64; WORDS]) -> Self;
    fn to_words(self) -> [u64; WORDS];

    /// Bits lo..hi set.
    fn span(lo: usize, hi: usize) -> Self {
        let mut words = [0u64; WORDS];
        for x in lo..hi.min(64 * WORDS) {
            words[x / 64] |= 1 << (x % 64);
        }
        Self::from_words(&words)
    }
}

impl Line for u64 {
    const ZERO: Self = 0;
    fn right(self, k: u32) -> Self {
        self >> k
    }
    fn left(self, k: u32) -> Self {
        self << k
    }
    fn ones(self) -> u32 {
        self.count_ones()
    }
    fn from_words(words: &[u64; WORDS]) -> Self {
        words[0]
    }
    fn to_words(self) -> [u64; WORDS] {
        [self, 0, 0]
    }
}

impl Line for u128 {
    const ZERO: Self = 0;
    fn right(self, k: u32) -> Self {
        self >> k
    }
    fn left(self, k: u32) -> Self {
        self << k
    }
    fn ones(self) -> u32 {
        self.count_ones()
    }
    fn from_words(words: &[u64; WORDS]) -> Self {
        u128::from(words[0]) | u128::from(words[1]) << 64
    }
    fn to_words(self) -> [u64; WORDS] {
        [self as u64, (self >> 64) as u64, 0]
    }
}

/// Rows of versions 28–40 (129–177 modules).
#[derive(Clone, Copy, PartialEq, Eq)]
struct U192([u64; WORDS]);

impl BitAnd for U192 {
    type Output = Self;
    fn bitand(self, o: Self) -> Self {
        U192([self.0[0] & o.0[0], self.0[1] & o.0[1], self.0[2] & o.0[2]])
    }
}

impl BitOr for U192 {
    type Output = Self;
    fn bitor(self, o: Self) -> Self {
        U192([self.0[0] | o.0[0], self.0[1] | o.0[1], self.0[2] | o.0[2]])
    }
}

impl BitXor for U192 {
    type Output = Self;
    fn bitxor(self, o: Self) -> Self {
        U192([self.0[0] ^ o.0[0], self.0[1] ^ o.0[1], self.0[2] ^ o.0[2]])
    }
}

impl Not for U192 {
    type Output = Self;
    fn not(self) -> Self {
        U192([!self.0[0], !self.0[1], !self.0[2]])
    }
}

impl Line for U192 {
    const ZERO: Self = U192([0; WORDS]);
    fn right(self, k: u32) -> Self {
        let [a, b, c] = self.0;
        U192([a >> k | b << (64 - k), b >> k | c << (64 - k), c >> k])
    }
    fn left(self, k: u32) -> Self {
        let [a, b, c] = self.0;
        U192([a << k, b << k | a >> (64 - k), c << k | b >> (64 - k)])
    }
    fn ones(self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }
    fn from_words(words: &[u64; WORDS]) -> Self {
        U192(*words)
    }
    fn to_words(self) -> [u64; WORDS] {
        self.0
    }
}

/// Column indices of the set bits of `line`.
fn set_bits<L: Line>(line: L) -> impl Iterator<Item = usize> {
    let words = line.to_words();
    (0..WORDS).flat_map(move |i| {
        let mut w = words[i];
        std::iter::from_fn(move || {
            (w != 0).then(|| {
                let bit = w.trailing_zeros() as usize;
                w &= w - 1;
                i * 64 + bit
            })
        })
    })
}

/// Module `i` of a line of `size` modules; the outside counts as light.
fn line_bit<L: Line>(line: L, i: isize, size: usize) -> bool {
    if i < 0 || i as usize >= size {
        return false;
    }
    let i = i as usize;
    (line.to_words()[i / 64] >> (i % 64)) & 1 != 0
}

/// The mask patterns of ISO/IEC 18004 Table 10, with i = row y, j = column x.
const fn mask_bit(mask: usize, x: usize, y: usize) -> bool {
    match mask {
        0 => (x + y).is_multiple_of(2),
        1 => y.is_multiple_of(2),
        2 => x.is_multiple_of(3),
        3 => (x + y).is_multiple_of(3),
        4 => (x / 3 + y / 2).is_multiple_of(2),
        5 => x * y % 2 + x * y % 3 == 0,
        6 => (x * y % 2 + x * y % 3).is_multiple_of(2),
        _ => ((x + y) % 2 + x * y % 3).is_multiple_of(2),
    }
}

/// Every mask repeats vertically with a period dividing 12, so twelve
/// precomputed rows per mask cover any symbol.
const MASK_ROWS: [[[u64; WORDS]; 12]; 8] = mask_rows();

const fn mask_rows() -> [[[u64; WORDS]; 12]; 8] {
    let mut table = [[[0u64; WORDS]; 12]; 8];
    let mut mask = 0;
    while mask < 8 {
        let mut y = 0;
        while y < 12 {
            let mut x = 0;
            while x < 64 * WORDS {
                if mask_bit(mask, x, y) {
                    table[mask][y][x / 64] |= 1 << (x % 64);
                }
                x += 1;
            }
            y += 1;
        }
        mask += 1;
    }
    table
}

/// How the 15 format bits (ISO/IEC 18004 §7.9.1) change when the mask goes
/// from 0 to `mask`. The format word is the BCH(15,5) code word (generator
/// 0x537) of the ECC level and mask, XORed with 0x5412. The code is linear
/// and the XOR cancels out, so the change is the code word of `mask` alone,
/// whatever the ECC level (which boost_ecl may have raised).
fn format_change(mask: usize) -> u32 {
    let data = mask as u32;
    let mut rem = data;
    for _ in 0..10 {
        rem = (rem << 1) ^ ((rem >> 9) * 0x537);
    }
    data << 10 | rem
}

/// (x, y) of the two copies of format bit i, in qrcodegen's layout.
fn format_positions(size: usize) -> [[(usize, usize); 2]; 15] {
    let mut positions = [[(0, 0); 2]; 15];
    for (i, slot) in positions.iter_mut().enumerate() {
        let first = match i {
            0..=5 => (8, i),
            6 => (8, 7),
            7 => (8, 8),
            8 => (7, 8),
            _ => (14 - i, 8),
        };
        let second = if i < 8 {
            (size - 1 - i, 8)
        } else {
            (8, size - 15 + i)
        };
        *slot = [first, second];
    }
    positions
}

/// Centre coordinates of the alignment patterns (ISO/IEC 18004 Annex E),
/// computed as qrcodegen does.
fn alignment_positions(version: usize, size: usize) -> Vec<usize> {
    if version == 1 {
        return Vec::new();
    }
    let count = version / 7 + 2;
    let step = if version == 32 {
        26
    } else {
        (version * 4 + count * 2 + 1) / (count * 2 - 2) * 2
    };
    let mut positions: Vec<usize> = (0..count - 1).map(|i| size - 7 - i * step).collect();
    positions.push(6);
    positions.reverse();
    positions
}

/// Function modules (never masked) of a version: finders with separators,
/// timing, alignment patterns, both format areas with the dark module, and
/// the version areas from version 7 on.
fn function_rows(version: usize, size: usize) -> Vec<[u64; WORDS]> {
    let mut rows = vec![[0u64; WORDS]; size];
    let mut mark = |xs: std::ops::Range<usize>, ys: std::ops::Range<usize>| {
        for row in &mut rows[ys] {
            for x in xs.clone() {
                row[x / 64] |= 1 << (x % 64);
            }
        }
    };
    mark(0..size, 6..7);
    mark(6..7, 0..size);
    mark(0..9, 0..9);
    mark(size - 8..size, 0..9);
    mark(0..9, size - 8..size);
    let centres = alignment_positions(version, size);
    let last = centres.len().saturating_sub(1);
    for (i, &cx) in centres.iter().enumerate() {
        for (j, &cy) in centres.iter().enumerate() {
            // None where the grid of centres meets the three finders.
            let finder_corner = (i, j) == (0, 0) || (i, j) == (0, last) || (i, j) == (last, 0);
            if !finder_corner {
                mark(cx - 2..cx + 3, cy - 2..cy + 3);
            }
        }
    }
    if version >= 7 {
        mark(size - 11..size - 8, 0..6);
        mark(0..6, size - 11..size - 8);
    }
    rows
}

/// Everything needed to produce and score the eight masked variants of one
/// encoded symbol.
struct Candidates<L> {
    size: usize,
    /// Function modules as encoded plus the data modules before masking.
    base: Vec<L>,
    /// Data modules (the ones a mask applies to).
    data: Vec<L>,
    full: L,
    format_at: [[(usize, usize); 2]; 15],
}

impl<L: Line> Candidates<L> {
    /// Takes a symbol encoded with mask 0 and removes that mask again.
    fn new(code: &QrCode) -> Self {
        let size = code.size() as usize;
        let full = L::span(0, size);
        let functions = function_rows(usize::from(code.version().value()), size);
        let mut base = Vec::with_capacity(size);
        let mut data = Vec::with_capacity(size);
        for (y, function) in functions.iter().enumerate() {
            let mut words = [0u64; WORDS];
            for x in 0..size {
                if code.get_module(x as i32, y as i32) {
                    words[x / 64] |= 1 << (x % 64);
                }
            }
            let is_data = !L::from_words(function) & full;
            base.push(L::from_words(&words) ^ (L::from_words(&MASK_ROWS[0][y % 12]) & is_data));
            data.push(is_data);
        }
        Candidates {
            size,
            base,
            data,
            full,
            format_at: format_positions(size),
        }
    }

    /// Writes the symbol with `mask` applied into `grid` (size + 2·PAD rows,
    /// padding rows left light).
    fn fill(&self, mask: usize, grid: &mut [L]) {
        let rows = &mut grid[PAD..PAD + self.size];
        for (y, ((row, base), data)) in rows.iter_mut().zip(&self.base).zip(&self.data).enumerate()
        {
            *row = *base ^ (L::from_words(&MASK_ROWS[mask][y % 12]) & *data);
        }
        // The base carries the format bits for mask 0; flip those that differ.
        let delta = format_change(mask);
        for (i, copies) in self.format_at.iter().enumerate() {
            if (delta >> i) & 1 != 0 {
                for &(x, y) in copies {
                    rows[y] = rows[y] ^ L::span(x, x + 1);
                }
            }
        }
    }

    /// Scores all masks and returns the best symbol, its mask and all scores.
    fn select(&self) -> (Symbol, u8, [u32; 8]) {
        let mut grid = vec![L::ZERO; self.size + 2 * PAD];
        let mut scores = [0u32; 8];
        for (mask, score) in scores.iter_mut().enumerate() {
            self.fill(mask, &mut grid);
            *score = penalty(&grid, self.size, self.full);
        }
        // min_by_key keeps the first minimum: ties go to the lowest mask
        // number, as in qrcodegen.
        let best = scores
            .iter()
            .enumerate()
            .min_by_key(|&(_, score)| score)
            .map_or(0, |(mask, _)| mask);
        self.fill(best, &mut grid);
        let rows = grid[PAD..PAD + self.size]
            .iter()
            .map(|row| row.to_words())
            .collect();
        let symbol = Symbol {
            size: self.size,
            rows,
        };
        (symbol, best as u8, scores)
    }
}

/// Penalty score of a masked symbol (ISO/IEC 18004 §7.8.3.1), computed
/// exactly as qrcodegen's `get_penalty_score` does. `grid` holds the symbol
/// rows between PAD light rows on each side.
fn penalty<L: Line>(grid: &[L], size: usize, full: L) -> u32 {
    let rows = &grid[PAD..PAD + size];
    let mut score = 0;
    let mut dark = 0;

    // Rows: N1 and N3 within each row, N2 between neighbouring rows.
    for &row in rows {
        dark += row.ones();
        score += row_penalty(row, full, size);
    }
    let pairs = L::span(0, size - 1);
    for w in rows.windows(2) {
        let (a, b) = (w[0], w[1]);
        let same_vertically = !(a ^ b);
        let same_horizontally = !(a ^ a.right(1));
        let blocks = same_vertically & same_vertically.right(1) & same_horizontally & pairs;
        score += N2 * blocks.ones();
    }

    // Columns, all at once: bit x of an AND over rows y..y+4 says whether
    // column x has five equal modules starting at row y.
    let (mut prev_dark, mut prev_equal) = (L::ZERO, L::ZERO);
    for y in 0..=size - 5 {
        // g[k] is row y − 4 + k.
        let g = &grid[PAD + y - 4..PAD + y + 8];
        let dark5 = g[4] & g[5] & g[6] & g[7] & g[8];
        let light5 = !(g[4] | g[5] | g[6] | g[7] | g[8]) & full;
        let equal5 = dark5 | light5;
        score += run_score(equal5, equal5 & !prev_equal);
        // Dark runs of six or more starting at row y − 1 (g[3]).
        let starts = prev_dark & dark5 & !g[2];
        let long = widened_candidates(
            starts,
            [g[3], g[2], g[1], g[0]],
            [g[3], g[4], g[5], g[6], g[7], g[8], g[9], g[10], g[11]],
        );
        if long != L::ZERO {
            for x in set_bits(long) {
                let column = |i: isize| {
                    i >= 0
                        && (i as usize) < size
                        && line_bit(grid[PAD + i as usize], x as isize, size)
                };
                score += N3 * widened_finders(column, y - 1);
            }
        }
        prev_dark = dark5;
        prev_equal = equal5;
    }
    // N3 for 1-module patterns down the columns, as in `row_penalty`; the
    // PAD light rows stand in for the outside of the symbol.
    for i in PAD..PAD + size - 6 {
        let g = &grid[i - 4..i + 11];
        let core = g[4] & !g[5] & g[6] & g[7] & g[8] & !g[9] & g[10];
        if core != L::ZERO {
            let near_before = !g[3];
            let far_before = !(g[0] | g[1] | g[2] | g[3]);
            let near_after = !g[11];
            let far_after = !(g[11] | g[12] | g[13] | g[14]);
            score += N3
                * ((core & far_before & near_after).ones()
                    + (core & near_before & far_after).ones());
        }
    }

    // N4: 10 points per full 5% step away from half dark, as qrcodegen
    // computes it (size is odd, so the deviation is never zero).
    let total = (size * size) as i64;
    let deviation = (i64::from(dark) * 20 - total * 10).abs();
    let steps = (deviation + total - 1) / total - 1;
    score + N4 * u32::try_from(steps).unwrap_or(0)
}

/// N1: `windows` marks starts of five equal modules, `starts` those that
/// begin a run. A run of length L ≥ 5 scores 3 + (L − 5), which is its
/// L − 4 windows plus 2 for its start. Dark and light windows are counted
/// together (adjacent window bits always share a colour) because the
/// software popcounts of a baseline x86-64 build are the main cost here.
fn run_score<L: Line>(windows: L, starts: L) -> u32 {
    windows.ones() + (N1 - 1) * starts.ones()
}

/// Narrows `starts` (first modules q of dark runs of six or more) to those
/// that can be the 3n middle of an n ≥ 2 finder-like pattern: a run of
/// exactly 6 with the light 2 / dark 2 neighbours n = 2 needs on both sides,
/// or any run of nine or more (rare). `before[k]` / `after[k]` hold the
/// modules q − k / q + k. This drops the 7-long finder edges and nearly all
/// random runs, keeping the scalar check off the hot path.
fn widened_candidates<L: Line>(starts: L, before: [L; 4], after: [L; 9]) -> L {
    let six = !after[6] & !after[7] & after[8] & !before[2] & before[3];
    let nine_or_more = after[6] & after[7] & after[8];
    starts & (six | nine_or_more)
}

/// N1 and N3 within one row.
fn row_penalty<L: Line>(row: L, full: L, size: usize) -> u32 {
    let light = !row & full;
    let dark5 = row & row.right(1) & row.right(2) & row.right(3) & row.right(4);
    let light5 = light & light.right(1) & light.right(2) & light.right(3) & light.right(4);
    let equal5 = dark5 | light5;
    let mut score = run_score(equal5, equal5 & !equal5.left(1));

    // N3 for 1-module patterns: dark-light-dark×3-light-dark, with four light
    // modules on one side and at least one on the other. Complementing after
    // shifting makes everything beyond the edges light, as in qrcodegen.
    let core = row
        & !row.right(1)
        & row.right(2)
        & row.right(3)
        & row.right(4)
        & !row.right(5)
        & row.right(6);
    if core != L::ZERO {
        let near_before = !row.left(1);
        let far_before = !(row.left(1) | row.left(2) | row.left(3) | row.left(4));
        let near_after = !row.right(7);
        let far_after = !(row.right(7) | row.right(8) | row.right(9) | row.right(10));
        score += N3
            * ((core & far_before & near_after).ones() + (core & near_before & far_after).ones());
    }

    let long = widened_candidates(
        dark5 & dark5.right(1) & !row.left(1),
        [row, row.left(1), row.left(2), row.left(3)],
        [
            row,
            row.right(1),
            row.right(2),
            row.right(3),
            row.right(4),
            row.right(5),
            row.right(6),
            row.right(7),
            row.right(8),
        ],
    );
    if long != L::ZERO {
        for x in set_bits(long) {
            score += N3 * widened_finders(|i| line_bit(row, i, size), x);
        }
    }
    score
}

/// qrcodegen counts finder-like patterns n:n:3n:n:n for every n, not only
/// n = 1 (which the callers count bit-parallel). Given the first module `q`
/// of a dark run of six or more along a line (`dark(i)` is false outside the
/// symbol), returns how many such patterns (0–2) have that run as their 3n
/// middle: one if at least 4n light modules precede the pattern and n follow
/// it, one for the mirror image.
fn widened_finders(dark: impl Fn(isize) -> bool, q: usize) -> u32 {
    let q = q as isize;
    let mut len = 0;
    while dark(q + len) {
        len += 1;
    }
    if len % 3 != 0 {
        return 0;
    }
    let n = len / 3;
    let all_light = |a: isize, b: isize| (a..b).all(|i| !dark(i));
    let all_dark = |a: isize, b: isize| (a..b).all(&dark);
    let core = all_light(q - n, q)
        && all_dark(q - 2 * n, q - n)
        && all_light(q + 3 * n, q + 4 * n)
        && all_dark(q + 4 * n, q + 5 * n);
    if !core {
        return 0;
    }
    let before = |m: isize| all_light(q - 2 * n - m * n, q - 2 * n);
    let after = |m: isize| all_light(q + 5 * n, q + 5 * n + m * n);
    u32::from(before(4) && after(1)) + u32::from(after(4) && before(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPICAL: &str = "otpauth://totp/Storno:user@example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Storno";

    /// xorshift64*: deterministic, dependency-free test input.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick(&mut self, chars: &[u8]) -> char {
            char::from(chars[self.below(chars.len())])
        }
    }

    fn random_uri(rng: &mut Rng, label_len: usize) -> String {
        const ALNUM: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        const LABEL: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789.-_+";
        const PCT: [&str; 6] = ["%40", "%20", "%3A", "%C3%A9", "%E2%82%AC", "%2F"];
        const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        let issuer: String = (0..1 + rng.below(12)).map(|_| rng.pick(ALNUM)).collect();
        let mut label = String::new();
        while label.len() < label_len {
            if rng.below(8) == 0 {
                label.push_str(PCT[rng.below(PCT.len())]);
            } else {
                label.push(rng.pick(LABEL));
            }
        }
        let secret_len = [16, 26, 32, 52, 103][rng.below(5)];
        let secret: String = (0..secret_len).map(|_| rng.pick(B32)).collect();
        let mut uri = format!("otpauth://totp/{issuer}:{label}?secret={secret}&issuer={issuer}");
        if rng.below(2) == 0 {
            uri.push_str("&algorithm=SHA1&digits=6&period=30");
        }
        uri
    }

    fn qrcodegen_with(text: &str, mask: Option<Mask>) -> QrCode {
        QrCode::encode_segments_advanced(
            &[QrSegment::make_bytes(text.as_bytes())],
            QrCodeEcc::Medium,
            Version::MIN,
            Version::MAX,
            mask,
            true,
        )
        .expect("test text fits")
    }

    fn symbol_from(code: &QrCode) -> Symbol {
        let size = code.size() as usize;
        let rows = (0..size)
            .map(|y| {
                let mut w = [0u64; WORDS];
                for x in (0..size).filter(|&x| code.get_module(x as i32, y as i32)) {
                    w[x / 64] |= 1 << (x % 64);
                }
                w
            })
            .collect();
        Symbol { size, rows }
    }

    fn assert_same_modules(ours: &Symbol, code: &QrCode, what: &str) {
        let size = code.size() as usize;
        assert_eq!(ours.size(), size, "{what}: size");
        for y in 0..size {
            for x in 0..size {
                assert_eq!(
                    ours.module(x, y),
                    code.get_module(x as i32, y as i32),
                    "{what}: module ({x}, {y})"
                );
            }
        }
    }

    /// qrcodegen's penalty score of an encoded symbol, the slow way.
    fn reference_penalty(code: &QrCode) -> u32 {
        let size = code.size();
        let grid: Vec<Vec<bool>> = (0..size)
            .map(|y| (0..size).map(|x| code.get_module(x, y)).collect())
            .collect();
        reference_grid_penalty(&grid)
    }

    /// qrcodegen's draw_function_patterns, transcribed: the is-function map.
    fn reference_functions(version: i32) -> Vec<Vec<bool>> {
        let size = version * 4 + 17;
        let mut f = vec![vec![false; size as usize]; size as usize];
        let mut set = |x: i32, y: i32| f[y as usize][x as usize] = true;
        for i in 0..size {
            set(6, i);
            set(i, 6);
        }
        for (cx, cy) in [(3, 3), (size - 4, 3), (3, size - 4)] {
            for dy in -4..=4 {
                for dx in -4..=4 {
                    let (x, y) = (cx + dx, cy + dy);
                    if (0..size).contains(&x) && (0..size).contains(&y) {
                        set(x, y);
                    }
                }
            }
        }
        let pos: Vec<i32> = if version == 1 {
            vec![]
        } else {
            let num = version / 7 + 2;
            let step = if version == 32 {
                26
            } else {
                (version * 4 + num * 2 + 1) / (num * 2 - 2) * 2
            };
            let mut p: Vec<i32> = (0..num - 1).map(|i| size - 7 - i * step).collect();
            p.push(6);
            p.reverse();
            p
        };
        let n = pos.len();
        for i in 0..n {
            for j in 0..n {
                if ![(0, 0), (0, n - 1), (n - 1, 0)].contains(&(i, j)) {
                    for dy in -2..=2 {
                        for dx in -2..=2 {
                            set(pos[i] + dx, pos[j] + dy);
                        }
                    }
                }
            }
        }
        for i in 0..6 {
            set(8, i);
        }
        set(8, 7);
        set(8, 8);
        set(7, 8);
        for i in 9..15 {
            set(14 - i, 8);
        }
        for i in 0..8 {
            set(size - 1 - i, 8);
        }
        for i in 8..15 {
            set(8, size - 15 + i);
        }
        set(8, size - 8);
        if version >= 7 {
            for i in 0..18 {
                let a = size - 11 + i % 3;
                let b = i / 3;
                set(a, b);
                set(b, a);
            }
        }
        f
    }

    /// URI-like text of the greatest length that still fits `version`.
    fn text_for_version(rng: &mut Rng, version: u8) -> String {
        let fits = |len: usize| {
            let seg = QrSegment::make_bytes(&vec![b'a'; len]);
            QrCode::encode_segments_advanced(
                &[seg],
                QrCodeEcc::Medium,
                Version::MIN,
                Version::new(version),
                Some(Mask::new(0)),
                false,
            )
            .is_ok()
        };
        let (mut lo, mut hi) = (0, MAX_BYTES);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let base = random_uri(rng, 1);
        let mut text = base.clone();
        while text.len() < lo {
            text.push(rng.pick(b"abcdefghijklmnopqrstuvwxyz0123456789&=%"));
        }
        text.truncate(lo);
        text
    }

    /// All eight candidate grids and scores, for any size.
    fn all_candidates(code: &QrCode) -> Vec<(Vec<[u64; WORDS]>, u32)> {
        fn run<L: Line>(code: &QrCode) -> Vec<(Vec<[u64; WORDS]>, u32)> {
            let c = Candidates::<L>::new(code);
            let mut grid = vec![L::ZERO; c.size + 2 * PAD];
            (0..8)
                .map(|k| {
                    c.fill(k, &mut grid);
                    let rows = grid[PAD..PAD + c.size]
                        .iter()
                        .map(|r| r.to_words())
                        .collect();
                    (rows, penalty(&grid, c.size, c.full))
                })
                .collect()
        }
        match code.size() {
            ..=64 => run::<u64>(code),
            65..=128 => run::<u128>(code),
            _ => run::<U192>(code),
        }
    }

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
            let (_, chosen, _) = select(&uri).expect("encodes");
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
    fn function_map_matches_qrcodegen_for_every_version() {
        for version in 1..=40 {
            let size = version * 4 + 17;
            let ours = function_rows(version, size);
            let reference = reference_functions(version as i32);
            for y in 0..size {
                for x in 0..size {
                    assert_eq!(
                        (ours[y][x / 64] >> (x % 64)) & 1 != 0,
                        reference[y][x],
                        "version {version} ({x}, {y})"
                    );
                }
            }
        }
    }

    #[test]
    fn format_change_is_independent_of_ecc_level() {
        // qrcodegen's draw_format_bits word for (ECC code, mask).
        let word = |ecl: u32, mask: u32| {
            let data = ecl << 3 | mask;
            let mut rem = data;
            for _ in 0..10 {
                rem = (rem << 1) ^ ((rem >> 9) * 0x537);
            }
            (data << 10 | rem) ^ 0x5412
        };
        for ecl in 0..4 {
            for mask in 0..8 {
                assert_eq!(word(ecl, 0) ^ word(ecl, mask), format_change(mask as usize));
            }
        }
    }

    #[test]
    fn mask_table_matches_formulas() {
        // qrcodegen's apply_mask, verbatim (it works in i32).
        let formula = |k: u8, x: i32, y: i32| match k {
            0 => (x + y) % 2 == 0,
            1 => y % 2 == 0,
            2 => x % 3 == 0,
            3 => (x + y) % 3 == 0,
            4 => (x / 3 + y / 2) % 2 == 0,
            5 => x * y % 2 + x * y % 3 == 0,
            6 => (x * y % 2 + x * y % 3) % 2 == 0,
            _ => ((x + y) % 2 + x * y % 3) % 2 == 0,
        };
        for k in 0..8u8 {
            for y in 0..177 {
                for x in 0..177 {
                    let bit = (MASK_ROWS[usize::from(k)][y % 12][x / 64] >> (x % 64)) & 1 != 0;
                    assert_eq!(bit, formula(k, x as i32, y as i32), "mask {k} ({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn every_mask_of_every_version_matches_qrcodegen() {
        let mut rng = Rng(0x5EED_0003);
        for version in 1..=40u8 {
            let text = text_for_version(&mut rng, version);
            let fixed = qrcodegen_with(&text, Some(Mask::new(0)));
            assert_eq!(fixed.version().value(), version);
            for (k, (rows, score)) in all_candidates(&fixed).into_iter().enumerate() {
                let code = qrcodegen_with(&text, Some(Mask::new(k as u8)));
                let symbol = Symbol {
                    size: fixed.size() as usize,
                    rows,
                };
                assert_same_modules(&symbol, &code, &format!("version {version} mask {k}"));
                assert_eq!(
                    score,
                    reference_penalty(&code),
                    "version {version} mask {k}"
                );
            }
        }
    }

    #[test]
    fn bit_operations_agree_with_reference_on_adversarial_grids() {
        // Random data gives few wide finder-like patterns; planting n:n:3n:n:n
        // patterns (n = 1..4) at random places and orientations exercises
        // the widened-pattern and edge cases of N3 directly.
        let mut rng = Rng(0x5EED_0004);
        for round in 0..300 {
            let size = [21, 41, 57, 61, 65, 97, 125, 129, 177][round % 9];
            let mut grid = vec![vec![false; size]; size];
            for row in grid.iter_mut() {
                for m in row.iter_mut() {
                    *m = rng.below(3) == 0;
                }
            }
            for _ in 0..rng.below(12) {
                let n = 1 + rng.below(4);
                let mut pattern = vec![false; rng.below(4 * n + 1)];
                for (len, colour) in [(n, true), (n, false), (3 * n, true), (n, false), (n, true)] {
                    pattern.extend(std::iter::repeat_n(colour, len));
                }
                pattern.extend(std::iter::repeat_n(false, rng.below(4 * n + 1)));
                if pattern.len() > size {
                    continue;
                }
                let start = rng.below(size - pattern.len() + 1);
                let line = rng.below(size);
                let vertical = rng.below(2) == 0;
                for (i, &c) in pattern.iter().enumerate() {
                    if vertical {
                        grid[start + i][line] = c;
                    } else {
                        grid[line][start + i] = c;
                    }
                }
            }
            let words: Vec<[u64; WORDS]> = grid
                .iter()
                .map(|row| {
                    let mut w = [0u64; WORDS];
                    for x in (0..size).filter(|&x| row[x]) {
                        w[x / 64] |= 1 << (x % 64);
                    }
                    w
                })
                .collect();
            fn score<L: Line>(words: &[[u64; WORDS]], size: usize) -> u32 {
                let mut g = vec![L::ZERO; size + 2 * PAD];
                for (row, w) in g[PAD..].iter_mut().zip(words) {
                    *row = L::from_words(w);
                }
                penalty(&g, size, L::span(0, size))
            }
            let ours = match size {
                ..=64 => score::<u64>(&words, size),
                65..=128 => score::<u128>(&words, size),
                _ => score::<U192>(&words, size),
            };
            let slow = reference_grid_penalty(&grid);
            assert_eq!(ours, slow, "round {round} size {size}");
            if size <= 128 {
                assert_eq!(
                    score::<U192>(&words, size),
                    slow,
                    "U192 path, round {round}"
                );
            }
        }
    }

    /// qrcodegen's get_penalty_score, transcribed module by module.
    fn reference_grid_penalty(grid: &[Vec<bool>]) -> u32 {
        let size = grid.len() as i32;
        let m = |x: i32, y: i32| grid[y as usize][x as usize];
        let mut result = 0i32;
        for transpose in [false, true] {
            for a in 0..size {
                let mut run_color = false;
                let mut run = 0;
                let mut h = [0i32; 7];
                let add = |h: &mut [i32; 7], mut len: i32| {
                    if h[0] == 0 {
                        len += size;
                    }
                    h.copy_within(0..6, 1);
                    h[0] = len;
                };
                let count = |h: &[i32; 7]| {
                    let n = h[1];
                    let core = n > 0 && h[2] == n && h[3] == n * 3 && h[4] == n && h[5] == n;
                    i32::from(core && h[0] >= n * 4 && h[6] >= n)
                        + i32::from(core && h[6] >= n * 4 && h[0] >= n)
                };
                for b in 0..size {
                    let c = if transpose { m(a, b) } else { m(b, a) };
                    if c == run_color {
                        run += 1;
                        if run == 5 {
                            result += 3;
                        } else if run > 5 {
                            result += 1;
                        }
                    } else {
                        add(&mut h, run);
                        if !run_color {
                            result += count(&h) * 40;
                        }
                        run_color = c;
                        run = 1;
                    }
                }
                if run_color {
                    add(&mut h, run);
                    run = 0;
                }
                add(&mut h, run + size);
                result += count(&h) * 40;
            }
        }
        let mut dark = 0;
        for y in 0..size {
            for x in 0..size {
                dark += i32::from(m(x, y));
                if x + 1 < size && y + 1 < size {
                    let c = m(x, y);
                    if c == m(x + 1, y) && c == m(x, y + 1) && c == m(x + 1, y + 1) {
                        result += 3;
                    }
                }
            }
        }
        let total = size * size;
        let k = ((dark * 20 - total * 10).abs() + total - 1) / total - 1;
        (result + k * 10) as u32
    }

    #[test]
    fn chosen_mask_and_modules_equal_qrcodegen_on_random_uris() {
        let mut rng = Rng(0x5EED_0005);
        let mut versions = [0usize; 41];
        let mut boosted = 0;
        let count = 3000;
        for i in 0..count {
            // Mostly enrolment-sized URIs (versions 4–8), then longer labels
            // up to version 40 for the wider row types.
            let label_len = match i % 40 {
                0 => 0,
                1..=25 => 1 + rng.below(40),
                26..=37 => 40 + rng.below(400),
                38 => 440 + rng.below(800),
                _ => 1240 + rng.below(900),
            };
            let mut uri = random_uri(&mut rng, label_len);
            if label_len == 0 {
                // Short texts are the only ones whose ECC level gets boosted
                // above M, which changes the format bits.
                uri.truncate(rng.below(61));
            }
            let (symbol, mask, scores) = select(&uri).expect("fits");
            let auto = qrcodegen_with(&uri, None);
            versions[usize::from(auto.version().value())] += 1;
            boosted += usize::from(auto.error_correction_level() != QrCodeEcc::Medium);
            assert_eq!(mask, auto.mask().value(), "mask for {uri}");
            assert_same_modules(&symbol, &auto, &uri);
            // Spot-check every mask's score against the slow reference on a
            // quarter of the inputs (all of them in release builds).
            if !cfg!(debug_assertions) || i % 4 == 0 {
                for (k, &score) in scores.iter().enumerate() {
                    let code = qrcodegen_with(&uri, Some(Mask::new(k as u8)));
                    assert_eq!(score, reference_penalty(&code), "mask {k} of {uri}");
                }
            }
        }
        let at_least = |lo: usize| versions[lo..].iter().sum::<usize>();
        println!("versions: {versions:?}, ECC boosted above M: {boosted}");
        assert!(boosted >= 20, "boosted ECC level exercised: {boosted}");
        assert!(at_least(7) >= 300, "version ≥ 7 exercised: {versions:?}");
        assert!(at_least(12) >= 100, "u128 rows exercised: {versions:?}");
        assert!(at_least(28) >= 20, "U192 rows exercised: {versions:?}");
        assert!(
            versions[5] + versions[6] >= 500,
            "typical versions: {versions:?}"
        );
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

    #[test]
    #[ignore = "timing print; run with --release -- --ignored --nocapture"]
    fn timing() {
        use std::hint::black_box;
        use std::time::Instant;
        // Best of 50 batches: the machine may be shared.
        let time = |name: &str, f: &dyn Fn() -> usize| {
            let mut best = f64::MAX;
            let mut bytes = 0;
            for _ in 0..50 {
                let start = Instant::now();
                for _ in 0..20 {
                    bytes = black_box(f());
                }
                best = best.min(start.elapsed().as_secs_f64() * 1e6 / 20.0);
            }
            println!("{name:<50} {best:8.2} µs  ({bytes} bytes)");
        };
        let text = black_box(TYPICAL);
        // Warm up caches and clock frequency before the first measurement.
        let warm = Instant::now();
        while warm.elapsed().as_millis() < 300 {
            black_box(otpauth_png(text).map_or(0, |p| p.len()));
        }
        let auto = qrcodegen_with(text, None);
        println!(
            "typical URI: {} bytes, version {}, ECC {:?}, mask {}",
            text.len(),
            auto.version().value(),
            auto.error_correction_level(),
            auto.mask().value()
        );
        time("otpauth_png (fixed mask 0 + bit-parallel search)", &|| {
            otpauth_png(text).map_or(0, |p| p.len())
        });
        time("qrcodegen auto mask + same rendering", &|| {
            let code = qrcodegen_with(text, None);
            render_png(&symbol_from(&code)).map_or(0, |p| p.len())
        });
        time("  encode (ours, no PNG)", &|| {
            encode(text).map_or(0, |s| s.size())
        });
        time("  qrcodegen fixed mask 0 only", &|| {
            qrcodegen_with(text, Some(Mask::new(0))).size() as usize
        });
        time("  qrcodegen auto mask only", &|| {
            qrcodegen_with(text, None).size() as usize
        });
        let symbol = encode(text).expect("encodes");
        time("  render_png only", &|| {
            render_png(&symbol).map_or(0, |p| p.len())
        });
        let mut rng = Rng(7);
        for label in [200, 800] {
            let uri = random_uri(&mut rng, label);
            let v = qrcodegen_with(&uri, None).version().value();
            time(&format!("otpauth_png, {} bytes (v{v})", uri.len()), &|| {
                otpauth_png(&uri).map_or(0, |p| p.len())
            });
            time(
                &format!("qrcodegen auto + render, {} bytes", uri.len()),
                &|| {
                    let code = qrcodegen_with(&uri, None);
                    render_png(&symbol_from(&code)).map_or(0, |p| p.len())
                },
            );
        }
    }
}
