//! Importance: how much each unit (neuron, attention head) matters.
//!
//! 1. [`proxy`]: the loss whose gate gradients define importance.
//! 2. [`estimate`]: gate gradients over batches into raw importance, and
//!    [`stability`]: how alike the importance of two halves of the data is.
//! 3. [`Importance`] (this module): the values as plain host data,
//!    normalised, saved, loaded and maxed across domains.
//!
//! The gates themselves are the ground floor's ([`crate::gate`]).

pub mod estimate;
pub mod proxy;
pub mod stability;

use std::collections::HashMap;
use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::error::{Error, Result};
use crate::gate::{GateLayout, GateSpec};
use crate::io::{HostTensor, TensorFile};

/// How raw importance is turned into `[0, 1)` per row of a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalization {
    /// The reference code: `|tanh((I - mean) / std)|`. A unit far *below* its
    /// row's mean counts as important as one far above it.
    Reference,
    /// One-sided: `tanh(max((I - mean) / std, 0))`. Only units above the mean are
    /// protected; with absolute gradients this is the form that matches the
    /// method's intent.
    OneSided,
}

/// The importance of one gate: `rows × units` values, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct GateImportance {
    /// The gate's name.
    pub name: String,
    /// Rows (each normalised on its own).
    pub rows: usize,
    /// Units per row.
    pub units: usize,
    /// `rows * units` values, row-major.
    pub values: Vec<f32>,
}

impl GateImportance {
    /// The values of row `r`, or `None` past the last row.
    pub fn row(&self, r: usize) -> Option<&[f32]> {
        self.values.get(r * self.units..(r + 1) * self.units)
    }

    /// The mean value: the notebook's "usage".
    pub fn usage(&self) -> f32 {
        (self.values.iter().map(|&v| f64::from(v)).sum::<f64>() / self.values.len() as f64) as f32
    }
}

/// Per-unit importance of every gate of a model: what soft-masking uses.
///
/// Plain data on the host: it can be saved, loaded, compared, maxed across
/// domains and plotted without a device.
///
/// # Example
///
/// ```
/// use softmask::{GateLayout, GateSpec, Importance, Normalization};
///
/// let layout = GateLayout::new(vec![GateSpec::new("fc1", 1, 4)]);
/// let raw = Importance::new(&layout, vec![vec![1.0, 2.0, 3.0, 4.0]])?;
/// let imp = raw.normalized(Normalization::Reference)?;
/// // z-scores with the unbiased std are ±1.162 and ±0.387; |tanh| of them:
/// let v = &imp.gates()[0].values;
/// assert!((v[0] - 0.82166).abs() < 1e-5 && (v[1] - 0.36903).abs() < 1e-5);
/// assert_eq!(v[0], v[3]);
///
/// // Domains accumulate by element-wise max (DAS).
/// let other = Importance::new(&layout, vec![vec![0.9, 0.0, 0.0, 0.0]])?;
/// let acc = Importance::max(&[imp, other])?;
/// assert_eq!(acc.gates()[0].values[0], 0.9);
/// # Ok::<(), softmask::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Importance {
    gates: Vec<GateImportance>,
}

const FORMAT: &str = "softmask-importance-v1";

impl Importance {
    /// Importance from per-gate values (row-major), checked against `layout`.
    ///
    /// # Errors
    ///
    /// [`Error::LayoutMismatch`] or [`Error::ShapeMismatch`] when the values do
    /// not fit `layout`, [`Error::NonFinite`] for a NaN or infinite value: every
    /// `Importance` holds finite values, so it can always be saved, loaded,
    /// normalised and maxed.
    pub fn new(layout: &GateLayout, values: Vec<Vec<f32>>) -> Result<Importance> {
        layout.validate()?;
        if values.len() != layout.len() {
            return Err(Error::LayoutMismatch(format!(
                "{} value vectors for a layout of {} gates",
                values.len(),
                layout.len()
            )));
        }
        let gates = layout
            .specs()
            .iter()
            .zip(values)
            .map(|(s, v)| {
                if v.len() != s.numel() {
                    return Err(Error::ShapeMismatch {
                        what: format!("importance of gate {:?}", s.name),
                        expected: format!("[{}, {}] = {} values", s.rows, s.units, s.numel()),
                        actual: format!("{} values", v.len()),
                    });
                }
                Ok(GateImportance {
                    name: s.name.clone(),
                    rows: s.rows,
                    units: s.units,
                    values: v,
                })
            })
            .collect::<Result<_>>()?;
        let imp = Importance { gates };
        imp.check_finite()?;
        Ok(imp)
    }

    /// All zeros: no unit protected.
    pub fn zeros(layout: &GateLayout) -> Result<Importance> {
        layout.validate()?;
        Self::new(
            layout,
            layout
                .specs()
                .iter()
                .map(|s| vec![0.0; s.numel()])
                .collect(),
        )
    }

    /// The gates' importance, in layout order.
    pub fn gates(&self) -> &[GateImportance] {
        &self.gates
    }

    /// A gate's importance by name.
    pub fn get(&self, name: &str) -> Option<&GateImportance> {
        self.gates.iter().find(|g| g.name == name)
    }

    /// The layout these values belong to.
    pub fn layout(&self) -> GateLayout {
        GateLayout::new(
            self.gates
                .iter()
                .map(|g| GateSpec::new(g.name.clone(), g.rows, g.units))
                .collect(),
        )
    }

    /// Per gate, the mean importance (what the notebook prints as usage).
    pub fn usage(&self) -> Vec<(String, f32)> {
        self.gates
            .iter()
            .map(|g| (g.name.clone(), g.usage()))
            .collect()
    }

    /// Checks that these values fit a model's gates, name by name and shape by shape.
    pub fn check_layout(&self, layout: &GateLayout) -> Result<()> {
        self.check_layout_of(layout, "the model's")
    }

    /// [`check_layout`](Self::check_layout) against the layout of `whose`
    /// (words for the error message).
    fn check_layout_of(&self, layout: &GateLayout, whose: &str) -> Result<()> {
        let mine = self.layout();
        if mine != *layout {
            return Err(Error::LayoutMismatch(format!(
                "importance gates {mine} do not match {whose} {layout}"
            )));
        }
        Ok(())
    }

    /// Fails with [`Error::NonFinite`] on any NaN or infinite value.
    pub fn check_finite(&self) -> Result<()> {
        for g in &self.gates {
            if let Some(i) = g.values.iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFinite {
                    what: format!("importance of gate {:?}, unit {i}", g.name),
                });
            }
        }
        Ok(())
    }

    /// Normalises every row of every gate on its own: `z = (I - mean) / std`
    /// with the unbiased standard deviation, then `|tanh(z)|` or
    /// `tanh(max(z, 0))`.
    ///
    /// A row whose values are all equal (zero spread), or that has a single
    /// unit, has no defined z-score: all its units get importance 0 (none
    /// protected), never NaN.
    pub fn normalized(&self, normalization: Normalization) -> Result<Importance> {
        self.check_finite()?;
        let gates = self
            .gates
            .iter()
            .map(|g| {
                let values = g
                    .values
                    .chunks(g.units.max(1))
                    .flat_map(|row| normalize_row(row, normalization))
                    .collect();
                GateImportance {
                    values,
                    ..g.clone()
                }
            })
            .collect();
        Ok(Importance { gates })
    }

    /// Element-wise maximum of several importances of the same layout: how
    /// DAS accumulates the importance of past domains.
    pub fn max(all: &[Importance]) -> Result<Importance> {
        let (first, rest) = all
            .split_first()
            .ok_or_else(|| Error::InvalidConfig("max of no importance".into()))?;
        let layout = first.layout();
        let mut out = first.clone();
        for (i, other) in rest.iter().enumerate() {
            other
                .check_layout_of(&layout, "the first importance's")
                .map_err(|e| match e {
                    Error::LayoutMismatch(m) => {
                        Error::LayoutMismatch(format!("importance {}: {m}", i + 1))
                    }
                    e => e,
                })?;
            for (a, b) in out.gates.iter_mut().zip(&other.gates) {
                for (x, &y) in a.values.iter_mut().zip(&b.values) {
                    *x = x.max(y);
                }
            }
        }
        out.check_finite()?;
        Ok(out)
    }

    /// The same values randomly permuted within each row: the control that
    /// keeps the amount of damping and loses the choice of units.
    pub fn permuted(&self, seed: u64) -> Importance {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = self.clone();
        for g in &mut out.gates {
            for row in g.values.chunks_mut(g.units) {
                row.shuffle(&mut rng);
            }
        }
        out
    }

    /// Every row replaced by its mean: the uniform-damping control, which
    /// keeps each layer's mean mask and drops the choice of units.
    pub fn row_means(&self) -> Importance {
        let mut out = self.clone();
        for g in &mut out.gates {
            for row in g.values.chunks_mut(g.units.max(1)) {
                let mean =
                    (row.iter().map(|&v| f64::from(v)).sum::<f64>() / row.len() as f64) as f32;
                row.fill(mean);
            }
        }
        out
    }

    /// Saves as safetensors (one `[rows, units]` F32 tensor per gate, gate
    /// order in the metadata), atomically. Readable from Python with
    /// `safetensors.torch.load_file`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut file = TensorFile::default();
        for g in &self.gates {
            file.tensors.insert(
                g.name.clone(),
                HostTensor {
                    shape: vec![g.rows, g.units],
                    values: g.values.clone(),
                },
            );
        }
        let order: Vec<&str> = self.gates.iter().map(|g| g.name.as_str()).collect();
        file.metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("gates".to_string(), order.join("\n")),
        ]);
        file.save(path.as_ref())
    }

    /// Loads what [`save`](Self::save) wrote, checking it whole.
    pub fn load(path: impl AsRef<Path>) -> Result<Importance> {
        let path = path.as_ref();
        let corrupt = |reason: String| Error::CorruptFile {
            path: path.to_path_buf(),
            reason,
        };
        let mut file = TensorFile::load(path)?;
        if file.metadata.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(corrupt(format!(
                "not a {FORMAT} file (no matching format metadata)"
            )));
        }
        let order = file.metadata.get("gates").cloned().unwrap_or_default();
        let names: Vec<&str> = order.split('\n').filter(|n| !n.is_empty()).collect();
        for (i, name) in names.iter().enumerate() {
            if let Some(j) = names[..i].iter().position(|n| n == name) {
                return Err(corrupt(format!(
                    "gate {name:?} is listed twice in the metadata (entries {} and {})",
                    j + 1,
                    i + 1
                )));
            }
        }
        let held = file.tensors.len() + file.skipped.len();
        if names.len() != held {
            return Err(corrupt(format!(
                "metadata lists {} gates, the file holds {held} tensors",
                names.len(),
            )));
        }
        let mut gates = Vec::with_capacity(names.len());
        for name in names {
            let t = file.remove(name, path)?;
            let [rows, units] = t.shape[..] else {
                return Err(corrupt(format!(
                    "gate {name:?} has shape {:?}, not 2-D",
                    t.shape
                )));
            };
            gates.push(GateImportance {
                name: name.to_string(),
                rows,
                units,
                values: t.values,
            });
        }
        let imp = Importance { gates };
        imp.layout().validate()?;
        imp.check_finite()?;
        Ok(imp)
    }
}

fn normalize_row(row: &[f32], normalization: Normalization) -> Vec<f32> {
    let n = row.len();
    let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
    let var = if n > 1 {
        row.iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / (n - 1) as f64
    } else {
        0.0
    };
    let std = var.sqrt();
    row.iter()
        .map(|&v| {
            let z = if std > 0.0 {
                (f64::from(v) - mean) / std
            } else {
                0.0
            };
            (match normalization {
                Normalization::Reference => z.tanh().abs(),
                Normalization::OneSided => z.max(0.0).tanh(),
            }) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> GateLayout {
        GateLayout::new(vec![GateSpec::new("a", 2, 3), GateSpec::new("b", 1, 1)])
    }

    #[test]
    fn zero_spread_and_single_unit_rows_are_zero_not_nan() {
        let raw = Importance::new(
            &layout(),
            vec![vec![5.0, 5.0, 5.0, 1.0, 2.0, 3.0], vec![7.0]],
        )
        .unwrap();
        let n = raw.normalized(Normalization::Reference).unwrap();
        assert_eq!(n.gates()[0].row(0), Some(&[0.0, 0.0, 0.0][..]));
        assert_eq!(n.gates()[0].row(2), None);
        assert_eq!(n.gates()[1].values, [0.0]);
        // Row 1 has mean 2 and std 1: z = -1, 0, 1.
        let t = 1f64.tanh() as f32;
        assert_eq!(n.gates()[0].row(1), Some(&[t, 0.0, t][..]));
        let o = raw.normalized(Normalization::OneSided).unwrap();
        assert_eq!(o.gates()[0].row(1), Some(&[0.0, 0.0, t][..]));
    }

    #[test]
    fn permuted_keeps_each_rows_values() {
        let raw = Importance::new(
            &layout(),
            vec![vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], vec![7.0]],
        )
        .unwrap();
        let p = raw.permuted(3);
        for r in 0..2 {
            let mut a = p.gates()[0].row(r).unwrap().to_vec();
            a.sort_by(f32::total_cmp);
            assert_eq!(Some(&a[..]), raw.gates()[0].row(r));
        }
    }

    #[test]
    fn max_rejects_other_layouts() {
        let a = Importance::zeros(&layout()).unwrap();
        let b = Importance::zeros(&GateLayout::new(vec![GateSpec::new("a", 2, 3)])).unwrap();
        assert!(matches!(
            Importance::max(&[a, b]),
            Err(Error::LayoutMismatch(_))
        ));
    }
}
