//! `POST /images/generations`: request and response, as OpenAI's, with the extensions
//! `seed`, `num_inference_steps`, `guidance_scale` and `negative_prompt` (as hosted FLUX APIs
//! take them).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::types::InvalidField;

/// Most images one request may ask for (OpenAI's limit).
pub const MAX_IMAGES: u32 = 10;

/// An image generation request, as OpenAI's `POST /images/generations` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageGenerationRequest {
    /// What to draw.
    pub prompt: String,
    /// The model; a server takes its first image model when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// How many images (1 to 10, default 1), generated in one batched pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// `WIDTHxHEIGHT` in pixels, each a multiple of 16, up to the model's limit (default
    /// `1024x1024`, or the largest square the model takes if that is less; `auto` is the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<String>,
    /// Only `b64_json` (a base64 PNG) is supported; `url` is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<String>,
    /// Accepted for compatibility and ignored: `standard`, `hd`, `low`, `medium`, `high`,
    /// `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    /// Accepted for compatibility and ignored: `vivid` or `natural`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    /// An end-user id (accepted and ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Extension: the seed of the initial noise (image `i` of a request is reproducible for a
    /// given seed, size and `n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Extension: denoising steps (default: the model's, 4 for FLUX.1-schnell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_inference_steps: Option<u32>,
    /// Extension: distilled guidance, for models with a guidance embedding (FLUX.1-dev).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance_scale: Option<f32>,
    /// Extension: what not to draw, for models with true classifier-free guidance (FLUX
    /// refuses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
}

impl ImageGenerationRequest {
    /// A request for one image of `prompt`; everything else at its default.
    pub fn new(prompt: impl Into<String>) -> Self {
        ImageGenerationRequest { prompt: prompt.into(), ..Default::default() }
    }

    /// Sets `model`.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sets `n`.
    pub fn n(mut self, n: u32) -> Self {
        self.n = Some(n);
        self
    }

    /// Sets `size` to `WIDTHxHEIGHT`.
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.size = Some(format!("{width}x{height}"));
        self
    }

    /// Sets `seed`.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets `num_inference_steps`.
    pub fn num_inference_steps(mut self, steps: u32) -> Self {
        self.num_inference_steps = Some(steps);
        self
    }

    /// Checks the rules a parser cannot: a prompt, `n` in 1..=10, `size` as `WxH` in multiples
    /// of 16, `response_format` `b64_json`, known `quality` and `style`, at least one step and
    /// a finite positive guidance. The model's own limits are checked by the engine.
    pub fn validate(&self) -> Result<(), InvalidField> {
        if self.prompt.trim().is_empty() {
            return Err(InvalidField::new("prompt", "prompt must not be empty"));
        }
        if let Some(n) = self.n {
            if !(1..=MAX_IMAGES).contains(&n) {
                return Err(InvalidField::new("n", format!("n must be between 1 and {MAX_IMAGES}, got {n}")));
            }
        }
        if let Some(size) = &self.size {
            parse_size(size)?;
        }
        match self.response_format.as_deref() {
            None | Some("b64_json") => {}
            Some("url") => {
                return Err(InvalidField::new(
                    "response_format",
                    "response_format `url` is not supported: only b64_json is supported",
                ))
            }
            Some(other) => {
                return Err(InvalidField::new(
                    "response_format",
                    format!("unknown response_format `{other}`: only b64_json is supported"),
                ))
            }
        }
        let known = |field: &str, value: &Option<String>, allowed: &[&str]| match value.as_deref() {
            Some(v) if !allowed.contains(&v) => {
                Err(InvalidField::new(field, format!("unknown {field} `{v}` (one of: {})", allowed.join(", "))))
            }
            _ => Ok(()),
        };
        known("quality", &self.quality, &["standard", "hd", "low", "medium", "high", "auto"])?;
        known("style", &self.style, &["vivid", "natural"])?;
        if self.num_inference_steps == Some(0) {
            return Err(InvalidField::new("num_inference_steps", "num_inference_steps must be at least 1"));
        }
        if let Some(g) = self.guidance_scale {
            if !g.is_finite() || g <= 0.0 {
                return Err(InvalidField::new("guidance_scale", format!("guidance_scale must be positive, got {g}")));
            }
        }
        Ok(())
    }

    /// The requested `(width, height)`, or `None` when the request leaves it to the model
    /// (no `size`, or `auto`). Call [`ImageGenerationRequest::validate`] first.
    pub fn dimensions(&self) -> Result<Option<(usize, usize)>, InvalidField> {
        match self.size.as_deref() {
            None | Some("auto") => Ok(None),
            Some(s) => parse_size(s),
        }
    }
}

/// `WIDTHxHEIGHT` → `Some((width, height))`, each a positive multiple of 16; `auto` → `None`.
fn parse_size(size: &str) -> Result<Option<(usize, usize)>, InvalidField> {
    if size == "auto" {
        return Ok(None);
    }
    let malformed = || InvalidField::new("size", format!("size `{size}` is not WIDTHxHEIGHT, such as 512x512"));
    let (w, h) = size.split_once('x').ok_or_else(malformed)?;
    let parse = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        s.parse::<usize>().map_err(|_| malformed())
    };
    let (w, h) = (parse(w)?, parse(h)?);
    if w == 0 || h == 0 || w % 16 != 0 || h % 16 != 0 {
        return Err(InvalidField::new(
            "size",
            format!("size {w}x{h}: width and height must be positive multiples of 16"),
        ));
    }
    Ok(Some((w, h)))
}

/// The answer: `{"created": ..., "data": [{"b64_json": ...}, ...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImagesResponse {
    /// Unix time (seconds) the images were made.
    pub created: u64,
    /// One entry per image.
    pub data: Vec<ImageData>,
}

/// One image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageData {
    /// The image as a PNG file, base64-encoded.
    pub b64_json: String,
    /// The prompt the model used, where it rewrote it (never, for the models served here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revised_prompt: Option<String>,
}

impl ImageData {
    /// The PNG file's bytes (`None` for malformed base64).
    pub fn png(&self) -> Option<Vec<u8>> {
        super::base64::decode(&self.b64_json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(extra: serde_json::Value) -> ImageGenerationRequest {
        let mut body = json!({"prompt": "a red cube"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(body).unwrap()
    }

    fn refused(extra: serde_json::Value) -> InvalidField {
        req(extra.clone()).validate().expect_err(&extra.to_string())
    }

    #[test]
    fn sizes_parse_as_width_by_height() {
        assert_eq!(req(json!({"size": "512x256"})).dimensions(), Ok(Some((512, 256))));
        assert_eq!(req(json!({"size": "auto"})).dimensions(), Ok(None));
        assert_eq!(req(json!({})).dimensions(), Ok(None));
        for bad in ["512", "512x", "x512", "512*512", "a x b", "512x512x3", "-16x16", "+16x16", " 16x16", ""] {
            let e = refused(json!({"size": bad}));
            assert_eq!(e.param.as_deref(), Some("size"), "{bad}");
            assert!(e.message.contains("WIDTHxHEIGHT"), "{bad}: {}", e.message);
        }
        for bad in ["500x512", "512x8", "0x16"] {
            let e = refused(json!({"size": bad}));
            assert!(e.message.contains("multiples of 16"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn every_rule_names_its_field() {
        for (extra, param, says) in [
            (json!({"prompt": "  "}), "prompt", "must not be empty"),
            (json!({"n": 0}), "n", "between 1 and 10"),
            (json!({"n": 11}), "n", "between 1 and 10"),
            (json!({"response_format": "url"}), "response_format", "only b64_json is supported"),
            (json!({"response_format": "jpeg"}), "response_format", "unknown response_format `jpeg`"),
            (json!({"quality": "ultra"}), "quality", "unknown quality"),
            (json!({"style": "baroque"}), "style", "unknown style"),
            (json!({"num_inference_steps": 0}), "num_inference_steps", "at least 1"),
            (json!({"guidance_scale": -1.0}), "guidance_scale", "must be positive"),
        ] {
            let e = refused(extra.clone());
            assert_eq!(e.param.as_deref(), Some(param), "{extra}");
            assert!(e.message.contains(says), "{extra}: {}", e.message);
        }
        let ok = json!({"n": 10, "size": "256x256", "response_format": "b64_json", "quality": "standard",
            "style": "vivid", "user": "u", "seed": 7, "num_inference_steps": 2, "guidance_scale": 3.5,
            "negative_prompt": "blur", "model": "flux"});
        assert_eq!(req(ok).validate(), Ok(()));
    }

    #[test]
    fn unknown_fields_are_refused_and_responses_look_like_openai() {
        let e = serde_json::from_value::<ImageGenerationRequest>(json!({"prompt": "a", "colour": "red"}));
        assert!(e.unwrap_err().to_string().contains("colour"));
        let r = ImagesResponse { created: 1, data: vec![ImageData { b64_json: "iVBO".into(), revised_prompt: None }] };
        assert_eq!(serde_json::to_value(&r).unwrap(), json!({"created": 1, "data": [{"b64_json": "iVBO"}]}));
        let built = ImageGenerationRequest::new("cat").model("flux").n(2).size(256, 128).seed(3).num_inference_steps(2);
        assert_eq!(built.dimensions(), Ok(Some((256, 128))));
        assert_eq!(built.validate(), Ok(()));
    }
}
