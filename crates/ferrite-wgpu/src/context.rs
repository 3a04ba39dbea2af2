//! Adapter choice and the device: `FERRITE_WGPU_ADAPTER` (or the caller) names an adapter by
//! index or by a case-insensitive part of its name; otherwise the first adapter that is not a
//! CPU is taken, then any (lavapipe, a software Vulkan device, is a CPU adapter).

use crate::WgpuError;

/// Environment variable naming the adapter (index or part of its name).
pub const ADAPTER_ENV: &str = "FERRITE_WGPU_ADAPTER";

/// An open device and what it can do.
#[derive(Debug)]
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// `shader-f16` is available (f16 arithmetic in WGSL).
    pub shader_f16: bool,
    /// Subgroup operations are available.
    pub subgroups: bool,
}

/// Every adapter wgpu finds on the native backends.
pub fn adapters() -> Vec<wgpu::Adapter> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::PRIMARY,
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::PRIMARY))
}

/// One line per adapter: `index: name (type, backend, driver)`.
pub fn describe_adapters() -> Vec<String> {
    adapters()
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let info = a.get_info();
            format!("{i}: {} ({:?}, {:?}, {})", info.name, info.device_type, info.backend, info.driver)
        })
        .collect()
}

/// Picks the adapter `choice` names (index or part of the name), else `FERRITE_WGPU_ADAPTER`'s,
/// else the first non-CPU one, else the first; and opens a device on it.
pub fn open(choice: Option<&str>) -> Result<Gpu, WgpuError> {
    let env = std::env::var(ADAPTER_ENV).ok().filter(|v| !v.trim().is_empty());
    let choice = choice.map(str::to_string).or(env);
    let mut all = adapters();
    if all.is_empty() {
        return Err(WgpuError::NoAdapter(
            "wgpu found no Vulkan, Metal or DX12 adapter; install a GPU driver, or a software \
             Vulkan device (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`, lavapipe)"
                .into(),
        ));
    }
    let index = match &choice {
        Some(c) => pick(&all, c)?,
        None => all.iter().position(|a| a.get_info().device_type != wgpu::DeviceType::Cpu).unwrap_or(0),
    };
    let adapter = all.swap_remove(index);
    let info = adapter.get_info();
    let features = adapter.features();
    let shader_f16 = features.contains(wgpu::Features::SHADER_F16);
    let subgroups = features.contains(wgpu::Features::SUBGROUP);
    let mut required_features = wgpu::Features::empty();
    if shader_f16 {
        required_features |= wgpu::Features::SHADER_F16;
    }
    if subgroups {
        required_features |= wgpu::Features::SUBGROUP;
    }
    let desc = wgpu::DeviceDescriptor {
        label: Some("ferrite"),
        required_features,
        // Everything the adapter offers: model weights need large storage buffers.
        required_limits: adapter.limits(),
        ..Default::default()
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&desc))
        .map_err(|e| WgpuError::Device(format!("{}: {e}", info.name)))?;
    Ok(Gpu { device, queue, info, shader_f16, subgroups })
}

/// The adapter `choice` names among `all`.
fn pick(all: &[wgpu::Adapter], choice: &str) -> Result<usize, WgpuError> {
    if let Ok(i) = choice.trim().parse::<usize>() {
        if i < all.len() {
            return Ok(i);
        }
    }
    let want = choice.trim().to_lowercase();
    all.iter().position(|a| a.get_info().name.to_lowercase().contains(&want)).ok_or_else(|| {
        let names: Vec<String> = all.iter().enumerate().map(|(i, a)| format!("{i}: {}", a.get_info().name)).collect();
        WgpuError::NoAdapter(format!("no adapter matches {choice:?}; adapters: {}", names.join("; ")))
    })
}
