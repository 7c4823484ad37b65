//! How a [`ConnId`] is laid out: the worker (engine) that owns the connection in the high bits,
//! a number local to that worker below them. Both runtimes build ids with [`conn_id`], and a
//! command for a connection is routed to the worker [`worker_of`] names, so the layout lives here
//! once instead of in each runtime.

use super::ConnId;

/// Bits below the worker index: the number local to one worker.
const WORKER_SHIFT: u32 = 40;

/// The id of connection `local` of worker `worker`. `local` must fit in 40 bits (a runtime's
/// slab index or counter does; higher bits are masked off).
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
}
