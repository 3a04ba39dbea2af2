//! Engine tests over a fake model whose logits depend on everything in its KV cache, so a
//! wrong block table, a bad prefix hit or a lost preemption shows up as different tokens.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use ferrite_models::Batch;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::SamplingParams;

const VOCAB: usize = 64;
const EOG: u32 = 0;

/// Stores each token in its KV slot; the logits of a row are a hash of the sequence's tokens
/// read back through its block table.
struct FakeModel {
    slots: Vec<Option<(u32, usize)>>,
    block_size: usize,
    context: usize,
    fail_at_step: Option<usize>,
    steps: usize,
    /// Never predicts the end-of-generation token.
    no_eog: bool,
}

impl FakeModel {
    fn new(num_blocks: usize, block_size: usize) -> FakeModel {
        FakeModel {
            slots: vec![None; num_blocks * block_size],
            block_size,
            context: 4096,
            fail_at_step: None,
            steps: 0,
            no_eog: true,
        }
    }
}

fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

impl StepModel for FakeModel {
    fn forward(&mut self, batch: &Batch) -> Result<Vec<f32>, String> {
        self.steps += 1;
        if self.fail_at_step == Some(self.steps) {
            return Err("injected failure".into());
        }
        let mut row_hash = HashMap::new();
        for s in &batch.seqs {
            for i in 0..s.len {
                let p = s.past + i;
                let slot = s.block_table[p / self.block_size] as usize * self.block_size + p % self.block_size;
                self.slots[slot] = Some((batch.tokens[s.start + i], p));
            }
            for i in 0..s.len {
                let mut h = 0x1234u64;
                for p in 0..=s.past + i {
                    let slot = s.block_table[p / self.block_size] as usize * self.block_size + p % self.block_size;
                    let (t, pos) = self.slots[slot].ok_or("read an unwritten slot")?;
                    if pos != p {
                        return Err(format!("slot {slot} holds position {pos}, wanted {p}"));
                    }
                    h = mix(h, t as u64);
                }
                row_hash.insert(s.start + i, h);
            }
        }
        let mut out = Vec::with_capacity(batch.logits_rows.len() * VOCAB);
        for r in &batch.logits_rows {
            let h = row_hash[r];
            for v in 0..VOCAB as u64 {
                let x = (mix(h, v) % 1000) as f32 / 250.0;
                out.push(if self.no_eog && v == EOG as u64 { -50.0 } else { x });
            }
        }
        Ok(out)
    }
    fn vocab(&self) -> usize {
        VOCAB
    }
    fn block_size(&self) -> usize {
        self.block_size
    }
    fn num_blocks(&self) -> usize {
        self.slots.len() / self.block_size
    }
    fn context_length(&self) -> usize {
        self.context
    }
}

/// Token t > 0 is the letter `a + (t - 1) % 26`, except 60 and 61, the two bytes of `é`.
struct FakeText {
    pieces: Vec<Vec<u8>>,
}

impl FakeText {
    fn new() -> Arc<FakeText> {
        let mut pieces: Vec<Vec<u8>> = (0..VOCAB as u32).map(|t| vec![b'a' + ((t + 25) % 26) as u8]).collect();
        pieces[0] = Vec::new();
        pieces[60] = vec![0xC3];
        pieces[61] = vec![0xA9];
        Arc::new(FakeText { pieces })
    }
}

impl TokenText for FakeText {
    fn piece(&self, id: u32) -> &[u8] {
        &self.pieces[id as usize]
    }
    fn is_eog(&self, id: u32) -> bool {
        id == EOG
    }
}

type Log = Arc<Mutex<Vec<Event>>>;

fn sink(log: &Log) -> EventSink {
    let log = log.clone();
    Box::new(move |e| {
        log.lock().unwrap().push(e);
        true
    })
}

fn core(model: FakeModel, cfg: EngineConfig) -> EngineCore {
    EngineCore::new(Box::new(model), FakeText::new(), cfg)
}

fn run_to_end(c: &mut EngineCore) {
    let mut guard = 0;
    while c.has_work() {
        c.step();
        guard += 1;
        assert!(guard < 100_000, "engine does not finish");
    }
}

/// Generated tokens per choice, and the finish reasons, from a request's events.
fn outputs(log: &Log) -> (Vec<Vec<u32>>, Vec<Option<FinishReason>>, String) {
    let mut toks: Vec<Vec<u32>> = Vec::new();
    let mut reasons = Vec::new();
    let mut text = String::new();
    for e in log.lock().unwrap().iter() {
        match e {
            Event::Delta { index, text: t, tokens, .. } => {
                if toks.len() <= *index {
                    toks.resize(index + 1, Vec::new());
                    reasons.resize(index + 1, None);
                }
                toks[*index].extend(tokens);
                if *index == 0 {
                    text.push_str(t);
                }
            }
            Event::Finished { index, reason, .. } => reasons[*index] = Some(*reason),
            _ => {}
        }
    }
    (toks, reasons, text)
}

fn prompt(seed: u64, len: usize) -> Vec<u32> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen_range(1..VOCAB as u32)).collect()
}

fn solo(p: &[u32], max_tokens: usize) -> Vec<u32> {
    let mut c = core(FakeModel::new(64, 16), EngineConfig::default());
    let log = Log::default();
    c.submit(1, Request::greedy(p.to_vec(), max_tokens), sink(&log)).unwrap();
    run_to_end(&mut c);
    outputs(&log).0.remove(0)
}

#[test]
fn batched_with_chunked_prefill_equals_solo() {
    let prompts: Vec<Vec<u32>> = [3, 70, 17, 1, 33, 48].iter().enumerate().map(|(i, &n)| prompt(i as u64, n)).collect();
    let cfg = EngineConfig { max_batch_tokens: 16, prefix_caching: false, ..Default::default() };
    let mut c = core(FakeModel::new(64, 4), cfg);
    let logs: Vec<Log> = prompts.iter().map(|_| Log::default()).collect();
    for (i, p) in prompts.iter().enumerate() {
        c.submit(i as u64, Request::greedy(p.clone(), 12), sink(&logs[i])).unwrap();
    }
    run_to_end(&mut c);
    for (p, log) in prompts.iter().zip(&logs) {
        let (toks, reasons, _) = outputs(log);
        assert_eq!(toks[0], solo(p, 12));
        assert_eq!(reasons[0], Some(FinishReason::Length));
    }
    assert_eq!(c.stats().kv_blocks_used, 0);
}

#[test]
fn prefix_cache_hit_gives_identical_output_and_skips_recomputation() {
    let p = prompt(9, 40);
    let mut c = core(FakeModel::new(64, 16), EngineConfig::default());
    let first = Log::default();
    c.submit(1, Request::greedy(p.clone(), 8), sink(&first)).unwrap();
    run_to_end(&mut c);
    let computed_before = c.stats().computed_tokens;
    let second = Log::default();
    c.submit(2, Request::greedy(p.clone(), 8), sink(&second)).unwrap();
    run_to_end(&mut c);
    assert_eq!(outputs(&first).0, outputs(&second).0);
    // 40 prompt tokens: two full blocks (32 tokens) come from the cache.
    assert_eq!(c.stats().cached_prompt_tokens, 32);
    assert_eq!(c.stats().computed_tokens - computed_before, 40 - 32 + 7);
    assert!(c.prefix_hits() >= 2);
    let usage = second.lock().unwrap().iter().find_map(|e| if let Event::Done(u) = e { Some(*u) } else { None });
    assert_eq!(usage, Some(Usage { prompt_tokens: 40, completion_tokens: 8, cached_tokens: 32 }));
}

#[test]
fn preemption_under_memory_pressure_keeps_outputs_exact() {
    // 12 blocks of 4 tokens: 48 positions for 5 sequences of up to 10 + 20 tokens.
    let prompts: Vec<Vec<u32>> = (0..5).map(|i| prompt(100 + i, 10)).collect();
    let mut c = core(FakeModel::new(12, 4), EngineConfig::default());
    let logs: Vec<Log> = prompts.iter().map(|_| Log::default()).collect();
    for (i, p) in prompts.iter().enumerate() {
        c.submit(i as u64, Request::greedy(p.clone(), 20), sink(&logs[i])).unwrap();
    }
    let mut peak_running = 0;
    while c.has_work() {
        c.step();
        peak_running = peak_running.max(c.stats().running);
    }
    assert!(peak_running >= 2);
    assert!(c.stats().preemptions > 0, "the pool was never short");
    for (p, log) in prompts.iter().zip(&logs) {
        assert_eq!(outputs(log).0[0], solo(p, 20));
    }
    assert_eq!(c.stats().kv_blocks_used, 0);
}

#[test]
fn n_choices_share_the_prompt_blocks_and_match_their_seeds() {
    let p = prompt(5, 37);
    let sampling = SamplingParams { temperature: 1.0, seed: 11, ..Default::default() };
    let mut c = core(FakeModel::new(64, 16), EngineConfig::default());
    let log = Log::default();
    let req = Request { n: 3, sampling: sampling.clone(), ..Request::greedy(p.clone(), 10) };
    c.submit(1, req, sink(&log)).unwrap();
    run_to_end(&mut c);
    let (toks, reasons, _) = outputs(&log);
    assert_eq!(toks.len(), 3);
    assert!(reasons.iter().all(|r| *r == Some(FinishReason::Length)));
    // Choices 1 and 2 reuse the first choice's two full prompt blocks.
    assert_eq!(c.prefix_hits(), 4);
    for (i, t) in toks.iter().enumerate() {
        let mut s = core(FakeModel::new(64, 16), EngineConfig { prefix_caching: false, ..Default::default() });
        let l = Log::default();
        let one = SamplingParams { seed: 11 + i as u64, ..sampling.clone() };
        s.submit(1, Request { sampling: one, ..Request::greedy(p.clone(), 10) }, sink(&l)).unwrap();
        run_to_end(&mut s);
        assert_eq!(&outputs(&l).0[0], t, "choice {i}");
    }
    assert_ne!(toks[0], toks[1]);
}

#[test]
fn stop_strings_stop_tokens_and_eog() {
    let p = prompt(3, 5);
    let full = solo(&p, 30);
    let text: String = full.iter().map(|&t| FakeText::new().pieces[t as usize][0] as char).collect();
    // A stop string made of the text of generated tokens 5..7 (spanning three tokens).
    let stop: String = text[5..8].to_string();
    let cut = text.find(&stop).unwrap();
    let mut c = core(FakeModel::new(64, 16), EngineConfig::default());
    let log = Log::default();
    c.submit(1, Request { stop: vec![stop.clone()], ..Request::greedy(p.clone(), 30) }, sink(&log)).unwrap();
    run_to_end(&mut c);
    let (toks, reasons, out) = outputs(&log);
    assert_eq!(out, text[..cut]);
    assert_eq!(reasons[0], Some(FinishReason::Stop));
    assert_eq!(toks[0], full[..cut + 3]);
    // A stop token id: the token is generated (counted) but adds no text.
    let log = Log::default();
    c.submit(2, Request { stop_token_ids: vec![full[4]], ..Request::greedy(p.clone(), 30) }, sink(&log)).unwrap();
    run_to_end(&mut c);
    let (toks, reasons, out) = outputs(&log);
    let first = full.iter().position(|&t| t == full[4]).unwrap();
    assert_eq!(toks[0], full[..=first]);
    assert_eq!(out, text[..first]);
    assert_eq!(reasons[0], Some(FinishReason::Stop));
    // The model's end-of-generation token.
    let mut m = FakeModel::new(64, 16);
    m.no_eog = false;
    let mut c = core(m, EngineConfig::default());
    let log = Log::default();
    c.submit(1, Request::greedy(p.clone(), 1000), sink(&log)).unwrap();
    run_to_end(&mut c);
    let (toks, reasons, _) = outputs(&log);
    assert_eq!(toks[0].last(), Some(&EOG));
    assert_eq!(reasons[0], Some(FinishReason::Stop));
}

#[test]
fn utf8_split_across_tokens_is_emitted_whole() {
    // Force é's two bytes with logit bias, one token at a time through a processor.
    struct Force(Vec<u32>);
    impl LogitsProcessor for Force {
        fn process(&mut self, generated: &[u32], logits: &mut [f32]) {
            let want = self.0[generated.len() % self.0.len()];
            logits.iter_mut().enumerate().for_each(|(i, l)| *l = if i as u32 == want { 0.0 } else { -1e9 });
        }
    }
    let mut c = core(FakeModel::new(64, 16), EngineConfig::default());
    let log = Log::default();
    let req = Request { logits_processors: vec![Box::new(Force(vec![60, 61, 2]))], ..Request::greedy(prompt(1, 4), 6) };
    c.submit(1, req, sink(&log)).unwrap();
    run_to_end(&mut c);
    let texts: Vec<String> = log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| if let Event::Delta { text, .. } = e { Some(text.clone()) } else { None })
        .collect();
    assert_eq!(texts, vec!["", "é", "b", "", "é", "b"]);
}

#[test]
fn prompt_and_token_logprobs() {
    let p = prompt(8, 21);
    let cfg = EngineConfig { max_batch_tokens: 8, ..Default::default() };
    let mut c = core(FakeModel::new(64, 4), cfg);
    let log = Log::default();
    c.submit(1, Request { prompt_logprobs: Some(2), logprobs: Some(3), ..Request::greedy(p.clone(), 3) }, sink(&log))
        .unwrap();
    run_to_end(&mut c);
    let events = log.lock().unwrap().clone();
    let Some(Event::PromptLogprobs(pl)) = events.first() else { panic!("first event: {:?}", events.first()) };
    assert_eq!(pl.len(), p.len());
    assert!(pl[0].is_none());
    // Recompute position 5's distribution with a fresh fake model.
    let mut m = FakeModel::new(64, 4);
    let mut b = Batch::single(&p[..6], 0, (0..2).collect());
    b.logits_rows = vec![5];
    let row = m.forward(&b).unwrap();
    let (lp, top) = crate::token_logprobs(&row, p[6], 2);
    let got = pl[6].as_ref().unwrap();
    assert_eq!((got.token, got.logprob, &got.top), (p[6], lp, &top));
    assert!(pl.iter().skip(1).all(|l| l.as_ref().is_some_and(|l| l.top.len() == 2 && l.logprob <= 0.0)));
    let deltas: Vec<&Vec<TokenLogprob>> = events
        .iter()
        .filter_map(|e| if let Event::Delta { logprobs, .. } = e { Some(logprobs) } else { None })
        .collect();
    assert_eq!(deltas.len(), 3);
    assert!(deltas.iter().all(|l| l.len() == 1 && l[0].top.len() == 3 && l[0].top[0].1 >= l[0].logprob));
}

#[test]
fn a_failing_step_reports_an_error_and_frees_everything() {
    let mut m = FakeModel::new(32, 4);
    m.fail_at_step = Some(3);
    let mut c = core(m, EngineConfig::default());
    let logs: Vec<Log> = (0..3).map(|_| Log::default()).collect();
    for (i, l) in logs.iter().enumerate() {
        c.submit(i as u64, Request::greedy(prompt(i as u64, 6), 10), sink(l)).unwrap();
    }
    run_to_end(&mut c);
    for l in &logs {
        assert!(matches!(l.lock().unwrap().last(), Some(Event::Error(m)) if m.contains("injected failure")));
    }
    assert_eq!(c.stats().kv_blocks_used, 0);
}

#[test]
fn bad_requests_are_refused() {
    let mut c = core(FakeModel::new(8, 4), EngineConfig::default());
    let refuse = |c: &mut EngineCore, r: Request| c.submit(1, r, Box::new(|_| true)).unwrap_err();
    assert!(matches!(refuse(&mut c, Request::greedy(vec![], 4)), SubmitError::Invalid { param: Some("prompt"), .. }));
    assert!(matches!(refuse(&mut c, Request::greedy(vec![99], 4)), SubmitError::Invalid { .. }));
    assert!(matches!(refuse(&mut c, Request::greedy(vec![1], 0)), SubmitError::Invalid { .. }));
    assert!(matches!(refuse(&mut c, Request { n: 0, ..Request::greedy(vec![1], 4) }), SubmitError::Invalid { .. }));
    // 32 KV positions.
    assert!(matches!(refuse(&mut c, Request::greedy(vec![1; 30], 4)), SubmitError::ContextLength(_)));
    let hot = SamplingParams { temperature: 5.0, ..Default::default() };
    assert!(matches!(
        refuse(&mut c, Request { sampling: hot, ..Request::greedy(vec![1], 4) }),
        SubmitError::Invalid { param: Some("temperature"), .. }
    ));
}

/// 1,000 random requests (random lengths, n, stops) with random cancellations, through a
/// small pool: every request ends exactly once and the pool ends fully free.
#[test]
fn no_leaks_under_random_load_with_cancellations() {
    let mut rng = StdRng::seed_from_u64(42);
    let cfg = EngineConfig { max_batch_tokens: 32, max_num_seqs: 8, ..Default::default() };
    let mut c = core(FakeModel::new(40, 4), cfg);
    // Per request: final events received, and whether it was cancelled (aborted, or its sink
    // stopped listening).
    let ended: Arc<Mutex<HashMap<u64, usize>>> = Arc::default();
    let cancelled: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let mut live: Vec<u64> = Vec::new();
    for id in 0..1000u64 {
        let n = rng.gen_range(1..=3);
        let shared = prompt(id % 7, 12);
        let mut p = shared[..rng.gen_range(1..12)].to_vec();
        p.extend(prompt(id + 1000, rng.gen_range(0..20)));
        let max_tokens = rng.gen_range(1..30);
        let drop_after = if rng.gen_bool(0.2) { Some(rng.gen_range(0..5usize)) } else { None };
        let (ended2, cancelled2) = (ended.clone(), cancelled.clone());
        let mut seen = 0;
        let sink: EventSink = Box::new(move |e| {
            if matches!(e, Event::Done(_) | Event::Error(_)) {
                *ended2.lock().unwrap().entry(id).or_default() += 1;
            }
            seen += 1;
            let listening = drop_after.is_none_or(|d| seen <= d);
            if !listening {
                cancelled2.lock().unwrap().insert(id);
            }
            listening
        });
        let sampling = SamplingParams { temperature: 0.8, seed: id, ..Default::default() };
        let req = Request { n, sampling, stop: vec!["ab".into()], ..Request::greedy(p, max_tokens) };
        c.submit(id, req, sink).unwrap();
        live.push(id);
        for _ in 0..rng.gen_range(0..4) {
            c.step();
        }
        if rng.gen_bool(0.05) {
            let victim = live[rng.gen_range(0..live.len())];
            c.abort(victim);
            cancelled.lock().unwrap().insert(victim);
        }
    }
    run_to_end(&mut c);
    assert_eq!(c.stats().kv_blocks_used, 0);
    assert_eq!(c.stats().running, 0);
    let (ended, cancelled) = (ended.lock().unwrap(), cancelled.lock().unwrap());
    for id in &live {
        let n = ended.get(id).copied().unwrap_or(0);
        assert!(n == 1 || (n == 0 && cancelled.contains(id)), "request {id}: {n} final events");
    }
    assert!(cancelled.len() > 100 && ended.len() > 500, "{} cancelled, {} ended", cancelled.len(), ended.len());
    assert!(c.prefix_hits() > 0);
}

#[test]
fn handle_runs_requests_on_its_thread_and_cancels_on_drop() {
    let h = EngineHandle::spawn(core(FakeModel::new(64, 16), EngineConfig::default())).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    h.submit(Request::greedy(prompt(1, 9), 5), Box::new(move |e| tx.send(e).is_ok())).unwrap();
    let events: Vec<Event> = rx.iter().take_while(|e| !matches!(e, Event::Done(_))).collect();
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Delta { .. })).count(), 5);
    // A receiver that goes away cancels its request, and the blocks come back.
    let (tx, rx) = std::sync::mpsc::channel::<Event>();
    h.submit(Request::greedy(prompt(2, 9), 1000), Box::new(move |e| tx.send(e).is_ok())).unwrap();
    rx.recv().unwrap();
    drop(rx);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h.stats().running > 0 || h.stats().kv_blocks_used > 0 {
        assert!(std::time::Instant::now() < deadline, "cancelled request still holds blocks");
        std::thread::yield_now();
    }
    assert!(matches!(h.submit(Request::greedy(vec![], 1), Box::new(|_| true)), Err(SubmitError::Invalid { .. })));
}

#[test]
fn prompt_logprobs_survive_preemption() {
    // 10 blocks of 4 tokens for four 9-token prompts that each grow by 12: preemption happens.
    let cfg = EngineConfig { max_batch_tokens: 4, ..Default::default() };
    let mut c = core(FakeModel::new(10, 4), cfg);
    let logs: Vec<Log> = (0..4).map(|_| Log::default()).collect();
    for (i, l) in logs.iter().enumerate() {
        let req = Request { prompt_logprobs: Some(1), ..Request::greedy(prompt(50 + i as u64, 9), 12) };
        c.submit(i as u64, req, sink(l)).unwrap();
    }
    run_to_end(&mut c);
    for l in &logs {
        let events = l.lock().unwrap();
        let pl: Vec<_> = events.iter().filter(|e| matches!(e, Event::PromptLogprobs(_))).collect();
        assert_eq!(pl.len(), 1);
        let Event::PromptLogprobs(v) = pl[0] else { unreachable!() };
        assert_eq!(v.len(), 9);
        assert!(v[0].is_none() && v[1..].iter().all(Option::is_some));
    }
    assert!(c.stats().preemptions > 0, "the pool was never short");
    assert_eq!(c.stats().kv_blocks_used, 0);
}

#[test]
fn latency_histograms_count_finished_requests() {
    let mut c = core(FakeModel::new(64, 16), EngineConfig::default());
    let latency = c.latency();
    let logs: Vec<Log> = (0..3).map(|_| Log::default()).collect();
    // Two requests of 8 tokens, one of a single token (no time per output token).
    for (i, max_tokens) in [8, 8, 1].into_iter().enumerate() {
        let mut req = Request::greedy(prompt(i as u64 + 40, 5), max_tokens);
        req.ignore_eos = true;
        c.submit(i as u64, req, sink(&logs[i])).unwrap();
    }
    c.step();
    let first = latency.lock().unwrap().clone();
    assert_eq!(first.time_to_first_token.count(), 3, "every prompt sampled its first token in step 1");
    assert_eq!(first.e2e.count(), 1, "only the 1-token request finished");
    run_to_end(&mut c);
    let l = latency.lock().unwrap().clone();
    assert_eq!(l.time_to_first_token.count(), 3);
    assert_eq!(l.e2e.count(), 3);
    assert_eq!(l.time_per_output_token.count(), 2);
    assert!(l.e2e.sum() >= l.time_to_first_token.sum());
}
