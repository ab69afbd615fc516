//! Memory bounds of a worker: `recycle.max_rss`, the resident set size of the worker's whole process
//! tree, and `recycle.max_gpu_memory`, the GPU memory of that tree as `nvidia-smi` reports it. A worker
//! past a bound gets a *planned* recycle ([`RecycleTrigger::MaxRss`], [`RecycleTrigger::MaxGpuMemory`]),
//! asked for the way `recycle.max_predictions` asks for its own: the machine's RECYCLING stops
//! admission at once, the recycle's drain lets in-flight predictions finish.
//!
//! ```text
//!  ready ─► baseline sample (right after setup) ─► install ─► READY
//!                 │                                  │
//!                 └─ past the bound already? ────────┴─► the bound becomes baseline + bound (no loop)
//!  every recycle.memory_check_interval: scan the tree (blocking pool), nvidia-smi when a GPU bound is
//!                                       set ─► past the limit? ─► RecycleRequested
//!  every prediction's end, before its slot is freed: the RSS of the pids of the last scan (a few small
//!                                       reads) ─► past the limit? ─► RecycleRequested, before the
//!                                       client has its response
//! ```
//!
//! **The tree** is what a stop of the worker would end ([`process_tree::worker_tree`]): the worker,
//! its descendants, and orphans reparented to the supervisor. Its RSS is the sum of each process's
//! `VmRSS` (so pages shared between processes, such as a forked child's copy-on-write pages, count
//! once per process: the sum can only overstate).
//!
//! **A worker already past a bound right after setup** would be replaced by one that is past it
//! too, forever. So its limit becomes what it used right after setup plus the bound: it is recycled
//! once it has grown by a whole bound, never for what its setup needs. An error names both numbers,
//! once per worker ([`Bound::after_setup`]).
//!
//! **GPU memory** comes from `nvidia-smi --query-compute-apps=pid,used_memory` (run as a supervised
//! child with a deadline), summed over the apps whose pid is in the tree. In a container with its own
//! pid namespace the driver reports the host's pids, which name nothing here: when none of the pids it
//! lists exists in this `/proc`, every app it lists counts (the container's GPUs are taken to be the
//! worker's) and the reason says so ([`attribute_gpu`]). Without a GPU (`nvidia-smi` missing, failing,
//! or listing none) the key is refused at start ([`detect_gpu`]).

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::child::SupervisedChild;
use crate::health_machine::{Event, RecycleTrigger};
use crate::process_tree;
use crate::spawn::{KnownChildren, Spawner};
use crate::supervisor::is_current;
use crate::worker::Generation;
use crate::{HealthStatus, Supervisor, SupervisorConfig};

/// The program that reports GPUs and their processes, looked up on PATH.
pub const NVIDIA_SMI: &str = "nvidia-smi";

/// How long one `nvidia-smi` run may take before its tree is killed.
pub const NVIDIA_SMI_TIMEOUT: Duration = Duration::from_secs(10);

/// Output of `nvidia-smi` kept; the rest is read and dropped (a line per GPU process is ~20 bytes).
const NVIDIA_SMI_OUTPUT_LIMIT: usize = 1 << 20;

/// Which memory a bound is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Rss,
    Gpu,
}

impl Resource {
    /// The setting.
    pub fn key(self) -> &'static str {
        match self {
            Resource::Rss => "recycle.max_rss",
            Resource::Gpu => "recycle.max_gpu_memory",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Resource::Rss => "RSS",
            Resource::Gpu => "GPU memory",
        }
    }

    pub fn trigger(self) -> RecycleTrigger {
        match self {
            Resource::Rss => RecycleTrigger::MaxRss,
            Resource::Gpu => RecycleTrigger::MaxGpuMemory,
        }
    }
}

/// `425.3 MiB (445906944 bytes)`.
pub fn describe_bytes(bytes: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    const GIB: f64 = (1u64 << 30) as f64;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.2} GiB ({bytes} bytes)", b / GIB)
    } else {
        format!("{:.1} MiB ({bytes} bytes)", b / MIB)
    }
}

fn processes(n: usize) -> String {
    if n == 1 {
        "1 process".into()
    } else {
        format!("{n} processes")
    }
}

/// One bound on one worker, fixed right after its setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub resource: Resource,
    /// The setting's value.
    pub configured: u64,
    /// What the worker used right after setup.
    pub baseline: u64,
    /// What recycles it: `configured`, or `baseline + configured` when the baseline is past it.
    pub limit: u64,
}

impl Bound {
    /// The bound of a worker that used `baseline` right after setup. A worker past the bound already
    /// gets `baseline + configured` as its limit, and an error says so: recycling it would start a
    /// worker past the bound again, forever.
    pub fn after_setup(resource: Resource, configured: u64, baseline: u64) -> Self {
        let bound = Self {
            resource,
            configured,
            baseline,
            limit: if baseline > configured {
                baseline.saturating_add(configured)
            } else {
                configured
            },
        };
        if bound.past_at_setup() {
            tracing::error!(
                key = resource.key(),
                baseline,
                configured,
                limit = bound.limit,
                "the worker's {} right after setup, {}, is past {} {}: recycling it would start a \
                 worker past the bound again. It is recycled only once it has grown past {} (its \
                 {} after setup plus the bound). Raise {}",
                resource.noun(),
                describe_bytes(baseline),
                resource.key(),
                describe_bytes(configured),
                describe_bytes(bound.limit),
                resource.noun(),
                resource.key(),
            );
        }
        bound
    }

    /// Its setup left the worker past the configured bound.
    pub fn past_at_setup(&self) -> bool {
        self.baseline > self.configured
    }

    /// An eighth past the limit: a worker of a pool that waits its turn to be recycled (and serves
    /// meanwhile, when no other worker can) is recycled at once past it, so the bound holds.
    pub fn ceiling(&self) -> u64 {
        self.limit.saturating_add(self.limit / 8)
    }

    /// The recycle's reason when `used` (by `count` processes) is past the limit.
    pub fn check(&self, used: u64, count: usize, note: &str) -> Option<String> {
        if used <= self.limit {
            return None;
        }
        let noun = self.resource.noun();
        let limit = if self.past_at_setup() {
            format!(
                "{}: its {noun} right after setup, {}, plus {} {}",
                describe_bytes(self.limit),
                describe_bytes(self.baseline),
                self.resource.key(),
                describe_bytes(self.configured)
            )
        } else {
            format!(
                "{} {}",
                self.resource.key(),
                describe_bytes(self.configured)
            )
        };
        Some(format!(
            "the worker's {noun} is {} in {}{note}, past {limit}",
            describe_bytes(used),
            processes(count)
        ))
    }
}

/// The RSS of a worker's tree at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeRss {
    /// The tree's pids, the worker first; empty when the worker is gone.
    pub pids: Vec<u32>,
    /// The sum of their `VmRSS`, in bytes.
    pub bytes: u64,
    /// How many of them had memory of their own (zombies and vanished processes have none).
    pub counted: usize,
}

/// Scans `/proc` for worker `root`'s tree and sums its RSS. Blocking: run it on the blocking pool.
pub fn scan_tree(root: u32, known: &KnownChildren) -> TreeRss {
    let procs = crate::procfs::all_processes();
    let pids = process_tree::worker_tree(&procs, root, std::process::id(), |pid| {
        pid != root && known.contains(pid)
    });
    let (bytes, counted) = rss_of(&pids);
    TreeRss {
        pids,
        bytes,
        counted,
    }
}

/// The summed RSS of `pids` and how many had any: one small read of `/proc/<pid>/status` each.
pub fn rss_of(pids: &[u32]) -> (u64, usize) {
    pids.iter()
        .filter_map(|&pid| crate::procfs::read_rss(pid))
        .fold((0u64, 0usize), |(sum, n), rss| {
            (sum.saturating_add(rss), n + 1)
        })
}

/// One process on a GPU, as `nvidia-smi --query-compute-apps=pid,used_memory` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuApp {
    pub pid: u32,
    /// Bytes; `None` when the driver says `[N/A]`.
    pub used: Option<u64>,
}

/// A line `nvidia-smi` printed that is not `pid, used_memory`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected line in nvidia-smi's output: {line:?}")]
pub struct GpuParseError {
    pub line: String,
}

/// Parses `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits`: one
/// `pid, MiB` line per process and GPU; no line (or a `No running processes found` notice) when none.
pub fn parse_compute_apps(text: &str) -> Result<Vec<GpuApp>, GpuParseError> {
    let mut apps = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let bad = || GpuParseError { line: line.into() };
        let Some((pid, used)) = line.split_once(',') else {
            if line.starts_with("No running") {
                continue;
            }
            return Err(bad());
        };
        let pid = pid.trim().parse().map_err(|_| bad())?;
        let used = match used.trim() {
            "[N/A]" | "N/A" | "[Not Supported]" => None,
            mib => Some(
                mib.parse::<u64>()
                    .ok()
                    .and_then(|m| m.checked_mul(1 << 20))
                    .ok_or_else(bad)?,
            ),
        };
        apps.push(GpuApp { pid, used });
    }
    Ok(apps)
}

/// How many GPUs `nvidia-smi -L` lists (`GPU 0: <name> (UUID: …)` lines; MIG devices below a GPU
/// are not counted again).
pub fn count_gpus(list: &str) -> usize {
    list.lines().filter(|l| l.starts_with("GPU ")).count()
}

/// The GPU memory of a worker's tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuUse {
    pub bytes: u64,
    /// The apps counted.
    pub apps: usize,
    /// No pid `nvidia-smi` listed exists in this pid namespace, so every app counted.
    pub every_app: bool,
}

/// The GPU memory of the apps whose pid is in `tree`. When `apps` is not empty but none of its pids
/// `exists` here (the driver reports the pids of another pid namespace: a container's host), every
/// app counts.
pub fn attribute_gpu(apps: &[GpuApp], tree: &[u32], exists: impl Fn(u32) -> bool) -> GpuUse {
    let every_app = !apps.is_empty() && !apps.iter().any(|a| exists(a.pid));
    let counted: Vec<&GpuApp> = apps
        .iter()
        .filter(|a| every_app || tree.contains(&a.pid))
        .collect();
    GpuUse {
        bytes: counted
            .iter()
            .filter_map(|a| a.used)
            .fold(0u64, u64::saturating_add),
        apps: counted.len(),
        every_app,
    }
}

/// Why `nvidia-smi` gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum NvidiaSmiError {
    #[error("{0} is not on PATH")]
    NotFound(String),
    #[error("cannot run nvidia-smi: {0}")]
    Spawn(String),
    #[error("`{program} {args}` {exit}{stderr}")]
    Failed {
        program: String,
        args: String,
        exit: String,
        stderr: String,
    },
}

/// Runs `program args` (`nvidia-smi`, or a stand-in in tests) as a supervised child with
/// [`NVIDIA_SMI_TIMEOUT`]; its stdout on success.
pub async fn run_nvidia_smi(
    spawner: &Spawner,
    program: &str,
    args: &[&str],
) -> Result<String, NvidiaSmiError> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match SupervisedChild::spawn(spawner, command).await {
        Ok(child) => child.with_deadline(NVIDIA_SMI_TIMEOUT, Duration::ZERO),
        Err(crate::spawn::SpawnFailure::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(NvidiaSmiError::NotFound(program.into()))
        }
        Err(e) => return Err(NvidiaSmiError::Spawn(e.to_string())),
    };
    let stdout = child.take_stdout();
    let stderr = child.take_stderr();
    // The pipes close when its group is gone; something that left the group could hold them open.
    let bound = NVIDIA_SMI_TIMEOUT + Duration::from_secs(1);
    let (exited, out, err) = tokio::join!(
        child.wait(),
        tokio::time::timeout(bound, read_capped(stdout)),
        tokio::time::timeout(bound, read_capped(stderr)),
    );
    let out = out.unwrap_or_default();
    if exited.exit.success() {
        return Ok(out);
    }
    let err = err.unwrap_or_default();
    let said = match (err.trim(), out.trim()) {
        ("", "") => String::new(),
        ("", text) | (text, _) => format!(": {}", text.chars().take(500).collect::<String>()),
    };
    Err(NvidiaSmiError::Failed {
        program: program.into(),
        args: args.join(" "),
        exit: exited.exit.phrase(),
        stderr: said,
    })
}

/// Reads `pipe` to its end, keeping the first [`NVIDIA_SMI_OUTPUT_LIMIT`] bytes.
async fn read_capped(pipe: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = pipe.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = NVIDIA_SMI_OUTPUT_LIMIT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// Whether a GPU is visible: `program -L` (`nvidia-smi -L`) runs and lists at least one. `Err` says
/// why not.
pub async fn detect_gpu(spawner: &Spawner, program: &str) -> Result<usize, String> {
    let list = run_nvidia_smi(spawner, program, &["-L"])
        .await
        .map_err(|e| e.to_string())?;
    match count_gpus(&list) {
        0 => Err(format!(
            "`{program} -L` lists no GPU{}",
            match list.trim() {
                "" => String::new(),
                text => format!(" ({})", text.chars().take(200).collect::<String>()),
            }
        )),
        n => Ok(n),
    }
}

/// The GPU apps of every visible GPU, from `nvidia-smi`.
async fn sample_gpu(spawner: &Spawner) -> Result<Vec<GpuApp>, String> {
    let text = run_nvidia_smi(
        spawner,
        NVIDIA_SMI,
        &[
            "--query-compute-apps=pid,used_memory",
            "--format=csv,noheader,nounits",
        ],
    )
    .await
    .map_err(|e| e.to_string())?;
    parse_compute_apps(&text).map_err(|e| e.to_string())
}

/// One sample of a worker's memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    pub rss: TreeRss,
    /// `None` without a GPU bound, or when `nvidia-smi` failed.
    pub gpu: Option<GpuUse>,
    /// Why `nvidia-smi` gave no reading, when it did not.
    pub gpu_error: Option<String>,
}

/// The memory bounds of the worker now serving, fixed from its sample right after setup, and what its
/// last scan found. Lives in the supervisor's state; replaced with each worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemoryWatch {
    /// The generation it is about.
    pub(crate) generation: u64,
    /// The tree's pids at the last scan: what the check at the end of a prediction reads.
    pub(crate) pids: Vec<u32>,
    pub(crate) rss: Option<Bound>,
    pub(crate) gpu: Option<Bound>,
    /// The tree's GPU memory at the last sample (for the metrics).
    pub(crate) last_gpu: Option<u64>,
}

impl MemoryWatch {
    /// The bounds of `generation`, from its sample right after setup. `None` when no bound is set.
    pub(crate) fn after_setup(
        config: &SupervisorConfig,
        generation: u64,
        baseline: &Sample,
    ) -> Option<Self> {
        if config.max_rss.is_none() && config.max_gpu_memory.is_none() {
            return None;
        }
        Some(Self {
            generation,
            pids: baseline.rss.pids.clone(),
            rss: config
                .max_rss
                .map(|max| Bound::after_setup(Resource::Rss, max, baseline.rss.bytes)),
            gpu: config.max_gpu_memory.map(|max| {
                let used = baseline.gpu.map_or(0, |g| g.bytes);
                Bound::after_setup(Resource::Gpu, max, used)
            }),
            last_gpu: baseline.gpu.map(|g| g.bytes),
        })
    }

    /// Takes in a periodic sample: the trigger and reason of the recycle it calls for, if any.
    pub(crate) fn sampled(&mut self, sample: &Sample) -> Option<(RecycleTrigger, String)> {
        if !sample.rss.pids.is_empty() {
            self.pids = sample.rss.pids.clone();
        }
        if let Some(gpu) = sample.gpu {
            self.last_gpu = Some(gpu.bytes);
        }
        self.check_rss(sample.rss.bytes, sample.rss.counted)
            .or_else(|| {
                let (bound, gpu) = (self.gpu.as_ref()?, sample.gpu?);
                let note = if gpu.every_app {
                    " (every process nvidia-smi lists: its pids are of another pid namespace)"
                } else {
                    ""
                };
                bound
                    .check(gpu.bytes, gpu.apps, note)
                    .map(|reason| (RecycleTrigger::MaxGpuMemory, reason))
            })
    }

    /// True when an RSS reading (or the last GPU sample) is past its bound's [`Bound::ceiling`].
    pub(crate) fn past_ceiling(&self, rss_bytes: u64) -> bool {
        let rss = self.rss.as_ref().is_some_and(|b| rss_bytes > b.ceiling());
        let gpu = match (self.gpu.as_ref(), self.last_gpu) {
            (Some(bound), Some(used)) => used > bound.ceiling(),
            _ => false,
        };
        rss || gpu
    }

    /// Checks an RSS reading against `recycle.max_rss`.
    pub(crate) fn check_rss(&self, bytes: u64, counted: usize) -> Option<(RecycleTrigger, String)> {
        let reason = self.rss.as_ref()?.check(bytes, counted, "")?;
        Some((RecycleTrigger::MaxRss, reason))
    }
}

/// The worker's memory as the metrics show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerMemory {
    /// The RSS of the worker's tree now; `None` without a worker.
    pub rss_bytes: Option<u64>,
    /// Its GPU memory at the last sample; `None` unless `recycle.max_gpu_memory` is set.
    pub gpu_bytes: Option<u64>,
}

impl Supervisor {
    /// Samples `generation` right after its setup: the bounds it will be held to. `None` when no
    /// memory bound is set (nothing is read).
    pub(crate) async fn memory_after_setup(&self, generation: &Generation) -> Option<MemoryWatch> {
        let config = &self.inner.config;
        if config.max_rss.is_none() && config.max_gpu_memory.is_none() {
            return None;
        }
        let sample = self.sample_memory(generation.pid).await;
        if let Some(error) = &sample.gpu_error {
            tracing::warn!(
                generation = generation.number,
                error,
                "cannot read the worker's GPU memory right after setup; its recycle.max_gpu_memory \
                 bound counts from 0"
            );
        }
        MemoryWatch::after_setup(config, generation.number, &sample)
    }

    /// Scans the tree of worker `pid` (on the blocking pool) and asks `nvidia-smi` when a GPU bound
    /// is set.
    async fn sample_memory(&self, pid: u32) -> Sample {
        let known = self.inner.spawner.known().clone();
        let rss = process_tree::blocking(move || scan_tree(pid, &known)).await;
        let (gpu, gpu_error) = match self.inner.config.max_gpu_memory {
            None => (None, None),
            Some(_) => match sample_gpu(&self.inner.spawner).await {
                Ok(apps) => {
                    let tree = rss.pids.clone();
                    let used = process_tree::blocking(move || {
                        attribute_gpu(&apps, &tree, |pid| {
                            std::path::Path::new(&format!("/proc/{pid}")).exists()
                        })
                    })
                    .await;
                    (Some(used), None)
                }
                Err(e) => (None, Some(e)),
            },
        };
        Sample {
            rss,
            gpu,
            gpu_error,
        }
    }

    /// Samples `generation` every `recycle.memory_check_interval` while it serves, on its node of the
    /// cancellation tree (it ends when the worker is stopped). Started only when a bound is set.
    pub(crate) fn spawn_memory_sampler(&self, generation: Arc<Generation>) {
        let period = self.inner.config.memory_check_interval;
        let this = self.clone();
        self.inner.scope.spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The last nvidia-smi failure, logged once until it changes or nvidia-smi answers again.
            let mut gpu_failing: Option<String> = None;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = generation.token.cancelled() => return,
                }
                let serving = {
                    let state = this.inner.lock();
                    if !is_current(&state, &generation) {
                        return;
                    }
                    matches!(
                        state.machine.state,
                        HealthStatus::Ready | HealthStatus::Unhealthy
                    )
                };
                if !serving {
                    continue;
                }
                let sample = tokio::select! {
                    s = this.sample_memory(generation.pid) => s,
                    _ = generation.token.cancelled() => return,
                };
                match (&sample.gpu_error, &gpu_failing) {
                    (Some(error), last) if last.as_ref() != Some(error) => {
                        tracing::warn!(
                            generation = generation.number,
                            error,
                            "cannot read the worker's GPU memory; recycle.max_gpu_memory is not \
                             checked until nvidia-smi answers"
                        );
                        gpu_failing = Some(error.clone());
                    }
                    (None, Some(_)) => {
                        tracing::info!(generation = generation.number, "nvidia-smi answers again");
                        gpu_failing = None;
                    }
                    _ => {}
                }
                this.memory_sampled(&generation, &sample);
            }
        });
    }

    /// Feeds a periodic sample to the current worker's bounds; past one, asks for the recycle.
    fn memory_sampled(&self, generation: &Generation, sample: &Sample) {
        let mut state = self.inner.lock();
        if !is_current(&state, generation) {
            return;
        }
        let verdict = match state.memory.as_mut() {
            Some(watch) if watch.generation == generation.number => watch.sampled(sample),
            _ => None,
        };
        if let Some((trigger, reason)) = verdict {
            let urgent = state
                .memory
                .as_ref()
                .is_some_and(|w| w.past_ceiling(sample.rss.bytes));
            self.raise_memory_recycle(&mut state, generation, trigger, reason, urgent);
        }
    }

    /// The RSS of `generation`'s tree as its last scan found it, read now: a few small reads, done at
    /// the end of every prediction while `recycle.max_rss` is set. `None` without that bound.
    pub(crate) fn rss_after_prediction(&self, generation: &Generation) -> Option<(u64, usize)> {
        self.inner.config.max_rss?;
        let pids = {
            let state = self.inner.lock();
            match state.memory.as_ref() {
                Some(w) if w.generation == generation.number && w.rss.is_some() => w.pids.clone(),
                _ => return None,
            }
        };
        Some(rss_of(&pids))
    }

    /// Tells the machine the worker is past its memory bound (a planned recycle, like
    /// `recycle.max_predictions`'s), with the state lock held; `urgent` when it is past the bound's
    /// [`Bound::ceiling`], where the machine does not let it keep growing while it awaits a turn.
    pub(crate) fn raise_memory_recycle(
        &self,
        state: &mut crate::state::State,
        generation: &Generation,
        trigger: RecycleTrigger,
        reason: String,
        urgent: bool,
    ) {
        // Checked every sample while it lasts: the machine's actions say what it decided.
        tracing::debug!(
            generation = generation.number,
            trigger = trigger.as_str(),
            reason,
            urgent,
            "worker past its memory bound"
        );
        let event = if urgent {
            Event::MemoryCeilingPassed { trigger, reason }
        } else {
            Event::RecycleRequested {
                trigger,
                reason,
                rerun_setup: false,
            }
        };
        self.inner.handle(state, event);
    }

    /// The worker's memory now, for the metrics: its tree's RSS (scanned on the blocking pool) and
    /// its GPU memory at the last sample.
    pub async fn worker_memory(&self) -> WorkerMemory {
        let (pid, gpu_bytes) = {
            let state = self.inner.lock();
            (
                state.worker.pid,
                state.memory.as_ref().and_then(|w| w.last_gpu),
            )
        };
        let Some(pid) = pid else {
            return WorkerMemory::default();
        };
        let known = self.inner.spawner.known().clone();
        let tree = process_tree::blocking(move || scan_tree(pid, &known)).await;
        WorkerMemory {
            rss_bytes: (!tree.pids.is_empty()).then_some(tree.bytes),
            gpu_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    fn sample(bytes: u64, pids: &[u32]) -> Sample {
        Sample {
            rss: TreeRss {
                pids: pids.to_vec(),
                bytes,
                counted: pids.len(),
            },
            gpu: None,
            gpu_error: None,
        }
    }

    fn config(max_rss: Option<u64>, max_gpu: Option<u64>) -> SupervisorConfig {
        SupervisorConfig {
            max_rss,
            max_gpu_memory: max_gpu,
            ..SupervisorConfig::new("/m", "predict.py:Predictor")
        }
    }

    #[test]
    fn no_bound_means_no_watch() {
        assert_eq!(
            MemoryWatch::after_setup(&config(None, None), 1, &sample(10 * MB, &[7])),
            None
        );
    }

    #[test]
    fn a_worker_under_the_bound_is_recycled_once_past_it_naming_both_numbers() {
        let mut w =
            MemoryWatch::after_setup(&config(Some(400 * MB), None), 3, &sample(25 * MB, &[7]))
                .expect("watch");
        assert_eq!(w.rss.as_ref().map(|b| b.limit), Some(400 * MB));
        assert_eq!(
            w.sampled(&sample(400 * MB, &[7])),
            None,
            "at the bound is not past it"
        );
        let (trigger, reason) = w.sampled(&sample(425 * MB, &[7, 8])).expect("past");
        assert_eq!(trigger, RecycleTrigger::MaxRss);
        assert_eq!(
            reason,
            "the worker's RSS is 405.3 MiB (425000000 bytes) in 2 processes, past recycle.max_rss \
             381.5 MiB (400000000 bytes)"
        );
        assert_eq!(
            w.pids,
            vec![7, 8],
            "the next end-of-prediction check reads the new tree"
        );
    }

    #[test]
    fn a_worker_an_eighth_past_its_bound_is_past_the_ceiling() {
        let w = MemoryWatch::after_setup(&config(Some(400 * MB), None), 1, &sample(25 * MB, &[7]))
            .expect("watch");
        assert!(
            !w.past_ceiling(425 * MB),
            "past the bound, under the ceiling"
        );
        assert!(!w.past_ceiling(450 * MB), "at the ceiling is not past it");
        assert!(w.past_ceiling(450 * MB + 1));
        // A worker whose limit is baseline + bound has its ceiling an eighth past that.
        let high =
            MemoryWatch::after_setup(&config(Some(100 * MB), None), 1, &sample(150 * MB, &[7]))
                .expect("watch");
        assert!(!high.past_ceiling(281 * MB) && high.past_ceiling(282 * MB));
    }

    #[test]
    fn a_worker_past_the_bound_right_after_setup_is_recycled_only_once_it_grew_by_the_bound() {
        let w = MemoryWatch::after_setup(&config(Some(100 * MB), None), 1, &sample(150 * MB, &[7]))
            .expect("watch");
        let bound = w.rss.clone().expect("rss bound");
        assert!(bound.past_at_setup());
        assert_eq!(bound.limit, 250 * MB);
        // No recycle for what setup needs, nor for growth below a whole bound: no loop.
        assert_eq!(w.check_rss(150 * MB, 1), None);
        assert_eq!(w.check_rss(250 * MB, 1), None);
        let (trigger, reason) = w
            .check_rss(251 * MB, 1)
            .expect("grew by more than the bound");
        assert_eq!(trigger, RecycleTrigger::MaxRss);
        assert!(reason.contains("right after setup, 143.1 MiB"), "{reason}");
        assert!(reason.contains("plus recycle.max_rss 95.4 MiB"), "{reason}");
    }

    #[test]
    fn a_vanished_tree_keeps_the_last_pids_and_recycles_nothing() {
        let mut w =
            MemoryWatch::after_setup(&config(Some(100 * MB), None), 1, &sample(10 * MB, &[7]))
                .expect("watch");
        assert_eq!(w.sampled(&sample(0, &[])), None);
        assert_eq!(w.pids, vec![7]);
    }

    #[test]
    fn gpu_memory_past_its_bound_recycles_with_its_own_trigger() {
        let gib = 1u64 << 30;
        let baseline = Sample {
            gpu: Some(GpuUse {
                bytes: gib / 2,
                apps: 1,
                every_app: false,
            }),
            ..sample(10 * MB, &[7])
        };
        let mut w =
            MemoryWatch::after_setup(&config(None, Some(gib)), 1, &baseline).expect("watch");
        assert_eq!(w.rss, None);
        assert_eq!(w.last_gpu, Some(gib / 2));
        // A failed nvidia-smi run (no GPU reading) decides nothing.
        assert_eq!(w.sampled(&sample(10 * MB, &[7])), None);
        let past = Sample {
            gpu: Some(GpuUse {
                bytes: 2 * gib,
                apps: 1,
                every_app: true,
            }),
            ..sample(10 * MB, &[7])
        };
        let (trigger, reason) = w.sampled(&past).expect("past");
        assert_eq!(trigger, RecycleTrigger::MaxGpuMemory);
        assert!(
            reason.starts_with("the worker's GPU memory is 2.00 GiB"),
            "{reason}"
        );
        assert!(reason.contains("another pid namespace"), "{reason}");
        assert!(reason.ends_with("past recycle.max_gpu_memory 1.00 GiB (1073741824 bytes)"));
        assert_eq!(w.last_gpu, Some(2 * gib));
    }

    /// Recorded from `nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits`
    /// (driver 535) on a machine with two GPUs: a process on each, one of them on both.
    const COMPUTE_APPS: &str = "2154, 15734\n2201, 1024\n2154, 812\n";

    #[test]
    fn compute_apps_parse_in_bytes() {
        let apps = parse_compute_apps(COMPUTE_APPS).expect("parsed");
        assert_eq!(
            apps,
            vec![
                GpuApp {
                    pid: 2154,
                    used: Some(15734 << 20)
                },
                GpuApp {
                    pid: 2201,
                    used: Some(1024 << 20)
                },
                GpuApp {
                    pid: 2154,
                    used: Some(812 << 20)
                },
            ]
        );
        assert_eq!(parse_compute_apps(""), Ok(vec![]));
        assert_eq!(
            parse_compute_apps("No running processes found\n"),
            Ok(vec![])
        );
        assert_eq!(
            parse_compute_apps("2154, [N/A]\n"),
            Ok(vec![GpuApp {
                pid: 2154,
                used: None
            }])
        );
        for bad in [
            "2154 15734",
            "x, 12",
            "2154, 12 MiB",
            "NVIDIA-SMI has failed",
        ] {
            let e = parse_compute_apps(bad).expect_err(bad);
            assert_eq!(e.line, bad);
        }
    }

    #[test]
    fn gpu_memory_is_the_trees_unless_no_listed_pid_exists_here() {
        let apps = parse_compute_apps(COMPUTE_APPS).expect("parsed");
        // Same pid namespace: only the tree's processes count, on every GPU.
        let here = |pid| pid == 2154 || pid == 2201;
        assert_eq!(
            attribute_gpu(&apps, &[2154, 2160], here),
            GpuUse {
                bytes: (15734 + 812) << 20,
                apps: 2,
                every_app: false
            }
        );
        assert_eq!(attribute_gpu(&apps, &[99], here).bytes, 0);
        // A container's own pid namespace: the driver's pids name nothing here; every app counts.
        let every = attribute_gpu(&apps, &[7], |_| false);
        assert_eq!(every.bytes, (15734 + 1024 + 812) << 20);
        assert!(every.every_app);
        assert_eq!(attribute_gpu(&[], &[7], |_| false), GpuUse::default());
    }

    #[test]
    fn gpus_are_counted_from_the_list() {
        let list = "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5b8c2a8e-0000)\n  MIG 3g.20gb     Device  0: (UUID: MIG-1)\nGPU 1: Tesla T4 (UUID: GPU-77)\n";
        assert_eq!(count_gpus(list), 2);
        assert_eq!(count_gpus("No devices were found\n"), 0);
        assert_eq!(count_gpus(""), 0);
    }

    #[test]
    fn sizes_are_described_in_binary_units_with_the_bytes() {
        assert_eq!(describe_bytes(400_000_000), "381.5 MiB (400000000 bytes)");
        assert_eq!(describe_bytes(3 << 30), "3.00 GiB (3221225472 bytes)");
    }

    #[test]
    fn our_own_tree_is_scanned_with_its_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let me = std::process::id();
        let tree = scan_tree(me, &KnownChildren::default());
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(tree.pids[0], me);
        assert!(tree.pids.contains(&child.id()), "{tree:?}");
        assert!(tree.counted >= 2, "{tree:?}");
        let (mine, _) = rss_of(&[me]);
        assert!(tree.bytes >= mine / 2 && mine > 0, "{tree:?} {mine}");
        assert_eq!(
            scan_tree(u32::MAX, &KnownChildren::default()),
            TreeRss::default()
        );
    }

    /// A stand-in for nvidia-smi: a shell script in a temporary directory.
    fn fake(dir: &std::path::Path, name: &str, script: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path.display().to_string()
    }

    #[tokio::test]
    async fn a_gpu_is_visible_only_when_nvidia_smi_runs_and_lists_one() {
        let spawner = Spawner::start(KnownChildren::default()).expect("spawner");
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nvidia-smi").display().to_string();
        let why = detect_gpu(&spawner, &missing).await.expect_err("missing");
        assert_eq!(why, format!("{missing} is not on PATH"));
        let none = fake(dir.path(), "none", "echo 'No devices were found'; exit 6");
        let why = detect_gpu(&spawner, &none).await.expect_err("none");
        assert_eq!(
            why,
            format!("`{none} -L` exited with code 6: No devices were found")
        );
        let empty = fake(dir.path(), "empty", "exit 0");
        let why = detect_gpu(&spawner, &empty).await.expect_err("empty");
        assert_eq!(why, format!("`{empty} -L` lists no GPU"));
        let one = fake(dir.path(), "one", "echo 'GPU 0: Tesla T4 (UUID: GPU-77)'");
        assert_eq!(detect_gpu(&spawner, &one).await, Ok(1));
        let args = fake(dir.path(), "args", "echo \"$@\" >&2; exit 3");
        let e = run_nvidia_smi(&spawner, &args, &["--query-compute-apps=pid,used_memory"])
            .await
            .expect_err("exit 3");
        assert!(
            e.to_string()
                .ends_with("exited with code 3: --query-compute-apps=pid,used_memory"),
            "{e}"
        );
    }
}
