//! pcap and pcapng readers on generated files: every variant, and damaged
//! files yielding the frames before the damage and an error at its offset.

use proptest::prelude::*;
use smtp_user::capture::file::{CaptureErrorKind, Endian};
use smtp_user::capture::synth::{PcapWriter, PcapngWriter};
use smtp_user::capture::wire::linktype;
use smtp_user::capture::{CaptureError, CaptureReader};

/// (ts µs, linktype, data, orig_len, offset) of every frame, then the error.
type Read = (Vec<(u64, u32, Vec<u8>, u32, u64)>, Option<CaptureError>);

fn read_all(bytes: &[u8]) -> Read {
    let mut r = match CaptureReader::new(bytes) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e)),
    };
    let mut out = Vec::new();
    loop {
        match r.next_frame() {
            Ok(Some(f)) => out.push((
                f.ts_micros,
                f.linktype,
                f.data.to_vec(),
                f.orig_len,
                f.offset,
            )),
            Ok(None) => return (out, None),
            Err(e) => {
                // Fused: nothing after an error.
                assert!(matches!(r.next_frame(), Ok(None)));
                return (out, Some(e));
            }
        }
    }
}

fn frames() -> Vec<(u64, Vec<u8>)> {
    (0..5u64)
        .map(|i| {
            (
                1_700_000_000_123_456 + i * 1_000_001,
                (0..(i * 37 + 3) as u8).collect(),
            )
        })
        .collect()
}

fn pcap(endian: Endian, nanos: bool) -> Vec<u8> {
    let mut w = PcapWriter::with_format(Vec::new(), linktype::ETHERNET, endian, nanos).unwrap();
    for (ts, f) in frames() {
        w.write_frame(ts, &f, f.len() as u32 + 7).unwrap();
    }
    w.into_inner()
}

#[test]
fn pcap_all_variants() {
    for endian in [Endian::Little, Endian::Big] {
        for nanos in [false, true] {
            let (got, err) = read_all(&pcap(endian, nanos));
            assert!(err.is_none(), "{err:?}");
            let mut offset = 24;
            assert_eq!(got.len(), 5);
            for ((ts, f), g) in frames().into_iter().zip(&got) {
                assert_eq!(
                    g,
                    &(
                        ts,
                        linktype::ETHERNET,
                        f.clone(),
                        f.len() as u32 + 7,
                        offset
                    )
                );
                offset += 16 + f.len() as u64;
            }
        }
    }
}

#[test]
fn pcap_truncated_at_every_byte_of_the_last_record() {
    let file = pcap(Endian::Little, false);
    let (all, _) = read_all(&file);
    let last_offset = all[4].4;
    for cut in last_offset as usize + 1..file.len() {
        let (got, err) = read_all(&file[..cut]);
        assert_eq!(got.len(), 4, "cut {cut}");
        let err = err.expect("truncation is an error");
        assert_eq!(err.offset, last_offset);
        assert!(
            matches!(err.reason, CaptureErrorKind::Truncated { .. }),
            "{err}"
        );
        assert!(err.to_string().contains(&format!("offset {last_offset}")));
    }
    // Cut exactly at a record boundary: a clean, shorter file.
    let (got, err) = read_all(&file[..last_offset as usize]);
    assert_eq!((got.len(), err.is_none()), (4, true));
}

#[test]
fn pcap_corrupt_record_length() {
    let mut file = pcap(Endian::Big, false);
    let (all, _) = read_all(&file);
    let at = all[2].4 as usize;
    file[at + 8..at + 12].copy_from_slice(&0x0100_0000u32.to_be_bytes());
    let (got, err) = read_all(&file);
    assert_eq!(got.len(), 2);
    let err = err.unwrap();
    assert_eq!(err.offset, at as u64);
    assert!(matches!(
        err.reason,
        CaptureErrorKind::FrameTooLarge(0x0100_0000)
    ));
}

#[test]
fn bad_magic_and_short_header() {
    let (_, err) = read_all(b"GIF89a-not-a-capture-file-at-all");
    assert!(matches!(err.unwrap().reason, CaptureErrorKind::BadMagic(_)));
    let (_, err) = read_all(&pcap(Endian::Little, false)[..10]);
    let err = err.unwrap();
    assert_eq!(err.offset, 0);
    assert!(matches!(err.reason, CaptureErrorKind::Truncated { .. }));
}

fn pcapng(endian: Endian) -> Vec<u8> {
    let mut w = PcapngWriter::new(Vec::new(), endian).unwrap();
    w.interface(1, None).unwrap(); // µs
    w.interface(101, Some(9)).unwrap(); // ns
    w.interface(113, Some(0x80 | 20)).unwrap(); // 2^-20 s
    w.block(0x0000_0BAD, b"unknown block, skipped").unwrap();
    w.enhanced_packet(0, 1_700_000_000_000_001, b"eth frame", 100)
        .unwrap();
    w.enhanced_packet(1, 1_700_000_000_000_002_999, b"raw ip", 6)
        .unwrap();
    w.enhanced_packet(2, 3 << 20, b"sll", 3).unwrap();
    w.simple_packet(b"simple").unwrap();
    w.into_inner()
}

#[test]
fn pcapng_both_endians_resolutions_and_block_kinds() {
    for endian in [Endian::Little, Endian::Big] {
        let (got, err) = read_all(&pcapng(endian));
        assert!(err.is_none(), "{err:?}");
        let summary: Vec<_> = got
            .iter()
            .map(|g| (g.0, g.1, g.2.as_slice(), g.3))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1_700_000_000_000_001, 1, &b"eth frame"[..], 100),
                (1_700_000_000_000_002, 101, &b"raw ip"[..], 6),
                (3_000_000, 113, &b"sll"[..], 3),
                // SPB: interface 0, no timestamp of its own (last one kept).
                (3_000_000, 1, &b"simple"[..], 6),
            ]
        );
        // Offsets: SHB 28, IDBs 20 + 32 + 32 (with if_tsresol and
        // opt_endofopt), unknown block 12 + 24.
        assert_eq!(got[0].4, 28 + 20 + 32 + 32 + 36);
        assert_eq!(got[1].4, got[0].4 + 32 + 12);
    }
}

#[test]
fn pcapng_new_section_switches_byte_order_and_interfaces() {
    let mut w = PcapngWriter::new(Vec::new(), Endian::Little).unwrap();
    w.interface(1, None).unwrap();
    w.enhanced_packet(0, 5, b"a", 1).unwrap();
    let mut file = w.into_inner();
    let mut w = PcapngWriter::new(Vec::new(), Endian::Big).unwrap();
    w.interface(101, Some(3)).unwrap();
    w.enhanced_packet(0, 7, b"b", 1).unwrap();
    file.extend(w.into_inner());
    let (got, err) = read_all(&file);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        got.iter().map(|g| (g.0, g.1)).collect::<Vec<_>>(),
        vec![(5, 1), (7000, 101)]
    );
}

#[test]
fn pcapng_damage() {
    let file = pcapng(Endian::Little);
    let (all, _) = read_all(&file);
    let third = all[2].4 as usize;
    // Truncated inside the third packet block.
    let (got, err) = read_all(&file[..third + 13]);
    assert_eq!(got.len(), 2);
    let err = err.unwrap();
    assert_eq!(err.offset, third as u64);
    assert!(matches!(err.reason, CaptureErrorKind::Truncated { .. }));
    // Block length not a multiple of 4.
    let mut bad = file.clone();
    bad[third + 4] += 1;
    let (got, err) = read_all(&bad);
    assert_eq!(
        (got.len(), err.as_ref().map(|e| e.offset)),
        (2, Some(third as u64))
    );
    assert!(matches!(
        err.unwrap().reason,
        CaptureErrorKind::BadBlockLength(_)
    ));
    // Trailer disagrees with the header.
    let mut bad = file.clone();
    let len = u32::from_le_bytes(bad[third + 4..third + 8].try_into().unwrap()) as usize;
    bad[third + len - 4] ^= 0x40;
    let (got, err) = read_all(&bad);
    assert_eq!(got.len(), 2);
    assert!(matches!(
        err.unwrap().reason,
        CaptureErrorKind::BlockTrailerMismatch { .. }
    ));
    // Packet on an undeclared interface.
    let mut bad = file;
    bad[third + 8] = 9;
    let (got, err) = read_all(&bad);
    assert_eq!(got.len(), 2);
    assert!(matches!(
        err.unwrap().reason,
        CaptureErrorKind::UnknownInterface(9)
    ));
}

#[test]
fn open_reports_path() {
    let dir = std::env::temp_dir().join(format!("smtp-user-capture-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cut.pcap");
    let file = pcap(Endian::Little, true);
    std::fs::write(&path, &file[..file.len() - 1]).unwrap();
    let mut r = CaptureReader::open(&path).unwrap();
    let mut n = 0;
    let err = loop {
        match r.next_frame() {
            Ok(Some(_)) => n += 1,
            Ok(None) => panic!("truncation not reported"),
            Err(e) => break e,
        }
    };
    assert_eq!(n, 4);
    assert_eq!(err.path.as_deref(), Some(path.as_path()));
    assert!(err
        .to_string()
        .starts_with(&format!("{}: offset ", path.display())));
    std::fs::remove_dir_all(&dir).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Random corruption never panics and never yields more frames than
    /// the file could hold.
    #[test]
    fn corrupted_files_do_not_panic(ng in any::<bool>(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8), cut in any::<prop::sample::Index>()) {
        let mut file = if ng { pcapng(Endian::Big) } else { pcap(Endian::Little, false) };
        for (i, b) in flips {
            let at = i.index(file.len());
            file[at] ^= b;
        }
        let end = cut.index(file.len() + 1);
        let (got, _) = read_all(&file[..end]);
        prop_assert!(got.len() <= 8);
    }
}
