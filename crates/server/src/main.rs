//! `cogvisor`: serves Cog's HTTP API for a model and supervises the Python worker that runs it.
//!
//! The binary only reads the command line and starts the runtime; everything else is the
//! [`cogvisor_server`] library (its crate documentation maps the modules).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use cogvisor_server::serve::{serve, ModeArg, ServeArgs};
use cogvisor_server::{logging, settings};

#[derive(Debug, Parser)]
#[command(
    name = "cogvisor",
    version,
    about = "Serve a Cog model with a supervised Python worker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the model in MODEL_DIR (default: the current directory).
    Serve(ServeArgs),
    /// Print the effective configuration for MODEL_DIR and where each value came from.
    Config(ConfigArgs),
}

#[derive(Debug, clap::Args)]
struct ConfigArgs {
    /// The model directory.
    #[arg(default_value = ".")]
    model_dir: PathBuf,
    /// The settings file [default: MODEL_DIR/cogvisor.yaml].
    #[arg(long)]
    config: Option<PathBuf>,
    /// The mode `serve` would run in (it decides which predictor's `@concurrent` counts).
    #[arg(long, value_enum, default_value = "predict")]
    mode: ModeArg,
}

fn main() -> ExitCode {
    let parsed = Cli::command()
        .mut_subcommand("serve", |c| c.args(settings::cli::flag_args()))
        .mut_subcommand("config", |c| c.args(settings::cli::flag_args()))
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m).map(|cli| (m, cli)));
    let (matches, cli) = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return settings::cli::clap_failure(&e),
    };
    let flags = matches
        .subcommand()
        .map(|(_, m)| settings::cli::flags_from(m))
        .unwrap_or_default();
    if let Command::Config(args) = &cli.command {
        let env = |name: &str| std::env::var(name).ok();
        return settings::cli::config_command(
            &args.model_dir,
            args.mode.into(),
            args.config.as_deref(),
            &flags,
            &env,
        );
    }
    logging::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return settings::cli::fail(&format!("cannot start the async runtime: {e}")),
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(async {
            let result = serve(args, flags).await;
            // What the model printed last is still on its way to the log: let it out, briefly.
            cogvisor_supervisor::output_log::flush(std::time::Duration::from_secs(2)).await;
            result
        }),
        Command::Config(_) => return ExitCode::SUCCESS,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // One plain line, last on stderr, naming what is wrong.
        Err(e) => settings::cli::fail(&e),
    }
}
