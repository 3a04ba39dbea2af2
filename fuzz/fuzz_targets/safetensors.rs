//! Arbitrary bytes into the safetensors parser (single file from memory): Ok or Err, never a
//! panic; every listed tensor's data must be readable, and float tensors must load.
#![no_main]

use std::sync::Arc;

use ferrite_tensor::cpu::{SharedBytes, TensorRead};
use ferrite_tensor::safetensors::SafetensorsModel;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes: SharedBytes = Arc::new(data.to_vec());
    let Ok(m) = SafetensorsModel::from_bytes(bytes) else { return };
    let _ = m.metadata();
    for info in m.tensor_infos() {
        assert_eq!(m.tensor_data(&info.name).map(<[u8]>::len).ok(), Some(info.len_bytes));
        let (dtype, shape) = m.dtype_and_shape(&info.name).expect("listed");
        assert_eq!(shape, &info.shape);
        if dtype.is_ok() {
            let t = m.tensor(&info.name).expect("a float tensor the parser accepted must load");
            let r = TensorRead::new(&t, "fuzz").expect("cpu tensor");
            assert_eq!(r.bytes().len(), info.len_bytes);
        }
    }
});
