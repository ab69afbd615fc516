//! The stop sequence on real processes: shutdown message → grace → SIGTERM → grace → SIGKILL, then
//! every descendant killed and reaped, even one that called `setsid`.
//!
//! Stand-in workers are small shell scripts, so this runs without Python.

use std::process::Stdio;
use std::time::Duration;

use cogvisor_supervisor::child::SupervisedChild;
use cogvisor_supervisor::spawn::{KnownChildren, Spawner};
use cogvisor_supervisor::stop::{stop_worker, StopOutcome};
use cogvisor_supervisor::worker::watch_exit;
use cogvisor_supervisor::{process_tree, procfs};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const GRACE: Duration = Duration::from_millis(300);

async fn spawn(spawner: &Spawner, script: &str) -> SupervisedChild {
    let mut command = tokio::process::Command::new("sh");
    command
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    SupervisedChild::spawn(spawner, command)
        .await
        .expect("spawn sh")
}

/// The lines a stand-in worker prints, read through one buffer (a second buffer would lose what
/// the first had already read ahead).
struct Lines(tokio::io::Lines<BufReader<tokio::process::ChildStdout>>);

impl Lines {
    fn of(child: &mut SupervisedChild) -> Self {
        Lines(BufReader::new(child.take_stdout().expect("stdout piped")).lines())
    }

    /// The next line, failing the test instead of hanging if none comes.
    async fn next(&mut self) -> String {
        let line = tokio::time::timeout(Duration::from_secs(10), self.0.next_line())
            .await
            .expect("the stand-in worker printed nothing for 10 s")
            .expect("read stdout");
        line.expect("stdout closed").trim().to_string()
    }
}

fn gone(pid: u32) -> bool {
    // Neither running nor a zombie: killed *and* reaped.
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The tests share one process: a stop sweeps up *every* unknown child of the process, so another
/// test's children would be swept too. One test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn setup() -> (Spawner, tokio::sync::MutexGuard<'static, ()>) {
    let guard = SERIAL.lock().await;
    process_tree::become_subreaper().expect("subreaper");
    (
        Spawner::start(KnownChildren::default()).expect("spawner"),
        guard,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_obeys_shutdown_stops_gracefully() {
    let (spawner, _serial) = setup().await;
    let mut child = spawn(&spawner, "echo ready; read line; exit 0").await;
    assert_eq!(Lines::of(&mut child).next().await, "ready");
    let pid = child.pid();
    let mut stdin = child.take_stdin().expect("stdin");
    let exit = watch_exit(child);
    let send = async move { stdin.write_all(b"shutdown\n").await.is_ok() };
    let outcome = stop_worker(pid, exit, GRACE, spawner.known(), send).await;
    assert_eq!(outcome, StopOutcome::Graceful);
    assert!(gone(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_ignores_shutdown_gets_sigterm() {
    let (spawner, _serial) = setup().await;
    let mut child = spawn(&spawner, "echo ready; exec sleep 1000").await;
    assert_eq!(Lines::of(&mut child).next().await, "ready");
    let pid = child.pid();
    let exit = watch_exit(child);
    let outcome = stop_worker(pid, exit, GRACE, spawner.known(), async { true }).await;
    assert_eq!(outcome, StopOutcome::Terminated);
    assert!(gone(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_ignores_sigterm_gets_sigkill() {
    let (spawner, _serial) = setup().await;
    let mut child = spawn(
        &spawner,
        "trap '' TERM; echo ready; while :; do sleep 0.05; done",
    )
    .await;
    assert_eq!(Lines::of(&mut child).next().await, "ready");
    let pid = child.pid();
    let exit = watch_exit(child);
    let outcome = stop_worker(pid, exit, GRACE, spawner.known(), async { false }).await;
    assert_eq!(outcome, StopOutcome::Killed);
    assert!(gone(pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descendants_in_other_sessions_are_killed_and_reaped() {
    let (spawner, _serial) = setup().await;
    // A daemon in its own session, and a plain child that survives its parent's exit.
    let mut child = spawn(
        &spawner,
        "setsid sleep 1000 </dev/null >/dev/null 2>&1 & echo $!; sleep 1000 </dev/null >/dev/null 2>&1 & echo $!; read line; exit 0",
    )
    .await;
    let mut lines = Lines::of(&mut child);
    let daemon: u32 = lines.next().await.parse().expect("daemon pid");
    let plain: u32 = lines.next().await.parse().expect("child pid");
    let pid = child.pid();
    // `$!` is printed right after the fork, possibly before the daemon has called setsid.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while procfs::all_processes()
        .iter()
        .find(|p| p.pid == daemon)
        .map(|p| p.pgid)
        != Some(daemon)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "daemon {daemon} never left the worker's session"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut stdin = child.take_stdin().expect("stdin");
    let exit = watch_exit(child);
    let send = async move { stdin.write_all(b"shutdown\n").await.is_ok() };
    let outcome = stop_worker(pid, exit, GRACE, spawner.known(), send).await;
    assert_eq!(outcome, StopOutcome::Graceful);
    for leftover in [pid, daemon, plain] {
        assert!(gone(leftover), "process {leftover} survived the stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_in_its_own_process_group() {
    let (spawner, _serial) = setup().await;
    let mut child = spawn(&spawner, "echo ready; exec sleep 1000").await;
    assert_eq!(Lines::of(&mut child).next().await, "ready");
    let pid = child.pid();
    let info = procfs::all_processes()
        .into_iter()
        .find(|p| p.pid == pid)
        .expect("child in /proc");
    assert_eq!(info.pgid, pid, "own process group");
    let me = procfs::all_processes()
        .into_iter()
        .find(|p| p.pid == std::process::id())
        .expect("self");
    assert_ne!(info.pgid, me.pgid);
    let exit = watch_exit(child);
    stop_worker(pid, exit, GRACE, spawner.known(), async { false }).await;
    assert!(gone(pid));
}
