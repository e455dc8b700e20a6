//! Line charts as PNG and SVG with no plotting crate: a pixel canvas, Bresenham lines, a 5x7
//! bitmap font, and a PNG encoder with a run-length deflate (charts are flat colour, so that is
//! enough, and there is no zlib to build). The SVG twin has real text.

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

    /// Writes `base.png` and `base.svg`.
    pub fn write(&self, base: &Path) -> std::io::Result<()> {
        std::fs::write(base.with_extension("png"), self.png())?;
        std::fs::write(base.with_extension("svg"), self.svg())
    }

    fn png(&self) -> Vec<u8> {
        let f = self.frame();
        let mut c = Canvas::new();
        let grey = [200, 200, 200];
        let black = [0, 0, 0];
        for i in 0..=5 {
            let y = f.y1 * i as f64 / 5.0;
            let py = f.py(y);
            c.line(LEFT as f64, py, (W - RIGHT) as f64, py, grey, 1);
            let label = compact(y);
            c.text(
                LEFT as i32 - 8 - 12 * label.len() as i32,
                py as i32 - 7,
                &label,
                black,
                2,
            );
        }
        for x in self.x_ticks(&f) {
            let px = f.px(x);
            c.line(px, TOP as f64, px, (H - BOTTOM) as f64, grey, 1);
            let label = compact(x);
            c.text(
                px as i32 - 6 * label.len() as i32,
                (H - BOTTOM) as i32 + 8,
                &label,
                black,
                2,
            );
        }
        c.line(
            LEFT as f64,
            TOP as f64,
            LEFT as f64,
            (H - BOTTOM) as f64,
            black,
            2,
        );
        c.line(
            LEFT as f64,
            (H - BOTTOM) as f64,
            (W - RIGHT) as f64,
            (H - BOTTOM) as f64,
            black,
            2,
        );
        if let Some((y, label)) = &self.hline {
            let py = f.py(*y);
            let mut x = LEFT as f64;
            while x < (W - RIGHT) as f64 {
                c.line(
                    x,
                    py,
                    (x + 8.0).min((W - RIGHT) as f64),
                    py,
                    [120, 120, 120],
                    1,
                );
                x += 16.0;
            }
            c.text(
                (W - RIGHT) as i32 - 12 * label.len() as i32,
                py as i32 - 18,
                label,
                [90, 90, 90],
                2,
            );
        }
        for (i, s) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (f.px(p.0), f.py(p.1))).collect();
            for w in pts.windows(2) {
                c.line(w[0].0, w[0].1, w[1].0, w[1].1, color, 2);
            }
            for p in &pts {
                c.rect(p.0 as i32 - 3, p.1 as i32 - 3, 7, 7, color);
            }
            let ly = TOP as i32 + 10 + 22 * i as i32;
            c.rect(LEFT as i32 + 14, ly + 2, 20, 10, color);
            c.text(LEFT as i32 + 42, ly, &s.name, black, 2);
        }
        c.text(LEFT as i32, 14, &self.title, black, 2);
        c.text(
            (W / 2) as i32 - 6 * self.x_label.len() as i32,
            H as i32 - 26,
            &self.x_label,
            black,
            2,
        );
        c.text(8, TOP as i32 - 22, &self.y_label, black, 2);
        c.encode()
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

struct Canvas {
    px: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        Canvas {
            px: vec![255; W * H * 3],
        }
    }

    fn set(&mut self, x: i32, y: i32, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < W && (y as usize) < H {
            let i = (y as usize * W + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    fn rect(&mut self, x: i32, y: i32, w: i32, h: i32, c: [u8; 3]) {
        for dy in 0..h {
            for dx in 0..w {
                self.set(x + dx, y + dy, c);
            }
        }
    }

    fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: [u8; 3], width: i32) {
        let steps = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as i32;
        for i in 0..=steps {
            let t = i as f64 / steps as f64;
            let (x, y) = (
                (x0 + (x1 - x0) * t).round() as i32,
                (y0 + (y1 - y0) * t).round() as i32,
            );
            self.rect(x, y, width, width, c);
        }
    }

    fn text(&mut self, x: i32, y: i32, s: &str, c: [u8; 3], scale: i32) {
        for (i, ch) in s.chars().enumerate() {
            let g = glyph(ch.to_ascii_uppercase());
            for (row, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        self.rect(
                            x + (i as i32 * 6 + col) * scale,
                            y + row as i32 * scale,
                            scale,
                            scale,
                            c,
                        );
                    }
                }
            }
        }
    }

    fn encode(&self) -> Vec<u8> {
        // Filter "Sub" turns runs of equal pixels into runs of zero bytes, which the run-length
        // deflate below shrinks to a few bits each: charts are mostly flat colour.
        let mut raw = Vec::with_capacity((W * 3 + 1) * H);
        for row in self.px.chunks(W * 3) {
            raw.push(1);
            for x in 0..row.len() {
                raw.push(if x < 3 {
                    row[x]
                } else {
                    row[x].wrapping_sub(row[x - 3])
                });
            }
        }
        let mut z = vec![0x78, 0x01];
        z.extend_from_slice(&deflate_rle(&raw));
        z.extend_from_slice(&adler32(&raw).to_be_bytes());
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&(W as u32).to_be_bytes());
        ihdr.extend_from_slice(&(H as u32).to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(&mut png, b"IDAT", &z);
        chunk(&mut png, b"IEND", &[]);
        png
    }
}

/// Deflate (RFC 1951) with one fixed-Huffman block whose only matches are runs of the previous
/// byte (distance 1): a run-length coder that any PNG reader decodes.
fn deflate_rle(data: &[u8]) -> Vec<u8> {
    const LEN_BASE: [usize; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
        131, 163, 195, 227, 258,
    ];
    const LEN_EXTRA: [u32; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    let mut w = Bits::default();
    w.put(1, 1); // last block
    w.put(1, 2); // fixed Huffman codes
    let mut i = 0;
    while i < data.len() {
        if i > 0 {
            let prev = data[i - 1];
            let run = data[i..]
                .iter()
                .take(258)
                .take_while(|&&b| b == prev)
                .count();
            if run >= 3 {
                let k = if run == 258 {
                    28
                } else {
                    LEN_BASE
                        .iter()
                        .rposition(|&b| b <= run)
                        .unwrap_or(0)
                        .min(27)
                };
                w.symbol(257 + k as u32);
                w.put((run - LEN_BASE[k]) as u32, LEN_EXTRA[k]);
                w.put(0, 5); // distance code 0: distance 1 (fixed 5-bit code 00000)
                i += run;
                continue;
            }
        }
        w.symbol(u32::from(data[i]));
        i += 1;
    }
    w.symbol(256);
    w.finish()
}

/// An LSB-first bit writer.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, bits: u32) {
        self.acc |= u64::from(value) << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A literal/length symbol with the fixed code of RFC 1951 3.2.6 (sent MSB first).
    fn symbol(&mut self, sym: u32) {
        let (code, len) = match sym {
            0..=143 => (0x30 + sym, 8),
            144..=255 => (0x190 + sym - 144, 9),
            256..=279 => (sym - 256, 7),
            _ => (0xC0 + sym - 280, 8),
        };
        self.put(code.reverse_bits() >> (32 - len), len);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in data {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

/// 5x7 glyphs, one byte per row, bit 4 = leftmost column. Unknown characters draw a box.
fn glyph(c: char) -> [u8; 7] {
    match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        '+' => [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        '=' => [0, 0, 0x1F, 0, 0x1F, 0, 0],
        '_' => [0, 0, 0, 0, 0, 0, 0x1F],
        '/' => [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '>' => [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08],
        '<' => [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
        ' ' => [0; 7],
        _ => [0x1F, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1F],
    }
}
