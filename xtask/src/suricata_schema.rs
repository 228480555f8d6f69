//! Suricata's own EVE schema (`etc/schema.json` of its source), fetched into
//! a cache for the output tests, which validate every EVE line against it
//! when it is there (it is GPL-2.0: never committed to this repository).
//!
//! Source: Debian's source package `suricata` (unstable, where 8.x is), as
//! `apt-get source --print-uris` names it, through a private apt state
//! directory (the system's apt configuration is not touched). The upstream
//! tarball is checked against the SHA-256 of Debian's source index, and
//! only `etc/schema.json` is kept, with a `.source` note of where it came from.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// `$SURICATA_EVE_SCHEMA`, else
/// `${XDG_CACHE_HOME:-$HOME/.cache}/smtp-monitor/suricata-eve-schema.json`
/// (the tests look in the same place: `smtp-user/tests/eve_schema`).
pub fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SURICATA_EVE_SCHEMA") {
        return Some(PathBuf::from(p));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("smtp-monitor/suricata-eve-schema.json"))
}

/// Fetches the schema unless it is cached. Failing to fetch is not fatal:
/// the tests then print a skip line and check our schema only.
pub fn ensure() {
    let Some(dest) = path() else {
        eprintln!("xtask: no HOME or XDG_CACHE_HOME: Suricata's EVE schema not fetched");
        return;
    };
    if dest.is_file() {
        return;
    }
    eprintln!(
        "xtask: fetching Suricata's EVE schema (Debian source package suricata) into {}",
        dest.display()
    );
    if let Err(e) = fetch(&dest) {
        eprintln!(
            "xtask: warning: Suricata's EVE schema not fetched ({e:#}); \
             the output tests will check our schema only"
        );
    }
}

fn fetch(dest: &Path) -> Result<()> {
    let dir = dest
        .parent()
        .context("schema path has no directory")?
        .join("suricata-src");
    let lists = dir.join("lists");
    let cache = dir.join("cache");
    std::fs::create_dir_all(lists.join("partial"))?;
    std::fs::create_dir_all(cache.join("archives/partial"))?;
    let sources = dir.join("sources.list");
    std::fs::write(
        &sources,
        "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
         http://deb.debian.org/debian sid main\n",
    )?;
    let apt_opts = [
        format!("Dir::Etc::SourceList={}", sources.display()),
        "Dir::Etc::SourceParts=/dev/null".to_string(),
        format!("Dir::State::Lists={}", lists.display()),
        format!("Dir::Cache={}", cache.display()),
        "Debug::NoLocking=1".to_string(),
        "APT::Sandbox::User=root".to_string(),
    ];
    let apt = |args: &[&str]| -> Result<String> {
        let mut c = Command::new("apt-get");
        c.arg("-q");
        for o in &apt_opts {
            c.arg("-o").arg(o);
        }
        let out = c.args(args).output().context("cannot run apt-get")?;
        if !out.status.success() {
            bail!(
                "apt-get {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    apt(&["update"])?;
    let uris = apt(&["source", "--print-uris", "suricata"])?;
    // 'URL' NAME SIZE SHA256:HEX, for the upstream tarball.
    let (url, name, sha) = uris
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let url = f.next()?.trim_matches('\'');
            let name = f.next()?;
            let _size = f.next()?;
            let sha = f.next()?.strip_prefix("SHA256:")?;
            (name.contains(".orig.tar.") && !name.ends_with(".asc"))
                .then(|| (url.to_string(), name.to_string(), sha.to_string()))
        })
        .next()
        .context("no upstream tarball of suricata in Debian's source index")?;
    let tarball = dir.join(&name);
    let ok = Command::new("curl")
        .args(["-fsSL", "--retry", "2", "-o"])
        .arg(&tarball)
        .arg(&url)
        .status()
        .context("cannot run curl")?
        .success();
    if !ok {
        bail!("cannot download {url}");
    }
    let got = Command::new("sha256sum")
        .arg(&tarball)
        .output()
        .context("cannot run sha256sum")?;
    let got = String::from_utf8_lossy(&got.stdout);
    if got.split_whitespace().next() != Some(sha.as_str()) {
        let _ = std::fs::remove_file(&tarball);
        bail!("{name}: SHA-256 differs from Debian's source index");
    }
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(&tarball)
        .args(["--wildcards", "*/etc/schema.json"])
        .output()
        .context("cannot run tar")?;
    let _ = std::fs::remove_file(&tarball);
    if !out.status.success() || out.stdout.is_empty() {
        bail!("{name} has no etc/schema.json");
    }
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .with_context(|| format!("etc/schema.json of {name} is not JSON"))?;
    let tmp = dest.with_extension("json.tmp");
    std::fs::write(&tmp, &out.stdout)?;
    std::fs::rename(&tmp, dest)?;
    std::fs::write(
        dest.with_extension("source"),
        format!("etc/schema.json of {name}\n{url}\nSHA256:{sha}\n"),
    )?;
    eprintln!(
        "xtask: Suricata's EVE schema from {name}: {}",
        dest.display()
    );
    Ok(())
}
