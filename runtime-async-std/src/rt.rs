//! The only place that names async-std: its executor. Everything else in this crate uses
//! futures-lite, async-io (sockets, timers) and async-channel, which smol re-exports; moving to
//! smol means changing these functions (`smol::spawn(f)` returns a task that must be detached).

use std::future::Future;

/// A spawned task; awaiting it gives the future's output.
pub(crate) type Task<T> = async_std::task::JoinHandle<T>;

/// Runs `future` on the executor and returns its task, to be awaited.
pub(crate) fn spawn<F>(future: F) -> Task<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    async_std::task::spawn(future)
}

/// Runs `future` on the executor; it ends on its own.
pub(crate) fn spawn_detached<F>(future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    // async-std detaches a task whose handle is dropped (smol would cancel it: call .detach()).
    drop(async_std::task::spawn(future));
}

/// Runs the blocking `f` on a thread set aside for blocking work; awaiting the task gives its
/// result (smol: `smol::unblock(f)`).
pub(crate) fn spawn_blocking<F, T>(f: F) -> Task<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    async_std::task::spawn_blocking(f)
}
