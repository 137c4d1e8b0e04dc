//! Crash consistency of persistent sessions: a known history of session changes is
//! written through the broker's journal, the log is cut at every byte of its last records (and
//! zeroed from every byte, as lost unsynced pages of a preallocated file are), and the
//! sessions restored from each copy must be exactly the history up to the last whole
//! record: every change acknowledged before the cut back, nothing invented.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use ferry_core::{Delivery, Journal, Lsn, MemoryRetained, Message, QoS, SubscribeOptions, Subscription, TopicFilter, TopicName};
use ferry_store::frame::{self, Decoded};
use ferry_store::{segment, BrokerJournal};

/// One change of the history and the position it got.
#[derive(Debug, Clone)]
enum Op {
    Open,
    Subscribe(&'static str),
    Enqueue(u64),
    Sent(u64, u16),
    Ack(u64),
    Incoming(u16, bool),
}

/// Writes the history; returns every change with its position.
fn write_history(dir: &Path) -> Vec<(Lsn, Op)> {
    let memory = MemoryRetained::new();
    let (journal, _) = BrokerJournal::open(config(dir), &memory).unwrap();
    let mut ops = Vec::new();
    let last = |j: &BrokerJournal| j.store().last_lsn();
    let (key, _) = journal.session_open(None, "dev", Some(Duration::from_secs(3600))).unwrap();
    ops.push((last(&journal), Op::Open));
    for filter in ["a/#", "b/+"] {
        let sub = Subscription::Plain(TopicFilter::new(filter).unwrap());
        let options = SubscribeOptions {
            qos: QoS::AtLeastOnce,
            ..Default::default()
        };
        journal.subscribed(key, filter, &sub, &options).unwrap();
        ops.push((last(&journal), Op::Subscribe(filter)));
    }
    for i in 1..=300u64 {
        let m = Arc::new(Message::new(
            TopicName::new("a/x").unwrap(),
            Bytes::from(format!("message {i:04}")),
            QoS::AtLeastOnce,
            false,
        ));
        let d = Delivery {
            message: m.clone(),
            qos: QoS::AtLeastOnce,
            retain: false,
            subscription_ids: vec![],
        };
        journal.enqueued(key, &d).unwrap();
        ops.push((last(&journal), Op::Enqueue(i)));
        if i % 3 == 0 {
            let pkid = u16::try_from(i).unwrap();
            journal.sent(key, &m, pkid);
            ops.push((last(&journal), Op::Sent(i, pkid)));
        }
        if i % 4 == 0 {
            journal.acked(key, &m);
            ops.push((last(&journal), Op::Ack(i)));
        }
        if i % 10 == 0 {
            let pkid = u16::try_from(1000 + i).unwrap();
            journal.qos2_received(key, pkid).unwrap();
            ops.push((last(&journal), Op::Incoming(pkid, true)));
            if i % 20 == 0 {
                journal.qos2_released(key, pkid).unwrap();
                ops.push((last(&journal), Op::Incoming(pkid, false)));
            }
        }
    }
    journal.store().wait_durable(last(&journal)).unwrap();
    journal.close().unwrap();
    ops
}

/// What the sessions must hold once every change up to `upto` survived.
#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    open: bool,
    subscriptions: Vec<String>,
    /// (message number, packet id) in order.
    messages: Vec<(u64, Option<u16>)>,
    incoming: Vec<u16>,
}

fn expected(ops: &[(Lsn, Op)], upto: Lsn) -> Expected {
    let mut e = Expected::default();
    for (lsn, op) in ops.iter().filter(|(lsn, _)| *lsn <= upto) {
        let _ = lsn;
        match op {
            Op::Open => e.open = true,
            Op::Subscribe(f) => e.subscriptions.push((*f).to_owned()),
            Op::Enqueue(i) => e.messages.push((*i, None)),
            Op::Sent(i, pkid) => {
                if let Some(m) = e.messages.iter_mut().find(|m| m.0 == *i) {
                    m.1 = Some(*pkid);
                }
            }
            Op::Ack(i) => e.messages.retain(|m| m.0 != *i),
            Op::Incoming(pkid, true) => e.incoming.push(*pkid),
            Op::Incoming(pkid, false) => e.incoming.retain(|p| p != pkid),
        }
    }
    e.subscriptions.sort();
    e.incoming.sort_unstable();
    e
}

fn restored(dir: &Path) -> Expected {
    let memory = MemoryRetained::new();
    // Reopened thousands of times: what the reopen writes need not wait for the disk.
    let reopen = ferry_store::StoreConfig {
        sync: ferry_store::SyncMode::Os,
        ..config(dir)
    };
    let (journal, restored) = BrokerJournal::open(reopen, &memory).unwrap_or_else(|e| panic!("{e}"));
    let mut e = Expected::default();
    if let Some(s) = restored.sessions.first() {
        assert_eq!(restored.sessions.len(), 1);
        assert_eq!(&*s.client_id, "dev");
        e.open = true;
        e.subscriptions = s.subscriptions.iter().map(|(f, _, _)| f.clone()).collect();
        e.subscriptions.sort();
        e.messages = s
            .messages
            .iter()
            .map(|m| {
                let text = std::str::from_utf8(&m.delivery.message.payload).unwrap();
                (text["message ".len()..].parse().unwrap(), m.pkid)
            })
            .collect();
        e.incoming = s.incoming_qos2.clone();
        e.incoming.sort_unstable();
    }
    journal.close().unwrap();
    e
}

/// `(offset, len, lsn)` of every record in segment `path`.
fn records_of(path: &Path) -> Vec<(usize, usize, u64)> {
    let buf = std::fs::read(path).unwrap();
    let mut pos = segment::FILE_HEADER_LEN;
    let mut out = Vec::new();
    while let Decoded::Record(f) = frame::decode(&buf[pos..]) {
        out.push((pos, f.len, f.lsn));
        pos += f.len;
    }
    out
}

#[test]
fn sessions_cut_at_every_byte_of_the_last_records_come_back_exactly_to_the_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let original = tmp.path().join("original");
    let ops = write_history(&original);
    let segs = segments(&original);
    assert!(segs.len() >= 2, "the history spans segments: {}", segs.len());
    let last_seg = segs.last().unwrap().clone();
    let recs = records_of(&last_seg);
    let original_bytes = std::fs::read(&last_seg).unwrap();
    let first_lsn = recs.first().unwrap().2;
    // The last 40 records of every kind the history has (cut at each of their bytes).
    let from = recs[recs.len().saturating_sub(40)].0;
    let to = recs.last().map(|(o, l, _)| o + l).unwrap();
    let mut checked = 0;
    for cut in from..=to {
        let survivors_at = |cut: usize| {
            recs.iter()
                .filter(|(off, len, _)| off + len <= cut)
                .map(|r| r.2)
                .max()
                .unwrap_or(first_lsn - 1)
        };
        // Zeroing bytes that already were zero damages nothing: such a cut is where the
        // zeros end.
        let zero_run = original_bytes[cut..].iter().take_while(|b| **b == 0).count();
        for zeroed in [false, true] {
            let survivors = survivors_at(if zeroed { cut + zero_run } else { cut });
            let want = expected(&ops, survivors);
            let dir = tmp.path().join("cut");
            let _ = std::fs::remove_dir_all(&dir);
            copy_dir(&original, &dir);
            let seg = dir.join(last_seg.file_name().unwrap());
            if zeroed {
                let mut bytes = std::fs::read(&seg).unwrap();
                bytes[cut..].fill(0);
                std::fs::write(&seg, bytes).unwrap();
            } else {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&seg)
                    .unwrap()
                    .set_len(cut as u64)
                    .unwrap();
            }
            let got = restored(&dir);
            assert_eq!(got, want, "cut at {cut} (zeroed {zeroed}), survivors up to LSN {survivors}");
            checked += 1;
        }
    }
    eprintln!("{checked} cuts, each restored exactly");
    assert!(checked > 500, "{checked} cuts");
    // And the whole history, uncut.
    assert_eq!(restored(&original), expected(&ops, u64::MAX));
}
