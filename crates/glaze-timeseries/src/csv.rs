//! Reading a series from CSV: a date column followed by numeric columns (the ETT layout:
//! `date,HUFL,HULL,MUFL,MULL,LUFL,LULL,OT`).
//!
//! Every cell is checked: a missing cell, text that is not a number, NaN or ±Inf is an
//! [`Error::Cell`] naming the file, the line and the column. Fields may be quoted with `"`;
//! quoted commas are not supported (series files do not have them).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A multivariate series read from a file: the values of the selected columns, column-major.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The file it came from.
    pub path: PathBuf,
    /// The time stamps (first column), as written.
    pub dates: Vec<String>,
    /// Names of the selected columns; the target is last.
    pub columns: Vec<String>,
    /// `values[c][t]`: column `c` at time `t`.
    pub values: Vec<Vec<f32>>,
}

impl Frame {
    /// Number of time steps.
    pub fn len(&self) -> usize {
        self.dates.len()
    }

    /// True when the frame has no rows.
    pub fn is_empty(&self) -> bool {
        self.dates.is_empty()
    }
}

/// Which columns to read.
#[derive(Debug, Clone, Default)]
pub struct ColumnSelection {
    /// The target column (ETT: `OT`). `None`: the last column.
    pub target: Option<String>,
    /// Covariates read beside the target; `None`: every other numeric column.
    pub covariates: Option<Vec<String>>,
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s)
}

/// Reads `path`; the selected covariates come first and the target last.
pub fn read_csv(path: &Path, selection: &ColumnSelection) -> Result<Frame> {
    let text = std::fs::read_to_string(path).map_err(|e| glaze_core::Error::io(path, e))?;
    parse_csv(path, &text, selection)
}

/// Parses CSV text (see [`read_csv`]); `path` is used in errors.
pub fn parse_csv(path: &Path, text: &str, selection: &ColumnSelection) -> Result<Frame> {
    let layout = |problem: &str| Error::Layout {
        path: path.to_path_buf(),
        problem: problem.to_string(),
    };
    let mut lines = text.lines().enumerate();
    let (_, header) = lines
        .find(|(_, l)| !l.trim().is_empty())
        .ok_or_else(|| layout("the file is empty"))?;
    let names: Vec<String> = header.split(',').map(|s| unquote(s).to_string()).collect();
    if names.len() < 2 {
        return Err(layout(
            "the header needs a date column and at least one value column",
        ));
    }
    let value_names = &names[1..];
    let find = |c: &str| {
        value_names
            .iter()
            .position(|n| n == c)
            .ok_or_else(|| Error::UnknownColumn {
                path: path.to_path_buf(),
                column: c.to_string(),
                available: value_names.join(", "),
            })
    };
    let target = match &selection.target {
        Some(t) => find(t)?,
        None => value_names.len() - 1,
    };
    let mut chosen: Vec<usize> = match &selection.covariates {
        Some(cs) => cs.iter().map(|c| find(c)).collect::<Result<_>>()?,
        None => (0..value_names.len()).filter(|&i| i != target).collect(),
    };
    chosen.retain(|&i| i != target);
    chosen.push(target);

    let mut dates = Vec::new();
    let mut values = vec![Vec::new(); chosen.len()];
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i + 1;
        let cells: Vec<&str> = line.split(',').map(unquote).collect();
        if cells.len() < names.len() {
            let column = names[cells.len()].clone();
            return Err(Error::Cell {
                path: path.to_path_buf(),
                line: line_no,
                column,
                problem: format!(
                    "missing cell: the row has {} of {} fields",
                    cells.len(),
                    names.len()
                ),
            });
        }
        if cells.len() > names.len() {
            return Err(Error::Cell {
                path: path.to_path_buf(),
                line: line_no,
                column: names[names.len() - 1].clone(),
                problem: format!(
                    "the row has {} fields, the header {}",
                    cells.len(),
                    names.len()
                ),
            });
        }
        dates.push(cells[0].to_string());
        for (slot, &c) in chosen.iter().enumerate() {
            let raw = cells[c + 1];
            let cell_err = |problem: String| Error::Cell {
                path: path.to_path_buf(),
                line: line_no,
                column: value_names[c].clone(),
                problem,
            };
            if raw.is_empty() {
                return Err(cell_err("missing value".into()));
            }
            let v: f64 = raw
                .parse()
                .map_err(|_| cell_err(format!("`{raw}` is not a number")))?;
            if !v.is_finite() {
                return Err(cell_err(format!("`{raw}` is not a finite number")));
            }
            values[slot].push(v as f32);
        }
    }
    if dates.is_empty() {
        return Err(layout("the file has a header but no rows"));
    }
    Ok(Frame {
        path: path.to_path_buf(),
        dates,
        columns: chosen.iter().map(|&c| value_names[c].clone()).collect(),
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Frame> {
        parse_csv(Path::new("t.csv"), text, &ColumnSelection::default())
    }

    #[test]
    fn reads_columns_with_target_last() {
        let f = parse_csv(
            Path::new("t.csv"),
            "date,a,OT,b\n2020-01-01,1,2,3\n2020-01-02,4,5,6\n",
            &ColumnSelection {
                target: Some("OT".into()),
                covariates: None,
            },
        )
        .expect("parse");
        assert_eq!(f.columns, ["a", "b", "OT"]);
        assert_eq!(f.values[2], [2.0, 5.0]);
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn bad_cells_name_line_and_column() {
        let e = parse("date,a,b\nx,1,2\ny,3\n").expect_err("missing");
        assert!(
            matches!(e, Error::Cell { line: 3, ref column, .. } if column == "b"),
            "{e}"
        );
        let e = parse("date,a,b\nx,1,abc\n").expect_err("text");
        assert!(
            matches!(e, Error::Cell { line: 2, ref column, .. } if column == "b"),
            "{e}"
        );
        let e = parse("date,a,b\nx,NaN,1\n").expect_err("nan");
        assert!(e.to_string().contains("finite"), "{e}");
        let e = parse("date,a,b\nx,1,inf\n").expect_err("inf");
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = parse("date,a,b\nx,,1\n").expect_err("empty");
        assert!(e.to_string().contains("missing value"), "{e}");
        let e = parse("").expect_err("empty file");
        assert!(matches!(e, Error::Layout { .. }));
        let e = parse_csv(
            Path::new("t.csv"),
            "date,a\nx,1\n",
            &ColumnSelection {
                target: Some("OT".into()),
                covariates: None,
            },
        )
        .expect_err("unknown");
        assert!(matches!(e, Error::UnknownColumn { .. }), "{e}");
    }
}
