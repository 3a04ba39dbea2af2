//! The GGUF byte-level parser. Every count and length read from the file is bounded by the
//! bytes left in it before anything is allocated, and every offset computation is checked, so a
//! malformed or hostile file gives `Error::Malformed` (or `Error::UnknownDType`), never a panic,
//! a hang or a huge allocation.

use std::collections::HashMap;

use super::value::{GgufValue, GgufValueType};
use super::GgufTensorInfo;
use crate::{DType, Error, Result, Shape};

/// `"GGUF"` as the first four bytes of the file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// The alignment of the data section and of each tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: usize = 32;
/// Most dimensions a GGUF tensor may have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Deepest nesting of arrays inside arrays we accept (real files never nest at all).
pub const MAX_ARRAY_DEPTH: usize = 8;

/// Fewest bytes a key/value pair occupies: key length (u64) + value type (u32) + a 1-byte value.
const MIN_KV_LEN: usize = 8 + 4 + 1;
/// Fewest bytes a tensor info occupies: name length + n_dims + type + offset.
const MIN_TENSOR_INFO_LEN: usize = 8 + 4 + 4 + 8;

pub(super) fn malformed(reason: impl Into<String>) -> Error {
    Error::Malformed { format: "gguf", reason: reason.into() }
}

/// Everything read from a GGUF file's header, metadata and tensor infos.
pub(super) struct Parsed {
    pub version: u32,
    pub metadata: Vec<(String, GgufValue)>,
    pub metadata_index: HashMap<String, usize>,
    pub tensors: Vec<GgufTensorInfo>,
    pub tensor_index: HashMap<String, usize>,
    pub alignment: usize,
    pub data_offset: usize,
}

/// A little-endian reader over the file bytes that never reads past the end.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(malformed(format!(
                "truncated: {what} needs {n} bytes at offset {}, only {} left",
                self.pos,
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A u64 count of items of at least `min_each` bytes each, checked against the bytes left.
    fn count(&mut self, what: &str, min_each: usize) -> Result<usize> {
        let at = self.pos;
        let n = self.u64(what)?;
        let max = (self.remaining() / min_each.max(1)) as u64;
        if n > max {
            return Err(malformed(format!(
                "{what} {n} at offset {at} is impossible: only {} bytes follow",
                self.remaining()
            )));
        }
        // n <= remaining bytes, which fit in usize.
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let at = self.pos;
        let len = self.count(what, 1)?;
        let bytes = self.take(len, what)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| malformed(format!("{what} at offset {at} is not valid UTF-8: {e}")))
    }

    fn value_type(&mut self, what: &str) -> Result<GgufValueType> {
        let at = self.pos;
        let id = self.u32(what)?;
        GgufValueType::from_id(id)
            .ok_or_else(|| malformed(format!("unknown value type {id} for {what} at offset {at}")))
    }

    fn value(&mut self, ty: GgufValueType, depth: usize, key: &str) -> Result<GgufValue> {
        use GgufValueType as T;
        Ok(match ty {
            T::U8 => GgufValue::U8(u8::from_le_bytes(self.array(key)?)),
            T::I8 => GgufValue::I8(i8::from_le_bytes(self.array(key)?)),
            T::U16 => GgufValue::U16(u16::from_le_bytes(self.array(key)?)),
            T::I16 => GgufValue::I16(i16::from_le_bytes(self.array(key)?)),
            T::U32 => GgufValue::U32(u32::from_le_bytes(self.array(key)?)),
            T::I32 => GgufValue::I32(i32::from_le_bytes(self.array(key)?)),
            T::U64 => GgufValue::U64(u64::from_le_bytes(self.array(key)?)),
            T::I64 => GgufValue::I64(i64::from_le_bytes(self.array(key)?)),
            T::F32 => GgufValue::F32(f32::from_le_bytes(self.array(key)?)),
            T::F64 => GgufValue::F64(f64::from_le_bytes(self.array(key)?)),
            T::Bool => {
                let at = self.pos;
                match self.array::<1>(key)?[0] {
                    0 => GgufValue::Bool(false),
                    1 => GgufValue::Bool(true),
                    b => return Err(malformed(format!("bool {b} for `{key}` at offset {at}"))),
                }
            }
            T::String => GgufValue::String(self.string(key)?),
            T::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(malformed(format!("arrays nested deeper than {MAX_ARRAY_DEPTH} in `{key}`")));
                }
                let item = self.value_type(key)?;
                let n = self.count("array length", item.min_encoded_len())?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(item, depth + 1, key)?);
                }
                GgufValue::Array(items)
            }
        })
    }
}

fn check_version(version: u32) -> Result<()> {
    match version {
        2 | 3 => Ok(()),
        1 => Err(malformed("GGUF version 1 is not supported (only versions 2 and 3)")),
        v if matches!(v.swap_bytes(), 2 | 3) => {
            Err(malformed(format!("big-endian GGUF (version {}) is not supported", v.swap_bytes())))
        }
        v => Err(malformed(format!("unsupported GGUF version {v} (only versions 2 and 3)"))),
    }
}

/// Reads one tensor info; offsets are still relative to the data section.
fn tensor_info(c: &mut Cursor<'_>) -> Result<(GgufTensorInfo, u64)> {
    let name = c.string("tensor name")?;
    let n_dims = c.u32("tensor n_dims")? as usize;
    if n_dims > MAX_DIMS {
        return Err(malformed(format!("tensor `{name}` has {n_dims} dims (at most {MAX_DIMS})")));
    }
    let mut ne = [1usize; MAX_DIMS];
    for d in ne.iter_mut().take(n_dims) {
        let v = c.u64("tensor dimension")?;
        *d = usize::try_from(v)
            .ok()
            .filter(|&v| v <= i64::MAX as usize)
            .ok_or_else(|| malformed(format!("tensor `{name}` has dimension {v}")))?;
    }
    let type_id = c.u32("tensor type")?;
    let dtype = DType::from_gguf_id(type_id)
        .ok_or_else(|| Error::UnknownDType { format: "gguf", id: format!("{type_id} (tensor `{name}`)") })?;
    let offset = c.u64("tensor offset")?;
    // GGUF lists ne[0] (the row length) first; Shape is outermost first.
    let shape = Shape::new(ne[..n_dims].iter().rev().copied().collect::<Vec<_>>());
    let numel = shape.checked_numel().ok_or_else(|| malformed(format!("tensor `{name}` shape {shape:?} overflows")))?;
    if ne[0] % dtype.block_size() != 0 {
        return Err(malformed(format!(
            "tensor `{name}` row length {} is not a multiple of the {dtype} block size {}",
            ne[0],
            dtype.block_size()
        )));
    }
    let len_bytes = dtype
        .bytes_for(numel)
        .ok_or_else(|| malformed(format!("tensor `{name}` of {numel} {dtype} elements overflows")))?;
    Ok((GgufTensorInfo { name, dtype, shape, offset: 0, len_bytes }, offset))
}

/// The alignment from `general.alignment` (u32, nonzero power of two), or the default.
fn alignment(metadata: &[(String, GgufValue)], index: &HashMap<String, usize>) -> Result<usize> {
    let Some(&i) = index.get("general.alignment") else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    match metadata[i].1 {
        GgufValue::U32(a) if a != 0 && a.is_power_of_two() => Ok(a as usize),
        GgufValue::U32(a) => Err(malformed(format!("general.alignment {a} is not a power of two"))),
        ref v => Err(malformed(format!("general.alignment has type {:?}, expected U32", v.value_type()))),
    }
}

/// Parses and validates a whole GGUF file held in `buf`.
pub(super) fn parse(buf: &[u8]) -> Result<Parsed> {
    let mut c = Cursor { buf, pos: 0 };
    let magic: [u8; 4] = c.array("magic")?;
    if magic != GGUF_MAGIC {
        return Err(malformed(format!("bad magic {magic:02x?}, expected \"GGUF\"")));
    }
    let version = c.u32("version")?;
    check_version(version)?;
    let tensor_count = c.count("tensor count", MIN_TENSOR_INFO_LEN)?;
    let kv_count = c.count("metadata count", MIN_KV_LEN)?;

    let mut metadata = Vec::with_capacity(kv_count);
    let mut metadata_index = HashMap::with_capacity(kv_count);
    for _ in 0..kv_count {
        let key = c.string("metadata key")?;
        let ty = c.value_type(&key)?;
        let value = c.value(ty, 0, &key)?;
        if metadata_index.insert(key.clone(), metadata.len()).is_some() {
            return Err(malformed(format!("duplicate metadata key `{key}`")));
        }
        metadata.push((key, value));
    }
    let alignment = alignment(&metadata, &metadata_index)?;

    let mut tensors = Vec::with_capacity(tensor_count);
    let mut relative = Vec::with_capacity(tensor_count);
    let mut tensor_index = HashMap::with_capacity(tensor_count);
    for _ in 0..tensor_count {
        let (info, offset) = tensor_info(&mut c)?;
        if tensor_index.insert(info.name.clone(), tensors.len()).is_some() {
            return Err(malformed(format!("duplicate tensor name `{}`", info.name)));
        }
        tensors.push(info);
        relative.push(offset);
    }
    let data_offset =
        c.pos.checked_next_multiple_of(alignment).ok_or_else(|| malformed("data section offset overflows"))?;

    for (info, &rel) in tensors.iter_mut().zip(&relative) {
        if rel % alignment as u64 != 0 {
            return Err(malformed(format!(
                "tensor `{}` offset {rel} is not a multiple of the alignment {alignment}",
                info.name
            )));
        }
        let start = usize::try_from(rel).ok().and_then(|r| r.checked_add(data_offset));
        let end = start.and_then(|s| s.checked_add(info.len_bytes));
        match (start, end) {
            (Some(s), Some(e)) if e <= buf.len() => info.offset = s,
            _ => {
                return Err(malformed(format!(
                    "tensor `{}` data ({} bytes at data offset {rel}) lies outside the file of {} bytes",
                    info.name,
                    info.len_bytes,
                    buf.len()
                )))
            }
        }
    }
    check_overlaps(&tensors)?;
    Ok(Parsed { version, metadata, metadata_index, tensors, tensor_index, alignment, data_offset })
}

/// Rejects tensors whose data ranges overlap (empty tensors overlap nothing).
fn check_overlaps(tensors: &[GgufTensorInfo]) -> Result<()> {
    let mut order: Vec<&GgufTensorInfo> = tensors.iter().filter(|t| t.len_bytes > 0).collect();
    order.sort_by_key(|t| t.offset);
    for w in order.windows(2) {
        // Ends were checked against the file length, so they do not overflow.
        if w[0].offset + w[0].len_bytes > w[1].offset {
            return Err(malformed(format!("tensors `{}` and `{}` overlap", w[0].name, w[1].name)));
        }
    }
    Ok(())
}
