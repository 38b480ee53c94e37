//! Plot: SVG pictures of importance (layer × unit heatmaps) and of the
//! result matrix, written as plain SVG.

use std::fmt::Write;
use std::path::Path;

use super::results::ResultMatrix;
use crate::error::Result;
use crate::importance::Importance;
use crate::io;

/// White (0) to dark red (1).
fn heat(v: f32) -> String {
    let v = v.clamp(0.0, 1.0);
    let g = (255.0 * (1.0 - v)) as u8;
    let b = (255.0 * (1.0 - v).powi(2)) as u8;
    let r = (255.0 - 80.0 * v) as u8;
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG of an importance: one heatmap per gate, a row per layer, a
/// column per unit, darker for more protected.
pub fn importance_svg(importance: &Importance) -> String {
    let width = 900.0;
    let (label, row_h, gap) = (110.0, 14.0, 28.0);
    let mut y = 50.0;
    let mut body = String::new();
    for g in importance.gates() {
        let cell = (width - label - 20.0) / g.units as f64;
        let _ = writeln!(
            body,
            r#"<text x="4" y="{:.1}" font-size="12" font-family="sans-serif">{} [{} x {}]</text>"#,
            y - 6.0,
            escape(&g.name),
            g.rows,
            g.units
        );
        for r in 0..g.rows {
            let _ = writeln!(
                body,
                r#"<text x="4" y="{:.1}" font-size="10" font-family="sans-serif">layer {r}</text>"#,
                y + row_h - 3.0
            );
            for (u, &v) in g.row(r).unwrap_or(&[]).iter().enumerate() {
                let _ = writeln!(
                    body,
                    r#"<rect x="{:.2}" y="{y:.1}" width="{:.2}" height="{row_h}" fill="{}"><title>{} layer {r} unit {u}: {v:.3}</title></rect>"#,
                    label + u as f64 * cell,
                    cell.max(0.5),
                    heat(v),
                    escape(&g.name)
                );
            }
            y += row_h;
        }
        y += gap;
    }
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y:.0}" viewBox="0 0 {width} {y:.0}"><rect width="100%" height="100%" fill="white"/>
<text x="4" y="16" font-size="13" font-family="sans-serif">importance (white 0, dark red 1)</text>
{body}</svg>
"#
    )
}

/// Writes [`importance_svg`] to `path`, atomically.
pub fn write_importance(importance: &Importance, path: &Path) -> Result<()> {
    io::write_atomic(path, importance_svg(importance).as_bytes())
}

/// The SVG of a result matrix: held-out loss per stage (row) and evaluated
/// set (column), each cell shaded by its change from the base model (red
/// worse, blue better) and labelled with the loss.
pub fn matrix_svg(m: &ResultMatrix) -> String {
    let rows: Vec<(String, Vec<f32>)> = std::iter::once(("base".to_string(), m.base.clone()))
        .chain(
            m.domains
                .iter()
                .zip(&m.after)
                .map(|(d, r)| (format!("after {d}"), r.clone())),
        )
        .collect();
    let title = format!(
        "{}: held-out loss (red: worse than base, blue: better)",
        m.method
    );
    stage_table_svg(&title, &m.columns, &rows, 2.0)
}

/// A table of values per stage (row; the first is the base) and column,
/// each cell labelled with its value and shaded by its change from the
/// base row, in full at a change of `scale`: red for an increase, blue for a
/// decrease, or the other way round for a negative `scale` (accuracies,
/// where a decrease is the loss).
pub(crate) fn stage_table_svg(
    title: &str,
    columns: &[String],
    rows: &[(String, Vec<f32>)],
    scale: f32,
) -> String {
    let (cw, ch, left, top) = (110.0, 28.0, 130.0, 50.0);
    let base: &[f32] = rows.first().map_or(&[], |(_, v)| v.as_slice());
    let width = left + cw * columns.len() as f64 + 10.0;
    let height = top + ch * rows.len() as f64 + 10.0;
    let mut body = String::new();
    for (c, name) in columns.iter().enumerate() {
        let _ = writeln!(
            body,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" font-family="sans-serif" text-anchor="middle">{}</text>"#,
            left + cw * (c as f64 + 0.5),
            top - 8.0,
            escape(name)
        );
    }
    for (r, (name, values)) in rows.iter().enumerate() {
        let y = top + ch * r as f64;
        let _ = writeln!(
            body,
            r#"<text x="4" y="{:.1}" font-size="12" font-family="sans-serif">{}</text>"#,
            y + ch * 0.65,
            escape(name)
        );
        for (c, &v) in values.iter().enumerate() {
            let delta = (v - base.get(c).copied().unwrap_or(v)) / scale;
            let k = delta.abs().min(1.0);
            let shade = (255.0 * (1.0 - 0.7 * k)) as u8;
            let fill = if delta > 0.0 {
                format!("#ff{shade:02x}{shade:02x}")
            } else {
                format!("#{shade:02x}{shade:02x}ff")
            };
            let x = left + cw * c as f64;
            let _ = writeln!(
                body,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{cw}" height="{ch}" fill="{fill}" stroke="white"/><text x="{:.1}" y="{:.1}" font-size="12" font-family="sans-serif" text-anchor="middle">{v:.3}</text>"#,
                x + cw / 2.0,
                y + ch * 0.65
            );
        }
    }
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}"><rect width="100%" height="100%" fill="white"/>
<text x="4" y="16" font-size="13" font-family="sans-serif">{}</text>
{body}</svg>
"#,
        escape(title)
    )
}

/// Writes [`matrix_svg`] to `path`, atomically.
pub fn write_matrix(m: &ResultMatrix, path: &Path) -> Result<()> {
    io::write_atomic(path, matrix_svg(m).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gate::{GateLayout, GateSpec};

    #[test]
    fn the_matrix_picture_labels_every_cell_and_shades_by_change() {
        let mut m = ResultMatrix::new(
            "das <x>",
            true,
            &["a".into(), "b".into()],
            vec![2.0, 3.0, 4.0],
        )
        .unwrap();
        m.push(vec![2.5, 1.0, 4.0]).unwrap();
        let svg = matrix_svg(&m);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.trim_end().ends_with("</svg>"));
        // The method's name escaped, every column and row named.
        assert!(svg.contains("das &lt;x&gt;: held-out loss"));
        for label in [">general<", ">a<", ">b<", ">base<", ">after a<"] {
            assert!(svg.contains(label), "{label}");
        }
        // Each cell labelled with its loss: worse is red, better blue, equal white.
        assert!(svg.contains(r##"fill="#ffd2d2" stroke="white"/><text x="185.0" y="96.2" font-size="12" font-family="sans-serif" text-anchor="middle">2.500</text>"##), "{svg}");
        assert!(
            svg.contains(r##"fill="#4c4cff""##),
            "a gain of 2 is the darkest blue"
        );
        assert_eq!(svg.matches("<rect x=").count(), 6);
    }

    #[test]
    fn a_negative_scale_shades_a_fall_red() {
        let rows = vec![
            ("base".to_string(), vec![0.8]),
            ("after a".to_string(), vec![0.3]),
            ("after b".to_string(), vec![0.9]),
        ];
        let svg = stage_table_svg("t", &["accuracy".to_string()], &rows, -0.5);
        // Fell by the full scale: the darkest red; rose by a fifth: light blue.
        assert!(svg.contains(r##"fill="#ff4c4c""##), "{svg}");
        assert!(svg.contains(r##"fill="#dbdbff""##), "{svg}");
        assert!(svg.contains(r##"fill="#ffffff" stroke="white"/><text x="185.0" y="68.2""##));
    }

    #[test]
    fn the_importance_picture_has_a_cell_per_unit_from_white_to_dark_red() {
        let layout = GateLayout::new(vec![GateSpec::new("heads", 2, 3)]);
        let imp = Importance::new(&layout, vec![vec![0.0, 0.5, 1.0, 1.0, 0.0, 0.25]]).unwrap();
        let svg = importance_svg(&imp);
        assert!(svg.contains(">heads [2 x 3]<"));
        assert_eq!(svg.matches("<rect x=").count(), 6);
        assert!(svg.contains(r##"fill="#ffffff"><title>heads layer 0 unit 0: 0.000</title>"##));
        assert!(svg.contains(r##"fill="#af0000"><title>heads layer 0 unit 2: 1.000</title>"##));
        assert_eq!((heat(-1.0), heat(2.0)), (heat(0.0), heat(1.0)));
    }
}
