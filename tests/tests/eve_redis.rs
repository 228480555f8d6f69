//! `--eve-redis`: the EVE lines reach a real redis-server beside the file
//! output — the stream read back with `redis-cli XRANGE` equals the file —
//! and `ctl reopen` moves the file output to a new file (logrotate).

use std::time::{Duration, Instant};

use smtp_e2e::{
    live::{events, Live, POLICY_RULES},
    redis::RedisServer,
    require_root,
};

/// The `eve` field of each `XRANGE key - +` entry, in order.
fn xrange_eve(r: &RedisServer, key: &str) -> Vec<String> {
    // --raw prints id, field, value on lines of their own.
    let text = r.cli_text(&["XRANGE", key, "-", "+"]);
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(3)
        .filter_map(|c| match c {
            [_, "eve", v] => Some(v.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn eve_stream_equals_the_file_and_reopen_rotates() {
    if !require_root("eve_stream_equals_the_file_and_reopen_rotates") {
        return;
    }
    let mut live = Live::start("everd", Some(POLICY_RULES), &[]);
    let pw = live.dir.0.join("redis.pw");
    std::fs::write(&pw, "t0p-secret\n").expect("pw");
    let redis = RedisServer::start(
        &live.pair.server_ns,
        &["127.0.0.1"],
        6379,
        Some("t0p-secret"),
        live.dir.0.join("redis"),
    );
    let pw_s = pw.to_string_lossy().into_owned();
    live.spawn(
        Some(POLICY_RULES),
        &[
            "--eve-redis",
            "redis://127.0.0.1:6379/eve?mode=stream&maxlen=1000",
            "--redis-password-file",
            &pw_s,
        ],
    );
    for i in 0..3 {
        let from = format!("user{i}@example.org");
        assert!(live
            .swaks(&["--from", &from, "--to", "bob@example.net"])
            .success());
    }
    let _ = live.swaks(&["--from", "eve@forbidden.example", "--to", "bob@example.net"]);

    // ctl status shows the link; ctl reopen after a rename starts a new file.
    let (ok, out, err) = live.ctl(&["--json", "status"]);
    assert!(ok, "{err}");
    assert!(out.contains("\"eve_redis\":\"connected"), "{out}");
    let rotated = live.dir.0.join("eve.json.1");
    // Lines are flushed every second: wait until the file has the alert.
    let end = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&live.eve)
        .unwrap_or_default()
        .contains("\"alert\"")
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::rename(&live.eve, &rotated).expect("rotate");
    let (ok, out, err) = live.ctl(&["reopen"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("reopened "), "{out}");
    assert!(live
        .swaks(&["--from", "late@example.org", "--to", "bob@example.net"])
        .success());
    let err = live.stop();
    assert!(err.contains("eve_redis: sent="), "{err}");

    let old = std::fs::read_to_string(&rotated).expect("rotated file");
    let new = std::fs::read_to_string(&live.eve).expect("new file");
    assert!(old.contains("\"alert\""), "{old}");
    assert!(
        new.contains("late@example.org"),
        "the new file gets the later lines: {new}"
    );
    let file_lines: Vec<String> = old.lines().chain(new.lines()).map(str::to_string).collect();
    let _ = events(&rotated);
    let stream = xrange_eve(&redis, "eve");
    assert!(file_lines.len() >= 8, "{file_lines:?}");
    assert_eq!(
        stream, file_lines,
        "the Redis stream must equal the file output"
    );
}

#[test]
fn eve_list_and_unreachable_redis_do_not_stop_the_file() {
    if !require_root("eve_list_and_unreachable_redis_do_not_stop_the_file") {
        return;
    }
    // Nobody listens on 127.0.0.1:6390: the events are queued (bounded,
    // oldest dropped and counted), the file output goes on.
    let mut live = Live::start(
        "evelst",
        Some(POLICY_RULES),
        &[
            "--eve-redis",
            "redis://127.0.0.1:6390/eve?mode=rpush",
            "--eve-redis-queue",
            "3",
        ],
    );
    for i in 0..3 {
        let from = format!("user{i}@example.org");
        assert!(live
            .swaks(&["--from", &from, "--to", "bob@example.net"])
            .success());
    }
    let end = Instant::now() + Duration::from_secs(10);
    let dropped = loop {
        let (ok, out, err) = live.ctl(&["--json", "stats"]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).expect("JSON");
        let r = &v["user"]["eve_redis"];
        if r["dropped"].as_u64().unwrap_or(0) > 0 || Instant::now() > end {
            assert_eq!(r["connected"], false, "{v}");
            assert!(r["queued"].as_u64().unwrap_or(99) <= 3, "{v}");
            break r["dropped"].as_u64().unwrap_or(0);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(dropped > 0, "overflow must be counted");
    // Redis comes up: what is queued (the newest 3) is sent, as RPUSH.
    let redis = RedisServer::start(
        &live.pair.server_ns,
        &["127.0.0.1"],
        6390,
        None,
        live.dir.0.join("redis"),
    );
    let end = Instant::now() + Duration::from_secs(15);
    let llen = |r: &RedisServer| {
        r.cli_text(&["LLEN", "eve"])
            .trim()
            .parse::<usize>()
            .unwrap_or(0)
    };
    while llen(&redis) < 3 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(llen(&redis) >= 3, "the queued lines did not reach Redis");
    live.stop();
    let file: Vec<String> = std::fs::read_to_string(&live.eve)
        .expect("file")
        .lines()
        .map(str::to_string)
        .collect();
    let listed: Vec<String> = redis
        .cli_text(&["LRANGE", "eve", "0", "-1"])
        .lines()
        .map(str::to_string)
        .collect();
    // The newest lines, in order (RPUSH keeps the order); lines written at
    // exit follow them.
    assert!(listed.len() >= 3 && file.len() > listed.len(), "{listed:?}");
    assert_eq!(listed.as_slice(), &file[file.len() - listed.len()..]);
}
