//! Rows of QR modules as bit sets, one machine word or a few: bit x of a row is
//! column x. The mask search (`mask.rs`) scores whole rows with shifts, ANDs and
//! popcounts on these; the renderer walks the dark bits. `u64` holds versions 1–11
//! (every ordinary otpauth URI), `u128` up to version 27, [`U192`] up to 40.

use std::ops::{BitAnd, BitOr, BitXor, Not};

use super::WORDS;

/// A row of up to 64·k modules as a bit set; bit x is column x.
pub(super) trait Line:
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
pub(super) struct U192(pub(super) [u64; WORDS]);

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
pub(super) fn set_bits<L: Line>(line: L) -> impl Iterator<Item = usize> {
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
pub(super) fn line_bit<L: Line>(line: L, i: isize, size: usize) -> bool {
    if i < 0 || i as usize >= size {
        return false;
    }
    let i = i as usize;
    (line.to_words()[i / 64] >> (i % 64)) & 1 != 0
}
