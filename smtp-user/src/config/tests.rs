//! The configuration file against a command shaped like `run`: errors at
//! their line and column, the command line over the file, `show` output
//! read back to the same values.

use std::path::Path;

use clap::{Args, Command, FromArgMatches};

use super::{render, ConfigError, ConfigFile};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Hook {
    Tc,
    Xdp,
}

fn mark(s: &str) -> Result<u32, String> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|e| e.to_string())
}

/// Options shaped like `run`'s.
#[derive(Debug, Args, PartialEq)]
struct Opts {
    /// Interface.
    #[arg(long)]
    iface: Option<String>,
    /// Ports.
    #[arg(long, value_delimiter = ',', default_value = "25")]
    ports: Vec<u16>,
    /// Hook.
    #[arg(long, value_enum, default_value_t = Hook::Tc)]
    ingress: Hook,
    /// A switch.
    #[arg(long)]
    gate: bool,
    /// A mark.
    #[arg(long, default_value = "0x10", value_parser = mark)]
    gate_mark: u32,
    /// Seconds.
    #[arg(long, default_value_t = 10)]
    stats_interval: u64,
    /// A file.
    #[arg(long, short)]
    output: Option<std::path::PathBuf>,
}

fn schema() -> Command {
    Opts::augment_args(Command::new("run"))
}

fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
    ConfigFile::parse(Path::new("c.toml"), text, &schema())
}

/// The options from `text` with `argv` on the command line.
fn effective(text: &str, argv: &[&str]) -> Opts {
    let file = parse(text).expect("valid file");
    let m = file
        .apply(schema())
        .try_get_matches_from(std::iter::once("run").chain(argv.iter().copied()))
        .expect("argv");
    Opts::from_arg_matches(&m).expect("options")
}

fn error_at(text: &str) -> String {
    parse(text).expect_err("invalid file").to_string()
}

#[test]
fn values_of_every_shape() {
    let o = effective(
        "iface = \"eth1\"\nports = [25, 587]\ningress = \"xdp\"\ngate = true\n\
         gate_mark = 0x20\nstats_interval = 60\noutput = \"/var/log/eve.json\"\n",
        &[],
    );
    assert_eq!(
        o,
        Opts {
            iface: Some("eth1".into()),
            ports: vec![25, 587],
            ingress: Hook::Xdp,
            gate: true,
            gate_mark: 0x20,
            stats_interval: 60,
            output: Some("/var/log/eve.json".into()),
        }
    );
    // One value for a repeating option, split at its delimiter.
    assert_eq!(effective("ports = \"25,2525\"", &[]).ports, vec![25, 2525]);
    assert_eq!(effective("ports = 465", &[]).ports, vec![465]);
    // An empty file: the built-in defaults.
    assert_eq!(effective("", &[]).ports, vec![25]);
}

#[test]
fn command_line_overrides_the_file() {
    let text = "ports = [25, 587]\nstats_interval = 60\ningress = \"xdp\"\niface = \"eth1\"";
    let o = effective(
        text,
        &["--ports", "2525", "--iface", "eth2", "-o", "x.json"],
    );
    assert_eq!(o.ports, vec![2525]);
    assert_eq!(o.iface.as_deref(), Some("eth2"));
    assert_eq!(o.output.as_deref(), Some(Path::new("x.json")));
    // Not on the command line: the file's.
    assert_eq!(o.stats_interval, 60);
    assert_eq!(o.ingress, Hook::Xdp);
}

#[test]
fn errors_name_line_and_column() {
    // Unknown key: at the key.
    let e = error_at("ports = [25]\n  bogus = 1\n");
    assert!(e.starts_with("c.toml:2:3: unknown option `bogus`"), "{e}");
    // Kebab-case key: a hint.
    let e = error_at("stats-interval = 5");
    assert!(
        e.starts_with(
            "c.toml:1:1: unknown option `stats-interval` (did you mean `stats_interval`?)"
        ),
        "{e}"
    );
    // Wrong type: at the value.
    let e = error_at("# c\ngate = \"yes\"");
    assert_eq!(e, "c.toml:2:8: `gate`: expected a boolean, found string");
    // A value the option's parser rejects, inside an array: at the element.
    let e = error_at("ports = [25, 70000]");
    assert!(
        e.starts_with("c.toml:1:14: `ports`: invalid value '70000'"),
        "{e}"
    );
    let e = error_at("ingress = \"ebpf\"");
    assert!(
        e.starts_with("c.toml:1:11: `ingress`: invalid value 'ebpf'"),
        "{e}"
    );
    assert!(e.contains("tc") && e.contains("xdp"), "{e}");
    let e = error_at("gate_mark = \"0xZZ\"");
    assert!(
        e.starts_with("c.toml:1:13: `gate_mark`: invalid value '0xZZ'"),
        "{e}"
    );
    // A table where a value belongs.
    let e = error_at("[iface]\nname = \"x\"");
    assert!(e.starts_with("c.toml:1:"), "{e}");
    // TOML syntax, after a multi-byte character: columns count characters.
    let e = error_at("iface = \"é\" x");
    assert!(e.starts_with("c.toml:1:13: "), "{e}");
    // Duplicate key.
    let e = error_at("gate = true\ngate = false");
    assert!(e.starts_with("c.toml:2:"), "{e}");
}

#[test]
fn show_reads_back_to_the_same_values() {
    for (text, argv) in [
        ("", &[][..]),
        (
            "iface = \"eth1\"\nports = [25, 587]\ngate = true\ngate_mark = 0x20\n",
            &[
                "--stats-interval",
                "7",
                "--ingress",
                "xdp",
                "-o",
                "a b \"c\".json",
            ][..],
        ),
    ] {
        let file = parse(text).expect("valid");
        let m = file
            .apply(schema())
            .try_get_matches_from(std::iter::once("run").chain(argv.iter().copied()))
            .expect("argv");
        let before = Opts::from_arg_matches(&m).expect("options");
        let shown = render(&schema(), &m, false);
        let after = effective(&shown, &[]);
        assert_eq!(before, after, "{shown}");
        // Commented: every line a comment; the defaults come back.
        let template = render(&schema(), &m, true);
        assert!(template.lines().all(|l| l.is_empty() || l.starts_with('#')));
        assert_eq!(effective(&template, &[]), effective("", &[]), "{template}");
    }
}

#[test]
fn line_column_counts_characters() {
    assert_eq!(super::line_column("ab\ncdé f", 8), (2, 5));
    assert_eq!(super::line_column("x", 99), (1, 2));
    assert_eq!(super::line_column("é", 1), (1, 1));
}
