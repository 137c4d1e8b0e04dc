//! [`ConnectCheck`]: one CONNECT waiting for its verdict. Both adapters hold one while
//! they authenticate a client; it owns the pending verdict, the delay the verdict asks
//! for (repeated failures from the address slow the answer) and the connect deadline.

use std::time::Instant;

use crate::gate::{PendingVerdict, Verdict};

/// A CONNECT being checked by the [`crate::Gatekeeper`] (see [`crate::Gatekeeper::begin_check`]).
#[derive(Debug)]
pub struct ConnectCheck {
    pending: PendingVerdict,
    /// The verdict, once taken from `pending`, kept until its delay has passed.
    verdict: Option<Verdict>,
    /// When the check started: the verdict's delay counts from here.
    started: Instant,
    /// When to give up waiting for a verdict (`None`: never).
    deadline: Option<Instant>,
}

/// Where a [`ConnectCheck`] stands.
#[derive(Debug)]
pub enum CheckState {
    /// No answer yet: call again at [`ConnectCheck::timeout`] or when the wakeup rings.
    Waiting,
    /// The deadline passed with no verdict in.
    TimedOut,
    /// The verdict, to be answered now (its delay is over); the check is spent.
    Ready(Verdict),
}

impl ConnectCheck {
    /// A check of `pending` that started at `started` and gives up at `deadline`.
    pub fn new(pending: PendingVerdict, started: Instant, deadline: Option<Instant>) -> Self {
        Self {
            pending,
            verdict: None,
            started,
            deadline,
        }
    }

    /// When the connection wants to run next: the answer's time once the verdict is in,
    /// the deadline before.
    pub fn timeout(&self) -> Option<Instant> {
        match &self.verdict {
            Some(v) => Some(self.started.checked_add(v.delay).unwrap_or(self.started)),
            None => self.deadline,
        }
    }

    /// Take the verdict if it came in, and say whether it may be answered at `now`.
    pub fn poll(&mut self, now: Instant) -> CheckState {
        if self.verdict.is_none() {
            self.verdict = self.pending.take();
        }
        if self.verdict.is_none() {
            return if self.timed_out(now) {
                CheckState::TimedOut
            } else {
                CheckState::Waiting
            };
        }
        if self.timeout().is_some_and(|at| now < at) {
            return CheckState::Waiting;
        }
        self.verdict.take().map_or(CheckState::Waiting, CheckState::Ready)
    }

    /// Whether the deadline passed with no verdict taken (the pending one is not looked at).
    pub fn timed_out(&self, now: Instant) -> bool {
        self.verdict.is_none() && self.deadline.is_some_and(|d| now >= d)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::identity::Identity;

    fn verdict(delay: Duration) -> Verdict {
        Verdict {
            result: Ok(Identity::anonymous("c")),
            delay,
        }
    }

    #[test]
    fn a_verdict_is_answered_once_its_delay_is_over() {
        let t0 = Instant::now();
        let pending = PendingVerdict::default();
        let mut check = ConnectCheck::new(pending.clone(), t0, Some(t0 + Duration::from_secs(10)));
        assert!(matches!(check.poll(t0), CheckState::Waiting));
        assert_eq!(
            check.timeout(),
            Some(t0 + Duration::from_secs(10)),
            "the deadline while nothing is in"
        );
        pending.set(verdict(Duration::from_secs(2)));
        assert!(matches!(check.poll(t0 + Duration::from_secs(1)), CheckState::Waiting));
        assert_eq!(check.timeout(), Some(t0 + Duration::from_secs(2)), "the delay once it is in");
        assert!(!check.timed_out(t0 + Duration::from_secs(20)), "a verdict in never times out");
        assert!(matches!(check.poll(t0 + Duration::from_secs(2)), CheckState::Ready(_)));
    }

    #[test]
    fn no_verdict_by_the_deadline_is_a_timeout() {
        let t0 = Instant::now();
        let mut check = ConnectCheck::new(PendingVerdict::default(), t0, Some(t0 + Duration::from_secs(1)));
        assert!(!check.timed_out(t0));
        assert!(matches!(check.poll(t0 + Duration::from_secs(1)), CheckState::TimedOut));
        let mut never = ConnectCheck::new(PendingVerdict::default(), t0, None);
        assert!(matches!(never.poll(t0 + Duration::from_secs(3600)), CheckState::Waiting));
    }
}
