//! Output of events as EVE-style JSON lines.
