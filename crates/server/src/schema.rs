//! The model's OpenAPI schema as the HTTP layer uses it: input validation with Cog's 422 shape, and
//! whether the output is an array.
//!
//! Cog's rules: unknown input keys are dropped before validation; a missing required field is
//! `Field required` / `value_error.missing`; any other failure is `value_error` with the validator's
//! message and `loc = ["body", "input", <path>]` (`__root__` for the top level). Optional nullable
//! inputs without a default are sent as explicit `null`. Formats (`uri`, `password`) are not checked:
//! a plain string for a file input reaches the model as a string, as in Cog.

use serde_json::{json, Value};

/// Which request kind a schema is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Prediction,
    Training,
}

/// One entry of Cog's 422 `detail` list.
#[derive(Debug, Clone, PartialEq)]
pub struct Detail {
    pub loc: Vec<String>,
    pub msg: String,
    pub kind: &'static str,
}

impl Detail {
    pub fn to_json(&self) -> Value {
        json!({"loc": self.loc, "msg": self.msg, "type": self.kind})
    }
}

/// The input schema of one request kind, compiled.
pub struct InputSchema {
    validator: jsonschema::Validator,
    /// Declared input names; `None` when the schema declares no properties (then nothing is stripped).
    properties: Option<Vec<String>>,
    /// Optional nullable inputs without a default: sent as `null` when absent.
    null_defaults: Vec<String>,
    /// Whether the output schema is an array.
    pub output_is_array: bool,
}

impl std::fmt::Debug for InputSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputSchema")
            .field("properties", &self.properties)
            .field("output_is_array", &self.output_is_array)
            .finish_non_exhaustive()
    }
}

/// Why a schema could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaError {
    #[error("the OpenAPI schema has no components.schemas.{0}")]
    NoInput(&'static str),
    #[error("components.schemas.{name} is not a valid JSON Schema: {message}")]
    Invalid { name: &'static str, message: String },
}

impl InputSchema {
    /// Compiles the input schema for `kind` (`TrainingInput`, falling back to `Input`, for trainings).
    pub fn compile(openapi: &Value, kind: Kind) -> Result<Self, SchemaError> {
        let schemas = openapi.pointer("/components/schemas");
        let (name, input) = match kind {
            Kind::Prediction => ("Input", schemas.and_then(|s| s.get("Input"))),
            Kind::Training => match schemas.and_then(|s| s.get("TrainingInput")) {
                Some(s) => ("TrainingInput", Some(s)),
                None => ("Input", schemas.and_then(|s| s.get("Input"))),
            },
        };
        let input = input.ok_or(SchemaError::NoInput(name))?;
        // Cog's schemas point at `#/components/schemas/<name>` (enums, nested objects). Hanging the
        // components on the root document lets the validator resolve those pointers itself,
        // recursive schemas included.
        let mut root = input.clone();
        if let (Value::Object(map), Some(schemas)) = (&mut root, schemas) {
            map.insert("components".into(), json!({"schemas": schemas}));
        }
        let validator = jsonschema::options()
            .should_validate_formats(false)
            .build(&root)
            .map_err(|e| SchemaError::Invalid {
                name,
                message: e.to_string(),
            })?;
        let props = input.get("properties").and_then(Value::as_object);
        let required: Vec<&str> = input
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let null_defaults = props
            .map(|p| {
                p.iter()
                    .filter(|(name, prop)| {
                        prop.get("nullable") == Some(&Value::Bool(true))
                            && prop.get("default").is_none()
                            && !required.contains(&name.as_str())
                    })
                    .map(|(name, _)| name.clone())
                    .collect()
            })
            .unwrap_or_default();
        let output_name = match kind {
            Kind::Prediction => "Output",
            Kind::Training => "TrainingOutput",
        };
        let output_is_array = schemas
            .and_then(|s| s.get(output_name))
            .and_then(|o| o.get("type"))
            .is_some_and(|t| t == "array");
        Ok(Self {
            validator,
            properties: props.map(|p| p.keys().cloned().collect()),
            null_defaults,
            output_is_array,
        })
    }

    /// Strips unknown keys, validates, and adds `null` for absent optional nullable inputs.
    pub fn prepare(&self, input: Value) -> Result<Value, Vec<Detail>> {
        let mut input = match input {
            Value::Object(map) => map,
            other => {
                let errors = self.errors(&other);
                return Err(if errors.is_empty() {
                    vec![Detail {
                        loc: loc(&["__root__"]),
                        msg: format!("{other} is not of type \"object\""),
                        kind: "value_error",
                    }]
                } else {
                    errors
                });
            }
        };
        if let Some(known) = &self.properties {
            let unknown: Vec<String> = input
                .keys()
                .filter(|k| !known.contains(k))
                .cloned()
                .collect();
            for key in unknown {
                tracing::warn!(input = %key, "dropping an input the model does not declare");
                input.remove(&key);
            }
        }
        let value = Value::Object(input);
        let errors = self.errors(&value);
        if !errors.is_empty() {
            return Err(errors);
        }
        let Value::Object(mut input) = value else {
            return Ok(value);
        };
        for name in &self.null_defaults {
            input.entry(name.clone()).or_insert(Value::Null);
        }
        Ok(Value::Object(input))
    }

    fn errors(&self, value: &Value) -> Vec<Detail> {
        self.validator
            .iter_errors(value)
            .map(|e| match e.kind() {
                jsonschema::error::ValidationErrorKind::Required { property } => Detail {
                    loc: loc(&[property.as_str().unwrap_or_default()]),
                    msg: "Field required".into(),
                    kind: "value_error.missing",
                },
                _ => {
                    let path = e.instance_path().to_string();
                    let segments: Vec<String> = path
                        .split('/')
                        .skip(1)
                        .map(|s| s.replace("~1", "/").replace("~0", "~"))
                        .collect();
                    let mut l = loc(&[]);
                    if segments.is_empty() {
                        l.push("__root__".into());
                    } else {
                        l.extend(segments);
                    }
                    // coglet's validator words a bad choice as `"zzz" is not one of ["a","b"]`.
                    let msg = match e.kind() {
                        jsonschema::error::ValidationErrorKind::Enum { options } => {
                            format!("{} is not one of {}", e.instance(), options)
                        }
                        _ => e.to_string(),
                    };
                    Detail {
                        loc: l,
                        msg,
                        kind: "value_error",
                    }
                }
            })
            .collect()
    }
}

fn loc(rest: &[&str]) -> Vec<String> {
    ["body", "input"]
        .iter()
        .chain(rest)
        .map(|s| s.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openapi() -> Value {
        json!({
            "openapi": "3.0.2",
            "components": {"schemas": {
                "Input": {
                    "type": "object", "title": "Input",
                    "properties": {
                        "s": {"type": "string", "title": "S", "x-order": 0},
                        "n": {"type": "integer", "title": "N", "maximum": 100, "default": 1, "x-order": 1},
                        "mode": {"allOf": [{"$ref": "#/components/schemas/mode"}], "default": "a", "x-order": 2},
                        "opt": {"type": "string", "nullable": true, "x-order": 3},
                        "file": {"type": "string", "format": "uri", "default": "x", "x-order": 4}
                    },
                    "required": ["s"]
                },
                "mode": {"title": "mode", "description": "An enumeration.", "enum": ["a", "b", "partial"], "type": "string"},
                "Output": {"type": "array", "items": {"type": "string"}, "title": "Output"}
            }}
        })
    }

    fn schema() -> InputSchema {
        InputSchema::compile(&openapi(), Kind::Prediction).expect("compiles")
    }

    fn details(input: Value) -> Vec<Value> {
        schema()
            .prepare(input)
            .unwrap_err()
            .iter()
            .map(Detail::to_json)
            .collect()
    }

    #[test]
    fn missing_required_field_is_field_required() {
        assert_eq!(
            details(json!({})),
            vec![
                json!({"loc": ["body", "input", "s"], "msg": "Field required", "type": "value_error.missing"})
            ]
        );
    }

    #[test]
    fn wrong_type_names_the_field_with_the_validator_message() {
        let d = details(json!({"s": 5}));
        assert_eq!(
            d,
            vec![
                json!({"loc": ["body", "input", "s"], "msg": "5 is not of type \"string\"", "type": "value_error"})
            ]
        );
    }

    #[test]
    fn out_of_range_and_bad_choice() {
        let d = details(json!({"s": "x", "n": 1000, "mode": "zzz"}));
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(d.iter().any(|e| e["loc"] == json!(["body", "input", "n"])
            && e["msg"].as_str().is_some_and(|m| m.contains("1000"))));
        assert!(d.contains(&json!({"loc": ["body", "input", "mode"], "msg": "\"zzz\" is not one of [\"a\",\"b\",\"partial\"]", "type": "value_error"})), "{d:?}");
    }

    #[test]
    fn non_object_input_is_a_root_error() {
        let d = details(json!([1]));
        assert_eq!(d[0]["loc"], json!(["body", "input", "__root__"]));
        assert_eq!(d[0]["type"], "value_error");
    }

    #[test]
    fn unknown_keys_are_dropped_and_nullable_optionals_become_null() {
        let got = schema()
            .prepare(json!({"s": "x", "surprise": 1}))
            .expect("valid");
        assert_eq!(got, json!({"s": "x", "opt": null}));
    }

    #[test]
    fn formats_are_not_checked() {
        assert!(schema()
            .prepare(json!({"s": "x", "file": "/etc/hostname"}))
            .is_ok());
    }

    #[test]
    fn output_array_is_read_from_the_schema() {
        assert!(schema().output_is_array);
        let training =
            InputSchema::compile(&openapi(), Kind::Training).expect("falls back to Input");
        assert!(!training.output_is_array, "no TrainingOutput");
    }

    #[test]
    fn a_schema_without_input_is_an_error_naming_it() {
        let err = InputSchema::compile(&json!({"components": {"schemas": {}}}), Kind::Prediction)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the OpenAPI schema has no components.schemas.Input"
        );
    }

    #[test]
    fn self_referencing_schemas_do_not_loop() {
        let s = json!({"components": {"schemas": {
            "Input": {"type": "object", "properties": {"n": {"$ref": "#/components/schemas/Node"}}},
            "Node": {"type": "object", "properties": {"next": {"$ref": "#/components/schemas/Node"}}}
        }}});
        let schema = InputSchema::compile(&s, Kind::Prediction).expect("compiles");
        let err = schema
            .prepare(json!({"n": {"next": {"next": 5}}}))
            .unwrap_err();
        assert_eq!(err[0].loc, ["body", "input", "n", "next", "next"]);
    }

    /// The document the Python worker builds from `examples/types/predict.py` compiles and gives
    /// Cog's detail entries. Regenerate the fixture with, in examples/types:
    /// `PYTHONPATH=../../python python3 -c 'import json; from cogvisor_worker import loader;
    /// print(json.dumps(loader.build_schema(loader.load("predict.py:Predictor", "predict")), indent=1))'`
    #[test]
    fn documents_built_by_the_worker_validate_like_cog() {
        let doc: Value = serde_json::from_str(include_str!("testdata/generated_types_schema.json"))
            .expect("fixture is JSON");
        let schema = InputSchema::compile(&doc, Kind::Prediction).expect("compiles");
        assert!(!schema.output_is_array);
        let ok = schema
            .prepare(json!({"text": "abc", "api_key": "k", "tags": ["x"]}))
            .expect("valid input");
        assert_eq!(
            ok.get("maybe"),
            None,
            "`maybe: Optional[str] = None` has a null default: nothing is added, the model's default applies"
        );
        let d: Vec<Value> = schema
            .prepare(json!({"count": 1000, "mode": "zzz", "text": "ABC"}))
            .unwrap_err()
            .iter()
            .map(Detail::to_json)
            .collect();
        assert!(d.contains(&json!({"loc": ["body", "input", "count"], "msg": "1000 is greater than the maximum of 10", "type": "value_error"})), "{d:?}");
        assert!(d.contains(&json!({"loc": ["body", "input", "mode"], "msg": "\"zzz\" is not one of [\"fast\",\"slow\"]", "type": "value_error"})), "{d:?}");
        assert!(
            d.iter()
                .any(|e| e["loc"] == json!(["body", "input", "text"])),
            "pattern: {d:?}"
        );
        let missing: Vec<Value> = schema
            .prepare(json!({}))
            .unwrap_err()
            .iter()
            .map(Detail::to_json)
            .collect();
        assert_eq!(
            missing,
            vec![
                json!({"loc": ["body", "input", "text"], "msg": "Field required", "type": "value_error.missing"})
            ]
        );
    }

    fn golden_inputs() -> InputSchema {
        let doc: Value = serde_json::from_str(include_str!(
            "../../../tests/models/schema_inputs/openapi.golden.json"
        ))
        .expect("golden is JSON");
        InputSchema::compile(&doc, Kind::Prediction).expect("compiles")
    }

    fn valid_golden_input() -> Value {
        json!({"prompt": "a cat", "seed": 1, "token": "t", "images": ["https://x/y.png"], "photo": "https://x/p.png"})
    }

    /// The document `cog build` writes for tests/models/schema_inputs validates as coglet validates it:
    /// `Input(default=None)` on a plain type is a required input, a Secret with a None default may be
    /// left out (the model's None applies), an Optional without any default is sent as null.
    #[test]
    fn cog_build_documents_validate_like_coglet() {
        let schema = golden_inputs();
        let missing: Vec<Value> = schema
            .prepare(json!({"prompt": "a cat", "token": "t", "images": []}))
            .unwrap_err()
            .iter()
            .map(Detail::to_json)
            .collect();
        assert_eq!(
            missing,
            vec![
                json!({"loc": ["body", "input", "seed"], "msg": "Field required", "type": "value_error.missing"}),
                json!({"loc": ["body", "input", "photo"], "msg": "Field required", "type": "value_error.missing"}),
            ]
        );
        let ok = schema.prepare(valid_golden_input()).expect("valid");
        assert_eq!(ok.get("api_key"), None, "a null default: nothing added");
        assert_eq!(ok.get("negative"), None, "a null default: nothing added");
        assert_eq!(
            ok["extra"],
            Value::Null,
            "Optional without default: sent as null"
        );
        assert!(ok.get("masks").is_none(), "masks has a null default");
    }

    #[test]
    fn nullable_is_not_read_by_the_validator_as_in_coglet() {
        // coglet's validator is plain JSON Schema: `nullable` is an OpenAPI keyword it ignores, so an
        // explicit null for a string is refused even where the schema says nullable.
        let mut input = valid_golden_input();
        input["api_key"] = Value::Null;
        let d: Vec<Value> = golden_inputs()
            .prepare(input)
            .unwrap_err()
            .iter()
            .map(Detail::to_json)
            .collect();
        assert_eq!(
            d,
            vec![
                json!({"loc": ["body", "input", "api_key"], "msg": "null is not of type \"string\"", "type": "value_error"})
            ]
        );
    }

    #[test]
    fn unions_choices_and_objects_of_a_cog_build_document() {
        let schema = golden_inputs();
        for value in [json!("a"), json!(5)] {
            let mut input = valid_golden_input();
            input["value"] = value;
            assert!(schema.prepare(input).is_ok());
        }
        let mut input = valid_golden_input();
        input["value"] = json!(1.5);
        input["steps"] = json!(30);
        input["options"] = json!("not an object");
        let d = schema.prepare(input).unwrap_err();
        let mut locs: Vec<&str> = d.iter().map(|e| e.loc[2].as_str()).collect();
        locs.sort_unstable();
        assert_eq!(locs, ["options", "steps", "value"], "{d:?}");
        assert!(
            d.iter().any(|e| e.msg == "30 is not one of [10,20,50]"),
            "{d:?}"
        );
    }
}
