//! Gate layout: the names and shapes of a model's gates.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One gate: a `[rows, units]` block of per-unit multipliers.
///
/// `rows` groups units that are normalised separately: 1 for a single dense
/// layer (the notebook's `[1, 30]`), the number of layers for a stacked gate
/// such as a transformer's heads `[layers, heads]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateSpec {
    /// The gate's name, e.g. `"fc1"`.
    pub name: String,
    /// Rows, each normalised on its own.
    pub rows: usize,
    /// Units per row.
    pub units: usize,
}

impl GateSpec {
    /// A gate of `rows × units`.
    pub fn new(name: impl Into<String>, rows: usize, units: usize) -> GateSpec {
        GateSpec {
            name: name.into(),
            rows,
            units,
        }
    }

    /// Entries in the gate (saturating; [`GateLayout::validate`] refuses a
    /// gate past [`MAX_PARAMETERS`](crate::limits::MAX_PARAMETERS)).
    pub fn numel(&self) -> usize {
        self.rows.saturating_mul(self.units)
    }
}

impl std::fmt::Display for GateSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}, {}]", self.name, self.rows, self.units)
    }
}

/// Lists the gates with their shapes: `[fc1 [1, 30], fc2 [1, 10]]`.
impl std::fmt::Display for GateLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[")?;
        for (i, s) in self.specs.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{s}")?;
        }
        write!(f, "]")
    }
}

/// The gates of a model, in a fixed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateLayout {
    specs: Vec<GateSpec>,
}

impl GateLayout {
    /// A layout from its gates, in order.
    pub fn new(specs: Vec<GateSpec>) -> GateLayout {
        GateLayout { specs }
    }

    /// Checks that names are unique, every size is positive, and all gates
    /// together stay within [`MAX_PARAMETERS`](crate::limits::MAX_PARAMETERS).
    pub fn validate(&self) -> Result<()> {
        let specs = &self.specs;
        for (i, s) in specs.iter().enumerate() {
            if s.rows == 0 || s.units == 0 {
                return Err(Error::LayoutMismatch(format!(
                    "gate {:?} has shape [{}, {}]: sizes must be positive",
                    s.name, s.rows, s.units
                )));
            }
            if specs[..i].iter().any(|o| o.name == s.name) {
                return Err(Error::LayoutMismatch(format!(
                    "gate name {:?} appears twice",
                    s.name
                )));
            }
        }
        let sizes: Vec<[usize; 2]> = specs.iter().map(|s| [s.rows, s.units]).collect();
        let terms: Vec<&[usize]> = sizes.iter().map(|s| &s[..]).collect();
        crate::limits::check_parameter_count("the gate layout", &terms)?;
        Ok(())
    }

    /// The gates, in order.
    pub fn specs(&self) -> &[GateSpec] {
        &self.specs
    }

    /// Number of gates.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether the layout has no gate.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
}
