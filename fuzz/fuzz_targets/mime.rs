//! The MIME parser alone on an arbitrary message: header blocks (padding
//! past the cap, RFC 2231 parameters, RFC 2047 words), multiparts and
//! forwarded `message/rfc822` parts nested to any depth.
//!
//! Input format: the first byte is the chunk size minus one (the message
//! is fed in pieces of that size, so that state carried between chunks is
//! exercised); the rest is the message after dot-unstuffing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use smtp_user::smtp::mime::{MimeParser, MAX_HEADER, MAX_LIST, MAX_OTHER_FILENAMES};
use smtp_user::smtp::{Event, EventSink};

/// Checks event invariants without keeping events (bounded memory).
struct Check;

impl EventSink for Check {
    fn event(&mut self, event: Event<'_>) {
        match &event {
            Event::Anomaly(a) => assert!(!a.detail.is_empty()),
            // Values are decoded from at most MAX_HEADER raw bytes (a byte
            // decodes to at most one char of 3 UTF-8 bytes).
            Event::Header(h) => assert!(h.value.len() <= 3 * MAX_HEADER),
            Event::MimePart(p) => assert!(p.other_filenames.len() <= MAX_OTHER_FILENAMES),
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&size, message)) = data.split_first() else {
        return;
    };
    let mut parser = MimeParser::new();
    let mut sink = Check;
    for chunk in message.chunks(usize::from(size) + 1) {
        parser.feed(chunk, 0, &mut sink);
    }
    parser.finish(0, &mut sink);
    parser.end_body(0, &mut sink);
    let email = parser.take_email();
    assert!(email.to.len() <= MAX_LIST && email.cc.len() <= MAX_LIST);
    assert!(email.attachment.len() <= MAX_LIST);
});
