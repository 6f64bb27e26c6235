//! Runs untrusted code: one process per run under bubblewrap, as a non-root host uid,
//! with no network (every namespace unshared), a read-only view of the system's
//! programs and libraries only (never the data directory, never the service's
//! environment), a size-limited private tmpfs as the only writable place, and limits on
//! CPU time, address space, processes, open files, file size, wall-clock time and
//! output. Language-agnostic: a `Program` is a command line inside the sandbox plus the
//! bytes it reads on stdin; what it reports on file descriptor 3 comes back separately
//! from what it prints.
//!
//! Why each limit is where it is: rlimits are set between fork and exec (they are
//! inherited by bwrap and everything in the sandbox, and only lowered); the host uid is
//! changed before exec so that `RLIMIT_NPROC` counts only this run's processes (the
//! kernel does not enforce it for root); the pid namespace makes every process of the
//! run die with its init when the run is killed; the wall-clock limit and the output cap
//! are enforced from outside by killing bwrap, which `--die-with-parent` and the pid
//! namespace turn into killing the whole run.

use anyhow::{bail, Context as _, Result};
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Limits of one run (`SANDBOX_*` settings).
#[derive(Debug, Clone)]
pub struct Limits {
    pub cpu: Duration,
    pub wall: Duration,
    /// Address space of each process (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Processes (and threads) the run's uid may have at once.
    pub processes: u64,
    /// What the program may print (stdout and stderr together) before it is killed.
    pub output_bytes: usize,
    /// Size of the private `/tmp`, and the largest file it may write.
    pub tmpfs_bytes: u64,
    pub open_files: u64,
}

/// The file descriptor a program reports its results on (one JSON object a line).
pub const RESULTS_FD: i32 = 3;
/// The most result bytes read; beyond it the report is cut (and so fails to parse).
const RESULTS_MAX_BYTES: usize = 1 << 20;

/// Host paths the sandbox sees, read-only: the interpreters and their libraries. `/bin`,
/// `/lib`, `/lib64` and `/sbin` are symlinks into `/usr` on merged-/usr systems (Debian
/// 12) and bound as they are found.
const SYSTEM_PATHS: &[&str] = &["/usr", "/bin", "/lib", "/lib64", "/sbin"];

/// Whether the sandbox would show `path` (read-only) to the code it runs: a data
/// directory there would be readable by every submission.
pub fn exposes(path: &std::path::Path) -> bool {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    SYSTEM_PATHS.iter().any(|p| {
        let p = std::fs::canonicalize(p).unwrap_or_else(|_| PathBuf::from(p));
        path.starts_with(p)
    })
}

/// What to run: a command line inside the sandbox, and its standard input.
pub struct Program<'a> {
    pub argv: &'a [&'a str],
    pub stdin: &'a [u8],
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The program exited with this status.
    Exited(i32),
    /// Killed by this signal (not by us).
    Signalled(i32),
    /// Used up its CPU time (`SIGXCPU`, or the hard limit's `SIGKILL`).
    CpuLimit,
    /// Still running at the wall-clock limit: killed.
    WallLimit,
    /// Printed more than the output limit: killed.
    OutputLimit,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Run {
    pub ending: Ending,
    /// The first `keep` bytes printed (stdout and stderr interleaved as written).
    pub output: Vec<u8>,
    /// Everything printed, counted up to the output limit.
    pub output_len: usize,
    /// What the program wrote to `RESULTS_FD`.
    pub results: Vec<u8>,
    pub elapsed: Duration,
}

/// A configured sandbox: where bubblewrap is, the limits, and which host uids runs get.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub bwrap: PathBuf,
    pub limits: Limits,
    /// When the service runs as root, run `slot` runs as uid `uid_base + slot` (and the
    /// same gid), so that concurrent runs never share a process count. Otherwise runs
    /// keep the service's own uid.
    pub uid_base: Option<u32>,
}

fn rlimit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit with a valid pointer; async-signal-safe.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Sandbox {
    /// The bubblewrap command line for `program`.
    fn command(&self, slot: usize, program: &Program) -> Command {
        let mut cmd = Command::new(&self.bwrap);
        cmd.args([
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            // No reaper process of bubblewrap's own as pid 1: it would outlive bubblewrap
            // as a zombie of the host's init, counted against the slot's process limit
            // until that init reaps it (slowly, in some containers), making the next
            // run's fork fail.
            "--as-pid-1",
            "--clearenv",
            "--cap-drop",
            "ALL",
        ]);
        for path in SYSTEM_PATHS {
            let meta = std::fs::symlink_metadata(path);
            match meta {
                Ok(m) if m.file_type().is_symlink() => {
                    if let Ok(target) = std::fs::read_link(path) {
                        cmd.arg("--symlink").arg(target).arg(path);
                    }
                }
                Ok(_) => {
                    cmd.args(["--ro-bind", path, path]);
                }
                Err(_) => {}
            }
        }
        cmd.args(["--proc", "/proc", "--dev", "/dev"]);
        cmd.args(["--size", &self.limits.tmpfs_bytes.to_string(), "--tmpfs", "/tmp"]);
        // bubblewrap's root and /dev are writable tmpfs until remounted: /tmp stays the
        // only writable place.
        cmd.args(["--remount-ro", "/dev", "--remount-ro", "/"]);
        cmd.args([
            "--chdir",
            "/tmp",
            "--setenv",
            "PATH",
            "/usr/bin:/bin",
            "--setenv",
            "HOME",
            "/tmp",
            "--setenv",
            "LANG",
            "C.UTF-8",
            "--",
        ]);
        cmd.args(program.argv);
        // Nothing of the service's environment reaches bubblewrap either: its pid 1 inside
        // the sandbox is a fork of it, and its environment is readable there.
        cmd.env_clear();
        cmd.current_dir("/");
        cmd.process_group(0);
        if let Some(base) = self.uid_base {
            let id = base.saturating_add(slot as u32);
            cmd.uid(id).gid(id);
        }
        let limits = self.limits.clone();
        // SAFETY: only async-signal-safe calls (setrlimit, prctl, getppid) between fork
        // and exec. std runs this after it has changed the uid, which matters: a uid
        // change clears the parent-death signal.
        unsafe {
            cmd.pre_exec(move || {
                let cpu = limits.cpu.as_secs().max(1);
                rlimit(libc::RLIMIT_CPU, cpu, cpu + 1)?;
                rlimit(libc::RLIMIT_AS, limits.memory_bytes, limits.memory_bytes)?;
                rlimit(libc::RLIMIT_DATA, limits.memory_bytes, limits.memory_bytes)?;
                rlimit(libc::RLIMIT_NPROC, limits.processes, limits.processes)?;
                rlimit(libc::RLIMIT_FSIZE, limits.tmpfs_bytes, limits.tmpfs_bytes)?;
                rlimit(libc::RLIMIT_NOFILE, limits.open_files, limits.open_files)?;
                rlimit(libc::RLIMIT_CORE, 0, 0)?;
                // bubblewrap goes when the thread that started it does (the service dies).
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() == 1 {
                    return Err(std::io::Error::other("parent gone"));
                }
                Ok(())
            });
        }
        cmd
    }

    /// Runs `program` in run slot `slot` (blocking: call from a blocking thread), keeping
    /// the first `keep` bytes of its output.
    pub fn run(&self, slot: usize, program: &Program, keep: usize) -> Result<Run> {
        let started = Instant::now();
        let (out_read, out_write) = std::io::pipe().context("output pipe")?;
        let (results_read, results_write) = std::io::pipe().context("results pipe")?;
        let mut cmd = self.command(slot, program);
        cmd.stdin(Stdio::piped())
            .stdout(out_write.try_clone().context("output pipe")?)
            .stderr(out_write);
        // The results pipe becomes fd 3 in the child (and so in the sandbox: bubblewrap
        // passes inherited descriptors on).
        let results_fd = std::os::fd::AsRawFd::as_raw_fd(&results_write);
        // SAFETY: dup2 is async-signal-safe; the fd is valid until after spawn.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(results_fd, RESULTS_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.bwrap.display()))?;
        // Only the child may hold the write ends: EOF on them means the run is over.
        drop(cmd);
        drop(results_write);
        let pid = child.id() as libc::pid_t;

        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = program.stdin.to_vec();
        let feeder = std::thread::spawn(move || {
            // A program that never reads its input must not block us: the write fails
            // once it is gone.
            let _ = stdin.write_all(&input);
        });
        let results_reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = results_read
                .take(RESULTS_MAX_BYTES as u64)
                .read_to_end(&mut buf);
            buf
        });

        // Output is read here, up to the limit; a deadline thread kills the run at the
        // wall-clock limit (which also ends this read, the pipe closing).
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let wall = self.limits.wall;
        let killer = std::thread::spawn(move || match done_rx.recv_timeout(wall) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                kill(pid);
                true
            }
            _ => false,
        });
        let mut output = Vec::with_capacity(keep.min(64 * 1024));
        let mut output_len = 0usize;
        let mut over = false;
        let mut reader = out_read;
        let mut buf = [0u8; 16 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if output.len() < keep {
                        let take = n.min(keep - output.len());
                        output.extend_from_slice(&buf[..take]);
                    }
                    output_len += n;
                    if output_len > self.limits.output_bytes {
                        over = true;
                        kill(pid);
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        drop(reader);
        let status = child.wait().context("waiting for the sandbox")?;
        let _ = done_tx.send(());
        let timed_out = killer.join().unwrap_or(false);
        let _ = feeder.join();
        let results = results_reader.join().unwrap_or_default();
        let ending = if timed_out {
            Ending::WallLimit
        } else if over {
            Ending::OutputLimit
        } else {
            match (status.code(), status.signal()) {
                // bubblewrap reports its child's death by a signal as 128 + signal.
                (Some(code), _) if code > 128 => self.signalled(code - 128, started.elapsed()),
                (Some(code), _) => Ending::Exited(code),
                (None, Some(sig)) => self.signalled(sig, started.elapsed()),
                (None, None) => Ending::Signalled(0),
            }
        };
        Ok(Run {
            ending,
            output,
            output_len: output_len.min(self.limits.output_bytes),
            results,
            elapsed: started.elapsed(),
        })
    }

    /// How a run killed by `signal` after `elapsed` ended. The soft CPU limit sends
    /// SIGXCPU; a program that ignores it gets SIGKILL at the hard limit a second later,
    /// which can only be told from another SIGKILL by the time it took.
    fn signalled(&self, signal: i32, elapsed: Duration) -> Ending {
        if signal == libc::SIGXCPU || (signal == libc::SIGKILL && elapsed >= self.limits.cpu) {
            Ending::CpuLimit
        } else {
            Ending::Signalled(signal)
        }
    }

    /// Runs `argv` (a trivial program) and fails, saying why, unless it ran sandboxed and
    /// printed `expect`: the service must not start when it could only run code
    /// unsandboxed.
    pub fn check(&self, argv: &[&str], expect: &str) -> Result<Duration> {
        if !self.bwrap.exists() {
            bail!(
                "the code sandbox needs bubblewrap at {} (Debian: apt-get install bubblewrap; \
                 SANDBOX_BWRAP names another path); refusing to evaluate code unsandboxed",
                self.bwrap.display()
            );
        }
        let run = self
            .run(0, &Program { argv, stdin: b"" }, 4096)
            .context("the code sandbox cannot start")?;
        let printed = String::from_utf8_lossy(&run.output);
        if run.ending != Ending::Exited(0) || printed.trim() != expect {
            bail!(
                "the code sandbox does not work here ({:?}; it printed {:?}): bubblewrap needs \
                 user namespaces (or to run as root), and {} must exist; refusing to evaluate \
                 code unsandboxed",
                run.ending,
                printed.chars().take(500).collect::<String>(),
                argv.first().unwrap_or(&"the interpreter")
            );
        }
        Ok(run.elapsed)
    }
}


/// Kills bubblewrap's process group; `--die-with-parent` and the pid namespace take
/// everything inside down with it.
fn kill(pid: libc::pid_t) {
    // SAFETY: plain kill(2) on the group we created for this child.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}
