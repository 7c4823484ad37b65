//! The statistics snapshots of every worker, shared for the HTTP API and `/metrics`.
//!
//! Each worker stores a fresh [`Engine::stats`] snapshot in its own slot of a [`StatsBoard`]
//! about once a second (from its loop, never per packet), and answers an
//! `Output::Gather` with its own snapshot taken there and then plus the other workers'
//! latest ones, so a stream's players are counted whichever worker they sit on.

use std::sync::{Arc, Mutex, MutexGuard};

use rill_core::engine::{ConnId, Engine, EngineStats, Query};

/// How often (ms) a worker refreshes its snapshot.
pub const REFRESH_MS: u64 = 1_000;

/// One snapshot slot per worker, shared by all of them.
#[derive(Clone, Debug)]
pub struct StatsBoard {
    slots: Arc<Mutex<Vec<Option<EngineStats>>>>,
}

impl StatsBoard {
    /// A board for `workers` workers, all slots empty.
    pub fn new(workers: usize) -> StatsBoard {
        StatsBoard {
            slots: Arc::new(Mutex::new(vec![None; workers])),
        }
    }

    fn slots(&self) -> MutexGuard<'_, Vec<Option<EngineStats>>> {
        // A worker that panicked while holding the lock left whole snapshots behind: go on.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores worker `index`'s snapshot.
    pub fn publish(&self, index: usize, stats: EngineStats) {
        if let Some(slot) = self.slots().get_mut(index) {
            *slot = Some(stats);
        }
    }

    /// Stores worker `index`'s snapshot and returns every worker's latest one.
    pub fn gather(&self, index: usize, own: EngineStats) -> Vec<EngineStats> {
        let mut slots = self.slots();
        if let Some(slot) = slots.get_mut(index) {
            *slot = Some(own);
        }
        slots.iter().flatten().cloned().collect()
    }
}

/// A worker's side of the board: its slot and when it is next refreshed.
#[derive(Debug)]
pub struct WorkerStats {
    board: StatsBoard,
    index: usize,
    next_ms: u64,
}

impl WorkerStats {
    /// Worker `index`'s place on `board`; the first refresh is due at once.
    pub fn new(board: StatsBoard, index: usize) -> WorkerStats {
        WorkerStats {
            board,
            index,
            next_ms: 0,
        }
    }

    /// When (engine ms) [`WorkerStats::tick`] next has work: a loop that sleeps wakes by then.
    pub fn next_due(&self) -> u64 {
        self.next_ms
    }

    /// Refreshes this worker's snapshot if [`REFRESH_MS`] passed since the last one.
    pub fn tick(&mut self, engine: &mut Engine, now_ms: u64) {
        if now_ms >= self.next_ms {
            self.next_ms = now_ms.saturating_add(REFRESH_MS);
            self.board.publish(self.index, engine.stats(now_ms));
        }
    }

    /// Answers the engine's `Output::Gather` from a fresh snapshot of this worker and the
    /// latest of the others (the engine then has outputs to drain).
    pub fn answer(&mut self, engine: &mut Engine, conn: ConnId, query: &Query, now_ms: u64) {
        self.next_ms = now_ms.saturating_add(REFRESH_MS);
        let all = self.board.gather(self.index, engine.stats(now_ms));
        engine.answer(conn, query, &all, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_sees_its_own_fresh_snapshot_and_the_others_latest() {
        let board = StatsBoard::new(3);
        let other = EngineStats {
            connections: 7,
            ..EngineStats::default()
        };
        board.publish(1, other.clone());
        let own = EngineStats {
            connections: 1,
            ..EngineStats::default()
        };
        let all = board.gather(0, own.clone());
        assert_eq!(all, vec![own, other], "the empty third slot is left out");
        // An index past the board is ignored rather than a panic.
        board.publish(5, EngineStats::default());
        assert_eq!(board.gather(9, EngineStats::default()).len(), 2);
    }

    #[test]
    fn tick_refreshes_once_per_interval() {
        let board = StatsBoard::new(1);
        let mut engine = Engine::new(Default::default(), 1);
        let mut w = WorkerStats::new(board.clone(), 0);
        w.tick(&mut engine, 0);
        assert_eq!(w.next_due(), REFRESH_MS);
        assert_eq!(board.gather(0, engine.stats(1)).len(), 1);
        w.tick(&mut engine, REFRESH_MS - 1);
        assert_eq!(w.next_due(), REFRESH_MS, "not due yet");
        w.tick(&mut engine, REFRESH_MS);
        assert_eq!(w.next_due(), 2 * REFRESH_MS);
    }
}
