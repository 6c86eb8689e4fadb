//! The executor every task of the server runs on: one worker thread per core.

use std::future::Future;
use std::sync::LazyLock;

use smol::{Executor, Task};

static EXECUTOR: LazyLock<Executor<'static>> = LazyLock::new(Executor::new);

/// Spawns a task on the server's executor.
pub fn spawn<T: Send + 'static>(future: impl Future<Output = T> + Send + 'static) -> Task<T> {
    EXECUTOR.spawn(future)
}

/// Runs `main` on the server's executor, with one worker thread per core.
pub fn run<T>(main: impl Future<Output = T>) -> T {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    for i in 0..workers.saturating_sub(1) {
        let _ = std::thread::Builder::new()
            .name(format!("roomcast-worker-{i}"))
            .spawn(|| async_io::block_on(EXECUTOR.run(std::future::pending::<()>())));
    }
    async_io::block_on(EXECUTOR.run(main))
}
