//! The report as one self-contained HTML page: inline styles and SVG charts, no script, and a
//! content security policy that forbids loading anything, so it opens offline and the same
//! everywhere. Every value is escaped: principals, addresses and rule titles are text that an
//! attacker or a rule author chose.

use super::{Report, Table};
use std::fmt::Write as _;

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// An alert id as an anchor: ids are hex and stay as they are; anything else (the archive is
/// input like any other) is hex-encoded, so two ids never share an anchor.
fn anchor(id: &str) -> String {
    if id.bytes().all(|b| b.is_ascii_hexdigit()) {
        format!("a-{id}")
    } else {
        format!("a-x{}", crate::sink::archive::object::hex(id.as_bytes()))
    }
}

/// A cell's text: escaped, and cut at 2000 characters (the CSV files keep it whole).
fn cell(s: &str) -> String {
    const CELL: usize = 2000;
    match s.char_indices().nth(CELL) {
        Some((i, _)) => format!(
            "{}… ({} bytes, whole in the CSV file)",
            escape(&s[..i]),
            s.len()
        ),
        None => escape(s),
    }
}

const STYLE: &str = "body{font:14px/1.45 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#1d2430;margin:0;background:#f5f6f8}
header{background:#1d2430;color:#fff;padding:20px 32px}header h1{margin:0 0 6px;font-size:22px}header p{margin:2px 0;color:#c9d1dc}
nav{padding:8px 32px;background:#e8ebf0;font-size:13px}nav a{margin-right:14px;color:#1d4f91}
main{padding:8px 32px 40px}section{background:#fff;border:1px solid #dde2e8;border-radius:6px;margin:16px 0;padding:12px 18px}
h2{font-size:17px;margin:4px 0 6px}p.about{color:#4a5563;margin:0 0 10px;max-width:980px}
table{border-collapse:collapse;width:100%;font-size:13px}th{text-align:left;background:#f0f2f5;border-bottom:2px solid #d4d9e1;padding:5px 8px;white-space:nowrap}
td{border-bottom:1px solid #eceff3;padding:4px 8px;vertical-align:top;word-break:break-word}tr:target{background:#fff4c2}
.totals{display:flex;gap:12px;flex-wrap:wrap;margin:6px 0 12px}.total{border:1px solid #dde2e8;border-radius:6px;padding:8px 14px;min-width:120px}
.total b{display:block;font-size:20px}.verdict{font-weight:600}.ok{color:#1b7a3d}.bad{color:#b71c1c}
details summary{cursor:pointer;color:#1d4f91}details a{font-family:monospace;margin-right:6px;font-size:12px}.none{color:#8a94a3}
.charts{display:flex;gap:24px;flex-wrap:wrap}.legend span{display:inline-block;margin-right:12px;font-size:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}";

/// Colours of alert levels in the chart.
const LEVELS: [(&str, &str); 6] = [
    ("critical", "#b71c1c"),
    ("high", "#e65100"),
    ("medium", "#f2a900"),
    ("low", "#1565c0"),
    ("informational", "#78909c"),
    ("other", "#b0bec5"),
];

/// The whole page.
pub fn render(r: &Report) -> String {
    let mut h = String::with_capacity(64 << 10);
    let period = format!(
        "{} to {} (UTC)",
        crate::window::format_time(r.period.since),
        crate::window::format_time(r.period.until)
    );
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>trailwatch audit report, {}</title><style>{STYLE}</style></head><body>\n",
        escape(&period)
    );
    let _ = write!(
        h,
        "<header><h1>Audit report: AWS CloudTrail monitoring</h1><p>Period: {}</p><p>Generated {} by trailwatch {} from {}</p>",
        escape(&period),
        escape(&r.generated),
        env!("CARGO_PKG_VERSION"),
        escape(&r.source)
    );
    if let Some(v) = &r.integrity {
        let class = if v.starts_with("intact") { "ok" } else { "bad" };
        let _ = write!(
            h,
            "<p>Archive integrity: <span class=\"verdict {class}\">{}</span></p>",
            escape(v)
        );
    }
    for note in &r.notes {
        let _ = write!(
            h,
            "<p><span class=\"verdict bad\">{}</span></p>",
            escape(note)
        );
    }
    h.push_str("</header>\n<nav><a href=\"#summary\">Summary</a>");
    for t in &r.tables {
        let _ = write!(h, "<a href=\"#{}\">{}</a>", t.id, escape(t.title));
    }
    h.push_str("</nav>\n<main>\n<section id=\"summary\"><h2>Summary</h2><div class=\"totals\">");
    for (what, n) in &r.totals {
        let _ = write!(
            h,
            "<div class=\"total\"><b>{}</b>{}</div>",
            escape(n),
            escape(what)
        );
    }
    h.push_str("</div><div class=\"charts\">");
    h.push_str(&alerts_chart(r));
    h.push_str(&events_chart(r));
    h.push_str("</div></section>\n");
    for t in &r.tables {
        table(&mut h, t);
    }
    h.push_str("</main></body></html>\n");
    h
}

fn table(h: &mut String, t: &Table) {
    let _ = write!(
        h,
        "<section id=\"{}\"><h2>{}</h2><p class=\"about\">{}</p>",
        t.id,
        escape(t.title),
        escape(&t.about)
    );
    if t.rows.is_empty() {
        h.push_str("<p class=\"none\">None in this period.</p></section>\n");
        return;
    }
    h.push_str("<table><thead><tr>");
    for c in &t.columns {
        let _ = write!(h, "<th>{}</th>", escape(c));
    }
    if t.linked {
        h.push_str("<th>alerts behind it</th>");
    }
    h.push_str("</tr></thead><tbody>\n");
    for r in &t.rows {
        if t.id == "alerts" {
            let _ = write!(h, "<tr id=\"{}\">", anchor(&r.cells[0]));
        } else {
            h.push_str("<tr>");
        }
        for c in &r.cells {
            let _ = write!(h, "<td>{}</td>", cell(c));
        }
        if t.linked && r.alert_ids.is_empty() {
            h.push_str("<td class=\"none\">none</td>");
        } else if t.linked {
            let _ = write!(
                h,
                "<td><details><summary>{} alert{}</summary>",
                r.alert_ids.len(),
                if r.alert_ids.len() == 1 { "" } else { "s" }
            );
            for id in &r.alert_ids {
                let _ = write!(h, "<a href=\"#{}\">{}</a>", anchor(id), escape(id));
            }
            h.push_str("</details></td>");
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</tbody></table></section>\n");
}

const W: f64 = 560.0;
const H: f64 = 180.0;

/// Alerts per day, stacked by level.
fn alerts_chart(r: &Report) -> String {
    let days: Vec<(&String, u64)> = r
        .daily_alerts
        .iter()
        .map(|(d, l)| (d, l.values().sum()))
        .collect();
    let max = days.iter().map(|d| d.1).max().unwrap_or(0).max(1);
    let mut s = chart_start("Alerts per day, by level", days.len(), max);
    let bar = (W / days.len().max(1) as f64).min(48.0);
    for (i, (day, levels)) in r.daily_alerts.iter().enumerate() {
        let mut y = H;
        for (level, colour) in LEVELS {
            let n = if level == "other" {
                levels
                    .iter()
                    .filter(|(l, _)| !LEVELS.iter().any(|(k, _)| k == l))
                    .fold(0u64, |a, (_, n)| a.saturating_add(*n))
            } else {
                levels.get(level).copied().unwrap_or(0)
            };
            if n == 0 {
                continue;
            }
            let height = n as f64 / max as f64 * H;
            y -= height;
            let _ = write!(
                s,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"{colour}\"><title>{} {}: {n}</title></rect>",
                40.0 + i as f64 * bar,
                (bar - 1.0).max(1.0),
                escape(day),
                level
            );
        }
    }
    chart_end(&mut s, r.daily_alerts.keys(), bar);
    s.push_str("<div class=\"legend\">");
    for (level, colour) in LEVELS {
        let _ = write!(
            s,
            "<span><i style=\"background:{colour}\"></i>{level}</span>"
        );
    }
    s.push_str("</div></div>");
    s
}

/// CloudTrail events examined per day.
fn events_chart(r: &Report) -> String {
    let max = r.daily_events.values().copied().max().unwrap_or(0).max(1);
    let mut s = chart_start(
        "CloudTrail events examined per day",
        r.daily_events.len(),
        max,
    );
    let bar = (W / r.daily_events.len().max(1) as f64).min(48.0);
    for (i, (day, n)) in r.daily_events.iter().enumerate() {
        let height = *n as f64 / max as f64 * H;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{height:.1}\" fill=\"#2e7d5b\"><title>{}: {n}</title></rect>",
            40.0 + i as f64 * bar,
            H - height,
            (bar - 1.0).max(1.0),
            escape(day)
        );
    }
    chart_end(&mut s, r.daily_events.keys(), bar);
    s.push_str("</div>");
    s
}

fn chart_start(title: &str, bars: usize, max: u64) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<div><h3 style=\"font-size:14px;margin:6px 0\">{}</h3><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" role=\"img\" aria-label=\"{}\">\
<line x1=\"40\" y1=\"{H}\" x2=\"{}\" y2=\"{H}\" stroke=\"#8a94a3\"/><line x1=\"40\" y1=\"0\" x2=\"40\" y2=\"{H}\" stroke=\"#8a94a3\"/>\
<text x=\"36\" y=\"10\" font-size=\"11\" text-anchor=\"end\">{max}</text><text x=\"36\" y=\"{H}\" font-size=\"11\" text-anchor=\"end\">0</text>",
        escape(title),
        W + 50.0,
        H + 22.0,
        escape(title),
        40.0 + W
    );
    if bars == 0 {
        let _ = write!(s, "<text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"middle\" fill=\"#8a94a3\">nothing in this period</text>", 40.0 + W / 2.0, H / 2.0);
    }
    s
}

/// Labels the first and the last bar with their days.
fn chart_end<'a>(
    s: &mut String,
    days: impl ExactSizeIterator<Item = &'a String> + DoubleEndedIterator,
    bar: f64,
) {
    let n = days.len();
    let mut days = days;
    let first = days.next();
    let last = days.next_back();
    let right = 40.0 + n as f64 * bar;
    let label = |s: &mut String, x: f64, anchor: &str, text: &str| {
        let _ = write!(
            s,
            "<text x=\"{x:.1}\" y=\"{}\" font-size=\"11\" text-anchor=\"{anchor}\">{}</text>",
            H + 16.0,
            escape(text)
        );
    };
    match (first, last) {
        // Too narrow for two labels: one, naming both ends.
        (Some(a), Some(b)) if right - 40.0 < 140.0 => {
            label(s, 40.0, "start", &format!("{a} to {b}"))
        }
        (Some(a), Some(b)) => {
            label(s, 40.0, "start", a);
            label(s, right, "end", b);
        }
        (Some(a), None) => label(s, 40.0, "start", a),
        _ => {}
    }
    s.push_str("</svg>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_cannot_become_markup() {
        assert_eq!(
            escape("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(escape("a\u{0}b\u{1b}[31m"), "a\u{FFFD}b\u{FFFD}[31m");
        assert_eq!(anchor("9fa0"), "a-9fa0");
        assert_ne!(anchor("d<u>p"), anchor("dup"));
        assert!(anchor("abc\"><script>")
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        assert!(cell(&"x".repeat(5000)).ends_with("(5000 bytes, whole in the CSV file)"));
    }
}
