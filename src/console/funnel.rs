//! The Sources page's funnel: the period form, the chart per day or week, the table per source
//! with the conversion between steps, and the same table as CSV. The numbers come from
//! `store::analytics`; this file only shows them.

use chrono::{Datelike, Duration, NaiveDate};
use maud::{Markup, html};

use super::bookings::period_in;
use super::layout::{percent, tr, trusted};
use super::{BusinessView, ConsoleState};
use crate::domain::Money;
use crate::i18n::Lang;
use crate::store::StoreError;
use crate::store::analytics::{Bucket, Funnel, SourceKind, SourceRow};

/// The default period: the last 30 days, today included.
fn period(
    state: &ConsoleState,
    b: &BusinessView,
    from: &str,
    to: &str,
) -> (
    NaiveDate,
    NaiveDate,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
) {
    let today = state.clock.now().with_timezone(&b.timezone).date_naive();
    period_in(b.timezone, from, to, today - Duration::days(29), today)
}

fn kind_words(kind: &SourceKind) -> &'static str {
    match kind {
        SourceKind::Link => "console-kind-link",
        SourceKind::Payload => "console-kind-payload",
        SourceKind::Utm => "console-kind-utm",
        SourceKind::Direct => "console-kind-direct",
    }
}

fn label(lang: Lang, row: &SourceRow) -> String {
    if row.key.label.is_empty() {
        tr(lang, "console-source-direct")
    } else {
        row.key.label.clone()
    }
}

fn total(rows: &[SourceRow]) -> Funnel {
    let mut t = Funnel::default();
    for r in rows {
        let f = &r.funnel;
        t.chats_started += f.chats_started;
        t.reached_contact += f.reached_contact;
        t.bookings += f.bookings;
        t.cancelled += f.cancelled;
        t.visits += f.visits;
        t.no_shows += f.no_shows;
        t.revenue = Money(t.revenue.0 + f.revenue.0);
    }
    t
}

const COLUMNS: [&str; 10] = [
    "console-started",
    "console-reached-contact",
    "console-conv-contact",
    "console-booked",
    "console-conv-booked",
    "console-cancelled",
    "console-came",
    "console-conv-came",
    "console-no-shows",
    "console-revenue",
];

fn cells(f: &Funnel) -> [String; 10] {
    [
        f.chats_started.to_string(),
        f.reached_contact.to_string(),
        percent(f.reached_contact, f.chats_started),
        f.bookings.to_string(),
        percent(f.bookings, f.reached_contact),
        f.cancelled.to_string(),
        f.visits.to_string(),
        percent(f.visits, f.bookings),
        f.no_shows.to_string(),
        f.revenue.to_string(),
    ]
}

/// Bars of chats started and bookings per bucket, drawn here so the page needs no script.
fn chart(lang: Lang, series: &[(NaiveDate, Funnel)]) -> String {
    const W: f64 = 720.0;
    const H: f64 = 160.0;
    let top = series
        .iter()
        .map(|(_, f)| f.chats_started.max(f.bookings))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let n = series.len().max(1) as f64;
    let slot = W / n;
    let bar = (slot / 2.0 - 1.0).max(1.0);
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {}\" role=\"img\" aria-label=\"{}\" \
         xmlns=\"http://www.w3.org/2000/svg\">",
        H + 20.0,
        escape(&tr(lang, "console-chart"))
    );
    for (i, (day, f)) in series.iter().enumerate() {
        let x = i as f64 * slot;
        for (j, (value, class)) in [(f.chats_started, "started"), (f.bookings, "booked")]
            .into_iter()
            .enumerate()
        {
            let h = value as f64 / top * H;
            svg.push_str(&format!(
                "<rect class=\"{class}\" x=\"{:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\">\
                 <title>{day}: {value}</title></rect>",
                x + j as f64 * (bar + 1.0),
                H - h
            ));
        }
    }
    if let (Some((first, _)), Some((last, _))) = (series.first(), series.last()) {
        svg.push_str(&format!(
            "<text x=\"0\" y=\"{}\">{first}</text><text x=\"{W}\" y=\"{}\" text-anchor=\"end\">{last}</text>",
            H + 16.0,
            H + 16.0
        ));
    }
    svg.push_str("</svg>");
    svg
}

pub async fn section(
    state: &ConsoleState,
    lang: Lang,
    b: &BusinessView,
    from: &str,
    to: &str,
    bucket: &str,
) -> Result<Markup, StoreError> {
    let (from_day, to_day, start, end) = period(state, b, from, to);
    let weekly = bucket == "week";
    let rows = state.store.source_funnel(&b.id, start, end).await?;
    let series = state
        .store
        .funnel_series(
            &b.id,
            start,
            end,
            if weekly { Bucket::Week } else { Bucket::Day },
            b.timezone,
            None,
        )
        .await?;
    let series = fill_gaps(series, from_day, to_day, weekly);
    let totals = total(&rows);
    let csv_href = format!(
        "/console/b/{}/sources.csv?from={from_day}&to={to_day}",
        b.id
    );
    Ok(html! {
        form.filters method="get" {
            label { (tr(lang, "console-from")) " " input type="date" name="from" value=(from_day); }
            label { (tr(lang, "console-to")) " " input type="date" name="to" value=(to_day); }
            label { (tr(lang, "console-bucket")) " "
                select name="bucket" {
                    option value="day" selected[!weekly] { (tr(lang, "console-by-day")) }
                    option value="week" selected[weekly] { (tr(lang, "console-by-week")) }
                }
            }
            button type="submit" { (tr(lang, "console-show")) }
            " " a href=(csv_href) { "CSV" }
        }
        figure {
            (trusted(chart(lang, &series)))
            figcaption {
                span.key.started { (tr(lang, "console-started")) }
                " "
                span.key.booked { (tr(lang, "console-booked")) }
            }
        }
        div.scroll {
            table.funnel {
                thead { tr {
                    th { (tr(lang, "console-source")) }
                    @for c in COLUMNS { th.num { (tr(lang, c)) } }
                } }
                tbody {
                    @for r in &rows {
                        tr data-source=(label(lang, r)) {
                            td { (label(lang, r)) br; small { (tr(lang, kind_words(&r.key.kind))) } }
                            @for c in cells(&r.funnel) { td.num { (c) } }
                        }
                    }
                }
                tfoot { tr {
                    th { (tr(lang, "console-total")) }
                    @for c in cells(&totals) { td.num { (c) } }
                } }
            }
        }
    })
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Escaper writes HTML-escaped text into a String; it cannot fail.
    let _ = std::fmt::Write::write_str(&mut maud::Escaper::new(&mut out), text);
    out
}

/// Buckets with nothing in them are still days (or weeks) on the chart.
fn fill_gaps(
    series: Vec<(NaiveDate, Funnel)>,
    from: NaiveDate,
    to: NaiveDate,
    weekly: bool,
) -> Vec<(NaiveDate, Funnel)> {
    let step = if weekly { 7 } else { 1 };
    let mut day = if weekly {
        from - Duration::days(i64::from(from.weekday().num_days_from_monday()))
    } else {
        from
    };
    let mut out = Vec::new();
    let mut given = series.into_iter().peekable();
    while day <= to {
        match given.peek() {
            Some((d, _)) if *d == day => {
                if let Some(point) = given.next() {
                    out.push(point);
                }
            }
            _ => out.push((day, Funnel::default())),
        }
        day += Duration::days(step);
    }
    out
}

/// A deep-link payload is anyone's to write: one that starts like a formula is kept as text.
fn spreadsheet_safe(cell: String) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell
    }
}

/// The table as CSV: `;`-separated for Russian (what Excel expects there), `,` for English,
/// with a byte-order mark so Excel reads it as UTF-8.
pub async fn csv(
    state: &ConsoleState,
    lang: Lang,
    b: &BusinessView,
    from: &str,
    to: &str,
) -> Result<(String, String), StoreError> {
    let (from_day, to_day, start, end) = period(state, b, from, to);
    let rows = state.store.source_funnel(&b.id, start, end).await?;
    let delimiter = if lang == Lang::Ru { b';' } else { b',' };
    let mut out = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .from_writer(Vec::new());
    let corrupt = |e: csv::Error| StoreError::Corrupt(format!("CSV: {e}"));
    let mut header = vec![tr(lang, "console-source"), tr(lang, "console-kind")];
    header.extend(COLUMNS.iter().map(|c| tr(lang, c)));
    out.write_record(&header).map_err(corrupt)?;
    for r in &rows {
        let mut record = vec![
            spreadsheet_safe(label(lang, r)),
            tr(lang, kind_words(&r.key.kind)),
        ];
        let mut values = cells(&r.funnel);
        // A number a spreadsheet can sum, not the page's `1 800 ₽`.
        values[9] = format!("{:.2}", r.funnel.revenue.kopecks() as f64 / 100.0);
        record.extend(values);
        out.write_record(&record).map_err(corrupt)?;
    }
    let bytes = out
        .into_inner()
        .map_err(|e| StoreError::Corrupt(format!("CSV: {e}")))?;
    let text = format!("\u{feff}{}", String::from_utf8_lossy(&bytes));
    Ok((format!("sources-{}-{from_day}-{to_day}.csv", b.id), text))
}
