//! Durable `/queue/`s over a real journal on a temporary directory: RECEIPTs wait for
//! the disk, messages and unacknowledged deliveries survive a reopen, a poisoned
//! journal refuses with an ERROR.

use std::sync::Arc;

use ferry_auth::CoreParts;
use ferry_core::{Journal, MemoryRetained, Router};
use ferry_store::io::{FaultyIo, StdIo, StorageIo};
use ferry_store::{BrokerJournal, StoreConfig};

use super::*;

/// A STOMP broker over a journal in `dir`, with what the journal restored put back.
fn durable_broker(dir: &std::path::Path, io: Arc<dyn StorageIo>) -> (Arc<StompShared>, Arc<BrokerJournal>) {
    let retained = Arc::new(MemoryRetained::new());
    let (journal, restored) = BrokerJournal::open_with(StoreConfig::new(dir), io, &retained).unwrap();
    let journal = Arc::new(journal);
    let router = Router::new(retained).with_journal(journal.clone() as Arc<dyn Journal>);
    let shared = Arc::new(StompShared::new(CoreParts::open_with(Arc::new(router)), StompConfig::default()));
    let n = shared.queues.restore(restored.queues);
    assert_eq!(n, restored.queue_messages);
    (shared, journal)
}

/// Waits until everything appended is durable, then closes the journal as a stop would
/// (the connections gone first: they hold the shared state).
fn stop(shared: Arc<StompShared>, journal: Arc<BrokerJournal>, clients: Vec<Client>) {
    journal.store().wait_durable(journal.store().last_lsn()).unwrap();
    drop(clients);
    drop(shared);
    Arc::try_unwrap(journal)
        .map_err(|_| "journal still shared")
        .unwrap()
        .close()
        .unwrap();
}

/// `got` and what the session sends once the journal has everything on disk (the
/// journal rings the session; the test wakes it as the transport would).
fn after_sync(c: &mut Client, journal: &BrokerJournal, mut got: Vec<Frame>) -> Vec<Frame> {
    journal.store().wait_durable(journal.store().last_lsn()).unwrap();
    got.extend(c.wake());
    got
}

#[test]
fn a_receipt_waits_for_the_disk_and_messages_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (b, journal) = durable_broker(dir.path(), Arc::new(StdIo));
    let mut p = Client::connected(&b);
    let mut got = p.send("SEND\ndestination:/queue/jobs\ncontent-type:text/plain\nx-id:1\nreceipt:r1\n\none\0");
    got.extend(p.send("SEND\ndestination:/queue/jobs\n\ntwo\0SEND\ndestination:/queue/jobs\nreceipt:r3\n\nthree\0"));
    let got = after_sync(&mut p, &journal, got);
    let ids: Vec<&str> = got.iter().map(|f| header(f, "receipt-id")).collect();
    assert_eq!(ids, ["r1", "r3"], "in order, each once on disk");
    // A temporary queue is not durable: its SEND's receipt waits for nothing.
    assert_eq!(p.send("SEND\ndestination:/temp-queue/mine\nreceipt:t\n\nx\0").len(), 1);
    stop(b, journal, vec![p]);

    let (b, journal) = durable_broker(dir.path(), Arc::new(StdIo));
    assert_eq!(b.queues.len(), 1, "/queue/jobs is back, the temporary queue is not");
    let mut c = Client::connected(&b);
    let f = c.send("SUBSCRIBE\nid:s\ndestination:/queue/jobs\nack:client-individual\n\n\0");
    assert_eq!(bodies(&f), ["one", "two", "three"]);
    assert_eq!(header(&f[0], "content-type"), "text/plain");
    assert_eq!(header(&f[0], "x-id"), "1");
    assert!(f.iter().all(|m| m.header("redelivered").is_none()), "never sent before");
    // ACK the first; the other two were delivered and not acknowledged.
    c.send(&format!("ACK\nid:{}\n\n\0", header(&f[0], "ack")));
    // New messages get ids past the restored ones.
    let mut p = Client::connected(&b);
    p.send("SEND\ndestination:/queue/jobs\n\nfour\0");
    stop(b, journal, vec![c, p]);

    let (b, journal) = durable_broker(dir.path(), Arc::new(StdIo));
    let mut c = Client::connected(&b);
    let f = c.send("SUBSCRIBE\nid:s\ndestination:/queue/jobs\nack:auto\n\n\0");
    assert_eq!(bodies(&f), ["two", "three", "four"]);
    let redelivered: Vec<bool> = f.iter().map(|m| m.header("redelivered") == Some("true")).collect();
    assert_eq!(redelivered, [true, true, false]);
    stop(b, journal, vec![c]);

    // Taken by an auto-ack consumer: gone.
    let (b, journal) = durable_broker(dir.path(), Arc::new(StdIo));
    assert!(b.queues.is_empty());
    stop(b, journal, vec![]);
}

#[test]
fn a_commit_journals_its_sends_and_its_receipt_waits() {
    let dir = tempfile::tempdir().unwrap();
    let (b, journal) = durable_broker(dir.path(), Arc::new(StdIo));
    let mut p = Client::connected(&b);
    let f = p.send("BEGIN\ntransaction:t\n\n\0SEND\ndestination:/queue/tx\ntransaction:t\nreceipt:in-tx\n\n1\0");
    assert_eq!(header(&f[0], "receipt-id"), "in-tx", "nothing journaled before COMMIT");
    let last = journal.store().last_lsn();
    p.send("SEND\ndestination:/queue/tx\ntransaction:t\n\n2\0ABORT\ntransaction:t\n\n\0");
    assert_eq!(journal.store().last_lsn(), last, "an aborted transaction writes nothing");
    let got = p.send("BEGIN\ntransaction:u\n\n\0SEND\ndestination:/queue/tx\ntransaction:u\n\n3\0COMMIT\ntransaction:u\nreceipt:c\n\n\0");
    assert!(journal.store().last_lsn() > last, "journaled at COMMIT");
    let got = after_sync(&mut p, &journal, got);
    assert_eq!(header(&got[0], "receipt-id"), "c");
    // A DISCONNECT's receipt also covers what came before it.
    p.send("SEND\ndestination:/queue/tx\n\n4\0");
    let got = p.send("DISCONNECT\nreceipt:bye\n\n\0");
    if got.is_empty() {
        assert!(p.closed.is_none(), "not closed before its RECEIPT");
    }
    let got = after_sync(&mut p, &journal, got);
    assert_eq!(header(&got[0], "receipt-id"), "bye");
    assert!(p.closed.is_some());
    stop(b, journal, vec![p]);
    let (b, journal) = durable_broker(dir.path(), Arc::new(StdIo));
    let mut c = Client::connected(&b);
    assert_eq!(bodies(&c.send("SUBSCRIBE\nid:s\ndestination:/queue/tx\n\n\0")), ["3", "4"]);
    stop(b, journal, vec![c]);
}

#[test]
fn a_poisoned_journal_answers_a_send_to_a_queue_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let io = FaultyIo::new();
    let faults = io.faults();
    let (b, journal) = durable_broker(dir.path(), Arc::new(io));
    let mut p = Client::connected(&b);
    let got = p.send("SEND\ndestination:/queue/q\nreceipt:ok\n\nkept\0");
    let got = after_sync(&mut p, &journal, got);
    assert_eq!(header(&got[0], "receipt-id"), "ok");
    // The next sync fails: the held RECEIPT becomes an ERROR.
    faults.fail_sync(1);
    let f = p.send("SEND\ndestination:/queue/q\nreceipt:lost\n\nlost\0");
    assert!(f.is_empty(), "held: {f:?}");
    assert!(journal.store().wait_durable(journal.store().last_lsn()).is_err());
    let f = p.wake();
    assert_error(&f, &p, "storage unavailable", "storage unavailable");
    assert_eq!(header(&f[0], "receipt-id"), "lost");
    // Poisoned: a SEND to a durable queue is refused at once; other destinations work.
    let mut q = Client::connected(&b);
    let f = q.send("SEND\ndestination:/topic/live\nreceipt:t\n\nx\0");
    assert_eq!(header(&f[0], "receipt-id"), "t");
    let f = q.send("SEND\ndestination:/queue/q\nreceipt:r\n\nrefused\0");
    assert_error(&f, &q, "storage unavailable", "storage unavailable");
    assert_eq!(header(&f[0], "receipt-id"), "r");
    assert_eq!(b.queues.stats.refused_storage.load(std::sync::atomic::Ordering::Relaxed), 1);
}
