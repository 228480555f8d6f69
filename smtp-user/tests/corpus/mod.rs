//! Where the shared corpus of real captures lives: `../shared/corpus` above
//! the crate (next to a checkout in the development setup). It is not part
//! of the repository; tests that need it print a skip line when it is absent.

use std::path::PathBuf;

/// `../shared/corpus/pcap` above the crate, if present.
pub fn pcap_dir() -> Option<PathBuf> {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("../shared/corpus/pcap"))
        .find(|p| p.is_dir())
}
