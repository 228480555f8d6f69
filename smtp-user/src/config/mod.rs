//! The configuration file: every option of `smtp-user run`, in TOML.
//!
//! The file has no schema of its own. Its keys are the ids of the options
//! of a clap [`Command`] (the long name with `_` for `-`: `--stats-interval`
//! is `stats_interval`), and each value goes through that option's own
//! value parser, so an option added to `run` can be set in the file with no
//! other change, and a value is valid in the file exactly when it is valid
//! on the command line. [`ConfigFile::apply`] makes the file's values the
//! options' defaults: a flag given on the command line still wins.
//!
//! Every error names its place as `FILE:LINE:COLUMN: reason` (1-based,
//! columns in characters), from the spans of the TOML parser.
//!
//! Values: a switch (`--gate`) is a boolean; an option taking one value is
//! a string, an integer or a float (written as on the command line); an
//! option that may repeat (`--ports`) is an array of those, or one value
//! (split at the option's delimiter, as on the command line).

pub mod render;

use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};
use toml::de::{DeTable, DeValue};

pub use render::render;

/// Where `run` looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/smtp-monitor/config.toml";

/// Largest configuration file read (a config file is a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A configuration file that failed to load.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("{path}: larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: String },
    /// A syntax error, an unknown key or an invalid value, at its place.
    #[error("{path}:{line}:{column}: {reason}")]
    At {
        path: String,
        line: usize,
        column: usize,
        reason: String,
    },
}

/// One option set by the file: its id and its values, as they would be
/// written on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub id: String,
    pub values: Vec<String>,
}

/// A configuration file, checked against the options it configures.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    settings: Vec<Setting>,
}

impl ConfigFile {
    /// Reads and checks `path` against the options of `options`.
    pub fn load(path: &Path, options: &Command) -> Result<ConfigFile, ConfigError> {
        let name = path.display().to_string();
        let read_err = |source| ConfigError::Read {
            path: name.clone(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut std::io::Read::take(file, MAX_CONFIG_BYTES + 1),
            &mut text,
        )
        .map_err(read_err)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge { path: name });
        }
        ConfigFile::parse(path, &text, options)
    }

    /// Checks `text` (the content of `path`) against the options of
    /// `options`.
    pub fn parse(path: &Path, text: &str, options: &Command) -> Result<ConfigFile, ConfigError> {
        let at = |span: std::ops::Range<usize>, reason: String| {
            let (line, column) = line_column(text, span.start);
            ConfigError::At {
                path: path.display().to_string(),
                line,
                column,
                reason,
            }
        };
        let root = DeTable::parse(text)
            .map_err(|e| at(e.span().unwrap_or(0..0), e.message().to_string()))?;
        let mut settings = Vec::new();
        for (key, value) in root.get_ref() {
            let id: &str = key.get_ref();
            let Some(arg) = option(options, id) else {
                return Err(at(key.span(), unknown_key(options, id)));
            };
            let values = values_of(arg, value.get_ref(), value.span())
                .map_err(|(span, reason)| at(span, format!("`{id}`: {reason}")))?;
            for (raw, span) in &values {
                if let Err(reason) = check_value(options, arg, raw) {
                    return Err(at(span.clone(), format!("`{id}`: {reason}")));
                }
            }
            settings.push(Setting {
                id: id.to_string(),
                values: values.into_iter().map(|(v, _)| v).collect(),
            });
        }
        Ok(ConfigFile {
            path: path.to_path_buf(),
            settings,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options the file sets, in file order.
    pub fn settings(&self) -> &[Setting] {
        &self.settings
    }

    /// `cmd` (a command holding the options checked by [`Self::parse`])
    /// with the file's values as defaults: the command line overrides them.
    pub fn apply(&self, mut cmd: Command) -> Command {
        for s in &self.settings {
            let values = s.values.clone();
            cmd = cmd.mut_arg(s.id.as_str(), |a| a.default_values(values));
        }
        cmd
    }
}

/// The options a file may set: the named options of `cmd`.
pub fn options(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments().filter(|a| {
        !a.is_positional()
            && !matches!(
                a.get_action(),
                ArgAction::Help | ArgAction::HelpShort | ArgAction::HelpLong | ArgAction::Version
            )
    })
}

fn option<'c>(cmd: &'c Command, id: &str) -> Option<&'c Arg> {
    options(cmd).find(|a| a.get_id().as_str() == id)
}

fn unknown_key(cmd: &Command, id: &str) -> String {
    let underscored = id.replace('-', "_");
    if underscored != id && option(cmd, &underscored).is_some() {
        return format!("unknown option `{id}` (did you mean `{underscored}`?)");
    }
    let names: Vec<&str> = options(cmd).map(|a| a.get_id().as_str()).collect();
    format!("unknown option `{id}` (options: {})", names.join(", "))
}

type Spanned = (String, std::ops::Range<usize>);
type ValueError = (std::ops::Range<usize>, String);

/// The command-line values of one file value, each with its span.
fn values_of(
    arg: &Arg,
    value: &DeValue<'_>,
    span: std::ops::Range<usize>,
) -> Result<Vec<Spanned>, ValueError> {
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => match value {
            DeValue::Boolean(b) => Ok(vec![(b.to_string(), span)]),
            other => Err((
                span,
                format!("expected a boolean, found {}", other.type_str()),
            )),
        },
        ArgAction::Append => match value {
            DeValue::Array(items) => {
                let mut out = Vec::new();
                for item in items.iter() {
                    out.extend(split(
                        arg,
                        scalar(item.get_ref(), item.span())?,
                        item.span(),
                    ));
                }
                Ok(out)
            }
            other => Ok(split(arg, scalar(other, span.clone())?, span)),
        },
        _ => Ok(vec![(scalar(value, span.clone())?, span)]),
    }
}

/// One value split at the option's delimiter, as the command line does.
fn split(arg: &Arg, raw: String, span: std::ops::Range<usize>) -> Vec<Spanned> {
    match arg.get_value_delimiter() {
        Some(d) => raw
            .split(d)
            .map(|v| (v.to_string(), span.clone()))
            .collect(),
        None => vec![(raw, span)],
    }
}

/// A string, number or boolean as it would be written on the command line.
fn scalar(value: &DeValue<'_>, span: std::ops::Range<usize>) -> Result<String, ValueError> {
    match value {
        DeValue::String(s) => Ok(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            i64::from_str_radix(&digits, i.radix())
                .map(|v| v.to_string())
                .or_else(|_| u64::from_str_radix(&digits, i.radix()).map(|v| v.to_string()))
                .map_err(|e| (span, format!("not an integer: {e}")))
        }
        DeValue::Float(f) => Ok(f.as_str().replace('_', "")),
        DeValue::Boolean(b) => Ok(b.to_string()),
        other => Err((
            span,
            format!("expected a value, found {}", other.type_str()),
        )),
    }
}

/// Passes `raw` through the option's own parser (and its possible values),
/// as `--long=raw` on a command line of `options` alone.
fn check_value(options: &Command, arg: &Arg, raw: &str) -> Result<(), String> {
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return Ok(()); // a TOML boolean, checked by `values_of`
    }
    let Some(long) = arg.get_long() else {
        return Ok(());
    };
    options
        .clone()
        .try_get_matches_from([options.get_name().to_string(), format!("--{long}={raw}")])
        .map(|_| ())
        .map_err(|e| clap_reason(&e))
}

/// The reason of a value parser's error, without clap's decoration: one
/// line, the option left out (the caller names the key).
fn clap_reason(e: &clap::Error) -> String {
    let text = e.to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            !l.is_empty() && !l.starts_with("For more information") && !l.starts_with("tip:")
        })
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .collect();
    let reason = parts.join(" ");
    // "invalid value 'x' for '--ports <PORTS>': why" → "invalid value 'x': why"
    if let Some(at) = reason.find("' for '--") {
        let from = at + 1;
        if let Some(len) = reason.get(from + 6..).and_then(|rest| rest.find('\'')) {
            let to = from + 6 + len + 1;
            let mut out = reason.get(..from).unwrap_or_default().to_string();
            out.push_str(reason.get(to..).unwrap_or_default());
            return out;
        }
    }
    reason
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
