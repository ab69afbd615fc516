//! The process tree below the supervisor, read from `/proc`.
//!
//! The supervisor is a child subreaper (`PR_SET_CHILD_SUBREAPER`): when a process below it loses its
//! parent, even one that called `setsid`, it is reparented to the supervisor instead of PID 1. That
//! lets a stop kill and reap *everything* a worker left behind. Orphans are reaped by their own pid
//! (never `waitpid(-1)`, which would steal exit statuses tokio is waiting for), and only pids that are
//! not in [`KnownChildren`].

use std::collections::{HashMap, HashSet};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use crate::spawn::KnownChildren;

/// One process as `/proc/<pid>/stat` describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    /// The state letter (`R`, `S`, `Z`, ...).
    pub state: char,
}

/// Parses the content of `/proc/<pid>/stat`. The command name is in parentheses and may itself contain
/// spaces and parentheses, so the fields are read after the *last* `)`.
pub fn parse_stat(text: &str) -> Option<ProcInfo> {
    let pid = text.split_whitespace().next()?.parse().ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some(ProcInfo {
        pid,
        ppid,
        pgid,
        state,
    })
}

/// Every process visible in `/proc`. Processes that vanish while being read are skipped.
pub fn all_processes() -> Vec<ProcInfo> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|text| parse_stat(&text))
        .collect()
}

/// The pids of every descendant of `root` (not `root` itself) in `procs`.
pub fn descendants(procs: &[ProcInfo], root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    let mut seen = HashSet::from([root]);
    while let Some(pid) = stack.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            if seen.insert(child) {
                out.push(child);
                stack.push(child);
            }
        }
    }
    out
}

/// Sends SIGKILL to every descendant of `root` and to `root`'s process group.
pub fn kill_tree(root: u32) {
    let procs = all_processes();
    let _ = nix::sys::signal::killpg(Pid::from_raw(root as i32), Signal::SIGKILL);
    for pid in descendants(&procs, root) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// Kills and reaps every child of this process that is not a [`KnownChildren`] pid (that is, every
/// orphan reparented to us), together with its descendants. Repeats until a scan finds none or
/// `deadline` passes, because killing an orphan reparents its own children to us. Returns how many
/// processes were reaped.
pub async fn kill_and_reap_orphans(known: &KnownChildren, deadline: std::time::Duration) -> usize {
    let me = std::process::id();
    let until = tokio::time::Instant::now() + deadline;
    let mut reaped = 0;
    loop {
        let procs = all_processes();
        let orphans: Vec<ProcInfo> = procs
            .iter()
            .filter(|p| p.ppid == me && !known.contains(p.pid))
            .copied()
            .collect();
        if orphans.is_empty() {
            return reaped;
        }
        for orphan in &orphans {
            for pid in descendants(&procs, orphan.pid) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            let _ = kill(Pid::from_raw(orphan.pid as i32), Signal::SIGKILL);
        }
        for orphan in &orphans {
            if reap(orphan.pid) {
                reaped += 1;
            }
        }
        if tokio::time::Instant::now() >= until {
            tracing::warn!(
                left = orphans.len(),
                "orphaned worker descendants still present after the stop deadline"
            );
            return reaped;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Reaps every zombie child of ours that is not a [`KnownChildren`] pid. Cheap; run on SIGCHLD.
pub fn reap_zombie_orphans(known: &KnownChildren) -> usize {
    let me = std::process::id();
    all_processes()
        .into_iter()
        .filter(|p| p.ppid == me && p.state == 'Z' && !known.contains(p.pid))
        .filter(|p| reap(p.pid))
        .count()
}

/// Collects the exit status of `pid` if it has exited. True when it was reaped.
fn reap(pid: u32) -> bool {
    matches!(
        waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)),
        Ok(status) if status != nix::sys::wait::WaitStatus::StillAlive
    )
}

/// How a helper process (a hook, a health command) ended, for logs and error texts.
pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "ended with an unknown status".into(),
    }
}

/// Whether a process with this pid exists (a zombie counts).
pub fn is_alive(pid: u32) -> bool {
    kill(Pid::from_raw(pid as i32), None).is_ok()
}

/// Makes this process a child subreaper.
pub fn become_subreaper() -> Result<(), nix::Error> {
    nix::sys::prctl::set_child_subreaper(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_with_parentheses_in_the_name() {
        let text = "4242 (we (ird) name) S 1 4240 4240 0 -1 4194560 100 0 0 0";
        assert_eq!(
            parse_stat(text),
            Some(ProcInfo {
                pid: 4242,
                ppid: 1,
                pgid: 4240,
                state: 'S'
            })
        );
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn finds_descendants_across_generations() {
        let p = |pid, ppid| ProcInfo {
            pid,
            ppid,
            pgid: pid,
            state: 'S',
        };
        let procs = [p(10, 1), p(11, 10), p(12, 11), p(13, 1), p(14, 12)];
        let mut got = descendants(&procs, 10);
        got.sort();
        assert_eq!(got, vec![11, 12, 14]);
        assert!(descendants(&procs, 13).is_empty());
    }

    #[test]
    fn reads_our_own_process() {
        let me = std::process::id();
        let procs = all_processes();
        let mine = procs
            .iter()
            .find(|p| p.pid == me)
            .expect("our own pid is in /proc");
        assert_eq!(mine.ppid, std::os::unix::process::parent_id());
    }
}
