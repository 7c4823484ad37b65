//! How a [`ConnId`] is laid out: the worker (engine) that owns the connection in the high bits,
//! a number local to that worker below them. Both runtimes build ids with [`conn_id`], and a
//! command for a connection is routed to the worker [`worker_of`] names, so the layout lives here
//! once instead of in each runtime.
//!
//! Local numbers below [`OUTBOUND_BIT`] belong to the runtime (a slab index, a counter: what it
//! accepted). Local numbers with that bit set are connections the engine asked for
//! (`Output::Connect`), numbered by core with [`OutboundIds`], so the two never collide and a
//! runtime tells them apart with [`is_outbound`].

use super::ConnId;

/// Bits below the worker index: the number local to one worker.
const WORKER_SHIFT: u32 = 40;

/// Set in the local number of connections the engine opens (bit 39 of 40).
pub const OUTBOUND_BIT: u64 = 1 << (WORKER_SHIFT - 1);

/// The id of connection `local` of worker `worker`. A runtime's `local` must stay below
/// [`OUTBOUND_BIT`] (a slab index or a counter does: 2^39 connections); higher bits are masked
/// off.
pub fn conn_id(worker: usize, local: u64) -> ConnId {
    ((worker as u64) << WORKER_SHIFT) | (local & local_mask())
}

/// The worker that owns `conn`.
pub fn worker_of(conn: ConnId) -> usize {
    (conn >> WORKER_SHIFT) as usize
}

/// `conn`'s number within its worker (what [`conn_id`] was given).
pub fn local_of(conn: ConnId) -> u64 {
    conn & local_mask()
}

const fn local_mask() -> u64 {
    (1 << WORKER_SHIFT) - 1
}

/// Whether `conn` is a connection the engine asked for rather than one a runtime accepted.
pub fn is_outbound(conn: ConnId) -> bool {
    conn & OUTBOUND_BIT != 0
}

/// Numbers the outbound connections of one worker's engine: ids with [`OUTBOUND_BIT`], never
/// reused before 2^39 of them were handed out.
#[derive(Clone, Debug)]
pub struct OutboundIds {
    worker: usize,
    next: u64,
}

impl OutboundIds {
    /// The allocator of worker `worker`.
    pub fn new(worker: usize) -> Self {
        OutboundIds { worker, next: 0 }
    }

    /// A fresh id.
    pub fn next_id(&mut self) -> ConnId {
        let n = self.next;
        self.next = (n + 1) & (OUTBOUND_BIT - 1);
        conn_id(self.worker, OUTBOUND_BIT | n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_workers_do_not_collide() {
        let a = conn_id(0, 7);
        let b = conn_id(3, 7);
        assert_ne!(a, b);
        assert_eq!((worker_of(b), local_of(b)), (3, 7));
        assert_eq!((worker_of(a), local_of(a)), (0, 7));
        assert_eq!(local_of(conn_id(1, u64::MAX)), (1 << 40) - 1);
    }

    #[test]
    fn outbound_ids_are_marked_per_worker_and_never_meet_accepted_ones() {
        let mut ids = OutboundIds::new(2);
        let (a, b) = (ids.next_id(), ids.next_id());
        assert_ne!(a, b);
        for id in [a, b] {
            assert!(is_outbound(id));
            assert_eq!(worker_of(id), 2);
        }
        assert_eq!(local_of(a), OUTBOUND_BIT);
        assert!(
            !is_outbound(conn_id(2, OUTBOUND_BIT - 1)),
            "largest accepted id"
        );
        let mut wrap = OutboundIds {
            worker: 0,
            next: OUTBOUND_BIT - 1,
        };
        assert_eq!(local_of(wrap.next_id()), (1 << 40) - 1);
        assert_eq!(
            local_of(wrap.next_id()),
            OUTBOUND_BIT,
            "wraps within the marker"
        );
    }
}
