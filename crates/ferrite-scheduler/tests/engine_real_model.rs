//! The engine on SmolLM2: batched, chunked and prefix-cached greedy decoding gives exactly the
//! tokens of one sequence decoded alone.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ferrite_chat::Tokenizer;
use ferrite_models::{load_weights, Llama};
use ferrite_scheduler::{EngineConfig, EngineCore, Event, LlamaRunner, Request, TokenText};
use ferrite_tensor::model_files::{test_model, SMOLLM2};
use ferrite_tensor::Device;

fn engine(cfg: EngineConfig) -> Option<(EngineCore, Arc<Tokenizer>)> {
    let path = test_model(SMOLLM2)?;
    let (w, c) = load_weights(&path).unwrap();
    let tok = Arc::new(Tokenizer::from_gguf(w.gguf().unwrap()).unwrap());
    let model = Llama::load(w.as_ref(), c, &Device::cpu_with_threads(2).unwrap()).unwrap();
    let runner = LlamaRunner::new(model, 96, 16).unwrap();
    Some((EngineCore::new(Box::new(runner), tok.clone() as Arc<dyn TokenText>, cfg), tok))
}

fn run(core: &mut EngineCore, prompts: &[Vec<u32>], max: usize) -> Vec<Vec<u32>> {
    let logs: Vec<Arc<Mutex<Vec<u32>>>> = prompts.iter().map(|_| Arc::default()).collect();
    for (i, p) in prompts.iter().enumerate() {
        let log = logs[i].clone();
        let sink = Box::new(move |e| {
            if let Event::Delta { tokens, .. } = e {
                log.lock().unwrap().extend(tokens);
            }
            true
        });
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        core.submit(id, Request { ignore_eos: true, ..Request::greedy(p.clone(), max) }, sink).unwrap();
    }
    while core.has_work() {
        core.step();
    }
    logs.iter().map(|l| l.lock().unwrap().clone()).collect()
}

#[test]
fn batched_chunked_prefix_cached_greedy_equals_solo() {
    let Some((mut solo, tok)) = engine(EngineConfig { prefix_caching: false, ..Default::default() }) else { return };
    let system = "<|im_start|>system\nYou are a helpful assistant who answers in one sentence.<|im_end|>\n";
    let texts = [
        format!("{system}<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"),
        format!("{system}<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"),
        "The quick brown fox".to_string(),
        "def fibonacci(n):".to_string(),
    ];
    let prompts: Vec<Vec<u32>> = texts.iter().map(|t| tok.encode(t, true).unwrap()).collect();
    let expected: Vec<Vec<u32>> =
        prompts.iter().map(|p| run(&mut solo, std::slice::from_ref(p), 12).remove(0)).collect();
    // Small prefill chunks, all four at once, then again with the shared system prompt cached.
    let cfg = EngineConfig { max_batch_tokens: 24, ..Default::default() };
    let (mut batched, _) = engine(cfg).unwrap();
    assert_eq!(run(&mut batched, &prompts, 12), expected);
    let before = batched.stats().cached_prompt_tokens;
    assert_eq!(run(&mut batched, &prompts, 12), expected);
    assert!(batched.stats().cached_prompt_tokens - before >= 16 * 2, "prefix cache unused");
    assert_eq!(batched.stats().kv_blocks_used, 0);
    let text = tok.decode(&expected[0], true).unwrap();
    assert!(text.contains("Paris"), "{text}");
}
