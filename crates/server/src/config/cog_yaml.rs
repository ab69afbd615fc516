//! `cog.yaml`: the parts the runtime reads, and a warning for each key Cog does not know.

use std::path::Path;

use serde::Deserialize;

use crate::error::ServeError;

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
    /// Signed so that `max: 0` or `max: -1` reaches the `concurrency` key's own check and message.
    pub max: Option<i64>,
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
