//! Spreadsheets: CSV (any common delimiter, UTF-8 or Windows-1251) and XLSX, turned into a
//! table, a header row found, and each column given a meaning from its header (Russian or
//! English) or from `--map`, or, with no header at all, from what the column holds.

use std::collections::HashMap;

use calamine::{Data, Reader};

use super::{Field, ImportError, MapOverride, RawDate, RawRecord};
use crate::normalize::{Email, Phone};

/// A sheet as text cells, with the 1-based row number of each row as the user sees it.
pub struct Table {
    pub rows: Vec<(usize, Vec<Cell>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Date(chrono::NaiveDate),
}

impl Cell {
    fn text(&self) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            Cell::Date(d) => d.format("%d.%m.%Y").to_string(),
        }
    }
}

/// Decodes bytes as UTF-8 when they are valid UTF-8 (BOM dropped), else as Windows-1251, the
/// encoding Russian Excel and 1C save CSV in.
pub fn decode(bytes: &[u8]) -> String {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(body) {
        Ok(s) => s.to_string(),
        Err(_) => encoding_rs::WINDOWS_1251.decode(body).0.into_owned(),
    }
}

/// The delimiter that splits the most of the first lines into the same number (> 0) of fields;
/// a title line above the header does not count against it.
fn sniff_delimiter(text: &str) -> u8 {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(20)
        .collect();
    let mut best = (b',', 0usize, 0usize);
    for d in [b';', b',', b'\t', b'|'] {
        let mut freq: HashMap<usize, usize> = HashMap::new();
        for l in &lines {
            let c = count_outside_quotes(l, d as char);
            if c > 0 {
                *freq.entry(c).or_default() += 1;
            }
        }
        if let Some((&count, &agree)) = freq.iter().max_by_key(|(c, n)| (**n, **c))
            && (agree, count) > (best.1, best.2)
        {
            best = (d, agree, count);
        }
    }
    best.0
}

fn count_outside_quotes(line: &str, d: char) -> usize {
    let mut quoted = false;
    line.chars()
        .filter(|&c| {
            if c == '"' {
                quoted = !quoted;
            }
            c == d && !quoted
        })
        .count()
}

pub fn csv(bytes: &[u8], overrides: &[MapOverride]) -> Result<Vec<RawRecord>, ImportError> {
    let text = decode(bytes);
    let delimiter = sniff_delimiter(&text);
    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for result in reader.records() {
        let record = result.map_err(|e| ImportError::Format(format!("CSV: {e}")))?;
        let line = record
            .position()
            .map_or(rows.len() + 1, |p| p.line() as usize);
        rows.push((
            line,
            record.iter().map(|c| Cell::Text(c.to_string())).collect(),
        ));
    }
    records(Table { rows }, overrides)
}

pub fn xlsx(bytes: &[u8], overrides: &[MapOverride]) -> Result<Vec<RawRecord>, ImportError> {
    let mut book = calamine::Xlsx::new(std::io::Cursor::new(bytes))
        .map_err(|e| ImportError::Format(format!("XLSX: {e}")))?;
    let sheet = book
        .sheet_names()
        .first()
        .cloned()
        .ok_or_else(|| ImportError::Format("XLSX: the workbook has no sheets".into()))?;
    let range = book
        .worksheet_range(&sheet)
        .map_err(|e| ImportError::Format(format!("XLSX sheet {sheet:?}: {e}")))?;
    let first_row = range.start().map_or(0, |(r, _)| r as usize);
    let rows = range
        .rows()
        .enumerate()
        .map(|(i, row)| (first_row + i + 1, row.iter().map(xlsx_cell).collect()))
        .collect();
    records(Table { rows }, overrides)
}

fn xlsx_cell(d: &Data) -> Cell {
    match d {
        Data::Empty => Cell::Text(String::new()),
        Data::String(s) => Cell::Text(s.clone()),
        // Phones saved as numbers (79123456789) must not come out as "79123456789.0".
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e16 => {
            Cell::Text(format!("{}", *f as i64))
        }
        Data::Float(f) => Cell::Text(f.to_string()),
        Data::Int(i) => Cell::Text(i.to_string()),
        Data::Bool(b) => Cell::Text(b.to_string()),
        Data::DateTime(dt) => match dt.as_datetime() {
            Some(t) => Cell::Date(t.date()),
            None => Cell::Text(dt.as_f64().to_string()),
        },
        Data::DateTimeIso(s) | Data::DurationIso(s) => Cell::Text(s.clone()),
        Data::Error(e) => Cell::Text(format!("{e:?}")),
        #[allow(unreachable_patterns)]
        _ => Cell::Text(d.to_string()),
    }
}

/// What a header says, by its normalised text.
pub fn field_of_header(header: &str) -> Option<Field> {
    let h: String = header
        .trim()
        .to_lowercase()
        .replace('ё', "е")
        .chars()
        .filter(|c| !matches!(c, '*' | ':' | '"'))
        .collect();
    let h = h.trim();
    let exact = match h {
        "фио"
        | "ф.и.о."
        | "ф.и.о"
        | "клиент"
        | "имя клиента"
        | "контакт"
        | "контактное лицо"
        | "наименование"
        | "полное имя"
        | "name"
        | "full name"
        | "fullname"
        | "client"
        | "customer"
        | "client name"
        | "contact" => Some(Field::FullName),
        "имя" | "first name" | "firstname" | "given name" => Some(Field::FirstName),
        "фамилия" | "last name" | "lastname" | "surname" | "family name" => {
            Some(Field::LastName)
        }
        "отчество" | "middle name" | "patronymic" => Some(Field::MiddleName),
        "др" | "д.р." | "birthday" | "dob" => Some(Field::Birthday),
        _ => None,
    };
    if exact.is_some() {
        return exact;
    }
    let has = |needles: &[&str]| needles.iter().any(|n| h.contains(n));
    if has(&["рожд", "birth"]) {
        Some(Field::Birthday)
    } else if has(&[
        "телефон",
        "тел.",
        "phone",
        "мобильн",
        "mobile",
        "whatsapp",
        "сотов",
    ]) || h == "тел"
    {
        Some(Field::Phone)
    } else if has(&["email", "e-mail", "почт", "mail"]) {
        Some(Field::Email)
    } else if has(&["коммент", "примечан", "замет", "comment", "note"]) {
        Some(Field::Comment)
    } else {
        None
    }
}

/// Turns a table into records: finds the header (the first of the top ten rows with two or
/// more known headers), assigns fields, applies `--map`.
pub fn records(table: Table, overrides: &[MapOverride]) -> Result<Vec<RawRecord>, ImportError> {
    let header_at = table.rows.iter().take(10).position(|(_, cells)| {
        cells
            .iter()
            .filter(|c| field_of_header(&c.text()).is_some())
            .count()
            >= 2
    });
    let width = table.rows.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
    let (mut columns, data_from): (Vec<Option<Field>>, usize) = match header_at {
        Some(i) => (
            table.rows[i]
                .1
                .iter()
                .map(|c| field_of_header(&c.text()))
                .collect(),
            i + 1,
        ),
        None => (infer_by_content(&table, width), 0),
    };
    columns.resize(width, None);
    let headers: Vec<String> = header_at
        .map(|i| {
            table.rows[i]
                .1
                .iter()
                .map(|c| c.text().trim().to_lowercase())
                .collect()
        })
        .unwrap_or_default();
    for o in overrides {
        let index = match o.column.parse::<usize>() {
            Ok(n) if n >= 1 && n <= width => n - 1,
            _ => headers
                .iter()
                .position(|h| *h == o.column.to_lowercase())
                .ok_or_else(|| {
                    ImportError::Mapping(format!(
                        "no column {:?} (headers: {})",
                        o.column,
                        headers.join(", ")
                    ))
                })?,
        };
        // A single-valued field given explicitly replaces what was inferred for it.
        if !matches!(o.field, Field::Phone | Field::Email) {
            for c in columns.iter_mut() {
                if *c == Some(o.field) {
                    *c = None;
                }
            }
        }
        columns[index] = Some(o.field);
    }
    if !columns
        .iter()
        .any(|c| matches!(c, Some(Field::Phone | Field::Email)))
    {
        return Err(ImportError::Mapping(
            "no phone or email column found; name one with --map phone=COLUMN".into(),
        ));
    }
    let mut out = Vec::new();
    for (row, cells) in table.rows.into_iter().skip(data_from) {
        if cells.iter().all(|c| c.text().trim().is_empty()) {
            continue;
        }
        let mut r = RawRecord {
            row,
            ..RawRecord::default()
        };
        for (cell, field) in cells.into_iter().zip(columns.iter()) {
            let Some(field) = field else { continue };
            let text = cell.text();
            if text.trim().is_empty() {
                continue;
            }
            match field {
                Field::FullName => r.full_name = Some(text),
                Field::LastName => r.last_name = Some(text),
                Field::FirstName => r.first_name = Some(text),
                Field::MiddleName => r.middle_name = Some(text),
                Field::Phone => r.phones.push(text),
                Field::Email => r.emails.push(text),
                Field::Comment => {
                    r.comment = Some(match r.comment.take() {
                        Some(c) => format!("{c}; {text}"),
                        None => text,
                    })
                }
                Field::Birthday => {
                    r.birthday = Some(match cell {
                        Cell::Date(d) => RawDate::Date(d),
                        Cell::Text(t) => RawDate::Text(t),
                    })
                }
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// With no header: a column mostly of valid phones is a phone column, mostly of emails an
/// email column, and the first mostly-letters column is the name.
fn infer_by_content(table: &Table, width: usize) -> Vec<Option<Field>> {
    let sample: Vec<&Vec<Cell>> = table.rows.iter().take(50).map(|(_, c)| c).collect();
    let mut fields = vec![None; width];
    let mut votes: HashMap<usize, (usize, usize, usize, usize)> = HashMap::new();
    for cells in &sample {
        for (i, c) in cells.iter().enumerate() {
            let t = c.text();
            let t = t.trim();
            if t.is_empty() {
                continue;
            }
            let v = votes.entry(i).or_default();
            v.0 += 1;
            if Phone::parse(t).is_ok() {
                v.1 += 1;
            } else if Email::parse(t).is_ok() {
                v.2 += 1;
            } else if t.chars().filter(|c| c.is_alphabetic()).count() * 2 > t.chars().count() {
                v.3 += 1;
            }
        }
    }
    let mut name_taken = false;
    for (i, field) in fields.iter_mut().enumerate() {
        let Some(&(filled, phones, emails, words)) = votes.get(&i) else {
            continue;
        };
        if phones * 2 > filled {
            *field = Some(Field::Phone);
        } else if emails * 2 > filled {
            *field = Some(Field::Email);
        } else if words * 2 > filled && !name_taken {
            *field = Some(Field::FullName);
            name_taken = true;
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_in_russian_and_english() {
        for (h, f) in [
            ("ФИО", Field::FullName),
            ("Телефон", Field::Phone),
            ("Тел. мобильный", Field::Phone),
            ("E-mail", Field::Email),
            ("Эл. почта", Field::Email),
            ("Дата рождения", Field::Birthday),
            ("Комментарий", Field::Comment),
            ("Фамилия", Field::LastName),
            ("Имя", Field::FirstName),
            ("Phone number", Field::Phone),
            ("Date of birth", Field::Birthday),
        ] {
            assert_eq!(field_of_header(h), Some(f), "{h}");
        }
        assert_eq!(field_of_header("Город"), None);
    }

    #[test]
    fn delimiters_are_sniffed() {
        assert_eq!(sniff_delimiter("a;b;c\n1;2,5;3\n"), b';');
        assert_eq!(sniff_delimiter("a,b\n\"x;y\",2\n"), b',');
        assert_eq!(sniff_delimiter("a\tb\n1\t2\n"), b'\t');
    }

    #[test]
    fn windows_1251_is_detected() {
        let (bytes, _, _) = encoding_rs::WINDOWS_1251.encode("Иванова;89123456789");
        assert_eq!(decode(&bytes), "Иванова;89123456789");
        assert_eq!(decode("\u{feff}Анна".as_bytes()), "Анна");
    }

    #[test]
    fn headerless_columns_are_inferred_from_content() {
        let recs = csv(
            "Иван Петров;8 912 345 67 89;ivan@mail.ru\nАнна;+7 922 111 22 33;anna@ya.ru\n"
                .as_bytes(),
            &[],
        )
        .unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].full_name.as_deref(), Some("Иван Петров"));
        assert_eq!(recs[1].phones, vec!["+7 922 111 22 33"]);
        assert_eq!(recs[1].emails, vec!["anna@ya.ru"]);
    }
}
