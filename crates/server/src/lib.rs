//! The `cogvisor` server: Cog's HTTP API in front of a Python worker that the
//! [`cogvisor_supervisor`] crate supervises. The `cogvisor` binary (`main.rs`) only reads the command
//! line and calls [`serve::serve`].
//!
//! # Modules
//!
//! Start-up
//! * [`serve`]: `cogvisor serve`: settings → supervisor → HTTP server, the process's cancellation tree
//!   and the server's task tracker.
//! * [`config`]: what to serve, from flags, the environment and `cog.yaml`.
//! * [`settings`]: cogvisor's own settings (flags, `COGVISOR_*`, `cogvisor.yaml`) and `cogvisor config`.
//! * [`embedded`]: the Python worker and SDK shipped inside the binary.
//! * [`logging`]: the process's own log.
//! * [`error`]: every reason the server fails to start.
//! * [`shutdown`]: what starts a shutdown (signals, `POST /shutdown`) and the drain that follows.
//! * [`ready_file`]: the Kubernetes ready file.
//! * [`version`]: the versions the server reports.
//!
//! HTTP
//! * [`http_server`]: the server under the router: the connection limit and timeouts.
//! * [`http`]: the shared state, the router, and the routes that describe the server.
//! * [`prediction_routes`]: `/predictions` and `/trainings`: create, get, cancel.
//! * [`health_routes`]: `/health-check`, `/readyz`, `/livez`, `POST /recycle`.
//! * [`sse`]: a prediction's server-sent events as a response.
//! * [`request`]: reading and parsing a request body, checking an id.
//! * [`http_errors`]: error responses, and JSON bodies for the framework's own errors.
//! * [`schema`]: input validation against the model's OpenAPI schema.
//! * [`metrics`]: Prometheus metrics (`GET /metrics`).
//!
//! Predictions
//! * [`predictions`]: a prediction's state, events, bodies and retention, and the service that runs
//!   them (see its own map).
//! * [`response`]: Cog's encoding of what a prediction produces (metrics, file outputs).
//! * [`output_file`]: which files the worker names are read as outputs, and how.
//! * [`logs`]: a prediction's bounded log.
//!
//! Outbound
//! * [`webhook`]: a request's webhook and the sender that delivers it.
//! * [`upload`]: `--upload-url` file uploads.
//! * [`outbound`]: the HTTP client, backoff and error text webhooks and uploads share.

pub mod config;
#[cfg(test)]
mod deploy_manifests;
pub mod embedded;
pub mod error;
pub mod health_routes;
pub mod http;
pub mod http_errors;
pub mod http_server;
pub mod logging;
pub mod logs;
pub mod metrics;
pub mod outbound;
pub mod output_file;
pub mod prediction_routes;
pub mod predictions;
pub mod ready_file;
pub mod request;
pub mod response;
pub mod schema;
pub mod serve;
pub mod settings;
pub mod shutdown;
pub mod sse;
pub mod upload;
pub mod version;
pub mod webhook;
