//! Every real capture of the shared corpus reads completely and yields the
//! expected TCP segments (numbers cross-checked with
//! `tshark -r F -Y 'tcp && !icmp' | wc -l` and `-Y 'tcp.port==25 && !icmp'`;
//! tshark also counts TCP headers quoted inside ICMP errors, we do not).

mod corpus;

use smtp_user::capture::{parse_frame, CaptureReader, Skip};
use smtp_user::flow::{FlowConfig, FlowTable, Recorder};

/// `shared/corpus/pcap` beside the workspace, if present.
/// (file, frames, TCP segments, TCP segments on port 25).
const EXPECTED: &[(&str, u64, u64, u64)] = &[
    ("haka-workshop-smtp.pcap", 48, 42, 32),
    ("sv-smtp-attachment-md5.pcap", 26, 25, 25),
    ("sv-smtp-bdat-last-next-mail.pcap", 31, 31, 31),
    ("sv-smtp-bdat-multichunk-next-mail.pcap", 29, 29, 29),
    ("sv-smtp-data-rejected.pcap", 199, 199, 199),
    ("sv-smtp-errors.pcap", 158, 158, 145),
    ("sv-smtp-long-DATA-line.pcap", 48, 46, 0),
    ("sv-smtp-long-command.pcap", 25, 25, 25),
    ("sv-smtp-multi-mail-accept.pcap", 39, 39, 39),
    ("sv-smtp-no-helo-quit.pcap", 11, 11, 11),
    ("sv-smtp-pipelined-rset-after-complete.pcap", 29, 29, 29),
    ("sv-smtp-pipelining.pcap", 18, 18, 18),
    ("sv-smtp-rset-starttls.pcap", 10, 10, 10),
    ("sv-smtp-simple-session.pcap", 24, 24, 24),
    ("sv-smtp-startssl.pcap", 38, 38, 38),
    ("sv-smtp-url-base64.pcap", 56, 56, 0),
    ("wireshark-smtp-sample.pcap", 60, 53, 53),
    ("zeek-rfc3030-bdat-example1.pcap", 28, 28, 28),
    ("zeek-rfc3030-bdat-multipart.pcap", 30, 30, 30),
    ("zeek-smtp-attachment-msg.pcap", 17, 17, 17),
    ("zeek-smtp-bdat-cmd-invalid.pcapng", 66, 66, 66),
    ("zeek-smtp-multi-addr.pcap", 21, 21, 21),
    ("zeek-smtp-one-side-only.pcap", 19, 19, 19),
    ("zeek-smtp-starttls.pcap", 37, 37, 37),
    ("zeek-smtp.pcap", 125, 118, 80),
];

#[test]
fn corpus_reads_completely_with_expected_segments() {
    let Some(dir) = corpus::pcap_dir() else {
        println!("skipped: shared/corpus/pcap not found");
        return;
    };
    for &(name, frames, tcp, port25) in EXPECTED {
        let path = dir.join(name);
        let mut reader = CaptureReader::open(&path).unwrap_or_else(|e| panic!("{e}"));
        let (mut n, mut t, mut p25) = (0, 0, 0);
        let mut table = FlowTable::new(FlowConfig::default(), Recorder::default());
        while let Some(frame) = reader.next_frame().unwrap_or_else(|e| panic!("{e}")) {
            n += 1;
            match parse_frame(frame.linktype, frame.ts_micros, frame.data) {
                Ok(seg) => {
                    t += 1;
                    if seg.src.port() == 25 || seg.dst.port() == 25 {
                        p25 += 1;
                    }
                    table.segment(&seg);
                }
                Err(reason) => {
                    assert!(
                        matches!(reason, Skip::NotIp | Skip::NotTcp),
                        "{name}: frame {n} {reason}"
                    );
                    table.stats_mut().count_skip(reason);
                }
            }
        }
        assert_eq!(
            (n, t, p25),
            (frames, tcp, port25),
            "{name}: frames, tcp, port 25"
        );
        table.close_all();
        let st = table.stats();
        assert_eq!(st.segments, tcp);
        assert_eq!(st.closed(), st.flows_created, "{name}");
        assert_eq!(st.buffered, 0);
        for f in &table.handler().flows {
            let s = f.stats().expect("closed");
            // These captures lost nothing: any gap is a reassembly bug.
            assert!(
                !s.has_gaps(),
                "{name}: {} -> {} has gaps",
                f.info.client,
                f.info.server
            );
            for (d, st) in [(&f.up, &s.up), (&f.down, &s.down)] {
                assert_eq!(
                    (st.bad_rst, st.out_of_window, st.limit_hits),
                    (0, 0, 0),
                    "{name}"
                );
                if st.duplicates + st.overlaps == 0 {
                    assert_eq!(d.len(), st.bytes, "{name}: every byte delivered once");
                } else {
                    assert!(
                        d.len() < st.bytes,
                        "{name}: retransmissions not delivered twice"
                    );
                }
            }
        }
    }
}

#[test]
fn wireshark_sample_session_streams() {
    let Some(dir) = corpus::pcap_dir() else {
        println!("skipped: shared/corpus/pcap not found");
        return;
    };
    let mut reader = CaptureReader::open(&dir.join("wireshark-smtp-sample.pcap")).unwrap();
    let mut table = FlowTable::new(FlowConfig::default(), Recorder::default());
    while let Some(frame) = reader.next_frame().unwrap() {
        if let Ok(seg) = parse_frame(frame.linktype, frame.ts_micros, frame.data) {
            table.segment(&seg);
        }
    }
    table.close_all();
    let flows: Vec<_> = table
        .handler()
        .flows
        .iter()
        .filter(|f| f.info.server.port() == 25)
        .collect();
    assert_eq!(flows.len(), 1);
    let f = flows[0];
    assert!(f
        .down
        .data()
        .starts_with(b"220-xc90.websitewelcome.com ESMTP"));
    assert!(f.up.data().starts_with(b"EHLO "));
    assert!(f.up.data().ends_with(b"QUIT\r\n"));
    assert_eq!(f.up.gaps(), vec![]);
    assert_eq!(f.down.gaps(), vec![]);
}

/// TCP checksums verified on every corpus file agree with tshark
/// (`tshark -o tcp.check_checksum:TRUE -r F -Y 'tcp.checksum.status == 0'`
/// counts the bad ones): only sv-smtp-errors.pcap has bad segments (6)
/// among files that are not offloaded; the offloaded ones (every segment of
/// one side wrong) are the ones `--checksum auto` does not verify.
#[test]
fn corpus_checksums_agree_with_tshark() {
    use smtp_user::capture::decoder::{ChecksumSample, Decoder};
    use smtp_user::capture::ipfrag::FragConfig;
    use smtp_user::capture::Checksum;
    let Some(dir) = corpus::pcap_dir() else {
        println!("skipped: shared/corpus/pcap not found");
        return;
    };
    let (mut verified, mut offloaded) = (0, 0);
    for &(name, _, tcp, _) in EXPECTED {
        let path = dir.join(name);
        let mut sample = ChecksumSample::default();
        let mut reader = CaptureReader::open(&path).unwrap();
        while let Some(f) = reader.next_frame().unwrap() {
            sample.add(f.linktype, f.data);
        }
        let mut d = Decoder::new(true, FragConfig::default());
        let mut reader = CaptureReader::open(&path).unwrap();
        let mut bad = 0;
        while let Some(f) = reader.next_frame().unwrap() {
            if let Ok(Some(seg)) = d.decode(f.linktype, f.ts_micros, f.data) {
                bad += u64::from(seg.checksum == Checksum::Bad);
            }
        }
        assert_eq!(bad, sample.bad, "{name}: the sample covers the whole file");
        if sample.verify() {
            verified += 1;
            let expected = if name == "sv-smtp-errors.pcap" { 6 } else { 0 };
            assert_eq!(bad, expected, "{name}");
        } else {
            offloaded += 1;
            assert!(bad * 10 > tcp, "{name}: {bad} of {tcp} bad");
        }
    }
    assert_eq!((verified, offloaded), (15, 10));
}
