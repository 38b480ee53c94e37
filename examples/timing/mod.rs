//! What the benchmark examples share: a fixed importance and the JSON line
//! each timed operation prints.

use softmask::{GateLayout, Importance, Result};

/// A fixed, uneven importance in `[0, 1)` for `layout`: the same on both
/// sides of a comparison.
pub fn fixed_importance(layout: &GateLayout) -> Result<Importance> {
    let values = layout
        .specs()
        .iter()
        .map(|s| (0..s.numel()).map(|i| (i * 7 % 11) as f32 / 11.0).collect())
        .collect();
    Importance::new(layout, values)
}

/// Prints one JSON line for operation `op` timed `times` (milliseconds) on
/// `device`: its median and minimum, with `extra` (`"key": value` pairs,
/// comma-first) appended. Nothing for no times.
pub fn print_timing(op: &str, device: &str, mut times: Vec<f64>, extra: &str) {
    if times.is_empty() {
        return;
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{{\"side\": \"rust\", \"op\": \"{op}\", \"device\": \"{device}\", \"iters\": {}, \"median_ms\": {:.1}, \"min_ms\": {:.1}{extra}}}",
        times.len(),
        times[times.len() / 2],
        times[0]
    );
}
