//! The report's tables as CSV files (RFC 4180), one per table, named by its id.

use super::{Report, Table};
use std::io::{self, Write};
use std::path::Path;

/// Writes every table of `report` to `dir/<id>.csv`; returns the files written.
pub fn write(report: &Report, dir: &Path) -> io::Result<Vec<std::path::PathBuf>> {
    let mut written = Vec::new();
    for t in &report.tables {
        let path = dir.join(format!("{}.csv", t.id));
        let mut out = io::BufWriter::new(std::fs::File::create(&path)?);
        table(t, &mut out)?;
        out.flush()?;
        written.push(path);
    }
    Ok(written)
}

/// One table as CSV: a header line, then a line per row; linked tables end with the alert ids
/// (space-separated).
pub fn table(t: &Table, out: &mut dyn Write) -> io::Result<()> {
    let mut header: Vec<&str> = t.columns.clone();
    if t.linked {
        header.push("alert_ids");
    }
    line(out, header.iter().copied())?;
    for r in &t.rows {
        let ids = r.alert_ids.join(" ");
        let linked = t.linked.then_some(ids.as_str());
        line(out, r.cells.iter().map(String::as_str).chain(linked))?;
    }
    Ok(())
}

fn line<'a>(out: &mut dyn Write, cells: impl Iterator<Item = &'a str>) -> io::Result<()> {
    let mut text = String::new();
    for (i, c) in cells.enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&field(c));
    }
    text.push_str("\r\n");
    out.write_all(text.as_bytes())
}

/// A field quoted when it must be, defused when a spreadsheet would take it for a formula (a
/// user name such as `=HYPERLINK(...)` is attacker-controlled text), control characters
/// replaced: the same cells as `replay --format csv`.
pub fn field(s: &str) -> String {
    crate::alert::human::csv_cell(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\"\n"), "\"say \"\"hi\"\"\n\"");
        assert_eq!(
            field("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        assert_eq!(field("@sum"), "'@sum");
        assert_eq!(field("-1+1"), "'-1+1");
        assert_eq!(field("-"), "-", "the placeholder is no formula");
        assert_eq!(field("a\u{0}b\u{1b}"), "a\u{FFFD}b\u{FFFD}");
    }
}
