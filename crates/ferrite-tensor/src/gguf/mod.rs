//! GGUF v2/v3 reader (memory-mapped) and a small writer.
//!
//! [`GgufFile::open`] maps the file with `memmap2` and parses the header, the metadata and the
//! tensor infos; tensor data is never copied: [`GgufFile::tensor`] returns a CPU [`Tensor`] that
//! is a window over the mapped bytes, so quantized blocks stay quantized, in the page cache.
//!
//! Layout (little-endian): magic `"GGUF"`, version u32 (2 or 3), tensor count u64, metadata
//! count u64, the metadata key/value pairs, the tensor infos (name, n_dims u32, `ne[n_dims]`
//! u64, ggml type u32, offset u64 relative to the data section), then the data section, which
//! starts at the next multiple of `general.alignment` (default 32).
//!
//! Shapes: GGUF lists dimensions innermost first (`ne[0]` is the row length); [`Shape`] is
//! outermost first, so the reader reverses them: a ggml `[576 x 1536]` matrix with
//! `ne = [576, 1536]` becomes `Shape [1536, 576]`.
//!
//! Malformed files give [`Error::Malformed`] with `format: "gguf"` (or [`Error::UnknownDType`]
//! for a tensor type ferrite does not know); parsing never panics and never allocates more than
//! a small multiple of the file's size.

mod parse;
mod value;
mod write;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub use parse::{DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_DIMS};
pub use value::{GgufValue, GgufValueType};
pub use write::GgufWriter;

use crate::cpu::{CpuStorage, SharedBytes};
use crate::{DType, Device, Error, Result, Shape, Tensor};

/// Where one tensor's data lies in a GGUF file, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    /// The tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// The element type (ggml type).
    pub dtype: DType,
    /// Row-major, outermost first: GGUF's `ne[]` reversed.
    pub shape: Shape,
    /// Absolute byte offset of the data in the file (data section start + relative offset).
    pub offset: usize,
    /// Bytes of data.
    pub len_bytes: usize,
}

/// A parsed GGUF file: metadata in file order, tensor infos, and the (mapped) bytes.
pub struct GgufFile {
    version: u32,
    metadata: Vec<(String, GgufValue)>,
    metadata_index: HashMap<String, usize>,
    tensors: Vec<GgufTensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: usize,
    data_offset: usize,
    bytes: SharedBytes,
    /// `bytes` is this crate's read-only map of the file ([`GgufFile::open`]).
    file_backed: bool,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("architecture", &self.architecture())
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .finish()
    }
}

impl GgufFile {
    /// Maps the file at `path` and parses it.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let io = |source| Error::Io { path: path.display().to_string(), source };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the map is read-only; as with every mmap-based model loader, the file must not
        // be truncated or modified by another process while it is mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let mut gguf = GgufFile::from_bytes(Arc::new(map))?;
        gguf.file_backed = true;
        // The header (metadata, the vocabulary among it) is parsed into owned values: its
        // pages need not stay resident.
        crate::cpu::release_pages(&(*gguf.bytes).as_ref()[..gguf.data_offset]);
        Ok(gguf)
    }

    /// Parses a GGUF file held in memory (or any shared byte source).
    pub fn from_bytes(bytes: SharedBytes) -> Result<GgufFile> {
        let p = parse::parse((*bytes).as_ref())?;
        Ok(GgufFile {
            version: p.version,
            metadata: p.metadata,
            metadata_index: p.metadata_index,
            tensors: p.tensors,
            tensor_index: p.tensor_index,
            alignment: p.alignment,
            data_offset: p.data_offset,
            bytes,
            file_backed: false,
        })
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Absolute byte offset of the data section.
    pub fn data_offset(&self) -> usize {
        self.data_offset
    }

    /// All metadata pairs, in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &GgufValue)> {
        self.metadata.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The metadata value under `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// `general.architecture` (e.g. `llama`, `qwen2`, `gemma3`).
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture")?.as_str()
    }

    /// All tensor infos, in file order.
    pub fn tensor_infos(&self) -> &[GgufTensorInfo] {
        &self.tensors
    }

    /// The info of tensor `name`.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &SharedBytes {
        &self.bytes
    }

    /// The raw data bytes of tensor `name` (ggml layout).
    pub fn tensor_data(&self, name: &str) -> Result<&[u8]> {
        let info = self.tensor_info(name).ok_or_else(|| Error::TensorNotFound(name.to_string()))?;
        // Ranges were checked against the file length while parsing.
        (*self.bytes)
            .as_ref()
            .get(info.offset..info.offset + info.len_bytes)
            .ok_or_else(|| parse::malformed(format!("tensor `{name}` lies outside the file")))
    }

    /// Tensor `name` as a zero-copy CPU tensor over the mapped bytes.
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let info = self.tensor_info(name).ok_or_else(|| Error::TensorNotFound(name.to_string()))?;
        mapped_tensor(&self.bytes, self.file_backed, info.offset, info.len_bytes, info.dtype, info.shape.clone())
    }
}

/// Float tensors of a mapped file up to this size are copied into owned memory.
const SMALL_TENSOR_COPY_BYTES: usize = 64 << 10;

/// A CPU tensor over `len` bytes of `bytes` at `offset`, without copying. Float data whose
/// address is not a multiple of its element size (possible with in-memory bytes, or with a
/// safetensors header whose length is not padded) is copied into aligned storage instead, so
/// f32/f16 views of the tensor always work. `file_backed`: `bytes` is a read-only map of a
/// file ([`CpuStorage::mapped_file`]); its small float tensors are copied too.
pub(crate) fn mapped_tensor(
    bytes: &SharedBytes,
    file_backed: bool,
    offset: usize,
    len: usize,
    dtype: DType,
    shape: Shape,
) -> Result<Tensor> {
    let all = (**bytes).as_ref();
    let end = offset.checked_add(len).filter(|&e| e <= all.len());
    let misaligned =
        dtype.is_float() && !(all.as_ptr() as usize).wrapping_add(offset).is_multiple_of(dtype.type_size());
    match end {
        Some(end) if misaligned => Tensor::from_bytes(&all[offset..end], dtype, shape, &Device::cpu()),
        // Small float tensors of a file (norm weights, biases) are copied: read at every step,
        // they would keep the file pages around them resident (a fault maps 64 KiB or more),
        // pages of large weights whose packed copy has replaced them.
        Some(end) if file_backed && dtype.is_float() && len <= SMALL_TENSOR_COPY_BYTES => {
            Tensor::from_bytes(&all[offset..end], dtype, shape, &Device::cpu())
        }
        _ => {
            let storage = if file_backed {
                CpuStorage::mapped_file(bytes.clone(), offset, len)?
            } else {
                CpuStorage::mapped(bytes.clone(), offset, len)?
            };
            Tensor::from_storage(Arc::new(storage), Device::cpu(), dtype, shape, 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{cpu_storage, TensorRead};

    /// Small float tensors of an opened file are owned copies; large ones and quantized ones
    /// stay views of the map. Both read the file's bytes.
    #[test]
    fn small_float_tensors_of_a_file_are_copied() {
        let f32_bytes = |n: usize| -> Vec<u8> { (0..n).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect() };
        let (norm, big) = (f32_bytes(576), f32_bytes(SMALL_TENSOR_COPY_BYTES / 4 + 8));
        let q8: Vec<u8> = (0..34 * 4).map(|i| (i % 7) as u8).collect();
        let bytes = GgufWriter::new()
            .tensor("norm", DType::F32, [576], &norm)
            .and_then(|w| w.tensor("big", DType::F32, [big.len() / 4], &big))
            .and_then(|w| w.tensor("q", DType::Q8_0, [4, 32], &q8))
            .and_then(|w| w.to_bytes())
            .expect("gguf bytes");
        let path = std::env::temp_dir().join(format!("ferrite-small-copy-{}.gguf", std::process::id()));
        std::fs::write(&path, &bytes).expect("write");
        let file = GgufFile::open(&path).expect("open");
        for (name, want, owned) in [("norm", &norm, true), ("big", &big, false), ("q", &q8, false)] {
            let t = file.tensor(name).expect("tensor");
            let storage = cpu_storage(&t, "test").expect("cpu");
            assert_eq!(matches!(storage, crate::cpu::CpuStorage::Owned { .. }), owned, "{name}");
            assert_eq!(TensorRead::new(&t, "test").expect("read").bytes(), &want[..], "{name}");
        }
        let in_memory = GgufFile::from_bytes(Arc::new(bytes)).expect("parse");
        let t = in_memory.tensor("norm").expect("tensor");
        assert!(matches!(cpu_storage(&t, "test").expect("cpu"), crate::cpu::CpuStorage::Mapped { .. }));
        let _ = std::fs::remove_file(&path);
    }
}
