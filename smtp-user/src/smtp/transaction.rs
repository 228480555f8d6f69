//! Building one mail transaction (MAIL FROM … end of message / RSET / abort)
//! from the commands and replies that concern it.

use super::events::{Email, Recipient, Transaction, TransactionState};

/// Most recipients recorded per transaction (the excess is reported as
/// `limit_exceeded`; RFC 5321 requires servers to accept 100).
pub const MAX_RECIPIENTS: usize = 1000;

/// Longest recipient path kept, in bytes (RFC 5321 allows 256); longer ones are cut.
pub const MAX_PATH: usize = 512;

/// A transaction being built.
#[derive(Debug, Clone)]
pub struct TxBuilder {
    pub id: u32,
    pub helo: Option<String>,
    pub mail_from: Option<String>,
    pub mail_params: Vec<String>,
    /// At most [`MAX_RECIPIENTS`] entries.
    pub rcpt_to: Vec<Recipient>,
    /// `Some` once a reply (or the session) decided how the transaction ends.
    pub state: Option<TransactionState>,
    pub reply_code: Option<u16>,
    /// Unstuffed content bytes seen so far.
    pub size: u64,
    /// SIZE= of MAIL FROM, if given.
    pub declared_size: Option<u64>,
    pub email: Option<Email>,
    pub email_status: Option<String>,
    /// Pending commands that still refer to this transaction; it is emitted
    /// when decided and `refs == 0` (or when the session ends).
    pub refs: u32,
    /// Content was lost (stream gap): the message cannot be PARSE_DONE.
    pub incomplete: bool,
    /// Reply code of a refused DATA: the transaction stayed open; unless
    /// a later DATA delivers it, it ends `rejected` with this code.
    pub refused: Option<u16>,
}

impl TxBuilder {
    pub fn new(id: u32, helo: Option<String>) -> TxBuilder {
        TxBuilder {
            id,
            helo,
            mail_from: None,
            mail_params: Vec::new(),
            rcpt_to: Vec::new(),
            state: None,
            reply_code: None,
            size: 0,
            declared_size: None,
            email: None,
            email_status: None,
            refs: 0,
            incomplete: false,
            refused: None,
        }
    }

    /// Records how the transaction ends; the first decision wins. A
    /// transaction whose DATA was refused and that ends without delivery
    /// ends `rejected`.
    pub fn decide(&mut self, state: TransactionState, code: Option<u16>) {
        let (state, code) = match self.refused {
            Some(c) if state != TransactionState::Delivered => {
                (TransactionState::Rejected, Some(c))
            }
            _ => (state, code),
        };
        if self.state.is_none() {
            self.state = Some(state);
            if code.is_some() {
                self.reply_code = code;
            }
        }
    }

    pub fn into_transaction(self, tls: bool) -> Transaction {
        Transaction {
            id: self.id,
            helo: self.helo,
            mail_from: self.mail_from,
            mail_params: self.mail_params,
            rcpt_to: self.rcpt_to,
            state: self.state.unwrap_or(TransactionState::Aborted),
            reply_code: self.reply_code,
            size: self.size,
            tls,
            email: self.email,
            email_status: self.email_status,
        }
    }
}
