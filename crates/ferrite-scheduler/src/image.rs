//! The image worker: text-to-image jobs on their own threads, beside the chat engine and the
//! embedding worker, so that a burst of image requests cannot starve either.
//!
//! A diffusion job is long (seconds to minutes) and takes all the compute it is given, so jobs
//! are not batched together: each runs alone on one of `max_concurrent` worker threads (default
//! one). Jobs beyond that wait in a bounded queue; a job arriving while `max_queue` jobs wait is
//! refused with [`ImageSubmitError::Overloaded`], as the chat engine's `max_queue` refuses
//! generation requests.
//!
//! A job carries a [`CancelFlag`]: once set (the client went away), a waiting job is dropped
//! when a worker reaches it, and a running one stops after its current denoising step, through
//! the pipeline's per-step callback. Either way its reply gets [`ImageJobError::Cancelled`].

use std::ops::ControlFlow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ferrite_models::diffusion::{FluxPipeline, Image, ImageRequest};

/// What the worker runs: one request in, `n` images out, reporting each denoising step.
pub trait ImageModel: Send + Sync {
    /// Runs `req`. `on_step(done, total)` is called after each denoising step; when it returns
    /// `Break`, the model stops and returns an error.
    fn generate(
        &self,
        req: &ImageRequest,
        on_step: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Vec<Image>, String>;
}

impl ImageModel for FluxPipeline {
    fn generate(
        &self,
        req: &ImageRequest,
        on_step: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
    ) -> Result<Vec<Image>, String> {
        FluxPipeline::generate(self, req, on_step).map_err(|e| e.to_string())
    }
}

/// Why a job gave no images.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageJobError {
    /// Its [`CancelFlag`] was set before or while it ran.
    #[error("the image job was cancelled")]
    Cancelled,
    /// The model failed.
    #[error("{0}")]
    Failed(String),
}

/// The answer to one job.
pub type ImageResult = Result<Vec<Image>, ImageJobError>;
/// Receives a job's answer (called once, on a worker thread).
pub type ImageReply = Box<dyn FnOnce(ImageResult) + Send>;
/// Told `(done, total)` after each denoising step of a job (on a worker thread).
pub type ImageProgress = Box<dyn FnMut(usize, usize) + Send>;

/// Set it to cancel a job: a waiting job is dropped, a running one stops after its current
/// step. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    /// A flag not set.
    pub fn new() -> Self {
        CancelFlag::default()
    }

    /// Cancels the job.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`CancelFlag::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// One text-to-image job.
pub struct ImageJob {
    /// What to generate (validated by the caller).
    pub request: ImageRequest,
    /// Cancels the job when set.
    pub cancel: CancelFlag,
    /// Told each step, if given.
    pub progress: Option<ImageProgress>,
    /// Gets the images.
    pub reply: ImageReply,
}

/// Why a job was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageSubmitError {
    /// `max_queue` jobs are already waiting.
    #[error("the image queue is full: {0} requests are waiting")]
    Overloaded(usize),
    /// The worker threads have stopped.
    #[error("the image worker stopped")]
    Stopped,
}

/// Counters shared by the handle and the workers.
#[derive(Debug, Default)]
struct Counters {
    /// Jobs submitted and not yet taken by a worker.
    waiting: AtomicUsize,
    /// Jobs being run.
    running: AtomicUsize,
    /// Denoising steps done, all jobs together.
    steps: AtomicU64,
}

/// Running image workers. Dropping it stops the threads once the jobs in hand are done.
pub struct ImageHandle {
    tx: Mutex<Option<Sender<ImageJob>>>,
    counters: Arc<Counters>,
    max_queue: usize,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl ImageHandle {
    /// Starts `max_concurrent` worker threads (at least one) over `model`, with at most
    /// `max_queue` jobs waiting.
    pub fn spawn(model: Arc<dyn ImageModel>, max_concurrent: usize, max_queue: usize) -> std::io::Result<ImageHandle> {
        let (tx, rx) = mpsc::channel::<ImageJob>();
        let rx = Arc::new(Mutex::new(rx));
        let counters = Arc::new(Counters::default());
        let mut threads = Vec::new();
        for i in 0..max_concurrent.max(1) {
            let (model, rx, counters) = (model.clone(), rx.clone(), counters.clone());
            let t = std::thread::Builder::new()
                .name(format!("ferrite-image-{i}"))
                .spawn(move || run(model.as_ref(), &rx, &counters))?;
            threads.push(t);
        }
        Ok(ImageHandle { tx: Mutex::new(Some(tx)), counters, max_queue, threads: Mutex::new(threads) })
    }

    /// Jobs submitted and not yet taken by a worker.
    pub fn waiting(&self) -> usize {
        self.counters.waiting.load(Ordering::Acquire)
    }

    /// Jobs being run now.
    pub fn running(&self) -> usize {
        self.counters.running.load(Ordering::Acquire)
    }

    /// Denoising steps done so far, all jobs together.
    pub fn steps(&self) -> u64 {
        self.counters.steps.load(Ordering::Acquire)
    }

    /// Queues `job`. Fails when `max_queue` jobs are waiting or the workers have stopped (the
    /// job's reply is then dropped uncalled).
    pub fn submit(&self, job: ImageJob) -> Result<(), ImageSubmitError> {
        let tx = self.tx.lock().map_err(|_| ImageSubmitError::Stopped)?;
        let tx = tx.as_ref().ok_or(ImageSubmitError::Stopped)?;
        let before = self.counters.waiting.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_queue {
            self.counters.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(ImageSubmitError::Overloaded(before));
        }
        tx.send(job).map_err(|_| {
            self.counters.waiting.fetch_sub(1, Ordering::AcqRel);
            ImageSubmitError::Stopped
        })
    }
}

impl Drop for ImageHandle {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        let threads = self.threads.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        for t in threads {
            let _ = t.join();
        }
    }
}

/// How long the image workers stay idle before the op-output buffers that jobs kept are handed
/// back to the system: back-to-back jobs reuse them (a fresh buffer costs a page fault and a
/// kernel zero fill per 4 KiB page, about a tenth of a 256x256 image), an idle server gives
/// them back.
const IDLE_RELEASE: Duration = Duration::from_secs(3);

/// One worker: takes the next job, runs it, answers it, until the channel closes.
fn run(model: &dyn ImageModel, rx: &Mutex<Receiver<ImageJob>>, counters: &Counters) {
    let mut kept = false;
    loop {
        // The lock is held only while waiting for the next job, so idle workers queue on it.
        let job = match rx.lock() {
            Ok(rx) if kept => rx.recv_timeout(IDLE_RELEASE),
            Ok(rx) => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Err(_) => return,
        };
        let job = match job {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                // An image job keeps hundreds of MB of buffers; chat and embeddings need far
                // less. Released only while no job runs.
                if counters.running.load(Ordering::Acquire) == 0 {
                    ferrite_tensor::cpu::buffers::release();
                }
                kept = false;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                if kept && counters.running.load(Ordering::Acquire) == 0 {
                    ferrite_tensor::cpu::buffers::release();
                }
                return;
            }
        };
        counters.waiting.fetch_sub(1, Ordering::AcqRel);
        counters.running.fetch_add(1, Ordering::AcqRel);
        let ImageJob { request, cancel, mut progress, reply } = job;
        let answer = if cancel.is_cancelled() {
            Err(ImageJobError::Cancelled)
        } else {
            run_job(model, &request, &cancel, progress.as_mut(), &counters.steps)
        };
        counters.running.fetch_sub(1, Ordering::AcqRel);
        kept = true;
        reply(answer);
    }
}

/// Runs one job, stopping at the first step after `cancel` is set.
fn run_job(
    model: &dyn ImageModel,
    request: &ImageRequest,
    cancel: &CancelFlag,
    mut progress: Option<&mut ImageProgress>,
    steps: &AtomicU64,
) -> ImageResult {
    let mut on_step = |done: usize, total: usize| {
        steps.fetch_add(1, Ordering::AcqRel);
        if let Some(p) = progress.as_mut() {
            p(done, total);
        }
        if cancel.is_cancelled() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    let result = catch_unwind(AssertUnwindSafe(|| model.generate(request, &mut on_step)))
        .unwrap_or_else(|_| Err("internal error: the image pipeline panicked".into()));
    match result {
        _ if cancel.is_cancelled() => Err(ImageJobError::Cancelled),
        Ok(images) => Ok(images),
        Err(e) => Err(ImageJobError::Failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const WAIT: Duration = Duration::from_secs(10);

    fn request(n: usize, steps: usize) -> ImageRequest {
        ImageRequest {
            prompt: "a red cube".into(),
            negative_prompt: None,
            width: 16,
            height: 16,
            n,
            steps: Some(steps),
            guidance_scale: None,
            seed: Some(1),
        }
    }

    /// A model whose every step waits for a token from `steps` (so a test drives it step by
    /// step), records how many jobs run at once, and makes `n` grey images of the step count.
    struct Stepper {
        steps: Mutex<Receiver<()>>,
        started: Mutex<Sender<String>>,
        active: AtomicUsize,
        peak: AtomicUsize,
        steps_run: AtomicUsize,
    }

    impl Stepper {
        fn new() -> (Arc<Stepper>, Sender<()>, Receiver<String>) {
            let (step_tx, step_rx) = mpsc::channel();
            let (started_tx, started_rx) = mpsc::channel();
            let model = Stepper {
                steps: Mutex::new(step_rx),
                started: Mutex::new(started_tx),
                active: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                steps_run: AtomicUsize::new(0),
            };
            (Arc::new(model), step_tx, started_rx)
        }
    }

    impl ImageModel for Stepper {
        fn generate(
            &self,
            req: &ImageRequest,
            on_step: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
        ) -> Result<Vec<Image>, String> {
            let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            self.started.lock().unwrap().send(req.prompt.clone()).unwrap();
            let total = req.steps.unwrap_or(4);
            let mut result = Ok(());
            for done in 1..=total {
                self.steps.lock().unwrap().recv_timeout(WAIT).map_err(|e| e.to_string())?;
                self.steps_run.fetch_add(1, Ordering::SeqCst);
                if on_step(done, total).is_break() {
                    result = Err("cancelled".to_string());
                    break;
                }
            }
            self.active.fetch_sub(1, Ordering::SeqCst);
            result?;
            let image =
                Image { width: req.width, height: req.height, rgb: vec![total as u8; req.width * req.height * 3] };
            Ok(vec![image; req.n])
        }
    }

    fn job(prompt: &str, steps: usize, cancel: &CancelFlag, answers: &Sender<(String, ImageResult)>) -> ImageJob {
        let (tx, name) = (answers.clone(), prompt.to_string());
        ImageJob {
            request: ImageRequest { prompt: prompt.into(), ..request(2, steps) },
            cancel: cancel.clone(),
            progress: None,
            reply: Box::new(move |r| tx.send((name, r)).unwrap()),
        }
    }

    fn wait_until(what: &str, cond: impl Fn() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// With a limit of one, a second job waits until the first is done; both are answered with
    /// their images, and the progress callback sees every step.
    #[test]
    fn the_concurrency_limit_holds() {
        let (model, steps, started) = Stepper::new();
        let h = ImageHandle::spawn(model.clone(), 1, 8).unwrap();
        let (answers, answered) = mpsc::channel();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut first = job("a", 2, &CancelFlag::new(), &answers);
        let record = seen.clone();
        first.progress = Some(Box::new(move |done, total| record.lock().unwrap().push((done, total))));
        h.submit(first).unwrap();
        h.submit(job("b", 2, &CancelFlag::new(), &answers)).unwrap();
        assert_eq!(started.recv_timeout(WAIT).unwrap(), "a");
        assert_eq!((h.running(), h.waiting()), (1, 1));
        steps.send(()).unwrap();
        // "b" must not start while "a" runs.
        assert!(started.recv_timeout(Duration::from_millis(100)).is_err());
        steps.send(()).unwrap();
        let (name, images) = answered.recv_timeout(WAIT).unwrap();
        assert_eq!(name, "a");
        let images = images.unwrap();
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].rgb.len(), 16 * 16 * 3);
        assert_eq!(*seen.lock().unwrap(), vec![(1, 2), (2, 2)]);
        assert_eq!(started.recv_timeout(WAIT).unwrap(), "b");
        steps.send(()).unwrap();
        steps.send(()).unwrap();
        assert_eq!(answered.recv_timeout(WAIT).unwrap().0, "b");
        assert_eq!(model.peak.load(Ordering::SeqCst), 1);
    }

    /// With a limit of two, two jobs run at once and a third waits.
    #[test]
    fn two_run_at_once_under_a_limit_of_two() {
        let (model, steps, started) = Stepper::new();
        let h = ImageHandle::spawn(model.clone(), 2, 8).unwrap();
        let (answers, answered) = mpsc::channel();
        for name in ["a", "b", "c"] {
            h.submit(job(name, 1, &CancelFlag::new(), &answers)).unwrap();
        }
        let mut first_two = [started.recv_timeout(WAIT).unwrap(), started.recv_timeout(WAIT).unwrap()];
        first_two.sort();
        assert_eq!(first_two, ["a", "b"]);
        wait_until("two run and one waits", || h.running() == 2 && h.waiting() == 1);
        assert!(started.recv_timeout(Duration::from_millis(100)).is_err());
        for _ in 0..3 {
            steps.send(()).unwrap();
        }
        let mut names: Vec<String> = (0..3).map(|_| answered.recv_timeout(WAIT).unwrap().0).collect();
        names.sort();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(model.peak.load(Ordering::SeqCst), 2);
    }

    /// A running job whose flag is set stops after the step in progress; a waiting one is
    /// dropped without running; the next job then runs normally.
    #[test]
    fn cancellation_stops_at_the_next_step() {
        let (model, steps, started) = Stepper::new();
        let h = ImageHandle::spawn(model.clone(), 1, 8).unwrap();
        let (answers, answered) = mpsc::channel();
        let (long, queued) = (CancelFlag::new(), CancelFlag::new());
        h.submit(job("long", 50, &long, &answers)).unwrap();
        h.submit(job("queued", 3, &queued, &answers)).unwrap();
        h.submit(job("next", 1, &CancelFlag::new(), &answers)).unwrap();
        assert_eq!(started.recv_timeout(WAIT).unwrap(), "long");
        steps.send(()).unwrap();
        wait_until("a step is done", || model.steps_run.load(Ordering::SeqCst) == 1);
        long.cancel();
        queued.cancel();
        steps.send(()).unwrap(); // the step in progress ends, then the job stops
        let (name, result) = answered.recv_timeout(WAIT).unwrap();
        assert_eq!((name.as_str(), result), ("long", Err(ImageJobError::Cancelled)));
        assert_eq!(model.steps_run.load(Ordering::SeqCst), 2, "ran past the cancellation");
        assert_eq!(h.steps(), 2);
        let (name, result) = answered.recv_timeout(WAIT).unwrap();
        assert_eq!((name.as_str(), result), ("queued", Err(ImageJobError::Cancelled)));
        assert_eq!(started.recv_timeout(WAIT).unwrap(), "next", "the cancelled job must not start");
        steps.send(()).unwrap();
        let (name, result) = answered.recv_timeout(WAIT).unwrap();
        assert_eq!(name, "next");
        assert_eq!(result.unwrap().len(), 2);
    }

    /// While the worker is busy, `max_queue` jobs wait and the next is refused; once one is
    /// taken, a new job is accepted again.
    #[test]
    fn a_full_queue_refuses_jobs() {
        let (model, steps, started) = Stepper::new();
        let h = ImageHandle::spawn(model, 1, 2).unwrap();
        let (answers, answered) = mpsc::channel();
        let flag = CancelFlag::new();
        h.submit(job("a", 1, &flag, &answers)).unwrap();
        assert_eq!(started.recv_timeout(WAIT).unwrap(), "a");
        h.submit(job("b", 1, &flag, &answers)).unwrap();
        h.submit(job("c", 1, &flag, &answers)).unwrap();
        assert_eq!(h.submit(job("d", 1, &flag, &answers)).err(), Some(ImageSubmitError::Overloaded(2)));
        assert_eq!(h.waiting(), 2);
        steps.send(()).unwrap();
        assert_eq!(started.recv_timeout(WAIT).unwrap(), "b");
        wait_until("b is taken", || h.waiting() == 1);
        h.submit(job("e", 1, &flag, &answers)).unwrap();
        for _ in 0..3 {
            steps.send(()).unwrap();
        }
        let mut names: Vec<String> = (0..4).map(|_| answered.recv_timeout(WAIT).unwrap().0).collect();
        names.sort();
        assert_eq!(names, ["a", "b", "c", "e"]);
        let none = ImageHandle::spawn(Arc::new(Panics), 1, 0).unwrap();
        assert_eq!(none.submit(job("x", 1, &flag, &answers)).err(), Some(ImageSubmitError::Overloaded(0)));
    }

    struct Panics;

    impl ImageModel for Panics {
        fn generate(
            &self,
            _: &ImageRequest,
            _: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
        ) -> Result<Vec<Image>, String> {
            panic!("boom")
        }
    }

    /// A panicking model fails its job with an error; the worker keeps serving.
    #[test]
    fn a_panic_fails_only_its_job() {
        let h = ImageHandle::spawn(Arc::new(Panics), 1, 4).unwrap();
        let (answers, answered) = mpsc::channel();
        let flag = CancelFlag::new();
        h.submit(job("a", 1, &flag, &answers)).unwrap();
        h.submit(job("b", 1, &flag, &answers)).unwrap();
        for name in ["a", "b"] {
            let (got, result) = answered.recv_timeout(WAIT).unwrap();
            assert_eq!(got, name);
            assert!(matches!(result, Err(ImageJobError::Failed(e)) if e.contains("panicked")));
        }
        assert_eq!(h.running(), 0);
    }
}
