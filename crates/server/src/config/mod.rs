//! Resolving what to serve from the command line, Cog's environment variables and `cog.yaml`.
//!
//! Precedence: flags > environment > `cog.yaml` > defaults. For `concurrency` and `setup_timeout`
//! this module gives Cog's sources ([`CogLayer`]); cogvisor's settings sit above them
//! ([`crate::settings`]).

use std::path::{Path, PathBuf};

use cogvisor_protocol::{Mode, SchemaRefs};

mod cog_yaml;

pub use cog_yaml::{read_cog_yaml, CogYaml, ReadCogYaml};

use crate::error::ServeError;
use crate::settings::{CogLayer, Source};

/// The port without `--port` or `PORT`, as in Cog.
pub const DEFAULT_PORT: u16 = 5000;

/// SSE events a prediction keeps for late subscribers without `COG_STREAM_HISTORY_CAPACITY`, as in Cog.
pub const DEFAULT_STREAM_HISTORY_CAPACITY: usize = 1024;

/// The environment, as a lookup function so tests can inject one.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// What `serve` resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub model_dir: PathBuf,
    pub predictor_ref: String,
    pub mode: Mode,
    /// What the worker builds the schema from when the model has none: `cog.yaml`'s `run`/`predict`
    /// and `train`, as `cog build` does, with the served mode's entry the predictor actually served.
    pub schema_refs: SchemaRefs,
    /// What Cog's own sources set for `concurrency` and `setup_timeout`, below cogvisor's settings.
    pub cog: CogLayer,
    /// Things worth saying that do not stop the start (unknown `cog.yaml` keys).
    pub warnings: Vec<String>,
    pub port: u16,
    /// `COG_STREAM_HISTORY_CAPACITY`: SSE events kept per prediction for late subscribers (0: none).
    pub stream_history_capacity: usize,
}

/// Resolves the predictor, Cog's sources of `concurrency` and `setup_timeout`, the port and the SSE
/// history capacity.
pub fn resolve(
    model_dir: &Path,
    mode: Mode,
    port_flag: Option<u16>,
    env: Env<'_>,
) -> Result<Resolved, ServeError> {
    if !model_dir.is_dir() {
        return Err(ServeError::ModelDir(model_dir.to_path_buf()));
    }
    let ReadCogYaml { cog, warnings } = read_cog_yaml(model_dir)?;
    let cog_yaml = model_dir.join("cog.yaml");
    let stub = match mode {
        Mode::Predict => env("COG_PREDICT_TYPE_STUB"),
        Mode::Train => env("COG_TRAIN_TYPE_STUB"),
    }
    .filter(|s| !s.is_empty());
    let cog = match (cog, &stub) {
        (Some(cog), _) => cog,
        (None, Some(_)) => CogYaml::default(),
        (None, None) => {
            return Err(ServeError::NoCogYaml {
                cog_yaml,
                needs: match mode {
                    Mode::Predict => "`predict:` (or `run:`), or set COG_PREDICT_TYPE_STUB",
                    Mode::Train => "`train:`, or set COG_TRAIN_TYPE_STUB",
                },
            })
        }
    };
    let predictor_ref = match mode {
        Mode::Predict => {
            stub.or(cog.run.clone())
                .or(cog.predict.clone())
                .ok_or(ServeError::NoPredictor {
                    cog_yaml: cog_yaml.clone(),
                })?
        }
        Mode::Train => stub.or(cog.train.clone()).ok_or(ServeError::NoTrainer {
            cog_yaml: cog_yaml.clone(),
        })?,
    };
    check_predictor_ref(model_dir, &predictor_ref)?;
    let mut schema_refs = SchemaRefs {
        predict: cog.run.clone().or(cog.predict.clone()),
        train: cog.train.clone(),
    };
    match mode {
        Mode::Predict => schema_refs.predict = Some(predictor_ref.clone()),
        Mode::Train => schema_refs.train = Some(predictor_ref.clone()),
    }

    let concurrency = if let Some(v) = env("COG_MAX_CONCURRENCY").filter(|s| !s.is_empty()) {
        Some((v, Source::Env("COG_MAX_CONCURRENCY".into())))
    } else if let Some(max) = cog.concurrency.as_ref().and_then(|c| c.max) {
        Some((
            max.to_string(),
            Source::CogYaml {
                path: cog_yaml.clone(),
                key: "concurrency.max",
            },
        ))
    } else {
        decorator_concurrency(model_dir, &predictor_ref).map(|n| {
            let file = predictor_ref.split(':').next().unwrap_or_default();
            (n.to_string(), Source::Decorator(model_dir.join(file)))
        })
    };
    let setup_timeout = match env("COG_SETUP_TIMEOUT").filter(|s| !s.is_empty()) {
        // Cog's spelling is whole seconds, 0 for none; cogvisor's key reads it as that duration.
        Some(v) => {
            let text = match v.trim().parse::<u64>() {
                Ok(0) => "none".to_string(),
                Ok(secs) => format!("{secs}s"),
                Err(_) => {
                    return Err(ServeError::BadEnv {
                        name: "COG_SETUP_TIMEOUT",
                        value: v,
                        allowed: "whole seconds (0 or unset: no timeout)",
                    })
                }
            };
            Some((text, Source::Env("COG_SETUP_TIMEOUT".into())))
        }
        None => None,
    };
    let port = match port_flag {
        Some(p) => p,
        None => match env("PORT").filter(|s| !s.is_empty()) {
            Some(v) => v.trim().parse::<u16>().map_err(|_| ServeError::BadEnv {
                name: "PORT",
                value: v,
                allowed: "a TCP port number, 0-65535",
            })?,
            None => DEFAULT_PORT,
        },
    };
    let stream_history_capacity = match env("COG_STREAM_HISTORY_CAPACITY").filter(|s| !s.is_empty())
    {
        Some(v) => v.trim().parse::<usize>().map_err(|_| ServeError::BadEnv {
            name: "COG_STREAM_HISTORY_CAPACITY",
            value: v,
            allowed: "a whole number of SSE events kept per prediction (0: no replay)",
        })?,
        None => DEFAULT_STREAM_HISTORY_CAPACITY,
    };
    Ok(Resolved {
        model_dir: model_dir.to_path_buf(),
        predictor_ref,
        mode,
        schema_refs,
        cog: CogLayer {
            concurrency,
            setup_timeout,
        },
        warnings,
        port,
        stream_history_capacity,
    })
}

/// Checks what is certainly wrong with `file.py[:Name]` before any worker starts: the form, and that
/// the file exists and can be read. Whether the module defines `Name` is decided by importing it in the
/// worker (a star import, `globals().update()`, `exec` or a module `__getattr__` can define it), and a
/// missing name is a setup failure there, as in coglet.
pub fn check_predictor_ref(model_dir: &Path, reference: &str) -> Result<(), ServeError> {
    let bad = |problem: String| ServeError::PredictorRef {
        reference: reference.to_string(),
        problem,
    };
    let file = match reference.rsplit_once(':') {
        Some((file, _)) => file,
        None => reference,
    };
    if !file.ends_with(".py") {
        return Err(bad("expected `path/to/file.py:Name`".into()));
    }
    let path = model_dir.join(file);
    std::fs::File::open(&path)
        .and_then(|f| f.metadata())
        .and_then(|m| {
            if m.is_file() {
                Ok(())
            } else {
                Err(std::io::Error::other("not a regular file"))
            }
        })
        .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))
}

/// The literal `N` of a `@concurrent(max=N)` (or `@cog.concurrent(max=N)`) decorator in the predictor
/// file, as Cog's build reads it. Only a literal is understood; anything else leaves the default.
pub fn decorator_concurrency(model_dir: &Path, predictor_ref: &str) -> Option<u32> {
    let file = predictor_ref.split(':').next()?;
    let source = std::fs::read_to_string(model_dir.join(file)).ok()?;
    source
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('@'))
        .find_map(|line| {
            let rest = line.split_once("concurrent(")?.1;
            let args = rest.split(')').next()?;
            let value = args
                .split(',')
                .map(str::trim)
                .find_map(|a| {
                    a.strip_prefix("max")
                        .map(|v| v.trim_start().strip_prefix('=').map(str::trim))
                })
                .unwrap_or_else(|| args.split(',').next().map(str::trim))?;
            value.parse().ok()
        })
}

#[cfg(test)]
mod tests;
