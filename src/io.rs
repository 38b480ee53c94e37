//! Files and host copies: atomic writes, safetensors interchange, and
//! [`HostTensor`], a tensor's values copied to the host.
//!
//! Every file the crate writes goes to a temporary name in the same directory, is
//! flushed to disk, and is then renamed over the target, so a crash leaves either
//! the old file or the new one, never half of one.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::Path;

use burn::tensor::Tensor;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically: temporary file, `fsync`, rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file_name = path.file_name().ok_or_else(|| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"),
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let written = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io(source));
    }
    Ok(())
}

/// Reads a whole file, naming it in the error.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Copies a float tensor of any backend to the host as `f32` values.
///
/// # Example
///
/// ```
/// use burn::tensor::{Device, Tensor};
///
/// let t = Tensor::<2>::from_floats([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], &Device::default());
/// let host = softmask::io::to_host(t)?;
/// assert_eq!(host.shape, [2, 3]);
/// assert_eq!(host.values, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
/// # Ok::<(), softmask::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::ReadBack`] when the backend cannot read the tensor back.
pub fn to_host<const D: usize>(tensor: Tensor<D>) -> Result<HostTensor> {
    let data = tensor.into_data().convert::<f32>();
    let shape = data.shape().to_vec();
    let values = data
        .try_into_vec::<f32>()
        .map_err(|e| Error::ReadBack(format!("{e:?}")))?;
    Ok(HostTensor { shape, values })
}

/// A model configuration read from the JSON file `path` and checked by
/// `validate`; either failure is [`Error::InvalidConfig`] naming the file.
pub(crate) fn read_config<T: serde::de::DeserializeOwned>(
    path: &Path,
    validate: impl FnOnce(&T) -> std::result::Result<(), String>,
) -> Result<T> {
    let invalid = |e: String| Error::InvalidConfig(format!("{}: {e}", path.display()));
    let config: T = serde_json::from_slice(&read(path)?).map_err(|e| invalid(e.to_string()))?;
    validate(&config).map_err(invalid)?;
    Ok(config)
}

/// An integer tensor's values copied to the host, row-major, as `i64`.
///
/// # Errors
///
/// [`Error::ReadBack`] when the backend cannot read the tensor back.
pub(crate) fn ints_to_host<const D: usize>(
    tensor: Tensor<D, burn::tensor::Int>,
) -> Result<Vec<i64>> {
    tensor
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| Error::ReadBack(format!("{e:?}")))
}

/// A float tensor held on the host: row-major values and a shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// The shape, outermost axis first.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub values: Vec<f32>,
}

impl HostTensor {
    /// The transpose of a 2-D tensor (PyTorch `[out, in]` ⇄ burn `[in, out]`);
    /// other ranks are returned unchanged.
    pub fn transposed(&self) -> HostTensor {
        let [rows, cols] = self.shape[..] else {
            return self.clone();
        };
        let mut values = vec![0.0; self.values.len()];
        for r in 0..rows {
            for c in 0..cols {
                values[c * rows + r] = self.values[r * cols + c];
            }
        }
        HostTensor {
            shape: vec![cols, rows],
            values,
        }
    }
}

/// The float tensors of one safetensors file, by name, plus its string metadata.
#[derive(Debug, Clone, Default)]
pub(crate) struct TensorFile {
    pub tensors: BTreeMap<String, HostTensor>,
    pub metadata: HashMap<String, String>,
    /// Tensors of a non-float dtype (e.g. BERT's integer `position_ids`), by
    /// name: not parameters, but named in the error when asked for as one.
    pub skipped: BTreeMap<String, Dtype>,
}

impl From<BTreeMap<String, HostTensor>> for TensorFile {
    /// A file of these tensors, without metadata.
    fn from(tensors: BTreeMap<String, HostTensor>) -> TensorFile {
        TensorFile {
            tensors,
            ..TensorFile::default()
        }
    }
}

impl TensorFile {
    /// Reads and fully validates a safetensors file of `f32` tensors.
    pub fn load(path: &Path) -> Result<TensorFile> {
        let bytes = read(path)?;
        Self::parse(&bytes, path)
    }

    fn parse(bytes: &[u8], path: &Path) -> Result<TensorFile> {
        let corrupt = |reason: String| Error::CorruptFile {
            path: path.to_path_buf(),
            reason,
        };
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| corrupt(format!("not a valid safetensors file ({e})")))?;
        let metadata = SafeTensors::read_metadata(bytes)
            .map_err(|e| corrupt(format!("unreadable header ({e})")))?
            .1
            .metadata()
            .clone()
            .unwrap_or_default();
        let mut tensors = BTreeMap::new();
        let mut skipped = BTreeMap::new();
        for (name, view) in st.iter() {
            // Float tensors are read as f32; integer buffers (e.g. BERT's
            // `position_ids`) are not parameters and are skipped.
            let data = view.data();
            let values: Vec<f32> = match view.dtype() {
                Dtype::F32 => data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect(),
                Dtype::F16 => data
                    .chunks_exact(2)
                    .map(|b| burn::tensor::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::BF16 => data
                    .chunks_exact(2)
                    .map(|b| burn::tensor::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
                Dtype::F64 => data
                    .chunks_exact(8)
                    .map(|b| {
                        f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                    })
                    .collect(),
                other => {
                    skipped.insert(name.to_string(), other);
                    continue;
                }
            };
            tensors.insert(
                name.to_string(),
                HostTensor {
                    shape: view.shape().to_vec(),
                    values,
                },
            );
        }
        Ok(TensorFile {
            tensors,
            metadata,
            skipped,
        })
    }

    /// Takes a tensor out by name: [`Error::CorruptFile`] when the file holds
    /// it with a non-float dtype, [`Error::MissingTensor`] when it is absent.
    pub fn remove(&mut self, name: &str, path: &Path) -> Result<HostTensor> {
        if let Some(dtype) = self.skipped.get(name) {
            return Err(Error::CorruptFile {
                path: path.to_path_buf(),
                reason: format!("tensor {name:?} has dtype {dtype:?}, not a float type"),
            });
        }
        self.tensors
            .remove(name)
            .ok_or_else(|| Error::MissingTensor {
                name: name.to_string(),
                path: path.to_path_buf(),
            })
    }

    /// Takes a tensor out by name, checking its shape and that it is finite.
    pub fn take(&mut self, name: &str, shape: &[usize], path: &Path) -> Result<HostTensor> {
        let t = self.remove(name, path)?;
        if t.shape != shape {
            return Err(Error::ShapeMismatch {
                what: format!("tensor {name:?} in {}", path.display()),
                expected: format!("{shape:?}"),
                actual: format!("{:?}", t.shape),
            });
        }
        if t.values.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: format!("tensor {name:?} in {}", path.display()),
            });
        }
        Ok(t)
    }

    /// Serialises and writes the file atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes: Vec<(String, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(n, t)| {
                (
                    n.clone(),
                    t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                )
            })
            .collect();
        let mut views = Vec::with_capacity(bytes.len());
        for ((name, data), t) in bytes.iter().zip(self.tensors.values()) {
            let view = TensorView::new(Dtype::F32, t.shape.clone(), data).map_err(|e| {
                Error::Serialization {
                    what: format!("tensor {name:?}"),
                    reason: e.to_string(),
                }
            })?;
            views.push((name.as_str(), view));
        }
        let metadata = (!self.metadata.is_empty()).then(|| self.metadata.clone());
        let out = safetensors::serialize(views, metadata).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?;
        write_atomic(path, &out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_swaps_axes() {
        let t = HostTensor {
            shape: vec![2, 3],
            values: vec![1., 2., 3., 4., 5., 6.],
        };
        let tt = t.transposed();
        assert_eq!(tt.shape, vec![3, 2]);
        assert_eq!(tt.values, vec![1., 4., 2., 5., 3., 6.]);
        assert_eq!(tt.transposed(), t);
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("softmask-io-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.bin");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
