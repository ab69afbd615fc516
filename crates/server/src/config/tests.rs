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

#[test]
fn a_bad_concurrency_max_is_refused_naming_cog_yaml() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("predict.py"), "class Predictor: ...\n").expect("write");
    for max in ["0", "-1"] {
        std::fs::write(
            dir.path().join("cog.yaml"),
            format!("predict: predict.py:Predictor\nconcurrency:\n  max: {max}\n"),
        )
        .expect("write");
        let none = |_: &str| None;
        let r = resolve(dir.path(), Mode::Predict, None, &none).expect("resolve");
        let flags = crate::settings::Flags::new();
        let e = crate::settings::load(dir.path(), None, &flags, &none, &r.cog)
            .expect_err("no slots")
            .to_string();
        assert!(
            e.contains(&format!("concurrency=\"{max}\"")) && e.contains("cog.yaml concurrency.max"),
            "{e}"
        );
    }
}

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
    let stub = |k: &str| (k == "COG_PREDICT_TYPE_STUB").then(|| "predict.py:Predictor".to_string());
    let r = resolve(dir.path(), Mode::Predict, None, &stub).expect("the stub needs no cog.yaml");
    assert_eq!(r.predictor_ref, "predict.py:Predictor");
}
