//! `cogvisor`: serves Cog's HTTP API for a model and supervises the Python worker that runs it.
//!
//! The binary only reads the command line and starts the runtime; everything else is the
//! [`cogvisor_server`] library (its crate documentation maps the modules).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use cogvisor_server::serve::{load_settings, serve, ServeArgs};
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
}

fn main() -> ExitCode {
    let matches = Cli::command()
        .mut_subcommand("serve", |c| c.args(settings::flag_args()))
        .mut_subcommand("config", |c| c.args(settings::flag_args()))
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let flags = matches
        .subcommand()
        .map(|(_, m)| settings::flags_from(m))
        .unwrap_or_default();
    if let Command::Config(args) = &cli.command {
        return print_config(args, &flags);
    }
    logging::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cogvisor: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args, flags)),
        Command::Config(_) => return ExitCode::SUCCESS,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One plain line, last on stderr, naming what is wrong.
            eprintln!("cogvisor: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_config(
    args: &ConfigArgs,
    flags: &std::collections::BTreeMap<&'static str, String>,
) -> ExitCode {
    match load_settings(&args.model_dir, args.config.as_deref(), flags) {
        Ok((layers, _)) => {
            for (key, value, source) in layers.describe() {
                println!("{:<32} {:<28} # {source}", key.name, value);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cogvisor: error: {e}");
            ExitCode::FAILURE
        }
    }
}
