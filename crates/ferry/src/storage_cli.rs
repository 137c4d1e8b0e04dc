//! `ferry storage inspect DIR` and `ferry storage repair DIR`: for operators, over a
//! data directory (`storage.dir`).

use std::path::Path;

use anyhow::Context;
use ferry_store::queue_records::{QUEUE_DELIVERED, QUEUE_PUT, QUEUE_REMOVED};
use ferry_store::records::{RETAINED_CLEAR, RETAINED_SET};
use ferry_store::session_records as session;

/// The name of a record kind, for people.
fn kind_name(kind: u8) -> String {
    match kind {
        RETAINED_SET => "retained message set".into(),
        RETAINED_CLEAR => "retained message cleared".into(),
        session::BODY => "message body (stored once, held by sessions)".into(),
        session::OPEN => "persistent session opened".into(),
        session::DETACHED => "session offline".into(),
        session::END => "session ended".into(),
        session::SUBSCRIBED => "session subscribed".into(),
        session::UNSUBSCRIBED => "session unsubscribed".into(),
        session::ENQUEUED => "message queued for a session".into(),
        session::OUTGOING => "message sent or released (QoS 2)".into(),
        session::INCOMING => "incoming QoS 2 packet id".into(),
        session::ACKED => "message acknowledged by a session".into(),
        session::WILL_DELAYED => "will waiting for its delay".into(),
        session::WILL_DONE => "delayed will published or cancelled".into(),
        QUEUE_PUT => "STOMP queue message put".into(),
        QUEUE_DELIVERED => "STOMP queue message delivered".into(),
        QUEUE_REMOVED => "STOMP queue message removed".into(),
        other => format!("kind {other} (unknown to this Ferry)"),
    }
}

fn when(unix_ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Prints what `dir` holds; fails (exit 1) when the broker would refuse to open it.
pub(crate) fn inspect(dir: &Path) -> anyhow::Result<()> {
    let i = ferry_store::inspect(dir).with_context(|| format!("cannot inspect {}", dir.display()))?;
    println!("storage in {}", i.dir.display());
    if let Some(id) = i.store_id {
        println!("  store id          {id:032x}");
    }
    println!("  bytes on disk     {}", i.total_bytes);
    println!("  live state        {} bytes (what a snapshot would write now)", i.live_bytes);
    println!("  retained          {} messages", i.retained);
    println!(
        "  sessions          {} persistent MQTT sessions, {} subscriptions, {} queued or in-flight messages ({} bodies), {} delayed wills",
        i.sessions.sessions, i.sessions.subscriptions, i.sessions.messages, i.sessions.bodies, i.sessions.wills
    );
    match &i.snapshot {
        Some(s) => {
            println!(
                "  snapshot          at LSN {}, {} records, {} bytes, written {}",
                s.lsn,
                s.records,
                s.bytes,
                when(s.created_unix_ms)
            );
            for (kind, n) in &s.records_by_kind {
                println!("    {n:>10}  {}", kind_name(*kind));
            }
        }
        None => println!("  snapshot          none"),
    }
    println!("  log               {} records in {} segments", i.log_records, i.segments.len());
    for (kind, n) in &i.records_by_kind {
        println!("    {n:>10}  {}", kind_name(*kind));
    }
    for s in &i.segments {
        let name = s
            .file
            .file_name()
            .map_or_else(|| s.file.display().to_string(), |n| n.to_string_lossy().into_owned());
        println!(
            "    {name}: LSN {}..{}, {} records, {} of {} bytes used{}",
            s.base_lsn,
            s.last_lsn.map_or_else(|| "-".to_owned(), |l| l.to_string()),
            s.records,
            s.used_bytes,
            s.bytes,
            s.problem.as_ref().map_or_else(String::new, |p| format!(" — {p}"))
        );
    }
    if let Some(next) = i.next_lsn {
        println!("  next LSN          {next}");
    }
    let messages: usize = i.stomp_queues.iter().map(|(_, n)| n).sum();
    println!("  STOMP queues      {} holding {messages} messages", i.stomp_queues.len());
    for (name, n) in &i.stomp_queues {
        println!("    {n:>10}  /queue/{name}");
    }
    if i.torn_tail_bytes > 0 {
        println!(
            "  torn tail         {} bytes (cut off on the next start; nothing acknowledged)",
            i.torn_tail_bytes
        );
    }
    for f in &i.foreign_files {
        println!("  foreign file      {}", f.display());
    }
    for f in &i.temp_files {
        println!(
            "  leftover          {} (an interrupted write; removed on the next start)",
            f.display()
        );
    }
    if let Some(problem) = &i.problem {
        anyhow::bail!(
            "the broker would refuse to start on {}: {problem}; `ferry storage repair {}` moves the damaged part aside",
            dir.display(),
            dir.display()
        );
    }
    println!("  state             opens cleanly");
    Ok(())
}

/// Moves whatever stops `dir` from opening into `dir/quarantine/` (never deletes) and
/// says what it did.
pub(crate) fn repair(dir: &Path) -> anyhow::Result<()> {
    let report = ferry_store::repair(dir).with_context(|| format!("cannot repair {}", dir.display()))?;
    if report.actions.is_empty() {
        println!("{}: nothing to repair", dir.display());
    }
    for a in &report.actions {
        println!("{a}");
    }
    for q in &report.quarantined {
        println!("moved aside: {}", q.display());
    }
    Ok(())
}
