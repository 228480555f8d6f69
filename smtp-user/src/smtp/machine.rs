//! The SMTP session state machine: the states and the one transition table.
//!
//! As in the Haka tutorial, each state has an `up` (client → server) and a
//! `down` (server → client) transition, plus a common `error` transition.
//! Unlike the tutorial, commands may be pipelined (RFC 2920): `Response`
//! means "at least one command awaits its reply" and the client may keep
//! sending. The session (`session.rs`) parses bytes into [`Message`]s, feeds
//! them to [`transition`] and performs the side effects; `enter`/`leave`
//! hooks live in `Session::enter_state`.

use crate::Direction;

use super::events::AnomalyKind;

/// Where the session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Waiting for the server greeting (tutorial `session_initiation`).
    SessionInitiation,
    /// Joined midstream (the capture or the monitor started during the
    /// session) and not synchronised yet: no greeting is expected, client
    /// lines that are not well-formed commands are skipped (we may be inside
    /// DATA), replies to nothing we saw are ignored. Left at the first
    /// command, or at the reply to a lone `.` line (the end of the message
    /// we joined).
    Midstream,
    /// Greeting seen, no command yet (tutorial `client_initiation`).
    ClientInitiation,
    /// No command awaits a reply (tutorial `command`).
    Command,
    /// One or more commands await replies (tutorial `response`).
    Response,
    /// After 354: the up stream is message content up to CRLF.CRLF (tutorial `data_transmission`).
    DataTransmission,
    /// After `BDAT n`: the up stream is `n` octets of content (RFC 3030).
    BdatTransmission,
    /// After 334: the next client line is an AUTH answer (never logged).
    AuthExchange,
    /// After STARTTLS + 220: the rest is TLS; bytes are only counted.
    Tls,
    /// After 221 to QUIT or a 421: the session is over (tutorial `finish`).
    Finish,
    /// A fatal parse error took the `error` transition: the drop is
    /// requested. Should the session go on (monitor mode, an `alert`
    /// action, a replay), it is not synchronised, as in `Midstream`: client
    /// lines that are not well-formed commands and server lines that are
    /// not replies are skipped; the first command synchronises. Open
    /// transactions stay open.
    Error,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::SessionInitiation => "session_initiation",
            State::Midstream => "midstream",
            State::ClientInitiation => "client_initiation",
            State::Command => "command",
            State::Response => "response",
            State::DataTransmission => "data_transmission",
            State::BdatTransmission => "bdat_transmission",
            State::AuthExchange => "auth_exchange",
            State::Tls => "tls",
            State::Finish => "finish",
            State::Error => "error",
        }
    }
}

/// The command a reply answers, as far as the machine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answers {
    /// The first reply of the session.
    Greeting,
    Data,
    Auth,
    StartTls,
    Quit,
    /// Any other command (HELO, MAIL, RCPT, RSET, BDAT, end of data, …).
    Other,
    /// No command was waiting for a reply.
    Nothing,
}

/// Reply code classes that drive transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 220 (greeting / STARTTLS go-ahead).
    Ready,
    /// Other 2xx.
    Positive,
    /// 3xx (334 AUTH challenge, 354 start mail input).
    Intermediate,
    /// 421: the service is closing.
    Closing,
    /// Other 4xx / 5xx.
    Negative,
}

impl Class {
    pub fn of(code: u16) -> Class {
        match code {
            220 => Class::Ready,
            421 => Class::Closing,
            200..=299 => Class::Positive,
            300..=399 => Class::Intermediate,
            _ => Class::Negative,
        }
    }
}

/// A parsed message, as the machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// up: a command line (`Bdat`: a BDAT command whose chunk follows).
    Command { bdat: bool },
    /// up: DATA while the server has never been heard (one-sided capture):
    /// content follows at once, as if the server had answered 354.
    DataUnheard,
    /// up: client bytes after a DATA whose reply was lost in a server-side
    /// gap: the client would not send them before a 354, so content
    /// follows at once.
    DataReplyLost,
    /// up: the CRLF.CRLF that ends DATA content (midstream: a lone `.` line).
    EndOfData,
    /// up: midstream, a line that is not a well-formed command (skipped).
    NotACommand,
    /// up: the last octet of a BDAT chunk.
    ChunkDone,
    /// up: a client line answering a 334 challenge.
    AuthAnswer,
    /// down: a complete reply; `more_pending` if other commands still await replies.
    Reply {
        to: Answers,
        class: Class,
        more_pending: bool,
    },
    /// up: the first client bytes after the 220 to STARTTLS are not a TLS record.
    NotTls,
    /// either: a fatal parse error (the tutorial's `error` transition).
    Fatal,
}

/// Outcome of a transition: the next state and the anomaly it reports, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub next: State,
    pub anomaly: Option<AnomalyKind>,
}

const fn to(next: State) -> Step {
    Step {
        next,
        anomaly: None,
    }
}

const fn weird(next: State, kind: AnomalyKind) -> Step {
    Step {
        next,
        anomaly: Some(kind),
    }
}

/// The transition table: `(state, direction, message) -> next state`.
#[rustfmt::skip]
pub fn transition(state: State, dir: Direction, msg: Message) -> Step {
    use AnomalyKind as A;
    use Direction::{Down, Up};
    use Message as M;
    use State::*;
    match (state, dir, msg) {
        // tls: after the 220 to STARTTLS; if the client's first bytes are
        // no TLS record the session goes on in clear (reported)
        (Tls, Up,   M::NotTls)                                                         => weird(Command, A::CleartextAfterStarttls),
        // otherwise terminal: bytes are only counted
        (Tls, _, _)                                                                    => to(Tls),
        // the tutorial's `error` transition: the drop is requested, then
        // the session resynchronises as when joined midstream
        (_, _, M::Fatal)                                                               => to(Error),
        // 421 closes the service whatever was going on
        (_, Down, M::Reply { class: Class::Closing, .. })                              => to(Finish),

        // session_initiation: waiting for the 220 greeting; commands sent
        // before it are queued (the client spoke first, or the capture
        // started after the greeting)
        (SessionInitiation, Down, M::Reply { to: Answers::Greeting, class: Class::Ready, .. }) => to(ClientInitiation),
        (SessionInitiation, Down, M::Reply { to: Answers::Greeting, .. })             => weird(ClientInitiation, A::UnexpectedServerGreeting),
        (SessionInitiation, Up,   M::Command { bdat: true })                           => weird(BdatTransmission, A::CommandBeforeGreeting),
        (SessionInitiation, Up,   M::Command { bdat: false })                          => weird(SessionInitiation, A::CommandBeforeGreeting),
        (SessionInitiation, Up,   M::DataUnheard)                                      => weird(DataTransmission, A::CommandBeforeGreeting),
        // a non-220 reply while commands are queued answers the first of them
        // (the greeting was missed: the capture started late): as in `command`
        (SessionInitiation, Down, M::Reply { .. })                                     => transition(Command, Down, msg),

        // midstream: joined during the session, perhaps inside DATA; the
        // first command synchronises, a lone `.` ended the message we joined
        // and its reply synchronises
        // error: the same, after a fatal parse error
        (Midstream | Error, Up,   M::NotACommand)                                      => to(state),
        (Midstream | Error, Up,   M::EndOfData)                                        => to(state),
        (Midstream | Error, Up,   M::Command { bdat: true })                           => to(BdatTransmission),
        (Midstream | Error, Up,   M::Command { bdat: false })                          => to(Response),
        (Midstream | Error, Up,   M::DataUnheard)                                      => to(DataTransmission),
        (Midstream | Error, Down, M::Reply { to: Answers::Nothing, .. })               => to(state),
        (Midstream | Error, Down, M::Reply { .. })                                     => transition(Command, Down, msg),

        // client_initiation / command / response: commands queue up, replies answer them in order
        (ClientInitiation | Command | Response, Up, M::Command { bdat: true })         => to(BdatTransmission),
        (ClientInitiation | Command | Response, Up, M::Command { bdat: false })        => to(Response),
        // server never heard (one-sided capture): DATA starts the content at once
        (ClientInitiation | Command | Response, Up, M::DataUnheard)                    => to(DataTransmission),
        // the reply to DATA was lost in a gap and the client went on: it got a 354
        (Command | Response, Up, M::DataReplyLost)                                     => to(DataTransmission),
        (ClientInitiation | Command | Response, Down, M::Reply { to: Answers::Nothing, .. }) => weird(state, A::UnmatchedReply),
        (ClientInitiation | Command | Response, Down, M::Reply { to: Answers::Data, class: Class::Intermediate, .. }) => to(DataTransmission),
        (ClientInitiation | Command | Response, Down, M::Reply { to: Answers::Auth, class: Class::Intermediate, .. }) => to(AuthExchange),
        (ClientInitiation | Command | Response, Down, M::Reply { to: Answers::StartTls, class: Class::Ready, .. })  => to(Tls),
        (ClientInitiation | Command | Response, Down, M::Reply { to: Answers::StartTls, more_pending: false, .. })  => weird(Command, A::TlsRejected),
        (ClientInitiation | Command | Response, Down, M::Reply { to: Answers::StartTls, more_pending: true, .. })   => weird(Response, A::TlsRejected),
        (ClientInitiation | Command | Response, Down, M::Reply { to: Answers::Quit, class: Class::Positive | Class::Ready, .. }) => to(Finish),
        (ClientInitiation | Command | Response, Down, M::Reply { more_pending: true, .. })  => to(Response),
        (ClientInitiation | Command | Response, Down, M::Reply { more_pending: false, .. }) => to(Command),

        // data_transmission: content up to CRLF.CRLF, then its reply
        (DataTransmission, Up,   M::EndOfData)                                         => to(Response),
        (DataTransmission, Down, M::Reply { to: Answers::Nothing, .. })                => weird(DataTransmission, A::UnmatchedReply),
        // a late reply to commands queued while the server was unheard (DATA included)
        (DataTransmission, Down, M::Reply { .. })                                      => to(DataTransmission),

        // bdat_transmission: `n` octets, then back to commands; earlier replies may arrive meanwhile
        (BdatTransmission, Up,   M::ChunkDone)                                         => to(Response),
        (BdatTransmission, Down, M::Reply { to: Answers::Nothing, .. })                => weird(BdatTransmission, A::UnmatchedReply),
        (BdatTransmission, Down, M::Reply { .. })                                      => to(BdatTransmission),

        // auth_exchange: one client answer per 334 challenge
        (AuthExchange, Up,   M::AuthAnswer)                                            => to(Response),
        (AuthExchange, Down, M::Reply { .. })                                          => weird(AuthExchange, A::UnmatchedReply),

        // finish: the client should be silent, the server may still answer pipelined commands
        (Finish, Up,   _)                                                              => weird(Finish, A::DataAfterQuit),
        (Finish, Down, _)                                                              => to(Finish),

        // anything else cannot happen with a well-behaved peer
        (_, Up, _)                                                                     => weird(state, A::InvalidPipelinedSequence),
        (_, Down, _)                                                                   => weird(state, A::UnmatchedReply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Down, Up};

    fn reply(to: Answers, code: u16, more_pending: bool) -> Message {
        Message::Reply {
            to,
            class: Class::of(code),
            more_pending,
        }
    }

    #[test]
    fn greeting_then_commands_then_data() {
        let s = transition(
            State::SessionInitiation,
            Down,
            reply(Answers::Greeting, 220, false),
        );
        assert_eq!(s, to(State::ClientInitiation));
        let s = transition(
            State::SessionInitiation,
            Down,
            reply(Answers::Greeting, 554, false),
        );
        assert_eq!(
            s,
            weird(
                State::ClientInitiation,
                AnomalyKind::UnexpectedServerGreeting
            )
        );
        let s = transition(
            State::ClientInitiation,
            Up,
            Message::Command { bdat: false },
        );
        assert_eq!(s, to(State::Response));
        let s = transition(State::Response, Down, reply(Answers::Data, 354, false));
        assert_eq!(s, to(State::DataTransmission));
        let s = transition(State::DataTransmission, Up, Message::EndOfData);
        assert_eq!(s, to(State::Response));
        let s = transition(State::Response, Down, reply(Answers::Other, 250, false));
        assert_eq!(s, to(State::Command));
        let s = transition(State::Response, Down, reply(Answers::Quit, 221, false));
        assert_eq!(s, to(State::Finish));
        let s = transition(State::Finish, Up, Message::Command { bdat: false });
        assert_eq!(s, weird(State::Finish, AnomalyKind::DataAfterQuit));
    }

    #[test]
    fn missed_greeting_reply_answers_the_first_command() {
        // The capture started after the greeting: a 250 answers the queued EHLO.
        assert_eq!(
            transition(
                State::SessionInitiation,
                Down,
                reply(Answers::Other, 250, false)
            ),
            to(State::Command)
        );
        assert_eq!(
            transition(
                State::SessionInitiation,
                Down,
                reply(Answers::Other, 250, true)
            ),
            to(State::Response)
        );
        assert_eq!(
            transition(
                State::SessionInitiation,
                Up,
                Message::Command { bdat: true }
            ),
            weird(State::BdatTransmission, AnomalyKind::CommandBeforeGreeting)
        );
    }

    #[test]
    fn data_without_a_server_starts_content_at_once() {
        assert_eq!(
            transition(
                State::DataTransmission,
                Down,
                reply(Answers::Other, 354, false)
            ),
            to(State::DataTransmission)
        );
        assert_eq!(
            transition(
                State::DataTransmission,
                Down,
                reply(Answers::Nothing, 250, false)
            ),
            weird(State::DataTransmission, AnomalyKind::UnmatchedReply)
        );
        assert_eq!(
            transition(State::Response, Up, Message::DataUnheard),
            to(State::DataTransmission)
        );
        assert_eq!(
            transition(State::Response, Up, Message::DataReplyLost),
            to(State::DataTransmission)
        );
        assert_eq!(
            transition(State::SessionInitiation, Up, Message::DataUnheard),
            weird(State::DataTransmission, AnomalyKind::CommandBeforeGreeting)
        );
    }

    #[test]
    fn midstream_skips_until_a_command_or_the_reply_to_a_dot() {
        use State::Midstream;
        assert_eq!(
            transition(Midstream, Up, Message::NotACommand),
            to(Midstream)
        );
        assert_eq!(
            transition(Midstream, Down, reply(Answers::Nothing, 250, false)),
            to(Midstream)
        );
        assert_eq!(transition(Midstream, Up, Message::EndOfData), to(Midstream));
        assert_eq!(
            transition(Midstream, Down, reply(Answers::Other, 250, false)),
            to(State::Command)
        );
        assert_eq!(
            transition(Midstream, Down, reply(Answers::Other, 250, true)),
            to(State::Response)
        );
        assert_eq!(
            transition(Midstream, Up, Message::Command { bdat: false }),
            to(State::Response)
        );
        assert_eq!(
            transition(Midstream, Down, reply(Answers::Nothing, 421, false)),
            to(State::Finish)
        );
        // Once synchronised, a line that is not a command is an error again.
        assert_eq!(
            transition(State::Command, Up, Message::NotACommand),
            weird(State::Command, AnomalyKind::InvalidPipelinedSequence)
        );
    }

    #[test]
    fn tls_auth_bdat_error() {
        assert_eq!(
            transition(State::Response, Down, reply(Answers::StartTls, 220, false)),
            to(State::Tls)
        );
        assert_eq!(
            transition(State::Response, Down, reply(Answers::StartTls, 454, false)),
            weird(State::Command, AnomalyKind::TlsRejected)
        );
        assert_eq!(
            transition(State::Response, Down, reply(Answers::Auth, 334, false)),
            to(State::AuthExchange)
        );
        assert_eq!(
            transition(State::AuthExchange, Up, Message::AuthAnswer),
            to(State::Response)
        );
        assert_eq!(
            transition(State::Command, Up, Message::Command { bdat: true }),
            to(State::BdatTransmission)
        );
        assert_eq!(
            transition(State::BdatTransmission, Up, Message::ChunkDone),
            to(State::Response)
        );
        assert_eq!(
            transition(State::Command, Down, Message::Fatal),
            to(State::Error)
        );
        assert_eq!(
            transition(State::Error, Up, Message::NotACommand),
            to(State::Error)
        );
        assert_eq!(
            transition(State::Error, Up, Message::Command { bdat: false }),
            to(State::Response)
        );
        assert_eq!(
            transition(
                State::DataTransmission,
                Down,
                reply(Answers::Nothing, 421, false)
            ),
            to(State::Finish)
        );
    }
}
