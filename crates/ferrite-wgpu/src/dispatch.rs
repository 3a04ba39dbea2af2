//! Pipelines and command recording.
//!
//! Each WGSL file of `shaders/` is compiled once per device; each entry point becomes a
//! compute pipeline with its bind group layout taken from the shader: binding 0 is a uniform
//! block of 32-bit parameters, bindings 1.. the storage buffers in the order given.
//!
//! Kernels are recorded into one pending command encoder. It is submitted when the host needs
//! a result (a download or a synchronize) or every [`FLUSH_EVERY`] kernels, so a forward pass
//! runs without host round trips between its ops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use ferrite_tensor::{DType, Error, Result, Shape, Tensor};
use wgpu::util::DeviceExt;

use crate::{WgpuBackend, WgpuStorage};

/// Kernels recorded before the pending encoder is submitted anyway.
pub const FLUSH_EVERY: usize = 256;
/// Workgroups per dimension a dispatch may use (WebGPU's guaranteed minimum).
const MAX_GROUPS: u32 = 65_535;

/// A WGSL source file.
#[derive(Debug, Clone, Copy)]
pub struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

/// Includes `shaders/NAME.wgsl` of the workspace; `shader!("NAME", "LIB", ..)` appends the
/// files `LIB.wgsl` (function libraries such as `quant_blocks`) to it;
/// `shader!(name = "KEY", prefix = "TEXT", "NAME", ..)` is a variant cached as KEY with TEXT first.
#[macro_export]
macro_rules! shader {
    ($name:literal $(, $lib:literal)*) => {
        $crate::dispatch::Shader {
            name: $name,
            source: concat!(
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders/", $name, ".wgsl"))
                $(, "\n", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders/", $lib, ".wgsl")))*
            ),
        }
    };
    // A variant under its own cache name, with `$prefix` (e.g. `enable subgroups;`, which WGSL
    // wants before any declaration) at the start of the module.
    (name = $key:literal, prefix = $prefix:literal, $name:literal $(, $lib:literal)*) => {
        $crate::dispatch::Shader {
            name: $key,
            source: concat!(
                $prefix, "\n",
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders/", $name, ".wgsl"))
                $(, "\n", include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shaders/", $lib, ".wgsl")))*
            ),
        }
    };
}

/// A storage buffer bound whole, or the byte range `(offset, size)` of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bind<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub range: Option<(u64, u64)>,
}

impl<'a> Bind<'a> {
    pub fn whole(buffer: &'a wgpu::Buffer) -> Self {
        Bind { buffer, range: None }
    }

    /// Bytes bound.
    pub fn size(&self) -> u64 {
        self.range.map_or(self.buffer.size(), |(_, s)| s)
    }
}

/// One window of [`row_windows`]: rows `row0 .. row0 + rows`, bound as bytes `at .. at + size`
/// of the buffer, the first of them at byte `offset` of that range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RowWindow {
    pub row0: u64,
    pub rows: u64,
    pub at: u64,
    pub size: u64,
    pub offset: u64,
}

/// Windows of whole rows of a tensor in a buffer, each bindable: `rows` rows of `row_bytes`
/// bytes starting at byte `first` of a buffer of `buffer_size` bytes, split into runs of rows
/// whose bound range (starting at a multiple of `align`, a whole number of 4-byte words) stays
/// within `limit` bytes.
pub(crate) fn row_windows(
    first: u64,
    rows: u64,
    row_bytes: u64,
    buffer_size: u64,
    limit: u64,
    align: u64,
) -> Result<Vec<RowWindow>> {
    // Room for the alignment slack and the word of look-ahead a 4-byte load at the end reads.
    let room = limit.saturating_sub(align + 8);
    let per = room.checked_div(row_bytes).unwrap_or(rows.max(1));
    if per == 0 {
        return Err(Error::Backend(format!("wgpu: one row of {row_bytes} bytes exceeds the binding limit of {limit}")));
    }
    let mut out = Vec::new();
    let mut r = 0;
    while r < rows {
        let n = per.min(rows - r);
        let start = first + r * row_bytes;
        let at = start / align * align;
        let end = (start + n * row_bytes + 4).div_ceil(4) * 4;
        out.push(RowWindow { row0: r, rows: n, at, size: end.min(buffer_size) - at, offset: start - at });
        r += n;
    }
    Ok(out)
}

/// Compiled pipelines and the pending encoder.
#[derive(Debug, Default)]
pub struct Kernels {
    modules: Mutex<HashMap<&'static str, Arc<wgpu::ShaderModule>>>,
    pipelines: Mutex<HashMap<(&'static str, &'static str), Arc<wgpu::ComputePipeline>>>,
    pending: Mutex<Pending>,
}

#[derive(Debug, Default)]
struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    kernels: usize,
}

/// The 32-bit words of a kernel's uniform parameters.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<u32>);

impl Params {
    pub fn new() -> Self {
        Params(Vec::new())
    }

    /// Appends an unsigned value (checked to fit in 32 bits).
    pub fn u(mut self, v: usize) -> Result<Self> {
        let v = u32::try_from(v).map_err(|_| Error::Backend(format!("wgpu: {v} does not fit a 32-bit index")))?;
        self.0.push(v);
        Ok(self)
    }

    /// Appends an f32.
    pub fn f(mut self, v: f32) -> Self {
        self.0.push(v.to_bits());
        self
    }

    /// The words, padded to whole 16-byte rows as uniform blocks need.
    fn bytes(&self) -> Vec<u8> {
        let mut w = self.0.clone();
        w.resize(w.len().max(1).div_ceil(4) * 4, 0);
        bytemuck::cast_slice(&w).to_vec()
    }
}

impl WgpuBackend {
    /// The pipeline of `shader::entry`, compiled on first use; a shader that does not compile
    /// on this device is an error, not a panic.
    fn pipeline(&self, shader: Shader, entry: &'static str) -> Result<Arc<wgpu::ComputePipeline>> {
        let mut pipelines = self.kernels.pipelines.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = pipelines.get(&(shader.name, entry)) {
            return Ok(p.clone());
        }
        let device = &self.gpu.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = {
            let mut modules = self.kernels.modules.lock().unwrap_or_else(PoisonError::into_inner);
            modules
                .entry(shader.name)
                .or_insert_with(|| {
                    Arc::new(device.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(shader.name),
                        source: wgpu::ShaderSource::Wgsl(shader.source.into()),
                    }))
                })
                .clone()
        };
        let p = Arc::new(device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: None,
            module: &module,
            entry_point: Some(entry),
            compilation_options: Default::default(),
            cache: None,
        }));
        if let Some(e) = pollster::block_on(scope.pop()) {
            self.kernels.modules.lock().unwrap_or_else(PoisonError::into_inner).remove(shader.name);
            return Err(Error::Backend(format!(
                "wgpu: shader {}::{entry} does not build on this device: {e}",
                shader.name
            )));
        }
        pipelines.insert((shader.name, entry), p.clone());
        Ok(p)
    }

    /// Records `shader::entry` over `groups` workgroups (spread over a 2-D grid when more than
    /// 65535; shaders rebuild the linear index from `num_workgroups`).
    pub(crate) fn run(
        &self,
        shader: Shader,
        entry: &'static str,
        params: &Params,
        buffers: &[&wgpu::Buffer],
        groups: usize,
    ) -> Result<()> {
        let binds: Vec<Bind> = buffers.iter().map(|&b| Bind::whole(b)).collect();
        self.run_bound(shader, entry, params, &binds, groups)
    }

    /// [`WgpuBackend::run`] with bindings that may be byte ranges of their buffers (weights past
    /// the storage binding limit are bound a range of rows at a time).
    pub(crate) fn run_bound(
        &self,
        shader: Shader,
        entry: &'static str,
        params: &Params,
        buffers: &[Bind],
        groups: usize,
    ) -> Result<()> {
        let device = &self.gpu.device;
        let limit = device.limits().max_storage_buffer_binding_size;
        if let Some(b) = buffers.iter().find(|b| b.size() > limit) {
            return Err(Error::Backend(format!(
                "wgpu: {entry}: a buffer of {} bytes exceeds this adapter's storage binding limit of {limit} bytes",
                b.size()
            )));
        }
        let pipeline = self.pipeline(shader, entry)?;
        let uniform = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("params"),
            contents: &params.bytes(),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
        for (i, b) in buffers.iter().enumerate() {
            let resource = match b.range {
                None => b.buffer.as_entire_binding(),
                Some((offset, size)) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.buffer,
                    offset,
                    size: wgpu::BufferSize::new(size),
                }),
            };
            entries.push(wgpu::BindGroupEntry { binding: i as u32 + 1, resource });
        }
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(entry),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let groups =
            u32::try_from(groups.max(1)).map_err(|_| Error::Backend(format!("wgpu: {entry}: too many workgroups")))?;
        let (x, y) = if groups <= MAX_GROUPS { (groups, 1) } else { (MAX_GROUPS, groups.div_ceil(MAX_GROUPS)) };
        let mut pending = self.kernels.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let encoder = pending.encoder.get_or_insert_with(|| {
            device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("ferrite step") })
        });
        {
            let mut pass =
                encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(entry), timestamp_writes: None });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(x, y, 1);
        }
        pending.kernels += 1;
        if pending.kernels >= FLUSH_EVERY {
            pending.kernels = 0;
            // Submitted under the lock: were it released first, another thread could record
            // into a new encoder and submit it (a read-back's flush) ahead of this one, running
            // later kernels before earlier ones.
            if let Some(e) = pending.encoder.take() {
                self.gpu.queue.submit([e.finish()]);
            }
        }
        Ok(())
    }

    /// Submits the pending kernels (without waiting).
    pub(crate) fn flush(&self) {
        let mut pending = self.kernels.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.kernels = 0;
        if let Some(e) = pending.encoder.take() {
            self.gpu.queue.submit([e.finish()]);
        }
    }

    /// Waits for everything submitted.
    pub(crate) fn wait(&self) -> Result<()> {
        self.gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Backend(format!("wgpu: waiting for the device: {e}")))
    }

    /// New storage holding `bytes`.
    pub(crate) fn upload_storage(&self, bytes: &[u8], label: &str) -> WgpuStorage {
        let storage = WgpuStorage::new(&self.gpu.device, bytes.len(), label);
        let padded = WgpuStorage::padded(bytes.len()) as usize;
        if padded == bytes.len() {
            self.gpu.queue.write_buffer(&storage.buffer, 0, bytes);
        } else {
            let mut b = bytes.to_vec();
            b.resize(padded, 0);
            self.gpu.queue.write_buffer(&storage.buffer, 0, &b);
        }
        storage
    }

    /// A small read-only buffer of u32s (token ids, positions, slots) for one kernel.
    pub(crate) fn u32_buffer(&self, values: &[u32]) -> wgpu::Buffer {
        let v = if values.is_empty() { &[0u32][..] } else { values };
        self.gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("indices"),
            contents: bytemuck::cast_slice(v),
            usage: wgpu::BufferUsages::STORAGE,
        })
    }

    /// A scratch storage buffer of `bytes` bytes for one kernel.
    pub(crate) fn scratch(&self, bytes: usize) -> Result<wgpu::Buffer> {
        let size = WgpuStorage::padded(bytes);
        if size > self.gpu.device.limits().max_storage_buffer_binding_size {
            return Err(Error::Backend(format!("wgpu: a scratch buffer of {bytes} bytes exceeds the device's limit")));
        }
        Ok(self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("scratch"),
            size,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        }))
    }

    /// New f32 output storage for `shape`, wrapped as a tensor on `like`'s device.
    pub(crate) fn output(&self, like: &Tensor, shape: impl Into<Shape>) -> Result<(Tensor, Arc<WgpuStorage>)> {
        let shape = shape.into();
        let storage = Arc::new(WgpuStorage::new(&self.gpu.device, shape.numel() * 4, "output"));
        let t = Tensor::from_storage(storage.clone(), like.device().clone(), DType::F32, shape, 0)?;
        Ok((t, storage))
    }

    /// Bytes `offset .. offset + len` of `buffer`, after all recorded work.
    pub(crate) fn read_back(&self, buffer: &wgpu::Buffer, offset: usize, len: usize) -> Result<Vec<u8>> {
        if len == 0 {
            return Ok(Vec::new());
        }
        // Copies move whole 4-byte words.
        let start = offset / 4 * 4;
        let end = (offset + len).div_ceil(4) * 4;
        let size = (end - start) as u64;
        let staging = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("read back"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        {
            let mut pending = self.kernels.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let device = &self.gpu.device;
            let encoder = pending.encoder.get_or_insert_with(|| {
                device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("ferrite step") })
            });
            encoder.copy_buffer_to_buffer(buffer, start as u64, &staging, 0, size);
        }
        self.flush();
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| Error::Backend("wgpu: the read-back was dropped".into()))?
            .map_err(|e| Error::Backend(format!("wgpu: mapping a read-back buffer: {e}")))?;
        let data = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Backend(format!("wgpu: reading a mapped buffer: {e}")))?;
        let out = data[offset - start..offset - start + len].to_vec();
        drop(data);
        staging.unmap();
        Ok(out)
    }
}

/// Workgroups of `size` threads covering `n` items.
pub(crate) fn groups(n: usize, size: usize) -> usize {
    n.div_ceil(size)
}

#[cfg(test)]
mod tests {
    use super::{row_windows, RowWindow};

    #[test]
    fn row_windows_cover_every_row_within_the_limit() {
        // 1000 rows of 34 bytes after a 10-byte offset, bound at most 1024 bytes at a time.
        let (first, rows, rb, size, limit, align) = (10, 1000, 34, 10 + 34_000, 1024, 32);
        let w = row_windows(first, rows, rb, size, limit, align).expect("rows fit");
        let mut next = 0;
        for &RowWindow { row0: r, rows: n, at, size: len, offset: off } in &w {
            assert_eq!(r, next);
            assert!(n > 0 && len <= limit && at % align == 0);
            assert!(len % 4 == 0 || at + len == size);
            assert_eq!(at + off, first + r * rb, "the first row's byte");
            assert!(off + n * rb <= len, "the rows lie inside the range");
            next = r + n;
        }
        assert_eq!(next, rows);
        assert!(w.len() > 1);
        assert_eq!(row_windows(0, 4, 10, 40, 1 << 20, 32).expect("fits").len(), 1);
        assert!(row_windows(0, 4, 4096, 16384, 1024, 32).is_err(), "a row past the limit");
        assert!(row_windows(0, 0, 34, 0, 1024, 32).expect("no rows").is_empty());
    }
}
