//! Waiting for durability: the durable LSN, the poison flag, and the waiters the writer
//! wakes when a batch is synced. A waiter is a callback, a task's `Waker` (through
//! [`Durable`], a future), or a blocked thread.
//!
//! Lock order: a waiter registers under `waiters` after checking the durable LSN and the
//! poison flag *under that lock*; the writer publishes the LSN (or sets the poison) before
//! taking it. So no wake-up is lost, and callbacks run with no lock held.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use parking_lot::{Condvar, Mutex};

use crate::error::{Lsn, Poisoned};

/// A callback run once `durable_lsn` reaches its LSN, or the store is poisoned.
pub type DurableCallback = Box<dyn FnOnce(Result<(), Poisoned>) + Send + 'static>;

enum Waiter {
    Task(Arc<AtomicWaker>),
    Callback(DurableCallback),
}

impl Waiter {
    fn fire(self, result: Result<(), Poisoned>) {
        match self {
            Waiter::Task(w) => w.wake(),
            Waiter::Callback(f) => f(result),
        }
    }
}

/// The durable position and who waits for it.
#[derive(Default)]
pub(crate) struct Durability {
    durable: AtomicU64,
    poisoned: AtomicBool,
    reason: Mutex<Option<Poisoned>>,
    waiters: Mutex<BTreeMap<Lsn, Vec<Waiter>>>,
}

impl std::fmt::Debug for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durability")
            .field("durable", &self.durable_lsn())
            .field("poisoned", &self.poison())
            .finish()
    }
}

impl Durability {
    pub(crate) fn new(durable: Lsn) -> Self {
        let d = Self::default();
        d.durable.store(durable, Ordering::Release);
        d
    }

    pub(crate) fn durable_lsn(&self) -> Lsn {
        self.durable.load(Ordering::Acquire)
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    pub(crate) fn poison(&self) -> Option<Poisoned> {
        if !self.is_poisoned() {
            return None;
        }
        self.reason.lock().clone()
    }

    /// `Some` once `lsn` is durable (Ok) or can never be (the poison).
    pub(crate) fn check(&self, lsn: Lsn) -> Option<Result<(), Poisoned>> {
        if self.durable_lsn() >= lsn {
            return Some(Ok(()));
        }
        self.poison().map(Err)
    }

    fn register(&self, lsn: Lsn, waiter: Waiter) {
        let mut waiters = self.waiters.lock();
        if let Some(result) = self.check(lsn) {
            drop(waiters);
            waiter.fire(result);
            return;
        }
        waiters.entry(lsn).or_default().push(waiter);
    }

    /// Runs `f` once `lsn` is durable or the store is poisoned; right away if either holds.
    /// `f` runs on the writer thread (or the caller's): it must be quick and must not block.
    pub(crate) fn on_durable(&self, lsn: Lsn, f: DurableCallback) {
        self.register(lsn, Waiter::Callback(f));
    }

    /// Blocks until `lsn` is durable or the store is poisoned, for at most `timeout`
    /// (`None`: for ever). `None` when the time ran out.
    pub(crate) fn wait(&self, lsn: Lsn, timeout: Option<Duration>) -> Option<Result<(), Poisoned>> {
        if let Some(r) = self.check(lsn) {
            return Some(r);
        }
        let pair = Arc::new((Mutex::new(None), Condvar::new()));
        let signal = pair.clone();
        self.on_durable(
            lsn,
            Box::new(move |r| {
                *signal.0.lock() = Some(r);
                signal.1.notify_all();
            }),
        );
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut slot = pair.0.lock();
        loop {
            if let Some(r) = slot.take() {
                return Some(r);
            }
            match deadline {
                None => pair.1.wait(&mut slot),
                Some(d) => {
                    if pair.1.wait_until(&mut slot, d).timed_out() {
                        return slot.take();
                    }
                }
            }
        }
    }

    /// The writer: everything up to `lsn` is durable.
    pub(crate) fn publish(&self, lsn: Lsn) {
        self.durable.fetch_max(lsn, Ordering::AcqRel);
        let ready = {
            let mut waiters = self.waiters.lock();
            let later = waiters.split_off(&(lsn + 1));
            std::mem::replace(&mut *waiters, later)
        };
        for waiter in ready.into_values().flatten() {
            waiter.fire(Ok(()));
        }
    }

    /// Poisons the store (the first reason wins) and fails every waiter.
    pub(crate) fn set_poison(&self, reason: String) -> Poisoned {
        let poisoned = {
            let mut slot = self.reason.lock();
            let p = slot.get_or_insert_with(|| Poisoned { reason: reason.into() }).clone();
            self.poisoned.store(true, Ordering::Release);
            p
        };
        let all = std::mem::take(&mut *self.waiters.lock());
        for waiter in all.into_values().flatten() {
            waiter.fire(Err(poisoned.clone()));
        }
        poisoned
    }
}

/// A future that resolves once a record is durable (`Ok`) or the store is poisoned
/// (`Err`). It blocks no thread: the writer wakes the task. Returned by
/// [`Store::durable`](crate::Store::durable).
#[must_use = "a future does nothing unless polled"]
pub struct Durable {
    pub(crate) state: Arc<Durability>,
    pub(crate) lsn: Lsn,
    pub(crate) slot: Option<Arc<AtomicWaker>>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable").field("lsn", &self.lsn).finish()
    }
}

impl Future for Durable {
    type Output = Result<(), Poisoned>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(r) = self.state.check(self.lsn) {
            return Poll::Ready(r);
        }
        match &self.slot {
            Some(slot) => slot.register(cx.waker()),
            None => {
                let slot = Arc::new(AtomicWaker::new());
                slot.register(cx.waker());
                self.slot = Some(slot.clone());
                self.state.register(self.lsn, Waiter::Task(slot));
            }
        }
        match self.state.check(self.lsn) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn callbacks_futures_and_poison() {
        let d = Arc::new(Durability::new(0));
        let fired = Arc::new(Mutex::new(Vec::new()));
        for lsn in [3, 1, 2] {
            let f = fired.clone();
            d.on_durable(lsn, Box::new(move |r| f.lock().push((lsn, r.is_ok()))));
        }
        d.publish(2);
        assert_eq!(*fired.lock(), vec![(1, true), (2, true)]);

        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut fut = Durable {
            state: d.clone(),
            lsn: 4,
            slot: None,
        };
        assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
        d.publish(4);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(Pin::new(&mut fut).poll(&mut cx), Poll::Ready(Ok(())));

        assert_eq!(fired.lock().last(), Some(&(3, true)));
        let f = fired.clone();
        d.on_durable(5, Box::new(move |r| f.lock().push((5, r.is_ok()))));
        let p = d.set_poison("fdatasync failed".into());
        assert_eq!(fired.lock().last(), Some(&(5, false)));
        assert_eq!(d.wait(2, None), Some(Ok(())), "durable before the poison stays durable");
        assert_eq!(d.wait(9, None), Some(Err(p.clone())));
        assert_eq!(d.set_poison("second".into()), p, "the first reason wins");
        assert_eq!(d.wait(9, Some(Duration::from_millis(1))), Some(Err(p)));
    }

    #[test]
    fn wait_times_out() {
        let d = Durability::new(0);
        assert_eq!(d.wait(1, Some(Duration::from_millis(10))), None);
    }
}
