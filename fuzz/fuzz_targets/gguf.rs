//! Arbitrary bytes into the GGUF parser: it must return Ok or Err, never panic, hang or
//! allocate without bound; and every tensor of a file it accepts must load.
#![no_main]

use std::sync::Arc;

use ferrite_tensor::cpu::{SharedBytes, TensorRead};
use ferrite_tensor::gguf::GgufFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let bytes: SharedBytes = Arc::new(data.to_vec());
    let Ok(f) = GgufFile::from_bytes(bytes) else { return };
    assert!(f.version() == 2 || f.version() == 3);
    assert!(f.alignment().is_power_of_two() && f.data_offset() % f.alignment() == 0);
    for (k, v) in f.metadata() {
        assert!(f.get(k).is_some());
        let _ = (v.as_u64(), v.as_i64(), v.as_f64(), v.as_f32(), v.as_bool(), v.as_str());
        let _ = (v.as_str_array(), v.as_f32_array(), v.as_i64_array());
    }
    let _ = f.architecture();
    for info in f.tensor_infos() {
        let t = f.tensor(&info.name).expect("a tensor the parser accepted must load");
        assert_eq!(t.len_bytes(), info.len_bytes);
        let r = TensorRead::new(&t, "fuzz").expect("cpu tensor");
        assert_eq!(r.bytes().len(), info.len_bytes);
        assert_eq!(f.tensor_data(&info.name).map(<[u8]>::len).ok(), Some(info.len_bytes));
    }
});
