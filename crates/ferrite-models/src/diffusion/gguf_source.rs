//! A FLUX transformer stored as one GGUF file with the original Black Forest Labs tensor names
//! (as the common quantized FLUX GGUF files are), served under diffusers' names so the one
//! transformer definition loads it. Weights stay in their GGUF blocks: fused tensors (`qkv`,
//! `linear1`) are split into row ranges, which are views of the same blocks, not copies.

use std::path::Path;
use std::sync::Arc;

use ferrite_tensor::gguf::GgufFile;
use ferrite_tensor::{Device, Tensor};

use super::component::TensorSource;
use crate::{Error, Result};

/// Where a diffusers tensor lives in a BFL checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BflLocation {
    /// The whole tensor `name`.
    Whole(String),
    /// Rows `part * D .. (part + len) * D` of `name` (`D` the model width).
    Rows { name: String, part: usize, len: usize },
    /// `name` with its two halves of rows swapped (diffusers' `norm_out` is (scale, shift),
    /// BFL's `final_layer.adaLN_modulation.1` is (shift, scale)).
    SwappedHalves(String),
}

/// The BFL location of diffusers tensor `name`, or `None` for a name FLUX does not have.
pub fn bfl_location(name: &str) -> Option<BflLocation> {
    let (stem, kind) = name.rsplit_once('.')?;
    let whole = |n: &str| Some(BflLocation::Whole(format!("{n}.{kind}")));
    let rows = |n: &str, part: usize, len: usize| Some(BflLocation::Rows { name: format!("{n}.{kind}"), part, len });
    let top = match stem {
        "x_embedder" => Some("img_in"),
        "context_embedder" => Some("txt_in"),
        "time_text_embed.timestep_embedder.linear_1" => Some("time_in.in_layer"),
        "time_text_embed.timestep_embedder.linear_2" => Some("time_in.out_layer"),
        "time_text_embed.guidance_embedder.linear_1" => Some("guidance_in.in_layer"),
        "time_text_embed.guidance_embedder.linear_2" => Some("guidance_in.out_layer"),
        "time_text_embed.text_embedder.linear_1" => Some("vector_in.in_layer"),
        "time_text_embed.text_embedder.linear_2" => Some("vector_in.out_layer"),
        "proj_out" => Some("final_layer.linear"),
        _ => None,
    };
    if let Some(t) = top {
        return whole(t);
    }
    if stem == "norm_out.linear" {
        return Some(BflLocation::SwappedHalves(format!("final_layer.adaLN_modulation.1.{kind}")));
    }
    if let Some(rest) = stem.strip_prefix("transformer_blocks.") {
        let (i, part) = rest.split_once('.')?;
        let b = format!("double_blocks.{i}");
        let norm = |n: &str| Some(BflLocation::Whole(format!("{b}.{n}.scale")));
        return match part {
            "norm1.linear" => whole(&format!("{b}.img_mod.lin")),
            "norm1_context.linear" => whole(&format!("{b}.txt_mod.lin")),
            "attn.to_q" => rows(&format!("{b}.img_attn.qkv"), 0, 1),
            "attn.to_k" => rows(&format!("{b}.img_attn.qkv"), 1, 1),
            "attn.to_v" => rows(&format!("{b}.img_attn.qkv"), 2, 1),
            "attn.add_q_proj" => rows(&format!("{b}.txt_attn.qkv"), 0, 1),
            "attn.add_k_proj" => rows(&format!("{b}.txt_attn.qkv"), 1, 1),
            "attn.add_v_proj" => rows(&format!("{b}.txt_attn.qkv"), 2, 1),
            "attn.to_out.0" => whole(&format!("{b}.img_attn.proj")),
            "attn.to_add_out" => whole(&format!("{b}.txt_attn.proj")),
            "attn.norm_q" if kind == "weight" => norm("img_attn.norm.query_norm"),
            "attn.norm_k" if kind == "weight" => norm("img_attn.norm.key_norm"),
            "attn.norm_added_q" if kind == "weight" => norm("txt_attn.norm.query_norm"),
            "attn.norm_added_k" if kind == "weight" => norm("txt_attn.norm.key_norm"),
            "ff.net.0.proj" => whole(&format!("{b}.img_mlp.0")),
            "ff.net.2" => whole(&format!("{b}.img_mlp.2")),
            "ff_context.net.0.proj" => whole(&format!("{b}.txt_mlp.0")),
            "ff_context.net.2" => whole(&format!("{b}.txt_mlp.2")),
            _ => None,
        };
    }
    if let Some(rest) = stem.strip_prefix("single_transformer_blocks.") {
        let (i, part) = rest.split_once('.')?;
        let b = format!("single_blocks.{i}");
        return match part {
            "norm.linear" => whole(&format!("{b}.modulation.lin")),
            "attn.to_q" => rows(&format!("{b}.linear1"), 0, 1),
            "attn.to_k" => rows(&format!("{b}.linear1"), 1, 1),
            "attn.to_v" => rows(&format!("{b}.linear1"), 2, 1),
            "proj_mlp" => rows(&format!("{b}.linear1"), 3, 4),
            "proj_out" => whole(&format!("{b}.linear2")),
            "attn.norm_q" if kind == "weight" => Some(BflLocation::Whole(format!("{b}.norm.query_norm.scale"))),
            "attn.norm_k" if kind == "weight" => Some(BflLocation::Whole(format!("{b}.norm.key_norm.scale"))),
            _ => None,
        };
    }
    None
}

/// A BFL-named FLUX GGUF file as a [`TensorSource`] of diffusers names.
pub struct BflGguf {
    file: Arc<GgufFile>,
    /// The model width `D`, from `img_in.weight`'s rows.
    dim: usize,
}

impl BflGguf {
    pub fn open(path: &Path) -> Result<BflGguf> {
        let file = Arc::new(GgufFile::open(path)?);
        let img_in = file.tensor("img_in.weight").map_err(|_| {
            Error::Config(format!("{}: no `img_in.weight`: not a FLUX transformer GGUF", path.display()))
        })?;
        let dim = img_in.dims()[0];
        Ok(BflGguf { file, dim })
    }

    fn raw(&self, name: &str) -> Result<Tensor> {
        if self.file.tensor_info(name).is_none() {
            return Err(Error::MissingWeight(name.into()));
        }
        Ok(self.file.tensor(name)?)
    }
}

impl TensorSource for BflGguf {
    fn get(&self, name: &str) -> Result<Tensor> {
        let loc = bfl_location(name).ok_or_else(|| Error::MissingWeight(format!("{name} (no BFL name for it)")))?;
        let d = self.dim;
        match loc {
            BflLocation::Whole(n) => self.raw(&n),
            BflLocation::Rows { name: n, part, len } => {
                let t = self.raw(&n)?;
                Ok(t.narrow_rows(part * d, len * d)?)
            }
            BflLocation::SwappedHalves(n) => {
                let t = self.raw(&n)?;
                let rows = t.dims()[0];
                if rows % 2 != 0 {
                    return Err(Error::Config(format!("`{n}` has an odd number of rows ({rows})")));
                }
                let h = rows / 2;
                let mut bytes = t.narrow_rows(h, h)?.to_bytes()?;
                bytes.extend(t.narrow_rows(0, h)?.to_bytes()?);
                Ok(Tensor::from_bytes(&bytes, t.dtype(), t.shape().clone(), &Device::cpu())?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_tensors_split_by_rows() {
        assert_eq!(
            bfl_location("transformer_blocks.3.attn.add_k_proj.bias"),
            Some(BflLocation::Rows { name: "double_blocks.3.txt_attn.qkv.bias".into(), part: 1, len: 1 })
        );
        assert_eq!(
            bfl_location("single_transformer_blocks.0.proj_mlp.weight"),
            Some(BflLocation::Rows { name: "single_blocks.0.linear1.weight".into(), part: 3, len: 4 })
        );
        assert_eq!(
            bfl_location("norm_out.linear.weight"),
            Some(BflLocation::SwappedHalves("final_layer.adaLN_modulation.1.weight".into()))
        );
        assert_eq!(
            bfl_location("transformer_blocks.0.attn.norm_added_q.weight"),
            Some(BflLocation::Whole("double_blocks.0.txt_attn.norm.query_norm.scale".into()))
        );
        assert_eq!(bfl_location("transformer_blocks.0.attn.nonsense.weight"), None);
    }
}
