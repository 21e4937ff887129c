//! The proof that `mask.rs` is only an optimisation: on every input tried (all 40
//! versions, thousands of random URIs, adversarial grids) the same mask, the same
//! modules and the same penalty scores as qrcodegen's automatic mask choice, checked
//! against qrcodegen itself and against module-by-module transcriptions of its
//! `draw_function_patterns` and `get_penalty_score`. Also `timing` (ignored by
//! default), which prints ours beside qrcodegen's own search.

use qrcodegen::{Mask, QrCode, QrCodeEcc};

use super::*;
use crate::qr::testing::{qrcodegen_with, random_uri, text_for_version, Rng, TYPICAL};
use crate::qr::{encode, otpauth_png, render_png};

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
