//! Line charts as SVG, written as text: no plotting crate to build, and any browser shows them
//! (issue 27, item 5: the hand-written PNG encoder and bitmap font it replaced were gone).

use std::fmt::Write as _;
use std::path::Path;

/// One line on a chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Logarithmic x axis (rate sweeps).
    pub log_x: bool,
    /// A horizontal reference line (a target or threshold) and its label.
    pub hline: Option<(f64, String)>,
}

const W: usize = 900;
const H: usize = 520;
const LEFT: usize = 90;
const RIGHT: usize = 30;
const TOP: usize = 50;
const BOTTOM: usize = 70;
const COLORS: [[u8; 3]; 6] = [
    [31, 119, 180],
    [214, 39, 40],
    [44, 160, 44],
    [255, 127, 14],
    [148, 103, 189],
    [140, 86, 75],
];

struct Frame {
    x0: f64,
    x1: f64,
    y1: f64,
    log_x: bool,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        let (a, b, v) = if self.log_x {
            (self.x0.ln(), self.x1.ln(), x.max(1e-9).ln())
        } else {
            (self.x0, self.x1, x)
        };
        let span = if b > a { b - a } else { 1.0 };
        LEFT as f64 + (v - a) / span * (W - LEFT - RIGHT) as f64
    }
    fn py(&self, y: f64) -> f64 {
        (H - BOTTOM) as f64 - y / self.y1 * (H - TOP - BOTTOM) as f64
    }
}

impl Chart {
    fn frame(&self) -> Frame {
        let all = || self.series.iter().flat_map(|s| s.points.iter());
        let mut x0 = all().map(|p| p.0).fold(f64::INFINITY, f64::min);
        let mut x1 = all().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
        let mut y1 = all().map(|p| p.1).fold(0.0, f64::max);
        if let Some((y, _)) = &self.hline {
            y1 = y1.max(*y);
        }
        if !x0.is_finite() {
            (x0, x1) = (0.0, 1.0);
        }
        if self.log_x {
            x0 = x0.max(1e-9);
        } else {
            x0 = x0.min(0.0);
        }
        if x1 <= x0 {
            x1 = x0 + 1.0;
        }
        Frame {
            x0,
            x1,
            y1: if y1 > 0.0 { y1 * 1.1 } else { 1.0 },
            log_x: self.log_x,
        }
    }

    fn x_ticks(&self, f: &Frame) -> Vec<f64> {
        if f.log_x {
            let xs: Vec<f64> = self
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0))
                .collect();
            let mut xs = xs;
            xs.sort_by(|a, b| a.total_cmp(b));
            xs.dedup();
            xs
        } else {
            (0..=5)
                .map(|i| f.x0 + (f.x1 - f.x0) * i as f64 / 5.0)
                .collect()
        }
    }

    /// Writes `base.svg`.
    pub fn write(&self, base: &Path) -> std::io::Result<()> {
        std::fs::write(base.with_extension("svg"), self.svg())
    }

    fn svg(&self) -> String {
        let f = self.frame();
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="13"><rect width="100%" height="100%" fill="white"/>"#
        );
        for i in 0..=5 {
            let y = f.y1 * i as f64 / 5.0;
            let py = f.py(y);
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" y1="{py:.1}" x2="{}" y2="{py:.1}" stroke="#ccc"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                W - RIGHT,
                LEFT - 6,
                py + 4.0,
                compact(y)
            );
        }
        for x in self.x_ticks(&f) {
            let px = f.px(x);
            let _ = write!(
                s,
                r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{}" stroke="#ccc"/><text x="{px:.1}" y="{}" text-anchor="middle">{}</text>"##,
                H - BOTTOM,
                H - BOTTOM + 18,
                compact(x)
            );
        }
        if let Some((y, label)) = &self.hline {
            let py = f.py(*y);
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" y1="{py:.1}" x2="{}" y2="{py:.1}" stroke="#777" stroke-dasharray="8 8"/><text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
                W - RIGHT,
                W - RIGHT,
                py - 6.0,
                esc(label)
            );
        }
        for (i, series) in self.series.iter().enumerate() {
            let [r, g, b] = COLORS[i % COLORS.len()];
            let pts: Vec<String> = series
                .points
                .iter()
                .map(|p| format!("{:.1},{:.1}", f.px(p.0), f.py(p.1)))
                .collect();
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="rgb({r},{g},{b})" stroke-width="2" points="{}"/>"#,
                pts.join(" ")
            );
            for p in &series.points {
                let _ = write!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="rgb({r},{g},{b})"/>"#,
                    f.px(p.0),
                    f.py(p.1)
                );
            }
            let ly = TOP + 14 + 20 * i;
            let _ = write!(
                s,
                r#"<rect x="{}" y="{}" width="20" height="10" fill="rgb({r},{g},{b})"/><text x="{}" y="{}">{}</text>"#,
                LEFT + 14,
                ly - 9,
                LEFT + 40,
                ly,
                esc(&series.name)
            );
        }
        let _ = write!(
            s,
            r#"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="black"/><line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
            H - BOTTOM,
            H - BOTTOM,
            W - RIGHT,
            H - BOTTOM
        );
        let _ = write!(
            s,
            r#"<text x="{LEFT}" y="26" font-size="16">{}</text><text x="{}" y="{}" text-anchor="middle">{}</text><text x="8" y="{}">{}</text></svg>"#,
            esc(&self.title),
            W / 2,
            H - 22,
            esc(&self.x_label),
            TOP - 12,
            esc(&self.y_label)
        );
        s
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `1234` -> `1.2k`, `0.25` -> `0.25`.
pub fn compact(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_an_svg_with_its_series_points_and_escaped_labels() {
        let chart = Chart {
            title: "p99 <ms>".into(),
            x_label: "rate".into(),
            y_label: "ms".into(),
            series: vec![Series {
                name: "switchboard & co".into(),
                points: vec![(10.0, 1.0), (100.0, 4.0), (1000.0, 9.0)],
            }],
            log_x: true,
            hline: Some((5.0, "target".into())),
        };
        let svg = chart.svg();
        assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<circle").count(), 3);
        assert!(svg.contains("p99 &lt;ms&gt;") && svg.contains("switchboard &amp; co"));
        assert!(svg.contains("stroke-dasharray"), "the reference line");
        let dir = std::env::temp_dir().join(format!("chart-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        chart.write(&dir.join("c")).unwrap();
        assert!(dir.join("c.svg").exists() && !dir.join("c.png").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn numbers_are_compact() {
        assert_eq!(compact(1234.0), "1.2k");
        assert_eq!(compact(25_000.0), "25k");
        assert_eq!(compact(0.25), "0.25");
        assert_eq!(compact(2_500_000.0), "2.5M");
    }
}
