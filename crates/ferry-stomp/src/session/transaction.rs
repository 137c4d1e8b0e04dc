//! BEGIN, COMMIT, ABORT. A SEND, ACK or NACK naming an open transaction is checked at
//! once (an error ends the session then, not at COMMIT) and held; COMMIT applies what
//! the transaction holds, in order; ABORT (or the end of the connection) drops it. What
//! open transactions hold on one connection is bounded by `max_transaction_bytes`.
//!
//! A RECEIPT for a transactional SEND or ACK says the frame was accepted into the
//! transaction; the RECEIPT for COMMIT says everything in it took effect.

use std::collections::HashMap;

use super::send::PreparedSend;
use super::{Connected, Ctx};
use crate::codec::Frame;
use crate::error::ProtocolError;

/// Held for this much besides its content: a transaction, a frame.
const OVERHEAD: usize = 64;

/// One frame held by a transaction.
#[derive(Debug)]
pub(super) enum TxOp {
    /// A SEND.
    Send(PreparedSend),
    /// An ACK (or NACK) of these message sequence numbers.
    Ack {
        /// The messages it covers.
        seqs: Vec<u64>,
        /// NACK rather than ACK.
        nack: bool,
    },
}

impl TxOp {
    fn weight(&self) -> usize {
        match self {
            TxOp::Send(p) => p.weight(),
            TxOp::Ack { seqs, .. } => seqs.len() * 8 + OVERHEAD,
        }
    }
}

/// A connection's open transactions.
#[derive(Debug, Default)]
pub(super) struct Transactions {
    open: HashMap<String, (Vec<TxOp>, usize)>,
    bytes: usize,
}

impl Transactions {
    /// `Ok` when transaction `id` is open.
    pub(super) fn check_open(&self, id: &str) -> Result<(), ProtocolError> {
        if self.open.contains_key(id) {
            Ok(())
        } else {
            Err(ProtocolError::UnknownTransaction { id: id.to_owned() })
        }
    }

    fn reserve(&mut self, weight: usize, limit: usize) -> Result<(), ProtocolError> {
        if self.bytes.saturating_add(weight) > limit {
            return Err(ProtocolError::TransactionTooLarge { limit });
        }
        self.bytes += weight;
        Ok(())
    }

    /// Open transaction `id`.
    pub(super) fn begin(&mut self, id: &str, limit: usize) -> Result<(), ProtocolError> {
        if self.open.contains_key(id) {
            return Err(ProtocolError::TransactionExists { id: id.to_owned() });
        }
        self.reserve(OVERHEAD + id.len(), limit)?;
        self.open.insert(id.to_owned(), (Vec::new(), OVERHEAD + id.len()));
        Ok(())
    }

    /// Hold `op` in transaction `id`.
    pub(super) fn add(&mut self, id: &str, op: TxOp, limit: usize) -> Result<(), ProtocolError> {
        self.check_open(id)?;
        let weight = op.weight();
        self.reserve(weight, limit)?;
        if let Some((ops, w)) = self.open.get_mut(id) {
            ops.push(op);
            *w += weight;
        }
        Ok(())
    }

    /// Close transaction `id`, returning what it held.
    pub(super) fn take(&mut self, id: &str) -> Result<Vec<TxOp>, ProtocolError> {
        let (ops, weight) = self
            .open
            .remove(id)
            .ok_or_else(|| ProtocolError::UnknownTransaction { id: id.to_owned() })?;
        self.bytes -= weight;
        Ok(ops)
    }

    /// Drop every open transaction.
    pub(super) fn clear(&mut self) {
        self.open.clear();
        self.bytes = 0;
    }
}

fn transaction_id(frame: &Frame) -> Result<&str, ProtocolError> {
    frame.header("transaction").ok_or(ProtocolError::MissingHeader {
        command: frame.command,
        header: "transaction",
    })
}

impl Connected {
    pub(super) fn on_begin(&mut self, ctx: &Ctx<'_>, frame: &Frame) -> Result<(), ProtocolError> {
        let id = transaction_id(frame)?;
        self.transactions.begin(id, ctx.broker.config.max_transaction_bytes)
    }

    pub(super) fn on_commit(&mut self, ctx: &Ctx<'_>, frame: &Frame) -> Result<(), ProtocolError> {
        let id = transaction_id(frame)?;
        for op in self.transactions.take(id)? {
            match op {
                TxOp::Send(p) => self.apply_send(ctx, p)?,
                TxOp::Ack { seqs, nack } => self.apply_ack(ctx, &seqs, nack),
            }
        }
        Ok(())
    }

    pub(super) fn on_abort(&mut self, frame: &Frame) -> Result<(), ProtocolError> {
        let id = transaction_id(frame)?;
        self.transactions.take(id).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_open_once_and_stay_within_their_budget() {
        let mut t = Transactions::default();
        t.begin("tx", 1000).unwrap();
        assert!(matches!(t.begin("tx", 1000), Err(ProtocolError::TransactionExists { .. })));
        t.add(
            "tx",
            TxOp::Ack {
                seqs: vec![1, 2],
                nack: false,
            },
            1000,
        )
        .unwrap();
        assert!(matches!(
            t.add("nope", TxOp::Ack { seqs: vec![], nack: false }, 1000),
            Err(ProtocolError::UnknownTransaction { .. })
        ));
        let big = TxOp::Ack {
            seqs: vec![0; 200],
            nack: false,
        };
        assert!(matches!(
            t.add("tx", big, 1000),
            Err(ProtocolError::TransactionTooLarge { limit: 1000 })
        ));
        assert_eq!(t.take("tx").unwrap().len(), 1);
        assert_eq!(t.bytes, 0, "the budget is given back");
        assert!(t.take("tx").is_err());
    }
}
