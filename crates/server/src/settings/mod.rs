//! cogvisor's own settings: one typed table of keys ([`table`]), each resolved from flags >
//! `COGVISOR_*` environment > `cogvisor.yaml` > Cog's own sources where Cog has one (`cog.yaml`
//! `concurrency.max`, `COG_MAX_CONCURRENCY`, `COG_SETUP_TIMEOUT`, read by [`crate::config`]) > the
//! default.
//!
//! A wrong key, type or value stops the server at start with one line naming the key, the value, where
//! it came from and what is allowed. `cogvisor config` prints the effective values and their sources.
//! docs/configuration.md's key table is generated from the table and checked by a test ([`doc`]).

pub mod cli;
#[cfg(test)]
pub mod doc;
pub mod file;
pub mod parse;
pub mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use parse::Kind;
pub use table::{Key, Runtime, Settings};

/// The flag values given on the command line, by key.
pub type Flags = BTreeMap<Key, String>;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env(String),
    File(PathBuf),
    /// A key of `cog.yaml`, such as `concurrency.max`.
    CogYaml {
        path: PathBuf,
        key: &'static str,
    },
    /// A literal `@concurrent(max=N)` in the predictor file.
    Decorator(PathBuf),
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag => f.write_str("flag"),
            Source::Env(name) => write!(f, "environment {name}"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::CogYaml { path, key } => write!(f, "{} {key}", path.display()),
            Source::Decorator(path) => write!(f, "@concurrent(max=N) in {}", path.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// What Cog's own sources set, below cogvisor's: the text and where it came from. Filled by
/// [`crate::config::resolve`]; these are the keys whose [`Key::cog_sources`] is set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CogLayer {
    pub concurrency: Option<(String, Source)>,
    pub setup_timeout: Option<(String, Source)>,
}

impl CogLayer {
    fn get(&self, key: Key) -> Option<&(String, Source)> {
        match key {
            Key::Concurrency => self.concurrency.as_ref(),
            Key::SetupTimeout => self.setup_timeout.as_ref(),
            _ => None,
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
        allowed: &'static str,
    },
    #[error(transparent)]
    Conflict(Box<Conflict>),
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

/// Two keys, each valid, that cannot be used together (boxed: it is the largest error).
#[derive(Debug, thiserror::Error)]
#[error("{key}={value:?} (from {origin}) cannot be used with {other}={other_value:?} (from {other_origin}): {why}")]
pub struct Conflict {
    pub key: &'static str,
    pub value: String,
    pub origin: Source,
    pub other: &'static str,
    pub other_value: String,
    pub other_origin: Source,
    pub why: &'static str,
}

/// The text of every key with its source, before parsing.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    values: BTreeMap<Key, (String, Source)>,
}

impl Layers {
    /// Resolves every key: `flags` over the environment over `file` over Cog's sources; a key none of
    /// them sets keeps its default.
    pub fn resolve(
        flags: &Flags,
        env: crate::config::Env<'_>,
        file: Option<(&Path, BTreeMap<Key, String>)>,
        cog: &CogLayer,
    ) -> Self {
        let mut values = BTreeMap::new();
        for &key in Key::ALL {
            let env_name = key.env();
            let value = if let Some(v) = flags.get(&key) {
                Some((v.clone(), Source::Flag))
            } else if let Some(v) = env(&env_name).filter(|v| !v.is_empty()) {
                Some((v, Source::Env(env_name)))
            } else if let Some(v) = file.as_ref().and_then(|(path, map)| {
                map.get(&key)
                    .map(|v| (v.clone(), Source::File(path.to_path_buf())))
            }) {
                Some(v)
            } else {
                cog.get(key).cloned()
            };
            if let Some(v) = value {
                values.insert(key, v);
            }
        }
        Self { values }
    }

    /// The text of `key` and its source; the default when no source set it.
    pub fn get(&self, key: Key) -> (&str, Source) {
        match self.values.get(&key) {
            Some((text, source)) => (text, source.clone()),
            None => (key.default_text(), Source::Default),
        }
    }

    /// Every key with its effective text and source, in table order, for `cogvisor config`.
    pub fn describe(&self) -> Vec<(Key, String, Source)> {
        Key::ALL
            .iter()
            .map(|&k| {
                let (text, source) = self.get(k);
                (k, text.to_string(), source)
            })
            .collect()
    }

    /// The value of `key`, read by its kind.
    pub(crate) fn parse<T>(&self, key: Key, kind: &Kind<T>) -> Result<T, SettingsError> {
        let (text, _) = self.get(key);
        (kind.parse)(text.trim()).ok_or_else(|| self.bad_value(key))
    }

    /// The error for `key`'s current value.
    /// `key` and `other` are each valid, but not together, because `why`.
    pub(crate) fn conflict(&self, key: Key, other: Key, why: &'static str) -> SettingsError {
        let (text, origin) = self.get(key);
        let (other_text, other_origin) = self.get(other);
        SettingsError::Conflict(Box::new(Conflict {
            key: key.name(),
            value: text.to_string(),
            origin,
            other: other.name(),
            other_value: other_text.to_string(),
            other_origin,
            why,
        }))
    }

    pub(crate) fn bad_value(&self, key: Key) -> SettingsError {
        let (text, origin) = self.get(key);
        SettingsError::BadValue {
            key: key.name(),
            value: text.to_string(),
            origin,
            allowed: key.allowed(),
        }
    }
}

/// Reads flags, the environment, the settings file and Cog's sources into [`Settings`]. The file is
/// `config_file`, else `$COGVISOR_CONFIG`, else `MODEL_DIR/cogvisor.yaml`; only the default may be
/// missing.
pub fn load(
    model_dir: &Path,
    config_file: Option<&Path>,
    flags: &Flags,
    env: crate::config::Env<'_>,
    cog: &CogLayer,
) -> Result<(Layers, Settings), SettingsError> {
    let named = config_file.map(Path::to_path_buf).or_else(|| {
        env("COGVISOR_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let explicit = config_file.is_some();
    let path = named.unwrap_or_else(|| model_dir.join("cogvisor.yaml"));
    let file = match file::read_file(&path)? {
        Some(map) => Some(map),
        None if explicit => {
            return Err(SettingsError::Read {
                path,
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })
        }
        None => None,
    };
    let layers = Layers::resolve(flags, env, file.map(|m| (path.as_path(), m)), cog);
    let settings = Settings::from_layers(&layers)?;
    Ok((layers, settings))
}

#[cfg(test)]
mod tests;
