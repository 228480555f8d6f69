//! `cargo xtask deb`: the Debian package, built by cargo-deb from
//! `[package.metadata.deb]` in smtp-user/Cargo.toml.
//!
//! Before cargo-deb runs, the assets that come from the binary itself are
//! generated into `target/deb-assets/`: the man pages and shell
//! completions (`smtp-user generate`, from the clap definitions) and the
//! commented default configuration (`smtp-user config show --commented`).
//! The unit is `dist/systemd/smtp-monitor@.service`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::sh;

/// Builds the release binary, the generated assets and the package;
/// returns the `.deb`'s path.
pub fn build(root: &Path) -> Result<PathBuf> {
    let bin = crate::build_release(root)?;
    let assets = root.join("target/deb-assets");
    let _ = std::fs::remove_dir_all(&assets);
    std::fs::create_dir_all(&assets).context("cannot create target/deb-assets")?;
    sh::run(
        root,
        &[
            bin.to_string_lossy().into_owned(),
            "generate".into(),
            assets.to_string_lossy().into_owned(),
        ],
    )?;
    // Man pages are installed compressed (Debian policy 12.1).
    for page in std::fs::read_dir(assets.join("man")).context("man pages")? {
        let page = page?.path();
        sh::run(
            root,
            &[
                "gzip".into(),
                "-9nf".into(),
                page.to_string_lossy().into_owned(),
            ],
        )?;
    }
    // The template: every option commented out at its built-in default
    // (--config /dev/null: not this machine's /etc file).
    let out = Command::new(&bin)
        .args(["config", "show", "--commented", "--config", "/dev/null"])
        .output()
        .context("cannot run smtp-user config show")?;
    if !out.status.success() {
        bail!(
            "smtp-user config show failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(assets.join("config.toml"), &out.stdout).context("config.toml")?;
    let out = Command::new("cargo")
        .args(["deb", "-p", "smtp-user", "--no-build", "--strip"])
        .current_dir(root)
        .output()
        .context("cannot run cargo deb (cargo xtask prereqs installs it)")?;
    if !out.status.success() {
        bail!("cargo deb failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    // cargo-deb prints the package's path last.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb = stdout
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with(".deb"))
        .map(|l| root.join(l.trim()))
        .context("cargo deb printed no package path")?;
    Ok(deb)
}
