//! The settings file, `cogvisor.yaml`: nested mappings read into dotted keys.
//!
//! It is strict: an unknown key stops the server, where an unknown key of `cog.yaml` is only a warning
//! ([`crate::config`]). `cog.yaml` is Cog's file, read by other tools and versions with keys cogvisor
//! does not know; `cogvisor.yaml` holds only cogvisor's keys, so a key it does not know is a typo whose
//! setting would otherwise silently not apply.

use std::collections::BTreeMap;
use std::path::Path;

use super::{Key, SettingsError};

/// Reads the file into its keys. A missing file is `None`. Unknown keys and non-scalar values are
/// errors naming the key.
pub fn read_file(path: &Path) -> Result<Option<BTreeMap<Key, String>>, SettingsError> {
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
    let mut dotted = BTreeMap::new();
    flatten(path, "", &doc, &mut dotted)?;
    let mut out = BTreeMap::new();
    for (name, value) in dotted {
        let Some(key) = Key::from_name(&name) else {
            return Err(SettingsError::UnknownKey {
                path: path.to_path_buf(),
                key: name,
                known: known_keys(),
            });
        };
        out.insert(key, value);
    }
    Ok(Some(out))
}

/// Every key name, comma-separated.
pub fn known_keys() -> String {
    Key::ALL
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
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
                // A mapping under an unknown name is reported as the unknown dotted key.
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
