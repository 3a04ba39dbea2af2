//! [`EngineHandle`]: the engine core on its own thread, fed by a channel.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::core::Limits;
use super::{EngineCore, EngineStats, EventSink, Request, RequestId, SubmitError};
use crate::RequestLatency;

enum Command {
    Submit(RequestId, Box<Request>, EventSink),
    Abort(RequestId),
}

/// A running engine. Requests are checked on the caller's thread (so a bad request is refused
/// at once), then queued for the engine thread. Dropping the handle stops the thread after the
/// step in progress; requests still queued are dropped (their sinks with them).
pub struct EngineHandle {
    tx: Mutex<Option<Sender<Command>>>,
    stats: Arc<Mutex<EngineStats>>,
    latency: Arc<Mutex<RequestLatency>>,
    limits: Limits,
    max_queue: usize,
    next_id: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl EngineHandle {
    /// Starts the engine thread over `core`.
    pub fn spawn(core: EngineCore) -> std::io::Result<EngineHandle> {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(Mutex::new(core.stats()));
        let limits = core.limits();
        let latency = core.latency();
        let max_queue = core.config().max_queue;
        let shared = stats.clone();
        let thread = std::thread::Builder::new().name("ferrite-engine".into()).spawn(move || run(core, rx, shared))?;
        Ok(EngineHandle {
            tx: Mutex::new(Some(tx)),
            stats,
            latency,
            limits,
            max_queue,
            next_id: AtomicU64::new(1),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Checks and queues a request.
    pub fn submit(&self, req: Request, sink: EventSink) -> Result<RequestId, SubmitError> {
        self.limits.check(&req)?;
        let waiting = self.stats().waiting;
        if waiting >= self.max_queue {
            return Err(SubmitError::Overloaded(waiting));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.send(Command::Submit(id, Box::new(req), sink))?;
        Ok(id)
    }

    /// Cancels a request and frees its blocks (no further events are sent).
    pub fn abort(&self, id: RequestId) {
        let _ = self.send(Command::Abort(id));
    }

    /// The engine's counters as of its last step.
    pub fn stats(&self) -> EngineStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// The latency histograms of the requests finished so far.
    pub fn latency(&self) -> RequestLatency {
        self.latency.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn send(&self, cmd: Command) -> Result<(), SubmitError> {
        let tx = self.tx.lock().map_err(|_| SubmitError::Stopped)?;
        tx.as_ref().ok_or(SubmitError::Stopped)?.send(cmd).map_err(|_| SubmitError::Stopped)
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

fn run(mut core: EngineCore, rx: Receiver<Command>, stats: Arc<Mutex<EngineStats>>) {
    let mut pending = None;
    loop {
        // Block only when there is nothing to compute.
        let first = if let Some(cmd) = pending.take() {
            Some(cmd)
        } else if core.has_work() {
            match rx.try_recv() {
                Ok(c) => Some(c),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            }
        } else {
            match rx.recv() {
                Ok(c) => Some(c),
                Err(_) => return,
            }
        };
        let mut next = first;
        while let Some(cmd) = next {
            match cmd {
                // Checked on the caller's thread already; a refusal here drops the sink, which
                // its receiver sees as a closed channel.
                Command::Submit(id, req, sink) => drop(core.submit(id, *req, sink)),
                Command::Abort(id) => core.abort(id),
            }
            next = rx.try_recv().ok();
        }
        if core.has_work() {
            // A panic inside a step must not take every client down with a hung request.
            match catch_unwind(AssertUnwindSafe(|| core.step())) {
                Ok(true) => {}
                // Work that cannot be scheduled yet: wait for a command rather than spin.
                Ok(false) => {
                    if let Ok(cmd) = rx.recv_timeout(Duration::from_millis(5)) {
                        pending = Some(cmd);
                    }
                }
                Err(_) => core.fail_all("internal error: the engine step panicked"),
            }
        }
        if let Ok(mut s) = stats.lock() {
            *s = core.stats();
        }
    }
}
