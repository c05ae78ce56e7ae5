//! Parsing a CommerceML file as it streams: the catalogue, the offers with prices and stock,
//! and 1C's documents sent back, into a [`Package`].

use std::io::Read;

use quick_xml::events::{BytesRef, Event};
use quick_xml::{Reader, XmlVersion};

use super::decode::{EventBudget, MAX_DEPTH, MAX_EVENT, decoding_reader};
use super::{CatalogItem, CmlError, IncomingDocument, Offer, Package};

/// `1 719,50` / `1719.5` → 171950 (hundredths).
pub(super) fn parse_minor(s: &str) -> Option<i64> {
    parse_scaled(s, 2)
}

/// Decimal text to an integer with `scale` decimals, without floating point.
pub(super) fn parse_scaled(s: &str, scale: u32) -> Option<i64> {
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
