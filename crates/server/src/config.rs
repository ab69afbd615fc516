//! Resolving what to serve from the command line, Cog's environment variables and `cog.yaml`.
//!
//! Precedence: flags > environment > `cog.yaml` > defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cogvisor_protocol::{Mode, SchemaRefs};
use serde::Deserialize;

use crate::error::ServeError;

/// The port without `--port` or `PORT`, as in Cog.
pub const DEFAULT_PORT: u16 = 5000;

/// SSE events a prediction keeps for late subscribers without `COG_STREAM_HISTORY_CAPACITY`, as in Cog.
pub const DEFAULT_STREAM_HISTORY_CAPACITY: usize = 1024;

/// The parts of `cog.yaml` the runtime reads.
#[derive(Debug, Default, Deserialize)]
pub struct CogYaml {
    pub predict: Option<String>,
    pub run: Option<String>,
    pub train: Option<String>,
    pub concurrency: Option<CogConcurrency>,
}

#[derive(Debug, Default, Deserialize)]
pub struct CogConcurrency {
    pub max: Option<u32>,
}

/// Reads `cog.yaml` in `model_dir`; a missing file is an empty one.
pub fn read_cog_yaml(model_dir: &Path) -> Result<CogYaml, ServeError> {
    let path = model_dir.join("cog.yaml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CogYaml::default()),
        Err(source) => return Err(ServeError::ReadCogYaml { path, source }),
    };
    if text.trim().is_empty() {
        return Ok(CogYaml::default());
    }
    serde_yaml_ng::from_str(&text).map_err(|source| ServeError::ParseCogYaml { path, source })
}

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
    pub concurrency: u32,
    pub setup_timeout: Option<Duration>,
    pub port: u16,
    /// `COG_STREAM_HISTORY_CAPACITY`: SSE events kept per prediction for late subscribers (0: none).
    pub stream_history_capacity: usize,
}

/// Resolves the predictor, concurrency, setup timeout, port and SSE history capacity.
pub fn resolve(
    model_dir: &Path,
    mode: Mode,
    port_flag: Option<u16>,
    env: Env<'_>,
) -> Result<Resolved, ServeError> {
    if !model_dir.is_dir() {
        return Err(ServeError::ModelDir(model_dir.to_path_buf()));
    }
    let cog = read_cog_yaml(model_dir)?;
    let cog_yaml = model_dir.join("cog.yaml");
    let predictor_ref = match mode {
        Mode::Predict => env("COG_PREDICT_TYPE_STUB")
            .filter(|s| !s.is_empty())
            .or(cog.run.clone())
            .or(cog.predict.clone())
            .ok_or(ServeError::NoPredictor {
                cog_yaml: cog_yaml.clone(),
            })?,
        Mode::Train => env("COG_TRAIN_TYPE_STUB")
            .filter(|s| !s.is_empty())
            .or(cog.train.clone())
            .ok_or(ServeError::NoTrainer { cog_yaml })?,
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

    let concurrency = match env("COG_MAX_CONCURRENCY").filter(|s| !s.is_empty()) {
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or(ServeError::BadEnv {
                name: "COG_MAX_CONCURRENCY",
                value: v,
                allowed: "a whole number of slots, at least 1",
            })?,
        None => cog
            .concurrency
            .and_then(|c| c.max)
            .or_else(|| decorator_concurrency(model_dir, &predictor_ref))
            .unwrap_or(1)
            .max(1),
    };
    let setup_timeout = match env("COG_SETUP_TIMEOUT").filter(|s| !s.is_empty()) {
        Some(v) => match v.trim().parse::<u64>() {
            Ok(0) => None,
            Ok(secs) => Some(Duration::from_secs(secs)),
            Err(_) => {
                return Err(ServeError::BadEnv {
                    name: "COG_SETUP_TIMEOUT",
                    value: v,
                    allowed: "whole seconds (0 or unset: no timeout)",
                })
            }
        },
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
        concurrency,
        setup_timeout,
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
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn model(cog_yaml: &str, predict_py: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cog.yaml"), cog_yaml).expect("write");
        std::fs::write(dir.path().join("predict.py"), predict_py).expect("write");
        dir
    }

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k: &str| map.get(k).cloned()
    }

    const PREDICTOR: &str = "class Predictor:\n    def predict(self): ...\n";

    #[test]
    fn reads_predictor_and_concurrency_from_cog_yaml() {
        let dir = model(
            "predict: predict.py:Predictor\nconcurrency:\n  max: 4\n",
            PREDICTOR,
        );
        let r = resolve(dir.path(), Mode::Predict, None, &env(&[])).expect("resolve");
        assert_eq!(r.predictor_ref, "predict.py:Predictor");
        assert_eq!(r.concurrency, 4);
        assert_eq!(r.port, 5000);
        assert_eq!(r.setup_timeout, None);
    }

    #[test]
    fn environment_overrides_cog_yaml_and_flags_override_environment() {
        let dir = model(
            "predict: predict.py:Predictor\nconcurrency:\n  max: 4\n",
            PREDICTOR,
        );
        let e = env(&[
            ("COG_MAX_CONCURRENCY", "2"),
            ("PORT", "6000"),
            ("COG_SETUP_TIMEOUT", "30"),
        ]);
        let r = resolve(dir.path(), Mode::Predict, None, &e).expect("resolve");
        assert_eq!((r.concurrency, r.port), (2, 6000));
        assert_eq!(r.setup_timeout, Some(Duration::from_secs(30)));
        assert_eq!(
            resolve(dir.path(), Mode::Predict, Some(7000), &e)
                .expect("resolve")
                .port,
            7000
        );
    }

    #[test]
    fn the_stream_history_capacity_defaults_to_cogs_and_zero_is_allowed() {
        let dir = model("predict: predict.py:Predictor\n", PREDICTOR);
        let capacity = |vars: &[(&str, &str)]| {
            resolve(dir.path(), Mode::Predict, None, &env(vars))
                .expect("resolve")
                .stream_history_capacity
        };
        assert_eq!(capacity(&[]), 1024);
        assert_eq!(capacity(&[("COG_STREAM_HISTORY_CAPACITY", "")]), 1024);
        assert_eq!(capacity(&[("COG_STREAM_HISTORY_CAPACITY", "0")]), 0);
        assert_eq!(capacity(&[("COG_STREAM_HISTORY_CAPACITY", " 2 ")]), 2);
    }

    #[test]
    fn run_key_is_preferred_to_predict() {
        let dir = model(
            "run: predict.py:Predictor\npredict: predict.py:Other\n",
            PREDICTOR,
        );
        assert_eq!(
            resolve(dir.path(), Mode::Predict, None, &env(&[]))
                .expect("resolve")
                .predictor_ref,
            "predict.py:Predictor"
        );
    }

    #[test]
    fn missing_model_dir_names_the_dir() {
        let err = resolve(Path::new("/no/such/model"), Mode::Predict, None, &env(&[])).unwrap_err();
        assert!(err.to_string().contains("/no/such/model"), "{err}");
    }

    #[test]
    fn cog_yaml_without_predictor_says_what_to_set() {
        let dir = model("build:\n  python_version: '3.11'\n", PREDICTOR);
        let err = resolve(dir.path(), Mode::Predict, None, &env(&[])).unwrap_err();
        assert!(err.to_string().contains("predict:"), "{err}");
    }

    #[test]
    fn a_name_the_file_does_not_spell_out_is_left_to_the_import() {
        // A star import, globals().update(), exec or a module __getattr__ can define it: only the
        // worker's import can tell, so the start-up check does not guess.
        for (name, source) in [
            ("Nope", PREDICTOR),
            ("Predictor", "from impl import *\n"),
            (
                "Predictor",
                "globals().update({'Pred' + 'ictor': object})\n",
            ),
            ("", PREDICTOR),
        ] {
            let dir = model(&format!("predict: \"predict.py:{name}\"\n"), source);
            let r = resolve(dir.path(), Mode::Predict, None, &env(&[])).expect("resolve");
            assert_eq!(r.predictor_ref, format!("predict.py:{name}"));
        }
    }

    #[test]
    fn a_predictor_ref_that_is_not_a_python_file_is_refused() {
        let dir = model("predict: predict:Predictor\n", PREDICTOR);
        let err = resolve(dir.path(), Mode::Predict, None, &env(&[])).unwrap_err();
        assert!(err.to_string().contains("file.py:Name"), "{err}");
        let dir = model("predict: sub.py:Predictor\n", PREDICTOR);
        std::fs::create_dir(dir.path().join("sub.py")).expect("mkdir");
        let err = resolve(dir.path(), Mode::Predict, None, &env(&[])).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn missing_predictor_file_is_refused() {
        let dir = model("predict: missing.py:Predictor\n", PREDICTOR);
        let err = resolve(dir.path(), Mode::Predict, None, &env(&[])).unwrap_err();
        assert!(err.to_string().contains("missing.py"), "{err}");
    }

    #[test]
    fn concurrent_decorator_literal_sets_the_slots_when_nothing_else_does() {
        let src = "import cog\nclass Predictor:\n    @cog.concurrent(max=3)\n    async def predict(self): ...\n";
        let dir = model("predict: predict.py:Predictor\n", src);
        assert_eq!(
            resolve(dir.path(), Mode::Predict, None, &env(&[]))
                .expect("resolve")
                .concurrency,
            3
        );
        let dir = model(
            "predict: predict.py:Predictor\nconcurrency:\n  max: 2\n",
            src,
        );
        assert_eq!(
            resolve(dir.path(), Mode::Predict, None, &env(&[]))
                .expect("resolve")
                .concurrency,
            2
        );
        let dir = model(
            "predict: predict.py:Predictor\n",
            &src.replace("max=3", "5"),
        );
        assert_eq!(
            resolve(dir.path(), Mode::Predict, None, &env(&[]))
                .expect("resolve")
                .concurrency,
            5
        );
        let dir = model(
            "predict: predict.py:Predictor\n",
            &src.replace("max=3", "max=N"),
        );
        assert_eq!(
            resolve(dir.path(), Mode::Predict, None, &env(&[]))
                .expect("resolve")
                .concurrency,
            1
        );
    }

    #[test]
    fn bad_environment_values_name_the_variable_and_value() {
        let dir = model("predict: predict.py:Predictor\n", PREDICTOR);
        for (name, value) in [
            ("COG_MAX_CONCURRENCY", "zero"),
            ("COG_MAX_CONCURRENCY", "0"),
            ("COG_SETUP_TIMEOUT", "5s"),
            ("PORT", "99999"),
            ("COG_STREAM_HISTORY_CAPACITY", "lots"),
            ("COG_STREAM_HISTORY_CAPACITY", "-1"),
            ("COG_STREAM_HISTORY_CAPACITY", "2.5"),
        ] {
            let err = resolve(dir.path(), Mode::Predict, None, &env(&[(name, value)])).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(name) && text.contains(value), "{text}");
        }
    }

    #[test]
    fn train_mode_uses_the_train_key() {
        let dir = model(
            "predict: predict.py:Predictor\ntrain: predict.py:Predictor\n",
            PREDICTOR,
        );
        assert_eq!(
            resolve(dir.path(), Mode::Train, None, &env(&[]))
                .expect("resolve")
                .mode,
            Mode::Train
        );
        let dir = model("predict: predict.py:Predictor\n", PREDICTOR);
        assert!(matches!(
            resolve(dir.path(), Mode::Train, None, &env(&[])),
            Err(ServeError::NoTrainer { .. })
        ));
    }

    #[test]
    fn schema_refs_are_cog_yamls_with_the_served_predictor_in_its_mode() {
        let dir = model(
            "run: predict.py:Predictor\ntrain: predict.py:Predictor\n",
            PREDICTOR,
        );
        let both = SchemaRefs {
            predict: Some("predict.py:Predictor".into()),
            train: Some("predict.py:Predictor".into()),
        };
        for mode in [Mode::Predict, Mode::Train] {
            let r = resolve(dir.path(), mode, None, &env(&[])).expect("resolve");
            assert_eq!(r.schema_refs, both, "{mode:?}");
        }
        let dir = model("predict: predict.py:Predictor\n", PREDICTOR);
        let r = resolve(dir.path(), Mode::Predict, None, &env(&[])).expect("resolve");
        assert_eq!(
            r.schema_refs,
            SchemaRefs {
                predict: Some("predict.py:Predictor".into()),
                train: None
            }
        );
        std::fs::write(dir.path().join("other.py"), PREDICTOR).expect("write");
        let e = env(&[("COG_PREDICT_TYPE_STUB", "other.py:Predictor")]);
        let r = resolve(dir.path(), Mode::Predict, None, &e).expect("resolve");
        assert_eq!(r.schema_refs.predict.as_deref(), Some("other.py:Predictor"));
    }
}
