//! One supervised child process: every process the supervisor starts (the worker, the hooks, the
//! health command) is a [`SupervisedChild`].
//!
//! * **Spawned in its own process group** (pgid = pid) by the [`Spawner`] thread, with SIGKILL as its
//!   parent-death signal and its pid in [`KnownChildren`] until it is reaped.
//! * **An optional deadline** ([`SupervisedChild::with_deadline`]): when it passes, the whole tree is
//!   ended by [`terminate_tree`] and the exit is [`Exit::TimedOut`].
//! * **Killing the tree**: SIGTERM to the group, then, in one `select!` against the exit, SIGKILL to
//!   the group and every descendant (found in `/proc`, so `setsid` daemons too) when the grace passes.
//! * **Reaped by pid**: tokio's wait collects the child's own status, and only then does its pid leave
//!   [`KnownChildren`]; what is left of its group is killed and reaped by pid
//!   ([`process_tree::kill_and_reap_group`]), never with `waitpid(-1)`.
//! * **The exit described**: [`Exit`] (exit code, signal, timed out) and [`ChildExit`], which names the
//!   command: `"sh" exited with code 3`, `"sleep" timed out after 2s and was killed`.

use std::future::Future;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};

use crate::process_tree;
use crate::spawn::{KnownChildren, SpawnFailure, Spawner};

/// How a child process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// Its deadline passed (after this long) and its tree was killed.
    TimedOut(Duration),
    /// `wait()` itself failed, or the status said neither code nor signal.
    Unknown(String),
}

impl Exit {
    pub fn from_status(status: std::process::ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit::Code(code),
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Unknown(format!("{status}")),
        }
    }

    /// Exit code 0.
    pub fn success(&self) -> bool {
        *self == Exit::Code(0)
    }

    /// The exit as the predicate of a sentence whose subject is the command: `exited with code 3`,
    /// `was killed by signal SIGKILL (9)`, `timed out after 2s and was killed`.
    pub fn phrase(&self) -> String {
        match self {
            Exit::Code(code) => format!("exited with code {code}"),
            Exit::Signal(sig) => format!("was killed by {}", signal_name(*sig)),
            Exit::TimedOut(after) => format!("timed out after {after:?} and was killed"),
            Exit::Unknown(e) => format!("ended in an unknown way ({e})"),
        }
    }
}

/// `signal SIGKILL (9)`, or `signal 99` for a number that names no signal.
fn signal_name(sig: i32) -> String {
    match Signal::try_from(sig) {
        Ok(signal) => format!("signal {} ({sig})", signal.as_str()),
        Err(_) => format!("signal {sig}"),
    }
}

/// The short form, as a noun: `exit code 3`, `killed by signal SIGKILL (9)`, `timed out after 2s`.
impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(code) => write!(f, "exit code {code}"),
            Exit::Signal(sig) => write!(f, "killed by {}", signal_name(*sig)),
            Exit::TimedOut(after) => write!(f, "timed out after {after:?}"),
            Exit::Unknown(e) => write!(f, "unknown exit ({e})"),
        }
    }
}

/// How one command ended, naming it: `"sh" exited with code 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildExit {
    /// The program, as it was given to the command.
    pub command: String,
    pub exit: Exit,
}

impl std::fmt::Display for ChildExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {}", self.command, self.exit.phrase())
    }
}

/// When a child must have ended, and how long its tree gets between SIGTERM and SIGKILL then.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: tokio::time::Instant,
    after: Duration,
    grace: Duration,
}

/// A child process the supervisor started: its own process group, an optional deadline, and a wait that
/// reaps it by pid and describes its exit.
#[derive(Debug)]
pub struct SupervisedChild {
    child: tokio::process::Child,
    pid: u32,
    command: String,
    known: KnownChildren,
    deadline: Option<Deadline>,
    /// Set once the exit status has been collected.
    reaped: bool,
}

impl SupervisedChild {
    /// Spawns `command` through the spawner thread, in its own process group.
    pub async fn spawn(
        spawner: &Spawner,
        command: tokio::process::Command,
    ) -> Result<Self, SpawnFailure> {
        let name = command
            .as_std()
            .get_program()
            .to_string_lossy()
            .into_owned();
        let child = spawner.spawn(command).await?;
        // A child that has not been waited for always has its pid.
        let pid = child.id().ok_or_else(|| {
            SpawnFailure::Io(std::io::Error::other("the spawned process has no pid"))
        })?;
        Ok(Self {
            child,
            pid,
            command: name,
            known: spawner.known().clone(),
            deadline: None,
            reaped: false,
        })
    }

    /// Ends the child's tree `after` from now: SIGTERM to its group, and SIGKILL to the group and every
    /// descendant `grace` later (at once when `grace` is zero). Its exit is then [`Exit::TimedOut`].
    pub fn with_deadline(mut self, after: Duration, grace: Duration) -> Self {
        self.deadline = Some(Deadline {
            at: tokio::time::Instant::now() + after,
            after,
            grace,
        });
        self
    }

    /// Its pid, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The program it runs.
    pub fn command(&self) -> &str {
        &self.command
    }

    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Waits for the child itself to exit (ending its tree at the deadline, if it has one) and reaps
    /// it by pid. Its group is left alone: for the worker, the stop's sweep takes care of it
    /// ([`crate::stop`]). Call it once.
    pub async fn wait_for_exit(&mut self) -> Exit {
        let pid = self.pid;
        let exit = {
            let mut wait = Box::pin(self.child.wait());
            match self.deadline {
                None => from_wait(wait.await),
                Some(deadline) => {
                    tokio::select! {
                        status = &mut wait => from_wait(status),
                        () = tokio::time::sleep_until(deadline.at) => {
                            if terminate_tree(pid, deadline.grace, &mut wait).await.is_none() {
                                let _ = wait.await;
                            }
                            Exit::TimedOut(deadline.after)
                        }
                    }
                }
            }
        };
        // Reaped: nobody can take its status any more, so the orphan reaper may have the pid back.
        self.reaped = true;
        self.known.forget(pid);
        exit
    }

    /// Waits for the child to exit (see [`wait_for_exit`](Self::wait_for_exit)), then kills and reaps
    /// whatever it left in its process group, so nothing it started in the group outlives it.
    pub async fn wait(mut self) -> ChildExit {
        let exit = self.wait_for_exit().await;
        let reaped = process_tree::kill_and_reap_group(self.pid, &self.known).await;
        if reaped > 0 {
            tracing::debug!(pid = self.pid, command = %self.command, reaped, "reaped what the child left in its group");
        }
        ChildExit {
            command: std::mem::take(&mut self.command),
            exit,
        }
    }
}

/// A child dropped before it was reaped (its wait was cancelled): its whole group is killed, not only
/// the leader, and its pid leaves [`KnownChildren`], since nobody waits for its status any more (tokio
/// reaps it in the background; the orphan reaper may too).
impl Drop for SupervisedChild {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = killpg(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
            self.known.forget(self.pid);
        }
    }
}

fn from_wait(status: std::io::Result<std::process::ExitStatus>) -> Exit {
    match status {
        Ok(status) => Exit::from_status(status),
        Err(e) => Exit::Unknown(format!("waiting for it failed: {e}")),
    }
}

/// Ends the process tree led by `pid` (also its process group id), as nextest ends a test: SIGTERM to
/// the group, then one `select!` between `exited` and the grace; if the grace passes first, SIGKILL to
/// the group and to every descendant, including those that left the group. A zero grace sends SIGKILL
/// at once.
///
/// Returns the output of `exited` when it completed within the grace, `None` after a SIGKILL: the
/// caller then waits for `exited` itself (with whatever bound it wants).
pub async fn terminate_tree<F>(pid: u32, grace: Duration, exited: &mut F) -> Option<F::Output>
where
    F: Future + Unpin,
{
    if !grace.is_zero() {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGTERM);
        // A stopped process (SIGSTOP, a debugger's SIGTSTP) keeps SIGTERM pending until it runs
        // again: continue the group so the grace is not waited for nothing. Harmless to a running one.
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGCONT);
        tokio::select! {
            output = &mut *exited => return Some(output),
            () = tokio::time::sleep(grace) => {}
        }
    }
    process_tree::kill_tree(pid).await;
    None
}

#[cfg(test)]
mod tests {
    use std::process::Stdio;

    use tokio::io::{AsyncBufReadExt, BufReader};

    use super::*;

    fn spawner() -> Spawner {
        Spawner::start(KnownChildren::default()).expect("spawner")
    }

    fn sh(script: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("sh");
        command
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        command
    }

    /// The first line the child prints.
    async fn first_line(child: &mut SupervisedChild) -> String {
        let out = child.take_stdout().expect("stdout piped");
        let mut lines = BufReader::new(out).lines();
        tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("the child printed nothing for 10 s")
            .expect("read")
            .expect("a line")
    }

    /// Waits until `pid` has no `/proc` entry: it was killed and reaped.
    async fn assert_gone(pid: u32) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while crate::procfs::read_stat(pid).is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "process {pid} is still there: {:?}",
                crate::procfs::read_stat(pid)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[test]
    fn exits_are_described_with_and_without_the_command() {
        let named = |exit| ChildExit {
            command: "sh".into(),
            exit,
        };
        assert_eq!(Exit::Code(3).to_string(), "exit code 3");
        assert_eq!(
            named(Exit::Code(3)).to_string(),
            r#""sh" exited with code 3"#
        );
        assert_eq!(Exit::Signal(9).to_string(), "killed by signal SIGKILL (9)");
        assert_eq!(
            named(Exit::Signal(15)).to_string(),
            r#""sh" was killed by signal SIGTERM (15)"#
        );
        assert_eq!(Exit::Signal(99).to_string(), "killed by signal 99");
        assert_eq!(
            named(Exit::TimedOut(Duration::from_secs(2))).to_string(),
            r#""sh" timed out after 2s and was killed"#
        );
        assert!(Exit::Code(0).success());
        assert!(!Exit::Signal(0).success());
    }

    #[tokio::test]
    async fn an_exit_code_is_reported_and_the_pid_forgotten() {
        let spawner = spawner();
        let child = SupervisedChild::spawn(&spawner, sh("exit 3"))
            .await
            .expect("spawn");
        let pid = child.pid();
        assert!(spawner.known().contains(pid));
        let exit = child.wait().await;
        assert_eq!(exit.exit, Exit::Code(3));
        assert_eq!(exit.to_string(), r#""sh" exited with code 3"#);
        assert!(!spawner.known().contains(pid));
    }

    #[tokio::test]
    async fn an_exit_by_signal_names_the_signal() {
        let child = SupervisedChild::spawn(&spawner(), sh("kill -SEGV $$"))
            .await
            .expect("spawn");
        let exit = child.wait().await;
        assert_eq!(exit.exit, Exit::Signal(11));
        assert_eq!(
            exit.to_string(),
            r#""sh" was killed by signal SIGSEGV (11)"#
        );
    }

    #[tokio::test]
    async fn it_runs_in_its_own_process_group() {
        let mut child = SupervisedChild::spawn(&spawner(), sh("echo up; exec sleep 30"))
            .await
            .expect("spawn");
        assert_eq!(first_line(&mut child).await, "up");
        let stat = crate::procfs::read_stat(child.pid()).expect("child in /proc");
        assert_eq!(stat.pgid, child.pid());
        let child = child.with_deadline(Duration::ZERO, Duration::ZERO);
        assert!(matches!(child.wait().await.exit, Exit::TimedOut(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_is_described_with_its_length() {
        // Paused time: the 2 s pass at once, while the real `sleep` is still running.
        let child = SupervisedChild::spawn(&spawner(), sh("exec sleep 30"))
            .await
            .expect("spawn")
            .with_deadline(Duration::from_secs(2), Duration::ZERO);
        let exit = child.wait().await;
        assert_eq!(exit.exit, Exit::TimedOut(Duration::from_secs(2)));
        assert_eq!(
            exit.to_string(),
            r#""sh" timed out after 2s and was killed"#
        );
    }

    #[tokio::test]
    async fn a_child_that_exits_on_sigterm_is_not_killed() {
        let mut child = SupervisedChild::spawn(
            &spawner(),
            sh("trap 'exit 7' TERM; echo up; while :; do sleep 0.05; done"),
        )
        .await
        .expect("spawn");
        assert_eq!(first_line(&mut child).await, "up");
        let started = std::time::Instant::now();
        let pid = child.pid();
        let mut wait = Box::pin(child.wait_for_exit());
        let exited = terminate_tree(pid, Duration::from_secs(20), &mut wait).await;
        assert_eq!(exited, Some(Exit::Code(7)));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_child_that_ignores_sigterm_is_killed_after_the_grace() {
        let mut child = SupervisedChild::spawn(
            &spawner(),
            sh("trap '' TERM; echo up; while :; do sleep 0.05; done"),
        )
        .await
        .expect("spawn");
        assert_eq!(first_line(&mut child).await, "up");
        let grace = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let child = child.with_deadline(Duration::ZERO, grace);
        let exit = child.wait().await;
        assert_eq!(exit.exit, Exit::TimedOut(Duration::ZERO));
        assert!(
            started.elapsed() >= grace,
            "killed before the grace: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_child_dropped_unreaped_takes_its_group_with_it() {
        let spawner = spawner();
        let mut child = SupervisedChild::spawn(
            &spawner,
            sh("sleep 1000 </dev/null >/dev/null & echo $!; wait"),
        )
        .await
        .expect("spawn");
        let grandchild: u32 = first_line(&mut child).await.parse().expect("pid");
        let pid = child.pid();
        drop(child);
        assert!(!spawner.known().contains(pid));
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while crate::procfs::read_stat(grandchild).is_some_and(|s| !s.is_zombie()) {
            assert!(
                std::time::Instant::now() < until,
                "the group survived the drop"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_grandchild_in_the_group_is_killed_and_reaped_with_it() {
        // Orphans must come to us to be reaped by us, as they come to the supervisor.
        process_tree::become_subreaper().expect("subreaper");
        let mut child = SupervisedChild::spawn(
            &spawner(),
            sh("sleep 1000 </dev/null >/dev/null & echo $!; exit 0"),
        )
        .await
        .expect("spawn");
        let grandchild: u32 = first_line(&mut child).await.parse().expect("pid");
        let exit = child.wait().await;
        assert_eq!(exit.exit, Exit::Code(0));
        assert_gone(grandchild).await;
    }

    #[tokio::test]
    async fn at_the_deadline_a_descendant_that_left_the_group_is_killed_too() {
        let mut child = SupervisedChild::spawn(
            &spawner(),
            sh("setsid sleep 1000 </dev/null >/dev/null & echo $!; wait"),
        )
        .await
        .expect("spawn");
        let daemon: u32 = first_line(&mut child).await.parse().expect("pid");
        // `$!` is printed right after the fork, maybe before the daemon has called setsid.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while crate::procfs::read_stat(daemon).map(|s| s.pgid) != Some(daemon) {
            assert!(std::time::Instant::now() < deadline, "no setsid");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let exit = child
            .with_deadline(Duration::ZERO, Duration::ZERO)
            .wait()
            .await;
        assert!(matches!(exit.exit, Exit::TimedOut(_)), "{exit}");
        // Killed; it was the shell's child, so whoever reaps it (init, or us as a subreaper), it ends.
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while crate::procfs::read_stat(daemon).is_some_and(|s| !s.is_zombie()) {
            assert!(std::time::Instant::now() < until, "the daemon survived");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
