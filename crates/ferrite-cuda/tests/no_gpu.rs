//! Without a CUDA driver (CI, most machines), asking for a CUDA device is a clear error, never
//! a panic. On a machine with a GPU this test checks that the devices are listed instead.

use ferrite_cuda::{describe_devices, libs};

#[test]
fn no_driver_is_a_clear_error_and_a_gpu_is_listed() {
    if libs::driver_present() {
        match describe_devices() {
            Ok(list) => {
                eprintln!("CUDA devices: {list:?}");
                assert!(list.iter().all(|l| l.starts_with("cuda:")), "{list:?}");
            }
            Err(e) => eprintln!("a driver without usable GPUs: {e}"),
        }
        return;
    }
    let err = ferrite_cuda::device(None).unwrap_err().to_string();
    assert!(err.contains("no CUDA driver"), "{err}");
    let err = describe_devices().unwrap_err().to_string();
    assert!(err.contains("libcuda"), "{err}");
    let err = ferrite_cuda::device(Some("x")).unwrap_err().to_string();
    assert!(err.contains("ordinal"), "{err}");
}
