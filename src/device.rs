//! Device: the CPU devices this build has, by name.

use burn::tensor::Device;

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
