//! The one timing loop of the in-process benchmarks (`tokens`, `webauthn`).

use std::time::Instant;

/// The median over `rounds` rounds of the time `f` takes, in µs per call, each round
/// `per_round` calls.
pub fn median_us(rounds: usize, per_round: u32, mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_round {
                f();
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(per_round)
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[rounds / 2]
}
