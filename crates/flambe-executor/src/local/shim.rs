//! The job shim: `flambe __flambe-job DRIVER_PID COMMAND`, this same binary started
//! between the driver and a job's `bash -c COMMAND`. It is a child
//! subreaper (`PR_SET_CHILD_SUBREAPER`), so whatever the job forks, however
//! it forks (pipelines, `cmd &`, `setsid`, double forks, `env -i`), stays
//! below it once its own parent is gone. When bash ends, the shim kills and
//! reaps everything left below it, then exits as bash did. A job that left
//! nothing behind ends without a single look at `/proc`, where the driver
//! would otherwise scan every process's environment for the job's marker
//! (`kill_marked`, still the way when the shim itself was killed).
//!
//! The shim is in the job's process group, so the driver's SIGTERM to the
//! group reaches bash and its group directly; the shim lets it pass. If
//! the driver dies, its parent-death signal makes the shim kill the job.
//! The shim drops its own copies of the job's stdout and stderr, so that
//! the driver's pipes close with the job's last process.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::sync::atomic::{AtomicBool, Ordering};

/// The first argument that makes this binary a job shim.
const SHIM_ARG: &str = "__flambe-job";

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// This binary serves as the job shim ([`run_if_invoked`] is called first
/// thing in its `main`): local jobs are started through it. Without it
/// (a test harness, a library user) jobs run straight under bash and are
/// swept by their marker.
pub fn install() {
    INSTALLED.store(true, Ordering::Relaxed);
}

/// The command that runs `command` as a job: through the shim where it is
/// installed, else plain `bash -c`.
pub(super) fn job_command(command: &str) -> (tokio::process::Command, bool) {
    if INSTALLED.load(Ordering::Relaxed) {
        // /proc/self/exe, read in the child: this very binary, even if the
        // file was replaced (an upgrade, a rebuild) since the driver started.
        // No code runs between fork and exec (the shim arms its own
        // parent-death signal, checking the driver's pid), so the standard
        // library spawns it with posix_spawn: no copy of the driver's
        // page tables per trial.
        let mut std_cmd = std::process::Command::new("/proc/self/exe");
        std_cmd
            .arg0("flambe")
            .arg(SHIM_ARG)
            .arg(std::process::id().to_string())
            .arg(command);
        (tokio::process::Command::from(std_cmd), true)
    } else {
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg("-c").arg(command);
        (cmd, false)
    }
}

/// If this process was started as a job shim, run the job and return the
/// exit code to exit with (a job killed by a signal kills the shim with
/// the same signal instead). Otherwise `None`: go on as the command line.
pub fn run_if_invoked() -> Option<i32> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != SHIM_ARG {
        return None;
    }
    let driver = args
        .next()
        .and_then(|p| p.to_str()?.parse().ok())
        .unwrap_or(0);
    let command = args.next().unwrap_or_default();
    Some(run(driver, command))
}

/// Signals the shim waits for rather than being killed by.
fn waited_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset only write the set given.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

fn run(driver: libc::pid_t, command: OsString) -> i32 {
    let set = waited_signals();
    // SAFETY: plain syscalls on this single-threaded process's own state.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    // The driver died before the parent-death signal was armed (or this
    // was not started by a driver at all).
    if parent() != driver {
        return 128 + libc::SIGTERM;
    }
    // Bash must not inherit the shim's blocked signals (posix_spawn as the
    // standard library uses it on musl keeps them: a trial deaf to the
    // driver's SIGTERM was the result). A shim killed outright leaves bash
    // to the driver's marker sweep.
    let mut bash = std::process::Command::new("bash");
    bash.arg("-c").arg(&command);
    // SAFETY: sigemptyset and sigprocmask are async-signal-safe.
    unsafe {
        bash.pre_exec(|| {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
    let bash = match bash.spawn() {
        Ok(child) => child.id() as libc::pid_t,
        Err(e) => {
            eprintln!("flambe: cannot start bash for the trial: {e}");
            return 127;
        }
    };
    drop_standard_streams();
    let status = wait_for(bash, &set, driver);
    kill_everything_below();
    match status {
        Ended::Exited(code) => code,
        Ended::Signaled(sig) => die_by(sig),
        Ended::DriverGone => 128 + libc::SIGTERM,
    }
}

fn parent() -> libc::pid_t {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() }
}

/// Stdin, stdout and stderr on /dev/null: the job's pipes to the driver
/// close when the job's own last process closes them.
fn drop_standard_streams() {
    // SAFETY: open and dup2 on this process's own descriptors.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..=2 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
}

enum Ended {
    Exited(i32),
    Signaled(i32),
    DriverGone,
}

/// Wait for bash to end, reaping whatever is adopted meanwhile.
fn wait_for(bash: libc::pid_t, set: &libc::sigset_t, driver: libc::pid_t) -> Ended {
    loop {
        // SAFETY: sigwaitinfo writes only the info given.
        let sig = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::sigwaitinfo(set, &mut info)
        };
        if sig == libc::SIGCHLD {
            loop {
                let mut status = 0;
                // SAFETY: waitpid writes only the status given.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == bash {
                    return if libc::WIFSIGNALED(status) {
                        Ended::Signaled(libc::WTERMSIG(status))
                    } else {
                        Ended::Exited(libc::WEXITSTATUS(status))
                    };
                }
            }
        } else if sig > 0 && parent() != driver {
            return Ended::DriverGone;
        }
        // A stop signal with the driver still there went to the whole
        // group: bash has it too, and its end is what the shim waits for.
    }
}

/// The shim's children now (adopted ones included).
fn children() -> Vec<libc::pid_t> {
    let me = std::process::id();
    let parse = |text: &str| {
        text.split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect::<Vec<libc::pid_t>>()
    };
    if let Ok(text) = std::fs::read_to_string(format!("/proc/{me}/task/{me}/children")) {
        return parse(&text);
    }
    // Kernels without CONFIG_PROC_CHILDREN: every process's parent.
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = me.to_string();
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                let after_name = stat.rsplit(')').next().unwrap_or("");
                after_name.split_whitespace().nth(1) == Some(me.as_str())
            })
        })
        .collect()
}

/// SIGKILL every process below the shim and reap it, until it has no
/// child left: the children of a killed one are adopted and killed next.
fn kill_everything_below() {
    loop {
        let kids = children();
        for &kid in &kids {
            // SAFETY: plain syscall on a child of this process.
            unsafe {
                libc::kill(kid, libc::SIGKILL);
            }
        }
        let mut status = 0;
        let flags = if kids.is_empty() { libc::WNOHANG } else { 0 };
        // SAFETY: waitpid writes only the status given.
        let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
        if pid < 0 {
            return; // ECHILD: nothing is left.
        }
        if pid == 0 {
            // A child exists that the listing missed (it was being
            // adopted): look again shortly.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// End this process by `sig`, as the job ended, so that the driver sees
/// the same outcome; `128 + sig` where the signal does not kill.
fn die_by(sig: i32) -> i32 {
    // SAFETY: plain syscalls on this process; no core file is written.
    unsafe {
        let none = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &none);
        libc::signal(sig, libc::SIG_DFL);
        let mut only: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut only);
        libc::sigaddset(&mut only, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &only, std::ptr::null_mut());
        libc::raise(sig);
    }
    128 + sig
}
