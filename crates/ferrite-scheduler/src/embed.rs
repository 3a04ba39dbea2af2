//! The embedding worker: an encoder on its own thread, fed by a channel, answering through a
//! callback per request (the facade wraps a oneshot sender in it).
//!
//! Encoders have no KV cache and no decode loop, so the scheduling is simple: whatever requests
//! are waiting when the worker wakes are taken together, their inputs sorted by length and
//! packed into batches under a token budget ([`plan_batches`]), each batch one forward pass. Many
//! small concurrent requests thus share forward passes; a large request is split.
//!
//! The queue is bounded: a request arriving while `max_queue` requests wait (submitted, not yet
//! taken by the worker) is refused with [`EmbedSubmitError::Overloaded`], as the chat engine's
//! `max_queue` refuses generation requests.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ferrite_models::Encoder;

/// What the worker runs: token sequences in, one vector per sequence out.
pub trait EmbedModel: Send {
    /// Embeds `seqs` as one batch.
    fn embed(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, String>;
}

impl EmbedModel for Encoder {
    fn embed(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
        Encoder::embed(self, seqs).map_err(|e| e.to_string())
    }
}

/// The answer to one request: a vector per input, in order, or why it failed.
pub type EmbedResult = Result<Vec<Vec<f32>>, String>;
/// Receives a request's answer (called once, on the worker thread).
pub type EmbedReply = Box<dyn FnOnce(EmbedResult) + Send>;

/// Why a request was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbedSubmitError {
    /// `max_queue` requests are already waiting.
    #[error("the embedding queue is full: {0} requests are waiting")]
    Overloaded(usize),
    /// The worker thread has stopped.
    #[error("the embedding worker stopped")]
    Stopped,
}

struct Job {
    inputs: Vec<Vec<u32>>,
    reply: EmbedReply,
}

/// Splits sequences of lengths `lens` into batches of at most `max_batch_tokens` tokens (a longer
/// sequence goes alone), shortest first. Returns indices into `lens`.
pub fn plan_batches(lens: &[usize], max_batch_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| lens[i]);
    let mut batches = Vec::new();
    let (mut cur, mut tokens) = (Vec::new(), 0);
    for i in order {
        if !cur.is_empty() && tokens + lens[i] > max_batch_tokens {
            batches.push(std::mem::take(&mut cur));
            tokens = 0;
        }
        cur.push(i);
        tokens += lens[i];
    }
    if !cur.is_empty() {
        batches.push(cur);
    }
    batches
}

/// A running embedding worker. Dropping it stops the thread once the work in hand is done.
pub struct EmbedHandle {
    tx: Mutex<Option<Sender<Job>>>,
    /// Requests submitted and not yet taken by the worker.
    waiting: Arc<AtomicUsize>,
    max_queue: usize,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl EmbedHandle {
    /// Starts the worker thread over `model`, with batches of at most `max_batch_tokens` tokens
    /// and at most `max_queue` requests waiting.
    pub fn spawn(
        model: Box<dyn EmbedModel>,
        max_batch_tokens: usize,
        max_queue: usize,
    ) -> std::io::Result<EmbedHandle> {
        let (tx, rx) = mpsc::channel();
        let budget = max_batch_tokens.max(1);
        let waiting = Arc::new(AtomicUsize::new(0));
        let counter = waiting.clone();
        let thread =
            std::thread::Builder::new().name("ferrite-embed".into()).spawn(move || run(model, rx, budget, &counter))?;
        Ok(EmbedHandle { tx: Mutex::new(Some(tx)), waiting, max_queue, thread: Mutex::new(Some(thread)) })
    }

    /// Requests submitted and not yet taken by the worker.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Queues `inputs` (token sequences, checked by the caller); `reply` gets the vectors.
    /// Fails when `max_queue` requests are waiting or the worker has stopped (`reply` is then
    /// dropped uncalled).
    pub fn submit(&self, inputs: Vec<Vec<u32>>, reply: EmbedReply) -> Result<(), EmbedSubmitError> {
        let tx = self.tx.lock().map_err(|_| EmbedSubmitError::Stopped)?;
        let tx = tx.as_ref().ok_or(EmbedSubmitError::Stopped)?;
        let before = self.waiting.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(EmbedSubmitError::Overloaded(before));
        }
        tx.send(Job { inputs, reply }).map_err(|_| {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            EmbedSubmitError::Stopped
        })
    }
}

impl Drop for EmbedHandle {
    fn drop(&mut self) {
        if let Ok(mut tx) = self.tx.lock() {
            tx.take();
        }
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }
}

fn run(model: Box<dyn EmbedModel>, rx: Receiver<Job>, budget: usize, waiting: &AtomicUsize) {
    while let Ok(first) = rx.recv() {
        waiting.fetch_sub(1, Ordering::AcqRel);
        // Take everything that is waiting now, up to a few batches' worth, so that concurrent
        // requests share forward passes without one flood starving later arrivals for long.
        let mut jobs = vec![first];
        let mut tokens: usize = jobs[0].inputs.iter().map(Vec::len).sum();
        while tokens < budget * 4 {
            match rx.try_recv() {
                Ok(j) => {
                    waiting.fetch_sub(1, Ordering::AcqRel);
                    tokens += j.inputs.iter().map(Vec::len).sum::<usize>();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        run_jobs(model.as_ref(), jobs, budget);
    }
}

/// Runs the inputs of `jobs` together and answers each job.
fn run_jobs(model: &dyn EmbedModel, jobs: Vec<Job>, budget: usize) {
    let items: Vec<(usize, usize)> =
        jobs.iter().enumerate().flat_map(|(j, job)| (0..job.inputs.len()).map(move |i| (j, i))).collect();
    let lens: Vec<usize> = items.iter().map(|&(j, i)| jobs[j].inputs[i].len()).collect();
    let mut out: Vec<Vec<Option<Vec<f32>>>> = jobs.iter().map(|j| vec![None; j.inputs.len()]).collect();
    let mut failed: Vec<Option<String>> = vec![None; jobs.len()];
    let run = |batch: &[usize]| {
        let seqs: Vec<&[u32]> = batch.iter().map(|&k| jobs[items[k].0].inputs[items[k].1].as_slice()).collect();
        catch_unwind(AssertUnwindSafe(|| model.embed(&seqs)))
            .unwrap_or_else(|_| Err("internal error: the embedding forward pass panicked".into()))
    };
    let mut queue: Vec<Vec<usize>> = plan_batches(&lens, budget);
    queue.reverse();
    while let Some(batch) = queue.pop() {
        let result = run(&batch);
        // A failing batch is retried one input at a time, so that only the request at fault fails.
        if result.is_err() && batch.len() > 1 {
            queue.extend(batch.iter().rev().map(|&k| vec![k]));
            continue;
        }
        match result {
            Ok(vecs) if vecs.len() == batch.len() => {
                for (&k, v) in batch.iter().zip(vecs) {
                    out[items[k].0][items[k].1] = Some(v);
                }
            }
            Ok(vecs) => {
                let e = format!("the model returned {} vectors for {} inputs", vecs.len(), batch.len());
                batch.iter().for_each(|&k| failed[items[k].0] = Some(e.clone()));
            }
            Err(e) => batch.iter().for_each(|&k| failed[items[k].0] = Some(e.clone())),
        }
    }
    for ((job, vecs), err) in jobs.into_iter().zip(out).zip(failed) {
        let answer = match err {
            Some(e) => Err(e),
            None => vecs.into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| "an input was not embedded".into()),
        };
        (job.reply)(answer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn batches_respect_the_budget_shortest_first() {
        let lens = [5, 1, 9, 3, 20, 2];
        let b = plan_batches(&lens, 10);
        assert_eq!(b, vec![vec![1, 5, 3], vec![0], vec![2], vec![4]]);
        assert!(plan_batches(&[], 10).is_empty());
        let all: usize = plan_batches(&[1; 100], 32).iter().map(|b| b.len()).sum();
        assert_eq!(all, 100);
    }

    /// A model that returns `[len, first id]` and records its batch sizes.
    struct Fake(Arc<Mutex<Vec<usize>>>);

    impl EmbedModel for Fake {
        fn embed(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
            self.0.lock().unwrap().push(seqs.len());
            if seqs.iter().any(|s| s.first() == Some(&666)) {
                return Err("bad token".into());
            }
            Ok(seqs.iter().map(|s| vec![s.len() as f32, s[0] as f32]).collect())
        }
    }

    #[test]
    fn answers_every_request_in_order() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let h = EmbedHandle::spawn(Box::new(Fake(calls.clone())), 8, 64).unwrap();
        let (tx, rx) = mpsc::channel();
        for r in 0..20u32 {
            let tx = tx.clone();
            let inputs = vec![vec![r; 1 + r as usize % 3], vec![100 + r; 2]];
            h.submit(inputs, Box::new(move |res| tx.send((r, res)).unwrap())).unwrap();
        }
        let bad = tx.clone();
        h.submit(vec![vec![666]], Box::new(move |res| bad.send((666, res)).unwrap())).unwrap();
        drop(tx);
        let mut seen = 0;
        for (r, res) in rx {
            if r == 666 {
                assert!(res.is_err());
                continue;
            }
            let v = res.unwrap();
            assert_eq!(v, vec![vec![(1 + r % 3) as f32, r as f32], vec![2.0, (100 + r) as f32]]);
            seen += 1;
        }
        assert_eq!(seen, 20);
        assert!(calls.lock().unwrap().iter().all(|&n| n <= 8));
    }

    /// A model that tells when a batch starts and waits for a release before answering.
    struct Gate {
        started: Sender<()>,
        release: Mutex<Receiver<()>>,
    }

    impl EmbedModel for Gate {
        fn embed(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
            self.started.send(()).map_err(|e| e.to_string())?;
            self.release.lock().map_err(|e| e.to_string())?.recv().map_err(|e| e.to_string())?;
            Ok(seqs.iter().map(|s| vec![s[0] as f32]).collect())
        }
    }

    /// While the worker is busy, `max_queue` requests wait and the next is refused; once the
    /// worker drains the queue, requests are accepted again and every accepted one is answered.
    #[test]
    fn a_full_queue_refuses_requests_until_it_drains() {
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let gate = Gate { started: started_tx, release: Mutex::new(release_rx) };
        let h = EmbedHandle::spawn(Box::new(gate), 64, 2).unwrap();
        let (tx, rx) = mpsc::channel();
        let reply = |r: u32| {
            let tx = tx.clone();
            Box::new(move |res: EmbedResult| tx.send((r, res)).unwrap()) as EmbedReply
        };
        h.submit(vec![vec![1]], reply(1)).unwrap();
        started.recv_timeout(Duration::from_secs(10)).unwrap(); // the worker holds request 1
        h.submit(vec![vec![2]], reply(2)).unwrap();
        h.submit(vec![vec![3]], reply(3)).unwrap();
        assert_eq!(h.waiting(), 2);
        assert_eq!(h.submit(vec![vec![4]], reply(4)), Err(EmbedSubmitError::Overloaded(2)));
        assert_eq!(h.waiting(), 2);
        release.send(()).unwrap(); // request 1 done; the worker takes 2 and 3 together
        started.recv_timeout(Duration::from_secs(10)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while h.waiting() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(h.waiting(), 0);
        h.submit(vec![vec![5]], reply(5)).unwrap();
        for _ in 0..2 {
            release.send(()).unwrap();
        }
        drop(tx);
        let mut answered: Vec<(u32, Vec<Vec<f32>>)> = Vec::new();
        for _ in 0..4 {
            let (r, res) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            answered.push((r, res.unwrap()));
        }
        answered.sort_by_key(|a| a.0);
        let want: Vec<(u32, Vec<Vec<f32>>)> = [1u32, 2, 3, 5].iter().map(|&r| (r, vec![vec![r as f32]])).collect();
        assert_eq!(answered, want);
    }
}
