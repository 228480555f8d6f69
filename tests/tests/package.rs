//! The Debian package (`cargo xtask deb`): installs with `dpkg -i`, the
//! installed binary runs and checks the packaged configuration, the
//! installed unit verifies, and `dpkg --purge` leaves none of its files.
//! Changes the machine's /usr and /etc for its duration, so it refuses to
//! run when a `smtp-monitor` package is already installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use smtp_e2e::require_root;

const PACKAGE: &str = "smtp-monitor";

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn installed() -> bool {
    String::from_utf8_lossy(&run("dpkg-query", &["-W", "-f=${Status}", PACKAGE]).stdout)
        .contains("ok installed")
}

/// Purges the package if the test installed it (also on panic).
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", PACKAGE]);
    }
}

#[test]
fn deb_installs_runs_and_purges_cleanly() {
    if !require_root("deb_installs_runs_and_purges_cleanly") {
        return;
    }
    assert!(
        !installed(),
        "{PACKAGE} is installed on this machine: the test would replace it"
    );
    // Same target directory as the other tests' release build.
    smtp_e2e::smtp_user_bin();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["run", "--quiet", "-p", "xtask", "--", "deb"])
        .current_dir(&root)
        .output()
        .expect("cargo xtask deb");
    let deb = PathBuf::from(ok(&out, "cargo xtask deb").trim());
    assert!(deb.exists(), "{}", deb.display());
    let deb_s = deb.to_string_lossy().into_owned();

    let _purge = Purge;
    ok(&run("dpkg", &["-i", &deb_s]), "dpkg -i");
    let files: Vec<String> = ok(&run("dpkg-query", &["-L", PACKAGE]), "dpkg -L")
        .lines()
        .map(str::to_string)
        .collect();
    for want in [
        "/usr/bin/smtp-user",
        "/lib/systemd/system/smtp-monitor@.service",
        "/etc/smtp-monitor/config.toml",
        "/etc/logrotate.d/smtp-monitor",
        "/usr/share/doc/smtp-monitor/examples/rules.toml",
        "/usr/share/man/man1/smtp-user.1.gz",
        "/usr/share/man/man1/smtp-user-run.1.gz",
        "/usr/share/man/man1/smtp-user-config-check.1.gz",
        "/usr/share/bash-completion/completions/smtp-user",
        "/usr/share/zsh/vendor-completions/_smtp-user",
        "/usr/share/fish/vendor_completions.d/smtp-user.fish",
    ] {
        assert!(files.iter().any(|f| f == want), "{want} not in the package");
        assert!(Path::new(want).exists(), "{want} not installed");
    }
    let conffiles = ok(
        &run("dpkg-query", &["-W", "-f=${Conffiles}", PACKAGE]),
        "conffiles",
    );
    assert!(
        conffiles.contains("/etc/smtp-monitor/config.toml"),
        "{conffiles}"
    );

    let version = ok(&run("/usr/bin/smtp-user", &["--version"]), "--version");
    assert_eq!(
        version.trim(),
        format!("smtp-user {}", env!("CARGO_PKG_VERSION"))
    );
    let check = ok(
        &run(
            "/usr/bin/smtp-user",
            &["config", "check", "/etc/smtp-monitor/config.toml"],
        ),
        "config check",
    );
    assert!(check.contains("ok (0 options set)"), "{check}");
    // The packaged rules example checks as a rules file.
    let cfg = std::env::temp_dir().join(format!("deb-rules-{}.toml", std::process::id()));
    std::fs::write(
        &cfg,
        "rules = \"/usr/share/doc/smtp-monitor/examples/rules.toml\"\n",
    )
    .expect("write");
    let check = run(
        "/usr/bin/smtp-user",
        &["config", "check", &cfg.to_string_lossy()],
    );
    let _ = std::fs::remove_file(&cfg);
    ok(&check, "config check with the example rules");
    // The installed unit verifies against the installed binary.
    let out = run(
        "systemd-analyze",
        &[
            "verify",
            "--man=no",
            "/lib/systemd/system/smtp-monitor@eth0.service",
        ],
    );
    ok(&out, "systemd-analyze verify");
    let warnings = String::from_utf8_lossy(&out.stderr);
    assert!(!warnings.contains("smtp-monitor@"), "{warnings}");
    let man = run("gzip", &["-dc", "/usr/share/man/man1/smtp-user-run.1.gz"]);
    assert!(
        ok(&man, "man page").contains("stats\\-interval"),
        "run's options in its page"
    );

    // The package's own files (directories such as /usr or /lib, shared
    // with other packages, stay).
    let own: Vec<&String> = files.iter().filter(|f| Path::new(f).is_file()).collect();
    assert!(own.len() >= 10, "{own:?}");
    ok(&run("dpkg", &["--purge", PACKAGE]), "dpkg --purge");
    assert!(!installed(), "still installed after purge");
    for f in own {
        assert!(
            std::fs::symlink_metadata(f).is_err(),
            "{f} left after purge"
        );
    }
    for d in ["/etc/smtp-monitor", "/usr/share/doc/smtp-monitor"] {
        assert!(!Path::new(d).exists(), "{d} left after purge");
    }
}
