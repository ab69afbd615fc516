//! Resolving what to serve from the command line, Cog's environment variables and `cog.yaml`.
//!
//! Precedence: flags > environment > `cog.yaml` > defaults. For `concurrency` and `setup_timeout`
//! this module gives Cog's sources ([`CogLayer`]); cogvisor's settings sit above them
//! ([`crate::settings`]).

use std::path::{Path, PathBuf};

use cogvisor_protocol::{Mode, SchemaRefs};
use serde::Deserialize;

use crate::error::ServeError;
use crate::settings::{CogLayer, Source};

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

/// The top-level keys of `cog.yaml` Cog knows (its `ConfigFile` and JSON schema, plus `run`).
pub const COG_YAML_KEYS: &[&str] = &[
    "build",
    "concurrency",
    "environment",
    "image",
    "predict",
    "run",
    "tests",
    "train",
    "weights",
];

/// The keys of `cog.yaml`'s `concurrency` Cog knows.
pub const COG_CONCURRENCY_KEYS: &[&str] = &["default_target", "max"];

/// `cog.yaml`, read.
#[derive(Debug, Default)]
pub struct ReadCogYaml {
    /// `None`: the file does not exist.
    pub cog: Option<CogYaml>,
    /// One line per key Cog does not know, naming the ones it does.
    pub warnings: Vec<String>,
}

/// Reads `cog.yaml` in `model_dir`. An unknown key is a warning, not an error: Cog reads the file
/// without complaint about keys it does not know (its YAML decoding drops them), and `cog.yaml` is
/// shared with Cog's own tools and versions.
pub fn read_cog_yaml(model_dir: &Path) -> Result<ReadCogYaml, ServeError> {
    let path = model_dir.join("cog.yaml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReadCogYaml::default()),
        Err(source) => return Err(ServeError::ReadCogYaml { path, source }),
    };
    if text.trim().is_empty() {
        return Ok(ReadCogYaml {
            cog: Some(CogYaml::default()),
            warnings: Vec::new(),
        });
    }
    let parse_error = |source| ServeError::ParseCogYaml {
        path: path.clone(),
        source,
    };
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).map_err(parse_error)?;
    let mut warnings = unknown_keys(&path, "", &value, COG_YAML_KEYS);
    warnings.extend(unknown_keys(
        &path,
        "concurrency.",
        &value["concurrency"],
        COG_CONCURRENCY_KEYS,
    ));
    let cog = serde_yaml_ng::from_value(value).map_err(parse_error)?;
    Ok(ReadCogYaml {
        cog: Some(cog),
        warnings,
    })
}

/// A warning for each key of `mapping` not in `known`.
fn unknown_keys(
    path: &Path,
    prefix: &str,
    mapping: &serde_yaml_ng::Value,
    known: &[&str],
) -> Vec<String> {
    let Some(map) = mapping.as_mapping() else {
        return Vec::new();
    };
    map.keys()
        .filter_map(|k| {
            let name = k
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("{k:?}"));
            (!known.contains(&name.as_str())).then(|| {
                format!(
                    "{}: unknown key \"{prefix}{name}\", ignored; known keys: {}",
                    path.display(),
                    known
                        .iter()
                        .map(|k| format!("{prefix}{k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
        })
        .collect()
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

    /// Cog's `concurrency` as `text # source`.
    fn slots(r: &Resolved) -> Option<String> {
        r.cog
            .concurrency
            .as_ref()
            .map(|(text, source)| format!("{text} # {source}"))
    }

    fn slots_of(dir: &Path, vars: &[(&str, &str)]) -> Option<String> {
        slots(&resolve(dir, Mode::Predict, None, &env(vars)).expect("resolve"))
    }

    #[test]
    fn reads_predictor_and_concurrency_from_cog_yaml() {
        let dir = model(
            "predict: predict.py:Predictor\nconcurrency:\n  max: 4\n",
            PREDICTOR,
        );
        let r = resolve(dir.path(), Mode::Predict, None, &env(&[])).expect("resolve");
        assert_eq!(r.predictor_ref, "predict.py:Predictor");
        let cog_yaml = dir.path().join("cog.yaml");
        assert_eq!(
            slots(&r),
            Some(format!("4 # {} concurrency.max", cog_yaml.display()))
        );
        assert_eq!(r.port, 5000);
        assert_eq!(r.cog.setup_timeout, None);
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
        assert_eq!(
            slots(&r).as_deref(),
            Some("2 # environment COG_MAX_CONCURRENCY")
        );
        assert_eq!(r.port, 6000);
        assert_eq!(
            r.cog.setup_timeout,
            Some(("30s".into(), Source::Env("COG_SETUP_TIMEOUT".into())))
        );
        let zero = resolve(
            dir.path(),
            Mode::Predict,
            None,
            &env(&[("COG_SETUP_TIMEOUT", "0")]),
        )
        .expect("resolve");
        assert_eq!(
            zero.cog.setup_timeout.map(|(text, _)| text).as_deref(),
            Some("none")
        );
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
        let file = dir.path().join("predict.py");
        assert_eq!(
            slots_of(dir.path(), &[]),
            Some(format!("3 # @concurrent(max=N) in {}", file.display()))
        );
        let dir = model(
            "predict: predict.py:Predictor\nconcurrency:\n  max: 2\n",
            src,
        );
        assert!(slots_of(dir.path(), &[]).is_some_and(|s| s.starts_with("2 # ")));
        let dir = model(
            "predict: predict.py:Predictor\n",
            &src.replace("max=3", "5"),
        );
        assert!(slots_of(dir.path(), &[]).is_some_and(|s| s.starts_with("5 # ")));
        let dir = model(
            "predict: predict.py:Predictor\n",
            &src.replace("max=3", "max=N"),
        );
        assert_eq!(slots_of(dir.path(), &[]), None);
    }

    #[test]
    fn bad_environment_values_name_the_variable_and_value() {
        let dir = model("predict: predict.py:Predictor\n", PREDICTOR);
        for (name, value) in [
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

#[cfg(test)]
mod cog_yaml_tests {
    use super::*;

    #[test]
    fn unknown_cog_yaml_keys_are_warnings_naming_the_key_and_the_known_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("cog.yaml"),
            "predict: predict.py:Predictor\nconcurency:\n  max: 2\nconcurrency:\n  maks: 3\n",
        )
        .expect("write");
        let read = read_cog_yaml(dir.path()).expect("read");
        assert_eq!(read.warnings.len(), 2, "{:?}", read.warnings);
        let top = &read.warnings[0];
        assert!(
            top.contains("\"concurency\"") && top.contains("concurrency, environment"),
            "{top}"
        );
        let nested = &read.warnings[1];
        assert!(
            nested.contains("\"concurrency.maks\"") && nested.contains("concurrency.max"),
            "{nested}"
        );
        assert_eq!(
            read.cog.and_then(|c| c.predict).as_deref(),
            Some("predict.py:Predictor")
        );
    }

    #[test]
    fn a_known_cog_yaml_has_no_warnings() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("cog.yaml"),
            "build:\n  python_version: '3.11'\nimage: r8.im/x\npredict: predict.py:P\ntrain: t.py:T\nconcurrency:\n  max: 2\n  default_target: 1\nenvironment: []\nweights: []\ntests: []\n",
        )
        .expect("write");
        assert_eq!(
            read_cog_yaml(dir.path()).expect("read").warnings,
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_model_dir_without_cog_yaml_says_the_file_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("predict.py"), "class Predictor: ...\n").expect("write");
        let none = |_: &str| None;
        let e = resolve(dir.path(), Mode::Predict, None, &none).expect_err("no cog.yaml");
        let text = e.to_string();
        assert!(
            text.contains("cog.yaml is missing") && text.contains("COG_PREDICT_TYPE_STUB"),
            "{text}"
        );
        let stub =
            |k: &str| (k == "COG_PREDICT_TYPE_STUB").then(|| "predict.py:Predictor".to_string());
        let r =
            resolve(dir.path(), Mode::Predict, None, &stub).expect("the stub needs no cog.yaml");
        assert_eq!(r.predictor_ref, "predict.py:Predictor");
    }
}
