//! Device: the devices this build has, by name.
//!
//! The CPU backends (`flex`, `ndarray`) are always usable. The GPU backends
//! (cargo features `wgpu`, `vulkan`, `cuda`) start lazily in burn and panic
//! on first use when the machine has no adapter or driver; [`probe`] turns
//! that into [`Error::DeviceUnavailable`] with the backend's message.

use std::panic::{AssertUnwindSafe, catch_unwind};

use burn::tensor::{Device, Tensor};

use crate::error::{Error, Result};

/// The CPU devices built in (cargo features `flex`, `ndarray`), by name,
/// without autodiff: `[("flex", …), ("ndarray", …)]`.
pub fn cpu_devices() -> Vec<(&'static str, Device)> {
    [
        #[cfg(feature = "flex")]
        ("flex", Device::flex()),
        #[cfg(feature = "ndarray")]
        #[allow(deprecated)]
        // burn deprecates NdArray in favour of Flex; it is still supported here
        ("ndarray", Device::ndarray()),
    ]
    .into_iter()
    .collect()
}

/// The device names this build knows, CPU first: `flex`, `ndarray`, then
/// `wgpu` (the adapter wgpu prefers), `wgpu-cpu` (a software adapter such as
/// Mesa's lavapipe), `vulkan`, `cuda` as their features are on. `cuda:N`
/// picks the N-th CUDA device.
#[allow(unused_mut)] // pushed to only with GPU features
pub fn device_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = cpu_devices().into_iter().map(|(n, _)| n).collect();
    #[cfg(feature = "wgpu")]
    names.extend(["wgpu", "wgpu-cpu"]);
    #[cfg(feature = "vulkan")]
    names.push("vulkan");
    #[cfg(feature = "cuda")]
    names.push("cuda");
    names
}

/// The device called `name`, without autodiff (add `.autodiff()` for
/// training). Names are those of [`device_names`], plus `cuda:N`. A GPU
/// device is not started here; [`probe`] checks that it runs.
///
/// # Example
///
/// ```
/// let device = softmask::device::device("flex")?.autodiff();
/// assert!(device.is_autodiff());
/// let err = softmask::device::device("tpu").unwrap_err();
/// assert!(err.to_string().contains("\"tpu\" is not built in"));
/// # Ok::<(), softmask::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidConfig`] naming the devices this build has.
pub fn device(name: &str) -> Result<Device> {
    if let Ok(d) = cpu_device(name) {
        return Ok(d);
    }
    if let Some(d) = gpu_device(name)? {
        return Ok(d);
    }
    Err(Error::InvalidConfig(format!(
        "device {name:?} is not built in; this build has {:?}",
        device_names()
    )))
}

#[allow(clippy::unnecessary_wraps)] // without GPU features every name falls through
fn gpu_device(name: &str) -> Result<Option<Device>> {
    #[cfg(feature = "wgpu")]
    {
        use burn::tensor::DeviceKind;
        match name {
            "wgpu" => return Ok(Some(Device::wgpu(DeviceKind::DefaultDevice))),
            "wgpu-cpu" => return Ok(Some(Device::wgpu(DeviceKind::Cpu))),
            _ => {}
        }
    }
    #[cfg(feature = "vulkan")]
    if name == "vulkan" {
        return Ok(Some(Device::vulkan(
            burn::tensor::DeviceKind::DefaultDevice,
        )));
    }
    #[cfg(feature = "cuda")]
    {
        if name == "cuda" {
            return Ok(Some(Device::cuda(0usize)));
        }
        if let Some(index) = name.strip_prefix("cuda:") {
            let index: usize = index.parse().map_err(|_| {
                Error::InvalidConfig(format!("{name:?}: the CUDA index is not a number"))
            })?;
            return Ok(Some(Device::cuda(index)));
        }
    }
    let _ = name;
    Ok(None)
}

/// The built-in CPU device called `name` (`"flex"` or `"ndarray"`), without
/// autodiff; add `.autodiff()` for training.
///
/// # Example
///
/// ```
/// let device = softmask::cpu_device("flex")?.autodiff();
/// assert!(device.is_autodiff());
/// assert!(softmask::cpu_device("tpu").is_err());
/// # Ok::<(), softmask::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidConfig`] naming the devices this build has.
pub fn cpu_device(name: &str) -> Result<Device> {
    let devices = cpu_devices();
    let names: Vec<&str> = devices.iter().map(|(n, _)| *n).collect();
    devices
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| d)
        .ok_or_else(|| {
            Error::InvalidConfig(format!(
                "device {name:?} is not built in; this build has {names:?}"
            ))
        })
}

/// Checks that `device` (called `name` in the error) starts and computes:
/// it adds two small tensors and reads the sum back.
///
/// # Errors
///
/// [`Error::DeviceUnavailable`] with the backend's message when it fails
/// (burn's GPU backends panic when no adapter or driver answers; the panic
/// is caught here, and the default hook still prints it to stderr).
pub fn probe(name: &str, device: &Device) -> Result<()> {
    let run = catch_unwind(AssertUnwindSafe(|| {
        let t = Tensor::<1>::from_floats([1.0, 2.0], device);
        crate::io::to_host((t.clone() + t).sum())
    }));
    let unavailable = |reason: String| Error::DeviceUnavailable {
        name: name.to_string(),
        reason,
    };
    match run {
        Ok(Ok(h)) if h.values == [6.0] => Ok(()),
        Ok(Ok(h)) => Err(unavailable(format!("1 + 2 doubled gave {:?}", h.values))),
        Ok(Err(e)) => Err(unavailable(e.to_string())),
        Err(payload) => Err(unavailable(
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "the backend panicked".into()),
        )),
    }
}

/// [`device`] then [`probe`]: the device called `name`, checked to run here.
/// What the examples' `--device` flags use.
///
/// # Errors
///
/// [`Error::InvalidConfig`] for a name this build lacks,
/// [`Error::DeviceUnavailable`] for a device that cannot start.
pub fn open_device(name: &str) -> Result<Device> {
    let d = device(name)?;
    probe(name, &d)?;
    Ok(d)
}

/// Every device of this build that runs here, by name, without autodiff:
/// the CPU devices, then each GPU device whose [`probe`] passes. A GPU
/// device that fails is left out with a line on stderr giving the reason,
/// never silently.
pub fn devices() -> Vec<(&'static str, Device)> {
    let mut out = cpu_devices();
    let mut wgpu_found = false;
    for name in device_names() {
        if out.iter().any(|(n, _)| *n == name) || (name == "wgpu-cpu" && wgpu_found) {
            // `wgpu-cpu` stands in for `wgpu` only where no other adapter runs.
            continue;
        }
        match device(name).and_then(|d| probe(name, &d).map(|()| d)) {
            Ok(d) => {
                wgpu_found |= name == "wgpu";
                out.push((name, d));
            }
            Err(e) => eprintln!("skipping {name}: {e}"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_cpu_device_is_found_and_probes() {
        let names: Vec<&str> = devices().iter().map(|(n, _)| *n).collect();
        eprintln!("devices that run here: {names:?}");
        let cpu: Vec<&str> = cpu_devices().iter().map(|(n, _)| *n).collect();
        assert_eq!(names[..cpu.len()], cpu[..]);
        for name in names {
            assert!(device_names().contains(&name), "{name}");
            probe(name, &device(name).unwrap()).unwrap();
        }
        let err = device("tpu").unwrap_err().to_string();
        assert!(
            err.contains("\"tpu\" is not built in") && err.contains("flex"),
            "{err}"
        );
    }
}
