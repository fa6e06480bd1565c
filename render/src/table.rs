//! Tables for pandas, DuckDB and spreadsheets: the rows `timeglass
//! requests`, `show` and `report` list, as CSV, JSON Lines or Parquet. The
//! nested JSON documents (`--format json`) are the rows' own serde form and
//! are rendered by the CLI; a table is flat, one typed column per field.

use std::io::Write;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};

use crate::error::RenderError;

/// The type of a column, for Parquet's schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Int,
    Float,
    Text,
    Bool,
}

/// One value; `Null` is an empty CSV field, JSON `null`, a Parquet null.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
}

impl From<i64> for Cell {
    fn from(v: i64) -> Cell {
        Cell::Int(v)
    }
}
impl From<u64> for Cell {
    fn from(v: u64) -> Cell {
        Cell::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<u32> for Cell {
    fn from(v: u32) -> Cell {
        Cell::Int(i64::from(v))
    }
}
impl From<f64> for Cell {
    fn from(v: f64) -> Cell {
        Cell::Float(v)
    }
}
impl From<bool> for Cell {
    fn from(v: bool) -> Cell {
        Cell::Bool(v)
    }
}
impl From<&str> for Cell {
    fn from(v: &str) -> Cell {
        Cell::Text(v.to_string())
    }
}
impl From<String> for Cell {
    fn from(v: String) -> Cell {
        Cell::Text(v)
    }
}
impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(v: Option<T>) -> Cell {
        v.map_or(Cell::Null, Into::into)
    }
}

/// Named, typed columns and their rows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<(&'static str, Type)>,
    pub rows: Vec<Vec<Cell>>,
}

/// A table format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableFormat {
    Csv,
    Jsonl,
    Parquet,
}

impl TableFormat {
    pub fn render(self, table: &Table) -> Result<Vec<u8>, RenderError> {
        match self {
            TableFormat::Csv => csv(table),
            TableFormat::Jsonl => Ok(jsonl(table)),
            TableFormat::Parquet => parquet(table),
        }
    }
}

fn csv(table: &Table) -> Result<Vec<u8>, RenderError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(table.columns.iter().map(|c| c.0))
        .map_err(RenderError::table)?;
    let mut record: Vec<String> = Vec::with_capacity(table.columns.len());
    for row in &table.rows {
        record.clear();
        record.extend(row.iter().map(|cell| match cell {
            Cell::Null => String::new(),
            Cell::Int(v) => v.to_string(),
            Cell::Float(v) => v.to_string(),
            Cell::Text(v) => v.clone(),
            Cell::Bool(v) => v.to_string(),
        }));
        w.write_record(&record).map_err(RenderError::table)?;
    }
    w.into_inner()
        .map_err(|e| RenderError::Table(e.to_string()))
}

/// One object per row, its keys in column order.
fn jsonl(table: &Table) -> Vec<u8> {
    let mut out = Vec::new();
    for row in &table.rows {
        out.push(b'{');
        for (i, ((name, _), cell)) in table.columns.iter().zip(row).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut out, name).expect("writing to memory cannot fail");
            out.push(b':');
            let written = match cell {
                Cell::Null => serde_json::to_writer(&mut out, &()),
                Cell::Int(v) => serde_json::to_writer(&mut out, v),
                Cell::Float(v) => serde_json::to_writer(&mut out, v),
                Cell::Text(v) => serde_json::to_writer(&mut out, v),
                Cell::Bool(v) => serde_json::to_writer(&mut out, v),
            };
            written.expect("writing to memory cannot fail");
        }
        out.extend_from_slice(b"}\n");
    }
    out
}

fn column(table: &Table, at: usize, kind: Type) -> ArrayRef {
    let cells = table.rows.iter().map(|r| &r[at]);
    match kind {
        Type::Int => Arc::new(
            cells
                .map(|c| match c {
                    Cell::Int(v) => Some(*v),
                    _ => None,
                })
                .collect::<Int64Array>(),
        ),
        Type::Float => Arc::new(
            cells
                .map(|c| match c {
                    Cell::Float(v) => Some(*v),
                    Cell::Int(v) => Some(*v as f64),
                    _ => None,
                })
                .collect::<Float64Array>(),
        ),
        Type::Bool => Arc::new(
            cells
                .map(|c| match c {
                    Cell::Bool(v) => Some(*v),
                    _ => None,
                })
                .collect::<BooleanArray>(),
        ),
        Type::Text => Arc::new(
            cells
                .map(|c| match c {
                    Cell::Text(v) => Some(v.as_str()),
                    _ => None,
                })
                .collect::<StringArray>(),
        ),
    }
}

fn parquet(table: &Table) -> Result<Vec<u8>, RenderError> {
    let fields: Vec<Field> = table
        .columns
        .iter()
        .map(|(name, kind)| {
            let t = match kind {
                Type::Int => DataType::Int64,
                Type::Float => DataType::Float64,
                Type::Text => DataType::Utf8,
                Type::Bool => DataType::Boolean,
            };
            Field::new(*name, t, true)
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let arrays: Vec<ArrayRef> = table
        .columns
        .iter()
        .enumerate()
        .map(|(at, (_, kind))| column(table, at, *kind))
        .collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(RenderError::table)?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .build();
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, schema, Some(props))
        .map_err(RenderError::table)?;
    writer.write(&batch).map_err(RenderError::table)?;
    writer.close().map_err(RenderError::table)?;
    out.flush().expect("writing to memory cannot fail");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        Table {
            columns: vec![("id", Type::Int), ("sql", Type::Text), ("ms", Type::Float)],
            rows: vec![
                vec![1i64.into(), "SELECT \"a\", b".into(), 1.5.into()],
                vec![2i64.into(), Cell::Null, Cell::Null],
            ],
        }
    }

    #[test]
    fn csv_quotes_what_needs_quoting_and_leaves_nulls_empty() {
        let text = String::from_utf8(TableFormat::Csv.render(&table()).unwrap()).unwrap();
        assert_eq!(text, "id,sql,ms\n1,\"SELECT \"\"a\"\", b\",1.5\n2,,\n");
    }

    #[test]
    fn jsonl_is_one_object_per_row() {
        let text = String::from_utf8(TableFormat::Jsonl.render(&table()).unwrap()).unwrap();
        assert_eq!(
            text,
            "{\"id\":1,\"sql\":\"SELECT \\\"a\\\", b\",\"ms\":1.5}\n{\"id\":2,\"sql\":null,\"ms\":null}\n"
        );
    }

    #[test]
    fn parquet_starts_and_ends_with_its_magic() {
        let bytes = TableFormat::Parquet.render(&table()).unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
        assert_eq!(&bytes[bytes.len() - 4..], b"PAR1");
    }
}
