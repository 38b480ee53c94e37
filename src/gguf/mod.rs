//! GGUF: llama.cpp's model files (versions 2 and 3), read with every size
//! checked before anything is allocated: metadata, tensor descriptions, and
//! tensors dequantized to f32 on demand ([`quant`]).
//!
//! A file is a header (magic `GGUF`, version, counts), key–value metadata, a
//! table of tensors (name, dimensions, type, offset), then the aligned data.
//! Every count and length is bounded by what is left of the file and by
//! [`limits`](crate::limits), and every tensor must lie inside the data, so a
//! truncated or corrupt file is an [`Error::CorruptFile`] naming the problem,
//! never a panic or a huge allocation.

pub mod quant;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub use quant::GgmlType;

use crate::error::{Error, Result};
use crate::io::HostTensor;
use crate::limits::{MAX_GGUF_ENTRIES, MAX_GGUF_NESTING, MAX_GGUF_VALUES, MAX_PARAMETERS};

/// The magic bytes a GGUF file starts with.
const MAGIC: &[u8; 4] = b"GGUF";
/// Data alignment when the metadata names none.
const DEFAULT_ALIGNMENT: u64 = 32;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// `f32`.
    F32(f32),
    /// `f64`.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    String(String),
    /// An array of values of one type.
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The value as an unsigned integer, when it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(u64::from(v)),
            GgufValue::U16(v) => Some(u64::from(v)),
            GgufValue::U32(v) => Some(u64::from(v)),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, when it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        Some(match *self {
            GgufValue::U8(v) => f64::from(v),
            GgufValue::I8(v) => f64::from(v),
            GgufValue::U16(v) => f64::from(v),
            GgufValue::I16(v) => f64::from(v),
            GgufValue::U32(v) => f64::from(v),
            GgufValue::I32(v) => f64::from(v),
            GgufValue::U64(v) => v as f64,
            GgufValue::I64(v) => v as f64,
            GgufValue::F32(v) => f64::from(v),
            GgufValue::F64(v) => v,
            _ => return None,
        })
    }

    /// The value as a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One tensor of a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensor {
    /// Its name (llama.cpp's, e.g. `blk.0.attn_q.weight`).
    pub name: String,
    /// Its shape in PyTorch's order, outermost first (GGUF stores the
    /// innermost dimension first).
    pub shape: Vec<usize>,
    /// Its type.
    pub kind: GgmlType,
    /// Where its data starts, in bytes from the start of the file.
    offset: u64,
    /// Its data's length in bytes.
    bytes: u64,
}

impl GgufTensor {
    /// Where its data starts, in bytes from the start of the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Its data's length in bytes.
    pub fn byte_len(&self) -> u64 {
        self.bytes
    }
}

/// A GGUF file: its metadata and tensor table, read and checked; tensors are
/// read from the file on demand.
///
/// # Example
///
/// ```
/// use softmask::gguf::{GgmlType, GgufFile};
///
/// let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gguf/tiny.gguf");
/// let file = GgufFile::open(path)?;
/// assert_eq!(file.version(), 3);
/// assert_eq!(file.get("general.architecture").and_then(|v| v.as_str()), Some("llama"));
/// let q = file.tensor_info("q4_k").unwrap();
/// assert_eq!((q.shape.clone(), q.kind), (vec![3, 512], GgmlType::Q4K));
/// let values = file.read("q4_k")?;          // dequantized to f32
/// assert_eq!(values.shape, [3, 512]);
/// # Ok::<(), softmask::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct GgufFile {
    path: PathBuf,
    version: u32,
    metadata: BTreeMap<String, GgufValue>,
    tensors: Vec<GgufTensor>,
}

/// A reader of the header that knows how many bytes are left, so that no
/// count read from the file makes it allocate more than the file holds.
struct Header<'a> {
    r: BufReader<File>,
    pos: u64,
    len: u64,
    path: &'a Path,
    /// Metadata values read so far (bounded by [`MAX_GGUF_VALUES`]).
    values: usize,
}

impl Header<'_> {
    fn corrupt(&self, reason: String) -> Error {
        Error::CorruptFile {
            path: self.path.to_path_buf(),
            reason,
        }
    }

    fn left(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        if self.left() < N as u64 {
            return Err(self.corrupt(format!("truncated: the file ends inside {what}")));
        }
        self.r.read_exact(&mut b).map_err(|source| Error::Io {
            path: self.path.to_path_buf(),
            source,
        })?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.bytes::<4>(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.bytes::<8>(what).map(u64::from_le_bytes)
    }

    /// A count of items of at least `min_item` bytes each, bounded by the
    /// bytes left and by `limit`.
    fn count(&mut self, what: &str, min_item: u64, limit: u64) -> Result<usize> {
        let n = self.u64(what)?;
        if n > limit {
            return Err(self.corrupt(format!(
                "{what} is {n}, more than the limit of {limit} (softmask::limits)"
            )));
        }
        if n.saturating_mul(min_item) > self.left() {
            return Err(self.corrupt(format!(
                "{what} is {n}, more than the {} bytes left in the file hold",
                self.left()
            )));
        }
        usize::try_from(n).map_err(|_| self.corrupt(format!("{what} {n} does not fit memory")))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.count(&format!("the length of {what}"), 1, u64::MAX)?;
        let mut b = vec![0u8; n];
        self.r.read_exact(&mut b).map_err(|source| Error::Io {
            path: self.path.to_path_buf(),
            source,
        })?;
        self.pos += n as u64;
        String::from_utf8(b).map_err(|_| self.corrupt(format!("{what} is not UTF-8")))
    }

    fn value(&mut self, kind: u32, key: &str, depth: usize) -> Result<GgufValue> {
        self.values += 1;
        if self.values > MAX_GGUF_VALUES {
            return Err(self.corrupt(format!(
                "more than {MAX_GGUF_VALUES} metadata values \
                 (softmask::limits::MAX_GGUF_VALUES)"
            )));
        }
        Ok(match kind {
            0 => GgufValue::U8(self.bytes::<1>(key)?[0]),
            1 => GgufValue::I8(self.bytes::<1>(key)?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.bytes::<2>(key)?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.bytes::<2>(key)?)),
            4 => GgufValue::U32(self.u32(key)?),
            5 => GgufValue::I32(i32::from_le_bytes(self.bytes::<4>(key)?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.bytes::<4>(key)?)),
            7 => match self.bytes::<1>(key)?[0] {
                0 => GgufValue::Bool(false),
                1 => GgufValue::Bool(true),
                b => return Err(self.corrupt(format!("{key}: {b} is not a boolean"))),
            },
            8 => GgufValue::String(self.string(&format!("the value of {key}"))?),
            9 => {
                if depth >= MAX_GGUF_NESTING {
                    return Err(self.corrupt(format!(
                        "{key}: arrays nested deeper than {MAX_GGUF_NESTING}"
                    )));
                }
                let item = self.u32(key)?;
                let n = self.count(
                    &format!("the length of {key}"),
                    min_value_bytes(item),
                    u64::MAX,
                )?;
                let mut items = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    items.push(self.value(item, key, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64(key)?),
            11 => GgufValue::I64(i64::from_le_bytes(self.bytes::<8>(key)?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.bytes::<8>(key)?)),
            other => {
                return Err(self.corrupt(format!("{key}: unknown value type {other}")));
            }
        })
    }
}

/// The fewest bytes a value of type `kind` takes (1 for unknown types, whose
/// first element is refused anyway).
fn min_value_bytes(kind: u32) -> u64 {
    match kind {
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => 1,
    }
}

impl GgufFile {
    /// Reads and checks the header, metadata and tensor table of the GGUF
    /// file at `path` (version 2 or 3). Tensor data is read by [`read`](Self::read).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the file cannot be read; [`Error::CorruptFile`] for
    /// a wrong magic or version, a truncated file, counts or lengths past
    /// what the file holds or past [`limits`](crate::limits), an unknown
    /// value type, a tensor type softmask does not read (named), a tensor of
    /// no or too many elements, one whose rows are not whole blocks, or whose
    /// data lies outside the file.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let mut h = Header {
            r: BufReader::new(file),
            pos: 0,
            len,
            path,
            values: 0,
        };
        if &h.bytes::<4>("the magic")? != MAGIC {
            return Err(h.corrupt("not a GGUF file (no GGUF magic)".into()));
        }
        let version = h.u32("the version")?;
        if !(2..=3).contains(&version) {
            return Err(h.corrupt(format!(
                "GGUF version {version}; softmask reads versions 2 and 3"
            )));
        }
        let limit = MAX_GGUF_ENTRIES as u64;
        // A tensor description takes at least 8 + 4 + 8 + 4 + 8 bytes; a
        // key-value pair at least 8 + 4 + 1.
        let n_tensors = h.u64("the tensor count")?;
        let n_kv = h.u64("the metadata count")?;
        for (what, n, min) in [
            ("tensor count", n_tensors, 32),
            ("metadata count", n_kv, 13),
        ] {
            if n > limit || n.saturating_mul(min) > h.left() {
                return Err(h.corrupt(format!(
                    "the {what} is {n}, more than the file (or the limit of {limit}) holds"
                )));
            }
        }
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = h.string("a metadata key")?;
            let kind = h.u32(&key)?;
            let value = h.value(kind, &key, 0)?;
            metadata.insert(key, value);
        }
        let mut described = Vec::new();
        for _ in 0..n_tensors {
            let name = h.string("a tensor name")?;
            let n_dims = h.u32(&name)?;
            if !(1..=4).contains(&n_dims) {
                return Err(h.corrupt(format!(
                    "tensor {name:?} has {n_dims} dimensions, not 1 to 4"
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(h.u64(&name)?);
            }
            let id = h.u32(&name)?;
            let offset = h.u64(&name)?;
            let kind = GgmlType::from_id(id).ok_or_else(|| {
                h.corrupt(format!(
                    "tensor {name:?} is of type {} (id {id}), which softmask does not read; \
                     it reads F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and Q6_K",
                    quant::unsupported_name(id)
                ))
            })?;
            described.push((name, dims, kind, offset));
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 20 => a,
                _ => {
                    return Err(h.corrupt(format!("general.alignment {v:?} is not a power of two")));
                }
            },
        };
        let data_start = h.pos.div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(described.len());
        for (name, dims, kind, offset) in described {
            let numel = dims
                .iter()
                .try_fold(1u64, |p, &d| p.checked_mul(d))
                .filter(|&n| n > 0 && n <= MAX_PARAMETERS as u64)
                .ok_or_else(|| {
                    h.corrupt(format!(
                        "tensor {name:?} has dimensions {dims:?}: no elements, or more than \
                         {MAX_PARAMETERS} (softmask::limits::MAX_PARAMETERS)"
                    ))
                })?;
            if dims[0] % kind.block_values() as u64 != 0 {
                return Err(h.corrupt(format!(
                    "tensor {name:?} ({kind}) has rows of {} values, not whole blocks of {}",
                    dims[0],
                    kind.block_values()
                )));
            }
            let bytes = numel / kind.block_values() as u64 * kind.block_bytes() as u64;
            let start = data_start.checked_add(offset);
            if offset % alignment != 0
                || start
                    .and_then(|s| s.checked_add(bytes))
                    .is_none_or(|end| end > len)
            {
                return Err(h.corrupt(format!(
                    "tensor {name:?}: its {bytes} bytes at offset {offset} lie outside the \
                     file's data (or are not aligned to {alignment})"
                )));
            }
            let shape = dims
                .iter()
                .rev()
                .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
                .collect();
            tensors.push(GgufTensor {
                name,
                shape,
                kind,
                offset: data_start + offset,
                bytes,
            });
        }
        Ok(GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
        })
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Every metadata entry, by key.
    pub fn metadata(&self) -> &BTreeMap<String, GgufValue> {
        &self.metadata
    }

    /// The metadata value of `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    /// Every tensor's description, in the file's order.
    pub fn tensors(&self) -> &[GgufTensor] {
        &self.tensors
    }

    /// The description of the tensor `name`.
    pub fn tensor_info(&self, name: &str) -> Option<&GgufTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The tensor `name`, dequantized to f32, in PyTorch's shape.
    ///
    /// # Errors
    ///
    /// [`Error::MissingTensor`] for a name the file lacks, [`Error::Io`] when
    /// its data cannot be read (the file changed since [`open`](Self::open)).
    pub fn read(&self, name: &str) -> Result<HostTensor> {
        let t = self.tensor_info(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
            path: self.path.clone(),
        })?;
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let mut file = File::open(&self.path).map_err(io)?;
        file.seek(SeekFrom::Start(t.offset)).map_err(io)?;
        let mut bytes = vec![0u8; t.bytes as usize];
        file.read_exact(&mut bytes).map_err(io)?;
        let mut values = Vec::with_capacity(t.shape.iter().product());
        quant::dequantize(t.kind, &bytes, &mut values);
        Ok(HostTensor {
            shape: t.shape.clone(),
            values,
        })
    }
}
