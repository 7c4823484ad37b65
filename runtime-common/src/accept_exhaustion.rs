//! Accepting while the process is out of file descriptors (`EMFILE`, `ENFILE`, ...). A failed
//! accept leaves the connection in the listener's queue, and an edge-triggered poller says
//! nothing more about connections already queued: a listener that only waits for its next
//! readiness event stalls until yet another client connects. [`AcceptExhaustion`] says when to
//! try again (a short backoff, while the queue may be non-empty) and, once the shortage has
//! lasted [`SHED_AFTER`], lets the queue be shed: one descriptor kept in reserve is freed to
//! accept a waiting connection and close it at once, so clients are refused promptly rather than
//! left hanging. Warnings are rate-limited: one when the shortage starts, then at most one per
//! [`WARN_EVERY`] with counts, and one when accepts work again.

use std::fs::File;
use std::io;
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// First retry after a failed accept; doubled on each failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(10);
/// Longest wait between two tries while descriptors are short.
pub const MAX_BACKOFF: Duration = Duration::from_millis(250);
/// How long descriptors must have been short before queued connections are shed (accepted with
/// the reserve descriptor and closed at once) instead of being left waiting.
pub const SHED_AFTER: Duration = Duration::from_secs(2);
/// At most one warning per this while the shortage goes on.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// Whether an accept error means the process or the system is out of descriptors or memory for
/// a new socket: the connection stays queued and the accept must be tried again later.
pub fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if [
            rustix::io::Errno::MFILE.raw_os_error(),
            rustix::io::Errno::NFILE.raw_os_error(),
            rustix::io::Errno::NOBUFS.raw_os_error(),
            rustix::io::Errno::NOMEM.raw_os_error(),
        ]
        .contains(&code)
    )
}

/// What to do after an accept failed for lack of descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExhaustion {
    /// Try accepting again at this time (the queue may hold connections).
    RetryAt(Instant),
    /// The shortage has lasted: shed the queue now with [`AcceptExhaustion::shed`], then retry
    /// at this time.
    Shed(Instant),
}

/// The descriptor-shortage state of one acceptor (a worker, or a listener's accept task).
#[derive(Debug)]
pub struct AcceptExhaustion {
    /// Held open so that one descriptor can be freed to shed a queued connection.
    reserve: Option<File>,
    /// When the current shortage started.
    since: Option<Instant>,
    backoff: Duration,
    retry_at: Option<Instant>,
    /// When the last warning was logged (kept across short periods, so a shortage that comes
    /// and goes still logs at most one warning per [`WARN_EVERY`]).
    last_warning: Option<Instant>,
    /// A warning was logged during the current short period: its end is logged too.
    warned: bool,
    /// Failed accepts and shed connections since the last warning.
    failed: u64,
    shed: u64,
}

impl Default for AcceptExhaustion {
    fn default() -> Self {
        AcceptExhaustion::new()
    }
}

impl AcceptExhaustion {
    /// Takes the reserve descriptor (`/dev/null`); without one (it could not be opened) the
    /// queue is never shed, only retried.
    pub fn new() -> AcceptExhaustion {
        AcceptExhaustion {
            reserve: open_reserve(),
            since: None,
            backoff: FIRST_BACKOFF,
            retry_at: None,
            last_warning: None,
            warned: false,
            failed: 0,
            shed: 0,
        }
    }

    /// When the next try is due, while descriptors are short.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Whether descriptors are short now (an accept failed and none has succeeded since).
    pub fn is_short(&self) -> bool {
        self.since.is_some()
    }

    /// An accept on `listener` failed with `error` (one [`is_exhaustion`] accepts) at `now`:
    /// warns when due and says when to try again, and whether to shed the queue first.
    pub fn failed(&mut self, listener: &str, error: &io::Error, now: Instant) -> AfterExhaustion {
        let since = *self.since.get_or_insert(now);
        self.failed += 1;
        let at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.retry_at = Some(at);
        if !self
            .last_warning
            .is_some_and(|t| now.saturating_duration_since(t) < WARN_EVERY)
        {
            self.last_warning = Some(now);
            self.warned = true;
            warn!(
                listener,
                "accept failed: {error}; retrying every {} ms at most, queued connections shed \
                 after {} s short ({} failed accepts and {} connections shed since the previous \
                 such line)",
                MAX_BACKOFF.as_millis(),
                SHED_AFTER.as_secs(),
                self.failed,
                self.shed,
            );
            self.failed = 0;
            self.shed = 0;
        }
        if now.saturating_duration_since(since) >= SHED_AFTER && self.reserve.is_some() {
            AfterExhaustion::Shed(at)
        } else {
            AfterExhaustion::RetryAt(at)
        }
    }

    /// Frees the reserve descriptor, runs `accept_and_close` (which accepts one queued
    /// connection and closes it) and takes the reserve again. False when there is no reserve or
    /// nothing was accepted.
    pub fn shed(&mut self, accept_and_close: impl FnOnce() -> io::Result<()>) -> bool {
        if self.reserve.take().is_none() {
            return false;
        }
        let shed = accept_and_close().is_ok();
        self.reserve = open_reserve();
        if shed {
            self.shed += 1;
        }
        shed
    }

    /// An accept succeeded: the shortage, if any, is over.
    pub fn accepted(&mut self, now: Instant) {
        let Some(since) = self.since.take() else {
            return;
        };
        if std::mem::take(&mut self.warned) {
            info!(
                "accepting connections again after {:.1} s short of descriptors",
                now.saturating_duration_since(since).as_secs_f64(),
            );
        }
        self.backoff = FIRST_BACKOFF;
        self.retry_at = None;
        if self.reserve.is_none() {
            self.reserve = open_reserve();
        }
    }
}

fn open_reserve() -> Option<File> {
    File::open("/dev/null").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(rustix::io::Errno::MFILE.raw_os_error())
    }

    #[test]
    fn descriptor_errors_are_exhaustion_others_are_not() {
        assert!(is_exhaustion(&emfile()));
        assert!(is_exhaustion(&io::Error::from_raw_os_error(
            rustix::io::Errno::NFILE.raw_os_error()
        )));
        assert!(!is_exhaustion(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        assert!(!is_exhaustion(&io::Error::from(io::ErrorKind::WouldBlock)));
    }

    #[test]
    fn retries_back_off_then_shed_after_the_shortage_lasted() {
        let mut ex = AcceptExhaustion::new();
        let t0 = Instant::now();
        assert_eq!(
            ex.failed("rtmp", &emfile(), t0),
            AfterExhaustion::RetryAt(t0 + FIRST_BACKOFF)
        );
        assert_eq!(
            ex.failed("rtmp", &emfile(), t0),
            AfterExhaustion::RetryAt(t0 + FIRST_BACKOFF * 2)
        );
        for _ in 0..20 {
            ex.failed("rtmp", &emfile(), t0);
        }
        assert_eq!(ex.retry_at(), Some(t0 + MAX_BACKOFF));
        let later = t0 + SHED_AFTER;
        assert_eq!(
            ex.failed("rtmp", &emfile(), later),
            AfterExhaustion::Shed(later + MAX_BACKOFF)
        );
        assert!(ex.shed(|| Ok(())));
        assert!(ex.reserve.is_some(), "the reserve is taken again");
        assert_eq!(ex.last_warning, Some(t0), "one warning per WARN_EVERY");
        ex.accepted(later);
        assert!(!ex.is_short());
        assert_eq!(ex.retry_at(), None);
        assert_eq!(
            ex.failed("rtmp", &emfile(), later),
            AfterExhaustion::RetryAt(later + FIRST_BACKOFF)
        );
        assert_eq!(
            ex.last_warning,
            Some(t0),
            "a shortage that comes and goes warns once"
        );
    }

    #[test]
    fn shedding_frees_the_reserve_for_the_accept() {
        let mut ex = AcceptExhaustion::new();
        assert!(ex.shed(|| Ok(())));
        assert_eq!(ex.shed, 1);
        assert!(!ex.shed(|| Err(emfile())));
        assert!(ex.reserve.is_some());
        ex.reserve = None;
        assert!(!ex.shed(|| Ok(())), "no reserve, no shedding");
    }
}
