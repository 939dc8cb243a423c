//! Connection workers: `server.workers` OS threads (one per core by default), each
//! running a single-threaded tokio runtime — thread per core, as nginx runs a worker
//! process per core.
//!
//! The acceptor hands each new connection to the next worker in turn. From then on the
//! connection, its TLS session, its requests and the pooled upstream connections they
//! use (each worker has its own pool, see [`crate::gateway::forward::Upstreams`]) all
//! live on that one thread: no task migrates between cores, and answering a request
//! wakes no other thread. On a shared work-stealing runtime, a request and the upstream
//! connection task it talks to often sat on different cores, and every exchange
//! between them cost a futex wake-up.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::runtime::{Builder, Handle};
use tokio::sync::watch;

/// The running workers. Dropping this stops them: connections still open are closed.
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stop: watch::Sender<bool>,
}

impl Workers {
    /// Starts `count` workers (at least one).
    pub fn start(count: usize) -> io::Result<Workers> {
        let (stop, stopped) = watch::channel(false);
        let mut handles = Vec::with_capacity(count.max(1));
        for i in 0..count.max(1) {
            let runtime = Builder::new_current_thread().enable_all().build()?;
            handles.push(runtime.handle().clone());
            let mut stopped = stopped.clone();
            std::thread::Builder::new()
                .name(format!("authgate-worker-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    });
                    // Connections still open are dropped with their tasks; blocking
                    // work (a password check) gets a moment to finish.
                    runtime.shutdown_timeout(Duration::from_secs(1));
                })?;
        }
        Ok(Workers {
            handles,
            next: AtomicUsize::new(0),
            stop,
        })
    }

    /// How many workers run.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Always false: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Runs the future `task(worker)` makes on the next worker, round robin; `worker`
    /// is that worker's index.
    pub fn spawn<F, Fut>(&self, task: F)
    where
        F: FnOnce(usize) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        self.handles[i].spawn(task(i));
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The default `server.workers`: the CPUs this process may run on.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_round_robin_on_their_own_threads() {
        let workers = Workers::start(2).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for _ in 0..4 {
            let tx = tx.clone();
            workers.spawn(move |i| async move {
                let name = std::thread::current().name().unwrap_or("").to_owned();
                tx.send((i, name)).unwrap();
            });
        }
        let mut seen = Vec::new();
        for _ in 0..4 {
            seen.push(rx.recv().await.unwrap());
        }
        seen.sort();
        assert_eq!(
            seen,
            vec![
                (0, "authgate-worker-0".to_owned()),
                (0, "authgate-worker-0".to_owned()),
                (1, "authgate-worker-1".to_owned()),
                (1, "authgate-worker-1".to_owned()),
            ]
        );
    }

    #[tokio::test]
    async fn dropping_the_workers_cancels_their_tasks() {
        let workers = Workers::start(1).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        workers.spawn(move |_| async move {
            // Holds `tx` until cancelled.
            std::future::pending::<()>().await;
            drop(tx);
        });
        drop(workers);
        let closed = tokio::time::timeout(Duration::from_secs(5), rx).await;
        assert!(matches!(closed, Ok(Err(_))), "the task was not cancelled");
    }
}
