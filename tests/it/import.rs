//! `zapis import`: dirty files in every supported format with exact expected outcomes, phone
//! normalisation against libphonenumber's own +7 metadata, and the real binary loading into the
//! amoCRM, Bitrix24 and YClients fakes: 5,000 clients into amoCRM and 1,200 into Bitrix24 (and
//! 45 cards into YClients) killed halfway, resumed, same end state; rate limits never exceeded.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use serde_json::{Value, json};
use support::app::Settings;
use support::fake_amocrm::{self as fake, FakeAmo};
use support::fake_bitrix24::{self as b24, FakeBitrix};
use support::fake_yclients::{self as yc, FakeSalon, FakeYclients};
use zapis::import::{Client, Prepared, ProblemKind, prepare, read_bytes};
use zapis::normalize::Phone;

// ------------------------------------------------------------------ libphonenumber data

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/libphonenumber_7")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split(';')
                .map(|c| c.trim().trim_matches('"').to_string())
                .collect()
        })
        .collect()
}

/// Every shape a +7 number is typed in, for a 10-digit national number.
fn shapes(n: &str) -> Vec<String> {
    let (a, b, c, d) = (&n[..3], &n[3..6], &n[6..8], &n[8..]);
    vec![
        n.to_string(),
        format!("8{n}"),
        format!("7{n}"),
        format!("+7{n}"),
        format!("8 ({a}) {b}-{c}-{d}"),
        format!("+7 {a} {b}{c}{d}"),
        format!("7-{a}-{b}-{c}-{d}"),
        format!(" +7 ({a}) {b} {c} {d} "),
    ]
}

#[test]
fn every_libphonenumber_example_for_plus_7_normalises_in_every_shape() {
    let rows = csv_rows(&fixture("examples.csv"));
    assert_eq!(rows.len(), 11);
    for row in rows {
        let number = &row[2];
        for shape in shapes(number) {
            let phone = Phone::parse(&shape)
                .unwrap_or_else(|e| panic!("{} {} {shape:?}: {e}", row[0], row[1]));
            assert_eq!(
                phone.as_str(),
                format!("+7{number}"),
                "{} {} {shape:?}",
                row[0],
                row[1]
            );
        }
    }
}

#[test]
fn numbers_from_libphonenumber_ranges_normalise_and_short_ones_are_refused() {
    let rows = csv_rows(&fixture("ranges.csv"));
    assert!(rows.len() >= 20);
    let mut checked = 0;
    for row in rows {
        let (prefix, length) = (&row[0], row[1].parse::<usize>().unwrap());
        // `49[58]` stands for 495 and 498.
        let prefixes: Vec<String> = match prefix.split_once('[') {
            Some((head, rest)) => rest
                .trim_end_matches(']')
                .chars()
                .map(|c| format!("{head}{c}"))
                .collect(),
            None => vec![prefix.clone()],
        };
        for p in prefixes {
            let number: String = format!("{p}{}", &"1234567890"[..length - p.len()]);
            for shape in shapes(&number) {
                let phone =
                    Phone::parse(&shape).unwrap_or_else(|e| panic!("{} {shape:?}: {e}", row[2]));
                assert_eq!(phone.as_str(), format!("+7{number}"), "{shape:?}");
            }
            // One digit short is not a number of this range.
            assert!(
                Phone::parse(&format!("+7{}", &number[..length - 1])).is_err(),
                "{number}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 24, "{checked}");
}

// ------------------------------------------------------------------ dirty files

const TITLE: &str = "Выгрузка клиентов салона Лотос на 01.11.2026";
const HEADER: [&str; 5] = ["ФИО", "Телефон", "E-mail", "Дата рождения", "Комментарий"];

fn dirty_rows() -> Vec<[&'static str; 5]> {
    vec![
        [
            "ИВАНОВА Анна  Петровна",
            "8 (912) 345-67-89",
            " Anna.Ivanova@Mail.RU ",
            "12.05.1990",
            "постоянная",
        ],
        ["Анна Иванова", "+7 912 3456789", "", "12.05.1990", ""],
        [
            "петров   петр",
            "9161234567, 8-495-123-45-67 доб. 12",
            "petrov@gmial.com",
            "1985-03-01",
            "",
        ],
        [
            "Сидоров Иван",
            "7-903-111-22-33",
            "ivan@почта.рф",
            "31.02.1980",
            "",
        ],
        ["Без Телефона", "нет", "broken@@mail", "", ""],
        [
            "Петрова Мария",
            "+375 29 123-45-67",
            "maria@yandex.ru",
            "",
            "",
        ],
        ["Мария Петрова-Сидорова", "", "MARIA@yandex.ru", "", ""],
        ["Кузнецов Олег", "123", "oleg@bk.ru", "", ""],
    ]
}

fn dirty_csv(delimiter: char) -> String {
    let d = delimiter.to_string();
    // Cells holding the delimiter are quoted, as every spreadsheet program writes them.
    let quote = |c: &str| {
        if c.contains(delimiter) {
            format!("\"{c}\"")
        } else {
            c.to_string()
        }
    };
    let mut out = format!("{TITLE}\n{}\n", HEADER.join(&d));
    for r in dirty_rows() {
        out.push_str(&r.iter().map(|c| quote(c)).collect::<Vec<_>>().join(&d));
        out.push('\n');
    }
    out.push_str(&format!("{d}{d}{d}{d}\n", d = delimiter));
    out
}

fn phones(c: &Client) -> Vec<&str> {
    c.phones.iter().map(|p| p.as_str()).collect()
}

fn emails(c: &Client) -> Vec<&str> {
    c.emails.iter().map(|e| e.as_str()).collect()
}

/// The exact outcome every format of the dirty base must give (data rows 3..10).
fn assert_dirty_outcome(p: &Prepared) {
    assert_eq!(
        (p.read, p.valid, p.invalid, p.merged, p.clients.len()),
        (8, 7, 1, 2, 5)
    );
    let c = &p.clients;
    assert_eq!(c[0].key, "phone:+79123456789");
    assert_eq!(c[0].name, "Иванова Анна Петровна");
    assert_eq!(phones(&c[0]), ["+79123456789"]);
    assert_eq!(emails(&c[0]), ["Anna.Ivanova@mail.ru"]);
    assert_eq!(c[0].birthday, NaiveDate::from_ymd_opt(1990, 5, 12));
    assert_eq!(c[0].comment.as_deref(), Some("постоянная"));
    assert_eq!(c[0].rows, [3, 4]);

    assert_eq!(c[1].name, "Петров Петр");
    assert_eq!(phones(&c[1]), ["+79161234567", "+74951234567"]);
    assert_eq!(emails(&c[1]), ["petrov@gmial.com"]);
    assert_eq!(c[1].birthday, NaiveDate::from_ymd_opt(1985, 3, 1));
    assert_eq!(c[1].comment.as_deref(), Some("+74951234567 доб. 12"));

    assert_eq!(c[2].name, "Сидоров Иван");
    assert_eq!(phones(&c[2]), ["+79031112233"]);
    assert_eq!(emails(&c[2]), ["ivan@xn--80a1acny.xn--p1ai"]);
    assert_eq!(c[2].birthday, None);

    assert_eq!(c[3].name, "Петрова Мария");
    assert_eq!(phones(&c[3]), ["+375291234567"]);
    assert_eq!(emails(&c[3]), ["maria@yandex.ru"]);
    assert_eq!(c[3].rows, [8, 9]);

    assert_eq!(c[4].key, "email:oleg@bk.ru");
    assert_eq!(c[4].name, "Кузнецов Олег");
    assert!(c[4].phones.is_empty());

    let problems: Vec<(usize, ProblemKind, &str)> = p
        .problems
        .iter()
        .map(|x| (x.row.unwrap(), x.kind, x.value.as_str()))
        .collect();
    assert_eq!(
        problems,
        vec![
            (4, ProblemKind::Merged, "Анна Иванова"),
            (5, ProblemKind::EmailTypo, "petrov@gmial.com"),
            (
                5,
                ProblemKind::Extension,
                "9161234567, 8-495-123-45-67 доб. 12"
            ),
            (6, ProblemKind::InvalidBirthday, "31.02.1980"),
            (7, ProblemKind::InvalidPhone, "нет"),
            (7, ProblemKind::InvalidEmail, "broken@@mail"),
            (7, ProblemKind::NoContact, "Без Телефона"),
            (9, ProblemKind::Merged, "Мария Петрова-Сидорова"),
            (9, ProblemKind::Conflict, "Мария Петрова-Сидорова"),
            (10, ProblemKind::InvalidPhone, "123"),
        ]
    );
    assert!(p.problems[1].detail.contains("gmail.com"));
    assert!(p.problems[8].detail.contains("Петрова Мария"));
}

#[test]
fn a_dirty_utf8_csv_with_a_title_line() {
    assert_dirty_outcome(&prepare(
        read_bytes(dirty_csv(';').as_bytes(), &[]).unwrap(),
    ));
    assert_dirty_outcome(&prepare(
        read_bytes(dirty_csv(',').as_bytes(), &[]).unwrap(),
    ));
    assert_dirty_outcome(&prepare(
        read_bytes(dirty_csv('\t').as_bytes(), &[]).unwrap(),
    ));
}

#[test]
fn a_windows_1251_csv_gives_the_same_clients() {
    let text = dirty_csv(';');
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1251.encode(&text);
    assert!(!unmappable);
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "the file really is not UTF-8"
    );
    assert_dirty_outcome(&prepare(read_bytes(&bytes, &[]).unwrap()));
}

#[test]
fn an_xlsx_with_numeric_phones_and_date_cells_gives_the_same_clients() {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    sheet.write_string(0, 0, TITLE).unwrap();
    for (c, h) in HEADER.iter().enumerate() {
        sheet.write_string(1, c as u16, *h).unwrap();
    }
    let date_format = rust_xlsxwriter::Format::new().set_num_format("dd.mm.yyyy");
    for (i, r) in dirty_rows().iter().enumerate() {
        let row = (i + 2) as u32;
        for (c, v) in r.iter().enumerate() {
            match (i, c) {
                // A phone typed as a number, and birthdays as real date cells.
                (0, 1) => sheet.write_number(row, 1, 89123456789.0).map(|_| ()),
                (_, 3) if !v.is_empty() && *v != "31.02.1980" => {
                    let d = zapis::import::normalise::birthday(v).unwrap().unwrap();
                    let dt = rust_xlsxwriter::ExcelDateTime::from_ymd(
                        chrono::Datelike::year(&d) as u16,
                        chrono::Datelike::month(&d) as u8,
                        chrono::Datelike::day(&d) as u8,
                    )
                    .unwrap();
                    sheet
                        .write_datetime_with_format(row, 3, &dt, &date_format)
                        .map(|_| ())
                }
                _ if v.is_empty() => Ok(()),
                _ => sheet.write_string(row, c as u16, *v).map(|_| ()),
            }
            .unwrap();
        }
    }
    let bytes = book.save_to_buffer().unwrap();
    assert_dirty_outcome(&prepare(read_bytes(&bytes, &[]).unwrap()));
}

#[test]
fn explicit_mapping_overrides_unknown_headers() {
    let csv = "Клиент;Тел. моб.;Город;Контакты\nАнна;89123456789;Москва;anna@mail.ru\n";
    // "Контакты" is no known header: without --map the email is lost to the import.
    let plain = prepare(read_bytes(csv.as_bytes(), &[]).unwrap());
    assert!(plain.clients[0].emails.is_empty());
    let map = vec!["email=Контакты".parse().unwrap(), "name=1".parse().unwrap()];
    let mapped = prepare(read_bytes(csv.as_bytes(), &map).unwrap());
    assert_eq!(emails(&mapped.clients[0]), ["anna@mail.ru"]);
    assert_eq!(mapped.clients[0].name, "Анна");
    assert!(read_bytes(csv.as_bytes(), &["email=Нет такой".parse().unwrap()]).is_err());
}

#[test]
fn a_1c_commerceml_export_in_windows_1251() {
    let xml = r#"<?xml version="1.0" encoding="windows-1251"?>
<КоммерческаяИнформация ВерсияСхемы="2.10" ДатаФормирования="2026-11-01">
  <Контрагенты>
    <Контрагент>
      <Ид>a1</Ид><Наименование>Иванова А. П.</Наименование>
      <ПолноеНаименование>ИВАНОВА АННА ПЕТРОВНА</ПолноеНаименование>
      <Фамилия>Иванова</Фамилия><Имя>Анна</Имя><Отчество>Петровна</Отчество>
      <ДатаРождения>1990-05-12</ДатаРождения>
      <Комментарий>VIP &amp; постоянная</Комментарий>
      <Контакты>
        <Контакт><Тип>Телефон мобильный</Тип><Значение>8 912 345 67 89</Значение></Контакт>
        <Контакт><Тип>Почта</Тип><Значение>anna@mail.ru</Значение></Контакт>
      </Контакты>
      <Представители><Представитель><Контрагент><Отношение>Контактное лицо</Отношение>
        <Ид>r1</Ид><Наименование>Муж Анны</Наименование></Контрагент></Представитель></Представители>
    </Контрагент>
    <Контрагент>
      <Ид>a2</Ид><Наименование>Иванова Анна</Наименование>
      <Контакты><Контакт><Тип>Телефон рабочий</Тип><Значение>+7 (912) 345-67-89</Значение></Контакт></Контакты>
    </Контрагент>
    <Контрагент>
      <Ид>a3</Ид><Наименование>Смирнов Олег</Наименование>
      <Контакты><Контакт><Тип>Электронная почта</Тип><Значение>oleg@yandex.ru</Значение></Контакт></Контакты>
    </Контрагент>
    <Контрагент><Ид>a4</Ид><Наименование>Без контактов</Наименование><Контакты/></Контрагент>
  </Контрагенты>
</КоммерческаяИнформация>"#;
    let (bytes, _, _) = encoding_rs::WINDOWS_1251.encode(xml);
    let p = prepare(read_bytes(&bytes, &[]).unwrap());
    assert_eq!(
        (p.read, p.valid, p.invalid, p.merged, p.clients.len()),
        (4, 3, 1, 1, 2)
    );
    assert_eq!(p.clients[0].name, "Иванова Анна Петровна");
    assert_eq!(phones(&p.clients[0]), ["+79123456789"]);
    assert_eq!(emails(&p.clients[0]), ["anna@mail.ru"]);
    assert_eq!(p.clients[0].comment.as_deref(), Some("VIP & постоянная"));
    assert_eq!(p.clients[0].birthday, NaiveDate::from_ymd_opt(1990, 5, 12));
    assert_eq!(p.clients[1].key, "email:oleg@yandex.ru");
    let kinds: Vec<(usize, ProblemKind)> = p
        .problems
        .iter()
        .map(|x| (x.row.unwrap(), x.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![(2, ProblemKind::Merged), (4, ProblemKind::NoContact)]
    );
}

#[test]
fn a_1c_odata_list_with_contact_information_rows() {
    let body = json!({
        "odata.metadata": "http://1c.local/buh/odata/standard.odata/$metadata#Catalog_Контрагенты",
        "value": [
            {"Ref_Key": "k1", "DeletionMark": false, "IsFolder": false, "Description": "петров петр",
             "КонтактнаяИнформация": [
                 {"LineNumber": "1", "Тип": "Телефон", "Представление": "+7 916 123-45-67", "НомерТелефона": "9161234567"},
                 {"LineNumber": "2", "Тип": "АдресЭлектроннойПочты", "Представление": "petr@Mail.ru", "АдресЭП": "petr@Mail.ru"}]},
            {"Ref_Key": "k2", "DeletionMark": true, "Description": "Удалённый", "Телефон": "89160000000"},
            {"Ref_Key": "k3", "IsFolder": true, "Description": "Покупатели"},
            {"Ref_Key": "k4", "DeletionMark": false, "Description": "Ольга", "Телефон": "+49 30 901820",
             "ДатаРождения": "0001-01-01T00:00:00"}
        ]
    });
    let p = prepare(read_bytes(body.to_string().as_bytes(), &[]).unwrap());
    assert_eq!((p.read, p.clients.len()), (2, 2));
    assert_eq!(p.clients[0].name, "Петров Петр");
    assert_eq!(phones(&p.clients[0]), ["+79161234567"]);
    assert_eq!(emails(&p.clients[0]), ["petr@mail.ru"]);
    assert_eq!(phones(&p.clients[1]), ["+4930901820"]);
    assert_eq!(p.clients[1].birthday, None);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
}

// ------------------------------------------------------------------ the real binary

/// A salon whose store is a file in `dir`, its queue polled every 100 ms.
fn salon(dir: &Path) -> Settings {
    Settings::new(&format!("sqlite://{}", dir.join("zapis.db").display()))
        .remove("business.id")
        .set("sync.poll", "100ms")
}

fn write_config(dir: &Path, amo: &FakeAmo) -> std::path::PathBuf {
    let config = dir.join("zapis.toml");
    salon(dir)
        .amocrm(amo)
        .remove("crm.amocrm.booking_id_field_id")
        .write(&config);
    config
}

fn import_cmd(config: &Path, file: &Path, extra: &[&str]) -> Command {
    import_into("amocrm", config, file, extra)
}

fn import_into(target: &str, config: &Path, file: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zapis"));
    cmd.arg("import")
        .arg(file)
        .args(["--into", target, "--config"])
        .arg(config)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

fn run_import(config: &Path, file: &Path, extra: &[&str]) -> String {
    run_import_into("amocrm", config, file, extra)
}

fn run_import_into(target: &str, config: &Path, file: &Path, extra: &[&str]) -> String {
    let out = import_into(target, config, file, extra)
        .output()
        .expect("zapis import runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "zapis import failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The phones (normalised) of every contact in the fake, with how many contacts carry each.
fn phone_census(amo: &FakeAmo) -> BTreeMap<String, usize> {
    let mut census = BTreeMap::new();
    for c in amo.contacts() {
        for f in c["custom_fields_values"].as_array().into_iter().flatten() {
            if f["field_code"] == json!("PHONE") {
                for v in f["values"].as_array().into_iter().flatten() {
                    let phone = Phone::parse(v["value"].as_str().unwrap()).unwrap();
                    *census.entry(phone.to_string()).or_default() += 1;
                }
            }
        }
    }
    census
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reports_every_problem_and_writes_nothing() {
    let amo = FakeAmo::start().await;
    // Already in the CRM, typed by a manager: the import would update it, not duplicate it.
    amo.insert_contact_with_phone("Анна", "8 912 345-67-89");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &amo);
    let file = dir.path().join("clients.csv");
    std::fs::write(&file, dirty_csv(';')).unwrap();
    let report = dir.path().join("report.csv");
    let out = run_import(
        &config,
        &file,
        &["--dry-run", "--report", report.to_str().unwrap()],
    );
    assert!(
        out.contains("read 8, valid 7, invalid 1, merged 2 → 5 clients; would be created 4, would be updated 1, skipped 0, failed 0"),
        "{out}"
    );
    let requests = amo.requests();
    assert!(requests.iter().all(|(m, _)| m == "GET"), "{requests:?}");
    assert_eq!(amo.contacts().len(), 1);
    let mut rd = csv::Reader::from_path(&report).unwrap();
    let rows: Vec<(String, String)> = rd
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_string(), r[1].to_string())
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("4", "merged"),
        ("5", "email_typo"),
        ("5", "extension"),
        ("6", "invalid_birthday"),
        ("7", "invalid_phone"),
        ("7", "invalid_email"),
        ("7", "no_contact"),
        ("9", "merged"),
        ("9", "conflict"),
        ("10", "invalid_phone"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(rows, expected);
}

/// 5,000 clients plus 250 duplicate rows typed differently; 20 of the clients are already in
/// the CRM (typed by hand, without the email we bring).
fn big_base(dir: &Path) -> (std::path::PathBuf, BTreeSet<String>) {
    numbered_base(dir, 5000)
}

/// `n` clients `Клиентова{i} Анна`, phone `+79{100000000 + i}`, email `client{i}@mail.ru`, and
/// every 20th typed a second time differently (capitals, a formatted phone, no email).
fn numbered_base(dir: &Path, n: u32) -> (std::path::PathBuf, BTreeSet<String>) {
    let mut csv = String::from("Фамилия;Имя;Телефон;Email\n");
    let mut expected = BTreeSet::new();
    for i in 0..n {
        let national = national(i);
        expected.insert(format!("+7{national}"));
        csv.push_str(&format!(
            "Клиентова{i};Анна;8{national};client{i}@mail.ru\n"
        ));
        if i % 20 == 0 {
            let (a, b, c, d) = (
                &national[..3],
                &national[3..6],
                &national[6..8],
                &national[8..],
            );
            csv.push_str(&format!("КЛИЕНТОВА{i};;+7 ({a}) {b}-{c}-{d};\n"));
        }
    }
    let file = dir.join("base.csv");
    std::fs::write(&file, csv).unwrap();
    (file, expected)
}

fn national(i: u32) -> String {
    format!("9{:09}", 100_000_000 + i)
}

/// `zapis run` and a `zapis import`, or two imports, on one SQLite store are two processes
/// with a limiter each: they keep amoCRM's 7 a second together through the store's pace row.
/// Each import alone makes 7 requests (a listing, six of 250 contacts) at 7 a second; on
/// paces of their own the two would put 12 to 14 in a second. Across processes the row spaces
/// the turns (eight in a row no closer than 1,050 ms); where each request then arrives is up
/// to the machine, and one held up on its way past the 50 ms guard (a loaded CI runner) can
/// make a second of eight: amoCRM answers that with a 429, waited out, and nothing is lost or
/// doubled. Within one process each request keeps its place until its answer
/// (`connectors::pacing`), which rules that out there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_imports_at_once_on_one_sqlite_store_keep_amocrms_pace_together() {
    let amo = FakeAmo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &amo);
    let migrated = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .arg("migrate")
        .arg("--config")
        .arg(&config)
        .output()
        .expect("zapis migrate runs");
    assert!(migrated.status.success(), "{migrated:?}");
    let files: Vec<std::path::PathBuf> = (0..2u32)
        .map(|half| {
            let mut csv = String::from("Фамилия;Имя;Телефон\n");
            for i in half * 1500..(half + 1) * 1500 {
                csv.push_str(&format!("Клиентова{i};Анна;8{}\n", national(i)));
            }
            let file = dir.path().join(format!("half{half}.csv"));
            std::fs::write(&file, csv).unwrap();
            file
        })
        .collect();
    let children: Vec<_> = files
        .iter()
        .map(|file| {
            import_cmd(&config, file, &[])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("zapis import starts")
        })
        .collect();
    let mut logs = String::new();
    for child in children {
        let out = child.wait_with_output().expect("zapis import ends");
        logs.push_str(&String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("created 1500, updated 0"), "{stdout}");
    }
    assert_eq!(amo.contacts().len(), 3000);
    let census = phone_census(&amo);
    assert_eq!(census.len(), 3000);
    assert!(
        census.values().all(|&n| n == 1),
        "a phone is on two contacts"
    );
    assert!(
        amo.max_per_second() <= fake::MAX_RPS + 1 && amo.throttled() <= 1,
        "{} requests arrived within one second, {} throttled; eight in a row in {:?}; {logs}",
        amo.max_per_second(),
        amo.throttled(),
        amo.shortest_span(8)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_clients_killed_halfway_and_resumed_end_the_same() {
    let amo = FakeAmo::start().await;
    for i in (0..5000u32).step_by(250) {
        amo.insert_contact_with_phone(&format!("Клиентова {i}"), &format!("8 {}", national(i)));
    }
    let existing_ids: BTreeSet<i64> = amo
        .contacts()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &amo);
    let (file, expected) = big_base(dir.path());

    // First start: SIGKILL once part of the base is in.
    let mut child = import_cmd(&config, &file, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("zapis import starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = amo.contacts().len();
        if n >= 1500 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import ended before it could be killed"
        );
        assert!(
            Instant::now() < deadline,
            "the import made no progress: {n} contacts"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = amo.contacts().len();
    assert!(
        at_kill < 5000,
        "killed too late to prove anything: {at_kill}"
    );
    // The dead process's last turns are in the store's pace row, which spaces the new one's
    // after them; this test is about resuming, so it also waits out the second in which a
    // request of the dead one's might still have been on its way (see
    // `two_imports_at_once_on_one_sqlite_store_keep_amocrms_pace_together`).
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let out = run_import(&config, &file, &[]);
    assert!(
        out.contains("read 5250, valid 5250, invalid 0, merged 250 → 5000 clients; created 4980, updated 20, skipped 0, failed 0"),
        "{out}"
    );
    let contacts = amo.contacts();
    assert_eq!(contacts.len(), 5000, "exactly one contact per client");
    let census = phone_census(&amo);
    assert_eq!(census.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(
        census.values().all(|&n| n == 1),
        "a phone is on two contacts"
    );
    // The hand-typed contacts were updated in place: same ids, our email added, their phone kept.
    for c in contacts
        .iter()
        .filter(|c| existing_ids.contains(&c["id"].as_i64().unwrap()))
    {
        let fields = c["custom_fields_values"].as_array().unwrap();
        let email = fields
            .iter()
            .find(|f| f["field_code"] == json!("EMAIL"))
            .expect("email added");
        assert!(
            email["values"][0]["value"]
                .as_str()
                .unwrap()
                .ends_with("@mail.ru")
        );
        let phone = fields
            .iter()
            .find(|f| f["field_code"] == json!("PHONE"))
            .unwrap();
        assert!(
            phone["values"][0]["value"]
                .as_str()
                .unwrap()
                .starts_with("8 9")
        );
    }
    let merged = contacts
        .iter()
        .find(|c| c["name"] == json!("Клиентова20 Анна"))
        .expect("merged client by its fuller name");
    let merged_phones = &merged["custom_fields_values"][0]["values"];
    assert_eq!(merged_phones.as_array().unwrap().len(), 1, "{merged}");
    assert!(
        amo.max_per_second() <= fake::MAX_RPS,
        "{}",
        amo.max_per_second()
    );
    assert_eq!(amo.throttled(), 0);

    // Third start: nothing left to do, nothing written.
    let posts_before =
        amo.count("POST", "/api/v4/contacts") + amo.count("PATCH", "/api/v4/contacts");
    let out = run_import(&config, &file, &[]);
    assert!(
        out.contains("created 4980, updated 20, skipped 0, failed 0"),
        "{out}"
    );
    let posts_after =
        amo.count("POST", "/api/v4/contacts") + amo.count("PATCH", "/api/v4/contacts");
    assert_eq!(posts_before, posts_after);
    assert_eq!(amo.contacts().len(), 5000);
}

// ------------------------------------------------------------------ Bitrix24

fn bitrix_config(dir: &Path, portal: &FakeBitrix) -> std::path::PathBuf {
    let config = dir.join("zapis.toml");
    salon(dir)
        .set("crm.system", "bitrix24")
        .set("crm.bitrix24.webhook_url", portal.webhook_url())
        .write(&config);
    config
}

/// The `VALUE`s of a multiple field as the portal holds it.
fn values(field: &Value) -> Vec<String> {
    field
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["VALUE"].as_str().map(str::to_string))
        .collect()
}

fn b24_phone_census(portal: &FakeBitrix) -> BTreeMap<String, usize> {
    let mut census = BTreeMap::new();
    for c in portal.contacts() {
        for v in values(&c["PHONE"]) {
            *census
                .entry(Phone::parse(&v).unwrap().to_string())
                .or_default() += 1;
        }
    }
    census
}

/// Methods run by the portal, directly or inside `batch`, with this name.
fn b24_runs(portal: &FakeBitrix, method: &str) -> usize {
    portal
        .calls()
        .iter()
        .chain(portal.batched().iter())
        .filter(|m| m.as_str() == method)
        .count()
}

/// `(row, kind, value, detail)` of a problem report.
fn report_rows(path: &Path) -> Vec<(String, String, String, String)> {
    csv::Reader::from_path(path)
        .unwrap()
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[0].to_string(),
                r[1].to_string(),
                r[2].to_string(),
                r[3].to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrix24_dirty_file_completes_existing_contacts_and_reports_a_refused_command() {
    let portal = FakeBitrix::start().await;
    // Typed by a manager: the import adds our email to it and keeps the rest.
    let anna = portal.insert_contact("Анна С.", &["8 (912) 345-67-89"], &[]);
    // Inside the batch the portal refuses one client's address; the others must go in.
    portal.fail_when(
        "crm.contact.add",
        "почта.рф",
        400,
        json!({"error": "ERROR_CORE", "error_description": "The field Work e-mail contains an invalid address"}),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = bitrix_config(dir.path(), &portal);
    let file = dir.path().join("clients.csv");
    std::fs::write(&file, dirty_csv(';')).unwrap();
    let report = dir.path().join("report.csv");

    let out = run_import_into("bitrix24", &config, &file, &["--dry-run"]);
    assert!(
        out.contains("→ 5 clients; would be created 4, would be updated 1, skipped 0, failed 0"),
        "{out}"
    );
    assert_eq!(portal.contacts().len(), 1);
    assert_eq!(b24_runs(&portal, "crm.contact.add"), 0);
    assert_eq!(b24_runs(&portal, "crm.contact.update"), 0);

    let out = run_import_into(
        "bitrix24",
        &config,
        &file,
        &["--report", report.to_str().unwrap()],
    );
    assert!(
        out.contains("read 8, valid 7, invalid 1, merged 2 → 5 clients; created 3, updated 1, skipped 0, failed 1"),
        "{out}"
    );
    let contacts = portal.contacts();
    assert_eq!(contacts.len(), 4, "{contacts:#?}");
    let named = |name: &str| {
        contacts
            .iter()
            .find(|c| c["NAME"] == json!(name))
            .unwrap_or_else(|| panic!("no contact {name}: {contacts:#?}"))
    };
    let a = contacts
        .iter()
        .find(|c| c["ID"] == json!(anna.to_string()))
        .unwrap();
    assert_eq!(a["NAME"], "Анна С.", "a manager's contact keeps its name");
    assert_eq!(values(&a["PHONE"]), ["8 (912) 345-67-89"], "not duplicated");
    assert_eq!(values(&a["EMAIL"]), ["Anna.Ivanova@mail.ru"]);
    assert!(a["ORIGINATOR_ID"].is_null());
    let petrov = named("Петров Петр");
    assert_eq!(values(&petrov["PHONE"]), ["+79161234567", "+74951234567"]);
    assert_eq!(values(&petrov["EMAIL"]), ["petrov@gmial.com"]);
    assert_eq!(petrov["COMMENTS"], "+74951234567 доб. 12");
    assert_eq!(petrov["BIRTHDATE"], "1985-03-01T00:00:00+03:00");
    assert_eq!(petrov["ORIGINATOR_ID"], "zapis");
    let origin = petrov["ORIGIN_ID"].as_str().unwrap();
    assert!(
        origin.starts_with("zapis-import-") && origin.ends_with("/phone:+79161234567"),
        "{origin}"
    );
    assert_eq!(values(&named("Петрова Мария")["PHONE"]), ["+375291234567"]);
    let oleg = named("Кузнецов Олег");
    assert!(values(&oleg["PHONE"]).is_empty());
    assert_eq!(values(&oleg["EMAIL"]), ["oleg@bk.ru"]);
    assert!(
        oleg["ORIGIN_ID"]
            .as_str()
            .unwrap()
            .ends_with("/email:oleg@bk.ru")
    );
    assert!(!contacts.iter().any(|c| c["NAME"] == "Сидоров Иван"));
    let failed: Vec<_> = report_rows(&report)
        .into_iter()
        .filter(|r| r.1 == "write_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "6");
    assert_eq!(failed[0].2, "Сидоров Иван");
    assert!(failed[0].3.contains("invalid address"), "{failed:?}");
    // Four adds (one refused) in one batch, one update appending the email.
    assert_eq!(b24_runs(&portal, "crm.contact.add"), 4);
    assert_eq!(b24_runs(&portal, "crm.contact.update"), 1);
    assert!(portal.batch_sizes().iter().all(|&n| n <= 50));
    assert_eq!(portal.throttled(), 0);

    // The portal takes the address now: the next start writes that client only.
    portal.clear_failures();
    let out = run_import_into("bitrix24", &config, &file, &[]);
    assert!(
        out.contains("created 4, updated 1, skipped 0, failed 0"),
        "{out}"
    );
    assert_eq!(portal.contacts().len(), 5);
    assert_eq!(b24_runs(&portal, "crm.contact.add"), 5);
    assert_eq!(b24_runs(&portal, "crm.contact.update"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrix24_a_lost_answer_is_looked_up_not_written_twice() {
    let portal = FakeBitrix::start().await;
    // The portal creates the contacts, then the answer is lost: the retry must find them.
    portal.lose_answer_of("crm.contact.add");
    let dir = tempfile::tempdir().unwrap();
    let config = bitrix_config(dir.path(), &portal);
    let (file, expected) = numbered_base(dir.path(), 30);
    let out = run_import_into("bitrix24", &config, &file, &[]);
    assert!(
        out.contains("→ 30 clients; created 30, updated 0, skipped 0, failed 0"),
        "{out}"
    );
    assert_eq!(portal.contacts().len(), 30);
    let census = b24_phone_census(&portal);
    assert_eq!(census.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(census.values().all(|&n| n == 1));
    assert_eq!(b24_runs(&portal, "crm.contact.add"), 30, "sent once");
    assert!(
        b24_runs(&portal, "crm.duplicate.findbycomm") > 0,
        "looked up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitrix24_1200_clients_killed_halfway_and_resumed_end_the_same() {
    let portal = FakeBitrix::start().await;
    let mut existing = BTreeSet::new();
    for i in (0..1200u32).step_by(50) {
        existing.insert(portal.insert_contact(
            &format!("Клиентова {i}"),
            &[&format!("8 {}", national(i))],
            &[],
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = bitrix_config(dir.path(), &portal);
    let (file, expected) = numbered_base(dir.path(), 1200);
    let started = Instant::now();

    let mut child = import_into("bitrix24", &config, &file, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("zapis import starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = portal.contacts().len();
        if n >= 24 + 400 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import ended before it could be killed"
        );
        assert!(
            Instant::now() < deadline,
            "the import made no progress: {n} contacts"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = portal.contacts().len();
    assert!(
        at_kill < 1224,
        "killed too late to prove anything: {at_kill}"
    );

    let out = run_import_into("bitrix24", &config, &file, &[]);
    let wall = started.elapsed();
    assert!(
        out.contains("read 1260, valid 1260, invalid 0, merged 60 → 1200 clients; created 1176, updated 24, skipped 0, failed 0"),
        "{out}"
    );
    let contacts = portal.contacts();
    assert_eq!(contacts.len(), 1200, "exactly one contact per client");
    let census = b24_phone_census(&portal);
    assert_eq!(census.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(
        census.values().all(|&n| n == 1),
        "a phone is on two contacts"
    );
    for c in &contacts {
        let id: i64 = c["ID"].as_str().unwrap().parse().unwrap();
        if existing.contains(&id) {
            // Updated in place: their phone as typed, our email added.
            assert_eq!(values(&c["PHONE"]).len(), 1, "{c}");
            assert!(values(&c["PHONE"])[0].starts_with("8 9"), "{c}");
            let emails = values(&c["EMAIL"]);
            assert!(emails.len() == 1 && emails[0].ends_with("@mail.ru"), "{c}");
        } else {
            assert_eq!(c["ORIGINATOR_ID"], "zapis", "{c}");
            assert_eq!(values(&c["PHONE"]).len(), 1, "{c}");
        }
    }
    assert!(
        portal.max_level() <= b24::BUCKET_LIMIT,
        "{}",
        portal.max_level()
    );
    assert_eq!(portal.throttled(), 0);
    assert!(portal.batch_sizes().iter().all(|&n| n <= 50));
    eprintln!(
        "bitrix24: 1,200 clients, killed at {at_kill} contacts; {} requests ({} batch, {} commands), \
         bucket peak {:.1} of {}, {:.1} s for both starts",
        portal.calls().len(),
        portal.count("batch"),
        portal.batched().len(),
        portal.max_level(),
        b24::BUCKET_LIMIT,
        wall.as_secs_f64()
    );

    // A third start lists the portal and writes nothing.
    let (adds, updates) = (
        b24_runs(&portal, "crm.contact.add"),
        b24_runs(&portal, "crm.contact.update"),
    );
    let out = run_import_into("bitrix24", &config, &file, &[]);
    assert!(
        out.contains("created 1176, updated 24, skipped 0, failed 0"),
        "{out}"
    );
    assert_eq!(b24_runs(&portal, "crm.contact.add"), adds);
    assert_eq!(b24_runs(&portal, "crm.contact.update"), updates);
    assert_eq!(portal.contacts().len(), 1200);
}

// ------------------------------------------------------------------ YClients

const YC_COMPANY: u64 = 4564;

async fn start_salon() -> FakeYclients {
    let fake =
        FakeYclients::start(FakeSalon::standard(YC_COMPANY, chrono_tz::Europe::Moscow)).await;
    // Both published limits: 5 a second (the fake's default) and 200 a minute.
    fake.set_minute_limit(200);
    fake
}

fn yclients_config(dir: &Path, yclients: &FakeYclients, user_token: bool) -> std::path::PathBuf {
    let mut settings = salon(dir)
        .set("booking.system", "yclients")
        .set("booking.yclients.base_url", yclients.base_url.to_string())
        .set("booking.yclients.company_id", YC_COMPANY)
        .set("booking.yclients.partner_token", yc::PARTNER_TOKEN);
    if user_token {
        settings = settings.set("booking.yclients.user_token", yc::USER_TOKEN);
    }
    let config = dir.join("zapis.toml");
    settings.write(&config);
    config
}

fn card_phone(card: &Value) -> String {
    match &card["phone"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => panic!("a card without a phone: {other}"),
    }
}

fn yc_phone_census(salon: &FakeYclients) -> BTreeMap<String, usize> {
    let mut census = BTreeMap::new();
    for c in salon.clients() {
        let phone = Phone::parse(&card_phone(&c)).unwrap();
        *census.entry(phone.to_string()).or_default() += 1;
    }
    census
}

/// Client-card writes the salon received.
fn yc_writes(salon: &FakeYclients) -> usize {
    salon
        .request_log()
        .iter()
        .filter(|l| {
            l.starts_with(&format!("POST /api/v1/clients/{YC_COMPANY}"))
                || l.starts_with("PUT /api/v1/client/")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yclients_without_a_user_token_stops_naming_the_key() {
    let salon = start_salon().await;
    let dir = tempfile::tempdir().unwrap();
    let config = yclients_config(dir.path(), &salon, false);
    let file = dir.path().join("clients.csv");
    std::fs::write(&file, dirty_csv(';')).unwrap();
    let out = import_into("yclients", &config, &file, &[])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("booking.yclients.user_token"), "{stderr}");
    assert_eq!(salon.request_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yclients_dirty_file_becomes_client_cards_within_both_rate_limits() {
    let salon = start_salon().await;
    // Typed at the front desk, with a comment, a category and a birthday of its own.
    let anna = salon.insert_client("Анна С.", "+7 912 345-67-89", "", "звонила в мае");
    let dir = tempfile::tempdir().unwrap();
    let config = yclients_config(dir.path(), &salon, true);
    let file = dir.path().join("clients.csv");
    std::fs::write(&file, dirty_csv(';')).unwrap();
    let report = dir.path().join("report.csv");

    let out = run_import_into("yclients", &config, &file, &["--dry-run"]);
    assert!(
        out.contains("→ 5 clients; would be created 3, would be updated 1, skipped 0, failed 1"),
        "{out}"
    );
    assert_eq!(yc_writes(&salon), 0);
    assert_eq!(salon.clients().len(), 1);
    // A dry run opens no store (it must not create one), so its requests are not in the pace
    // the next process reads from the store: the import started at once may put its first
    // five requests in the second of the dry run's listing (a YClients 429, waited out). The
    // limits below are the import's own, so it starts once that second is over.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    let out = run_import_into(
        "yclients",
        &config,
        &file,
        &["--report", report.to_str().unwrap()],
    );
    assert!(
        out.contains("read 8, valid 7, invalid 1, merged 2 → 5 clients; created 3, updated 1, skipped 0, failed 1"),
        "{out}"
    );
    let cards = salon.clients();
    assert_eq!(cards.len(), 4, "{cards:#?}");
    let a = cards.iter().find(|c| c["id"] == json!(anna)).unwrap();
    assert_eq!(a["name"], "Анна С.");
    assert_eq!(card_phone(a), "79123456789");
    assert_eq!(a["email"], "Anna.Ivanova@mail.ru");
    // What the salon had on the card survives the update.
    assert_eq!(a["comment"], "звонила в мае");
    assert_eq!(a["birth_date"], "1980-01-02");
    assert_eq!(a["categories"][0]["id"], 4);
    assert_eq!(a["balance"], -1200);
    let named = |name: &str| {
        cards
            .iter()
            .find(|c| c["name"] == json!(name))
            .unwrap_or_else(|| panic!("no card {name}: {cards:#?}"))
    };
    let petrov = named("Петров Петр");
    assert_eq!(petrov["phone"], json!(79161234567u64));
    assert_eq!(petrov["email"], "petrov@gmial.com");
    assert_eq!(petrov["birth_date"], "1985-03-01");
    assert_eq!(
        petrov["comment"],
        "+74951234567 доб. 12; также: +74951234567"
    );
    assert_eq!(card_phone(named("Петрова Мария")), "375291234567");
    assert_eq!(named("Сидоров Иван")["email"], "ivan@xn--80a1acny.xn--p1ai");
    let failed: Vec<_> = report_rows(&report)
        .into_iter()
        .filter(|r| r.1 == "write_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "10");
    assert!(failed[0].3.contains("needs a phone"), "{failed:?}");
    assert!(salon.max_requests_per_second() <= 5);
    assert!(salon.max_requests_per_minute() <= 200);
    assert_eq!(salon.throttled(), 0);

    // Again: the salon is read, nothing is written.
    let writes = yc_writes(&salon);
    let out = run_import_into("yclients", &config, &file, &[]);
    assert!(
        out.contains("created 3, updated 1, skipped 0, failed 1"),
        "{out}"
    );
    assert_eq!(yc_writes(&salon), writes);
    assert_eq!(salon.clients().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yclients_45_cards_killed_halfway_and_resumed_end_the_same() {
    let salon = start_salon().await;
    let mut existing = BTreeSet::new();
    for i in (0..45u32).step_by(9) {
        existing.insert(salon.insert_client(
            &format!("Клиентова {i}"),
            &format!("8 {}", national(i)),
            "",
            "",
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = yclients_config(dir.path(), &salon, true);
    let (file, expected) = numbered_base(dir.path(), 45);
    let started = Instant::now();
    let mut child = import_into("yclients", &config, &file, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("zapis import starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = salon.clients().len();
        if n >= 5 + 12 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "no progress: {n} cards");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = salon.clients().len();
    assert!(at_kill < 45, "killed too late: {at_kill}");
    // As its amoCRM twin: the pace row spaces the restart's turns, and this waits out the
    // second in which one of the dead process's requests might still have been on its way.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let out = run_import_into("yclients", &config, &file, &[]);
    let wall = started.elapsed();
    assert!(
        out.contains("read 48, valid 48, invalid 0, merged 3 → 45 clients; created 40, updated 5, skipped 0, failed 0"),
        "{out}"
    );
    let cards = salon.clients();
    assert_eq!(cards.len(), 45);
    let census = yc_phone_census(&salon);
    assert_eq!(census.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(census.values().all(|&n| n == 1), "{census:?}");
    for c in cards
        .iter()
        .filter(|c| existing.contains(&c["id"].as_u64().unwrap()))
    {
        assert!(c["email"].as_str().unwrap().ends_with("@mail.ru"), "{c}");
    }
    assert!(salon.max_requests_per_second() <= 5);
    assert!(salon.max_requests_per_minute() <= 200);
    assert_eq!(salon.throttled(), 0);
    eprintln!(
        "yclients: 45 cards, killed at {at_kill}; {} requests, peak {}/s and {}/min, {:.1} s for both starts",
        salon.request_count(),
        salon.max_requests_per_second(),
        salon.max_requests_per_minute(),
        wall.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crafted_phone_cell_is_reported_not_a_panic() {
    let amo = FakeAmo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &amo);
    let file = dir.path().join("clients.csv");
    // `İ` grows by a byte when lower-cased and `ẞ` shrinks by one: the cell's lower-case copy
    // has the same length but its characters sit at other byte offsets.
    std::fs::write(
        &file,
        "name,phone\nАнна,+7 912 345-67-89\nБорис,İxЖẞ\nВера,8 912 000 11 22 İдобЖẞ 5\n",
    )
    .unwrap();
    let out = run_import(&config, &file, &["--dry-run"]);
    assert!(out.contains("read 3"), "{out}");
    assert!(out.contains("invalid 2"), "{out}");
}
