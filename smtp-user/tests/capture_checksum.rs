//! TCP checksum verification in replay's frame decoder (`--checksum`):
//! `on` marks each segment Good or Bad over the IPv4/IPv6 pseudo-header,
//! `off` leaves them Unknown, `auto` verifies unless the capture looks
//! offloaded (Suricata's rule: more than 1 in 10 of the first 1000 TCP
//! segments wrong).

use std::net::SocketAddr;

use smtp_user::capture::builder::TcpPacket;
use smtp_user::capture::decoder::{ChecksumSample, Decoder, AUTO_SAMPLE};
use smtp_user::capture::ipfrag::FragConfig;
use smtp_user::capture::wire::linktype;
use smtp_user::capture::{Checksum, TcpFlags};

fn frame(v6: bool, bad: bool, payload: &[u8]) -> Vec<u8> {
    let (c, s): (SocketAddr, SocketAddr) = if v6 {
        (
            "[2001:2::1]:40000".parse().unwrap(),
            "[2001:2::25]:25".parse().unwrap(),
        )
    } else {
        (
            "198.18.0.1:40000".parse().unwrap(),
            "198.18.0.25:25".parse().unwrap(),
        )
    };
    let mut p = TcpPacket::new(c, s, 1, 2, TcpFlags::ACK | TcpFlags::PSH, payload);
    p.bad_checksum = bad;
    p.ethernet()
}

fn checksum(d: &mut Decoder, f: &[u8]) -> Checksum {
    d.decode(linktype::ETHERNET, 0, f)
        .expect("a TCP frame")
        .expect("not a fragment")
        .checksum
}

#[test]
fn on_verifies_off_does_not() {
    for v6 in [false, true] {
        // Odd and even payload lengths (the odd byte is padded).
        for payload in [&b"MAIL FROM:<a@b>\r\n"[..], b"RCPT TO:<a@b>\r\n", b""] {
            let good = frame(v6, false, payload);
            let bad = frame(v6, true, payload);
            let mut on = Decoder::new(true, FragConfig::default());
            assert_eq!(
                checksum(&mut on, &good),
                Checksum::Good,
                "v6 {v6} {payload:?}"
            );
            assert_eq!(
                checksum(&mut on, &bad),
                Checksum::Bad,
                "v6 {v6} {payload:?}"
            );
            let s = on.stats();
            assert_eq!((s.checksum_good, s.checksum_bad), (1, 1));
            let mut off = Decoder::new(false, FragConfig::default());
            assert_eq!(checksum(&mut off, &good), Checksum::Unknown);
            assert_eq!(checksum(&mut off, &bad), Checksum::Unknown);
            assert_eq!(off.stats().checksum_unknown, 2);
        }
    }
}

#[test]
fn a_cut_segment_cannot_be_verified() {
    let f = frame(false, false, b"MAIL FROM:<a@b>\r\n");
    let mut on = Decoder::new(true, FragConfig::default());
    let seg = on
        .decode(linktype::ETHERNET, 0, &f[..f.len() - 3])
        .unwrap()
        .unwrap();
    assert_eq!((seg.uncaptured, seg.checksum), (3, Checksum::Unknown));
}

#[test]
fn a_flipped_bit_anywhere_in_the_segment_is_bad() {
    let good = frame(true, false, b"DATA\r\n");
    let mut on = Decoder::new(true, FragConfig::default());
    // Every byte of the TCP header and payload, and of the addresses (the
    // pseudo-header).
    for at in (14 + 8..good.len()).filter(|&i| !(14 + 40 + 12..14 + 40 + 14).contains(&i)) {
        let mut f = good.clone();
        f[at] ^= 0x10;
        if let Ok(Some(seg)) = on.decode(linktype::ETHERNET, 0, &f) {
            assert_eq!(seg.checksum, Checksum::Bad, "byte {at}");
        }
    }
}

/// A sample of `n` segments, `bad` of them with a wrong checksum.
fn sample(n: u64, bad: u64) -> ChecksumSample {
    let good = frame(false, false, b"x");
    let wrong = frame(false, true, b"x");
    let mut s = ChecksumSample::default();
    for i in 0..n {
        let f = if i < bad { &wrong } else { &good };
        if !s.add(linktype::ETHERNET, f) {
            break;
        }
    }
    s
}

#[test]
fn auto_follows_suricatas_ratio() {
    // Clean capture: verified.
    let s = sample(AUTO_SAMPLE, 0);
    assert_eq!((s.checked, s.bad, s.verify()), (AUTO_SAMPLE, 0, true));
    // An attacker's few bad segments do not turn verification off.
    assert!(sample(AUTO_SAMPLE, 90).verify());
    // Offloaded capture (one direction all wrong): not verified.
    assert!(!sample(AUTO_SAMPLE, 500).verify());
    assert!(!sample(AUTO_SAMPLE, 101).verify());
    // The sample stops at AUTO_SAMPLE segments.
    assert_eq!(sample(AUTO_SAMPLE + 50, 0).checked, AUTO_SAMPLE);
    // A short capture decides on what it has.
    assert!(sample(20, 1).verify());
    assert!(!sample(20, 3).verify());
}

/// A handshake `client → server` with the client's segments as given by
/// `client_bad`, then `data` from the client (checksum wrong when
/// `data_bad`), as ethernet frames.
fn handshake(client_bad: bool, syn_answered: bool, data: &[(&[u8], bool)]) -> Vec<Vec<u8>> {
    // Another client than `frame`'s, whose traffic fills the sample.
    let c: SocketAddr = "198.18.0.7:40000".parse().unwrap();
    let s: SocketAddr = "198.18.0.25:25".parse().unwrap();
    let mut frames = Vec::new();
    let mut syn = TcpPacket::new(c, s, 100, 0, TcpFlags::SYN, b"");
    syn.bad_checksum = client_bad;
    frames.push(syn.ethernet());
    if syn_answered {
        let synack = TcpPacket::new(s, c, 500, 101, TcpFlags::SYN | TcpFlags::ACK, b"");
        frames.push(synack.ethernet());
    }
    let mut seq = 101u32;
    for (payload, bad) in data {
        let mut p = TcpPacket::new(c, s, seq, 501, TcpFlags::ACK | TcpFlags::PSH, payload);
        p.bad_checksum = *bad;
        frames.push(p.ethernet());
        seq = seq.wrapping_add(payload.len() as u32);
    }
    frames
}

fn auto_checksums(frames: &[Vec<u8>]) -> Vec<Checksum> {
    let mut sample = ChecksumSample::default();
    for f in frames {
        sample.add(linktype::ETHERNET, f);
    }
    let mut d = Decoder::new(sample.verify(), FragConfig::default());
    d.set_offloaded(sample.offloaded());
    frames.iter().map(|f| checksum(&mut d, f)).collect()
}

#[test]
fn auto_trusts_a_sender_whose_wrong_checksums_the_peer_answered() {
    // Captured on the client: its NIC fills in checksums, so every segment
    // it sends looks wrong here, yet the server answered its SYN.
    let data: Vec<(&[u8], bool)> = vec![(b"EHLO x\r\n", true), (b"MAIL FROM:<a@b>\r\n", true)];
    let mut frames = handshake(true, true, &data);
    // Enough right traffic elsewhere that the file-wide ratio keeps
    // verification on.
    let other = frame(false, false, b"x");
    frames.extend(std::iter::repeat_n(other, 200));
    let sums = auto_checksums(&frames);
    assert_eq!(sums.first(), Some(&Checksum::Unknown), "client SYN");
    assert_eq!(sums.get(1), Some(&Checksum::Good), "server SYN-ACK");
    assert_eq!(
        sums.get(2),
        Some(&Checksum::Unknown),
        "client data not judged"
    );
}

#[test]
fn auto_still_rejects_an_attackers_wrong_checksums() {
    // The attacker's sender has right checksums on the segments the server
    // accepts, and a wrong one on a fake line: the fake stays Bad.
    let frames = handshake(
        false,
        true,
        &[
            (b"MAIL FROM:<good@x>\r\n", false),
            (b"MAIL FROM:<fake@x>\r\n", true),
        ],
    );
    let mut more = frames.clone();
    let other = frame(false, false, b"x");
    more.extend(std::iter::repeat_n(other, 200));
    let sums = auto_checksums(&more);
    assert_eq!(sums.get(3), Some(&Checksum::Bad));
    // Only wrong segments, but no answer to its SYN: not exempted either.
    let mut unanswered = handshake(true, false, &[(b"MAIL FROM:<fake@x>\r\n", true)]);
    unanswered.extend(std::iter::repeat_n(frame(false, false, b"x"), 200));
    let sums = auto_checksums(&unanswered);
    assert_eq!(sums.get(1), Some(&Checksum::Bad));
}
