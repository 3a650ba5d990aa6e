//! Line-tracking readers for delimited and JSON Lines files. Every value comes with the
//! [`Location`] it was read from, so parse errors can say `file:line: field: problem`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Location, Result};

/// Longest value one field of an import file may hold (64 KiB: a long review fits).
pub const MAX_FIELD_BYTES: usize = 64 * 1024;

/// Refuses a field of `len` bytes over [`MAX_FIELD_BYTES`]: no title or review is that long, and
/// one would flood every prompt, screen and index it reaches. Every accessor of a row's fields
/// goes through here, so no importer can read around the limit.
fn within_limit(at: &Location, field: &str, len: usize) -> Result<()> {
    if len > MAX_FIELD_BYTES {
        return Err(Error::input(
            at.field(field),
            format!("{len} bytes, more than the {MAX_FIELD_BYTES} a field may hold"),
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Utf8,
    /// The original GroupLens MovieLens 100K files are Latin-1.
    Latin1,
}

pub struct CsvSource {
    path: PathBuf,
    reader: csv::Reader<File>,
    names: Vec<String>,
    columns: HashMap<String, usize>,
    record: csv::ByteRecord,
    encoding: Encoding,
}

/// One row of a delimited file, fields decoded.
pub struct Row<'a> {
    pub at: Location,
    values: Vec<String>,
    columns: &'a HashMap<String, usize>,
}

/// `item_id:token` (recbole's typed headers) and ` Title ` both become plain lower-case names.
fn column_key(raw: &str) -> String {
    let name = raw.trim().trim_start_matches('\u{feff}');
    name.split(':').next().unwrap_or(name).trim().to_lowercase()
}

fn decode(bytes: &[u8], encoding: Encoding) -> std::result::Result<String, ()> {
    match encoding {
        Encoding::Utf8 => std::str::from_utf8(bytes).map(str::to_string).map_err(|_| ()),
        Encoding::Latin1 => Ok(bytes.iter().map(|&b| b as char).collect()),
    }
}

pub fn open_file(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::io(path, e))
}

impl CsvSource {
    /// Opens a delimited file. With `names`, the file has no header row and these are its
    /// columns; otherwise the first row names them.
    pub fn open(path: &Path, delimiter: u8, quoting: bool, names: Option<&[&str]>, encoding: Encoding) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .quoting(quoting)
            .has_headers(names.is_none())
            .flexible(false)
            .from_reader(open_file(path)?);
        let names: Vec<String> = match names {
            Some(n) => n.iter().map(|s| column_key(s)).collect(),
            None => {
                let headers = reader.byte_headers().map_err(|e| csv_error(path, e))?.clone();
                headers
                    .iter()
                    .enumerate()
                    .map(|(i, h)| {
                        decode(h, encoding).map(|s| column_key(&s)).map_err(|_| {
                            Error::input(Location::new(path, 1), format!("header {} is not valid UTF-8", i + 1))
                        })
                    })
                    .collect::<Result<_>>()?
            }
        };
        let columns = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        Ok(CsvSource { path: path.to_path_buf(), reader, names, columns, record: csv::ByteRecord::new(), encoding })
    }

    /// Fails at line 1 naming the first required column the header lacks.
    pub fn require(&self, required: &[&str]) -> Result<()> {
        for col in required {
            if !self.columns.contains_key(*col) {
                return Err(Error::input(
                    Location::new(&self.path, 1).field(col),
                    format!("missing column (the header has: {})", self.names.join(", ")),
                ));
            }
        }
        Ok(())
    }

    pub fn bytes_read(&self) -> u64 {
        self.reader.position().byte()
    }

    pub fn next_row(&mut self) -> Result<Option<Row<'_>>> {
        loop {
            if !self.reader.read_byte_record(&mut self.record).map_err(|e| csv_error(&self.path, e))? {
                return Ok(None);
            }
            // Skip blank lines (a lone empty field), common at the end of hand-edited files.
            if self.record.len() == 1 && self.record[0].iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            break;
        }
        let line = self.record.position().map_or(0, |p| p.line());
        let at = Location::new(&self.path, line);
        let mut values = Vec::with_capacity(self.record.len());
        for (i, raw) in self.record.iter().enumerate() {
            let value = decode(raw, self.encoding).map_err(|_| {
                let name = self.names.get(i).map_or("?", String::as_str);
                Error::input(at.field(name), "not valid UTF-8 (save the file as UTF-8)")
            })?;
            values.push(value);
        }
        Ok(Some(Row { at, values, columns: &self.columns }))
    }
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map_or(0, |p| p.line());
    match e.kind() {
        csv::ErrorKind::Io(_) => Error::io(path, std::io::Error::other(e.to_string())),
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            Error::input(Location::new(path, line), format!("expected {expected_len} fields, found {len}"))
        }
        _ => Error::input(Location::new(path, line), e.to_string()),
    }
}

/// Typed access to the fields of one input row, whatever the file format.
pub trait Fields {
    fn at(&self) -> &Location;
    /// A trimmed text value as the file holds it; `None` when absent or empty.
    fn raw_text(&self, field: &str) -> Result<Option<String>>;
    /// Every field except `known`, kept as item or user attributes (each within the limit).
    fn extra(&self, known: &[&str]) -> Result<Map<String, Value>>;

    /// A trimmed text value; `None` when the field is absent or empty. A value longer than
    /// [`MAX_FIELD_BYTES`] is refused.
    fn text(&self, field: &str) -> Result<Option<String>> {
        let value = self.raw_text(field)?;
        if let Some(v) = &value {
            within_limit(self.at(), field, v.len())?;
        }
        Ok(value)
    }

    /// A list written `a|b|c` (or a JSON array in JSON Lines).
    fn list(&self, field: &str) -> Result<Vec<String>> {
        Ok(split_list(self.text(field)?.as_deref()))
    }

    fn required(&self, field: &str) -> Result<String> {
        self.text(field)?.ok_or_else(|| Error::input(self.at().field(field), "missing value"))
    }

    fn rating(&self, field: &str) -> Result<Option<f64>> {
        parse_rating(self.text(field)?.as_deref(), &self.at().field(field))
    }

    fn year(&self, field: &str) -> Result<Option<i32>> {
        parse_year(self.text(field)?.as_deref(), &self.at().field(field))
    }

    fn timestamp(&self, field: &str) -> Result<Option<i64>> {
        parse_time(self.text(field)?.as_deref(), &self.at().field(field))
    }
}

impl Row<'_> {
    /// The trimmed value of a column, borrowed; `None` when the column is absent or the value
    /// empty. A value longer than [`MAX_FIELD_BYTES`] is refused, as by [`Fields::text`].
    pub fn get(&self, column: &str) -> Result<Option<&str>> {
        let value = self.value(column);
        if let Some(v) = value {
            within_limit(&self.at, column, v.len())?;
        }
        Ok(value)
    }

    fn value(&self, column: &str) -> Option<&str> {
        let v = self.values.get(*self.columns.get(column)?)?.trim();
        (!v.is_empty()).then_some(v)
    }
}

impl Fields for Row<'_> {
    fn at(&self) -> &Location {
        &self.at
    }

    fn raw_text(&self, field: &str) -> Result<Option<String>> {
        Ok(self.value(field).map(str::to_string))
    }

    fn extra(&self, known: &[&str]) -> Result<Map<String, Value>> {
        let mut m = Map::new();
        for name in self.columns.keys() {
            if !known.contains(&name.as_str()) {
                if let Some(v) = self.get(name)? {
                    m.insert(name.clone(), Value::String(v.to_string()));
                }
            }
        }
        Ok(m)
    }
}

pub fn parse_rating(raw: Option<&str>, at: &Location) -> Result<Option<f64>> {
    let Some(raw) = raw else { return Ok(None) };
    let r: f64 = raw.parse().map_err(|_| Error::input(at.clone(), format!("{raw:?} is not a number")))?;
    if !r.is_finite() || !(0.0..=5.0).contains(&r) {
        return Err(Error::input(at.clone(), format!("rating {raw} is outside 0..5")));
    }
    Ok(Some(r))
}

pub fn parse_year(raw: Option<&str>, at: &Location) -> Result<Option<i32>> {
    let Some(raw) = raw else { return Ok(None) };
    match raw.parse::<i32>() {
        Ok(y) if (1000..=3000).contains(&y) => Ok(Some(y)),
        _ => Err(Error::input(at.clone(), format!("{raw:?} is not a year"))),
    }
}

pub fn parse_time(raw: Option<&str>, at: &Location) -> Result<Option<i64>> {
    let Some(raw) = raw else { return Ok(None) };
    crate::text::parse_timestamp(raw)
        .map(Some)
        .ok_or_else(|| Error::input(at.clone(), format!("{raw:?} is not a unix time or a YYYY-MM-DD date")))
}

/// Splits a list field written as `a|b|c` (also accepting `;` or `,` when no `|` is present).
pub fn split_list(raw: Option<&str>) -> Vec<String> {
    let Some(raw) = raw else { return Vec::new() };
    let sep = if raw.contains('|') {
        '|'
    } else if raw.contains(';') {
        ';'
    } else {
        ','
    };
    raw.split(sep).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

/// A JSON Lines file: one object per non-blank line.
pub struct JsonlSource {
    path: PathBuf,
    reader: BufReader<File>,
    line: u64,
    bytes: u64,
    buf: Vec<u8>,
}

/// One object of a JSON Lines file.
pub struct JsonRow {
    pub at: Location,
    pub object: Map<String, Value>,
}

impl JsonlSource {
    pub fn open(path: &Path) -> Result<Self> {
        Ok(JsonlSource {
            path: path.to_path_buf(),
            reader: BufReader::new(open_file(path)?),
            line: 0,
            bytes: 0,
            buf: Vec::new(),
        })
    }

    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    pub fn next_row(&mut self) -> Result<Option<JsonRow>> {
        loop {
            self.buf.clear();
            let n = self.reader.read_until(b'\n', &mut self.buf).map_err(|e| Error::io(&self.path, e))?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            self.bytes += n as u64;
            let at = Location::new(&self.path, self.line);
            let text = std::str::from_utf8(&self.buf).map_err(|_| Error::input(at.clone(), "not valid UTF-8"))?;
            let text = text.trim().trim_start_matches('\u{feff}');
            if text.is_empty() {
                continue;
            }
            let value: Value =
                serde_json::from_str(text).map_err(|e| Error::input(at.clone(), format!("invalid JSON: {e}")))?;
            let Value::Object(object) = value else {
                return Err(Error::input(at, "expected a JSON object"));
            };
            return Ok(Some(JsonRow { at, object }));
        }
    }
}

impl Fields for JsonRow {
    fn at(&self) -> &Location {
        &self.at
    }

    /// Strings, and numbers written as text; other JSON types are an error.
    fn raw_text(&self, field: &str) -> Result<Option<String>> {
        match self.object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(Error::input(self.at.field(field), format!("expected a string, found {other}"))),
        }
    }

    fn list(&self, field: &str) -> Result<Vec<String>> {
        match self.object.get(field) {
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                let mut bytes = 0;
                for v in items {
                    // The list as a whole is one field: a million short entries flood as much.
                    bytes += v.as_str().map_or(0, str::len);
                    within_limit(&self.at, field, bytes)?;
                    match v {
                        Value::String(s) if !s.trim().is_empty() => out.push(s.trim().to_string()),
                        Value::String(_) => {}
                        other => {
                            return Err(Error::input(self.at.field(field), format!("expected strings, found {other}")))
                        }
                    }
                }
                Ok(out)
            }
            _ => Ok(split_list(self.text(field)?.as_deref())),
        }
    }

    fn extra(&self, known: &[&str]) -> Result<Map<String, Value>> {
        let mut m = Map::new();
        for (k, v) in self.object.iter().filter(|(k, _)| !known.contains(&k.as_str())) {
            let len = v.as_str().map_or_else(|| v.to_string().len(), str::len);
            within_limit(&self.at, k, len)?;
            m.insert(k.clone(), v.clone());
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_field_is_refused_with_its_place() {
        let at = Location::new(Path::new("big.jsonl"), 7);
        let mut object = Map::new();
        object.insert("title".into(), Value::String("x".repeat(MAX_FIELD_BYTES + 1)));
        object.insert("text".into(), Value::String("y".repeat(MAX_FIELD_BYTES)));
        let row = JsonRow { at, object };
        let err = row.required("title").unwrap_err().to_string();
        assert!(err.starts_with("big.jsonl:7: title: 65537 bytes"), "{err}");
        assert_eq!(row.text("text").unwrap().unwrap().len(), MAX_FIELD_BYTES);
    }
}
