//! Message content live (issue 11): `fileinfo` hashes and URLs of mails
//! sent by swaks to Postfix's `smtp-sink`, and the content rules on threat
//! intelligence (attachment hash lists, URL domains) with `--gate`: a
//! matching message is never stored, a clean one is stored byte for byte.
//! Hashes are checked against `sha256sum` and `md5sum` of the files sent.

use std::{path::Path, process::Command};

use serde_json::Value;
use smtp_e2e::{
    live::{of_type, Live},
    mail::require_tools,
    require_root,
};

fn ready(test: &str) -> bool {
    require_root(test) && require_tools(test, &["swaks", "smtp-sink", "sha256sum", "md5sum"])
}

/// `sha256sum FILE` / `md5sum FILE`: the digest, as the tool prints it.
fn digest(tool: &str, path: &Path) -> String {
    let out = Command::new(tool).arg(path).output().expect(tool);
    assert!(out.status.success(), "{tool} failed");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

/// Deterministic bytes that are no text (xorshift).
fn binary(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Base64 in 76-column lines, LF line endings.
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for (i, c) in data.chunks(3).enumerate() {
        let n = c.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b)) << (8 * (3 - c.len()));
        for k in 0..4 {
            s.push(if k <= c.len() {
                T[((n >> (18 - 6 * k)) & 63) as usize] as char
            } else {
                '='
            });
        }
        if i % 19 == 18 {
            s.push('\n');
        }
    }
    s.push('\n');
    s
}

/// A message with a text part and a base64 attachment `name` (LF endings).
fn with_attachment(tag: &str, text: &str, name: &str, content: &[u8]) -> Vec<u8> {
    format!(
        "From: alice@example.org\nTo: bob@example.net\nSubject: {tag}\nMIME-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"b-{tag}\"\n\n--b-{tag}\n\
         Content-Type: text/plain\n\n{text}\n--b-{tag}\n\
         Content-Type: application/octet-stream; name=\"{name}\"\n\
         Content-Disposition: attachment; filename=\"{name}\"\n\
         Content-Transfer-Encoding: base64\n\n{}--b-{tag}--\n",
        base64(content)
    )
    .into_bytes()
}

/// What smtp-sink stores for a `--data` file: one more line end.
fn as_stored(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.push(b'\n');
    v
}

fn files_named<'a>(ev: &'a [Value], name: &str) -> Vec<&'a Value> {
    ev.iter()
        .filter(|e| e["event_type"] == "fileinfo" && e["fileinfo"]["filename"] == name)
        .collect()
}

#[test]
fn fileinfo_hashes_and_urls_match_what_was_sent() {
    if !ready("fileinfo_hashes_and_urls_match_what_was_sent") {
        return;
    }
    let mut live = Live::start("files", None, &["--hashes"]);
    let bin = live.dir.0.join("payload.bin");
    std::fs::write(&bin, binary(150_000, 7)).expect("payload");
    let pdf = live.dir.0.join("report.pdf");
    std::fs::write(
        &pdf,
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer\n%%EOF\n",
    )
    .expect("pdf");
    let r = live.swaks(&[
        "--from",
        "alice@example.org",
        "--to",
        "bob@example.net",
        "--header",
        "Subject: two files",
        "--body",
        "see https://files.example.com/x?id=1 and mailto:carol@example.org",
        "--attach",
        &format!("@{}", bin.display()),
        "--attach",
        &format!("@{}", pdf.display()),
    ]);
    assert!(r.success(), "swaks: {}", r.stdout);

    // A forwarded message (message/rfc822) whose attachment is a file too,
    // and URLs in a quoted-printable and an HTML part.
    let inner_file = binary(3000, 99);
    let inner_path = live.dir.0.join("inner.bin");
    std::fs::write(&inner_path, &inner_file).expect("inner");
    let fwd = format!(
        "From: alice@example.org\nTo: bob@example.net\nSubject: fwd\n\
         Content-Type: multipart/mixed; boundary=outer\n\n--outer\n\
         Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n\
         qp link http://qp.exa=\nmple.net/p=3D1\n--outer\n\
         Content-Type: text/html\n\n<a href=\"http://html.example.net/h\">h</a>\n--outer\n\
         Content-Type: message/rfc822\n\n{}--outer--\n",
        String::from_utf8_lossy(&with_attachment(
            "inner",
            "inner text",
            "inner.bin",
            &inner_file
        ))
    );
    let r = live.send_data("alice@example.org", fwd.as_bytes());
    assert!(r.success(), "swaks: {}", r.stdout);
    live.stop();

    let ev = live.events();
    for (name, path, mimetype) in [
        ("payload.bin", &bin, "application/octet-stream"),
        ("report.pdf", &pdf, "application/pdf"),
        ("inner.bin", &inner_path, "application/octet-stream"),
    ] {
        let f = files_named(&ev, name);
        assert_eq!(f.len(), 1, "{name}: {ev:#?}");
        let f = f[0];
        let size = std::fs::metadata(path).expect("size").len();
        assert_eq!(f["fileinfo"]["sha256"], digest("sha256sum", path), "{f}");
        assert_eq!(f["fileinfo"]["md5"], digest("md5sum", path), "{f}");
        assert_eq!(f["fileinfo"]["size"], size, "{f}");
        assert_eq!(f["fileinfo"]["state"], "CLOSED", "{f}");
        assert_eq!(f["fileinfo"]["mimetype"], mimetype, "{f}");
        assert_eq!(f["smtp"]["mail_from"], "<alice@example.org>", "{f}");
    }
    let smtp = of_type(&ev, "smtp");
    assert_eq!(smtp.len(), 2, "{smtp:#?}");
    let urls = |t: &Value| -> Vec<String> {
        t["email"]["url"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        urls(&smtp[0]),
        vec![
            "https://files.example.com/x?id=1",
            "mailto:carol@example.org"
        ]
    );
    assert_eq!(
        urls(&smtp[1]),
        vec!["http://qp.example.net/p=1", "http://html.example.net/h"]
    );
    for t in &smtp {
        assert!(
            t["email"]["body_md5"]
                .as_str()
                .is_some_and(|m| m.len() == 32),
            "{t}"
        );
        assert!(t["email"]["subject_md5"].is_string(), "{t}");
    }
}

/// The rules of the gate test: a listed SHA-256 and a listed URL domain,
/// both dropping.
fn rules(bad_sha256: &str) -> String {
    format!(
        r#"
[[rule]]
sid = 2001
name = "listed-attachment"
action = "drop"
[rule.when]
attachment_sha256 = ["{bad_sha256}"]

[[rule]]
sid = 2002
name = "listed-url-domain"
action = "drop"
[rule.when]
url_domain = ["evil.example"]
"#
    )
}

#[test]
fn listed_hash_and_url_domain_are_never_stored_with_the_gate() {
    if !ready("listed_hash_and_url_domain_are_never_stored_with_the_gate") {
        return;
    }
    let bad = binary(20_000, 3);
    let bad_path = std::env::temp_dir().join(format!("content-live-bad-{}", std::process::id()));
    std::fs::write(&bad_path, &bad).expect("bad file");
    let bad_sha = digest("sha256sum", &bad_path);
    let _ = std::fs::remove_file(&bad_path);
    let mut live = Live::start("intel", Some(&rules(&bad_sha)), &["--gate"]);

    let hash_msg = with_attachment("hash", "quarterly numbers", "invoice.bin", &bad);
    let r = live.send_data("alice@example.org", &hash_msg);
    assert!(
        !r.success(),
        "listed attachment must not be accepted: {}",
        r.stdout
    );

    let url_msg = b"From: alice@example.org\nTo: bob@example.net\nSubject: url\n\n\
please log in at https://login.www.EVIL.example/account now\n"
        .to_vec();
    let r = live.send_data("alice@example.org", &url_msg);
    assert!(
        !r.success(),
        "listed URL domain must not be accepted: {}",
        r.stdout
    );

    let clean = with_attachment(
        "clean",
        "see https://good.example.org/ and http://evil.example.org/ (not the listed domain)",
        "data.bin",
        &binary(20_000, 4),
    );
    let r = live.send_data("alice@example.org", &clean);
    assert!(r.success(), "clean mail: {}", r.stdout);

    assert_eq!(
        live.sink.messages(),
        vec![as_stored(&clean)],
        "only the clean mail, intact"
    );
    live.stop();
    let alerts = live.alerts();
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    assert_eq!(alerts[0]["alert"]["signature_id"], 2001, "{}", alerts[0]);
    let matched = alerts[0]["alert"]["matched"].as_str().unwrap_or("");
    assert!(
        matched.contains("invoice.bin") && matched.contains(&bad_sha),
        "the alert names the file and its sha256: {matched}"
    );
    assert_eq!(alerts[1]["alert"]["signature_id"], 2002, "{}", alerts[1]);
    let matched = alerts[1]["alert"]["matched"].as_str().unwrap_or("");
    assert!(
        matched.contains("https://login.www.EVIL.example/account"),
        "the alert names the URL: {matched}"
    );
}
