//! Gates: the per-unit multipliers a gated forward pass takes.

use burn::tensor::{Device, Tensor};

use super::layout::GateLayout;
use crate::error::{Error, Result};

/// Gate tensors, one `[rows, units]` tensor per gate of a [`GateLayout`].
///
/// Gates are plain tensors, not parameters: the optimizer and the records never see them.
#[derive(Debug, Clone)]
pub struct Gates {
    tensors: Vec<Tensor<2>>,
}

impl Gates {
    /// Gates of ones: the forward pass is unchanged.
    pub fn ones(layout: &GateLayout, device: &Device) -> Gates {
        Gates {
            tensors: layout
                .specs()
                .iter()
                .map(|s| Tensor::ones([s.rows, s.units], device))
                .collect(),
        }
    }

    /// Gates from given tensors, checked against `layout`.
    pub fn from_tensors(tensors: Vec<Tensor<2>>, layout: &GateLayout) -> Result<Gates> {
        let gates = Gates { tensors };
        gates.check(layout)?;
        Ok(gates)
    }

    /// Marks every gate as requiring a gradient (for importance estimation).
    pub fn require_grad(self) -> Gates {
        Gates {
            tensors: self.tensors.into_iter().map(Tensor::require_grad).collect(),
        }
    }

    /// The gate tensors, in layout order.
    pub fn tensors(&self) -> &[Tensor<2>] {
        &self.tensors
    }

    /// Row `row` (a layer) of gate `gate`, as a vector of its units.
    ///
    /// # Shapes
    ///
    /// - output: `[units]`
    pub fn layer(&self, gate: usize, row: usize) -> Option<Tensor<1>> {
        let t = self.tensors.get(gate)?;
        let [rows, units] = t.dims();
        (row < rows).then(|| t.clone().slice([row..row + 1, 0..units]).reshape([units]))
    }

    /// Checks the number of gates and their shapes against `layout`.
    pub fn check(&self, layout: &GateLayout) -> Result<()> {
        if self.tensors.len() != layout.len() {
            return Err(Error::LayoutMismatch(format!(
                "{} gate tensors for a layout of {} gates",
                self.tensors.len(),
                layout.len()
            )));
        }
        for (t, s) in self.tensors.iter().zip(layout.specs()) {
            if t.dims() != [s.rows, s.units] {
                return Err(Error::ShapeMismatch {
                    what: format!("gate {:?}", s.name),
                    expected: format!("[{}, {}]", s.rows, s.units),
                    actual: format!("{:?}", t.dims()),
                });
            }
        }
        Ok(())
    }
}
