//! SMTP smuggling followed both ways.
//!
//! A bare-LF dot line inside DATA (`\n.\n`, `\r\n.\n`, `\n.\r\n`) is not the
//! end of data (RFC 5321 §4.5.2), but a vulnerable server takes it for one:
//! the bytes after it are then read as commands, and a second, smuggled
//! transaction (its own MAIL FROM, RCPT TO, content) is delivered. The
//! monitor cannot know from the client's bytes which reading the server
//! used; the server's replies tell. So at such a candidate the session
//! forks a *speculation*: the main reading keeps the bytes as content, a
//! shadow session (a copy of the session in which the data ended at the
//! candidate) reads them as commands. Both are fed every later byte of both
//! directions and their events are held, until the replies decide
//! ([`Verdict`]):
//!
//! - a reading that meets a reply it cannot explain (no command awaits it,
//!   or its code names a command that is not the one it answers: 354 to
//!   anything but DATA, 221 to anything but QUIT, a 2xx to DATA or QUIT
//!   other than 221…) is wrong; the other one wins;
//! - undecided when the session ends, or when the speculation reaches its
//!   bounds ([`MAX_SPECULATION_BYTES`], [`MAX_SPECULATION_EVENTS`]): the
//!   main reading (RFC 5321's) wins — one transaction.
//!
//! The winner's held events are then emitted; when the shadow wins the
//! anomaly `smuggling_accepted` says the server took the ambiguous end.
//! Only one speculation is open at a time; a candidate inside the shadow
//! reading or during a speculation is only reported.

use super::events::Verb;
use super::pending::Awaiting;

/// Most bytes (both directions) fed to a speculation before it is decided
/// for the main reading.
pub const MAX_SPECULATION_BYTES: u64 = 256 * 1024;

/// Most events held (both readings together).
pub const MAX_SPECULATION_EVENTS: usize = 4096;

/// How a speculation ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not yet decided.
    Open,
    /// The data did not end at the candidate: one transaction.
    Main,
    /// The server ended the data at the candidate: the bytes after it were commands.
    Shadow,
    /// Bounds reached, undecided: the main reading.
    Bounded,
}

/// Whether a reply with `code` is one the command it was matched to
/// cannot have: no command awaited it, or the code names another command.
pub fn unexplained(code: u16, to: Option<&Awaiting>) -> bool {
    let Some(what) = to else {
        return true;
    };
    let command = |v: Verb| *what == Awaiting::Command(v);
    match code {
        354 => !command(Verb::Data),
        221 => !command(Verb::Quit),
        334 => !command(Verb::Auth),
        200..=299 => command(Verb::Data) || command(Verb::Quit),
        _ => false,
    }
}

/// Decides between the two readings from the replies each could not
/// explain since the fork, and the size of what was held.
pub fn verdict(main: u64, shadow: u64, bytes: u64, events: usize) -> Verdict {
    if main > 0 && shadow == 0 {
        Verdict::Shadow
    } else if shadow > 0 {
        Verdict::Main
    } else if bytes > MAX_SPECULATION_BYTES || events > MAX_SPECULATION_EVENTS {
        Verdict::Bounded
    } else {
        Verdict::Open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_decide() {
        let data = Awaiting::Command(Verb::Data);
        let quit = Awaiting::Command(Verb::Quit);
        let mail = Awaiting::Command(Verb::Mail);
        assert!(!unexplained(250, Some(&Awaiting::EndOfData)));
        assert!(!unexplained(354, Some(&data)));
        assert!(unexplained(250, Some(&data)));
        assert!(unexplained(250, Some(&quit)));
        assert!(unexplained(221, Some(&mail)));
        assert!(unexplained(250, None));
        assert!(!unexplained(550, Some(&mail)));
        assert_eq!(verdict(1, 0, 10, 5), Verdict::Shadow);
        assert_eq!(verdict(0, 1, 10, 5), Verdict::Main);
        assert_eq!(verdict(1, 1, 10, 5), Verdict::Main);
        assert_eq!(
            verdict(0, 0, MAX_SPECULATION_BYTES + 1, 5),
            Verdict::Bounded
        );
        assert_eq!(verdict(0, 0, 10, 5), Verdict::Open);
    }
}
