//! Aligned tables for terminals.

use unicode_width::UnicodeWidthStr;

use crate::output::sanitize;

/// Renders a table: a bold header line (unless `NO_COLOR` is set), then the rows, columns
/// separated by two spaces. Cells are sanitised (no control characters); the last column is
/// not padded.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            row.iter()
                .map(|c| sanitize(c).replace(['\n', '\t'], " "))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.width()).collect();
    for row in &cells {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.width());
            }
        }
    }
    let line = |values: &[&str]| -> String {
        let mut out = String::new();
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(value);
            if i + 1 < values.len() {
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(value.width());
                out.push_str(&" ".repeat(pad));
            }
        }
        out.trim_end().to_owned()
    };
    let bold = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let mut out = String::new();
    let header = line(headers);
    if bold {
        out.push_str("\x1b[1m");
        out.push_str(&header);
        out.push_str("\x1b[0m");
    } else {
        out.push_str(&header);
    }
    out.push('\n');
    for row in &cells {
        let values: Vec<&str> = row.iter().map(String::as_str).collect();
        out.push_str(&line(&values));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_with_wide_characters() {
        let rows = vec![
            vec!["a".to_owned(), "日本".to_owned(), "x".to_owned()],
            vec!["bbbb".to_owned(), "c".to_owned(), "y\u{1b}[2J".to_owned()],
        ];
        let text = render(&["UID", "TITLE", "TYPE"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("UID   TITLE  TYPE"), "{text:?}");
        assert_eq!(lines[1], "a     日本   x");
        assert_eq!(lines[2], "bbbb  c      y\u{FFFD}[2J");
    }
}
