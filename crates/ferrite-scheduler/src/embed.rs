//! The embedding worker: an encoder on its own thread, fed by a channel, answering through a
//! callback per request (the facade wraps a oneshot sender in it).
//!
//! Encoders have no KV cache and no decode loop, so the scheduling is simple: whatever requests
//! are waiting when the worker wakes are taken together, their inputs sorted by length and
//! packed into batches under a token budget ([`plan_batches`]), each batch one forward pass. Many
//! small concurrent requests thus share forward passes; a large request is split.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Mutex;
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
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl EmbedHandle {
    /// Starts the worker thread over `model`, with batches of at most `max_batch_tokens` tokens.
    pub fn spawn(model: Box<dyn EmbedModel>, max_batch_tokens: usize) -> std::io::Result<EmbedHandle> {
        let (tx, rx) = mpsc::channel();
        let budget = max_batch_tokens.max(1);
        let thread = std::thread::Builder::new().name("ferrite-embed".into()).spawn(move || run(model, rx, budget))?;
        Ok(EmbedHandle { tx: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)) })
    }

    /// Queues `inputs` (token sequences, checked by the caller); `reply` gets the vectors.
    /// Fails when the worker has stopped (`reply` is then dropped uncalled).
    pub fn submit(&self, inputs: Vec<Vec<u32>>, reply: EmbedReply) -> Result<(), String> {
        let tx = self.tx.lock().map_err(|_| "the embedding worker stopped".to_string())?;
        let tx = tx.as_ref().ok_or_else(|| "the embedding worker stopped".to_string())?;
        tx.send(Job { inputs, reply }).map_err(|_| "the embedding worker stopped".to_string())
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

fn run(model: Box<dyn EmbedModel>, rx: Receiver<Job>, budget: usize) {
    while let Ok(first) = rx.recv() {
        // Take everything that is waiting now, up to a few batches' worth, so that concurrent
        // requests share forward passes without one flood starving later arrivals for long.
        let mut jobs = vec![first];
        let mut tokens: usize = jobs[0].inputs.iter().map(Vec::len).sum();
        while tokens < budget * 4 {
            match rx.try_recv() {
                Ok(j) => {
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
    use std::sync::{Arc, Mutex};

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
        let h = EmbedHandle::spawn(Box::new(Fake(calls.clone())), 8).unwrap();
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
}
