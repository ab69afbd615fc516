//! The command line of the settings: the flags of `serve` and `config`, `cogvisor config`'s output,
//! and how a command-line error or a closed stdout ends the process.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use cogvisor_protocol::Mode;

use super::{Flags, Key, Layers};

/// The flags of every key, for the `serve` and `config` commands.
pub fn flag_args() -> Vec<clap::Arg> {
    Key::ALL
        .iter()
        .map(|&k| {
            let default = match k.cog_sources() {
                Some(cog) => format!("{cog}, else {}", k.default_text()),
                None => k.default_text().to_string(),
            };
            clap::Arg::new(k.name())
                .long(k.flag())
                .value_name("VALUE")
                .help(format!("{} [default: {default}]", k.help()))
                .help_heading("Settings (also COGVISOR_* environment and cogvisor.yaml)")
        })
        .collect()
}

/// The flag values given on the command line.
pub fn flags_from(matches: &clap::ArgMatches) -> Flags {
    Key::ALL
        .iter()
        .filter_map(|&k| matches.get_one::<String>(k.name()).map(|v| (k, v.clone())))
        .collect()
}

/// `cogvisor config`'s lines: every key, its effective value and where it came from.
pub fn write_config(out: &mut impl Write, layers: &Layers) -> std::io::Result<()> {
    for (key, value, source) in layers.describe() {
        writeln!(out, "{:<32} {:<28} # {source}", key.name(), value)?;
    }
    out.flush()
}

/// `cogvisor config`: resolves what `serve` would (Cog's sources included) and prints it. A start that
/// `serve` would refuse is refused here with the same line.
pub fn config_command(
    model_dir: &Path,
    mode: Mode,
    config_file: Option<&Path>,
    flags: &Flags,
    env: crate::config::Env<'_>,
) -> ExitCode {
    let resolved = match crate::config::resolve(model_dir, mode, None, env) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    for warning in &resolved.warnings {
        let _ = writeln!(std::io::stderr(), "cogvisor: warning: {warning}");
    }
    let layers = match super::load(model_dir, config_file, flags, env, &resolved.cog) {
        Ok((layers, _)) => layers,
        Err(e) => return fail(&e),
    };
    print_to_stdout(|out| write_config(out, &layers))
}

/// Writes to stdout. A reader that went away (`cogvisor config | head -1`) ends the command quietly
/// with status 0, as ripgrep does: the reader had what it wanted, so nothing failed.
pub fn print_to_stdout(
    write: impl FnOnce(&mut std::io::StdoutLock) -> std::io::Result<()>,
) -> ExitCode {
    exit_after_write(write(&mut std::io::stdout().lock()))
}

fn exit_after_write(result: std::io::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(&format!("cannot write to stdout: {e}")),
    }
}

/// The one line every failed start ends with: `cogvisor: error: ...` on stderr, status 1.
pub fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "cogvisor: error: {error}");
    ExitCode::FAILURE
}

/// What a command line clap refused ends with. `--help` and `--version` print to stdout and succeed
/// (quietly when stdout is closed); a bare `cogvisor` prints the help to stderr and fails; every other
/// error is one line, status 1, like any other bad start.
pub fn clap_failure(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            fail(&"no command given: serve or config")
        }
        _ => fail(&one_line(e)),
    }
}

/// clap's message on one line: its first line, its tips, and where to look.
fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid command line");
    let mut line = first.strip_prefix("error: ").unwrap_or(first).to_string();
    for tip in lines.filter(|l| l.starts_with("tip:")) {
        line.push_str("; ");
        line.push_str(tip);
    }
    let command = std::env::args()
        .skip(1)
        .find(|a| a == "serve" || a == "config")
        .map(|c| format!("cogvisor {c}"))
        .unwrap_or_else(|| "cogvisor".to_string());
    format!("{line} (see `{command} --help`)")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> clap::Command {
        clap::Command::new("cogvisor").subcommand(
            clap::Command::new("serve")
                .arg(
                    clap::Arg::new("port")
                        .long("port")
                        .value_parser(clap::value_parser!(u16)),
                )
                .args(flag_args()),
        )
    }

    fn error_of(args: &[&str]) -> clap::Error {
        match command().try_get_matches_from(args) {
            Ok(m) => panic!("accepted {args:?}: {m:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_clap_error_becomes_one_line_naming_the_flag_and_value() {
        let line = one_line(&error_of(&["cogvisor", "serve", "--port", "99999"]));
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("--port") && line.contains("99999"), "{line}");
        let line = one_line(&error_of(&["cogvisor", "serve", "--health-perod", "1s"]));
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("--health-perod"), "{line}");
        assert!(
            line.contains("tip:") && line.contains("--health-period"),
            "{line}"
        );
    }

    #[test]
    fn flags_are_read_by_key() {
        let m = command()
            .try_get_matches_from(["cogvisor", "serve", "--health-period", "10s"])
            .expect("valid");
        let (_, serve) = m.subcommand().expect("serve");
        let flags = flags_from(serve);
        assert_eq!(
            flags.get(&Key::HealthPeriod).map(String::as_str),
            Some("10s")
        );
        assert_eq!(flags.len(), 1);
    }

    #[test]
    fn config_lines_name_value_and_source() {
        let mut out = Vec::new();
        write_config(&mut out, &Layers::default()).expect("write");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(text.lines().count(), Key::ALL.len());
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("concurrency ") && first.ends_with("# default"),
            "{first}"
        );
    }

    #[test]
    fn a_closed_stdout_ends_quietly_and_other_write_errors_fail() {
        struct Closed(std::io::ErrorKind);
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(self.0.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let closed = write_config(
            &mut Closed(std::io::ErrorKind::BrokenPipe),
            &Layers::default(),
        );
        assert_eq!(exit_after_write(closed), ExitCode::SUCCESS);
        let full = write_config(
            &mut Closed(std::io::ErrorKind::StorageFull),
            &Layers::default(),
        );
        assert_eq!(exit_after_write(full), ExitCode::FAILURE);
    }
}
