//! A job's processes: its group, and everything that carries its marker
//! variable however it forked.

use std::time::Duration;
use tokio::process::Child;

/// How long a job gets after SIGTERM before SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(3);

/// The environment variable every process of a job inherits, whatever
/// it forks: how a job's processes are found once its leader is gone.
pub const MARKER_VAR: &str = "FLAMBE_OUT";

/// `FLAMBE_OUT=<out>`, the exact entry a job's processes carry.
pub fn marker_of(env: &[(String, String)]) -> Option<String> {
    env.iter()
        .find(|(k, _)| k == MARKER_VAR)
        .map(|(k, v)| format!("{k}={v}"))
}

/// This machine's processes (other than this one) whose environment holds
/// `marker`. A pipeline's members, `cmd &`, `setsid` and double forks all
/// inherit it, and it outlives the job's leader and its process group. A
/// process that replaces its whole environment (`env -i`) is not found.
fn marked_processes(marker: &[u8]) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            // Other users' processes are unreadable, zombies read empty.
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == marker))
        })
        .collect()
}

/// How many scans in a row must find nothing before the job counts as
/// gone, and the pause between them. A process in the middle of `execve`
/// shows an empty environment for a moment (the new image's is not laid
/// out yet), so one empty scan can miss it.
const EMPTY_SCANS: u32 = 3;
const SCAN_GAP: Duration = Duration::from_millis(5);

/// Kill every process that carries `marker`, looking again until none is
/// left (one may fork or exec while the others die). Returns whether any
/// was found. Blocks for a few milliseconds: call it off the async threads.
pub fn kill_marked(marker: &str) -> bool {
    let mut found = false;
    let mut empty_in_a_row = 0;
    for _ in 0..200 {
        let pids = marked_processes(marker.as_bytes());
        if pids.is_empty() {
            empty_in_a_row += 1;
            if empty_in_a_row == EMPTY_SCANS {
                break;
            }
            std::thread::sleep(SCAN_GAP);
            continue;
        }
        empty_in_a_row = 0;
        found = true;
        for pid in pids {
            // SAFETY: plain syscall on a pid read from /proc just now.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    found
}

pub(super) fn signal_group(pid: u32, signal: i32) {
    if pid > 0 {
        // SAFETY: plain syscall; the group id is the child's pid (process_group(0)).
        unsafe {
            libc::kill(-(pid as i32), signal);
        }
    }
}

/// SIGTERM to the job's group, SIGKILL after the grace period; returns how
/// the leader ended, if it ended within the grace period.
pub(super) async fn stop_group(child: &mut Child, pid: u32) -> Option<std::process::ExitStatus> {
    signal_group(pid, libc::SIGTERM);
    match tokio::time::timeout(KILL_GRACE, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            signal_group(pid, libc::SIGKILL);
            let _ = child.wait().await;
            None
        }
    }
}
