//! The facade on the real SmolLM2 model: chat and completions, streamed and not, `n`, echo
//! with logprobs, cancellation, batching and errors.

#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use ferrite::{ChatCompletionRequest, ChatMessage, CompletionRequest, Engine, Error, FinishReason};
use ferrite_tensor::model_files::SMOLLM2;
use futures_util::StreamExt;

mod common;

use common::block_on;

fn engine() -> Option<&'static Engine> {
    static ENGINE: OnceLock<Option<Engine>> = OnceLock::new();
    common::shared_engine(&ENGINE, SMOLLM2, 64)
}

fn greedy_chat(text: &str, max: u32) -> ChatCompletionRequest {
    ChatCompletionRequest::new("smol", [ChatMessage::user(text)]).max_tokens(max).temperature(0.0)
}

#[test]
fn chat_streamed_equals_chat_whole() {
    let Some(e) = engine() else { return };
    let req = ChatCompletionRequest::new(
        "smol",
        [ChatMessage::system("You are a helpful assistant."), ChatMessage::user("What is the capital of France?")],
    )
    .max_tokens(24)
    .temperature(0.0);
    let whole = block_on(e.chat(req.clone())).unwrap();
    assert_eq!(whole.object, "chat.completion");
    assert_eq!(whole.model, "smol");
    let text = whole.choices[0].message.content.clone().unwrap();
    assert!(text.contains("Paris"), "{text}");
    assert!(whole.usage.prompt_tokens > 10 && whole.usage.completion_tokens >= 1);
    let chunks: Vec<_> = block_on(e.chat_stream(req).unwrap().collect::<Vec<_>>());
    let chunks: Vec<_> = chunks.into_iter().map(Result::unwrap).collect();
    assert_eq!(chunks[0].choices[0].delta.role, Some(ferrite::Role::Assistant));
    let streamed: String = chunks.iter().filter_map(|c| c.choices.first()?.delta.content.clone()).collect();
    assert_eq!(streamed, text);
    let last = chunks.last().unwrap();
    assert_eq!(last.choices[0].finish_reason, whole.choices[0].finish_reason);
    let usage = last.usage.as_ref().expect("the finish chunk carries usage");
    assert_eq!(
        (usage.prompt_tokens, usage.completion_tokens),
        (whole.usage.prompt_tokens, whole.usage.completion_tokens)
    );
    assert!(chunks.iter().all(|c| c.id == chunks[0].id && c.object == "chat.completion.chunk"));
}

#[test]
fn include_usage_adds_a_final_chunk_without_choices() {
    let Some(e) = engine() else { return };
    let req = greedy_chat("Hi", 5).stream(true).stream_with_usage(true);
    let chunks: Vec<_> = block_on(e.chat_stream(req).unwrap().collect::<Vec<_>>());
    let last = chunks.last().unwrap().as_ref().unwrap();
    assert!(last.choices.is_empty());
    assert_eq!(last.usage.as_ref().unwrap().completion_tokens, 5);
}

#[test]
fn concurrent_requests_match_solo_runs() {
    let Some(e) = engine() else { return };
    let prompts = ["Tell me a joke.", "Count to ten.", "Name three colours.", "What is 2+2?"];
    let solo: Vec<String> = prompts
        .iter()
        .map(|p| block_on(e.chat(greedy_chat(p, 20))).unwrap().choices[0].message.content.clone().unwrap())
        .collect();
    let together = block_on(async {
        let futs = prompts.iter().map(|p| e.chat(greedy_chat(p, 20)));
        futures_util::future::join_all(futs).await
    });
    for (s, t) in solo.iter().zip(together) {
        assert_eq!(s, t.unwrap().choices[0].message.content.as_ref().unwrap());
    }
}

#[test]
fn n_choices_with_a_seed_are_reproducible() {
    let Some(e) = engine() else { return };
    let req = ChatCompletionRequest::new("smol", [ChatMessage::user("Write a word.")])
        .max_tokens(8)
        .temperature(1.0)
        .n(3)
        .seed(7);
    let a = block_on(e.chat(req.clone())).unwrap();
    let b = block_on(e.chat(req)).unwrap();
    assert_eq!(a.choices.len(), 3);
    assert_eq!(a.choices, b.choices);
    assert!(a.choices.iter().enumerate().all(|(i, c)| c.index == i as u32));
    assert_ne!(a.choices[0].message.content, a.choices[1].message.content);
}

#[test]
fn completion_echo_with_logprobs() {
    let Some(e) = engine() else { return };
    let req = CompletionRequest::new("smol", "The capital of France is")
        .max_tokens(4)
        .temperature(0.0)
        .logprobs(2)
        .echo(true);
    let r = block_on(e.complete(req)).unwrap();
    let c = &r.choices[0];
    assert!(c.text.starts_with("The capital of France is Paris"), "{}", c.text);
    let lp = c.logprobs.as_ref().unwrap();
    // 5 prompt tokens + 4 generated.
    assert_eq!(lp.tokens.len(), 9);
    assert_eq!(lp.token_logprobs[0], None);
    assert!(lp.token_logprobs[1..].iter().all(|l| l.is_some_and(|l| l <= 0.0)));
    assert_eq!(lp.tokens.concat(), c.text);
    assert_eq!(lp.text_offset[..3], [0, 3, 11]);
    assert!(lp.top_logprobs[1..].iter().all(|t| t.as_ref().is_some_and(|t| t.len() <= 2 && !t.is_empty())));
    assert_eq!(r.usage.prompt_tokens, 5);
    assert_eq!(c.finish_reason, Some(FinishReason::Length));
}

#[test]
fn raw_chatml_completion_stops_at_stop_string() {
    let Some(e) = engine() else { return };
    let prompt = "<|im_start|>user\nList three fruits, one per line.<|im_end|>\n<|im_start|>assistant\n";
    let req = CompletionRequest::new("smol", prompt).max_tokens(40).temperature(0.0).stop("\n");
    let r = block_on(e.complete(req)).unwrap();
    assert!(!r.choices[0].text.contains('\n'), "{:?}", r.choices[0].text);
    assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
}

#[test]
fn dropping_a_stream_frees_its_blocks() {
    let Some(e) = engine() else { return };
    block_on(async {
        let mut s = e.chat_stream(greedy_chat("Write a long story about a dragon.", 400)).unwrap();
        s.next().await.unwrap().unwrap();
        drop(s);
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while e.stats().running > 0 {
        assert!(std::time::Instant::now() < deadline, "the dropped stream still runs");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn bad_requests_are_typed_errors() {
    let Some(e) = engine() else { return };
    let long = "word ".repeat(9000);
    match block_on(e.complete(CompletionRequest::new("smol", long).max_tokens(4))) {
        Err(Error::InvalidRequest { code: Some(c), param: Some(p), .. }) => {
            assert_eq!((c.as_str(), p.as_str()), ("context_length_exceeded", "prompt"))
        }
        other => panic!("{other:?}"),
    }
    let hot = greedy_chat("x", 4).temperature(3.0);
    assert!(matches!(block_on(e.chat(hot)), Err(Error::InvalidRequest { param: Some(p), .. }) if p == "temperature"));
    let empty = ChatCompletionRequest::new("smol", []);
    assert!(matches!(block_on(e.chat(empty)), Err(Error::InvalidRequest { .. })));
}

#[test]
fn blocking_api_and_logits_processor() {
    let Some(e) = engine() else { return };
    struct OnlyToken(u32);
    impl ferrite::LogitsProcessor for OnlyToken {
        fn process(&mut self, _generated: &[u32], logits: &mut [f32]) {
            for (i, l) in logits.iter_mut().enumerate() {
                if i as u32 != self.0 {
                    *l = f32::NEG_INFINITY;
                }
            }
        }
    }
    let b = ferrite::blocking::Engine::new(e.clone());
    let x = e.tokenizer().unwrap().encode("x", false).unwrap()[0];
    let opts = ferrite::RequestOptions::new().logits_processor(move || OnlyToken(x));
    let r = b.chat_with(greedy_chat("Say hi", 3), opts).unwrap();
    assert_eq!(r.choices[0].message.content.as_deref(), Some("xxx"));
    let streamed: String = b
        .chat_stream(greedy_chat("Say hi", 6))
        .unwrap()
        .filter_map(|c| c.unwrap().choices.first()?.delta.content.clone())
        .collect();
    assert_eq!(streamed, b.chat(greedy_chat("Say hi", 6)).unwrap().choices[0].message.content.clone().unwrap());
}
