//! Checks deploy/kubernetes/ and deploy/Dockerfile.cogvisor against the code: the probe paths are routes
//! the server has, the ports are the default port, the grace period covers the whole shutdown sequence
//! with the settings the manifest sets, the autoscaler scales on a metric the server exports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml_ng::Value;

use crate::config::DEFAULT_PORT;
use crate::metrics::{Format, Metrics};
use crate::settings::{CogLayer, Key, Layers, Settings};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every YAML document of `deploy/kubernetes/NAME`.
fn documents(name: &str) -> Vec<Value> {
    let path = repo().join("deploy/kubernetes").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            <Value as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        })
        .collect()
}

/// The one document of kind `kind` in `name`.
fn manifest(name: &str, kind: &str) -> Value {
    let docs: Vec<Value> = documents(name)
        .into_iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect();
    assert_eq!(docs.len(), 1, "{name} should hold one {kind}");
    docs.into_iter().next().unwrap_or_default()
}

fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for part in path.split('.') {
        cur = match part.parse::<usize>() {
            Ok(i) => &cur[i],
            Err(_) => &cur[part],
        };
        assert!(!cur.is_null(), "{path} is missing (at {part})");
    }
    cur
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

fn u64_at(v: &Value, path: &str) -> u64 {
    at(v, path)
        .as_u64()
        .unwrap_or_else(|| panic!("{path} is not a whole number"))
}

fn container(deployment: &Value) -> &Value {
    at(deployment, "spec.template.spec.containers.0")
}

/// The container's environment, as the settings layer would read it.
fn container_env(c: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if let Some(items) = c["env"].as_sequence() {
        for item in items {
            env.insert(
                str_at(item, "name").to_string(),
                str_at(item, "value").to_string(),
            );
        }
    }
    env
}

/// The port number a probe or Service names, resolving a container port name.
fn port_number(port: &Value, c: &Value) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = port.as_str().expect("a port is a number or a name");
    let ports = c["ports"].as_sequence().expect("the container lists ports");
    let found = ports
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container port is named {name:?}"));
    u64_at(found, "containerPort")
}

#[test]
fn the_deployment_probes_ports_and_grace_period_match_the_code() {
    let d = manifest("deployment.yaml", "Deployment");
    let c = container(&d);
    assert!(
        c["command"].is_null() && c["args"].is_null(),
        "the image's own command (python -m cog.server.http) must be kept"
    );
    assert_eq!(
        u64_at(c, "ports.0.containerPort"),
        u64::from(DEFAULT_PORT),
        "the container port is cogvisor's default port"
    );
    let has_route = |path: &str| include_str!("http.rs").contains(&format!(".route(\"{path}\""));
    for (probe, path) in [
        ("startupProbe", "/readyz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/livez"),
    ] {
        let p = at(c, probe);
        assert_eq!(str_at(p, "httpGet.path"), path, "{probe}");
        assert!(has_route(path), "{path} is not a route");
        assert_eq!(
            port_number(at(p, "httpGet.port"), c),
            u64::from(DEFAULT_PORT),
            "{probe} port"
        );
    }
    let annotations = at(&d, "spec.template.metadata.annotations");
    assert_eq!(annotations["prometheus.io/path"].as_str(), Some("/metrics"));
    assert!(has_route("/metrics"));
    assert_eq!(
        annotations["prometheus.io/port"].as_str(),
        Some(DEFAULT_PORT.to_string().as_str())
    );

    // Every COGVISOR_ variable is a real setting, and the grace period covers the shutdown they give.
    let env = container_env(c);
    for name in env.keys().filter(|n| n.starts_with("COGVISOR_")) {
        assert!(
            Key::ALL.iter().any(|k| &k.env() == name),
            "{name} is not a cogvisor setting"
        );
    }
    let layers = Layers::resolve(
        &BTreeMap::new(),
        &|name| env.get(name).cloned(),
        None,
        &CogLayer::default(),
    );
    let settings = Settings::from_layers(&layers).expect("the manifest's settings are valid");
    let pre_stop = at(c, "lifecycle.preStop.exec.command");
    let pre_stop: Vec<&str> = pre_stop
        .as_sequence()
        .expect("preStop command is a list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(pre_stop.first(), Some(&"sleep"), "{pre_stop:?}");
    let sleep = Duration::from_secs(
        pre_stop
            .get(1)
            .and_then(|s| s.parse().ok())
            .expect("sleep SECONDS"),
    );
    // A before_stop hook runs before the worker stops, for up to hooks.timeout.
    let hook = if settings.hooks_before_stop.is_some() {
        settings.hooks_timeout
    } else {
        Duration::ZERO
    };
    let needed = sleep
        + hook
        + settings.shutdown_drain_timeout
        + settings.cancel_grace
        + crate::serve::DELIVERY_DEADLINE
        + settings.stop_grace * 2;
    let grace = Duration::from_secs(u64_at(
        &d,
        "spec.template.spec.terminationGracePeriodSeconds",
    ));
    assert!(
        grace >= needed,
        "terminationGracePeriodSeconds {grace:?} is shorter than the shutdown sequence {needed:?}"
    );
    assert!(
        grace <= needed + Duration::from_secs(30),
        "terminationGracePeriodSeconds {grace:?} is far above the shutdown sequence {needed:?}: resize it"
    );
    // The same defaults the deployment spells out.
    let defaults = Settings::from_layers(&Layers::default()).expect("defaults");
    assert_eq!(
        settings.shutdown_drain_timeout,
        defaults.shutdown_drain_timeout
    );
    assert_eq!(settings.stop_grace, defaults.stop_grace);
    assert_eq!(settings.cancel_grace, defaults.cancel_grace);
}

#[test]
fn the_service_targets_the_container_port() {
    let d = manifest("deployment.yaml", "Deployment");
    let s = manifest("service.yaml", "Service");
    let labels = at(&d, "spec.template.metadata.labels");
    let selector = at(&s, "spec.selector")
        .as_mapping()
        .expect("selector is a map");
    for (k, v) in selector {
        assert_eq!(&labels[k.as_str().unwrap_or_default()], v, "selector {k:?}");
    }
    assert_eq!(
        port_number(at(&s, "spec.ports.0.targetPort"), container(&d)),
        u64::from(DEFAULT_PORT)
    );
}

#[test]
fn the_autoscaler_scales_the_deployment_on_busy_slots_the_server_exports() {
    let d = manifest("deployment.yaml", "Deployment");
    let hpa = manifest("hpa.yaml", "HorizontalPodAutoscaler");
    assert_eq!(str_at(&hpa, "apiVersion"), "autoscaling/v2");
    assert_eq!(str_at(&hpa, "spec.scaleTargetRef.kind"), "Deployment");
    assert_eq!(
        str_at(&hpa, "spec.scaleTargetRef.name"),
        str_at(&d, "metadata.name")
    );
    let metric = str_at(&hpa, "spec.metrics.0.pods.metric.name");
    // The adapter rule turns the exported gauge into that custom metric.
    let values = documents("prometheus-adapter-values.yaml");
    let rule = at(&values[0], "rules.custom.0");
    assert_eq!(str_at(rule, "name.as"), metric);
    let series = str_at(rule, "seriesQuery");
    assert!(series.starts_with("cogvisor_slots{") && series.contains(r#"state="busy""#));
    assert!(str_at(rule, "metricsQuery").contains(r#"state="busy""#));
    let text = Metrics::new()
        .render(
            &crate::metrics::tests::health(cogvisor_supervisor::HealthStatus::Busy, 1, 1, 0),
            Format::Prometheus,
        )
        .expect("render");
    assert!(
        text.lines()
            .any(|l| l.starts_with(r#"cogvisor_slots{state="busy"}"#)),
        "the server exports cogvisor_slots{{state=\"busy\"}}"
    );
}

#[test]
fn the_dockerfile_keeps_the_command_and_copies_what_exists() {
    let path = repo().join("deploy/Dockerfile.cogvisor");
    let text = std::fs::read_to_string(&path).expect("deploy/Dockerfile.cogvisor");
    let instructions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for l in &instructions {
        assert!(
            !l.starts_with("CMD") && !l.starts_with("ENTRYPOINT"),
            "the image's own command must be kept: {l}"
        );
        if let Some(rest) = l.strip_prefix("COPY ") {
            if rest.starts_with("--from=") {
                continue;
            }
            let parts: Vec<&str> = rest.split_whitespace().collect();
            for source in &parts[..parts.len() - 1] {
                assert!(
                    repo().join(source).exists(),
                    "COPY source {source} does not exist"
                );
            }
        }
    }
    // The wheel of pyproject.toml is built and installed into /opt/cogvisor, first on PYTHONPATH, so
    // `python -m cog.server.http` is cogvisor's launcher, which finds the binary in /opt/cogvisor/bin.
    assert!(instructions
        .iter()
        .any(|l| l.starts_with("RUN ") && l.contains("maturin build --release")));
    assert!(instructions
        .iter()
        .any(|l| l.contains("pip install") && l.contains("--target /opt/cogvisor ")));
    assert!(instructions
        .iter()
        .any(|l| l.starts_with("ENV PYTHONPATH=/opt/cogvisor$")
            || l.starts_with("ENV PYTHONPATH=/opt/cogvisor:")));
    let pyproject = std::fs::read_to_string(repo().join("pyproject.toml")).expect("pyproject.toml");
    assert!(pyproject.contains("bindings = \"bin\""));
    assert!(pyproject.contains("module-name = \"cog\""));
    assert!(repo().join("python/cog/server/http.py").exists());
}
