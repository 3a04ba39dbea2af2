//! Embeddings through the facade on the real all-MiniLM-L6-v2 folder: the golden vectors of
//! `ferrite-models/tests/golden/embeddings_minilm.json` (tokenizer included), concurrent
//! requests against one batch, base64, `dimensions`, and the errors.

#![allow(clippy::unwrap_used)]

use ferrite::{
    ChatCompletionRequest, ChatMessage, EmbeddingRequest, EmbeddingResponse, EmbeddingVector, EncodingFormat, Engine,
    Error,
};
use ferrite_tensor::model_files::{test_model, MINILM, SMOLLM2};
use serde_json::{json, Value};

fn engine() -> Option<Engine> {
    let dir = test_model(MINILM)?;
    Some(Engine::builder().model(dir.to_string_lossy()).threads(2).build().unwrap())
}

fn golden() -> Vec<(String, Vec<u32>, Vec<f32>)> {
    let v: Value =
        serde_json::from_str(include_str!("../../ferrite-models/tests/golden/embeddings_minilm.json")).unwrap();
    let nums = |a: &Value| a.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<_>>();
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let ids = nums(&c["ids"]).into_iter().map(|x| x as u32).collect();
            let e = nums(&c["embedding"]).into_iter().map(|x| x as f32).collect();
            (c["text"].as_str().unwrap().to_string(), ids, e)
        })
        .collect()
}

fn vectors(r: &EmbeddingResponse) -> Vec<Vec<f32>> {
    r.data.iter().map(|d| d.embedding.to_f32().unwrap()).collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum();
    let n = |v: &[f32]| v.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

#[tokio::test]
async fn golden_texts_concurrency_and_formats() {
    let Some(engine) = engine() else { return };
    assert!(engine.is_embedding_model());
    assert_eq!(engine.embedding_dimensions(), Some(384));
    assert_eq!(engine.context_length(), 512);
    let cases = golden();
    for (text, ids, _) in &cases {
        assert_eq!(&engine.tokenizer().unwrap().encode(text, true).unwrap(), ids, "{text:?}");
    }

    // All texts in one request.
    let texts: Vec<String> = cases.iter().map(|c| c.0.clone()).collect();
    let resp = engine.embed(EmbeddingRequest::new("minilm", texts.clone())).await.unwrap();
    assert_eq!(resp.object, "list");
    assert_eq!(resp.model, "minilm");
    let total: usize = cases.iter().map(|c| c.1.len()).sum();
    assert_eq!(resp.usage.prompt_tokens as usize, total);
    assert_eq!(resp.usage.total_tokens as usize, total);
    let batched = vectors(&resp);
    for ((d, v), (text, _, want)) in resp.data.iter().zip(&batched).zip(&cases) {
        assert_eq!(d.object, "embedding");
        assert!(cosine(v, want) >= 0.99999 && max_abs_diff(v, want) <= 1e-4, "{text:?}");
    }
    assert_eq!(resp.data.iter().map(|d| d.index).collect::<Vec<_>>(), (0..cases.len() as u32).collect::<Vec<_>>());

    // One request per text, all at once: the worker combines them; same vectors.
    let singles =
        futures_util::future::join_all(texts.iter().map(|t| engine.embed(EmbeddingRequest::new("minilm", t.as_str()))))
            .await;
    for (r, b) in singles.into_iter().zip(&batched) {
        assert!(max_abs_diff(&vectors(&r.unwrap())[0], b) <= 1e-5);
    }

    // Token-id input gives the same vector as the text.
    let ids = cases[0].1.clone();
    let r = engine.embed(EmbeddingRequest::new("minilm", ids)).await.unwrap();
    assert!(max_abs_diff(&vectors(&r)[0], &batched[0]) <= 1e-5);

    // base64: little-endian f32 bytes that decode to the float answer exactly.
    let req = EmbeddingRequest::new("minilm", texts[0].as_str());
    let float = engine.embed(req.clone()).await.unwrap();
    let b64 = engine.embed(req.clone().encoding_format(EncodingFormat::Base64)).await.unwrap();
    assert!(matches!(b64.data[0].embedding, EmbeddingVector::Base64(_)));
    assert_eq!(vectors(&b64), vectors(&float));
    let json = serde_json::to_value(&b64).unwrap();
    assert!(json["data"][0]["embedding"].is_string());

    // dimensions: truncated, then unit length again.
    let full = &vectors(&float)[0];
    let short = vectors(&engine.embed(req.clone().dimensions(64)).await.unwrap()).remove(0);
    assert_eq!(short.len(), 64);
    let norm = full[..64].iter().map(|x| x * x).sum::<f32>().sqrt();
    let want: Vec<f32> = full[..64].iter().map(|x| x / norm).collect();
    assert!(max_abs_diff(&short, &want) <= 1e-6);
    assert!((short.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    assert_eq!(vectors(&engine.embed(req.clone().dimensions(384)).await.unwrap())[0].len(), 384);
    let err = engine.embed(req.clone().dimensions(385)).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidRequest { param: Some(p), .. } if p == "dimensions"), "{err:?}");

    // Blocking view.
    let blocking = ferrite::blocking::Engine::new(engine.clone());
    assert_eq!(vectors(&blocking.embed(req).unwrap()), vectors(&float));
}

#[tokio::test]
async fn errors() {
    let Some(engine) = engine() else { return };
    let long = "word ".repeat(600);
    let err = engine.embed(EmbeddingRequest::new("minilm", long)).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidRequest { param: Some(p), .. } if p == "input"), "{err:?}");
    let err = engine.embed(EmbeddingRequest::new("minilm", vec![101u32, 99_999, 102])).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidRequest { param: Some(p), .. } if p == "input"), "{err:?}");
    let err = engine.embed(EmbeddingRequest::new("minilm", Vec::<String>::new())).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidRequest { .. }), "{err:?}");

    let chat = ChatCompletionRequest::new("minilm", [ChatMessage::user("hi")]);
    let err = engine.chat(chat).await.unwrap_err();
    assert!(
        matches!(&err, Error::InvalidRequest { message, .. } if message.contains("does not support chat completions"))
    );
    let err = engine.complete(ferrite::CompletionRequest::new("minilm", "hi")).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidRequest { .. }), "{err:?}");

    let Some(gguf) = test_model(SMOLLM2) else { return };
    let chat_model = Engine::builder().model(gguf.to_string_lossy()).threads(2).kv_cache_tokens(256).build().unwrap();
    assert!(!chat_model.is_embedding_model());
    let err = chat_model.embed(EmbeddingRequest::new("smollm2", "hi")).await.unwrap_err();
    assert!(matches!(&err, Error::InvalidRequest { message, .. } if message.contains("does not support embeddings")));
}

#[test]
fn request_json() {
    let req: EmbeddingRequest = serde_json::from_value(json!({
        "model": "m", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 8, "user": "u"
    }))
    .unwrap();
    assert_eq!(req.encoding_format, Some(EncodingFormat::Base64));
    assert_eq!(req.input.len(), 2);
    for input in [json!("a"), json!([1, 2]), json!([[1], [2, 3]])] {
        let r: EmbeddingRequest = serde_json::from_value(json!({"model": "m", "input": input})).unwrap();
        r.validate().unwrap();
    }
    assert!(serde_json::from_value::<EmbeddingRequest>(json!({"model": "m", "input": "a", "extra": 1})).is_err());
    assert!(serde_json::from_value::<EmbeddingRequest>(json!({"model": "m", "input": "a", "encoding_format": "f16"}))
        .is_err());
    let r: EmbeddingRequest = serde_json::from_value(json!({"model": "m", "input": [[1], []]})).unwrap();
    assert!(r.validate().is_err());
    let r: EmbeddingRequest = serde_json::from_value(json!({"model": "m", "input": "a", "dimensions": 0})).unwrap();
    assert!(r.validate().is_err());
}
