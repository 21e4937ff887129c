//! A person at a terminal, for the tests of what the README has people type: a
//! pseudo-terminal (so that mfad's password prompt asks as it asks a person), a shell
//! that reads commands as they are typed and has each prompt answered, a server started
//! as a command line starts it, and a wait for a command that must end unanswered.

use std::ffi::{CStr, CString};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Collects what `from` writes, as another thread reads it.
fn collect(mut from: impl Read + Send + 'static, echo: bool) -> Arc<Mutex<Vec<u8>>> {
    let sink = Arc::new(Mutex::new(Vec::new()));
    let to = sink.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if echo {
                eprint!("[terminal] {}", String::from_utf8_lossy(&buf[..n]));
            }
            to.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    sink
}

/// A pseudo-terminal: the master (the keyboard and screen) and the terminal a program
/// reads from.
pub fn pty() -> (File, File) {
    // SAFETY: plain libc calls on a descriptor this function owns; ptsname_r writes a
    // NUL-terminated name into the buffer it is given.
    unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let master = File::from_raw_fd(fd);
        assert_eq!(libc::grantpt(master.as_raw_fd()), 0);
        assert_eq!(libc::unlockpt(master.as_raw_fd()), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(
            libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()),
            0
        );
        let path = CStr::from_ptr(name.as_ptr()).to_str().unwrap().to_string();
        let terminal = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(path)
            .unwrap();
        (master, terminal)
    }
}

/// Kills a process started in a group of its own, and the group (the shell and what it
/// started).
pub fn kill_group(child: &mut Child) {
    // SAFETY: a signal to the process group this test started.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
}

/// A server started by a shell command line (`sh -c …`, in a process group of its
/// own), its banner read up to the page's line.
pub struct Started {
    child: Child,
    pub banner: Vec<String>,
}

impl Started {
    pub fn start(mut sh: Command) -> Started {
        let what = format!("{sh:?}");
        let mut child = sh
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        collect(child.stderr.take().unwrap(), true);
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut banner = Vec::new();
        while !banner
            .last()
            .is_some_and(|l: &String| l.starts_with("mfad page on "))
        {
            let mut line = String::new();
            if out.read_line(&mut line).unwrap() == 0 || banner.len() == 3 {
                kill_group(&mut child);
                panic!("{what} printed no page line: {banner:?}");
            }
            banner.push(line.trim_end().to_string());
        }
        Started { child, banner }
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// A second terminal: one shell that reads the commands as they are typed (from a
/// FIFO, so that it never takes a line meant for a prompt), its standard input a
/// terminal (so `user add` asks for the password as it asks a person), its output and
/// errors kept apart.
pub struct Terminal {
    shell: Child,
    typed: Option<File>,
    keyboard: File,
    password: String,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
}

/// One command's end: its exit status, what it printed on each stream.
#[derive(Debug)]
pub struct Ran {
    pub status: i32,
    pub out: String,
    pub err: String,
}

/// mfad's password prompts in `err`.
pub fn prompts(err: &str) -> usize {
    err.matches("New password: ").count() + err.matches("Again: ").count()
}

const DONE: &str = "\n@@done ";

impl Terminal {
    /// The shell `sh` (its environment and directory set by the caller), reading what
    /// is typed from a FIFO made at `fifo`; `password` is typed at each prompt.
    pub fn open(mut sh: Command, fifo: &Path, password: &str) -> Terminal {
        let name = CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let (keyboard, terminal) = pty();
        let mut shell = sh
            .arg(fifo)
            .process_group(0)
            .stdin(Stdio::from(terminal))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = collect(shell.stdout.take().unwrap(), false);
        let err = collect(shell.stderr.take().unwrap(), false);
        // What the terminal echoes is nobody's concern; read it so that it never fills.
        collect(keyboard.try_clone().unwrap(), false);
        let typed = OpenOptions::new().write(true).open(fifo).unwrap();
        Terminal {
            shell,
            typed: Some(typed),
            keyboard,
            password: password.to_string(),
            out,
            err,
        }
    }

    /// Types `command`, answers each password prompt, and waits for the command to end.
    pub fn run(&mut self, command: &str) -> Ran {
        let out_from = self.out.lock().unwrap().len();
        let err_from = self.err.lock().unwrap().len();
        let typed = self.typed.as_mut().unwrap();
        write!(
            typed,
            "{command}\n__status=$?; printf '{DONE}%s\\n' \"$__status\"; printf '{DONE}\\n' >&2\n"
        )
        .unwrap();
        typed.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut answered = 0;
        loop {
            let out = String::from_utf8_lossy(&self.out.lock().unwrap()[out_from..]).into_owned();
            let err = String::from_utf8_lossy(&self.err.lock().unwrap()[err_from..]).into_owned();
            while answered < prompts(&err) {
                writeln!(self.keyboard, "{}", self.password).unwrap();
                answered += 1;
            }
            let status = out.find(DONE).and_then(|i| {
                let rest = &out[i + DONE.len()..];
                Some((i, rest[..rest.find('\n')?].parse::<i32>().unwrap()))
            });
            if let (Some((i, status)), Some(j)) = (status, err.find(DONE)) {
                return Ran {
                    status,
                    out: out[..i].to_string(),
                    err: err[..j].to_string(),
                };
            }
            assert!(
                Instant::now() < deadline,
                "`{command}` has not ended in 2 minutes:\n{out}\n{err}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        drop(self.typed.take());
        kill_group(&mut self.shell);
    }
}

/// Waits up to 30 s for `child` to end by itself; a command that asks for a password
/// nobody types would wait for ever.
pub fn ends_by_itself(mut child: Child, what: &str) -> (Option<i32>, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} was still waiting after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}
