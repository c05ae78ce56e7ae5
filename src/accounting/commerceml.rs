//! CommerceML 2 files: reading what 1C sends (catalogue, offers with prices and stock, its order
//! documents back) and writing our bookings as documents for 1C to load.
//!
//! Files arrive as UTF-8 with a BOM or in whatever the XML declaration names (old releases and
//! Bitrix-style exchanges use windows-1251). Parsing is streaming: a catalogue can be large.

use std::io::Read;

use chrono::{DateTime, Utc};
use quick_xml::events::{BytesDecl, BytesEnd, BytesRef, BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer, XmlVersion};

use crate::domain::{Booking, BookingStatus};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CmlError {
    /// The file cannot be read: 1C shows this text to its user.
    #[error("{0}")]
    Malformed(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// How much of the file start is read to find the BOM or the XML declaration.
const PREFIX: usize = 4096;
/// Elements nest at most this deep. CommerceML needs about a dozen levels (plus two per level
/// of nested goods groups); a deeper file is refused before it costs anything.
pub const MAX_DEPTH: usize = 128;
/// The longest single event (a tag, a text run, a comment) and the longest value read. The
/// reader buffers one event whole, so this bounds its memory whatever the file holds.
pub const MAX_EVENT: u64 = 8 * 1024 * 1024;

/// Bytes → text, by the BOM or else by the encoding the XML declaration names.
pub fn decode(bytes: &[u8]) -> Result<String, CmlError> {
    let mut out = String::new();
    let mut reader = decoding_reader(bytes)?;
    reader.read_to_string(&mut out).map_err(|e| {
        CmlError::Malformed(
            e.into_inner()
                .map(|e| e.to_string())
                .unwrap_or_else(|| "the file cannot be read".into()),
        )
    })?;
    Ok(out)
}

/// The file as UTF-8, decoded as it goes: the BOM means UTF-8, otherwise the declaration's
/// `encoding` (none means UTF-8). Bytes that are not valid in that encoding are an error.
fn decoding_reader<R: Read>(mut input: R) -> Result<Transcoder<impl Read>, CmlError> {
    let mut prefix = Vec::with_capacity(PREFIX);
    (&mut input)
        .take(PREFIX as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| CmlError::Malformed(format!("the file cannot be read: {e}")))?;
    let (encoding, skip) = if prefix.starts_with(UTF8_BOM) {
        (encoding_rs::UTF_8, UTF8_BOM.len())
    } else {
        let encoding = match declared_encoding(&prefix)? {
            Some(l) => encoding_rs::Encoding::for_label(l.as_bytes()).ok_or_else(|| {
                CmlError::Malformed(format!("unknown encoding {l:?} in the XML declaration"))
            })?,
            None => encoding_rs::UTF_8,
        };
        (encoding, 0)
    };
    let mut head = std::io::Cursor::new(prefix);
    head.set_position(skip as u64);
    Ok(Transcoder::new(head.chain(input), encoding))
}

/// Streams bytes of `encoding` out as UTF-8, refusing malformed input (no replacement
/// characters: a wrong declaration must not silently change names and prices).
struct Transcoder<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    encoding: &'static encoding_rs::Encoding,
    input: Vec<u8>,
    in_start: usize,
    in_end: usize,
    output: Vec<u8>,
    out_start: usize,
    out_end: usize,
    eof: bool,
    done: bool,
}

impl<R: Read> Transcoder<R> {
    fn new(inner: R, encoding: &'static encoding_rs::Encoding) -> Self {
        Transcoder {
            inner,
            decoder: encoding.new_decoder_without_bom_handling(),
            encoding,
            input: vec![0; 16 * 1024],
            in_start: 0,
            in_end: 0,
            output: vec![0; 32 * 1024],
            out_start: 0,
            out_end: 0,
            eof: false,
            done: false,
        }
    }

    /// Decodes the next stretch into `output`; false at the end of the input.
    fn fill(&mut self) -> std::io::Result<bool> {
        self.out_start = 0;
        self.out_end = 0;
        while self.out_end == 0 {
            if self.done {
                return Ok(false);
            }
            if self.in_start == self.in_end && !self.eof {
                self.in_start = 0;
                self.in_end = self.inner.read(&mut self.input)?;
                self.eof = self.in_end == 0;
            }
            let (result, read, written) = self.decoder.decode_to_utf8_without_replacement(
                &self.input[self.in_start..self.in_end],
                &mut self.output,
                self.eof,
            );
            self.in_start += read;
            self.out_end = written;
            match result {
                encoding_rs::DecoderResult::Malformed(_, _) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "the file is not valid {} as its declaration says",
                            self.encoding.name()
                        ),
                    ));
                }
                encoding_rs::DecoderResult::InputEmpty if self.eof => self.done = true,
                _ => {}
            }
        }
        Ok(true)
    }
}

impl<R: Read> Read for Transcoder<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.out_start == self.out_end && !self.fill()? {
            return Ok(0);
        }
        let n = out.len().min(self.out_end - self.out_start);
        out[..n].copy_from_slice(&self.output[self.out_start..self.out_start + n]);
        self.out_start += n;
        Ok(n)
    }
}

/// Fails the read once the parser has gone `MAX_EVENT` bytes past the end of its last event:
/// the reader would otherwise buffer a gigabyte-long text or comment whole.
struct EventBudget<R> {
    inner: R,
    consumed: u64,
    mark: std::rc::Rc<std::cell::Cell<u64>>,
    exceeded: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: Read> Read for EventBudget<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.consumed.saturating_sub(self.mark.get()) > MAX_EVENT {
            self.exceeded.set(true);
            return Err(std::io::Error::other(
                "an element, text or comment is too long",
            ));
        }
        let n = self.inner.read(out)?;
        self.consumed += n as u64;
        Ok(n)
    }
}

/// The `encoding` of `<?xml …?>`, read with the XML reader: the declaration is ASCII in every
/// encoding 1C uses, so the reader sees it before the first non-ASCII byte.
fn declared_encoding(bytes: &[u8]) -> Result<Option<String>, CmlError> {
    let mut reader = Reader::from_reader(bytes);
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Decl(decl)) => {
                return match decl.encoding() {
                    Some(Ok(label)) => Ok(Some(label.into_owned())),
                    Some(Err(e)) => Err(CmlError::Malformed(format!("XML declaration: {e}"))),
                    None => Ok(None),
                };
            }
            Ok(Event::Comment(_)) | Ok(Event::Text(_)) => buf.clear(),
            Ok(_) => return Ok(None),
            Err(e) => return Err(CmlError::Malformed(format!("XML declaration: {e}"))),
        }
    }
}

pub use crate::store::onec::{
    CatalogItem, IncomingDocument, Offer, Package, StockLine, StoredIncoming,
};

/// `1 719,50` / `1719.5` → 171950 (hundredths).
fn parse_minor(s: &str) -> Option<i64> {
    parse_scaled(s, 2)
}

/// Decimal text to an integer with `scale` decimals, without floating point.
fn parse_scaled(s: &str, scale: u32) -> Option<i64> {
    let cleaned: String = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '\u{a0}')
        .map(|c| if c == ',' { '.' } else { c })
        .collect();
    let (neg, body) = match cleaned.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, cleaned.as_str()),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.chars().all(|c| c.is_ascii_digit()) || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut value: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut digits = frac.chars();
    for _ in 0..scale {
        let d = digits.next().and_then(|c| c.to_digit(10)).unwrap_or(0);
        value = value.checked_mul(10)?.checked_add(i64::from(d))?;
    }
    Some(if neg { -value } else { value })
}

fn local(name: quick_xml::name::LocalName<'_>) -> String {
    name.into_inner().to_string()
}

/// Appends what an entity reference stands for. The reader hands references apart from the
/// text around them; CommerceML declares no DTD, so only the five XML entities and character
/// references exist, and any other name is an error in the file.
pub(crate) fn push_reference(out: &mut String, r: &BytesRef<'_>) -> Result<(), String> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| e.to_string())? {
        out.push(c);
        return Ok(());
    }
    match quick_xml::escape::resolve_xml_entity(r) {
        Some(s) => {
            out.push_str(s);
            Ok(())
        }
        None => Err(format!("unknown entity &{};", &**r)),
    }
}

/// Reads a whole CommerceML file. The root must be `КоммерческаяИнформация`; anything not
/// well-formed is refused with the position, so 1C's user sees where the file broke.
pub fn parse(bytes: &[u8]) -> Result<Package, CmlError> {
    parse_reader(bytes)
}

/// [`parse`] for a file on disk, read as it goes: memory holds what is kept, not the file.
pub fn parse_file(path: &std::path::Path) -> Result<Package, CmlError> {
    let file = std::fs::File::open(path)
        .map_err(|e| CmlError::Malformed(format!("the received file cannot be opened: {e}")))?;
    parse_reader(file)
}

/// Which of the elements the reader cares about are open, kept as the path changes so no
/// element has to look back along the path.
#[derive(Default)]
struct Open {
    catalog: u32,
    prices: u32,
    goods: u32,
    contractors: u32,
}

impl Open {
    fn counter(&mut self, name: &str) -> Option<&mut u32> {
        match name {
            "Каталог" => Some(&mut self.catalog),
            "Цены" => Some(&mut self.prices),
            "Товары" => Some(&mut self.goods),
            "Контрагенты" => Some(&mut self.contractors),
            _ => None,
        }
    }
}

/// Values longer than this are refused where they are read.
const MAX_VALUE: usize = MAX_EVENT as usize;

pub fn parse_reader<R: Read>(input: R) -> Result<Package, CmlError> {
    let mark = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let exceeded = std::rc::Rc::new(std::cell::Cell::new(false));
    let budget = EventBudget {
        inner: decoding_reader(input)?,
        consumed: 0,
        mark: mark.clone(),
        exceeded: exceeded.clone(),
    };
    // No reader-side trimming: it would also eat the spaces next to an entity reference
    // (`A &amp; B`); values are trimmed whole when their element ends.
    let mut reader = Reader::from_reader(std::io::BufReader::new(budget));
    let mut buf = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut open = Open::default();
    let mut seen_root = false;
    let mut pkg = Package::default();
    let mut item: Option<CatalogItem> = None;
    let mut offer: Option<Offer> = None;
    let mut doc: Option<IncomingDocument> = None;
    let mut requisite: (Option<String>, Option<String>) = (None, None);
    let mut text_buf = String::new();
    loop {
        buf.clear();
        let event = match reader.read_event_into(&mut buf) {
            Ok(e) => e,
            Err(_) if exceeded.get() => {
                return Err(CmlError::Malformed(format!(
                    "near byte {}: an element, text or comment longer than {} MiB",
                    reader.buffer_position(),
                    MAX_EVENT / 1024 / 1024
                )));
            }
            Err(e) => {
                return Err(CmlError::Malformed(format!(
                    "XML is broken near byte {}: {e}",
                    reader.buffer_position()
                )));
            }
        };
        mark.set(reader.buffer_position());
        match event {
            Event::Start(e) => {
                let name = local(e.local_name());
                if !seen_root {
                    check_root(&name)?;
                    seen_root = true;
                }
                if path.len() >= MAX_DEPTH {
                    return Err(CmlError::Malformed(format!(
                        "near byte {}: elements nest deeper than {MAX_DEPTH} levels",
                        reader.buffer_position()
                    )));
                }
                text_buf.clear();
                let parent = path.last().map(String::as_str);
                match (name.as_str(), parent) {
                    ("Товар", Some("Товары")) if open.catalog > 0 => {
                        item = Some(CatalogItem::default());
                    }
                    ("Предложение", Some("Предложения")) => {
                        offer = Some(Offer::default())
                    }
                    ("Документ", Some("КоммерческаяИнформация")) => {
                        doc = Some(IncomingDocument::default());
                    }
                    ("ЗначениеРеквизита", _) => requisite = (None, None),
                    _ => {}
                }
                if let Some(n) = open.counter(&name) {
                    *n += 1;
                }
                path.push(name);
            }
            Event::Empty(e) => {
                let name = local(e.local_name());
                if !seen_root {
                    check_root(&name)?;
                    seen_root = true;
                }
                if name == "Склад"
                    && path.last().map(String::as_str) == Some("Предложение")
                    && let Some(o) = offer.as_mut()
                {
                    let mut id = None;
                    let mut qty = None;
                    for attr in e.attributes() {
                        let attr = attr.map_err(|e| {
                            CmlError::Malformed(format!("bad attribute of <Склад>: {e}"))
                        })?;
                        let value =
                            attr.normalized_value(XmlVersion::Implicit1_0)
                                .map_err(|e| {
                                    CmlError::Malformed(format!("bad attribute of <Склад>: {e}"))
                                })?;
                        match attr.key.local_name().into_inner() {
                            "ИдСклада" => id = Some(value.into_owned()),
                            "КоличествоНаСкладе" => qty = parse_scaled(&value, 3),
                            _ => {}
                        }
                    }
                    if let (Some(id), Some(qty)) = (id, qty) {
                        o.warehouses.insert(id, qty);
                    }
                }
            }
            Event::Text(t) => text_buf.push_str(&t.xml10_content()),
            Event::GeneralRef(r) => push_reference(&mut text_buf, &r).map_err(|e| {
                CmlError::Malformed(format!(
                    "bad text near byte {}: {e}",
                    reader.buffer_position()
                ))
            })?,
            Event::CData(c) => text_buf.push_str(&c.xml10_content()),
            Event::End(_) => {
                let Some(name) = path.pop() else {
                    return Err(CmlError::Malformed("unbalanced closing tag".into()));
                };
                if let Some(n) = open.counter(&name) {
                    *n = n.saturating_sub(1);
                }
                let parent = path.last().map(String::as_str);
                let value = text_buf.trim().to_string();
                end_element(
                    &name,
                    parent,
                    &open,
                    value,
                    &mut pkg,
                    &mut item,
                    &mut offer,
                    &mut doc,
                    &mut requisite,
                )?;
                text_buf.clear();
            }
            Event::Eof => break,
            _ => {}
        }
        if text_buf.len() > MAX_VALUE {
            return Err(CmlError::Malformed(format!(
                "near byte {}: a value longer than {} MiB",
                reader.buffer_position(),
                MAX_EVENT / 1024 / 1024
            )));
        }
    }
    if !seen_root {
        return Err(CmlError::Malformed(
            "the file has no <КоммерческаяИнформация> element".into(),
        ));
    }
    if !path.is_empty() {
        return Err(CmlError::Malformed(format!(
            "the file ends inside <{}>: it was cut short",
            path.join("/")
        )));
    }
    Ok(pkg)
}

fn check_root(name: &str) -> Result<(), CmlError> {
    if name == "КоммерческаяИнформация" {
        Ok(())
    } else {
        Err(CmlError::Malformed(format!(
            "the root element is <{name}>, expected <КоммерческаяИнформация>"
        )))
    }
}

#[allow(clippy::too_many_arguments)]
fn end_element(
    name: &str,
    parent: Option<&str>,
    open: &Open,
    value: String,
    pkg: &mut Package,
    item: &mut Option<CatalogItem>,
    offer: &mut Option<Offer>,
    doc: &mut Option<IncomingDocument>,
    requisite: &mut (Option<String>, Option<String>),
) -> Result<(), CmlError> {
    let opt = |v: String| if v.is_empty() { None } else { Some(v) };
    if let Some(it) = item.as_mut() {
        match (name, parent) {
            ("Товар", Some("Товары")) => {
                let done = item.take().unwrap_or_default();
                if done.id.is_empty() {
                    return Err(CmlError::Malformed(format!(
                        "a catalogue item ({:?}) has no <Ид>",
                        done.name
                    )));
                }
                pkg.catalog.push(done);
            }
            ("Ид", Some("Товар")) => it.id = value,
            ("Наименование", Some("Товар")) => it.name = value,
            ("Артикул", Some("Товар")) => it.article = opt(value),
            ("БазоваяЕдиница", Some("Товар")) => it.unit = opt(value),
            ("Ид", Some("Группы")) => it.groups.push(value),
            _ => {}
        }
        return Ok(());
    }
    if let Some(o) = offer.as_mut() {
        let in_price = open.prices > 0;
        match (name, parent) {
            ("Предложение", Some("Предложения")) => {
                let done = offer.take().unwrap_or_default();
                if done.id.is_empty() {
                    return Err(CmlError::Malformed(format!(
                        "an offer ({:?}) has no <Ид>",
                        done.name
                    )));
                }
                pkg.offers.push(done);
            }
            ("Ид", Some("Предложение")) => o.id = value,
            ("Наименование", Some("Предложение")) => o.name = value,
            ("Количество", Some("Предложение")) => {
                o.quantity_milli = Some(parse_scaled(&value, 3).ok_or_else(|| {
                    CmlError::Malformed(format!("offer {}: bad <Количество> {value:?}", o.id))
                })?);
            }
            // The first price type is the one the exchange is set up to send.
            ("ЦенаЗаЕдиницу", Some("Цена")) if in_price && o.price_minor.is_none() =>
            {
                o.price_minor = Some(parse_minor(&value).ok_or_else(|| {
                    CmlError::Malformed(format!("offer {}: bad <ЦенаЗаЕдиницу> {value:?}", o.id))
                })?);
            }
            ("Валюта", Some("Цена")) if in_price && o.currency.is_none() => {
                o.currency = opt(value)
            }
            _ => {}
        }
        return Ok(());
    }
    if let Some(d) = doc.as_mut() {
        let in_goods = open.goods > 0 || open.contractors > 0;
        match (name, parent) {
            ("Документ", Some("КоммерческаяИнформация")) => {
                let done = doc.take().unwrap_or_default();
                if done.id.is_empty() {
                    return Err(CmlError::Malformed("a document has no <Ид>".into()));
                }
                pkg.documents.push(done);
            }
            ("Ид", Some("Документ")) => d.id = value,
            ("Номер", Some("Документ")) => d.number = opt(value),
            ("Сумма", Some("Документ")) => d.amount = opt(value),
            ("Наименование", Some("ЗначениеРеквизита")) => {
                requisite.0 = Some(value)
            }
            ("Значение", Some("ЗначениеРеквизита")) => {
                requisite.1 = Some(value)
            }
            ("ЗначениеРеквизита", Some("ЗначенияРеквизитов")) if !in_goods =>
            {
                let (n, v) = (requisite.0.take(), requisite.1.take());
                let v = v.unwrap_or_default();
                match n.as_deref() {
                    Some("Заказ оплачен") => d.paid = v == "true",
                    Some("Отменен") => d.cancelled = v == "true",
                    Some("Статус заказа") | Some("Статуса заказа ИД") if d.status.is_none() => {
                        d.status = opt(v)
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Applies a parsed file in one transaction: either all of it is stored, or none.
pub async fn apply(
    store: &Store,
    business_id: &str,
    pkg: &Package,
    now: DateTime<Utc>,
) -> Result<(), CmlError> {
    Ok(store.apply_onec_package(business_id, pkg, now).await?)
}

pub async fn stock(store: &Store, business_id: &str) -> Result<Vec<StockLine>, CmlError> {
    Ok(store.onec_stock(business_id).await?)
}

pub async fn incoming(store: &Store, business_id: &str) -> Result<Vec<StoredIncoming>, CmlError> {
    Ok(store.onec_incoming(business_id).await?)
}

pub async fn catalog_count(store: &Store, business_id: &str) -> Result<i64, CmlError> {
    Ok(store.onec_catalog_count(business_id).await?)
}

/// The bookings 1C has not taken in their current state: new ones and those whose status
/// changed since. Marks them as handed out at `now`; `mode=success` then confirms them.
pub async fn pending_for_query(
    store: &Store,
    business_id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Booking>, CmlError> {
    Ok(store.onec_pending_for_query(business_id, now).await?)
}

/// `mode=success`: everything handed out by the last `query` has been loaded by 1C.
pub async fn mark_delivered(
    store: &Store,
    business_id: &str,
    now: DateTime<Utc>,
) -> Result<u64, CmlError> {
    Ok(store.onec_mark_delivered(business_id, now).await?)
}

/// How the document file is written: its encoding and the local time zone of the visits.
pub struct DocumentStyle {
    pub encoding: &'static encoding_rs::Encoding,
    pub timezone: chrono_tz::Tz,
}

fn status_text(status: BookingStatus) -> &'static str {
    match status {
        BookingStatus::Visited => "Выполнен",
        BookingStatus::CancelledByClient | BookingStatus::CancelledByBusiness => "Отменен",
        _ => "Принят",
    }
}

fn money(minor: i64) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// A stable counterparty id for one client: 1C matches on it across exchanges.
pub fn contractor_id(b: &Booking) -> String {
    let digits: String = b
        .client_phone
        .as_str()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("zapis-client-{digits}")
}

type W = Writer<Vec<u8>>;

fn el(w: &mut W, name: &str, text: &str) -> std::io::Result<()> {
    w.write_event(Event::Start(BytesStart::new(name)))?;
    w.write_event(Event::Text(BytesText::new(text)))?;
    w.write_event(Event::End(BytesEnd::new(name)))?;
    Ok(())
}

fn open(w: &mut W, name: &str) -> std::io::Result<()> {
    w.write_event(Event::Start(BytesStart::new(name)))
}

fn close(w: &mut W, name: &str) -> std::io::Result<()> {
    w.write_event(Event::End(BytesEnd::new(name)))
}

fn requisite(w: &mut W, name: &str, value: &str) -> std::io::Result<()> {
    open(w, "ЗначениеРеквизита")?;
    el(w, "Наименование", name)?;
    el(w, "Значение", value)?;
    close(w, "ЗначениеРеквизита")
}

/// Our bookings as CommerceML 2.10 «Заказ товара» documents, each with its client as the
/// buyer and its service as a line, in the configured encoding.
pub fn write_documents(
    bookings: &[Booking],
    now: DateTime<Utc>,
    style: &DocumentStyle,
) -> Result<Vec<u8>, std::io::Error> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    let label = style.encoding.name();
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some(label), None)))?;
    let stamp = now
        .with_timezone(&style.timezone)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let root = BytesStart::new("КоммерческаяИнформация").with_attributes([
        ("xmlns", "urn:1C.ru:commerceml_2"),
        ("ВерсияСхемы", "2.10"),
        ("ДатаФормирования", stamp.as_str()),
    ]);
    w.write_event(Event::Start(root))?;
    for b in bookings {
        let local = b.start.with_timezone(&style.timezone);
        let created = b.created_at.with_timezone(&style.timezone);
        let sum = money(b.price.kopecks());
        open(&mut w, "Документ")?;
        el(&mut w, "Ид", &b.id)?;
        el(&mut w, "Номер", &b.id)?;
        el(&mut w, "Дата", &created.format("%Y-%m-%d").to_string())?;
        el(&mut w, "ХозОперация", "Заказ товара")?;
        el(&mut w, "Роль", "Продавец")?;
        el(&mut w, "Валюта", "RUB")?;
        el(&mut w, "Курс", "1")?;
        el(&mut w, "Сумма", &sum)?;
        open(&mut w, "Контрагенты")?;
        open(&mut w, "Контрагент")?;
        el(&mut w, "Ид", &contractor_id(b))?;
        el(&mut w, "Наименование", &b.client_name)?;
        el(&mut w, "ПолноеНаименование", &b.client_name)?;
        open(&mut w, "Контакты")?;
        open(&mut w, "Контакт")?;
        el(&mut w, "Тип", "Телефон мобильный")?;
        el(&mut w, "Значение", b.client_phone.as_str())?;
        close(&mut w, "Контакт")?;
        if let Some(email) = &b.client_email {
            open(&mut w, "Контакт")?;
            el(&mut w, "Тип", "Почта")?;
            el(&mut w, "Значение", email.as_str())?;
            close(&mut w, "Контакт")?;
        }
        close(&mut w, "Контакты")?;
        el(&mut w, "Роль", "Покупатель")?;
        close(&mut w, "Контрагент")?;
        close(&mut w, "Контрагенты")?;
        el(&mut w, "Время", &created.format("%H:%M:%S").to_string())?;
        el(
            &mut w,
            "Комментарий",
            &format!(
                "Визит {} {}, мастер {}",
                local.format("%d.%m.%Y %H:%M"),
                b.service_name,
                b.master_name
            ),
        )?;
        open(&mut w, "Товары")?;
        open(&mut w, "Товар")?;
        el(&mut w, "Ид", &b.service_id)?;
        el(&mut w, "Наименование", &b.service_name)?;
        w.write_event(Event::Start(
            BytesStart::new("БазоваяЕдиница").with_attributes([
                ("Код", "796"),
                ("НаименованиеПолное", "Штука"),
                ("МеждународноеСокращение", "PCE"),
            ]),
        ))?;
        w.write_event(Event::Text(BytesText::new("шт")))?;
        close(&mut w, "БазоваяЕдиница")?;
        // 2.10 puts the item's own requisites (base type `Товар`) before the document line's
        // price, quantity and sum (its extension), unlike the 2.03 samples.
        open(&mut w, "ЗначенияРеквизитов")?;
        requisite(&mut w, "ВидНоменклатуры", "Услуга")?;
        requisite(&mut w, "ТипНоменклатуры", "Услуга")?;
        close(&mut w, "ЗначенияРеквизитов")?;
        el(&mut w, "ЦенаЗаЕдиницу", &sum)?;
        el(&mut w, "Количество", "1")?;
        el(&mut w, "Сумма", &sum)?;
        close(&mut w, "Товар")?;
        close(&mut w, "Товары")?;
        open(&mut w, "ЗначенияРеквизитов")?;
        requisite(&mut w, "Статус заказа", status_text(b.status))?;
        requisite(
            &mut w,
            "Отменен",
            if matches!(
                b.status,
                BookingStatus::CancelledByClient | BookingStatus::CancelledByBusiness
            ) {
                "true"
            } else {
                "false"
            },
        )?;
        requisite(
            &mut w,
            "Дата визита",
            &local.format("%Y-%m-%d %H:%M:%S").to_string(),
        )?;
        requisite(&mut w, "Мастер", &b.master_name)?;
        close(&mut w, "ЗначенияРеквизитов")?;
        close(&mut w, "Документ")?;
    }
    close(&mut w, "КоммерческаяИнформация")?;
    let text = String::from_utf8(w.into_inner())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    if style.encoding == encoding_rs::UTF_8 {
        let mut out = UTF8_BOM.to_vec();
        out.extend_from_slice(text.as_bytes());
        return Ok(out);
    }
    // Characters windows-1251 lacks come out as numeric character references, still valid XML.
    let (bytes, _, _) = style.encoding.encode(&text);
    Ok(bytes.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_read_without_floating_point() {
        assert_eq!(parse_minor("1719"), Some(171_900));
        assert_eq!(parse_minor("9335.42"), Some(933_542));
        assert_eq!(parse_minor("1 496,5"), Some(149_650));
        assert_eq!(parse_scaled("1.00", 3), Some(1000));
        assert_eq!(parse_scaled("abc", 3), None);
        assert_eq!(parse_scaled("", 3), None);
    }

    #[test]
    fn a_file_cut_short_is_refused() {
        let err = parse("<КоммерческаяИнформация><Каталог><Товары>".as_bytes()).unwrap_err();
        assert!(err.to_string().contains("cut short"), "{err}");
    }

    #[test]
    fn a_foreign_root_is_refused() {
        let err = parse("<?xml version=\"1.0\"?><html/>".as_bytes()).unwrap_err();
        assert!(err.to_string().contains("КоммерческаяИнформация"), "{err}");
    }

    #[test]
    fn entity_references_keep_the_spaces_around_them() {
        let xml = "<КоммерческаяИнформация><Каталог><Товары><Товар><Ид>a1</Ид>\
                   <Наименование>  Шампунь &amp; бальзам &#1040;&#x0411; </Наименование>\
                   </Товар></Товары></Каталог></КоммерческаяИнформация>";
        let pkg = parse(xml.as_bytes()).unwrap();
        assert_eq!(pkg.catalog[0].name, "Шампунь & бальзам АБ");
        let bad = xml.replace("&amp;", "&nbsp;");
        let err = parse(bad.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("nbsp"), "{err}");
    }

    #[test]
    fn windows_1251_is_decoded_by_its_declaration() {
        let text = "<?xml version=\"1.0\" encoding=\"windows-1251\"?><a>Привет</a>";
        let (bytes, _, _) = encoding_rs::WINDOWS_1251.encode(text);
        assert_eq!(decode(&bytes).unwrap(), text);
    }
}
