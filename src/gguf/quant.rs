//! Quant: the tensor types of a GGUF file and their dequantization to f32,
//! block by block, as llama.cpp's `ggml` (and its Python package `gguf`)
//! lay them out.

use std::fmt;

/// A GGUF tensor type softmask reads: plain floats, or quantized blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// `f32`.
    F32,
    /// IEEE half.
    F16,
    /// bfloat16.
    BF16,
    /// Blocks of 32: an f16 scale, 32 `i8`.
    Q8_0,
    /// Blocks of 32: an f16 scale, 32 4-bit values offset by 8.
    Q4_0,
    /// Blocks of 32: f16 scale and minimum, 32 4-bit values.
    Q4_1,
    /// Super-blocks of 256: f16 scale and minimum, eight 6-bit sub-scales and
    /// sub-minimums, 4-bit values.
    Q4K,
    /// As [`Q4K`](Self::Q4K), with a fifth bit per value.
    Q5K,
    /// Super-blocks of 256: an f16 scale, sixteen `i8` sub-scales, 6-bit
    /// values offset by 32.
    Q6K,
}

impl GgmlType {
    /// The type of ggml's id `id`, or `None` for one softmask does not read.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        Some(match id {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::Q4_0,
            3 => GgmlType::Q4_1,
            8 => GgmlType::Q8_0,
            12 => GgmlType::Q4K,
            13 => GgmlType::Q5K,
            14 => GgmlType::Q6K,
            30 => GgmlType::BF16,
            _ => return None,
        })
    }

    /// Values per block.
    pub fn block_values(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1 => 32,
            GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q8_0 => 34,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q4K => 144,
            GgmlType::Q5K => 176,
            GgmlType::Q6K => 210,
        }
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q4K => "Q4_K",
            GgmlType::Q5K => "Q5_K",
            GgmlType::Q6K => "Q6_K",
        };
        f.write_str(name)
    }
}

/// The name of a ggml type id softmask does not read, for error messages.
pub(crate) fn unsupported_name(id: u32) -> &'static str {
    match id {
        6 => "Q5_0",
        7 => "Q5_1",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        15 => "Q8_K",
        16..=23 | 29 => "an IQ type",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        34 | 35 => "a TQ type",
        _ => "unknown",
    }
}

/// IEEE half to f32, exactly.
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            sign | ((113 - shift) << 23) | (m << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// The 6-bit scale and minimum of sub-block `j` (0..8) of a Q4_K / Q5_K
/// super-block's 12 packed bytes.
fn scale_min(s: &[u8], j: usize) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (s[j] & 0x3f, s[j + 4] & 0x3f)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    };
    (f32::from(sc), f32::from(m))
}

/// Dequantizes `bytes`, a whole number of blocks of `kind`, into `out`
/// (`block_values` per block). The caller checks the lengths.
pub(crate) fn dequantize(kind: GgmlType, bytes: &[u8], out: &mut Vec<f32>) {
    let bs = kind.block_bytes();
    for b in bytes.chunks_exact(bs) {
        match kind {
            GgmlType::F32 => out.push(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            GgmlType::F16 => out.push(f16_at(b, 0)),
            GgmlType::BF16 => out.push(f32::from_bits(
                u32::from(u16::from_le_bytes([b[0], b[1]])) << 16,
            )),
            GgmlType::Q8_0 => {
                let d = f16_at(b, 0);
                out.extend(b[2..34].iter().map(|&q| d * f32::from(q as i8)));
            }
            GgmlType::Q4_0 | GgmlType::Q4_1 => {
                let d = f16_at(b, 0);
                let (m, qs) = match kind {
                    GgmlType::Q4_1 => (f16_at(b, 2), &b[4..20]),
                    _ => (0.0, &b[2..18]),
                };
                let off = if kind == GgmlType::Q4_0 { 8.0 } else { 0.0 };
                for shift in [0, 4] {
                    out.extend(
                        qs.iter()
                            .map(|&q| d * (f32::from((q >> shift) & 0x0f) - off) + m),
                    );
                }
            }
            GgmlType::Q4K | GgmlType::Q5K => {
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                let scales = &b[4..16];
                let (qh, qs) = match kind {
                    GgmlType::Q5K => (Some(&b[16..48]), &b[48..176]),
                    _ => (None, &b[16..144]),
                };
                for j in 0..8 {
                    let (sc, m) = scale_min(scales, j);
                    let (d, m) = (d * sc, dmin * m);
                    // Sub-block j: the low (even j) or high (odd j) nibbles of
                    // 32 bytes; Q5_K's fifth bit is bit j of qh.
                    let low = &qs[(j / 2) * 32..(j / 2) * 32 + 32];
                    for (l, &q) in low.iter().enumerate() {
                        let mut v = (q >> (4 * (j % 2))) & 0x0f;
                        if let Some(qh) = qh {
                            v |= ((qh[l] >> j) & 1) << 4;
                        }
                        out.push(d * f32::from(v) - m);
                    }
                }
            }
            GgmlType::Q6K => {
                let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
                let d = f16_at(b, 208);
                for e in 0..256 {
                    let (half, rest) = (e / 128, e % 128);
                    let low = (ql[half * 64 + rest % 64] >> (4 * (rest / 64))) & 0x0f;
                    let high = (qh[half * 32 + rest % 32] >> (2 * (rest / 32))) & 0x03;
                    let q = i32::from(low | (high << 4)) - 32;
                    out.push(d * f32::from(sc[e / 16] as i8) * q as f32);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_convert_exactly() {
        for (h, want) in [
            (0x3c00u16, 1.0f32),
            (0xc000, -2.0),
            (0x0000, 0.0),
            (0x7bff, 65504.0),
            // The smallest and the largest subnormal, and 1/3 rounded.
            (0x0001, 2f32.powi(-24)),
            (0x03ff, 1023.0 * 2f32.powi(-24)),
            (0x3555, 1365.0 / 4096.0),
        ] {
            assert_eq!(f16_to_f32(h), want, "{h:#06x}");
        }
        assert!(f16_to_f32(0x7c00).is_infinite() && f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn block_sizes_are_ggmls() {
        for (id, values, bytes) in [
            (0, 1, 4),
            (1, 1, 2),
            (30, 1, 2),
            (8, 32, 34),
            (2, 32, 18),
            (3, 32, 20),
            (12, 256, 144),
            (13, 256, 176),
            (14, 256, 210),
        ] {
            let t = GgmlType::from_id(id).unwrap();
            assert_eq!((t.block_values(), t.block_bytes()), (values, bytes), "{t}");
        }
        assert_eq!(GgmlType::from_id(10), None);
        assert_eq!(unsupported_name(10), "Q2_K");
    }
}
