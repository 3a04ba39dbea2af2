//! A small GGUF writer: enough to build synthetic model files for tests and fuzz seeds.

use super::parse::{malformed, DEFAULT_ALIGNMENT, GGUF_MAGIC};
use super::value::{GgufValue, GgufValueType};
use crate::{DType, Result, Shape};

/// Builds a GGUF v2/v3 file in memory. Tensors are laid out in the order they were added, each
/// at the next multiple of the alignment (`general.alignment` when set as a `U32`, else 32).
#[derive(Debug, Clone)]
pub struct GgufWriter {
    version: u32,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<(String, DType, Shape, Vec<u8>)>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter::new()
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &GgufValue) -> Result<()> {
    match v {
        GgufValue::U8(x) => out.push(*x),
        GgufValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(u8::from(*x)),
        GgufValue::String(s) => put_str(out, s),
        GgufValue::Array(items) => {
            let ty = items.first().map_or(GgufValueType::U8, GgufValue::value_type);
            if items.iter().any(|i| i.value_type() != ty) {
                return Err(malformed("cannot write an array whose items have different types"));
            }
            out.extend_from_slice(&ty.id().to_le_bytes());
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                put_value(out, i)?;
            }
        }
    }
    Ok(())
}

impl GgufWriter {
    /// An empty GGUF v3 file.
    pub fn new() -> Self {
        GgufWriter { version: 3, metadata: Vec::new(), tensors: Vec::new() }
    }

    /// Sets the version written in the header (the reader accepts 2 and 3).
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Appends a metadata pair (keys are written in the order they are added).
    pub fn metadata(mut self, key: impl Into<String>, value: GgufValue) -> Self {
        self.metadata.push((key.into(), value));
        self
    }

    /// Appends a tensor. `shape` is outermost first (it is written reversed, as GGUF's `ne[]`);
    /// `data` must hold exactly the bytes of `shape` elements of `dtype`.
    pub fn tensor(
        mut self,
        name: impl Into<String>,
        dtype: DType,
        shape: impl Into<Shape>,
        data: &[u8],
    ) -> Result<Self> {
        let (name, shape) = (name.into(), shape.into());
        let need = shape.checked_numel().and_then(|n| dtype.bytes_for(n));
        if need != Some(data.len()) {
            return Err(malformed(format!(
                "tensor `{name}` {shape:?} {dtype} needs {need:?} bytes, got {}",
                data.len()
            )));
        }
        self.tensors.push((name, dtype, shape, data.to_vec()));
        Ok(self)
    }

    fn alignment(&self) -> Result<usize> {
        match self.metadata.iter().rev().find(|(k, _)| k == "general.alignment") {
            None => Ok(DEFAULT_ALIGNMENT),
            Some((_, GgufValue::U32(a))) if *a != 0 && a.is_power_of_two() => Ok(*a as usize),
            Some(_) => Err(malformed("general.alignment must be a nonzero power-of-two U32")),
        }
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let align = self.alignment()?;
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut out, k);
            out.extend_from_slice(&v.value_type().id().to_le_bytes());
            put_value(&mut out, v)?;
        }
        let mut rel = 0usize;
        for (name, dtype, shape, data) in &self.tensors {
            put_str(&mut out, name);
            out.extend_from_slice(&(shape.rank() as u32).to_le_bytes());
            for &d in shape.dims().iter().rev() {
                out.extend_from_slice(&(d as u64).to_le_bytes());
            }
            out.extend_from_slice(&dtype.gguf_id().to_le_bytes());
            out.extend_from_slice(&(rel as u64).to_le_bytes());
            rel = (rel + data.len()).next_multiple_of(align);
        }
        out.resize(out.len().next_multiple_of(align), 0);
        for (_, _, _, data) in &self.tensors {
            out.extend_from_slice(data);
            out.resize(out.len().next_multiple_of(align), 0);
        }
        Ok(out)
    }
}
