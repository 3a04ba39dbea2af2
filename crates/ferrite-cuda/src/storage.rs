//! Device memory of one tensor storage, freed (in stream order) when the last tensor using it
//! is dropped.

use std::any::Any;
use std::sync::Arc;

use ferrite_tensor::BackendStorage;

use crate::driver::{DevicePtr, Driver};

/// `len` bytes at `ptr` on `driver`'s device.
#[derive(Debug)]
pub struct CudaStorage {
    pub(crate) ptr: DevicePtr,
    len: usize,
    driver: Arc<dyn Driver>,
}

impl CudaStorage {
    pub(crate) fn new(driver: Arc<dyn Driver>, len: usize) -> Result<Self, crate::CudaError> {
        let ptr = driver.alloc(len)?;
        Ok(CudaStorage { ptr, len, driver })
    }
}

impl Drop for CudaStorage {
    fn drop(&mut self) {
        self.driver.free(self.ptr);
    }
}

impl BackendStorage for CudaStorage {
    fn len_bytes(&self) -> usize {
        self.len
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
