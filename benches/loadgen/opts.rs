//! The command line: one [`Opts`] parsed once in `main` and passed by reference to
//! whatever needs it (no global settings).

use std::path::PathBuf;

use crate::Res;

pub(crate) struct Opts {
    pub(crate) runs: usize,
    pub(crate) secs: f64,
    pub(crate) warmup: f64,
    pub(crate) conns: Vec<usize>,
    pub(crate) workers: usize,
    pub(crate) only: Option<Vec<String>>,
    pub(crate) quick: bool,
    pub(crate) help: bool,
    pub(crate) bare_server: bool,
    /// `--serve-arg ARG`s: more flags for `mfad serve` (they win over the bench's own).
    pub(crate) serve_args: Vec<String>,
    /// `--mfad PATH`, if given: another build to measure (a branch, an experiment).
    pub(crate) mfad: Option<PathBuf>,
}

/// mfad's own default (two per core, 4 to 64).
pub(crate) fn default_workers() -> usize {
    mfad::config::default_workers()
}

impl Opts {
    pub(crate) fn parse(args: &[String]) -> Res<Opts> {
        let mut o = Opts {
            runs: 5,
            secs: 3.0,
            warmup: 0.5,
            conns: vec![1, 8, 64],
            workers: default_workers(),
            only: None,
            quick: false,
            help: false,
            bare_server: false,
            serve_args: Vec::new(),
            mfad: None,
        };
        let (mut runs, mut secs) = (None, None);
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match a.as_str() {
                // cargo bench passes --bench to every harness = false target.
                "--bench" => {}
                "--quick" => o.quick = true,
                "--help" | "-h" => o.help = true,
                "--bare-server" => o.bare_server = true,
                "--runs" => runs = Some(parse_num::<usize>(&value("--runs")?, "--runs", 1, 50)?),
                "--secs" => secs = Some(parse_num::<f64>(&value("--secs")?, "--secs", 0.1, 60.0)?),
                "--serve-arg" => o.serve_args.push(value("--serve-arg")?),
                "--database" => {
                    let url = value("--database")?;
                    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
                        return Err("--database takes postgres://USER@HOST/DB".into());
                    }
                    crate::seed::POSTGRES
                        .set(url)
                        .map_err(|_| "--database given twice".to_string())?;
                }
                "--mfad" => {
                    // The first --mfad wins, as it always has.
                    let path = PathBuf::from(value("--mfad")?);
                    o.mfad.get_or_insert(path);
                }
                "--workers" => {
                    o.workers = parse_num::<usize>(&value("--workers")?, "--workers", 1, 1024)?
                }
                "--conns" => {
                    o.conns = value("--conns")?
                        .split(',')
                        .map(|s| parse_num::<usize>(s.trim(), "--conns", 1, 512))
                        .collect::<Res<Vec<_>>>()?
                }
                "--only" => {
                    o.only = Some(
                        value("--only")?
                            .split(',')
                            .map(|s| s.trim().to_string())
                            .collect(),
                    )
                }
                other => return Err(format!("unknown argument {other:?} (see --help)")),
            }
        }
        if o.quick {
            o.runs = 3;
            o.secs = 1.0;
            o.warmup = 0.3;
        }
        o.runs = runs.unwrap_or(o.runs);
        o.secs = secs.unwrap_or(o.secs);
        Ok(o)
    }

    pub(crate) fn want(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|l| l.iter().any(|s| s == section))
    }

    /// The mfad binary to measure.
    pub(crate) fn mfad_bin(&self) -> PathBuf {
        // Cargo builds the package's binaries for its benches and names them here.
        self.mfad
            .clone()
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_mfad")))
    }

    pub(crate) fn max_conns(&self) -> usize {
        self.conns.iter().copied().max().unwrap_or(1)
    }
}

pub(crate) fn parse_num<T: std::str::FromStr + PartialOrd + Copy>(
    s: &str,
    name: &str,
    lo: T,
    hi: T,
) -> Res<T> {
    match s.parse::<T>() {
        Ok(n) if n >= lo && n <= hi => Ok(n),
        _ => Err(format!("{name}: {s:?} is not a number in range")),
    }
}
