//! Differential test against tshark on the shared corpus of real captures:
//! the envelope (MAIL FROM and RCPT TO paths, per flow, in order) our
//! `smtp` events report must be the one tshark's SMTP dissector sees.
//!
//! tshark's command lines are normalised: verb case-insensitive, `FROM:` /
//! `TO:` and surrounding spaces stripped, ESMTP parameters removed, angle
//! brackets kept (our `mail_from` / `rcpt_to` form; `rcpt_to` includes
//! rejected recipients). Pipelined commands that tshark shows in one frame
//! are split per occurrence. Files where the two legitimately differ are
//! listed in [`EXCEPTIONS`] with the reason and our exact expected envelope.
//!
//! Skipped (with a message) when the corpus or `tshark` is absent.

mod corpus;

mod pipeline_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use pipeline_common::*;

/// Flow key: (client port, server port).
type FlowKey = (u64, u64);

/// Per flow: MAIL FROM paths and RCPT TO paths, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Envelope {
    mail_from: Vec<String>,
    rcpt_to: Vec<String>,
}

type Envelopes = BTreeMap<FlowKey, Envelope>;

/// A file where tshark and we differ for a known reason.
struct Exception {
    file: &'static str,
    why: &'static str,
    /// Our envelope, exactly: (client port, server port, MAIL paths, RCPT paths).
    ours: &'static [(u64, u64, &'static [&'static str], &'static [&'static str])],
}

const EXCEPTIONS: &[Exception] = &[
    Exception {
        file: "sv-smtp-pipelining.pcap",
        why: "the client sends MAIL, RCPT, DATA and the whole message in one segment \
              (PIPELINING); tshark dissects that frame as the message (SMTP/IMF) and \
              marks no request in it, so it finds no MAIL/RCPT at all",
        ours: &[(
            50287,
            25,
            &["<username@domain.com>"],
            &["<john.doe@example.com>"],
        )],
    },
    Exception {
        file: "sv-smtp-data-rejected.pcap",
        why: "the server rejects DATA (554, no 354); tshark enters DATA mode on the \
              DATA command regardless of the reply, so the next MAIL/RCPT are message \
              text for it. We follow the reply: the second transaction is seen",
        ours: &[(
            49898,
            25,
            &[
                "<splotchiestzg0@gezydb01.apis.dhl.com>",
                "<uprootedx38@gateway2c.dhl.com>",
            ],
            &["<mirjam@abrakadabra.ch>", "<mirjam@abrakadabra.ch>"],
        )],
    },
];

fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Separator of multiple occurrences in one tshark field.
const AGGREGATOR: char = '\u{1f}';

/// tshark's view: every SMTP request line, split per occurrence, MAIL and
/// RCPT kept. Ports 587 and 2525 are decoded as SMTP too (our default
/// monitored ports).
fn tshark_envelopes(path: &Path) -> Envelopes {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-d", "tcp.port==587,smtp", "-d", "tcp.port==2525,smtp"])
        .args(["-Y", "smtp.req", "-T", "fields"])
        .args([
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "smtp.command_line",
        ])
        .args(["-E", "occurrence=a"])
        .arg(format!("-Eaggregator={AGGREGATOR}"))
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut env = Envelopes::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split('\t');
        let (Some(sport), Some(dport), Some(cmds)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let key = (
            sport.parse().expect("tcp.srcport"),
            dport.parse().expect("tcp.dstport"),
        );
        for cmd in cmds.split(AGGREGATOR) {
            // tshark escapes CR/LF in field output.
            let cmd = cmd.trim_end_matches("\\n").trim_end_matches("\\r");
            let (verb, rest) = cmd.split_once(' ').unwrap_or((cmd, ""));
            let e = env.entry(key).or_default();
            match verb.to_ascii_uppercase().as_str() {
                "MAIL" => e.mail_from.push(path_of(rest, "FROM:")),
                "RCPT" => e.rcpt_to.push(path_of(rest, "TO:")),
                _ => {}
            }
        }
    }
    env.retain(|_, e| *e != Envelope::default());
    env
}

/// `FROM: <a@b> SIZE=1` → `<a@b>`: keyword (any case) and spaces stripped,
/// parameters removed, brackets kept.
fn path_of(arg: &str, keyword: &str) -> String {
    let arg = arg.trim_start();
    let arg = match arg.get(..keyword.len()) {
        Some(k) if k.eq_ignore_ascii_case(keyword) => &arg[keyword.len()..],
        _ => arg,
    };
    let arg = arg.trim();
    let end = if arg.starts_with('<') {
        arg.find('>').map_or(arg.len(), |i| i + 1)
    } else {
        arg.find(char::is_whitespace).unwrap_or(arg.len())
    };
    arg[..end].to_string()
}

/// Our view: `smtp.mail_from` / `smtp.rcpt_to` of every transaction.
fn our_envelopes(path: &Path) -> Envelopes {
    let (summary, lines) = replay_paths(&[path.to_path_buf()]);
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    let mut env = Envelopes::new();
    for l in of_type(&lines, "smtp") {
        let key = (
            l["src_port"].as_u64().expect("src_port"),
            l["dest_port"].as_u64().expect("dest_port"),
        );
        let e = env.entry(key).or_default();
        if let Some(m) = l["smtp"]["mail_from"].as_str() {
            e.mail_from.push(m.to_string());
        }
        for r in l["smtp"]["rcpt_to"].as_array().into_iter().flatten() {
            e.rcpt_to.push(r.as_str().unwrap_or_default().to_string());
        }
    }
    env.retain(|_, e| *e != Envelope::default());
    env
}

#[test]
fn path_normalisation() {
    assert_eq!(path_of(" <a@b> SIZE=10 BODY=8BITMIME", ""), "<a@b>");
    assert_eq!(path_of("FROM: <a@b> ", "FROM:"), "<a@b>");
    assert_eq!(path_of("from:<a@b>", "FROM:"), "<a@b>");
    assert_eq!(path_of("To:<x@y> NOTIFY=NEVER", "TO:"), "<x@y>");
    assert_eq!(path_of("TO: backup", "TO:"), "backup");
    assert_eq!(path_of("FROM:<>", "FROM:"), "<>");
}

#[test]
fn envelopes_match_tshark_on_the_corpus() {
    let Some(dir) = corpus::pcap_dir() else {
        println!("skipped: shared/corpus/pcap not found");
        return;
    };
    if !tshark_available() {
        println!("skipped: tshark not found");
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read corpus dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut compared = 0;
    let mut with_mail = 0;
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let ours = our_envelopes(path);
        let theirs = tshark_envelopes(path);
        match EXCEPTIONS.iter().find(|e| e.file == name) {
            Some(ex) => {
                let want: Envelopes = ex
                    .ours
                    .iter()
                    .map(|(c, s, m, r)| {
                        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
                        (
                            (*c, *s),
                            Envelope {
                                mail_from: v(m),
                                rcpt_to: v(r),
                            },
                        )
                    })
                    .collect();
                assert_eq!(ours, want, "{name}: our envelope (exception: {})", ex.why);
                assert_ne!(
                    ours, theirs,
                    "{name}: tshark now agrees with us: remove the exception"
                );
            }
            None => {
                assert_eq!(ours, theirs, "{name}: ours (left) vs tshark (right)");
                compared += 1;
            }
        }
        if !ours.is_empty() {
            with_mail += 1;
        }
    }
    println!(
        "{} files: {compared} identical to tshark, {} known exceptions, {with_mail} with mail",
        files.len(),
        EXCEPTIONS.len()
    );
    assert!(with_mail >= 15, "the corpus has mail in most files");
}
