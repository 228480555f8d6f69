//! Transactions of a session: the pending queue entries that refer to
//! them, the envelope changes reported when the server accepts a command,
//! and when a transaction is decided and reported.

use super::*;

impl Session {
    // ----- transactions -----

    pub(super) fn push_pending(
        &mut self,
        what: Awaiting,
        tx: Option<u32>,
        rcpt: Option<usize>,
        sink: &mut impl EventSink,
    ) {
        let mut p = Pending::new(what, tx);
        p.rcpt = rcpt;
        self.queue(p, sink);
    }

    /// Queues a command until its reply. While the server is unheard no
    /// reply will tell whether it was accepted: its envelope change is
    /// reported at once.
    pub(super) fn queue(&mut self, mut p: Pending, sink: &mut impl EventSink) {
        let tx = p.tx;
        if self.pending.is_full() && self.server_unheard() {
            // Nothing answers a one-sided capture: forget the oldest command
            // rather than refuse every new one (reported once per session).
            if let Some(old) = self.pending.pop() {
                if let Some(t) = old.tx.and_then(|id| self.tx_mut(id)) {
                    t.refs = t.refs.saturating_sub(1);
                }
            }
            self.unheard_forgotten += 1;
            if self.unheard_forgotten == 1 {
                let detail = format!(
                    "more than {} commands and no server reply: oldest forgotten",
                    self.cfg.max_pending
                );
                self.anomaly(AnomalyKind::LimitExceeded, detail, tx, sink);
            }
        }
        if self.pending.is_full() && !std::mem::replace(&mut self.queue_overflowed, true) {
            // Later commands are counted, not kept: their replies are
            // counted off and later replies stay aligned. Reported once.
            let detail = format!(
                "more than {} commands awaiting replies: later ones not recorded",
                self.cfg.max_pending
            );
            self.anomaly(AnomalyKind::LimitExceeded, detail, tx, sink);
        }
        if self.server_unheard() {
            self.announce(&p, sink);
            p.announced = true;
        }
        p.behind = !self.pending.is_empty();
        if self.pending.push(p) {
            if let Some(t) = tx.and_then(|id| self.tx_mut(id)) {
                t.refs += 1;
            }
        }
    }

    /// Reports the envelope change of an accepted command (once).
    pub(super) fn announce(&mut self, p: &Pending, sink: &mut impl EventSink) {
        if p.announced {
            return;
        }
        let tx = p.tx.and_then(|id| self.txs.iter().find(|t| t.id == id));
        let change = match (&p.what, &p.undo) {
            (Awaiting::Command(Verb::Mail), _) => match tx {
                Some(t) => EnvelopeChange::MailFrom {
                    path: t.mail_from.clone().unwrap_or_default(),
                    declared_size: t.declared_size,
                },
                None => return,
            },
            (Awaiting::Command(Verb::Rcpt), _) => {
                match tx.zip(p.rcpt).and_then(|(t, i)| t.rcpt_to.get(i)) {
                    Some(r) => EnvelopeChange::Rcpt(r.path.clone()),
                    None => return,
                }
            }
            (Awaiting::Command(Verb::Helo | Verb::Ehlo), Undo::Helo { arg: Some(a), .. }) => {
                EnvelopeChange::Helo(a.clone())
            }
            (Awaiting::Command(Verb::Rset), _) => EnvelopeChange::Reset,
            _ => return,
        };
        // A transaction already reported (evicted at the open-transaction
        // bound) is not named again.
        let tx_id = p.tx.filter(|&id| self.txs.iter().any(|t| t.id == id));
        sink.event(Event::Envelope(Envelope { tx_id, change }));
    }

    pub(super) fn tx_mut(&mut self, id: u32) -> Option<&mut TxBuilder> {
        self.txs.iter_mut().find(|t| t.id == id)
    }

    pub(super) fn new_tx(&mut self, sink: &mut impl EventSink) -> u32 {
        if self.txs.len() >= self.cfg.max_open_transactions {
            if let Some(mut oldest) = self.txs.pop_front() {
                let detail = format!(
                    "more than {} open transactions",
                    self.cfg.max_open_transactions
                );
                self.anomaly(AnomalyKind::LimitExceeded, detail, Some(oldest.id), sink);
                oldest.decide(TransactionState::Aborted, None);
                sink.event(Event::Transaction(oldest.into_transaction(self.tls)));
            }
        }
        self.new_tx_quiet()
    }

    pub(super) fn new_tx_quiet(&mut self) -> u32 {
        let id = self.next_tx;
        self.next_tx = self.next_tx.saturating_add(1);
        self.txs.push_back(TxBuilder::new(id, self.helo.clone()));
        id
    }

    pub(super) fn decide(&mut self, id: Option<u32>, state: TransactionState, code: u16) {
        if let Some(tx) = id.and_then(|id| self.tx_mut(id)) {
            tx.decide(state, Some(code));
        }
        if id.is_some() && self.up_tx == id && state != TransactionState::Delivered {
            self.up_tx = None;
        }
    }

    /// Emits the transaction if it is decided and no pending command refers to it.
    pub(super) fn try_emit(&mut self, id: u32, sink: &mut impl EventSink) {
        let Some(pos) = self.txs.iter().position(|t| t.id == id) else {
            return;
        };
        let ready = self
            .txs
            .get(pos)
            .is_some_and(|t| t.state.is_some() && t.refs == 0);
        if ready && self.content_tx != Some(id) {
            if let Some(tx) = self.txs.remove(pos) {
                sink.event(Event::Transaction(tx.into_transaction(self.tls)));
            }
        }
    }

    /// Ends every open transaction (QUIT, close, 421, TLS).
    pub(super) fn abort_all(&mut self, sink: &mut impl EventSink) {
        self.cut_content(sink);
        self.up_tx = None;
        while let Some(mut tx) = self.txs.pop_front() {
            tx.decide(TransactionState::Aborted, None);
            sink.event(Event::Transaction(tx.into_transaction(self.tls)));
        }
    }
}
