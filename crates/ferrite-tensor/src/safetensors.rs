//! safetensors reader (single file and sharded), memory-mapped.
//!
//! [`SafetensorsModel::open`] takes a `.safetensors` file, a `model.safetensors.index.json`
//! (sharded checkpoints: its `weight_map` maps each tensor name to a shard file in the same
//! folder), or a folder holding either. Headers are parsed and validated by the `safetensors`
//! crate (header size, JSON, contiguous in-range offsets, sizes matching shapes); tensor data is
//! never copied: [`SafetensorsModel::tensor`] returns a CPU [`Tensor`] over the mapped bytes.
//!
//! Every tensor is listed whatever its dtype; only F32, F16 and BF16 load as tensors. Others
//! (I64 `position_ids`, U8, F64, ...) give [`Error::UnknownDType`] with `format: "safetensors"`
//! when loaded. Malformed files and indexes give [`Error::Malformed`] with
//! `format: "safetensors"` (or [`Error::Io`]), never a panic.

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use crate::cpu::SharedBytes;
use crate::gguf::mapped_tensor;
use crate::{DType, Error, Result, Shape, Tensor};

/// The file name of a single-file checkpoint inside a model folder.
pub const SINGLE_FILE: &str = "model.safetensors";
/// The file name of a sharded checkpoint's index inside a model folder.
pub const INDEX_FILE: &str = "model.safetensors.index.json";
/// Largest index JSON we read (real ones are well under a megabyte).
const MAX_INDEX_BYTES: u64 = 64 << 20;

fn malformed(reason: impl Into<String>) -> Error {
    Error::Malformed { format: "safetensors", reason: reason.into() }
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io { path: path.display().to_string(), source }
}

/// Where one tensor lies in a (shard) file, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetensorsTensorInfo {
    /// The tensor name, e.g. `encoder.layer.0.attention.self.query.weight`.
    pub name: String,
    /// The element type when ferrite can load it (F32, F16, BF16), else `None`.
    pub dtype: Option<DType>,
    /// The dtype as named in the header (`F32`, `I64`, `BOOL`, ...).
    pub dtype_name: String,
    /// Row-major shape, outermost first (as stored).
    pub shape: Shape,
    /// Index of the shard file holding the data (0 for a single file).
    pub shard: usize,
    /// Absolute byte offset of the data in the shard file.
    pub offset: usize,
    /// Bytes of data.
    pub len_bytes: usize,
}

/// One mapped safetensors file.
struct Shard {
    path: Option<PathBuf>,
    bytes: SharedBytes,
    metadata: Option<HashMap<String, String>>,
}

/// A checkpoint of one or more safetensors files, mapped, with its tensor infos in file order.
pub struct SafetensorsModel {
    shards: Vec<Shard>,
    tensors: Vec<SafetensorsTensorInfo>,
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for SafetensorsModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsModel")
            .field("shards", &self.shards.iter().map(|s| s.path.clone()).collect::<Vec<_>>())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// What one file's header holds: tensor infos (in data order) and `__metadata__`.
type ShardHeader = (Vec<SafetensorsTensorInfo>, Option<HashMap<String, String>>);

/// Parses one safetensors file's header.
fn parse_shard(bytes: &[u8], shard: usize) -> Result<ShardHeader> {
    let (header_len, meta) =
        safetensors::SafeTensors::read_metadata(bytes).map_err(|e| malformed(format!("invalid header: {e:?}")))?;
    // read_metadata checked that 8 + header + data is exactly the buffer.
    let data_start = header_len.checked_add(8).ok_or_else(|| malformed("header length overflows"))?;
    let mut infos = Vec::new();
    for (name, t) in meta.tensors() {
        let (s, e) = t.data_offsets;
        let offset = data_start.checked_add(s).filter(|_| e >= s);
        let end = data_start.checked_add(e);
        let (offset, len_bytes) = match (offset, end) {
            (Some(o), Some(end)) if end <= bytes.len() => (o, e - s),
            _ => return Err(malformed(format!("tensor `{name}` data {s}..{e} lies outside the file"))),
        };
        let dtype_name = format!("{:?}", t.dtype);
        infos.push(SafetensorsTensorInfo {
            dtype: DType::from_safetensors(&dtype_name),
            dtype_name,
            shape: Shape::new(t.shape.clone()),
            shard,
            offset,
            len_bytes,
            name,
        });
    }
    infos.sort_by(|a, b| (a.offset, a.len_bytes, &a.name).cmp(&(b.offset, b.len_bytes, &b.name)));
    Ok((infos, meta.metadata().clone()))
}

fn map_file(path: &Path) -> Result<SharedBytes> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    // SAFETY: the map is read-only; as with every mmap-based model loader, the file must not
    // be truncated or modified by another process while it is mapped.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io_error(path, e))?;
    Ok(Arc::new(map))
}

/// A shard file name from an index must stay inside the index's folder.
fn shard_path(dir: &Path, file: &str) -> Result<PathBuf> {
    let rel = Path::new(file);
    if file.is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(malformed(format!("index names shard `{file}`, which is not a plain relative path")));
    }
    Ok(dir.join(rel))
}

#[derive(serde::Deserialize)]
struct IndexJson {
    weight_map: BTreeMap<String, String>,
}

impl SafetensorsModel {
    /// Opens a `.safetensors` file, a `model.safetensors.index.json`, or a folder holding one
    /// of them (the index wins when both are there).
    pub fn open(path: impl AsRef<Path>) -> Result<SafetensorsModel> {
        let path = path.as_ref();
        if path.is_dir() {
            let index = path.join(INDEX_FILE);
            if index.is_file() {
                return SafetensorsModel::open_index(&index);
            }
            let single = path.join(SINGLE_FILE);
            if single.is_file() {
                return SafetensorsModel::open_file(&single);
            }
            let why = format!("folder has neither {INDEX_FILE} nor {SINGLE_FILE}");
            return Err(io_error(path, std::io::Error::new(std::io::ErrorKind::NotFound, why)));
        }
        if path.extension().is_some_and(|e| e == "json") {
            SafetensorsModel::open_index(path)
        } else {
            SafetensorsModel::open_file(path)
        }
    }

    /// Opens one `.safetensors` file.
    pub fn open_file(path: impl AsRef<Path>) -> Result<SafetensorsModel> {
        let path = path.as_ref();
        let bytes = map_file(path)?;
        let (tensors, metadata) = parse_shard((*bytes).as_ref(), 0).map_err(|e| in_file(e, path))?;
        SafetensorsModel::build(vec![Shard { path: Some(path.to_path_buf()), bytes, metadata }], tensors)
    }

    /// Opens a sharded checkpoint from its `model.safetensors.index.json`.
    pub fn open_index(path: impl AsRef<Path>) -> Result<SafetensorsModel> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
        let size = file.metadata().map_err(|e| io_error(path, e))?.len();
        if size > MAX_INDEX_BYTES {
            return Err(malformed(format!("index {} is {size} bytes (too large)", path.display())));
        }
        let text = std::fs::read(path).map_err(|e| io_error(path, e))?;
        let index: IndexJson =
            serde_json::from_slice(&text).map_err(|e| malformed(format!("index {}: {e}", path.display())))?;
        let dir = path.parent().unwrap_or_else(|| Path::new("."));

        let mut files: Vec<&str> = index.weight_map.values().map(String::as_str).collect();
        files.sort_unstable();
        files.dedup();
        let mut shards = Vec::with_capacity(files.len());
        let mut by_shard = Vec::with_capacity(files.len());
        for (i, file) in files.iter().enumerate() {
            let p = shard_path(dir, file)?;
            let bytes = map_file(&p)?;
            let (infos, metadata) = parse_shard((*bytes).as_ref(), i).map_err(|e| in_file(e, &p))?;
            let names: HashMap<String, SafetensorsTensorInfo> =
                infos.into_iter().map(|t| (t.name.clone(), t)).collect();
            by_shard.push(names);
            shards.push(Shard { path: Some(p), bytes, metadata });
        }
        let mut tensors = Vec::with_capacity(index.weight_map.len());
        for (name, file) in &index.weight_map {
            let i = files.binary_search(&file.as_str()).map_err(|_| malformed("index shard lookup"))?;
            let info = by_shard[i]
                .remove(name)
                .ok_or_else(|| malformed(format!("index maps `{name}` to {file}, which does not hold it")))?;
            tensors.push(info);
        }
        tensors.sort_by(|a, b| (a.shard, a.offset, &a.name).cmp(&(b.shard, b.offset, &b.name)));
        SafetensorsModel::build(shards, tensors)
    }

    /// Parses one safetensors file held in memory (or any shared byte source).
    pub fn from_bytes(bytes: SharedBytes) -> Result<SafetensorsModel> {
        let (tensors, metadata) = parse_shard((*bytes).as_ref(), 0)?;
        SafetensorsModel::build(vec![Shard { path: None, bytes, metadata }], tensors)
    }

    fn build(shards: Vec<Shard>, tensors: Vec<SafetensorsTensorInfo>) -> Result<SafetensorsModel> {
        let mut index = HashMap::with_capacity(tensors.len());
        for (i, t) in tensors.iter().enumerate() {
            if index.insert(t.name.clone(), i).is_some() {
                return Err(malformed(format!("duplicate tensor name `{}`", t.name)));
            }
        }
        Ok(SafetensorsModel { shards, tensors, index })
    }

    /// Tensor names, in file order (shard by shard).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|t| t.name.as_str())
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the checkpoint holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// All tensor infos, in file order.
    pub fn tensor_infos(&self) -> &[SafetensorsTensorInfo] {
        &self.tensors
    }

    /// The info of tensor `name`.
    pub fn tensor_info(&self, name: &str) -> Option<&SafetensorsTensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The dtype (an error for dtypes ferrite does not load) and shape of tensor `name`.
    pub fn dtype_and_shape(&self, name: &str) -> Option<(Result<DType>, &Shape)> {
        let t = self.tensor_info(name)?;
        Some((loadable_dtype(t), &t.shape))
    }

    /// The `__metadata__` string map of the (first) file, if any.
    pub fn metadata(&self) -> Option<&HashMap<String, String>> {
        self.shards.first()?.metadata.as_ref()
    }

    /// The shard files (empty paths for in-memory bytes).
    pub fn shard_paths(&self) -> impl Iterator<Item = Option<&Path>> {
        self.shards.iter().map(|s| s.path.as_deref())
    }

    /// The raw little-endian bytes of tensor `name`, whatever its dtype.
    pub fn tensor_data(&self, name: &str) -> Result<&[u8]> {
        let t = self.tensor_info(name).ok_or_else(|| Error::TensorNotFound(name.to_string()))?;
        let shard = self.shards.get(t.shard).ok_or_else(|| malformed("shard index out of range"))?;
        (*shard.bytes)
            .as_ref()
            .get(t.offset..t.offset + t.len_bytes)
            .ok_or_else(|| malformed(format!("tensor `{name}` lies outside its file")))
    }

    /// Tensor `name` as a CPU tensor over the mapped bytes (F32, F16 and BF16 only).
    pub fn tensor(&self, name: &str) -> Result<Tensor> {
        let t = self.tensor_info(name).ok_or_else(|| Error::TensorNotFound(name.to_string()))?;
        let dtype = loadable_dtype(t)?;
        let shard = self.shards.get(t.shard).ok_or_else(|| malformed("shard index out of range"))?;
        mapped_tensor(&shard.bytes, false, t.offset, t.len_bytes, dtype, t.shape.clone())
    }
}

fn loadable_dtype(t: &SafetensorsTensorInfo) -> Result<DType> {
    t.dtype.ok_or_else(|| Error::UnknownDType {
        format: "safetensors",
        id: format!("{} (tensor `{}`: ferrite loads F32, F16 and BF16)", t.dtype_name, t.name),
    })
}

/// Names the file in a parse error.
fn in_file(e: Error, path: &Path) -> Error {
    match e {
        Error::Malformed { format, reason } => {
            Error::Malformed { format, reason: format!("{}: {reason}", path.display()) }
        }
        e => e,
    }
}
