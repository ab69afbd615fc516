//! One worker generation: spawn, the init/ready handshake, and the tasks that read its channels.
//!
//! ```text
//!  spawn (own group, pdeathsig) ─► init ─► accept N slot sockets ─┬─► ready ─► READY
//!        │                                 read control frames ──┘     │
//!        └─ exit watcher: child.wait() ─► WorkerExit ─────────────────►└─► fail in-flight, sweep tree
//! ```
//!
//! Worker death is noticed from the process exit itself ([`WorkerExit`] from `wait()`), not from pipe
//! EOF alone: a child the model forked can hold the pipes open.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use cogvisor_protocol::{
    ControlRequest, ControlResponse, FrameCodec, Mode, SetupMode, SlotId, SlotRequest,
    SlotResponse, SlotSocket, PROTOCOL_VERSION,
};
use futures::{SinkExt, StreamExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixListener;
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::{watch, Mutex};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::scope::Scope;

use crate::child::{Exit, SupervisedChild};
use crate::config::SupervisorConfig;
use crate::model_output;
use crate::runtime_dir::RuntimeDir;
use crate::spawn::Spawner;

/// Variables the server reads that model code must never see: the admin token that authorises
/// `POST /recycle` and the bearer token every webhook carries. The worker (and so everything the model
/// starts) is spawned without them.
pub const SECRETS_KEPT_FROM_THE_MODEL: [&str; 2] = ["COGVISOR_ADMIN_TOKEN", "WEBHOOK_AUTH_TOKEN"];

pub(crate) type ControlWriter =
    FramedWrite<ChildStdin, FrameCodec<ControlResponse, ControlRequest>>;
pub(crate) type ControlReader =
    FramedRead<ChildStdout, FrameCodec<ControlResponse, ControlRequest>>;
pub(crate) type SlotWriter = FramedWrite<OwnedWriteHalf, FrameCodec<SlotResponse, SlotRequest>>;
pub(crate) type SlotReader = FramedRead<OwnedReadHalf, FrameCodec<SlotResponse, SlotRequest>>;

/// How the worker process ended ([`Exit`]: its Display is the short form, `exit code 3`,
/// `killed by signal SIGKILL (9)`, which predictions and `setup.logs` show).
pub type WorkerExit = Exit;

/// A live worker generation: its pid, channels and exit.
#[derive(Debug)]
pub struct Generation {
    pub number: u64,
    pub pid: u32,
    pub started_at: String,
    pub(crate) control: Mutex<Option<ControlWriter>>,
    pub(crate) slot_writers: Vec<Mutex<SlotWriter>>,
    pub(crate) exit: watch::Receiver<Option<WorkerExit>>,
    /// This generation's node in the cancellation tree (a child of the supervisor's): cancelled once
    /// the worker is stopped, which ends the watchers of every prediction it ran.
    pub(crate) token: CancellationToken,
    /// The last `heartbeat_ack` sequence number the worker sent ([`crate::heartbeat`]).
    pub(crate) heartbeat_acks: watch::Sender<u64>,
}

impl Generation {
    /// Sends one control message; false when the channel is gone or the write failed.
    pub(crate) async fn send_control(&self, message: ControlRequest) -> bool {
        let mut guard = self.control.lock().await;
        let Some(writer) = guard.as_mut() else {
            return false;
        };
        match tokio::time::timeout(Duration::from_secs(2), writer.send(message)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(generation = self.number, error = %e, "control channel write failed");
                *guard = None;
                false
            }
            Err(_) => {
                tracing::warn!(generation = self.number, "control channel write timed out");
                false
            }
        }
    }

    pub fn has_exited(&self) -> Option<WorkerExit> {
        self.exit.borrow().clone()
    }
}

/// What the worker said in `ready`.
#[derive(Debug, Clone)]
pub struct ReadyInfo {
    pub python_version: String,
    pub sdk_version: String,
    pub has_healthcheck: bool,
    pub schema: Option<serde_json::Value>,
}

/// Why a start-up failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind slot socket {path}: {source}")]
    Bind {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the worker with {python:?}: {error}")]
    Spawn { python: String, error: String },
    #[error("setup failed:\n{0}")]
    SetupFailed(String),
    #[error("worker exited during setup ({exit})")]
    Exited { exit: WorkerExit },
    #[error("setup timed out after {0:?}")]
    Timeout(Duration),
    #[error("worker reported a fatal error during setup: {0}")]
    Fatal(String),
    #[error("control channel failed during setup: {0}")]
    Channel(String),
}

/// A started generation with the channel readers still to be run.
pub struct Started {
    pub generation: Arc<Generation>,
    pub ready: ReadyInfo,
    pub control_reader: ControlReader,
    pub slot_readers: Vec<SlotReader>,
}

/// A start that failed, with the pid to clean up if a process was spawned.
pub struct FailedStart {
    pub error: StartError,
    pub pid: Option<u32>,
    pub exit: Option<watch::Receiver<Option<WorkerExit>>>,
}

/// Called with each `setup.logs` line as it arrives (see [`model_output`]).
pub trait SetupLog: Send + Sync {
    fn append(&self, text: &str);
}

/// One of the runtime's start-up milestones: a `setup.logs` line (the server's log has its own, richer
/// events for these, so here it is only a debug event).
fn milestone(log: &dyn SetupLog, text: &str) {
    tracing::debug!(target: "cogvisor", "{text}");
    log.append(&model_output::setup_line(
        model_output::RUNTIME_TARGET,
        text,
    ));
}

/// Which generation to start, how, and its node of the cancellation tree.
pub(crate) struct NewGeneration {
    pub(crate) number: u64,
    pub(crate) setup: SetupMode,
    /// A child of the supervisor's scope: its token becomes [`Generation::token`], its exit watcher
    /// runs on the tracker.
    pub(crate) scope: Scope,
}

/// Spawns generation `number` and runs it through setup.
pub(crate) async fn start(
    config: &SupervisorConfig,
    runtime: &RuntimeDir,
    spawner: &Spawner,
    NewGeneration {
        number,
        setup,
        scope,
    }: NewGeneration,
    log: &dyn SetupLog,
    on_spawned: impl FnOnce(u32, &str),
) -> Result<Started, FailedStart> {
    let fail = |error| FailedStart {
        error,
        pid: None,
        exit: None,
    };
    milestone(log, &model_output::version_milestone());
    milestone(log, model_output::MILESTONE_SLOT_TRANSPORT);
    // Bind every slot socket before the worker exists, so it can connect at once.
    let mut listeners = Vec::new();
    let mut sockets = Vec::new();
    for slot in 0..config.concurrency {
        let path = runtime.slot_socket(config.worker_index, number, slot);
        let _ = tokio::fs::remove_file(&path).await;
        let listener = UnixListener::bind(&path).map_err(|source| {
            fail(StartError::Bind {
                path: path.display().to_string(),
                source,
            })
        })?;
        listeners.push((listener, path.clone()));
        sockets.push(SlotSocket {
            slot: SlotId(slot),
            socket: path.display().to_string(),
        });
    }

    let mut command = tokio::process::Command::new(&config.python);
    for name in SECRETS_KEPT_FROM_THE_MODEL {
        command.env_remove(name);
    }
    command
        .args(["-u", "-m", "cogvisor_worker"])
        .current_dir(&config.model_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env("PYTHONPATH", python_path(config))
        .env("PYTHONUNBUFFERED", "1")
        .env("COGVISOR_GENERATION", number.to_string())
        // Inherited by everything the model starts: the worker's group guard finds daemons that left
        // the process group by it when the supervisor is SIGKILLed (python/cogvisor_worker/guard.py).
        .env(
            "COGVISOR_TREE_ID",
            tree_id(runtime.path(), config.worker_index, number),
        )
        .env("COGVISOR_WORKER_INDEX", config.worker_index.to_string())
        .envs(config.worker_env.iter().map(|(k, v)| (k, v)))
        .env(
            "COGVISOR_HEALTHCHECK_TIMEOUT",
            config.health_timeout.as_secs_f64().to_string(),
        );
    milestone(log, model_output::MILESTONE_SPAWNING);
    let mut child = SupervisedChild::spawn(spawner, command)
        .await
        .map_err(|e| {
            fail(StartError::Spawn {
                python: config.python.clone(),
                error: e.to_string(),
            })
        })?;
    let pid = child.pid();
    let started_at = crate::supervisor::now_rfc3339();
    on_spawned(pid, &started_at);
    tracing::info!(pid, generation = number, "worker spawned");

    let (stdin, stdout) = match (child.take_stdin(), child.take_stdout()) {
        (Some(i), Some(o)) => (i, o),
        // Both were requested with Stdio::piped(); if the OS gave none, the child is dropped here
        // and kill_on_drop ends it.
        _ => {
            return Err(fail(StartError::Channel(
                "the worker started without its stdin/stdout pipes".into(),
            )))
        }
    };
    let exit = watch_exit_in(&scope.tasks, child);
    let mut control = FramedWrite::new(stdin, FrameCodec::new());
    let mut reader: ControlReader = FramedRead::new(stdout, FrameCodec::new());

    let init = ControlRequest::Init {
        protocol_version: PROTOCOL_VERSION,
        generation: number,
        predictor_ref: config.predictor_ref.clone(),
        mode: config.mode,
        setup,
        runtime_dir: runtime.path().display().to_string(),
        slots: sockets,
        schema_refs: config.schema_refs.clone(),
    };
    let failed = |error| FailedStart {
        error,
        pid: Some(pid),
        exit: Some(exit.clone()),
    };
    if let Err(e) = control.send(init).await {
        // The worker may already be dead (a bad interpreter path, an import-time crash).
        let error = exit_error(&exit)
            .await
            .unwrap_or(StartError::Channel(e.to_string()));
        return Err(failed(error));
    }

    let handshake = async {
        let accept_all = async {
            let mut streams = Vec::new();
            for (listener, path) in &listeners {
                let (stream, _) = listener.accept().await.map_err(|e| {
                    StartError::Channel(format!("accept on {}: {e}", path.display()))
                })?;
                // Nobody else may connect later: the socket file goes as soon as the worker is in.
                let _ = tokio::fs::remove_file(path).await;
                streams.push(stream);
            }
            Ok::<_, StartError>(streams)
        };
        let read_ready = read_until_ready(&mut reader, log, &exit);
        tokio::try_join!(accept_all, read_ready)
    };
    let mut exit_rx = exit.clone();
    let outcome = tokio::select! {
        r = with_timeout(config.setup_timeout, handshake) => r,
        () = async { let _ = exit_rx.wait_for(Option::is_some).await; } => {
            // Drain what the worker wrote before dying (its traceback, `setup_failed`).
            let drained = tokio::time::timeout(Duration::from_millis(500), drain_setup(&mut reader, log)).await;
            let exit_now = exit.borrow().clone().unwrap_or(WorkerExit::Unknown("no status".into()));
            match drained {
                Ok(Some(error)) => Err(error),
                _ => Err(StartError::Exited { exit: exit_now }),
            }
        }
    };
    for (_, path) in &listeners {
        let _ = tokio::fs::remove_file(path).await;
    }
    match outcome {
        Ok((streams, ready)) => {
            let mut slot_writers = Vec::new();
            let mut slot_readers = Vec::new();
            for stream in streams {
                let (r, w) = stream.into_split();
                slot_readers.push(FramedRead::new(r, FrameCodec::new()));
                slot_writers.push(Mutex::new(FramedWrite::new(w, FrameCodec::new())));
            }
            Ok(Started {
                generation: Arc::new(Generation {
                    number,
                    pid,
                    started_at,
                    control: Mutex::new(Some(control)),
                    slot_writers,
                    exit,
                    token: scope.token,
                    heartbeat_acks: watch::Sender::new(0),
                }),
                ready,
                control_reader: reader,
                slot_readers,
            })
        }
        Err(error) => Err(failed(error)),
    }
}

async fn with_timeout<T>(
    timeout: Option<Duration>,
    fut: impl std::future::Future<Output = Result<T, StartError>>,
) -> Result<T, StartError> {
    match timeout {
        Some(t) => tokio::time::timeout(t, fut)
            .await
            .unwrap_or(Err(StartError::Timeout(t))),
        None => fut.await,
    }
}

/// After the control channel ended during setup: the exit, if the worker is exiting.
async fn exit_error(exit: &watch::Receiver<Option<WorkerExit>>) -> Option<StartError> {
    let mut exit = exit.clone();
    let waited = tokio::time::timeout(Duration::from_secs(1), exit.wait_for(Option::is_some))
        .await
        .ok()
        .and_then(|r| r.ok().and_then(|e| e.clone()));
    waited.map(|exit| StartError::Exited { exit })
}

/// Reads control frames until `ready`, appending logs. Any other terminal message is an error.
async fn read_until_ready(
    reader: &mut ControlReader,
    log: &dyn SetupLog,
    exit: &watch::Receiver<Option<WorkerExit>>,
) -> Result<ReadyInfo, StartError> {
    loop {
        match reader.next().await {
            Some(Ok(ControlResponse::Ready {
                python_version,
                sdk_version,
                has_healthcheck,
                schema,
            })) => {
                return Ok(ReadyInfo {
                    python_version,
                    sdk_version,
                    has_healthcheck,
                    schema,
                })
            }
            Some(Ok(message)) => {
                if let Some(error) = setup_message(message, log) {
                    return Err(error);
                }
            }
            Some(Err(e)) => return Err(StartError::Channel(e.to_string())),
            None => {
                return Err(exit_error(exit).await.unwrap_or(StartError::Channel(
                    "worker closed its control channel".into(),
                )))
            }
        }
    }
}

/// After the worker exited during setup: reads what is left in the pipe. Returns the setup error the
/// worker reported, if it reported one.
async fn drain_setup(reader: &mut ControlReader, log: &dyn SetupLog) -> Option<StartError> {
    while let Some(Ok(message)) = reader.next().await {
        if let Some(error) = setup_message(message, log) {
            return Some(error);
        }
    }
    None
}

/// Handles one non-ready control message during setup; returns the error it reports, if any.
fn setup_message(message: ControlResponse, log: &dyn SetupLog) -> Option<StartError> {
    match message {
        ControlResponse::Log { source, data } => {
            model_output::log_setup_output(source, &data);
            log.append(&model_output::setup_output_lines(&data));
            None
        }
        ControlResponse::WorkerLog { level, message } => {
            model_output::log_worker_message(level, &message);
            if model_output::worker_message_in_setup_logs(level) {
                log.append(&model_output::setup_line(
                    model_output::WORKER_TARGET,
                    &message,
                ));
            }
            None
        }
        ControlResponse::SetupFailed { error } => Some(StartError::SetupFailed(error)),
        ControlResponse::Fatal { reason } => Some(StartError::Fatal(reason)),
        other => {
            tracing::warn!(message = ?other, "unexpected control message during setup");
            None
        }
    }
}

/// Owns the child and publishes its exit. The pid leaves [`crate::spawn::KnownChildren`] only after
/// it has been reaped, so the orphan reaper can never take its status. What the worker left in its
/// group is the stop's sweep's to end ([`crate::stop::sweep`]).
pub fn watch_exit(child: SupervisedChild) -> watch::Receiver<Option<WorkerExit>> {
    watch_exit_in(&TaskTracker::new(), child)
}

/// [`watch_exit`], its task on `tasks` (it ends once the child is reaped).
pub(crate) fn watch_exit_in(
    tasks: &TaskTracker,
    mut child: SupervisedChild,
) -> watch::Receiver<Option<WorkerExit>> {
    let (tx, rx) = watch::channel(None);
    tasks.spawn(async move {
        let exit = child.wait_for_exit().await;
        tracing::info!(pid = child.pid(), %exit, "worker exited");
        let _ = tx.send(Some(exit));
    });
    rx
}

/// The mark of one worker's process tree: unique per runtime directory and generation.
fn tree_id(runtime_dir: &std::path::Path, worker: u32, generation: u64) -> String {
    format!("{}#{worker}.{generation}", runtime_dir.display())
}

/// PYTHONPATH for the worker: our directories first, then whatever the environment had.
fn python_path(config: &SupervisorConfig) -> std::ffi::OsString {
    let mut parts: Vec<std::path::PathBuf> = config.python_path.clone();
    if let Some(existing) = std::env::var_os("PYTHONPATH") {
        parts.extend(std::env::split_paths(&existing));
    }
    std::env::join_paths(parts).unwrap_or_default()
}

/// Mode names for logs.
pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Predict => "predict",
        Mode::Train => "train",
    }
}
