//! The effective configuration written back as a configuration file
//! (`smtp-user config show`): every option with its help as a comment and
//! its value (built-in default, file or command line) in TOML, typed by the
//! option's value parser. The output reads back through
//! [`super::ConfigFile::parse`] to the same values.

use std::any::TypeId;

use clap::{Arg, ArgAction, ArgMatches, Command};
use toml::Value;

/// Width the help comments are wrapped at.
const WIDTH: usize = 78;

/// Every option of `options` with its value in `matches` (parsed by a
/// command holding those options). `commented`: the value lines are
/// comments too (a template whose every line documents a default).
pub fn render(options: &Command, matches: &ArgMatches, commented: bool) -> String {
    let mut out = String::new();
    for arg in super::options(options) {
        let id = arg.get_id().as_str();
        out.push('\n');
        let help = arg
            .get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default();
        for line in wrap(&help, WIDTH - 2) {
            out.push('#');
            if !line.is_empty() {
                out.push(' ');
                out.push_str(&line);
            }
            out.push('\n');
        }
        match value(arg, matches) {
            Some(v) if commented => out.push_str(&format!("# {id} = {v}\n")),
            Some(v) => out.push_str(&format!("{id} = {v}\n")),
            None => out.push_str(&format!("# {id} = (not set)\n")),
        }
    }
    out
}

/// The option's value in TOML: booleans for switches, integers for integer
/// options, arrays for options that repeat, strings otherwise.
fn value(arg: &Arg, m: &ArgMatches) -> Option<Value> {
    let id = arg.get_id().as_str();
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        return m
            .try_get_one::<bool>(id)
            .ok()
            .flatten()
            .map(|b| Value::Boolean(*b));
    }
    let values = integers(arg, m).unwrap_or_else(|| {
        m.try_get_raw(id)
            .ok()
            .flatten()
            .map(|raw| {
                raw.map(|v| Value::String(v.to_string_lossy().into_owned()))
                    .collect()
            })
            .unwrap_or_default()
    });
    if matches!(arg.get_action(), ArgAction::Append) {
        return (!values.is_empty()).then_some(Value::Array(values));
    }
    values.into_iter().next()
}

/// The values of an option whose parser yields an integer type.
fn integers(arg: &Arg, m: &ArgMatches) -> Option<Vec<Value>> {
    let id = arg.get_id().as_str();
    let t = arg.get_value_parser().type_id();
    macro_rules! integer_types {
        ($($ty:ty),*) => {$(
            if t == TypeId::of::<$ty>() {
                return Some(
                    m.try_get_many::<$ty>(id)
                        .ok()
                        .flatten()
                        .map(|v| v.map(|x| integer(*x)).collect())
                        .unwrap_or_default(),
                );
            }
        )*};
    }
    integer_types!(u8, u16, u32, u64, usize, i8, i16, i32, i64, isize);
    None
}

/// A TOML integer, or a string when beyond TOML's 64-bit signed range.
fn integer<T: TryInto<i64> + ToString + Copy>(x: T) -> Value {
    x.try_into()
        .map(Value::Integer)
        .unwrap_or_else(|_| Value::String(x.to_string()))
}

/// `text` in lines of at most `width` characters (longer words kept whole;
/// blank lines kept).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for para in text.lines() {
        let mut line = String::new();
        for word in para.split_whitespace() {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}
