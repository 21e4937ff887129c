//! Figures: groups of runs of one workload at one connection count ([`Group`]), and
//! [`Bench`], which runs them (warm-up, runs, notes on anything odd).

use std::net::SocketAddr;

use crate::jobs::{fixed_jobs, http_request, Job};
use crate::opts::Opts;
use crate::procs::Proc;
use crate::run::{run_load, RunResult};
use crate::stats::{spread, Spread};
use crate::Res;

pub(crate) struct Group {
    pub(crate) name: &'static str,
    pub(crate) conns: usize,
    pub(crate) runs: Vec<RunResult>,
}

impl Group {
    pub(crate) fn rate(&self) -> Spread {
        spread(&self.runs.iter().map(RunResult::rate).collect::<Vec<_>>())
    }

    pub(crate) fn lat(&self, i: usize) -> Spread {
        spread(&self.runs.iter().map(|r| r.lat[i]).collect::<Vec<_>>())
    }

    pub(crate) fn extra(&self, i: usize) -> Spread {
        spread(
            &self
                .runs
                .iter()
                .filter_map(|r| r.extra.map(|e| e[i]))
                .collect::<Vec<_>>(),
        )
    }

    pub(crate) fn errors(&self) -> u64 {
        self.runs.iter().map(|r| r.errors).sum()
    }

    /// Server CPU µs per successful unit, and (medians) the cores busy in the server,
    /// in this generator, in interrupts and in other processes, as "s/g/k/o".
    pub(crate) fn cpu(&self) -> (Spread, String) {
        let per =
            |f: &dyn Fn(&RunResult) -> f64| spread(&self.runs.iter().map(f).collect::<Vec<_>>());
        let cores = [
            per(&|r| r.srv_cpu / r.elapsed),
            per(&|r| r.gen_cpu / r.elapsed),
            per(&|r| r.irq_cpu / r.elapsed),
            per(&|r| (r.all_cpu - r.srv_cpu - r.gen_cpu).max(0.0) / r.elapsed),
        ]
        .map(|s| format!("{:.1}", s.med));
        (
            per(&|r| r.srv_cpu / r.ok.max(1) as f64 * 1e6),
            cores.join("/"),
        )
    }
}

pub(crate) struct Bench<'a> {
    pub(crate) opts: &'a Opts,
    pub(crate) groups: Vec<Group>,
    pub(crate) notes: Vec<String>,
}

impl Bench<'_> {
    /// One round of the ceiling: the bare tiny_http server answering a fixed GET.
    pub(crate) fn ceiling(&mut self, bare: &Proc) -> Res<()> {
        let req = http_request("GET", "/", None, None);
        self.figure(
            "ceiling",
            bare.addr,
            bare.pid(),
            true,
            &mut |n| Ok(fixed_jobs(&req, n)),
            &mut |_| {},
        )
    }

    /// Runs one figure: a warm-up (discarded) then `opts.runs` runs, for each connection
    /// count. `make` builds one job per connection for a run.
    pub(crate) fn figure(
        &mut self,
        name: &'static str,
        addr: SocketAddr,
        pid: u32,
        warmup: bool,
        make: &mut dyn FnMut(usize) -> Res<Vec<Box<dyn Job>>>,
        after: &mut dyn FnMut(&RunResult),
    ) -> Res<()> {
        let opts = self.opts;
        for &conns in &opts.conns {
            if warmup {
                let jobs = make(conns)?;
                let r = run_load(addr, jobs, self.opts.warmup, pid);
                after(&r);
            }
            // Runs go on an existing group of the same name and connections (the ceiling
            // is measured twice, before and after mfad).
            let found = self
                .groups
                .iter()
                .position(|g| g.name == name && g.conns == conns);
            let at = match found {
                Some(i) => i,
                None => {
                    self.groups.push(Group {
                        name,
                        conns,
                        runs: Vec::new(),
                    });
                    self.groups.len() - 1
                }
            };
            let (mut stalled, mut resent, mut slowest) = (0, 0, 0.0f64);
            for i in 0..self.opts.runs {
                let jobs = make(conns)?;
                let r = run_load(addr, jobs, self.opts.secs, pid);
                after(&r);
                eprintln!(
                    "  {name:<12} {conns:>3} conns, run {}/{}: {:>8.0} /s, p99 {:>8.2} ms, {} errors{}",
                    i + 1,
                    self.opts.runs,
                    r.rate(),
                    r.lat[1],
                    r.errors,
                    if r.exhausted { " (prepared work ran out)" } else { "" }
                );
                if let Some(e) = &r.first_error {
                    self.notes.push(format!(
                        "{name} at {conns} conns: {} errors, e.g. {e}",
                        r.errors
                    ));
                }
                resent += r.resent;
                // A unit as long as the run itself waited for the run to end: typically a
                // connection that tiny_http left unserved until other connections closed.
                if !pbkdf2_bound(name) && r.max_ms >= 800.0 * self.opts.secs {
                    stalled += 1;
                    slowest = slowest.max(r.max_ms);
                }
                if r.exhausted {
                    self.notes.push(format!(
                        "{name} at {conns} conns: prepared work ran out after {:.2} s",
                        r.elapsed
                    ));
                }
                self.groups[at].runs.push(r);
            }
            if resent > 0 {
                self.notes.push(format!(
                    "{name} at {conns} conns: {resent} requests resent because mfad had closed \
                     the kept-alive connection right after the previous answer"
                ));
            }
            if stalled > 0 {
                self.notes.push(format!(
                    "{name} at {conns} conns: in {stalled} of {} runs a request took about the \
                     whole run (up to {slowest:.0} ms): its connection was answered only once \
                     other connections closed",
                    self.opts.runs
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn find(&self, name: &str, conns: usize) -> Option<&Group> {
        self.groups
            .iter()
            .find(|g| g.name == name && g.conns == conns)
    }
}

pub(crate) const LABELS: &[(&str, &str)] = &[
    ("ceiling", "bare tiny_http GET (ceiling)"),
    ("healthz", "GET /healthz (no auth, 1 read)"),
    ("status", "GET status"),
    ("forward-auth", "GET forward-auth (session)"),
    ("setup", "POST setup"),
    ("verify", "POST verify (seeded challenge)"),
    ("refresh", "POST refresh (chained)"),
    ("login", "POST login (PBKDF2)"),
    ("pair", "login→verify pair"),
];

pub(crate) fn label(name: &str) -> &str {
    LABELS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(name, |(_, l)| l)
}

/// Login and login→verify pairs: PBKDF2-bound, reported apart from the rest.
pub(crate) fn pbkdf2_bound(name: &str) -> bool {
    matches!(name, "login" | "pair")
}
