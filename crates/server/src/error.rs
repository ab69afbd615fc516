//! Errors that stop the server at start. Each message names the thing that is wrong.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("model directory {0} does not exist or is not a directory")]
    ModelDir(PathBuf),

    #[error("cannot read {path}: {source}")]
    ReadCogYaml {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path} is not valid YAML: {source}")]
    ParseCogYaml {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },

    #[error("{cog_yaml} is missing: the model directory needs a cog.yaml with {needs}")]
    NoCogYaml {
        cog_yaml: PathBuf,
        needs: &'static str,
    },

    #[error("no predictor configured: set `predict:` (or `run:`) in {cog_yaml}, or COG_PREDICT_TYPE_STUB")]
    NoPredictor { cog_yaml: PathBuf },

    #[error("no trainer configured for --mode train: set `train:` in {cog_yaml}, or COG_TRAIN_TYPE_STUB")]
    NoTrainer { cog_yaml: PathBuf },

    #[error("predictor ref {reference:?}: {problem}")]
    PredictorRef { reference: String, problem: String },

    #[error("{name}={value:?} is not valid: {allowed}")]
    BadEnv {
        name: &'static str,
        value: String,
        allowed: &'static str,
    },

    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write the embedded Python worker to {path}: {source}")]
    Embed {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),

    #[error(transparent)]
    Supervisor(#[from] cogvisor_supervisor::SupervisorError),

    #[error(transparent)]
    Webhook(#[from] crate::webhook::SettingError),

    #[error(transparent)]
    HttpClient(#[from] crate::outbound::ClientError),
}
