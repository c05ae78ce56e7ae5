//! Writing our bookings as a CommerceML documents file for 1C to load, in the encoding and
//! time zone the exchange is configured with.

use chrono::{DateTime, Utc};
use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};

use super::decode::UTF8_BOM;
use crate::domain::{Booking, BookingStatus};

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
