//! The CPU backend: rayon threads, run-time-detected SIMD, quantized weights read in place.

pub mod buffers;
pub mod gemm_blocked;
pub mod gemm_f32;
pub mod kernels;
pub mod matmul;
pub mod ops;
pub mod storage;

use std::sync::Arc;

pub(crate) use storage::release_pages;
pub use storage::{cpu_storage, CpuBytes, CpuStorage, SharedBytes, TensorRead};

use crate::backend::{
    Activation, AttentionParams, AttentionSeq, Backend, BackendStorage, Conv2dParams, DenseAttention, RopeConfig,
    RopeLayout,
};
use crate::{DType, Device, Error, Result, Shape, Tensor};

/// The CPU backend. Ops run eagerly on the calling thread and on a rayon pool (rayon's global
/// pool, or a private one of a chosen size).
#[derive(Debug)]
pub struct CpuBackend {
    pool: Option<rayon::ThreadPool>,
}

impl CpuBackend {
    /// Uses rayon's global pool, or a private pool of `threads` threads.
    pub fn new(threads: Option<usize>) -> Self {
        let pool = threads.and_then(|t| rayon::ThreadPoolBuilder::new().num_threads(t).build().ok());
        CpuBackend { pool }
    }

    pub fn with_threads(threads: usize) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .map_err(|e| Error::Backend(format!("thread pool: {e}")))?;
        Ok(CpuBackend { pool: Some(pool) })
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.pool.as_ref().map_or_else(rayon::current_num_threads, |p| p.current_num_threads())
    }

    fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }
}

/// Runs `f` (a forward pass, on a pool thread) while the pool's other threads spin on the
/// pool's queues instead of going to sleep between its parallel regions.
///
/// A decode step is a few hundred short parallel regions with serial work between them; an
/// idle rayon worker soon sleeps, and waking it for the next region is a futex call and, on a
/// virtual machine, an inter-processor interrupt: measured at about a sixth of decode's CPU
/// time on 2 threads. Here each other worker takes a spinner job that runs whatever work the
/// pool has ([`rayon::yield_now`]) until `f` returns. The thread running `f` never spins (were
/// it to pop a spinner while waiting inside `f`, it would wait on itself), so the spinners
/// cannot block `f`; they end when it does.
fn keep_workers_awake(f: &mut (dyn FnMut() + Send)) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(me) = rayon::current_thread_index() else {
        return f();
    };
    /// Stops the spinners when `f` returns or unwinds (a panic must not leave them spinning
    /// while the scope waits for them).
    struct Stop<'a>(&'a AtomicBool);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Release);
        }
    }
    let done = AtomicBool::new(false);
    rayon::scope(|s| {
        for _ in 1..rayon::current_num_threads() {
            s.spawn(|_| {
                if rayon::current_thread_index() == Some(me) {
                    return;
                }
                let mut idle = 0u32;
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() == Some(rayon::Yield::Executed) {
                        idle = 0;
                    } else {
                        idle += 1;
                        // Now and then let another runnable thread (another model's pool, the
                        // server) have this core; with none, `sched_yield` returns at once.
                        if idle.is_multiple_of(64) {
                            std::thread::yield_now();
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                }
            });
        }
        let _stop = Stop(&done);
        f();
    });
}

/// An output buffer shared by parallel tasks that each write a disjoint set of its elements
/// (the matmul driver's column ranges, the blocked GEMM's output blocks).
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);

impl OutPtr {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper, not the field).
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: every user hands each task a disjoint set of output elements, and the pointer
// outlives the parallel loop, which borrows the buffer mutably for its whole duration.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

/// Wraps an f32 result as a new tensor on `device`.
pub(crate) fn f32_tensor(data: Vec<f32>, shape: impl Into<Shape>, device: &Device) -> Result<Tensor> {
    let storage: Arc<dyn BackendStorage> = Arc::new(CpuStorage::from_f32(data));
    Tensor::from_storage(storage, device.clone(), DType::F32, shape, 0)
}

/// Fails unless `t` is f32.
pub(crate) fn expect_f32(t: &Tensor, op: &'static str) -> Result<()> {
    if t.dtype() == DType::F32 {
        Ok(())
    } else {
        Err(Error::UnsupportedDType { dtype: t.dtype(), op })
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        "cpu".into()
    }

    fn zeros(&self, bytes: usize) -> Result<Arc<dyn BackendStorage>> {
        Ok(Arc::new(CpuStorage::zeros(bytes)))
    }

    fn upload(&self, bytes: &[u8]) -> Result<Arc<dyn BackendStorage>> {
        Ok(Arc::new(CpuStorage::from_bytes(bytes)))
    }

    fn download(&self, t: &Tensor) -> Result<Vec<u8>> {
        Ok(TensorRead::new(t, "download")?.bytes().to_vec())
    }

    fn synchronize(&self) -> Result<()> {
        Ok(())
    }

    fn execute(&self, f: &mut (dyn FnMut() + Send)) {
        match &self.pool {
            Some(p) if p.current_num_threads() > 1 => p.install(|| keep_workers_awake(f)),
            _ => self.run(f),
        }
    }

    fn matmul(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        self.run(|| matmul::matmul_tensor(x, w))
    }

    fn matmul_many(&self, x: &Tensor, ws: &[&Tensor]) -> Result<Vec<Tensor>> {
        self.run(|| matmul::matmul_many_tensor(x, ws))
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
        self.run(|| ops::norm::rms_norm(x, w, eps))
    }

    fn layer_norm(&self, x: &Tensor, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
        self.run(|| ops::norm::layer_norm(x, w, b, eps))
    }

    fn rope(&self, x: &Tensor, positions: &[u32], cfg: &RopeConfig) -> Result<Tensor> {
        self.run(|| ops::rope::rope(x, positions, cfg))
    }

    fn softmax(&self, x: &Tensor) -> Result<Tensor> {
        self.run(|| ops::softmax::softmax(x))
    }

    fn activation(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        self.run(|| ops::activation::activation(x, act))
    }

    fn gated_activation(&self, gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor> {
        self.run(|| ops::activation::gated_activation(gate, up, act))
    }

    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.run(|| ops::elementwise::binary(a, b, "add", |x, y| x + y))
    }

    fn mul(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.run(|| ops::elementwise::binary(a, b, "mul", |x, y| x * y))
    }

    fn scale(&self, x: &Tensor, s: f32) -> Result<Tensor> {
        self.run(|| ops::elementwise::scale(x, s))
    }

    fn embedding(&self, table: &Tensor, ids: &[u32]) -> Result<Tensor> {
        self.run(|| ops::embedding::embedding(table, ids))
    }

    fn cast(&self, x: &Tensor, dtype: DType) -> Result<Tensor> {
        self.run(|| ops::elementwise::cast(x, dtype))
    }

    fn write_kv(&self, cache: &Tensor, x: &Tensor, slots: &[u32]) -> Result<()> {
        ops::attention::write_kv(cache, x, slots)
    }

    fn attention(
        &self,
        q: &Tensor,
        k_cache: &Tensor,
        v_cache: &Tensor,
        seqs: &[AttentionSeq],
        params: &AttentionParams,
    ) -> Result<Tensor> {
        self.run(|| ops::attention::attention(q, k_cache, v_cache, seqs, params))
    }

    fn attention_dense(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        seq_lens: &[usize],
        opts: &DenseAttention,
    ) -> Result<Tensor> {
        self.run(|| ops::attention_full::attention_dense(q, k, v, seq_lens, opts))
    }

    fn conv2d(&self, x: &Tensor, w: &Tensor, bias: Option<&Tensor>, p: &Conv2dParams) -> Result<Tensor> {
        self.run(|| ops::conv::conv2d(x, w, bias, p))
    }

    fn group_norm(&self, x: &Tensor, groups: usize, w: &Tensor, b: &Tensor, eps: f32) -> Result<Tensor> {
        self.run(|| ops::group_norm::group_norm(x, groups, w, b, eps))
    }

    fn upsample_nearest(&self, x: &Tensor, factor: usize) -> Result<Tensor> {
        self.run(|| ops::resample::upsample_nearest(x, factor))
    }

    fn rotary(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, layout: RopeLayout) -> Result<Tensor> {
        self.run(|| ops::rotary::rotary(x, cos, sin, layout))
    }

    fn concat(&self, xs: &[&Tensor], axis: usize) -> Result<Tensor> {
        self.run(|| ops::layout::concat(xs, axis))
    }

    fn narrow(&self, x: &Tensor, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        self.run(|| ops::layout::narrow(x, axis, start, len))
    }

    fn modulate(&self, x: &Tensor, scale: &Tensor, shift: &Tensor) -> Result<Tensor> {
        self.run(|| ops::modulate::modulate(x, scale, shift))
    }

    fn gated_add(&self, x: &Tensor, gate: &Tensor, y: &Tensor) -> Result<Tensor> {
        self.run(|| ops::modulate::gated_add(x, gate, y))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Device, Tensor};

    /// A forward pass under `Device::run` with spinning workers gives the ops' results, nested
    /// runs work, and a panic inside ends the spinners (no hang) and reaches the caller.
    #[test]
    fn runs_with_spinning_workers_finish_and_panics_propagate() {
        for threads in [2, 3] {
            let dev = Device::cpu_with_threads(threads).expect("device");
            let x: Vec<f32> = (0..4096).map(|i| (i % 17) as f32 - 8.0).collect();
            let sum = dev.run(|| {
                let t = Tensor::from_f32(&x, vec![64, 64], &dev).expect("x");
                let y = dev.run(|| t.scale(2.0).expect("scale"));
                y.to_vec_f32().expect("read").iter().sum::<f32>()
            });
            assert_eq!(sum, 2.0 * x.iter().sum::<f32>());
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dev.run(|| panic!("inside"))));
            assert!(caught.is_err());
            assert_eq!(dev.run(|| 7), 7, "the pool still works");
        }
    }
}
