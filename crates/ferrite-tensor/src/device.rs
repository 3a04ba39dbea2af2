//! `Device`: a cheap handle on a backend.

use std::sync::{Arc, OnceLock};

use crate::cpu::CpuBackend;
use crate::Backend;

/// A shared handle on a [`Backend`]. Two handles are the same device when they point at the
/// same backend instance.
#[derive(Clone, Debug)]
pub struct Device(Arc<dyn Backend>);

impl Device {
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Device(backend)
    }

    /// The process-wide CPU device on rayon's global thread pool.
    pub fn cpu() -> Self {
        static CPU: OnceLock<Device> = OnceLock::new();
        CPU.get_or_init(|| Device(Arc::new(CpuBackend::new(None)))).clone()
    }

    /// A CPU device with its own pool of `threads` threads.
    pub fn cpu_with_threads(threads: usize) -> crate::Result<Self> {
        Ok(Device(Arc::new(CpuBackend::with_threads(threads)?)))
    }

    pub fn backend(&self) -> &dyn Backend {
        self.0.as_ref()
    }

    pub fn name(&self) -> String {
        self.0.name()
    }

    pub fn same_as(&self, other: &Device) -> bool {
        std::ptr::addr_eq(Arc::as_ptr(&self.0), Arc::as_ptr(&other.0))
    }

    /// Runs `f` in the backend's execution context (see [`Backend::execute`]); wrap a whole
    /// forward pass in it.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let mut f = Some(f);
        let mut out = None;
        self.0.execute(&mut || {
            if let Some(f) = f.take() {
                out = Some(f());
            }
        });
        match out {
            Some(r) => r,
            None => unreachable!("Backend::execute must call its closure"),
        }
    }

    pub fn is_cpu(&self) -> bool {
        self.0.name() == "cpu"
    }
}
