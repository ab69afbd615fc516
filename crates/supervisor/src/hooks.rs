//! Lifecycle hooks: `after_healthy` runs after every successful (re)start, before READY;
//! `before_stop` runs before every worker stop (shutdown and each recycle).
//!
//! A hook is an argv (no shell), run with the server's environment plus `COGVISOR_PORT`,
//! `COGVISOR_WORKER_PID`, `COGVISOR_GENERATION` and `COGVISOR_REASON`. `${NAME}` of the three numbers
//! in an argument is replaced by its value; the reason, text that comes from a `/recycle` body or from
//! model code, is passed in the environment only: substituted into an argument, it would become part
//! of whatever a `sh -c` hook parses as shell code. It runs as a [`SupervisedChild`] in its own process
//! group, killed whole at the timeout (children included). Its output is logged line by line under its
//! name.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::child::{Exit, SupervisedChild};
use crate::spawn::Spawner;

/// What a failing hook does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPolicy {
    /// Log a warning and go on.
    Warn,
    /// An `after_healthy` failure counts as a failed start (`before_stop` is logged either way: the stop
    /// proceeds whatever it returns).
    Fail,
}

/// The hooks' settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HooksConfig {
    pub after_healthy: Option<Vec<String>>,
    pub before_stop: Option<Vec<String>>,
    pub timeout: Duration,
    pub on_failure: HookPolicy,
    /// The server's port, for `COGVISOR_PORT`.
    pub port: u16,
}

impl Default for HooksConfig {
    fn default() -> Self {
        Self {
            after_healthy: None,
            before_stop: None,
            timeout: Duration::from_secs(30),
            on_failure: HookPolicy::Warn,
            port: 5000,
        }
    }
}

/// How a hook run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookOutcome {
    Succeeded,
    /// It ran and failed, or could not be started; the text says which.
    Failed(String),
    /// Killed at the timeout.
    TimedOut(Duration),
}

impl HookOutcome {
    /// The label used in logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            HookOutcome::Succeeded => "succeeded",
            HookOutcome::Failed(_) => "failed",
            HookOutcome::TimedOut(_) => "timed_out",
        }
    }
}

impl std::fmt::Display for HookOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HookOutcome::Succeeded => f.write_str("succeeded"),
            HookOutcome::Failed(why) => write!(f, "failed: {why}"),
            HookOutcome::TimedOut(t) => {
                write!(f, "timed out after {:.1}s and was killed", t.as_secs_f64())
            }
        }
    }
}

/// The values a hook sees.
#[derive(Debug, Clone)]
pub struct HookVars {
    pub port: u16,
    pub worker_pid: Option<u32>,
    pub generation: u64,
    pub reason: String,
}

impl HookVars {
    /// The variables that may be written as `${NAME}` in an argument: numbers cogvisor writes itself,
    /// which cannot carry quotes or any other shell syntax.
    fn macros(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("COGVISOR_PORT", self.port.to_string()),
            (
                "COGVISOR_WORKER_PID",
                self.worker_pid.map(|p| p.to_string()).unwrap_or_default(),
            ),
            ("COGVISOR_GENERATION", self.generation.to_string()),
        ])
    }

    /// Every variable, for the hook's environment. `COGVISOR_REASON` is only here: its text comes from
    /// clients and model code.
    fn environment(&self) -> BTreeMap<&'static str, String> {
        let mut vars = self.macros();
        vars.insert("COGVISOR_REASON", self.reason.clone());
        vars
    }
}

/// Replaces `${NAME}` of the hook's macros in `arg`; other text (unknown `${...}`, and
/// `${COGVISOR_REASON}`, which a `sh -c` hook then expands from its environment as data) is kept.
pub fn expand(arg: &str, vars: &BTreeMap<&'static str, String>) -> String {
    let mut out = arg.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    out
}

/// Runs hook `name` to completion or its timeout. Never fails: the outcome says what happened. It is
/// spawned through `spawner`, so the orphan reaper leaves its exit status alone and it dies with us.
pub async fn run(
    spawner: &Spawner,
    name: &str,
    argv: &[String],
    vars: &HookVars,
    timeout: Duration,
) -> HookOutcome {
    let macros = vars.macros();
    let argv: Vec<String> = argv.iter().map(|a| expand(a, &macros)).collect();
    let Some((program, args)) = argv.split_first() else {
        return HookOutcome::Failed("the command is empty".into());
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(vars.environment())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = std::time::Instant::now();
    let child = match SupervisedChild::spawn(spawner, command).await {
        Ok(c) => c,
        Err(e) => return HookOutcome::Failed(format!("cannot run {program:?}: {e}")),
    };
    // At the timeout the whole tree is killed at once: a hook holds a start or a stop.
    let outcome = wait(name, child.with_deadline(timeout, Duration::ZERO)).await;
    let elapsed = started.elapsed();
    match &outcome {
        HookOutcome::Succeeded => {
            tracing::info!(hook = name, ?elapsed, "hook succeeded")
        }
        other => tracing::warn!(hook = name, ?elapsed, outcome = %other, "hook did not succeed"),
    }
    outcome
}

async fn wait(name: &str, mut child: SupervisedChild) -> HookOutcome {
    tracing::info!(hook = name, pid = child.pid(), "hook started");
    let mut readers = tokio::task::JoinSet::new();
    if let Some(out) = child.take_stdout() {
        readers.spawn(log_lines(name.to_string(), "stdout", BufReader::new(out)));
    }
    if let Some(err) = child.take_stderr() {
        readers.spawn(log_lines(name.to_string(), "stderr", BufReader::new(err)));
    }
    // The wait also kills what the hook left in its group, so its pipes close and nothing outlives it.
    let exited = child.wait().await;
    let outcome = match exited.exit {
        exit if exit.success() => HookOutcome::Succeeded,
        Exit::TimedOut(after) => HookOutcome::TimedOut(after),
        exit => HookOutcome::Failed(exit.phrase()),
    };
    // Output readers end when the pipes close; a grandchild that escaped the group could hold them,
    // so do not wait long.
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while readers.join_next().await.is_some() {}
    })
    .await;
    readers.abort_all();
    outcome
}

async fn log_lines<R: tokio::io::AsyncBufRead + Unpin>(
    hook: String,
    stream: &'static str,
    reader: R,
) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "cogvisor::hook", hook = %hook, stream, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> HookVars {
        HookVars {
            port: 5001,
            worker_pid: Some(42),
            generation: 3,
            reason: "rotate".into(),
        }
    }

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    fn spawner() -> Spawner {
        Spawner::start(crate::spawn::KnownChildren::default()).expect("spawner")
    }

    #[test]
    fn the_hooks_doc_names_every_variable() {
        let doc = include_str!("../../../docs/hooks.md");
        for name in vars().environment().keys() {
            assert!(
                doc.contains(&format!("`{name}`")),
                "docs/hooks.md does not describe {name}"
            );
        }
        for name in vars().macros().keys() {
            assert!(
                doc.contains(&format!("${{{name}}}")),
                "docs/hooks.md does not show ${{{name}}}"
            );
        }
        for key in [
            "hooks.after_healthy",
            "hooks.before_stop",
            "hooks.timeout",
            "hooks.on_failure",
        ] {
            assert!(doc.contains(key), "docs/hooks.md does not mention {key}");
        }
    }

    #[test]
    fn macros_expand_only_the_numbers() {
        let pairs = vars().macros();
        assert_eq!(
            expand(
                "http://localhost:${COGVISOR_PORT}/x?g=${COGVISOR_GENERATION}",
                &pairs
            ),
            "http://localhost:5001/x?g=3"
        );
        // The reason is never put into an argument: a `sh -c` hook expands it from its environment.
        assert_eq!(
            expand("${HOME}-${COGVISOR_REASON}-${COGVISOR_WORKER_PID}", &pairs),
            "${HOME}-${COGVISOR_REASON}-42"
        );
    }

    #[tokio::test]
    async fn a_reason_with_shell_syntax_reaches_a_shell_hook_as_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let pwned = dir.path().join("PWNED");
        let reason = format!(
            "x'; touch {}; '$(touch {})\"",
            pwned.display(),
            pwned.display()
        );
        // The way docs/hooks.md shows it, and the way a careless author might write it: both only read
        // the variable.
        let scripts = [
            format!("printf '%s' \"$COGVISOR_REASON\" > {}", out.display()),
            "echo '${COGVISOR_REASON}' ${COGVISOR_REASON} > /dev/null".to_string(),
        ];
        for script in &scripts {
            let outcome = run(
                &spawner(),
                "before_stop",
                &argv(&["sh", "-c", script]),
                &HookVars {
                    reason: reason.clone(),
                    ..vars()
                },
                Duration::from_secs(10),
            )
            .await;
            assert_eq!(outcome, HookOutcome::Succeeded, "{script}");
            assert!(!pwned.exists(), "the reason ran as shell code in {script}");
        }
        assert_eq!(std::fs::read_to_string(&out).expect("hook output"), reason);
    }

    #[tokio::test]
    async fn a_hook_sees_its_variables_in_the_environment_and_arguments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out");
        let script = format!(
            "echo \"$COGVISOR_PORT $COGVISOR_WORKER_PID $COGVISOR_GENERATION $COGVISOR_REASON $1 $2\" > {}",
            out.display()
        );
        let outcome = run(
            &spawner(),
            "after_healthy",
            &argv(&[
                "sh",
                "-c",
                &script,
                "sh",
                "${COGVISOR_GENERATION}",
                "${COGVISOR_REASON}",
            ]),
            &vars(),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(outcome, HookOutcome::Succeeded);
        let text = std::fs::read_to_string(&out).expect("hook output");
        assert_eq!(text.trim(), "5001 42 3 rotate 3 ${COGVISOR_REASON}");
    }

    #[tokio::test]
    async fn a_failing_hook_names_its_exit_code() {
        let outcome = run(
            &spawner(),
            "x",
            &argv(&["sh", "-c", "exit 7"]),
            &vars(),
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(outcome, HookOutcome::Failed("exited with code 7".into()));
    }

    #[tokio::test]
    async fn a_missing_program_fails_naming_it() {
        let outcome = run(
            &spawner(),
            "x",
            &argv(&["/no/such/hook"]),
            &vars(),
            Duration::from_secs(10),
        )
        .await;
        assert!(
            matches!(&outcome, HookOutcome::Failed(why) if why.contains("/no/such/hook")),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_hanging_hook_is_killed_with_its_children_at_the_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("child.pid");
        let script = format!("sleep 1000 & echo $! > {}; wait", pid_file.display());
        let started = std::time::Instant::now();
        let outcome = run(
            &spawner(),
            "x",
            &argv(&["sh", "-c", &script]),
            &vars(),
            Duration::from_millis(500),
        )
        .await;
        assert_eq!(outcome, HookOutcome::TimedOut(Duration::from_millis(500)));
        assert!(started.elapsed() < Duration::from_secs(10));
        let child: u32 = std::fs::read_to_string(&pid_file)
            .expect("child pid")
            .trim()
            .parse()
            .expect("pid");
        // The child was killed; it may linger as a zombie until its parent (gone) is reaped by init or
        // by us, so a dead or zombie state both count.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let stat = crate::procfs::read_stat(child);
            if stat.as_ref().is_none_or(|s| s.is_zombie()) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "hook child {child} still running: {stat:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
