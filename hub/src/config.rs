//! The configuration file (`--config roomcast.toml`, or `ROOMCAST_CONFIG`): every flag as a
//! key (`listen = "0.0.0.0:8080"`, `max-rooms = 1000`, `admins = ["root"]`), under the
//! environment and the command line, which both override it. `--print-config` shows the
//! configuration in effect, secrets masked, and exits.
//!
//! The file becomes command-line arguments placed before the real ones (the command is told
//! that a later occurrence of a flag overrides an earlier one), leaving out every key whose
//! environment variable is set; so clap parses and checks everything once, the same way.

use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches};

/// The flag and the variable naming the file.
const FLAG: &str = "--config";
const ENV: &str = "ROOMCAST_CONFIG";

/// Parses the command line as `C` (a binary's flags, which flatten [`CoreArgs`](crate::CoreArgs)),
/// under the configuration file if one is named; with `--print-config`, prints what is in
/// effect and exits. Exits with clap's message (status 2) on a bad flag or file.
pub fn parse<C: clap::Parser>() -> C {
    let args: Vec<OsString> = std::env::args_os().collect();
    let mut command = C::command().args_override_self(true);
    let from_file = match named_file(&args) {
        Some(path) => match file_args(&command, &path, &args) {
            Ok(extra) => extra,
            Err(why) => command
                .error(clap::error::ErrorKind::InvalidValue, why)
                .exit(),
        },
        None => Vec::new(),
    };
    let mut all = args.into_iter();
    let full: Vec<OsString> = all.next().into_iter().chain(from_file).chain(all).collect();
    let matches = command
        .try_get_matches_from_mut(full)
        .unwrap_or_else(|e| e.exit());
    if matches.get_flag("print_config") {
        print!("{}", effective(&command, &matches));
        std::process::exit(0);
    }
    C::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command).exit())
}

/// The configuration file the command line (`--config PATH`, `--config=PATH`) or the
/// environment names.
fn named_file(args: &[OsString]) -> Option<std::path::PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == FLAG {
            return iter.next().map(Into::into);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(path.into());
        }
    }
    std::env::var_os(ENV).map(Into::into)
}

/// The file's keys as arguments, leaving out those the command line (`cli`) gives or whose
/// environment variable is set.
fn file_args(
    command: &clap::Command,
    path: &Path,
    cli: &[OsString],
) -> Result<Vec<OsString>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the configuration file {}: {e}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| format!("{} is not valid TOML: {e}", path.display()))?;
    let mut args = Vec::new();
    for (key, value) in table {
        let flag = key.replace('_', "-");
        let Some(arg) = command
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()))
        else {
            return Err(format!(
                "{}: {key} is not a setting (each key is a flag's long name, as --help lists them)",
                path.display()
            ));
        };
        if matches!(flag.as_str(), "config" | "print-config") {
            return Err(format!(
                "{}: {key} cannot be set in the file",
                path.display()
            ));
        }
        let on_command_line = cli.iter().any(|a| {
            let a = a.to_string_lossy();
            a == format!("--{flag}") || a.starts_with(&format!("--{flag}="))
        });
        let in_environment = arg
            .get_env()
            .is_some_and(|env| std::env::var_os(env).is_some());
        if on_command_line || in_environment {
            continue; // The command line and the environment override the file.
        }
        let values = match value {
            toml::Value::Array(items) => items,
            single @ (toml::Value::String(_)
            | toml::Value::Integer(_)
            | toml::Value::Float(_)
            | toml::Value::Boolean(_)
            | toml::Value::Datetime(_)
            | toml::Value::Table(_)) => vec![single],
        };
        for value in values {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other @ (toml::Value::Datetime(_)
                | toml::Value::Array(_)
                | toml::Value::Table(_)) => {
                    return Err(format!(
                        "{}: {key} = {other} is neither a string, a number nor true/false",
                        path.display()
                    ));
                }
            };
            // A switch (`--in-memory`) is there or not; anything else takes its value.
            if !matches!(arg.get_action(), ArgAction::SetTrue) {
                args.push(format!("--{flag}={text}").into());
            } else if text == "true" {
                args.push(format!("--{flag}").into());
            } else if text != "false" {
                return Err(format!("{}: {key} is true or false", path.display()));
            }
        }
    }
    Ok(args)
}

/// The configuration in effect, as a file would say it: every setting with a value, where it
/// came from, and secrets masked.
fn effective(command: &clap::Command, matches: &ArgMatches) -> String {
    let mut out = String::from("# The configuration in effect (secrets masked).\n");
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "config" | "print-config" | "help" | "version") {
            continue;
        }
        let Some(raw) = matches.get_raw(id) else {
            continue;
        };
        let values: Vec<String> = raw.map(|v| v.to_string_lossy().into_owned()).collect();
        let secret = arg.is_hide_env_values_set();
        let shown: Vec<String> = values
            .iter()
            .map(|v| {
                if secret {
                    "\"***\"".to_owned()
                } else {
                    toml_value(v)
                }
            })
            .collect();
        let value = match shown.as_slice() {
            [one] if !matches!(arg.get_action(), ArgAction::Append) => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        #[allow(
            clippy::wildcard_enum_match_arm,
            reason = "clap's ValueSource is non-exhaustive"
        )]
        let source = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => "the command line or the file",
            Some(ValueSource::EnvVariable) => "the environment",
            Some(ValueSource::DefaultValue) => "the default",
            _ => "elsewhere",
        };
        out.push_str(&format!("{long} = {value}  # {source}\n"));
    }
    out
}

/// A value as TOML: numbers and booleans bare, everything else a string.
fn toml_value(v: &str) -> String {
    if v == "true" || v == "false" || v.parse::<i64>().is_ok() {
        v.to_owned()
    } else {
        toml::Value::String(v.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        core: crate::CoreArgs,
    }

    fn parse_with(file: &str, cli: &[&str]) -> Result<Cli, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roomcast.toml");
        std::fs::write(&path, file).unwrap();
        let mut command = Cli::command().args_override_self(true);
        let cli: Vec<OsString> = cli.iter().map(Into::into).collect();
        let from_file = file_args(&command, &path, &cli)?;
        let args: Vec<OsString> = std::iter::once("roomcast".into())
            .chain(from_file)
            .chain(cli)
            .collect();
        let matches = command
            .try_get_matches_from_mut(args)
            .map_err(|e| e.to_string())?;
        Cli::from_arg_matches(&matches).map_err(|e| e.to_string())
    }

    #[test]
    fn the_file_sets_flags_and_the_command_line_overrides_it() {
        let file =
            "max-rooms = 7\nadmins = [\"root\", \"ops\"]\nin_memory = true\nedit-window = \"2m\"\n";
        let cli = parse_with(file, &[]).unwrap();
        assert_eq!(cli.core.max_rooms, 7);
        assert_eq!(cli.core.admins, ["root", "ops"]);
        assert!(cli.core.in_memory);
        assert_eq!(cli.core.edit_window, std::time::Duration::from_secs(120));
        let cli = parse_with(file, &["--max-rooms=9", "--admins=ada"]).unwrap();
        assert_eq!(cli.core.max_rooms, 9, "the command line wins");
        assert_eq!(cli.core.admins, ["ada"]);
    }

    #[test]
    fn a_bad_file_is_refused_by_name() {
        let unknown = parse_with("max-roms = 7\n", &[]).unwrap_err();
        assert!(unknown.contains("max-roms is not a setting"), "{unknown}");
        let bad = parse_with("max-rooms = \"many\"\n", &[]).unwrap_err();
        assert!(bad.contains("many"), "{bad}");
        let table = parse_with("[core]\nmax-rooms = 1\n", &[]).unwrap_err();
        assert!(table.contains("core is not a setting"), "{table}");
    }
}
