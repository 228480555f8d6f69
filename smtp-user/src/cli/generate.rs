//! `smtp-user generate DIR` (hidden): the man pages and shell completions,
//! generated from the clap definitions for the package (`cargo xtask deb`).
//!
//! Writes `DIR/man/smtp-user.1` and one page per subcommand
//! (`smtp-user-run.1`, `smtp-user-config-check.1`, …), and
//! `DIR/completions/{smtp-user.bash,_smtp-user,smtp-user.fish}`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Command};
use clap_complete::Shell;

/// Arguments of `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Output directory (created).
    pub dir: PathBuf,
}

/// Writes the pages and completions of `cmd` (the whole command line).
pub fn generate(args: GenerateArgs, mut cmd: Command) -> anyhow::Result<()> {
    let man = args.dir.join("man");
    let completions = args.dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    cmd.build();
    pages(&cmd, "smtp-user", &man)?;
    for (shell, file) in [
        (Shell::Bash, "smtp-user.bash"),
        (Shell::Zsh, "_smtp-user"),
        (Shell::Fish, "smtp-user.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, "smtp-user", &mut out);
        write(&completions.join(file), &out)?;
    }
    Ok(())
}

/// The page of `cmd` named `name`, and its visible subcommands' pages.
fn pages(cmd: &Command, name: &str, dir: &Path) -> anyhow::Result<()> {
    let page = cmd
        .clone()
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .render(&mut out)
        .context("cannot render the man page")?;
    write(&dir.join(format!("{name}.1")), &out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() == "help" {
            continue;
        }
        pages(sub, &format!("{name}-{}", sub.get_name()), dir)?;
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
