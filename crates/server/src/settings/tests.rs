use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cogvisor_supervisor::{BudgetConfig, HealthConfig, SupervisorConfig};

use super::*;

fn layers(pairs: &[(Key, &str)]) -> Layers {
    let flags = pairs.iter().map(|(k, v)| (*k, v.to_string())).collect();
    Layers::resolve(&flags, &|_| None, None, &CogLayer::default())
}

fn error_of(pairs: &[(Key, &str)]) -> String {
    match Settings::from_layers(&layers(pairs)) {
        Ok(s) => panic!("accepted: {s:?}"),
        Err(e) => e.to_string(),
    }
}

fn defaults() -> Settings {
    Settings::from_layers(&Layers::default()).expect("every default parses with its own parser")
}

#[test]
fn defaults_are_the_documented_ones() {
    let s = defaults();
    assert_eq!(s.concurrency, 1);
    assert_eq!(s.setup_timeout, None);
    assert_eq!(s.cancel_grace, Duration::from_secs(5));
    assert_eq!(s.health_timeout, Duration::from_secs(5));
    assert_eq!(s.health_period, None);
    assert_eq!(s.health(), HealthConfig::default());
    assert_eq!(s.recycle_drain_timeout, Duration::from_secs(30));
    assert_eq!(s.recycle_restart_budget, BudgetConfig::default());
    assert_eq!(s.logs_max_per_prediction, 8 << 20);
    assert_eq!(s.logs_max_setup, 2 << 20);
    assert_eq!(
        s.logs_max_setup,
        cogvisor_supervisor::setup_log::DEFAULT_SETUP_LOG_LIMIT
    );
}

fn runtime() -> Runtime {
    Runtime {
        model_dir: PathBuf::from("/m"),
        predictor_ref: "predict.py:Predictor".into(),
        mode: cogvisor_protocol::Mode::Predict,
        schema_refs: None,
        python: "python3".into(),
        python_path: Vec::new(),
        runtime_parent: None,
        observer: None,
        port: 5000,
    }
}

/// `SupervisorConfig::new` is the supervisor crate's own default (its tests use it); the server builds
/// the whole config from the table. The two must agree, field by field.
#[test]
fn the_supervisors_own_defaults_are_the_tables() {
    let from_table = defaults().supervisor_config(runtime());
    let library = SupervisorConfig::new("/m", "predict.py:Predictor");
    assert_eq!(format!("{from_table:?}"), format!("{library:?}"));
}

#[test]
fn every_setting_reaches_the_supervisor_config() {
    let s = Settings::from_layers(&layers(&[
        (Key::Concurrency, "3"),
        (Key::SetupTimeout, "7s"),
        (Key::HealthLivenessThreshold, "9"),
        (Key::RecycleMaxPredictions, "100"),
        (Key::RecycleMaxRss, "400MB"),
        (Key::RecycleMaxGpuMemory, "2GiB"),
        (Key::RecycleMemoryCheckInterval, "250ms"),
        (Key::HooksBeforeStop, "echo bye"),
        (Key::HooksTimeout, "2s"),
    ]))
    .expect("valid");
    let c = s.supervisor_config(runtime());
    assert_eq!(c.concurrency, 3);
    assert_eq!(c.setup_timeout, Some(Duration::from_secs(7)));
    assert_eq!(c.health.liveness_threshold, 9);
    assert_eq!(c.max_predictions, Some(100));
    assert_eq!(c.max_rss, Some(400_000_000));
    assert_eq!(c.max_gpu_memory, Some(2 << 30));
    assert_eq!(c.memory_check_interval, Duration::from_millis(250));
    assert_eq!(c.hooks.before_stop, Some(vec!["echo".into(), "bye".into()]));
    assert_eq!(c.hooks.timeout, Duration::from_secs(2));
}

#[test]
fn a_bad_value_names_the_key_value_source_and_what_is_allowed() {
    let e = error_of(&[(Key::HealthOnFailure, "explode")]);
    assert!(e.contains("health.on_failure"), "{e}");
    assert!(e.contains("explode"), "{e}");
    assert!(e.contains("flag"), "{e}");
    assert!(e.contains("log, recycle or exit"), "{e}");
}

#[test]
fn memory_bounds_are_off_by_default_and_a_bad_one_is_named() {
    let s = defaults();
    assert_eq!((s.recycle_max_rss, s.recycle_max_gpu_memory), (None, None));
    assert_eq!(s.recycle_memory_check_interval, Duration::from_secs(1));
    let e = error_of(&[(Key::RecycleMaxRss, "400mb")]);
    assert_eq!(
        e,
        "recycle.max_rss=\"400mb\" (from flag) is not valid: a size such as 400MB, 400MiB, 1GB \
         or 1GiB, or a number of bytes, at least 1MiB; or off"
    );
    assert!(
        error_of(&[(Key::RecycleMaxGpuMemory, "lots")]).contains("recycle.max_gpu_memory=\"lots\"")
    );
    assert!(error_of(&[(Key::RecycleMemoryCheckInterval, "10ms")]).contains("at least 100ms"));
}

#[test]
fn the_period_must_exceed_the_timeout_and_one_second() {
    assert!(error_of(&[(Key::HealthPeriod, "500ms")]).contains("health.period"));
    assert!(error_of(&[(Key::HealthPeriod, "5s")]).contains("health.period"));
    let s = Settings::from_layers(&layers(&[
        (Key::HealthPeriod, "2s"),
        (Key::HealthTimeout, "1s"),
    ]))
    .expect("valid");
    assert_eq!(s.health_period, Some(Duration::from_secs(2)));
}

#[test]
fn thresholds_must_be_at_least_one() {
    assert!(error_of(&[(Key::HealthFailureThreshold, "0")]).contains("at least 1"));
}

#[test]
fn the_restart_budget_reads_n_in_a_window() {
    let s =
        Settings::from_layers(&layers(&[(Key::RecycleRestartBudget, "2 in 1m")])).expect("valid");
    assert_eq!(s.recycle_restart_budget.max, 2);
    assert_eq!(s.recycle_restart_budget.window, Duration::from_secs(60));
    assert!(error_of(&[(Key::RecycleRestartBudget, "lots")]).contains("N in DURATION"));
}

#[test]
fn the_health_command_is_split_like_a_shell() {
    let s = Settings::from_layers(&layers(&[(
        Key::HealthCommand,
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
    assert!(error_of(&[(Key::HealthCommand, "echo 'unclosed")]).contains("health.command"));
}

#[test]
fn flags_beat_the_environment_which_beats_the_file_which_beats_cog() {
    let flags = [(Key::CancelGrace, "1s".to_string())].into_iter().collect();
    let env = |name: &str| match name {
        "COGVISOR_CANCEL_GRACE" => Some("2s".to_string()),
        "COGVISOR_STOP_GRACE" => Some("3s".to_string()),
        _ => None,
    };
    let file: BTreeMap<Key, String> = [
        (Key::CancelGrace, "9s".to_string()),
        (Key::StopGrace, "9s".to_string()),
        (Key::HealthTimeout, "4s".to_string()),
        (Key::Concurrency, "2".to_string()),
    ]
    .into_iter()
    .collect();
    let cog = CogLayer {
        concurrency: Some(("8".into(), Source::Env("COG_MAX_CONCURRENCY".into()))),
        setup_timeout: Some(("30s".into(), Source::Env("COG_SETUP_TIMEOUT".into()))),
    };
    let l = Layers::resolve(&flags, &env, Some((Path::new("cogvisor.yaml"), file)), &cog);
    let s = Settings::from_layers(&l).expect("valid");
    assert_eq!(s.cancel_grace, Duration::from_secs(1));
    assert_eq!(s.stop_grace, Duration::from_secs(3));
    assert_eq!(s.health_timeout, Duration::from_secs(4));
    assert_eq!(s.concurrency, 2);
    assert_eq!(s.setup_timeout, Some(Duration::from_secs(30)));
    assert_eq!(
        l.get(Key::StopGrace).1.to_string(),
        "environment COGVISOR_STOP_GRACE"
    );
    assert_eq!(
        l.get(Key::SetupTimeout).1.to_string(),
        "environment COG_SETUP_TIMEOUT"
    );
    assert_eq!(l.get(Key::PredictTimeout), ("none", Source::Default));
}

#[test]
fn a_bad_value_from_cog_names_cogs_source() {
    let cog = CogLayer {
        concurrency: Some(("0".into(), Source::Env("COG_MAX_CONCURRENCY".into()))),
        setup_timeout: None,
    };
    let l = Layers::resolve(&Flags::new(), &|_| None, None, &cog);
    let e = Settings::from_layers(&l).expect_err("0 slots").to_string();
    assert!(
        e.contains("COG_MAX_CONCURRENCY") && e.contains("\"0\""),
        "{e}"
    );
}

#[test]
fn only_the_keys_cog_has_take_cogs_sources() {
    let with_cog: Vec<Key> = Key::ALL
        .iter()
        .copied()
        .filter(|k| k.cog_sources().is_some())
        .collect();
    assert_eq!(with_cog, [Key::Concurrency, Key::SetupTimeout]);
    let cog = CogLayer {
        concurrency: Some(("4".into(), Source::Default)),
        setup_timeout: Some(("1s".into(), Source::Default)),
    };
    for &k in Key::ALL {
        assert_eq!(cog.get(k).is_some(), with_cog.contains(&k), "{k:?}");
    }
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
    let map = file::read_file(&path).expect("read").expect("present");
    assert_eq!(map.get(&Key::HealthPeriod).map(String::as_str), Some("10s"));
    assert_eq!(
        map.get(&Key::RecycleMaxPredictions).map(String::as_str),
        Some("100")
    );
    std::fs::write(&path, "health:\n  perod: 10s\n").expect("write");
    let e = file::read_file(&path).expect_err("unknown key").to_string();
    assert!(
        e.contains("health.perod") && e.contains("health.period"),
        "{e}"
    );
    assert!(file::read_file(&dir.path().join("absent.yaml"))
        .expect("ok")
        .is_none());
}

#[test]
fn an_explicit_settings_file_must_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.yaml");
    let e = load(
        dir.path(),
        Some(&missing),
        &Flags::new(),
        &|_| None,
        &CogLayer::default(),
    )
    .expect_err("missing --config file");
    assert!(e.to_string().contains("nope.yaml"), "{e}");
    assert!(load(
        dir.path(),
        None,
        &Flags::new(),
        &|_| None,
        &CogLayer::default()
    )
    .is_ok());
}

#[test]
fn names_flags_and_env_names_follow_one_rule() {
    assert_eq!(Key::HealthOnFailure.env(), "COGVISOR_HEALTH_ON_FAILURE");
    assert_eq!(Key::CancelGrace.env(), "COGVISOR_CANCEL_GRACE");
    for &k in Key::ALL {
        assert_eq!(k.flag(), k.name().replace(['.', '_'], "-"), "{k:?}");
        assert_eq!(Key::from_name(k.name()), Some(k));
    }
    let mut names: Vec<&str> = Key::ALL.iter().map(|k| k.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Key::ALL.len(), "two keys share a name");
}

#[test]
fn the_heartbeat_is_on_by_default_and_its_timeout_must_exceed_its_interval() {
    let s = Settings::from_layers(&layers(&[])).expect("valid");
    let rt_config = s
        .health_heartbeat_timeout
        .map(|t| (s.health_heartbeat_interval, t));
    assert_eq!(
        rt_config,
        Some((Duration::from_secs(1), Duration::from_secs(10)))
    );
    let e = error_of(&[(Key::HealthHeartbeatTimeout, "1s")]);
    assert!(
        e.contains("health.heartbeat_timeout=\"1s\"")
            && e.contains("more than health.heartbeat_interval"),
        "{e}"
    );
    assert!(error_of(&[(Key::HealthHeartbeatInterval, "0s")]).contains("health.heartbeat_interval"));
    let off =
        Settings::from_layers(&layers(&[(Key::HealthHeartbeatTimeout, "off")])).expect("valid");
    assert_eq!(off.health_heartbeat_timeout, None);
}

#[test]
fn one_worker_by_default_and_a_pool_gives_each_worker_its_index() {
    assert_eq!(defaults().workers_count, 1);
    assert_eq!(defaults().worker_configs(runtime()).len(), 1);
    let s = Settings::from_layers(&layers(&[(Key::WorkersCount, "3")])).expect("settings");
    let configs = s.worker_configs(runtime());
    let indices: Vec<u32> = configs.iter().map(|c| c.worker_index).collect();
    assert_eq!(indices, [0, 1, 2]);
    assert!(configs.iter().all(|c| c.worker_env.is_empty()));
}

#[test]
fn devices_are_handed_out_in_turn() {
    let s = Settings::from_layers(&layers(&[
        (Key::WorkersCount, "3"),
        (Key::WorkersDevices, "0,1"),
    ]))
    .expect("settings");
    let env: Vec<_> = (0..3).map(|i| s.worker_env(i)).collect();
    let cuda = |d: &str| vec![("CUDA_VISIBLE_DEVICES".to_owned(), d.to_owned())];
    assert_eq!(env, [cuda("0"), cuda("1"), cuda("0")]);
}

#[test]
fn workers_env_substitutes_index_and_device() {
    let s = Settings::from_layers(&layers(&[
        (Key::WorkersDevices, "GPU-a,GPU-b"),
        (
            Key::WorkersEnv,
            "NVIDIA_VISIBLE_DEVICES={device} SHARD={index}",
        ),
    ]))
    .expect("settings");
    assert_eq!(
        s.worker_env(1),
        [
            ("NVIDIA_VISIBLE_DEVICES".to_owned(), "GPU-b".to_owned()),
            ("SHARD".to_owned(), "1".to_owned())
        ]
    );
}

#[test]
fn bad_worker_settings_are_refused_naming_the_key() {
    for (key, value) in [
        (Key::WorkersCount, "0"),
        (Key::WorkersCount, "65"),
        (Key::WorkersDevices, "0,,1"),
        (Key::WorkersEnv, "NOEQUALS"),
        (Key::WorkersEnv, "1BAD=x"),
        (Key::WorkersEnv, "COGVISOR_ADMIN_TOKEN=x"),
        (Key::WorkersEnv, "WEBHOOK_AUTH_TOKEN=x"),
    ] {
        let e = error_of(&[(key, value)]);
        assert!(
            e.contains(key.name()) && e.contains(value),
            "{key:?} {value}: {e}"
        );
    }
    // {device} needs a list of devices.
    let e = error_of(&[(Key::WorkersEnv, "CUDA_VISIBLE_DEVICES={device}")]);
    assert!(e.contains("workers.env"), "{e}");
}

#[test]
fn overlap_is_off_by_default_reads_a_yaml_bool_and_is_refused_with_a_pool() {
    assert!(!defaults().recycle_overlap);
    let on = Settings::from_layers(&layers(&[(Key::RecycleOverlap, "true")])).expect("valid");
    assert!(on.recycle_overlap);
    assert!(on.supervisor_config(runtime()).recycle_overlap);
    let e = error_of(&[(Key::RecycleOverlap, "sometimes")]);
    assert!(
        e.contains("recycle.overlap=\"sometimes\"") && e.contains("true or false"),
        "{e}"
    );
    let e = error_of(&[(Key::RecycleOverlap, "true"), (Key::WorkersCount, "2")]);
    assert_eq!(
        e,
        "recycle.overlap=\"true\" (from flag) cannot be used with workers.count=\"2\" (from flag): \
         overlap is for one worker; a pool already recycles one worker at a time while the others serve"
    );
}
