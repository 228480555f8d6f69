//! Rules file loading: every error kind is reported at the exact
//! `PATH:LINE:COLUMN`, list files, digest, the shipped example.

use std::path::{Path, PathBuf};

use smtp_user::policy::{Action, RuleSet, RulesError};

fn origin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules.toml")
}

fn err(text: &str) -> RulesError {
    match RuleSet::from_toml(text, &origin()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

/// (line, column, reason contains)
fn at(text: &str, line: usize, column: usize, reason: &str) {
    let e = err(text);
    assert_eq!((e.line, e.column), (line, column), "{e}");
    assert!(e.reason.contains(reason), "{e}");
    assert_eq!(e.path, origin());
    assert!(e
        .to_string()
        .starts_with(&format!("{}:{line}:{column}: ", origin().display())));
}

const HEAD: &str = "[[rule]]\nsid = 5\nname = \"r\"\n[rule.when]\n";

#[test]
fn syntax_error() {
    at("[[rule]]\nsid = = 3\n", 2, 7, "");
}

#[test]
fn unknown_key() {
    at(
        &format!("{HEAD}mail_frm = [\"a@b\"]\n"),
        5,
        1,
        "unknown field `mail_frm`",
    );
    at(
        "[defaults]\nprotocol_eror = \"drop\"\n",
        2,
        1,
        "unknown field `protocol_eror`",
    );
    at(
        "[[rule]]\nsid = 5\nname = \"r\"\nverdict = \"drop\"\n[rule.when]\nhelo = [\"x\"]\n",
        4,
        1,
        "unknown field `verdict`",
    );
}

#[test]
fn bad_type() {
    at(
        "[[rule]]\nsid = \"five\"\nname = \"r\"\n[rule.when]\nhelo = [\"x\"]\n",
        2,
        7,
        "invalid type",
    );
    at(
        &format!("{HEAD}size_over = \"big\"\n"),
        5,
        13,
        "invalid type",
    );
}

#[test]
fn bad_cidr() {
    at(
        &format!("{HEAD}client_ip = [\"10.0.0.0/8\", \"10.0.0.0/40\"]\n"),
        5,
        28,
        "prefix length",
    );
    at(
        &format!("{HEAD}client_ip = [\"10.0.0/8\"]\n"),
        5,
        14,
        "invalid IP address",
    );
}

#[test]
fn bad_regex() {
    at(
        &format!("{HEAD}body_regex = [\"ok\", \"a(b\"]\n"),
        5,
        21,
        "invalid regex \"a(b\": unclosed group",
    );
    at(
        &format!("{HEAD}header = [{{ name = \"From\", regex = \"[z-a]\" }}]\n"),
        5,
        36,
        "invalid regex \"[z-a]\": invalid character class range, the start must be <= the end",
    );
}

#[test]
fn bad_duration_action_severity_anomaly() {
    at("[[rule]]\nsid = 5\nname = \"r\"\nblock_ip_for = \"10 minutes\"\n[rule.when]\nhelo = [\"x\"]\n", 4, 16, "invalid duration");
    at(
        "[[rule]]\nsid = 5\nname = \"r\"\naction = \"block\"\n[rule.when]\nhelo = [\"x\"]\n",
        4,
        10,
        "unknown action",
    );
    at(
        "[[rule]]\nsid = 5\nname = \"r\"\nseverity = 4\n[rule.when]\nhelo = [\"x\"]\n",
        4,
        12,
        "invalid severity",
    );
    at(
        &format!("{HEAD}anomaly = [\"no_helo\", \"bogus_thing\"]\n"),
        5,
        23,
        "unknown anomaly kind \"bogus_thing\"",
    );
    at(
        "[defaults]\nprotocol_error = \"ignore\"\n",
        2,
        18,
        "unknown action",
    );
}

#[test]
fn unreadable_list_file() {
    at(
        &format!("{HEAD}mail_from_domain_file = \"no/such/list.txt\"\n"),
        5,
        25,
        "cannot read list file",
    );
}

#[test]
fn duplicate_and_reserved_sid() {
    let two = "[[rule]]\nsid = 7\nname = \"a\"\n[rule.when]\nhelo = [\"x\"]\n\n[[rule]]\nsid = 7\nname = \"b\"\n[rule.when]\nhelo = [\"y\"]\n";
    at(two, 8, 7, "duplicate sid 7");
    at(
        "[[rule]]\nsid = 1\nname = \"a\"\n[rule.when]\nhelo = [\"x\"]\n",
        2,
        7,
        "reserved",
    );
}

#[test]
fn empty_conditions_and_header_shape() {
    at(
        "[[rule]]\nsid = 5\nname = \"r\"\n[rule.when]\n",
        4,
        1,
        "no condition",
    );
    at(&format!("{HEAD}helo = []\n"), 5, 8, "empty list");
    at(
        &format!("{HEAD}header = [{{ name = \"Subject\" }}]\n"),
        5,
        11,
        "exactly one of",
    );
}

#[test]
fn unreadable_rules_file() {
    let p = Path::new("/nonexistent/rules.toml");
    let e = RuleSet::from_file(p).expect_err("no such file");
    assert_eq!((e.line, e.column), (1, 1));
    assert!(e
        .to_string()
        .starts_with("/nonexistent/rules.toml:1:1: cannot read rules file"));
}

#[test]
fn list_files_and_digest() {
    let dir = std::env::temp_dir().join(format!("policy-rules-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("lists")).expect("temp dir");
    let rules = dir.join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nsid = 9\nname = \"listed\"\naction = \"reset\"\n[rule.when]\nmail_from_domain = [\"inline.example\"]\nmail_from_domain_file = \"lists/d.txt\"\n",
    )
    .expect("write rules");
    std::fs::write(
        dir.join("lists/d.txt"),
        "# comment\nlisted.example # why\n\n",
    )
    .expect("write list");
    let a = RuleSet::from_file(&rules).expect("loads");
    assert_eq!(a.len(), 2);
    assert_eq!(a.source(), Some(rules.as_path()));
    assert_eq!(a.digest().len(), 64);
    assert!(!a.has_content_rules());
    // The digest covers list files.
    std::fs::write(dir.join("lists/d.txt"), "other.example\n").expect("write list");
    let b = RuleSet::from_file(&rules).expect("loads");
    assert_ne!(a.digest(), b.digest());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn builtin_and_defaults() {
    let b = RuleSet::builtin();
    assert_eq!((b.len(), b.digest(), b.source()), (1, "builtin", None));
    assert_eq!(b.rules()[0].action, Action::Drop);
    let r =
        RuleSet::from_toml("[defaults]\nprotocol_error = \"reset\"\n", &origin()).expect("loads");
    assert_eq!(r.rules()[0].action, Action::Reset);
    assert_eq!(r.rules()[0].sid, 1);
}

#[test]
fn shipped_example_loads() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rules.toml");
    let r = RuleSet::from_file(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.len(), 18);
    assert!(r.has_content_rules());
    assert!(r.needs_files() && r.needs_urls());
    let sids: Vec<u32> = r.rules().iter().map(|r| r.sid).collect();
    assert!(sids.contains(&1001) && sids.contains(&1010) && sids.contains(&1017));
}

/// Hash lists: a bad line is an error at FILE:LINE; digests are checked.
#[test]
fn hash_list_errors_name_the_file_and_line() {
    let dir = std::env::temp_dir().join(format!("hash-list-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("h.txt"),
        "# comment\n44d88612fea8a8f36de82e1278abb02f\nnot-a-hash\n",
    )
    .unwrap();
    let rules = "[[rule]]\nsid = 5\nname = \"h\"\n[rule.when]\nattachment_hash_file = \"h.txt\"\n";
    let e = RuleSet::from_toml(rules, &dir.join("r.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("h.txt:3:"), "{e}");
    assert!(e.contains("not-a-hash"), "{e}");
    let bad = "[[rule]]\nsid = 5\nname = \"h\"\n[rule.when]\nattachment_sha256 = [\"abc\"]\n";
    let e = RuleSet::from_toml(bad, &dir.join("r.toml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("r.toml:5:"), "{e}");
    assert!(e.contains("64 hex digits"), "{e}");
    std::fs::write(
        dir.join("h.txt"),
        "44D88612FEA8A8F36DE82E1278ABB02F # eicar\n",
    )
    .unwrap();
    let r = RuleSet::from_toml(rules, &dir.join("r.toml")).unwrap();
    assert!(r.needs_files() && !r.needs_urls());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The anomaly names a rule accepts are the dissector's kinds, every one
/// (derived from the enum: `gate_missed` was once missing from a copied list).
#[test]
fn every_anomaly_kind_is_a_valid_rule_condition() {
    use smtp_user::smtp::AnomalyKind;
    use strum::VariantArray;
    for kind in AnomalyKind::VARIANTS {
        let text = format!("{HEAD}anomaly = [\"{}\"]\n", kind.as_str());
        if let Err(e) = RuleSet::from_toml(&text, &origin()) {
            panic!("anomaly {:?} refused: {e}", kind.as_str());
        }
    }
    let text = format!("{HEAD}anomaly = [\"gate_missed\"]\n");
    assert!(RuleSet::from_toml(&text, &origin()).is_ok());
}

/// `as_str` (rule names, EVE `anomaly.event`) and the serde name agree for
/// every kind.
#[test]
fn anomaly_names_agree_with_serde() {
    use smtp_user::smtp::AnomalyKind;
    use strum::VariantArray;
    for kind in AnomalyKind::VARIANTS {
        assert_eq!(
            serde_json::to_value(kind).unwrap(),
            serde_json::Value::from(kind.as_str())
        );
    }
}

/// `rev` is read from the rule (1 when absent) and the rule's text is kept
/// for the alert's `rule` key, without the comments and blank lines after it.
#[test]
fn rule_rev_and_text() {
    let text = "# rules\n[[rule]]\nsid = 7\nrev = 4\nname = \"r\"\n[rule.when]\nhelo = [\"x\"]\n\n# next\n[[rule]]\nsid = 8\nname = \"s\"\n[rule.when]\nhelo = [\"y\"]\n";
    let rules = RuleSet::from_toml(text, &origin()).expect("valid");
    let r = rules.rules();
    assert_eq!(r.len(), 3);
    assert_eq!((r[1].sid, r[1].rev), (7, 4));
    assert_eq!(
        r[1].text.as_deref(),
        Some("[[rule]]\nsid = 7\nrev = 4\nname = \"r\"\n[rule.when]\nhelo = [\"x\"]")
    );
    assert_eq!((r[2].sid, r[2].rev), (8, 1));
    assert_eq!(
        r[2].text.as_deref(),
        Some("[[rule]]\nsid = 8\nname = \"s\"\n[rule.when]\nhelo = [\"y\"]")
    );
    assert_eq!(r[0].text, None, "the built-in rule has no text");
}

#[test]
fn content_rules_without_an_action_reject_under_the_gate() {
    let text = r#"
[[rule]]
sid = 7
name = "kw"
[rule.when]
body_keywords = ["x"]

[[rule]]
sid = 8
name = "sender"
[rule.when]
mail_from_domain = ["example.org"]

[[rule]]
sid = 9
name = "kw-alert"
action = "alert"
[rule.when]
body_keywords = ["y"]
"#;
    let rules =
        smtp_user::policy::RuleSet::from_toml(text, std::path::Path::new("r.toml")).expect("valid");
    assert!(!rules.has_gate_rules(), "without the gate: alerts");
    let rules = rules.gate_defaults();
    let actions: Vec<_> = rules.rules().iter().map(|r| (r.sid, r.action)).collect();
    use smtp_user::policy::Action;
    assert!(actions.contains(&(7, Action::Reject)), "{actions:?}");
    assert!(actions.contains(&(8, Action::Alert)), "{actions:?}");
    assert!(actions.contains(&(9, Action::Alert)), "{actions:?}");
    assert!(rules.has_gate_rules());
}

/// Files and URLs decide the new conditions; the alert names the file and
/// its sha256, or the URL.
#[test]
fn attachment_hash_type_size_and_url_domain_fire() {
    use smtp_user::smtp::{Event, FileInfo, FileState, Url};
    let sha = "a".repeat(64);
    let rules = format!(
        "[[rule]]\nsid = 7\nname = \"hash\"\n[rule.when]\nattachment_sha256 = [\"{}\"]\n\
[[rule]]\nsid = 8\nname = \"exe\"\n[rule.when]\nattachment_type = [\"application/vnd.microsoft.*\"]\nattachment_size_over = 10\n\
[[rule]]\nsid = 9\nname = \"url\"\n[rule.when]\nurl_domain = [\"evil.example\"]\n",
        sha.to_uppercase()
    );
    let r = std::sync::Arc::new(RuleSet::from_toml(&rules, Path::new("r.toml")).unwrap());
    let mut s = r.session(
        "198.18.0.1:1025".parse().unwrap(),
        "198.18.0.2:25".parse().unwrap(),
    );
    let file = |size, mimetype, sha256: &str| FileInfo {
        tx_id: 0,
        part: 1,
        filename: Some("a.bin".into()),
        content_type: "application/octet-stream".into(),
        size,
        md5: "0".repeat(32),
        sha1: "0".repeat(40),
        sha256: sha256.into(),
        mimetype,
        state: FileState::Closed,
        gaps: false,
        helo: None,
        mail_from: None,
        rcpt_to: vec![],
    };
    let mut out = Vec::new();
    s.event(
        &Event::File(file(5, "application/pdf", &"b".repeat(64))),
        &mut out,
    );
    assert!(out.is_empty(), "too small, not listed: {out:?}");
    s.event(&Event::File(file(50, "application/pdf", &sha)), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].signature_id, 7);
    assert!(
        out[0].matched.contains("a.bin") && out[0].matched.contains(&sha),
        "{}",
        out[0].matched
    );
    s.event(
        &Event::Url(Url {
            tx_id: 0,
            url: "https://user@Login.EVIL.example:8443/x".into(),
        }),
        &mut out,
    );
    s.event(
        &Event::Url(Url {
            tx_id: 0,
            url: "mailto:x@evil.example.org".into(),
        }),
        &mut out,
    );
    let sids: Vec<u32> = out.iter().map(|a| a.signature_id).collect();
    assert_eq!(sids, vec![7, 9]);
    assert!(out[1]
        .matched
        .contains("https://user@Login.EVIL.example:8443/x"));
    s.event(
        &Event::File(file(
            50,
            "application/vnd.microsoft.portable-executable",
            &"c".repeat(64),
        )),
        &mut out,
    );
    assert_eq!(out.last().map(|a| a.signature_id), Some(8));
}
