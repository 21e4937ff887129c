//! In process: the setup pipeline (secret → base32 → URI → QR PNG → base64 → JSON) by
//! stage, and the same pipeline in the Python and Node peers of `benches/peers/` when
//! they are installed.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use data_encoding::{BASE32_NOPAD, BASE64};
use mfad::{crypto, qr, totp};

use crate::opts::Opts;
use crate::stats::{spread, Spread};
use crate::{Res, ISSUER};

/// One setup response's worth of work, as the endpoint does it (without the database).
pub(crate) fn pipeline_once(stages: &mut [Duration; 4]) -> Res<(usize, usize)> {
    let t0 = Instant::now();
    let secret: [u8; 20] = crypto::random().map_err(|e| e.to_string())?;
    let t1 = Instant::now();
    let encoded = BASE32_NOPAD.encode(&secret);
    let uri = totp::otpauth_uri(ISSUER, "user@example.com", &encoded);
    let t2 = Instant::now();
    let png = qr::otpauth_png(&uri).map_err(|e| format!("QR: {e}"))?;
    let t3 = Instant::now();
    let mut data = String::with_capacity(22 + png.len() * 4 / 3 + 4);
    data.push_str("data:image/png;base64,");
    data.push_str(&BASE64.encode(&png));
    let body =
        serde_json::json!({ "secret": encoded, "otpauthUri": uri, "qrCode": data }).to_string();
    let t4 = Instant::now();
    stages[0] += t1 - t0;
    stages[1] += t2 - t1;
    stages[2] += t3 - t2;
    stages[3] += t4 - t3;
    Ok((png.len(), std::hint::black_box(body).len()))
}

pub(crate) struct Peer {
    pub(crate) name: &'static str,
    /// µs per call, or why it was not run.
    pub(crate) result: Result<Spread, String>,
}

pub(crate) struct PipelineOut {
    /// µs per call: random, base32 + URI, QR PNG, base64 + JSON, total.
    pub(crate) stages: [Spread; 5],
    pub(crate) png_bytes: usize,
    pub(crate) body_bytes: usize,
    pub(crate) peers: Vec<Peer>,
}

pub(crate) fn pipeline(opts: &Opts) -> Res<PipelineOut> {
    let secs = opts.secs.min(2.0);
    let mut samples: [Vec<f64>; 5] = Default::default();
    let (mut png_bytes, mut body_bytes) = (0, 0);
    let mut warm = [Duration::ZERO; 4];
    for _ in 0..50 {
        pipeline_once(&mut warm)?;
    }
    for _ in 0..opts.runs {
        let mut st = [Duration::ZERO; 4];
        let mut calls = 0usize;
        let start = Instant::now();
        while calls < 1_000_000 && start.elapsed().as_secs_f64() < secs {
            (png_bytes, body_bytes) = pipeline_once(&mut st)?;
            calls += 1;
        }
        let per = |d: Duration| d.as_secs_f64() * 1e6 / calls.max(1) as f64;
        for (s, d) in samples.iter_mut().zip(st) {
            s.push(per(d));
        }
        samples[4].push(per(st.iter().sum()));
    }
    let stages = [0, 1, 2, 3, 4].map(|i| spread(&samples[i]));
    let peers_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers");
    let peer_secs = format!("{:.1}", secs.min(1.5));
    let mut peers = Vec::new();

    let py = Command::new("python3")
        .args(["-c", "import pyotp, qrcode, PIL"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let result = match py {
        Err(_) => Err("not found (no python3 on PATH)".to_string()),
        Ok(s) if !s.success() => Err("not found (python3 lacks pyotp, qrcode or PIL)".into()),
        Ok(_) => run_peer(opts.runs, || {
            let mut c = Command::new("python3");
            c.arg(peers_dir.join("setup_pipeline.py"))
                .args([peer_secs.as_str(), "5000"]);
            c
        }),
    };
    peers.push(Peer {
        name: "python3 pyotp+qrcode (PIL)",
        result,
    });

    // Node finds `qrcode` beside the script, up the tree, or on NODE_PATH; add the
    // global modules folder too, where `npm install -g qrcode` puts it.
    let mut node_path: Vec<OsString> = std::env::var_os("NODE_PATH").into_iter().collect();
    if let Ok(o) = Command::new("npm").args(["root", "-g"]).output() {
        if o.status.success() {
            node_path.push(String::from_utf8_lossy(&o.stdout).trim().into());
        }
    }
    let node_path = std::env::join_paths(node_path).unwrap_or_default();
    let node = Command::new("node")
        .args(["-e", "require('qrcode')"])
        .current_dir(&peers_dir)
        .env("NODE_PATH", &node_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let result = match node {
        Err(_) => Err("not found (no node on PATH)".to_string()),
        Ok(s) if !s.success() => Err("not found (node lacks the qrcode package)".into()),
        Ok(_) => run_peer(opts.runs, || {
            let mut c = Command::new("node");
            c.arg(peers_dir.join("setup_pipeline.js"))
                .args([peer_secs.as_str(), "5000"])
                .current_dir(&peers_dir)
                .env("NODE_PATH", &node_path);
            c
        }),
    };
    peers.push(Peer {
        name: "node qrcode",
        result,
    });
    Ok(PipelineOut {
        stages,
        png_bytes,
        body_bytes,
        peers,
    })
}

/// Runs a peer script `runs` times; each prints `us_per_call=X ...`.
pub(crate) fn run_peer(runs: usize, cmd: impl Fn() -> Command) -> Result<Spread, String> {
    let mut v = Vec::new();
    for _ in 0..runs {
        let out = cmd()
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("failed to run: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let us = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("us_per_call="))
            .and_then(|x| x.parse::<f64>().ok());
        match us {
            Some(us) if out.status.success() => v.push(us),
            _ => {
                return Err(format!(
                    "failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        }
    }
    Ok(spread(&v))
}
