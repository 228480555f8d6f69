//! `--config FILE` for `run`, and `smtp-user config check|show`.
//!
//! The file's keys are the options of [`RunArgs`] themselves (see
//! `smtp_user::config`): the command line is parsed once to find the file,
//! the file's values become the options' defaults, and the command line is
//! parsed again over them, so flags given on it win.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{ArgMatches, Args, Command, CommandFactory, FromArgMatches, Subcommand};
use smtp_user::config::{render, ConfigError, ConfigFile, DEFAULT_CONFIG};

use super::run::RunArgs;

/// `run`'s options, and the file they may come from.
#[derive(Debug, Args)]
pub struct RunCommand {
    /// Configuration file (TOML): any option below, named as the long
    /// option with `_` for `-` (`stats_interval = 60`); flags given on the
    /// command line override it. Default: /etc/smtp-monitor/config.toml
    /// when it exists. `smtp-user config show` prints the effective
    /// configuration.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub args: RunArgs,
}

/// Arguments of `config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    cmd: ConfigCmd,
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Check a configuration file, and the rules file it names, without
    /// starting anything; errors read `FILE:LINE:COLUMN: reason`.
    Check {
        /// The configuration file.
        file: PathBuf,
    },
    /// Print the effective configuration of `run` as a configuration file:
    /// the built-in defaults, overridden by the file (--config, or the
    /// default file when it exists), overridden by the flags given here.
    Show {
        /// Every value line as a comment (a template documenting the
        /// defaults, as the packaged /etc/smtp-monitor/config.toml).
        #[arg(long)]
        commented: bool,
        #[command(flatten)]
        run: Box<RunCommand>,
    },
}

/// The options a configuration file may set: `run`'s.
pub fn run_options() -> Command {
    RunArgs::augment_args(Command::new("run"))
}

/// The command line of `C`, with the configuration file of `run` or
/// `config show` applied under it; also returns the file used, if any.
pub fn parse<C: CommandFactory + FromArgMatches>(
) -> Result<(C, ArgMatches, Option<PathBuf>), ConfigError> {
    let matches = C::command().get_matches();
    let (cmd, path) = match configured(&matches) {
        Some((route, path)) => {
            let file = ConfigFile::load(&path, &run_options())?;
            let cmd = match route {
                Route::Run => C::command().mut_subcommand("run", |s| file.apply(s)),
                Route::Show => C::command()
                    .mut_subcommand("config", |c| c.mut_subcommand("show", |s| file.apply(s))),
            };
            (cmd, Some(path))
        }
        None => (C::command(), None),
    };
    let matches = if path.is_some() {
        cmd.get_matches()
    } else {
        matches
    };
    let cli = C::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    Ok((cli, matches, path))
}

enum Route {
    Run,
    Show,
}

/// Which subcommand takes a configuration file, and the file: `--config`,
/// or the default file when it exists.
fn configured(m: &ArgMatches) -> Option<(Route, PathBuf)> {
    let (route, sub) = match m.subcommand()? {
        ("run", sub) => (Route::Run, sub),
        ("config", c) => match c.subcommand()? {
            ("show", sub) => (Route::Show, sub),
            _ => return None,
        },
        _ => return None,
    };
    let path = match sub.try_get_one::<PathBuf>("config").ok().flatten() {
        Some(p) => p.clone(),
        None if Path::new(DEFAULT_CONFIG).exists() => PathBuf::from(DEFAULT_CONFIG),
        None => return None,
    };
    Some((route, path))
}

/// `smtp-user config …`; `matches` are the whole command line's.
pub fn config(args: ConfigArgs, matches: &ArgMatches) -> anyhow::Result<()> {
    match args.cmd {
        ConfigCmd::Check { file } => check(&file),
        ConfigCmd::Show { commented, .. } => {
            let show = matches
                .subcommand_matches("config")
                .and_then(|c| c.subcommand_matches("show"))
                .context("no `config show` on the command line")?;
            print!("{}", header(commented));
            print!("{}", render(&run_options(), show, commented));
            Ok(())
        }
    }
}

fn header(commented: bool) -> String {
    let version = env!("CARGO_PKG_VERSION");
    if commented {
        format!(
            "# smtp-monitor {version} configuration: the options of `smtp-user run`\n\
             # (`smtp-user run --help`, man smtp-user-run), one key per option, named\n\
             # as the long option with `_` for `-`. Every value below is the built-in\n\
             # default, commented out: uncomment and change what you need. Flags on\n\
             # the command line (the unit's ExecStart) override this file.\n\
             # `smtp-user config check FILE` checks a file; `smtp-user config show`\n\
             # prints the effective configuration.\n"
        )
    } else {
        format!("# smtp-monitor {version}: effective configuration of `smtp-user run`.\n")
    }
}

/// Checks the file, the options together, and the rules file it names.
fn check(path: &Path) -> anyhow::Result<()> {
    let file = ConfigFile::load(path, &run_options())?;
    let matches = file
        .apply(run_options())
        .try_get_matches_from(["run"])
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.render()))?;
    let args = RunArgs::from_arg_matches(&matches)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.render()))?;
    if let Some(rules) = &args.rules {
        super::replay::load_rules(Some(rules))?;
    }
    println!(
        "{}: ok ({} option{} set)",
        path.display(),
        file.settings().len(),
        if file.settings().len() == 1 { "" } else { "s" }
    );
    Ok(())
}
