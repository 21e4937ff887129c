//! What /proc says: CPU seconds of a process, of the whole machine and its interrupts,
//! and peak RSS. Linux only, as mfad is.

use std::time::{Duration, Instant};

pub(crate) fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a constant of the running system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// User + system CPU seconds of a process (all its threads), from /proc/PID/stat.
pub(crate) fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // The command name may hold spaces; the fields that follow it do not.
    let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return f64::NAN;
    };
    let f: Vec<&str> = after.split_whitespace().collect();
    let (Some(u), Some(s)) = (f.get(11), f.get(12)) else {
        return f64::NAN;
    };
    match (u.parse::<f64>(), s.parse::<f64>()) {
        (Ok(u), Ok(s)) => (u + s) / clock_ticks(),
        _ => f64::NAN,
    }
}

/// CPU seconds the whole machine (all cores) spent running tasks (user, system, and
/// steal: time the hypervisor gave to someone else), and in interrupts (irq, softirq:
/// there, loopback TCP is processed without being charged to any process), from
/// /proc/stat.
pub(crate) fn machine_cpu() -> [f64; 2] {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return [f64::NAN; 2];
    };
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return [f64::NAN; 2];
    };
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    if f.len() < 8 {
        return [f64::NAN; 2];
    }
    let t = clock_ticks();
    [(f[0] + f[1] + f[2] + f[7]) / t, (f[5] + f[6]) / t]
}

pub(crate) fn machine_busy_seconds() -> f64 {
    let [tasks, irq] = machine_cpu();
    tasks + irq
}

/// Cores kept busy by other processes over `secs`, measured now.
pub(crate) fn other_load(secs: f64) -> f64 {
    let (m0, g0, t0) = (machine_busy_seconds(), cpu_seconds("self"), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (m1, g1) = (machine_busy_seconds(), cpu_seconds("self"));
    ((m1 - m0) - (g1 - g0)) / t0.elapsed().as_secs_f64()
}

/// A field of /proc/PID/status in kB (VmHWM is the peak resident set size).
pub(crate) fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
