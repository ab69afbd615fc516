//! The process tree below the supervisor, read from `/proc` (through [`crate::procfs`]).
//!
//! The supervisor is a child subreaper (`PR_SET_CHILD_SUBREAPER`): when a process below it loses its
//! parent, even one that called `setsid`, it is reparented to the supervisor instead of PID 1. That
//! lets a stop kill and reap *everything* a worker left behind. Orphans are reaped by their own pid
//! (never `waitpid(-1)`, which would steal exit statuses tokio is waiting for), and only pids that are
//! not in [`KnownChildren`].
//!
//! The async functions here scan `/proc` on the blocking pool, never on an async thread.

use std::collections::{HashMap, HashSet};

use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use crate::procfs::{self, ProcStat};
use crate::spawn::KnownChildren;

/// Runs a `/proc` scan on the blocking pool. If it could not finish (it panicked, or the runtime is
/// shutting down), the result is the empty one and a warning says so.
pub(crate) async fn blocking<R: Default + Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "a /proc scan did not finish");
        R::default()
    })
}

/// The pids of every descendant of `root` (not `root` itself) in `procs`.
pub fn descendants(procs: &[ProcStat], root: u32) -> Vec<u32> {
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

/// The processes a stop of worker `root` would end, as pids in `procs`: `root` itself (first), its
/// descendants, and every orphan reparented to this process `me` that `is_known` does not claim, with
/// its descendants (what [`kill_and_reap_orphans`] sweeps). Empty when `root` is not in `procs`.
pub fn worker_tree(
    procs: &[ProcStat],
    root: u32,
    me: u32,
    is_known: impl Fn(u32) -> bool,
) -> Vec<u32> {
    if !procs.iter().any(|p| p.pid == root) {
        return Vec::new();
    }
    let mut out = vec![root];
    out.extend(descendants(procs, root));
    for orphan in procs
        .iter()
        .filter(|p| p.ppid == me && p.pid != root && !is_known(p.pid))
    {
        out.push(orphan.pid);
        out.extend(descendants(procs, orphan.pid));
    }
    let mut seen = HashSet::new();
    out.retain(|pid| seen.insert(*pid));
    out
}

/// Sends SIGKILL to `root`'s process group and to every descendant of `root` (found by a `/proc` scan
/// on the blocking pool; that includes descendants that left the group with `setsid`).
pub async fn kill_tree(root: u32) {
    let scanned = blocking(move || {
        kill_tree_now(root);
        true
    })
    .await;
    if !scanned {
        // No blocking pool (the runtime is ending): the group at least.
        let _ = killpg(Pid::from_raw(root as i32), Signal::SIGKILL);
    }
}

/// [`kill_tree`], blocking. The scan comes first: once `root` is dead its children are reparented
/// and no longer found below it.
fn kill_tree_now(root: u32) {
    let procs = procfs::all_processes();
    let _ = killpg(Pid::from_raw(root as i32), Signal::SIGKILL);
    for pid in descendants(&procs, root) {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// Kills and reaps every child of this process that is not a [`KnownChildren`] pid (that is, every
/// orphan reparented to us), together with its descendants. Repeats until a scan finds none or
/// `deadline` passes, because killing an orphan reparents its own children to us. Returns how many
/// processes were reaped.
pub async fn kill_and_reap_orphans(known: &KnownChildren, deadline: std::time::Duration) -> usize {
    let until = tokio::time::Instant::now() + deadline;
    let mut reaped = 0;
    loop {
        let scan_known = known.clone();
        let (found, collected) = blocking(move || kill_and_reap_orphans_once(&scan_known)).await;
        reaped += collected;
        if found == 0 {
            return reaped;
        }
        if tokio::time::Instant::now() >= until {
            tracing::warn!(
                left = found,
                "orphaned worker descendants still present after the stop deadline"
            );
            return reaped;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// One pass of [`kill_and_reap_orphans`]: how many orphans it found, and how many of them it reaped.
/// Blocking.
fn kill_and_reap_orphans_once(known: &KnownChildren) -> (usize, usize) {
    let me = std::process::id();
    let procs = procfs::all_processes();
    let orphans: Vec<u32> = procs
        .iter()
        .filter(|p| p.ppid == me && !known.contains(p.pid))
        .map(|p| p.pid)
        .collect();
    for &orphan in &orphans {
        for pid in descendants(&procs, orphan) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        let _ = kill(Pid::from_raw(orphan as i32), Signal::SIGKILL);
    }
    let reaped = orphans.iter().filter(|&&pid| reap(pid)).count();
    (orphans.len(), reaped)
}

/// Reaps every zombie child of ours that is not a [`KnownChildren`] pid. Run on SIGCHLD; the scan
/// runs on the blocking pool.
pub async fn reap_zombie_orphans(known: &KnownChildren) -> usize {
    let known = known.clone();
    blocking(move || {
        let me = std::process::id();
        procfs::all_processes()
            .into_iter()
            .filter(|p| p.ppid == me && p.is_zombie() && !known.contains(p.pid))
            .filter(|p| reap(p.pid))
            .count()
    })
    .await
}

/// Kills whatever is still in process group `pgid` (its leader has exited) and reaps, by pid, those
/// members that were reparented to us and are not [`KnownChildren`] pids. Returns how many it reaped.
pub async fn kill_and_reap_group(pgid: u32, known: &KnownChildren) -> usize {
    if killpg(Pid::from_raw(pgid as i32), Signal::SIGKILL).is_err() {
        // ESRCH: nobody is left in the group.
        return 0;
    }
    let known = known.clone();
    blocking(move || {
        let me = std::process::id();
        let members: Vec<u32> = procfs::all_processes()
            .into_iter()
            .filter(|p| p.pgid == pgid && p.ppid == me && !known.contains(p.pid))
            .map(|p| p.pid)
            .collect();
        // A killed process takes a moment to become a zombie: give each one up to a second. One that
        // takes longer is left to the SIGCHLD reaper.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
        let mut left = members;
        let mut reaped = 0;
        while !left.is_empty() {
            left.retain(|&pid| {
                match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
                    Ok(nix::sys::wait::WaitStatus::StillAlive) => true,
                    Ok(_) => {
                        reaped += 1;
                        false
                    }
                    // Reaped meanwhile by someone else (the SIGCHLD reaper).
                    Err(_) => false,
                }
            });
            if left.is_empty() || std::time::Instant::now() >= until {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        reaped
    })
    .await
}

/// Collects the exit status of `pid` if it has exited. True when it was reaped.
fn reap(pid: u32) -> bool {
    matches!(
        waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)),
        Ok(status) if status != nix::sys::wait::WaitStatus::StillAlive
    )
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
    fn finds_descendants_across_generations() {
        let p = |pid, ppid| ProcStat {
            pid,
            comm: "sh".into(),
            state: 'S',
            ppid,
            pgid: pid,
            start_time: 0,
        };
        let procs = [p(10, 1), p(11, 10), p(12, 11), p(13, 1), p(14, 12)];
        let mut got = descendants(&procs, 10);
        got.sort();
        assert_eq!(got, vec![11, 12, 14]);
        assert!(descendants(&procs, 13).is_empty());
    }

    #[test]
    fn a_workers_tree_holds_its_descendants_and_the_unknown_orphans() {
        let p = |pid, ppid| ProcStat {
            pid,
            comm: "python3".into(),
            state: 'S',
            ppid,
            pgid: pid,
            start_time: 0,
        };
        // 1: the supervisor; 10: the worker, with a child and a grandchild; 20: an orphan the
        // worker left (reparented to 1), with a child; 30: a hook (a known child of 1); 40: not ours.
        let procs = [
            p(1, 0),
            p(10, 1),
            p(11, 10),
            p(12, 11),
            p(20, 1),
            p(21, 20),
            p(30, 1),
            p(40, 2),
        ];
        let known = |pid| pid == 10 || pid == 30;
        let tree = worker_tree(&procs, 10, 1, known);
        assert_eq!(tree[0], 10, "the worker first");
        let mut sorted = tree.clone();
        sorted.sort();
        assert_eq!(sorted, vec![10, 11, 12, 20, 21]);
        assert!(
            worker_tree(&procs, 99, 1, known).is_empty(),
            "no worker, no tree"
        );
    }
}
