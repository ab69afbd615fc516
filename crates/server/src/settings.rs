//! cogvisor's own settings (DESIGN §8): one table of keys, each with its default and what it allows,
//! resolved from flags > `COGVISOR_*` environment > `cogvisor.yaml` > defaults. Cog's own sources
//! (`cog.yaml`, `COG_MAX_CONCURRENCY`, `COG_SETUP_TIMEOUT`) sit below the file and are applied in
//! [`crate::config`].
//!
//! A wrong key, type or value stops the server at start with one line naming the key, the value, where
//! it came from and what is allowed. `cogvisor config` prints the effective values and their sources.
//! docs/configuration.md is checked against [`KEYS`] by a test, so the two cannot drift.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cogvisor_supervisor::{BudgetConfig, HealthConfig, HookPolicy, OnFailure};

/// One setting.
#[derive(Debug)]
pub struct Key {
    /// Dotted name, as written in `cogvisor.yaml`.
    pub name: &'static str,
    /// The command-line flag (without `--`).
    pub flag: &'static str,
    /// The default, as text (`none` / `off`: unset).
    pub default: &'static str,
    /// What a value may be.
    pub allowed: &'static str,
    pub help: &'static str,
}

impl Key {
    /// `COGVISOR_` + the name in upper snake case.
    pub fn env(&self) -> String {
        format!(
            "COGVISOR_{}",
            self.name.replace('.', "_").to_ascii_uppercase()
        )
    }
}

const DURATION: &str = "a duration such as 500ms, 5s or 2m (a bare number is seconds)";
const OPT_DURATION: &str = "a duration such as 500ms, 5s or 2m, or none";

/// Every key, in the order `cogvisor config` prints them.
pub const KEYS: &[Key] = &[
    Key {
        name: "concurrency",
        flag: "concurrency",
        default: "cog.yaml concurrency.max / COG_MAX_CONCURRENCY / 1",
        allowed: "a whole number of slots, at least 1",
        help: "slots: predictions run at once (more than 1 needs an async predictor)",
    },
    Key {
        name: "setup_timeout",
        flag: "setup-timeout",
        default: "COG_SETUP_TIMEOUT / none",
        allowed: OPT_DURATION,
        help: "bound on the whole worker start-up, spawn to ready",
    },
    Key {
        name: "predict_timeout",
        flag: "predict-timeout",
        default: "none",
        allowed: OPT_DURATION,
        help: "a prediction running longer is cancelled",
    },
    Key {
        name: "cancel_grace",
        flag: "cancel-grace",
        default: "5s",
        allowed: DURATION,
        help: "a cancelled prediction still running after this poisons its slot",
    },
    Key {
        name: "health.timeout",
        flag: "health-timeout",
        default: "5s",
        allowed: DURATION,
        help: "bound on one user healthcheck or health.command run",
    },
    Key {
        name: "health.period",
        flag: "health-period",
        default: "off",
        allowed: "a duration of at least 1s and more than health.timeout, or off",
        help: "run checks in the background this often",
    },
    Key {
        name: "health.command",
        flag: "health-command",
        default: "none",
        allowed: "a command line (split like a shell would, no shell is run), or none",
        help: "an external check: exit status 0 is healthy",
    },
    Key {
        name: "health.success_threshold",
        flag: "health-success-threshold",
        default: "1",
        allowed: "a whole number, at least 1",
        help: "good checks in a row that make UNHEALTHY READY again",
    },
    Key {
        name: "health.failure_threshold",
        flag: "health-failure-threshold",
        default: "1",
        allowed: "a whole number, at least 1",
        help: "failed checks in a row that make READY UNHEALTHY",
    },
    Key {
        name: "health.liveness_threshold",
        flag: "health-liveness-threshold",
        default: "3",
        allowed: "a whole number, at least 1",
        help: "failed checks in a row that trigger health.on_failure",
    },
    Key {
        name: "health.on_failure",
        flag: "health-on-failure",
        default: "recycle",
        allowed: "log, recycle or exit",
        help: "what the liveness threshold does: only log, recycle the worker, or go DEFUNCT",
    },
    Key {
        name: "recycle.drain_timeout",
        flag: "recycle-drain-timeout",
        default: "30s",
        allowed: DURATION,
        help: "how long a recycle lets in-flight predictions finish before it cancels them",
    },
    Key {
        name: "recycle.max_predictions",
        flag: "recycle-max-predictions",
        default: "off",
        allowed: "a whole number, at least 1, or off",
        help: "recycle the worker after this many predictions",
    },
    Key {
        name: "recycle.max_predictions_jitter",
        flag: "recycle-max-predictions-jitter",
        default: "0",
        allowed: "a whole number",
        help: "add up to this many to max_predictions, drawn per worker, so replicas do not recycle together",
    },
    Key {
        name: "recycle.restart_budget",
        flag: "recycle-restart-budget",
        default: "5 in 300s",
        allowed: "N in DURATION, such as 5 in 300s",
        help: "unexpected worker exits restarted within the window before the state is DEFUNCT",
    },
    Key {
        name: "stop.grace",
        flag: "stop-grace",
        default: "5s",
        allowed: DURATION,
        help: "each wait of a worker stop: after the shutdown message, after SIGTERM",
    },
    Key {
        name: "shutdown.drain_timeout",
        flag: "shutdown-drain-timeout",
        default: "30s",
        allowed: DURATION,
        help: "on SIGTERM, how long running predictions may finish before they are cancelled",
    },
    Key {
        name: "hooks.after_healthy",
        flag: "hooks-after-healthy",
        default: "none",
        allowed: "a command line (split like a shell would, no shell is run), or none",
        help: "runs after every successful (re)start of the worker, before READY",
    },
    Key {
        name: "hooks.before_stop",
        flag: "hooks-before-stop",
        default: "none",
        allowed: "a command line (split like a shell would, no shell is run), or none",
        help: "runs before every worker stop (shutdown and each recycle)",
    },
    Key {
        name: "hooks.timeout",
        flag: "hooks-timeout",
        default: "30s",
        allowed: DURATION,
        help: "a hook still running after this is killed with its process group",
    },
    Key {
        name: "hooks.on_failure",
        flag: "hooks-on-failure",
        default: "warn",
        allowed: "warn or fail",
        help: "fail: an after_healthy failure counts as a failed start",
    },
    Key {
        name: "logs.max_per_prediction",
        flag: "logs-max-per-prediction",
        default: "8MiB",
        allowed: "a size such as 8MiB, 512KiB or a number of bytes, at least 1KiB",
        help: "log text kept per prediction; older text is dropped with a notice",
    },
];

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(String),
    File(PathBuf),
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => f.write_str("flag"),
            Source::Env(name) => write!(f, "environment {name}"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A value that cannot be used, or a file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{key}={value:?} (from {origin}) is not valid: {allowed}")]
    BadValue {
        key: &'static str,
        value: String,
        origin: Source,
        allowed: String,
    },
    #[error("{path}: unknown key {key:?}; known keys: {known}")]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
    #[error("{path}: key {key:?} must be a single value, not a list or a mapping")]
    NotAScalar { path: PathBuf, key: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid YAML: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },
}

/// The raw text of every key with its source, before parsing.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    values: BTreeMap<&'static str, (String, Source)>,
}

impl Layers {
    /// Resolves every key: `flags` (key name → value) over the environment over `file` over defaults.
    pub fn resolve(
        flags: &BTreeMap<&'static str, String>,
        env: crate::config::Env<'_>,
        file: Option<(&Path, BTreeMap<String, String>)>,
    ) -> Self {
        let mut values = BTreeMap::new();
        for key in KEYS {
            let env_name = key.env();
            let value = if let Some(v) = flags.get(key.name) {
                Some((v.clone(), Source::Flag))
            } else if let Some(v) = env(&env_name).filter(|v| !v.is_empty()) {
                Some((v, Source::Env(env_name)))
            } else {
                file.as_ref().and_then(|(path, map)| {
                    map.get(key.name)
                        .map(|v| (v.clone(), Source::File(path.to_path_buf())))
                })
            };
            if let Some(v) = value {
                values.insert(key.name, v);
            }
        }
        Self { values }
    }

    /// The explicit value of `key`, if any source set it.
    #[cfg(test)]
    pub fn get(&self, key: &str) -> Option<&(String, Source)> {
        self.values.get(key)
    }

    /// Every key with its effective text and source, for `cogvisor config`.
    pub fn describe(&self) -> Vec<(&'static Key, String, Source)> {
        KEYS.iter()
            .map(|k| match self.values.get(k.name) {
                Some((v, s)) => (k, v.clone(), s.clone()),
                None => (k, k.default.to_string(), Source::Default),
            })
            .collect()
    }

    fn parse<T>(
        &self,
        name: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, SettingsError> {
        let Some((raw, source)) = self.values.get(name) else {
            return Ok(None);
        };
        match parse(raw.trim()) {
            Some(v) => Ok(Some(v)),
            None => Err(SettingsError::BadValue {
                key: key(name).name,
                value: raw.clone(),
                origin: source.clone(),
                allowed: key(name).allowed.to_string(),
            }),
        }
    }
}

fn key(name: &str) -> &'static Key {
    KEYS.iter().find(|k| k.name == name).unwrap_or(&KEYS[0])
}

/// The parsed settings. `None` for `concurrency` / `setup_timeout` means "not set here": Cog's sources
/// decide.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub concurrency: Option<u32>,
    pub setup_timeout: Option<Option<Duration>>,
    pub predict_timeout: Option<Duration>,
    pub cancel_grace: Duration,
    pub health_timeout: Duration,
    pub health_period: Option<Duration>,
    pub health_command: Option<Vec<String>>,
    pub health: HealthConfig,
    pub recycle_drain_timeout: Duration,
    pub max_predictions: Option<u64>,
    pub max_predictions_jitter: u64,
    pub restart_budget: BudgetConfig,
    pub stop_grace: Duration,
    pub shutdown_drain_timeout: Duration,
    pub logs_max_per_prediction: usize,
    pub hook_after_healthy: Option<Vec<String>>,
    pub hook_before_stop: Option<Vec<String>>,
    pub hook_timeout: Duration,
    pub hook_policy: HookPolicy,
}

impl Settings {
    /// Parses and checks every value.
    pub fn from_layers(layers: &Layers) -> Result<Self, SettingsError> {
        let threshold = |s: &str| s.parse::<u32>().ok().filter(|n| *n >= 1);
        let health_timeout = layers
            .parse("health.timeout", parse_duration)?
            .unwrap_or(Duration::from_secs(5));
        let health_period = layers
            .parse("health.period", |s| {
                if is_off(s) {
                    Some(None)
                } else {
                    parse_duration(s)
                        .filter(|d| *d >= Duration::from_secs(1) && *d > health_timeout)
                        .map(Some)
                }
            })?
            .flatten();
        let defaults = HealthConfig::default();
        let budget_default = BudgetConfig::default();
        Ok(Self {
            concurrency: layers
                .parse("concurrency", |s| s.parse::<u32>().ok().filter(|n| *n >= 1))?,
            setup_timeout: layers.parse("setup_timeout", parse_opt_duration)?,
            predict_timeout: layers
                .parse("predict_timeout", parse_opt_duration)?
                .flatten(),
            cancel_grace: layers
                .parse("cancel_grace", parse_duration)?
                .unwrap_or(Duration::from_secs(5)),
            health_timeout,
            health_period,
            health_command: layers.parse("health.command", parse_argv)?.flatten(),
            hook_after_healthy: layers.parse("hooks.after_healthy", parse_argv)?.flatten(),
            hook_before_stop: layers.parse("hooks.before_stop", parse_argv)?.flatten(),
            hook_timeout: layers
                .parse("hooks.timeout", |s| {
                    parse_duration(s).filter(|d| !d.is_zero())
                })?
                .unwrap_or(Duration::from_secs(30)),
            hook_policy: layers
                .parse("hooks.on_failure", |s| match s {
                    "warn" => Some(HookPolicy::Warn),
                    "fail" => Some(HookPolicy::Fail),
                    _ => None,
                })?
                .unwrap_or(HookPolicy::Warn),
            health: HealthConfig {
                success_threshold: layers
                    .parse("health.success_threshold", threshold)?
                    .unwrap_or(defaults.success_threshold),
                failure_threshold: layers
                    .parse("health.failure_threshold", threshold)?
                    .unwrap_or(defaults.failure_threshold),
                liveness_threshold: layers
                    .parse("health.liveness_threshold", threshold)?
                    .unwrap_or(defaults.liveness_threshold),
                on_failure: layers
                    .parse("health.on_failure", |s| match s {
                        "log" => Some(OnFailure::Log),
                        "recycle" => Some(OnFailure::Recycle),
                        "exit" => Some(OnFailure::Exit),
                        _ => None,
                    })?
                    .unwrap_or(defaults.on_failure),
            },
            recycle_drain_timeout: layers
                .parse("recycle.drain_timeout", parse_duration)?
                .unwrap_or(Duration::from_secs(30)),
            max_predictions: layers
                .parse("recycle.max_predictions", |s| {
                    if is_off(s) {
                        Some(None)
                    } else {
                        s.parse::<u64>().ok().filter(|n| *n >= 1).map(Some)
                    }
                })?
                .flatten(),
            max_predictions_jitter: layers
                .parse("recycle.max_predictions_jitter", |s| s.parse::<u64>().ok())?
                .unwrap_or(0),
            restart_budget: layers
                .parse("recycle.restart_budget", |s| {
                    let (n, window) = s.split_once(" in ")?;
                    Some(BudgetConfig {
                        max: n.trim().parse().ok()?,
                        window: parse_duration(window.trim()).filter(|d| !d.is_zero())?,
                        ..budget_default
                    })
                })?
                .unwrap_or(budget_default),
            stop_grace: layers
                .parse("stop.grace", parse_duration)?
                .unwrap_or(Duration::from_secs(5)),
            shutdown_drain_timeout: layers
                .parse("shutdown.drain_timeout", parse_duration)?
                .unwrap_or(Duration::from_secs(30)),
            logs_max_per_prediction: layers
                .parse("logs.max_per_prediction", |s| {
                    parse_size(s).filter(|n| *n >= 1024)
                })?
                .unwrap_or(8 * 1024 * 1024),
        })
    }
}

/// A command line split as a shell would (no shell is run), or `none`.
fn parse_argv(s: &str) -> Option<Option<Vec<String>>> {
    if is_off(s) {
        Some(None)
    } else {
        shlex::split(s).filter(|argv| !argv.is_empty()).map(Some)
    }
}

fn is_off(s: &str) -> bool {
    matches!(s, "off" | "none" | "")
}

/// `500ms`, `5s`, `2m`, `1h`, or a bare number of seconds (fractions allowed).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let number: f64 = number.trim().parse().ok()?;
    if !number.is_finite() || number < 0.0 {
        return None;
    }
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(seconds).ok()
}

fn parse_opt_duration(s: &str) -> Option<Option<Duration>> {
    if is_off(s) {
        Some(None)
    } else {
        parse_duration(s).map(Some)
    }
}

/// `8MiB`, `512KiB`, `1GiB`, `100kB`, or bytes.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "B"),
    };
    let number: u64 = number.trim().parse().ok()?;
    let factor: u64 = match unit.trim() {
        "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    usize::try_from(number.checked_mul(factor)?).ok()
}

/// Reads `cogvisor.yaml` into dotted keys. A missing file is `None`. Unknown keys and non-scalar
/// values are errors naming the key.
pub fn read_file(path: &Path) -> Result<Option<BTreeMap<String, String>>, SettingsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(SettingsError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|source| SettingsError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
    let mut out = BTreeMap::new();
    flatten(path, "", &doc, &mut out)?;
    for k in out.keys() {
        if !KEYS.iter().any(|key| key.name == k) {
            return Err(SettingsError::UnknownKey {
                path: path.to_path_buf(),
                key: k.clone(),
                known: KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", "),
            });
        }
    }
    Ok(Some(out))
}

fn flatten(
    path: &Path,
    prefix: &str,
    value: &serde_yaml_ng::Value,
    out: &mut BTreeMap<String, String>,
) -> Result<(), SettingsError> {
    use serde_yaml_ng::Value;
    let scalar = match value {
        Value::Null if prefix.is_empty() => return Ok(()),
        Value::Null => "none".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Mapping(map) => {
            for (k, v) in map {
                let name = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml_ng::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let full = if prefix.is_empty() {
                    name
                } else {
                    format!("{prefix}.{name}")
                };
                // A section that is a known key itself (none today) would be a scalar; a mapping under
                // an unknown name is reported as the unknown key.
                flatten(path, &full, v, out)?;
            }
            return Ok(());
        }
        Value::Sequence(_) | Value::Tagged(_) => {
            return Err(SettingsError::NotAScalar {
                path: path.to_path_buf(),
                key: prefix.to_string(),
            })
        }
    };
    out.insert(prefix.to_string(), scalar);
    Ok(())
}

/// The flags of every key, for the `serve` and `config` commands.
pub fn flag_args() -> Vec<clap::Arg> {
    KEYS.iter()
        .map(|k| {
            clap::Arg::new(k.name)
                .long(k.flag)
                .value_name("VALUE")
                .help(format!("{} [default: {}]", k.help, k.default))
                .help_heading("Settings (also COGVISOR_* environment and cogvisor.yaml)")
        })
        .collect()
}

/// The flag values given on the command line.
pub fn flags_from(matches: &clap::ArgMatches) -> BTreeMap<&'static str, String> {
    KEYS.iter()
        .filter_map(|k| {
            matches
                .get_one::<String>(k.name)
                .map(|v| (k.name, v.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(pairs: &[(&'static str, &str)]) -> Layers {
        let flags = pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
        Layers::resolve(&flags, &|_| None, None)
    }

    fn error_of(pairs: &[(&'static str, &str)]) -> String {
        match Settings::from_layers(&layers(pairs)) {
            Ok(s) => panic!("accepted: {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_match_the_design() {
        let s = Settings::from_layers(&Layers::default()).expect("defaults");
        assert_eq!(s.cancel_grace, Duration::from_secs(5));
        assert_eq!(s.health_timeout, Duration::from_secs(5));
        assert_eq!(s.health_period, None);
        assert_eq!(s.health, HealthConfig::default());
        assert_eq!(s.recycle_drain_timeout, Duration::from_secs(30));
        assert_eq!(s.restart_budget, BudgetConfig::default());
        assert_eq!(s.logs_max_per_prediction, 8 << 20);
        assert_eq!(s.concurrency, None);
        assert_eq!(s.setup_timeout, None);
    }

    #[test]
    fn durations_and_sizes_parse() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("5 s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_size("8MiB"), Some(8 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("1 lots"), None);
    }

    #[test]
    fn a_bad_value_names_the_key_value_source_and_what_is_allowed() {
        let e = error_of(&[("health.on_failure", "explode")]);
        assert!(e.contains("health.on_failure"), "{e}");
        assert!(e.contains("explode"), "{e}");
        assert!(e.contains("flag"), "{e}");
        assert!(e.contains("log, recycle or exit"), "{e}");
    }

    #[test]
    fn the_period_must_exceed_the_timeout_and_one_second() {
        assert!(error_of(&[("health.period", "500ms")]).contains("health.period"));
        assert!(error_of(&[("health.period", "5s")]).contains("health.period"));
        let s = Settings::from_layers(&layers(&[
            ("health.period", "2s"),
            ("health.timeout", "1s"),
        ]))
        .expect("valid");
        assert_eq!(s.health_period, Some(Duration::from_secs(2)));
    }

    #[test]
    fn thresholds_must_be_at_least_one() {
        assert!(error_of(&[("health.failure_threshold", "0")]).contains("at least 1"));
    }

    #[test]
    fn the_restart_budget_reads_n_in_a_window() {
        let s = Settings::from_layers(&layers(&[("recycle.restart_budget", "2 in 1m")]))
            .expect("valid");
        assert_eq!(s.restart_budget.max, 2);
        assert_eq!(s.restart_budget.window, Duration::from_secs(60));
        assert!(error_of(&[("recycle.restart_budget", "lots")]).contains("N in DURATION"));
    }

    #[test]
    fn the_health_command_is_split_like_a_shell() {
        let s = Settings::from_layers(&layers(&[(
            "health.command",
            "curl -sf 'http://localhost:8080/a b'",
        )]))
        .expect("valid");
        assert_eq!(
            s.health_command,
            Some(vec![
                "curl".to_string(),
                "-sf".to_string(),
                "http://localhost:8080/a b".to_string()
            ])
        );
        assert!(error_of(&[("health.command", "echo 'unclosed")]).contains("health.command"));
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file() {
        let flags = [("cancel_grace", "1s".to_string())].into_iter().collect();
        let env = |name: &str| match name {
            "COGVISOR_CANCEL_GRACE" => Some("2s".to_string()),
            "COGVISOR_STOP_GRACE" => Some("3s".to_string()),
            _ => None,
        };
        let file: BTreeMap<String, String> = [
            ("cancel_grace".to_string(), "9s".to_string()),
            ("stop.grace".to_string(), "9s".to_string()),
            ("health.timeout".to_string(), "4s".to_string()),
        ]
        .into_iter()
        .collect();
        let l = Layers::resolve(&flags, &env, Some((Path::new("cogvisor.yaml"), file)));
        let s = Settings::from_layers(&l).expect("valid");
        assert_eq!(s.cancel_grace, Duration::from_secs(1));
        assert_eq!(s.stop_grace, Duration::from_secs(3));
        assert_eq!(s.health_timeout, Duration::from_secs(4));
        assert_eq!(
            l.get("stop.grace").map(|(_, s)| s.to_string()),
            Some("environment COGVISOR_STOP_GRACE".into())
        );
    }

    #[test]
    fn the_file_rejects_unknown_keys_and_lists_nested_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cogvisor.yaml");
        std::fs::write(
            &path,
            "health:\n  period: 10s\n  on_failure: log\nrecycle:\n  max_predictions: 100\n",
        )
        .expect("write");
        let map = read_file(&path).expect("read").expect("present");
        assert_eq!(map.get("health.period").map(String::as_str), Some("10s"));
        assert_eq!(
            map.get("recycle.max_predictions").map(String::as_str),
            Some("100")
        );
        std::fs::write(&path, "health:\n  perod: 10s\n").expect("write");
        let e = read_file(&path).expect_err("unknown key").to_string();
        assert!(e.contains("health.perod"), "{e}");
        assert!(read_file(&dir.path().join("absent.yaml"))
            .expect("ok")
            .is_none());
    }

    #[test]
    fn env_names_are_upper_snake_case() {
        assert_eq!(key("health.on_failure").env(), "COGVISOR_HEALTH_ON_FAILURE");
        assert_eq!(key("cancel_grace").env(), "COGVISOR_CANCEL_GRACE");
    }

    #[test]
    fn the_configuration_doc_lists_every_key_with_its_default() {
        let doc = include_str!("../../../docs/configuration.md");
        for k in KEYS {
            let row = format!("| `{}` | `{}` |", k.name, k.default);
            assert!(
                doc.contains(&row),
                "docs/configuration.md lacks the row starting {row}"
            );
            assert!(
                doc.contains(&k.env()),
                "docs/configuration.md lacks {}",
                k.env()
            );
        }
    }
}
