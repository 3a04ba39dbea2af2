//! Embedding models: an encoder behind the scheduler's embedding worker ([`EmbedHandle`]),
//! answering [`EmbeddingRequest`]s.

use std::path::Path;
use std::sync::Arc;

use ferrite_chat::Tokenizer;
use ferrite_models::Encoder;
use ferrite_scheduler::{EmbedHandle, EmbedSubmitError};
use ferrite_tensor::Device;

use crate::types::{Embedding, EmbeddingRequest, EmbeddingResponse, EmbeddingUsage, EmbeddingVector, Prompt};
use crate::Error;

/// A loaded embedding model.
pub(crate) struct Embedder {
    pub(crate) handle: EmbedHandle,
    pub(crate) tokenizer: Arc<Tokenizer>,
    pub(crate) name: String,
    /// Length of the model's vectors.
    pub(crate) dim: usize,
    /// The longest input in tokens (special tokens included).
    pub(crate) max_tokens: usize,
    vocab: usize,
    normalize: bool,
}

/// Whether `path` holds an embedding model: a sentence-transformers folder (`modules.json`) or a
/// Hugging Face folder whose `config.json` names an encoder architecture.
pub(crate) fn is_embedding_model(path: &Path) -> bool {
    if !path.is_dir() {
        return false;
    }
    if path.join("modules.json").exists() {
        return true;
    }
    let Ok(text) = std::fs::read_to_string(path.join("config.json")) else { return false };
    let Ok(cfg) = serde_json::from_str::<serde_json::Value>(&text) else { return false };
    let encoder_type =
        matches!(cfg["model_type"].as_str(), Some("bert" | "roberta" | "xlm-roberta" | "camembert" | "nomic_bert"));
    let encoder_arch = cfg["architectures"].as_array().is_some_and(|a| {
        a.iter()
            .filter_map(|x| x.as_str())
            .any(|x| matches!(x, "BertModel" | "RobertaModel" | "XLMRobertaModel" | "NomicBertModel"))
    });
    encoder_type || encoder_arch
}

impl Embedder {
    /// Loads the folder and starts the worker thread (batches of `batch_tokens`, at most
    /// `max_queue` requests waiting).
    pub(crate) fn load(
        path: &Path,
        name: String,
        device: &Device,
        batch_tokens: usize,
        max_queue: usize,
    ) -> Result<Embedder, Error> {
        let load = |e: &dyn std::fmt::Display| Error::Load(format!("{}: {e}", path.display()));
        let encoder = Encoder::load_folder(path, device).map_err(|e| load(&e))?;
        let config = path.join("tokenizer_config.json");
        let config = config.exists().then_some(config);
        let tokenizer = Tokenizer::from_file(&path.join("tokenizer.json"), config.as_deref()).map_err(|e| load(&e))?;
        let (dim, max_tokens, vocab) = (encoder.dim(), encoder.config().max_tokens(), encoder.config().vocab);
        let normalize = encoder.pooling().normalize;
        let handle = EmbedHandle::spawn(Box::new(encoder), batch_tokens, max_queue)
            .map_err(|e| Error::Load(format!("starting the embedding thread: {e}")))?;
        Ok(Embedder { handle, tokenizer: Arc::new(tokenizer), name, dim, max_tokens, vocab, normalize })
    }

    /// Token ids of every input, checked against the model's limits.
    fn inputs(&self, req: &EmbeddingRequest) -> Result<Vec<Vec<u32>>, Error> {
        let encode = |s: &String| self.tokenizer.encode(s, true).map_err(|e| Error::invalid("input", e.to_string()));
        let inputs = match &req.input {
            Prompt::Text(s) => vec![encode(s)?],
            Prompt::Texts(v) => v.iter().map(encode).collect::<Result<_, _>>()?,
            Prompt::Tokens(t) => vec![t.clone()],
            Prompt::TokenBatches(b) => b.clone(),
        };
        for (i, ids) in inputs.iter().enumerate() {
            if ids.len() > self.max_tokens {
                return Err(Error::invalid(
                    "input",
                    format!(
                        "input {i} has {} tokens; model {} takes at most {} tokens per input",
                        ids.len(),
                        self.name,
                        self.max_tokens
                    ),
                ));
            }
            if let Some(&bad) = ids.iter().find(|&&t| t as usize >= self.vocab) {
                return Err(Error::invalid("input", format!("input {i}: token id {bad} is outside the vocabulary")));
            }
        }
        Ok(inputs)
    }

    pub(crate) async fn embed(&self, req: EmbeddingRequest) -> Result<EmbeddingResponse, Error> {
        req.validate()?;
        if let Some(d) = req.dimensions {
            if d as usize > self.dim {
                let msg = format!("dimensions {d} exceeds the {} dimensions of model {}", self.dim, self.name);
                return Err(Error::invalid("dimensions", msg));
            }
        }
        let inputs = self.inputs(&req)?;
        let tokens: usize = inputs.iter().map(Vec::len).sum();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.handle
            .submit(
                inputs,
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            )
            .map_err(|e| match e {
                EmbedSubmitError::Overloaded(_) => Error::Overloaded(e.to_string()),
                EmbedSubmitError::Stopped => Error::Internal(e.to_string()),
            })?;
        let vectors = rx
            .await
            .map_err(|_| Error::Internal("the embedding worker dropped the request".into()))?
            .map_err(Error::Internal)?;
        let format = req.encoding_format.unwrap_or_default();
        let data = vectors
            .into_iter()
            .enumerate()
            .map(|(i, mut v)| {
                if let Some(d) = req.dimensions {
                    v.truncate(d as usize);
                    if self.normalize || d as usize != self.dim {
                        ferrite_models::pooling::l2_normalize(&mut v);
                    }
                }
                Embedding { object: "embedding".into(), index: i as u32, embedding: EmbeddingVector::encode(v, format) }
            })
            .collect();
        let usage = EmbeddingUsage { prompt_tokens: tokens as u32, total_tokens: tokens as u32 };
        Ok(EmbeddingResponse { object: "list".into(), data, model: req.model, usage })
    }
}
