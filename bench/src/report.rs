//! Results: a table of workloads × variants with ratios to a reference variant, written as a
//! text table (stdout), CSV, a Markdown table (for the README) and an SVG bar chart.
//!
//! The chart is drawn by hand: it is one kind of chart (grouped horizontal bars of relative
//! speed, labelled), about a hundred lines of SVG text, and needs no font metrics — a plotting
//! crate would add a dependency tree for less control over the layout.

use std::fmt::Write as _;

/// Whether a variant's bytes matched the source, for one cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Check {
    /// Nothing was read, or not checked.
    None,
    /// Checked: the bytes are the source's.
    Ok,
    /// Checked: they are not (the cell's number does not count).
    Mismatch(String),
}

/// One measurement of one variant.
#[derive(Clone, Debug)]
pub enum Cell {
    /// Not measured (yet).
    Empty,
    /// Samples, in the row's unit, and the byte check.
    Value(Vec<f64>, Check),
    /// Does not apply to this variant (e.g. copy-up on a read-only mount).
    NotApplicable(String),
    /// The variant could not run here (tool missing).
    Skipped(String),
    /// It ran and failed.
    Failed(String),
}

impl Cell {
    /// The median sample, when there is a trustworthy one.
    pub fn median(&self) -> Option<f64> {
        match self {
            Cell::Value(v, c) if !v.is_empty() && !matches!(c, Check::Mismatch(_)) => {
                let mut s = v.clone();
                s.sort_by(f64::total_cmp);
                let n = s.len();
                Some(if n % 2 == 1 {
                    s[n / 2]
                } else {
                    (s[n / 2 - 1] + s[n / 2]) / 2.0
                })
            }
            _ => None,
        }
    }

    /// Adds a sample (turning an empty cell into a value).
    pub fn push(&mut self, x: f64) {
        match self {
            Cell::Value(v, _) => v.push(x),
            Cell::Empty => *self = Cell::Value(vec![x], Check::None),
            _ => {}
        }
    }

    /// Records the byte check (a mismatch is kept over a later Ok).
    pub fn check(&mut self, c: Check) {
        if let Cell::Value(_, old) = self {
            if !matches!(old, Check::Mismatch(_)) {
                *old = c;
            }
        }
    }

    fn status(&self) -> (&'static str, String) {
        match self {
            Cell::Empty => ("not-run", String::new()),
            Cell::Value(_, Check::Mismatch(m)) => ("mismatch", m.clone()),
            Cell::Value(_, Check::Ok) => ("ok", "bytes checked".into()),
            Cell::Value(_, Check::None) => ("ok", String::new()),
            Cell::NotApplicable(m) => ("n/a", m.clone()),
            Cell::Skipped(m) => ("skipped", m.clone()),
            Cell::Failed(m) => ("failed", m.clone()),
        }
    }
}

/// One workload.
#[derive(Clone, Debug)]
pub struct Row {
    /// Short machine name (CSV).
    pub key: String,
    /// What it measures.
    pub label: String,
    /// Unit of the samples.
    pub unit: &'static str,
    /// Whether bigger numbers are better (throughput) or smaller (time).
    pub higher_better: bool,
    /// The variant ratios are taken to (usually the report's reference).
    pub reference: usize,
    /// A second reference shown under the row (kernel overlayfs for the metadata walk).
    pub second: Option<usize>,
    /// One cell per variant.
    pub cells: Vec<Cell>,
}

/// A group's results.
#[derive(Clone, Debug)]
pub struct Report {
    /// `fs` or `cli`.
    pub group: &'static str,
    /// Heading.
    pub title: String,
    /// Column names.
    pub variants: Vec<String>,
    /// Lines printed under the heading (machine, date, data set).
    pub notes: Vec<String>,
    /// The rows.
    pub rows: Vec<Row>,
}

/// A number with three significant digits or so.
pub fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        let s = format!("{v:.0}");
        // Thousands separators for readability.
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

impl Row {
    /// `cell / reference` in the row's unit, when both are measured.
    pub fn ratio(&self, variant: usize, to: usize) -> Option<f64> {
        let r = self.cells.get(to)?.median()?;
        let v = self.cells.get(variant)?.median()?;
        (r > 0.0).then_some(v / r)
    }

    /// Speed relative to the reference, bigger is better whatever the unit.
    pub fn speed(&self, variant: usize) -> Option<f64> {
        let r = self.ratio(variant, self.reference)?;
        if self.higher_better {
            Some(r)
        } else {
            (r > 0.0).then_some(1.0 / r)
        }
    }

    fn unit_label(&self) -> String {
        format!(
            "{} {}",
            self.unit,
            if self.higher_better { "↑" } else { "↓" }
        )
    }

    fn cell_text(&self, i: usize) -> String {
        let c = &self.cells[i];
        match (c, c.median()) {
            (Cell::Value(_, Check::Mismatch(_)), _) => "MISMATCH".into(),
            (_, Some(v)) => match self.ratio(i, self.reference) {
                Some(r) if i != self.reference => format!("{} ({}×)", num(v), ratio_text(r)),
                _ => num(v),
            },
            (Cell::NotApplicable(_), _) => "n/a".into(),
            (Cell::Skipped(_), _) => "skipped".into(),
            (Cell::Failed(_), _) => "failed".into(),
            _ => "-".into(),
        }
    }
}

fn ratio_text(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.2}")
    }
}

impl Report {
    /// Whether every measured cell's bytes were right and nothing failed.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in &self.rows {
            for (i, c) in r.cells.iter().enumerate() {
                match c {
                    Cell::Value(_, Check::Mismatch(m)) => out.push(format!(
                        "{} {}: read wrong bytes: {m}",
                        self.variants[i], r.key
                    )),
                    Cell::Failed(m) => {
                        out.push(format!("{} {}: failed: {m}", self.variants[i], r.key))
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// The plain-text table.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}", self.title);
        for n in &self.notes {
            let _ = writeln!(out, "  {n}");
        }
        let label_w = self
            .rows
            .iter()
            .map(|r| r.label.chars().count())
            .max()
            .unwrap_or(8)
            .max(8);
        let unit_w = self
            .rows
            .iter()
            .map(|r| r.unit_label().chars().count())
            .max()
            .unwrap_or(4)
            .max(4);
        let col_w: Vec<usize> = (0..self.variants.len())
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r.cell_text(i).chars().count())
                    .chain([self.variants[i].len()])
                    .max()
                    .unwrap_or(8)
            })
            .collect();
        let pad =
            |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
        let mut head = format!("{}  {}", pad("workload", label_w), pad("unit", unit_w));
        for (i, v) in self.variants.iter().enumerate() {
            head.push_str(&format!("  {}", pad(v, col_w[i])));
        }
        let _ = writeln!(out, "\n{}", head.trim_end());
        for r in &self.rows {
            let mut line = format!(
                "{}  {}",
                pad(&r.label, label_w),
                pad(&r.unit_label(), unit_w)
            );
            for (i, w) in col_w.iter().enumerate() {
                line.push_str(&format!("  {}", pad(&r.cell_text(i), *w)));
            }
            let _ = writeln!(out, "{}", line.trim_end());
            if let Some(s) = r.second {
                let mut line = format!(
                    "{}  {}",
                    pad(&format!("  × {}", self.variants[s]), label_w),
                    pad("", unit_w)
                );
                for (i, w) in col_w.iter().enumerate() {
                    let t = r
                        .ratio(i, s)
                        .map_or(String::new(), |x| format!("{}×", ratio_text(x)));
                    line.push_str(&format!("  {}", pad(&t, *w)));
                }
                let _ = writeln!(out, "{}", line.trim_end());
            }
        }
        let _ = writeln!(
            out,
            "\n  cells: median (ratio to {}); ↑ higher is better, ↓ lower is better",
            self.reference_names()
        );
        // Why cells have no number: one line per reason, naming the variants it applies to.
        let mut reasons: Vec<(String, Vec<&str>)> = Vec::new();
        for r in &self.rows {
            for (i, c) in r.cells.iter().enumerate() {
                let (status, detail) = c.status();
                if matches!(status, "skipped" | "failed" | "mismatch" | "n/a") && !detail.is_empty()
                {
                    let why = format!("{status}: {detail}");
                    let v = self.variants[i].as_str();
                    match reasons.iter_mut().find(|(w, _)| *w == why) {
                        Some((_, vs)) if !vs.contains(&v) => vs.push(v),
                        Some(_) => {}
                        None => reasons.push((why, vec![v])),
                    }
                }
            }
        }
        for (why, vs) in reasons {
            let _ = writeln!(out, "  {}: {why}", vs.join(", "));
        }
        out
    }

    fn reference_names(&self) -> String {
        let mut names: Vec<&str> = self
            .rows
            .iter()
            .map(|r| self.variants[r.reference].as_str())
            .collect();
        names.dedup();
        names.sort();
        names.dedup();
        names.join(" / ")
    }

    /// The CSV: one line per (workload, variant).
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "group,workload,label,unit,better,variant,median,runs,samples,ratio_to,ratio,ratio_to_2,ratio_2,status,detail\n",
        );
        for r in &self.rows {
            for (i, c) in r.cells.iter().enumerate() {
                let (status, detail) = c.status();
                let samples = match c {
                    Cell::Value(v, _) => v
                        .iter()
                        .map(|x| format!("{x}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                    _ => String::new(),
                };
                let runs = match c {
                    Cell::Value(v, _) => v.len(),
                    _ => 0,
                };
                let fields = [
                    self.group.to_string(),
                    r.key.clone(),
                    r.label.clone(),
                    r.unit.to_string(),
                    if r.higher_better { "higher" } else { "lower" }.to_string(),
                    self.variants[i].clone(),
                    c.median().map_or(String::new(), |m| format!("{m}")),
                    runs.to_string(),
                    samples,
                    self.variants[r.reference].clone(),
                    r.ratio(i, r.reference)
                        .map_or(String::new(), |x| format!("{x:.4}")),
                    r.second.map_or(String::new(), |s| self.variants[s].clone()),
                    r.second
                        .and_then(|s| r.ratio(i, s))
                        .map_or(String::new(), |x| format!("{x:.4}")),
                    status.to_string(),
                    detail,
                ];
                let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
                out.push_str(&line.join(","));
                out.push('\n');
            }
        }
        out
    }

    /// The Markdown table (README).
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "| workload | unit |");
        for v in &self.variants {
            let _ = write!(out, " {v} |");
        }
        let _ = write!(out, "\n| --- | --- |");
        for _ in &self.variants {
            let _ = write!(out, " ---: |");
        }
        out.push('\n');
        for r in &self.rows {
            let _ = write!(out, "| {} | {} |", r.label, r.unit_label());
            for i in 0..self.variants.len() {
                let _ = write!(out, " {} |", r.cell_text(i));
            }
            out.push('\n');
            if let Some(s) = r.second {
                let _ = write!(out, "| … × {} | |", self.variants[s]);
                for i in 0..self.variants.len() {
                    let t = r
                        .ratio(i, s)
                        .map_or(String::new(), |x| format!("{}×", ratio_text(x)));
                    let _ = write!(out, " {t} |");
                }
                out.push('\n');
            }
        }
        out
    }

    /// The chart: per workload, one bar per variant of its speed relative to the row's
    /// reference (times are inverted, so longer is always better).
    pub fn svg(&self) -> String {
        const COLORS: [&str; 6] = [
            "#4c4c4c", "#3b75af", "#ef8636", "#2e9e4f", "#8fd18f", "#b64dc0",
        ];
        let n = self.variants.len();
        let bar = 11.0;
        let group_gap = 12.0;
        let longest = self
            .rows
            .iter()
            .map(|r| r.label.chars().count())
            .max()
            .unwrap_or(10);
        let label_w = (longest as f64 * 6.4 + 20.0).max(160.0);
        let plot_w = 480.0;
        let top = 70.0;
        let group_h = n as f64 * bar + group_gap;
        let height = top + self.rows.len() as f64 * group_h + 40.0;
        let width = label_w + plot_w + 80.0;
        let max = self
            .rows
            .iter()
            .flat_map(|r| (0..n).filter_map(|i| r.speed(i)))
            .fold(1.25f64, f64::max)
            .min(3.0);
        let max = (max * 4.0).ceil() / 4.0;
        let x = |v: f64| label_w + v.min(max) / max * plot_w;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"##
        );
        let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
        let _ = writeln!(
            s,
            r##"<text x="10" y="18" font-size="14" font-weight="bold">{}</text>"##,
            xml(&self.title)
        );
        let _ = writeln!(
            s,
            r##"<text x="10" y="34" fill="#555">speed relative to {} (= 1, dashed); longer is better, times are inverted; bars clipped at {max}</text>"##,
            xml(&self.reference_names())
        );
        for (i, v) in self.variants.iter().enumerate() {
            let lx = 10.0 + i as f64 * 130.0;
            let _ = writeln!(
                s,
                r##"<rect x="{lx}" y="44" width="12" height="12" fill="{}"/><text x="{}" y="54">{}</text>"##,
                COLORS[i % COLORS.len()],
                lx + 16.0,
                xml(v)
            );
        }
        let bottom = top + self.rows.len() as f64 * group_h;
        let mut tick = 0.0;
        while tick <= max + 1e-9 {
            let tx = x(tick);
            let dash = if (tick - 1.0f64).abs() < 1e-9 {
                r##" stroke="#000" stroke-dasharray="4 3""##
            } else {
                r##" stroke="#ddd""##
            };
            let _ = writeln!(
                s,
                r##"<line x1="{tx:.1}" y1="{top}" x2="{tx:.1}" y2="{bottom}"{dash}/><text x="{tx:.1}" y="{}" text-anchor="middle" fill="#555">{tick}</text>"##,
                bottom + 14.0
            );
            tick += if max > 2.0 { 0.5 } else { 0.25 };
        }
        for (ri, r) in self.rows.iter().enumerate() {
            let gy = top + ri as f64 * group_h;
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                label_w - 8.0,
                gy + n as f64 * bar / 2.0 + 4.0,
                xml(&r.label)
            );
            for i in 0..n {
                let y = gy + i as f64 * bar;
                let color = COLORS[i % COLORS.len()];
                match r.speed(i) {
                    Some(v) => {
                        let _ = writeln!(
                            s,
                            r##"<rect x="{label_w}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{}: {} {}</title></rect><text x="{:.1}" y="{:.1}" font-size="9">{}</text>"##,
                            (x(v) - label_w).max(0.5),
                            bar - 1.5,
                            xml(&self.variants[i]),
                            num(r.cells[i].median().unwrap_or(0.0)),
                            r.unit,
                            x(v) + 3.0,
                            y + bar - 3.0,
                            ratio_text(v)
                        );
                    }
                    None => {
                        let (status, _) = r.cells[i].status();
                        let what = if matches!(r.cells[i], Cell::Value(_, Check::Mismatch(_))) {
                            "MISMATCH"
                        } else {
                            status
                        };
                        let _ = writeln!(
                            s,
                            r##"<text x="{}" y="{:.1}" font-size="9" fill="#999">{}: {what}</text>"##,
                            label_w + 3.0,
                            y + bar - 3.0,
                            xml(&self.variants[i])
                        );
                    }
                }
            }
        }
        let _ = writeln!(
            s,
            r##"<text x="10" y="{}" fill="#555">{}</text>"##,
            height - 8.0,
            xml(self.notes.first().map_or("", String::as_str))
        );
        s.push_str("</svg>\n");
        s
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            group: "fs",
            title: "t".into(),
            variants: vec!["native".into(), "x".into()],
            notes: vec!["machine".into()],
            rows: vec![
                Row {
                    key: "seq".into(),
                    label: "seq, warm".into(),
                    unit: "MB/s",
                    higher_better: true,
                    reference: 0,
                    second: None,
                    cells: vec![
                        Cell::Value(vec![100.0, 300.0, 200.0], Check::Ok),
                        Cell::Value(vec![50.0], Check::Ok),
                    ],
                },
                Row {
                    key: "walk".into(),
                    label: "walk".into(),
                    unit: "ms",
                    higher_better: false,
                    reference: 0,
                    second: Some(1),
                    cells: vec![
                        Cell::Value(vec![10.0], Check::None),
                        Cell::Value(vec![1.0], Check::Mismatch("bad".into())),
                    ],
                },
            ],
        }
    }

    #[test]
    fn ratios_medians_and_mismatches() {
        let r = report();
        assert_eq!(r.rows[0].cells[0].median(), Some(200.0));
        assert_eq!(r.rows[0].ratio(1, 0), Some(0.25));
        assert_eq!(
            r.rows[1].cells[1].median(),
            None,
            "a wrong answer has no number"
        );
        assert_eq!(r.problems().len(), 1);
        let t = r.text();
        assert!(t.contains("50.0 (0.25×)"), "{t}");
        assert!(t.contains("MISMATCH"), "{t}");
        let csv = r.csv();
        assert!(
            csv.contains("fs,seq,\"seq, warm\",MB/s,higher,x,50,1,50,native,0.2500"),
            "{csv}"
        );
        assert!(r.svg().starts_with("<svg"));
        assert!(r
            .markdown()
            .contains("| seq, warm | MB/s ↑ | 200 | 50.0 (0.25×) |"));
    }
}
