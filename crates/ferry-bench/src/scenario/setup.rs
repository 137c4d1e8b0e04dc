//! Opening many sessions at once, a bounded number at a time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{self, ClientError, Rx, SessionSpec, Tx};
use crate::transport::{Conn, Connector, SmallWindow};

/// An open session, ready to be handed to its tasks.
pub(super) struct Session {
    /// The connection.
    pub conn: Conn,
    /// Its sending side.
    pub tx: Tx,
    /// Its receiving side.
    pub rx: Rx,
    /// Bytes read during set-up that belong to what follows.
    pub buf: BytesMut,
}

/// One session to open.
pub(super) struct Opening {
    /// Where to.
    pub connector: Arc<Connector>,
    /// How.
    pub spec: Arc<SessionSpec>,
    /// Connection number (picks the source address).
    pub index: usize,
    /// MQTT client id.
    pub client_id: String,
    /// Filter to subscribe to.
    pub subscribe: Option<String>,
    /// Topic publications go to.
    pub publish: String,
    /// Small socket buffers for a connection meant to stop reading; `None` leaves
    /// them to the kernel.
    pub small_window: Option<SmallWindow>,
}

/// Opens one session within `timeout`.
pub(super) async fn open(o: &Opening, timeout: Duration) -> Result<Session, ClientError> {
    let work = async {
        let mut conn = o.connector.connect(o.index, o.small_window).await?;
        let mut buf = BytesMut::with_capacity(8 * 1024);
        let (tx, rx) = client::open(&mut conn, &mut buf, &o.spec, &o.client_id, o.subscribe.as_deref(), &o.publish).await?;
        Ok(Session { conn, tx, rx, buf })
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}

/// Opens every session, `concurrency` at a time; results in the order given. `done`
/// counts the finished attempts (for progress lines).
pub(super) async fn open_all(
    openings: Vec<Opening>,
    concurrency: usize,
    timeout: Duration,
    done: Arc<AtomicU64>,
) -> Vec<Result<Session, ClientError>> {
    let n = openings.len();
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for (slot, opening) in openings.into_iter().enumerate() {
        let gate = gate.clone();
        let done = done.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let result = open(&opening, timeout).await;
            done.fetch_add(1, Ordering::Relaxed);
            (slot, result)
        });
    }
    let mut results: Vec<Option<Result<Session, ClientError>>> = (0..n).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((slot, result)) => results[slot] = Some(result),
            Err(e) => tracing::error!("a set-up task failed: {e}"),
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(ClientError::Unexpected("set-up task lost".into()))))
        .collect()
}
