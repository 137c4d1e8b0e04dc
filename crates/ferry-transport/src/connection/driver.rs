//! The connection's driver: only the `select!` that waits for the socket (write, read),
//! the session's doorbell and the one timer, and hands each event to the connection's
//! state ([`Conn`]); then the final flush, the write side's shutdown and the session's
//! end. Everything it decides with is in the sans-IO pieces it calls.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tracing::debug;

use ferry_core::monitor::ConnectionCounters;

use super::byte_rate::ByteRate;
use super::read::{read_some, write_out, ReadSize, READ_MIN};
use super::{Conn, Reading};
use crate::outbuf::OutBuf;
use crate::ws::link::Closing;

// The loop is an `async move` block, not an `async fn`: an async fn keeps its arguments
// in its state and moves them again into locals, so each would take room twice for the
// connection's whole life; a block uses what it captured in place. `conn` is built and
// the stream split before the block is made, for the same reason.
pub(super) fn run<S>(rd: ReadHalf<S>, wr: WriteHalf<S>, reading: Reading, conn: Conn) -> impl Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr, mut reading, mut conn) = (rd, wr, reading, conn);
    async move {
        let mut byte_rate = conn.shared.gate.byte_bucket(Instant::now()).map(ByteRate::new);
        let _active = conn.shared.metrics.connection_opened(conn.info.listener);
        let mut out = OutBuf::new();
        let mut input = BytesMut::new();
        let mut read_size = ReadSize(READ_MIN);
        debug!(conn = conn.info.id, peer = %conn.info.peer, listener = conn.info.listener, subprotocol = conn.info.subprotocol, "connection open");
        // One timer for every deadline (close handshake, ping, session keep-alive, byte-rate
        // pause), re-armed only when a deadline comes earlier than the armed one or after it
        // fired: firing early is harmless (`on_timer` checks each deadline against the
        // clock), so a busy connection does not touch the timer wheel on every wake-up.
        // The loop's own block, so that its timer is gone before the final flush, which
        // has timers of its own.
        {
            let timer = tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(86_400));
            tokio::pin!(timer);
            // Whether the timer is set for a deadline still wanted (its own deadline tells which).
            let mut armed = false;
            let mut unflushed = false;
            loop {
                let closing = conn.link.closing();
                if closing != Closing::Open {
                    conn.end_session();
                }
                if closing == Closing::Finished && out.is_empty() {
                    break;
                }
                if !conn.shutting_down && conn.shared.live.stopping() {
                    conn.shutting_down = true;
                    conn.on_shutdown(&mut out);
                }
                // Below `listeners.max_pending_output` of pending output the loop takes input
                // and wake-ups; above it, it waits for the peer to read.
                let room = out.len() < conn.shared.config.listeners.max_pending_output.max(1);
                let taking_wakes = room && conn.link.is_open();
                let taking_input = taking_wakes || conn.link.closing() == Closing::CloseSent;
                let mut read_limit = read_size.0;
                if let (true, Some(rate)) = (taking_input, byte_rate.as_mut()) {
                    match rate.allowance(Instant::now(), read_limit, &conn.shared.gate.stats) {
                        Ok(n) => {
                            read_limit = n;
                            rate.resume = None;
                        }
                        Err(at) => rate.resume = Some(at),
                    }
                }
                // After the allowance: a bucket found empty just now pauses this turn's read.
                let paused = byte_rate.as_ref().is_some_and(|rate| rate.resume.is_some());
                match (
                    conn.next_deadline()
                        .into_iter()
                        .chain(byte_rate.as_ref().and_then(|rate| rate.resume).filter(|_| taking_input))
                        .min(),
                    armed,
                ) {
                    (None, _) => armed = false,
                    (Some(at), true) if at >= timer.deadline().into_std() => {}
                    (Some(at), _) => {
                        timer.as_mut().reset(at.into());
                        armed = true;
                    }
                }
                // Set before a batch is written, cleared once it is written and flushed: if
                // another branch wins first, the flush is still owed on the next turn.
                unflushed |= !out.is_empty();
                tokio::select! {
                    biased;
                    written = write_out(&mut wr, &mut out), if unflushed => {
                        if written.is_err() {
                            break;
                        }
                        unflushed = false;
                        out.shrink_if_drained();
                    }
                    read = read_some(&mut rd, &mut input, read_limit), if taking_input && !paused => {
                        match read {
                            Ok(0) | Err(_) => {
                                conn.link.on_end_of_stream();
                                break;
                            }
                            Ok(n) => {
                                let now = Instant::now();
                                if let Some(rate) = byte_rate.as_mut() {
                                    rate.consumed(now, n);
                                }
                                read_size.adapt(n);
                                ConnectionCounters::add(&conn.info.monitor.counters.bytes_in, n);
                                conn.link.on_received(now);
                                conn.on_read(&mut reading, &mut input, &mut out);
                                if input.is_empty() {
                                    // An idle connection keeps no read buffer.
                                    input = BytesMut::new();
                                }
                            }
                        }
                    }
                    _ = conn.info.wakeup.woken(), if taking_wakes => conn.on_wake(&mut out),
                    () = &mut timer, if armed => {
                        armed = false;
                        let now = Instant::now();
                        if let Some(rate) = byte_rate.as_mut().filter(|rate| rate.resume.is_some_and(|at| now >= at)) {
                            rate.resume = None;
                        }
                        if conn.next_deadline().is_some_and(|at| now >= at) && conn.on_timer(&mut out) {
                            break;
                        }
                    }
                }
            }
        }
        if !out.is_empty() {
            let _ = tokio::time::timeout(Duration::from_millis(100), wr.write_all_buf(&mut out)).await;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), wr.shutdown()).await;
        conn.end_session();
        debug!(conn = conn.info.id, peer = %conn.info.peer, clean = conn.link.clean(), peer_closed = conn.link.peer_closed(), "connection closed");
    }
}
