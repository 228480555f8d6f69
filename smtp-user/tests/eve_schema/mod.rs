//! Every EVE line a test sees is checked against two schemas:
//!
//! - ours, `smtp-user/schema/eve.json` (always; strict: no undocumented key);
//! - Suricata 8's own EVE schema (`etc/schema.json` of its source), with
//!   extra keys allowed, when `cargo xtask prereqs` has fetched it into the
//!   cache ([`suricata_schema_path`]); otherwise one skip line is printed.
//!
//! Tests call [`parse`] (bytes → validated values) or [`check`].
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;

/// Our schema, shipped in the repository.
pub fn our_schema_path() -> PathBuf {
    // From either crate that includes this file (smtp-user's tests, the
    // end-to-end crate in tests/), both beside smtp-user/.
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../smtp-user/schema/eve.json"
    ))
}

/// Where `cargo xtask prereqs` puts Suricata's schema:
/// `$SURICATA_EVE_SCHEMA`, else `${XDG_CACHE_HOME:-$HOME/.cache}/smtp-monitor/suricata-eve-schema.json`.
pub fn suricata_schema_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SURICATA_EVE_SCHEMA") {
        return Some(PathBuf::from(p));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("smtp-monitor/suricata-eve-schema.json"))
}

/// Sets every `additionalProperties: false` to `true`: Suricata's schema
/// with extra keys allowed (ours are documented in our schema).
pub fn allow_extra_keys(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if k == "additionalProperties" && *v == Value::Bool(false) {
                    *v = Value::Bool(true);
                } else {
                    allow_extra_keys(v);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(allow_extra_keys),
        _ => {}
    }
}

fn compile(schema: &Value, what: &str) -> jsonschema::Validator {
    jsonschema::validator_for(schema).unwrap_or_else(|e| panic!("{what} does not compile: {e}"))
}

fn ours() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        let p = our_schema_path();
        let text = std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
        let schema: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
        compile(&schema, "our EVE schema")
    })
}

/// Suricata's schema (extra keys allowed), if fetched.
pub fn suricata() -> Option<&'static jsonschema::Validator> {
    static V: OnceLock<Option<jsonschema::Validator>> = OnceLock::new();
    V.get_or_init(|| {
        let p = suricata_schema_path()?;
        let Ok(text) = std::fs::read_to_string(&p) else {
            println!(
                "skip: Suricata's EVE schema not at {} (run `cargo xtask prereqs`): \
                 lines checked against our schema only",
                p.display()
            );
            return None;
        };
        let mut schema: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
        allow_extra_keys(&mut schema);
        Some(compile(&schema, "Suricata's EVE schema"))
    })
    .as_ref()
}

/// Why `line` does not validate against `v`, if it does not.
pub fn errors(v: &jsonschema::Validator, line: &Value) -> Option<String> {
    let errs: Vec<String> = v
        .iter_errors(line)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    (!errs.is_empty()).then(|| errs.join("; "))
}

/// Panics unless every line validates against both schemas.
pub fn check(lines: &[Value]) {
    for line in lines {
        if let Some(e) = errors(ours(), line) {
            panic!("EVE line fails smtp-user/schema/eve.json: {e}\n{line}");
        }
        if let Some(s) = suricata() {
            if let Some(e) = errors(s, line) {
                panic!("EVE line fails Suricata's EVE schema: {e}\n{line}");
            }
        }
    }
}

/// Parses EVE output (one JSON object per line) and checks every line.
pub fn parse(out: &[u8]) -> Vec<Value> {
    let lines: Vec<Value> = std::str::from_utf8(out)
        .expect("EVE output is UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad EVE line {l:?}: {e}")))
        .collect();
    check(&lines);
    lines
}
