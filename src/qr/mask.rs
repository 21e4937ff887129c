//! The data-mask choice of ISO/IEC 18004 §7.8.3, done fast: an optimisation with a
//! proof, not a feature.
//!
//! What it replaces: `qrcodegen`'s automatic mask (`encode_segments_advanced` with
//! `mask: None`), which evaluates all eight masks against the penalty rules N1–N4
//! (§7.8.3.1) and keeps the lowest, ties to the lowest number. Why: qrcodegen scores
//! module by module, which costs over 90% of its time for a typical URI; with it the
//! in-process setup pipeline took ≈ 275–360 µs, with this search 41–88 µs
//! (docs/performance.md, 2026-11-28, "setup pipeline in process").
//!
//! How: encode once with a fixed mask 0, strip that mask off again (the function-module
//! map depends only on the version), and score all eight candidates with word-wide bit
//! operations on whole rows (`bits.rs`), treating columns in parallel across the bits
//! of consecutive rows so that no transpose is needed. The scores are exactly
//! qrcodegen's, including its quirks (the area outside the symbol counts as light for
//! the finder-like rule, and 1:1:3:1:1 patterns of any module width count), so the
//! chosen mask and the resulting modules are identical to qrcodegen's choice.
//!
//! The proof is `mask_proof.rs`: `chosen_mask_and_modules_equal_qrcodegen_on_random_uris`
//! (3,000 URIs, versions 1–40, boosted ECC levels: same mask, same modules, and the
//! eight scores equal to a module-by-module transcription of qrcodegen's
//! `get_penalty_score` on a quarter of them in debug builds, all in release),
//! `every_mask_of_every_version_matches_qrcodegen` (all eight candidates of versions
//! 1–40, modules and scores), `bit_operations_agree_with_reference_on_adversarial_grids`
//! (planted n:n:3n:n:n patterns at edges and in columns), and the building blocks
//! (function map, format bits, mask table). Going back to qrcodegen's search would be
//! `select` calling it with `mask: None` and copying the modules out.

use qrcodegen::{Mask, QrCode, QrCodeEcc, QrSegment, Version};

use super::bits::{line_bit, set_bits, Line, U192};
use super::{QrError, Symbol, MAX_BYTES, WORDS};

#[cfg(test)]
#[path = "mask_proof.rs"]
mod proof;

/// Light rows kept above and below the symbol while scoring, so the
/// finder-like rule can look four modules past the edge without bounds checks.
const PAD: usize = 4;

// Penalty weights of ISO/IEC 18004 Table 11 (as used by qrcodegen).
const N1: u32 = 3;
const N2: u32 = 3;
const N3: u32 = 40;
const N4: u32 = 10;

/// Encodes `text` and returns the symbol, the chosen mask and the penalty
/// score of every mask.
pub(super) fn select(text: &str) -> Result<(Symbol, u8, [u32; 8]), QrError> {
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
