//! Plays 1C's side of the CommerceML site exchange against our real `/1c/exchange` endpoint,
//! with 1C's official sample files (../shared/contracts/onec/: sdk-commerceml-import.xml,
//! sdk-commerceml-offers.xml, sdk-commerceml-to.xml, sdk-commerceml-from.xml): plain and
//! zipped, UTF-8 with BOM and windows-1251, split into `file_limit` pieces. The documents we
//! hand out are checked against the CommerceML 2.10 XSD.

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use secrecy::SecretString;
use sqlx::Row;
use support::cml_xsd::{Node, Schema, tree};
use zapis::accounting::commerceml;
use zapis::accounting::config::CommerceMlConfig;
use zapis::clock::{Clock, FakeClock};
use zapis::domain::{Booking, BookingStatus, Channel, Money, Source, Utm};
use zapis::http::HttpState;
use zapis::http::commerceml::Exchange;
use zapis::normalize::Phone;
use zapis::store::Store;
use zapis::sync::{AlertKind, Alerts, MemorySink};

const BIZ: &str = "salon";
const USER: &str = "1c-exchange";
const PASSWORD: &str = "s3cret-pass";

fn sample(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/contracts/onec")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn schema() -> Schema {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onec/commerceml-2.10.xsd");
    let text = std::fs::read_to_string(&path).expect("the CommerceML 2.10 XSD");
    Schema::load(&text)
}

fn zipped(name: &str, bytes: &[u8]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(name, zip::write::SimpleFileOptions::default())
        .expect("zip entry");
    zip.write_all(bytes).expect("zip write");
    zip.finish().expect("zip finish").into_inner()
}

/// The UTF-8 sample re-encoded as windows-1251 with its declaration saying so, as older 1C
/// releases send it.
fn as_windows_1251(utf8_with_bom: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(utf8_with_bom.strip_prefix(b"\xEF\xBB\xBF").expect("BOM"))
        .expect("utf-8");
    let text = text.replacen("encoding=\"UTF-8\"", "encoding=\"windows-1251\"", 1);
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1251.encode(&text);
    assert!(!unmappable, "the sample is representable in windows-1251");
    bytes.into_owned()
}

async fn stores() -> Vec<Store> {
    let mut stores = vec![Store::connect("sqlite::memory:").await.expect("sqlite")];
    match std::env::var("ZAPIS_TEST_POSTGRES_URL") {
        Ok(url) => stores.push(zapis::store::test_support::fresh_postgres(&url).await),
        Err(_) => eprintln!("SKIPPED PostgreSQL half: ZAPIS_TEST_POSTGRES_URL is not set"),
    }
    stores
}

struct Site {
    url: String,
    store: Store,
    alerts: MemorySink,
    clock: Arc<FakeClock>,
}

async fn site(store: Store, encoding: &str, file_limit: u64) -> Site {
    let config = CommerceMlConfig {
        user: USER.into(),
        password: SecretString::from(PASSWORD.to_string()),
        zip: true,
        file_limit,
        encoding: encoding.into(),
    };
    let clock = Arc::new(FakeClock::new(
        Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap(),
    ));
    let sink = MemorySink::default();
    let exchange = Exchange::new(
        store.clone(),
        BIZ,
        clock.clone(),
        config,
        chrono_tz::Europe::Moscow,
    )
    .with_low_stock_alert(Some(19), Alerts::new(vec![Arc::new(sink.clone())]));
    let state = HttpState {
        store: store.clone(),
        business_id: BIZ.into(),
        secret: SecretString::from("a-webhook-secret-0123".to_string()),
        sources: Vec::new(),
        clock: clock.clone(),
        max_secret: None,
        bitrix24_token: None,
        onec: Some(Arc::new(exchange)),
        forms: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, zapis::http::router(state)).await });
    Site {
        url: format!("http://{addr}/1c/exchange"),
        store,
        alerts: sink,
        clock,
    }
}

/// 1C's side of the protocol.
struct OneC {
    http: reqwest::Client,
    url: String,
    cookie: String,
    file_limit: usize,
    zip: bool,
}

impl OneC {
    async fn login(url: &str, kind: &str) -> OneC {
        let http = reqwest::Client::new();
        let answer = http
            .get(format!("{url}?type={kind}&mode=checkauth"))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .await
            .expect("checkauth");
        assert_eq!(answer.status(), 200);
        let body = answer.text().await.expect("body");
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(
            lines.len(),
            3,
            "success, cookie name, cookie value: {body:?}"
        );
        assert_eq!(lines[0], "success");
        assert_eq!(lines[1], "zapis_1c");
        assert!(!lines[2].is_empty());
        let mut one = OneC {
            http,
            url: url.to_string(),
            cookie: format!("{}={}", lines[1], lines[2]),
            file_limit: 0,
            zip: false,
        };
        let (status, init) = one.call(kind, "init", None, None).await;
        assert_eq!(status, 200);
        let lines: Vec<&str> = init.lines().collect();
        assert_eq!(lines.len(), 2, "{init:?}");
        one.zip = match lines[0] {
            "zip=yes" => true,
            "zip=no" => false,
            other => panic!("bad zip line {other:?}"),
        };
        one.file_limit = lines[1]
            .strip_prefix("file_limit=")
            .and_then(|n| n.parse().ok())
            .expect("file_limit=<bytes>");
        one
    }

    async fn call(
        &self,
        kind: &str,
        mode: &str,
        filename: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> (u16, String) {
        let mut url = format!("{}?type={kind}&mode={mode}", self.url);
        if let Some(f) = filename {
            url.push_str("&filename=");
            url.push_str(f);
        }
        let request = match body {
            Some(b) => self.http.post(url).body(b),
            None => self.http.get(url),
        };
        let answer = request
            .header("Cookie", &self.cookie)
            .send()
            .await
            .expect("request");
        let status = answer.status().as_u16();
        (status, answer.text().await.expect("body"))
    }

    /// Sends a file in pieces of at most `file_limit` bytes, in order.
    async fn send_file(&self, kind: &str, filename: &str, bytes: &[u8]) -> Vec<String> {
        let mut answers = Vec::new();
        for piece in bytes.chunks(self.file_limit) {
            let (status, body) = self
                .call(kind, "file", Some(filename), Some(piece.to_vec()))
                .await;
            assert_eq!(status, 200);
            answers.push(body);
        }
        answers
    }

    /// Repeats `import` while we answer `progress`, as 1C does.
    async fn import(&self, filename: &str) -> String {
        for _ in 0..200 {
            let (status, body) = self.call("catalog", "import", Some(filename), None).await;
            assert_eq!(status, 200);
            if body.starts_with("progress") {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
            return body;
        }
        panic!("{filename}: still in progress after 200 requests");
    }

    async fn query(&self) -> (String, Vec<u8>) {
        let answer = self
            .http
            .get(format!("{}?type=sale&mode=query", self.url))
            .header("Cookie", &self.cookie)
            .send()
            .await
            .expect("query");
        assert_eq!(answer.status(), 200);
        let content_type = answer
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        (content_type, answer.bytes().await.expect("body").to_vec())
    }
}

async fn catalog(store: &Store) -> Vec<(String, String, Option<String>, Option<String>)> {
    sqlx::query(
        "SELECT item_id, name, article, groups FROM onec_catalog WHERE business_id = $1 \
         ORDER BY item_id",
    )
    .bind(BIZ)
    .fetch_all(store.pool())
    .await
    .expect("catalog")
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_and_offers_from_the_official_samples_arrive_plain_zipped_and_in_both_encodings()
{
    for store in stores().await {
        let site = site(store, "utf-8", 4096).await;
        let one = OneC::login(&site.url, "catalog").await;
        assert!(one.zip);
        assert_eq!(one.file_limit, 4096);

        // import.xml as 1C sends it: UTF-8 with BOM, plain, in 4 KiB pieces.
        let answers = one
            .send_file(
                "catalog",
                "import.xml",
                &sample("sdk-commerceml-import.xml"),
            )
            .await;
        assert!(answers.len() > 1, "import.xml goes in pieces");
        assert!(answers.iter().all(|a| a.trim() == "success"), "{answers:?}");
        assert_eq!(one.import("import.xml").await.trim(), "success");
        let items = catalog(&site.store).await;
        assert_eq!(items.len(), 2, "{items:?}");
        let boots = items
            .iter()
            .find(|i| i.0 == "bd72d910-55bc-11d9-848a-00112f43529a")
            .expect("the boots of the sample");
        assert_eq!(boots.1, "Женские ботфорты коричневые");
        assert_eq!(boots.2.as_deref(), Some("Б-130001"));
        assert_eq!(
            boots.3.as_deref(),
            Some("e5a4c309-a659-11dd-acee-0015e9b8c48d")
        );

        // offers.xml zipped, in pieces: prices and stock.
        let answers = one
            .send_file(
                "catalog",
                "offers.zip",
                &zipped("offers.xml", &sample("sdk-commerceml-offers.xml")),
            )
            .await;
        assert!(answers.iter().all(|a| a.trim() == "success"), "{answers:?}");
        assert_eq!(one.import("offers.xml").await.trim(), "success");
        let stock = commerceml::stock(&site.store, BIZ).await.expect("stock");
        assert_eq!(stock.len(), 5, "{stock:?}");
        let size38 = stock
            .iter()
            .find(|s| {
                s.id == "bd72d910-55bc-11d9-848a-00112f43529a#90c55447-d3a8-11e4-9423-e0cb4ed5eed4"
            })
            .expect("size 38");
        assert_eq!(size38.name, "Женские ботфорты коричневые (38)");
        assert_eq!(size38.price_minor, Some(171_900));
        assert_eq!(size38.quantity_milli, Some(20_000));
        let warehouses: String = sqlx::query_scalar(
            "SELECT warehouses FROM onec_offers WHERE business_id = $1 AND offer_id = $2",
        )
        .bind(BIZ)
        .bind(&size38.id)
        .fetch_one(site.store.pool())
        .await
        .expect("warehouses");
        assert_eq!(
            warehouses,
            r#"{"b6112590-41ba-11dd-ac9d-0015e9b8c48d":20000}"#
        );
        // The threshold is 19: size 39 (19 left) is reported, size 38 (20) is not.
        let alerts = site.alerts.alerts();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        assert_eq!(alerts[0].kind, AlertKind::LowStock);
        let listed = alerts[0].last_error.clone().unwrap_or_default();
        assert!(
            listed.contains("Женские ботфорты коричневые (39) (19)"),
            "{listed}"
        );
        assert!(!listed.contains("(38)"), "{listed}");

        // The same catalogue in windows-1251, zipped, in a new session: same items, no dupes.
        let again = OneC::login(&site.url, "catalog").await;
        let cp1251 = as_windows_1251(&sample("sdk-commerceml-import.xml"));
        again
            .send_file("catalog", "import.zip", &zipped("import.xml", &cp1251))
            .await;
        assert_eq!(again.import("import.xml").await.trim(), "success");
        assert_eq!(catalog(&site.store).await, items);

        // And windows-1251 plain.
        let third = OneC::login(&site.url, "catalog").await;
        third.send_file("catalog", "import.xml", &cp1251).await;
        assert_eq!(third.import("import.xml").await.trim(), "success");
        assert_eq!(catalog(&site.store).await, items);
        let _ = &site.clock;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_file_is_refused_with_a_reason_and_nothing_is_applied() {
    for store in stores().await {
        let site = site(store, "utf-8", 4096).await;
        let one = OneC::login(&site.url, "catalog").await;

        // Cut short: the upload broke off.
        let full = sample("sdk-commerceml-import.xml");
        one.send_file("catalog", "import.xml", &full[..full.len() * 3 / 4])
            .await;
        let answer = one.import("import.xml").await;
        let lines: Vec<&str> = answer.lines().collect();
        assert_eq!(lines[0], "failure", "{answer:?}");
        assert!(
            lines.len() >= 2 && lines[1].contains("import.xml"),
            "{answer:?}"
        );
        assert!(catalog(&site.store).await.is_empty());

        // The first offer is fine, a later one has a broken quantity: none is stored.
        let offers = String::from_utf8(sample("sdk-commerceml-offers.xml")).expect("utf-8");
        let broken = offers.replacen(
            "<Количество>19</Количество>",
            "<Количество>1девять</Количество>",
            1,
        );
        assert_ne!(broken, offers);
        one.send_file("catalog", "offers.xml", broken.as_bytes())
            .await;
        let answer = one.import("offers.xml").await;
        assert!(answer.starts_with("failure\n"), "{answer:?}");
        assert!(answer.contains("Количество"), "{answer:?}");
        assert!(
            commerceml::stock(&site.store, BIZ)
                .await
                .expect("stock")
                .is_empty()
        );

        // Not CommerceML at all.
        one.send_file(
            "catalog",
            "import.xml",
            "<html><body>oops</body></html>".repeat(200).as_bytes(),
        )
        .await;
        let answer = one.import("import.xml").await;
        assert!(answer.contains("КоммерческаяИнформация"), "{answer:?}");

        // A file never sent.
        let answer = one.import("nothing.xml").await;
        assert!(answer.starts_with("failure\n"), "{answer:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exchange_needs_the_login_and_its_cookie() {
    let store = Store::connect("sqlite::memory:").await.expect("sqlite");
    let site = site(store, "utf-8", 4096).await;
    let http = reqwest::Client::new();
    let answer = http
        .get(format!("{}?type=catalog&mode=checkauth", site.url))
        .basic_auth(USER, Some("wrong"))
        .send()
        .await
        .expect("checkauth");
    assert_eq!(answer.status(), 401);
    assert!(answer.text().await.unwrap().starts_with("failure\n"));
    for cookie in [None, Some("zapis_1c=forged")] {
        let mut req = http.get(format!("{}?type=catalog&mode=init", site.url));
        if let Some(c) = cookie {
            req = req.header("Cookie", c);
        }
        let answer = req.send().await.expect("init");
        assert_eq!(answer.status(), 401);
        assert!(answer.text().await.unwrap().starts_with("failure\n"));
    }
    // A session a day old must log in again.
    let one = OneC::login(&site.url, "catalog").await;
    site.clock.advance(chrono::Duration::hours(25));
    let (status, body) = one.call("catalog", "init", None, None).await;
    assert_eq!(status, 401, "{body}");
}

fn booking(id: &str, phone: &str, name: &str, status: BookingStatus, rubles: i64) -> Booking {
    Booking {
        id: id.into(),
        business_id: BIZ.into(),
        client_phone: Phone::parse(phone).expect("phone"),
        client_name: name.into(),
        client_email: None,
        service_id: "svc-haircut".into(),
        service_name: "Стрижка «Каскад» & укладка".into(),
        master_id: "m1".into(),
        master_name: "Ольга".into(),
        start: Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(),
        duration_min: 60,
        price: Money::from_rubles(rubles),
        status,
        source: Source {
            channel: Channel::Telegram,
            payload: None,
            link_name: None,
            utm: Utm::default(),
        },
        chat: None,
        external_id: None,
        created_at: Utc.with_ymd_and_hms(2026, 11, 28, 12, 30, 0).unwrap(),
    }
}

fn decode_answer(content_type: &str, bytes: &[u8]) -> String {
    let charset = content_type
        .split("charset=")
        .nth(1)
        .expect("the answer names its charset");
    let encoding = encoding_rs::Encoding::for_label(charset.as_bytes()).expect("known charset");
    if encoding == encoding_rs::UTF_8 {
        assert!(
            bytes.starts_with(b"\xEF\xBB\xBF"),
            "UTF-8 answers carry a BOM"
        );
    }
    let (text, _, malformed) = encoding.decode(bytes);
    assert!(!malformed, "the answer is valid {charset}");
    let declared = text
        .split("encoding=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("an XML declaration with the encoding");
    assert_eq!(
        encoding_rs::Encoding::for_label(declared.as_bytes()),
        Some(encoding),
        "header and declaration agree"
    );
    text.into_owned()
}

fn documents(root: &Node) -> Vec<&Node> {
    root.all("Документ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_hands_out_schema_valid_documents_until_success_marks_them() {
    let schema = schema();
    for encoding in ["windows-1251", "utf-8"] {
        for store in stores().await {
            let anna = booking(
                "bk-anna",
                "+7 916 123-45-67",
                "Анна Петрова",
                BookingStatus::Booked,
                1500,
            );
            let boris = booking(
                "bk-boris",
                "8 (903) 765-43-21",
                "Борис",
                BookingStatus::Visited,
                2300,
            );
            let asked = booking(
                "bk-asked",
                "+79990000000",
                "Вера",
                BookingStatus::Requested,
                900,
            );
            for b in [&anna, &boris, &asked] {
                store.insert_booking(b).await.expect("booking");
            }
            let site = site(store, encoding, 4096).await;
            let one = OneC::login(&site.url, "sale").await;

            let (content_type, bytes) = one.query().await;
            let text = decode_answer(&content_type, &bytes);
            let root = tree(&text).expect("well-formed");
            schema
                .validate(&root)
                .expect("CommerceML 2.10 accepts the answer");
            assert_eq!(
                root.attrs.get("ВерсияСхемы").map(String::as_str),
                Some("2.10")
            );
            let docs = documents(&root);
            let ids: Vec<&str> = docs.iter().filter_map(|d| d.text_of("Ид")).collect();
            assert_eq!(
                ids.len(),
                2,
                "a request not yet confirmed is not handed out: {ids:?}"
            );
            assert!(ids.contains(&"bk-anna") && ids.contains(&"bk-boris"));
            let anna_doc = docs
                .iter()
                .find(|d| d.text_of("Ид") == Some("bk-anna"))
                .expect("anna");
            assert_eq!(anna_doc.text_of("Сумма"), Some("1500.00"));
            let buyer = anna_doc
                .child("Контрагенты")
                .and_then(|c| c.child("Контрагент"))
                .expect("the client as counterparty");
            assert_eq!(buyer.text_of("Наименование"), Some("Анна Петрова"));
            assert_eq!(buyer.text_of("Роль"), Some("Покупатель"));
            let phone = buyer
                .child("Контакты")
                .and_then(|c| c.child("Контакт"))
                .and_then(|c| c.text_of("Значение"));
            assert_eq!(phone, Some("+79161234567"));
            let line = anna_doc
                .child("Товары")
                .and_then(|t| t.child("Товар"))
                .expect("the service line");
            assert_eq!(
                line.text_of("Наименование"),
                Some("Стрижка «Каскад» & укладка")
            );
            assert_eq!(line.text_of("Количество"), Some("1"));
            assert_eq!(line.text_of("Сумма"), Some("1500.00"));

            // Without `success`, 1C gets the same documents again.
            let (ct, bytes) = one.query().await;
            let again = tree(&decode_answer(&ct, &bytes)).expect("xml");
            assert_eq!(documents(&again).len(), 2);

            let (status, body) = one.call("sale", "success", None, None).await;
            assert_eq!((status, body.trim()), (200, "success"));
            site.clock.advance(chrono::Duration::minutes(10));
            let (ct, bytes) = one.query().await;
            let empty = tree(&decode_answer(&ct, &bytes)).expect("xml");
            schema
                .validate(&empty)
                .expect("an empty answer is valid too");
            assert!(documents(&empty).is_empty(), "nothing new after success");

            // A status change is news again.
            site.store
                .set_booking_status(
                    "bk-anna",
                    BookingStatus::CancelledByClient,
                    site.clock.now(),
                )
                .await
                .expect("cancel");
            let (ct, bytes) = one.query().await;
            let changed = tree(&decode_answer(&ct, &bytes)).expect("xml");
            schema.validate(&changed).expect("valid");
            let docs = documents(&changed);
            assert_eq!(docs.len(), 1);
            let cancelled = docs[0]
                .child("ЗначенияРеквизитов")
                .map(|z| {
                    z.all("ЗначениеРеквизита").iter().any(|r| {
                        r.text_of("Наименование") == Some("Отменен")
                            && r.text_of("Значение") == Some("true")
                    })
                })
                .unwrap_or(false);
            assert!(cancelled, "the document says it was cancelled");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_from_1c_are_taken_in_pieces_plain_and_zipped() {
    for store in stores().await {
        let site = site(store, "utf-8", 1024).await;
        let one = OneC::login(&site.url, "sale").await;
        let to = sample("sdk-commerceml-to.xml");
        let answers = one.send_file("sale", "to.xml", &to).await;
        assert!(answers.len() > 1, "to.xml goes in pieces");
        let (last, rest) = answers.split_last().expect("answers");
        assert!(rest.iter().all(|a| a.trim() == "success"), "{rest:?}");
        assert_eq!(last.trim(), "success", "the last piece applies the file");
        let incoming = commerceml::incoming(&site.store, BIZ)
            .await
            .expect("incoming");
        assert_eq!(incoming.len(), 1, "{incoming:?}");
        assert_eq!(incoming[0].doc_id, "20");
        assert!(incoming[0].paid);
        assert_eq!(incoming[0].status.as_deref(), Some("[F] Доставлен"));

        // Zipped, under another name: the same document, still one row.
        let answers = one
            .send_file("sale", "orders.zip", &zipped("to.xml", &to))
            .await;
        assert!(answers.iter().all(|a| a.trim() == "success"), "{answers:?}");
        assert_eq!(
            commerceml::incoming(&site.store, BIZ).await.unwrap().len(),
            1
        );

        // A broken file is refused with the reason.
        let broken = &to[..to.len() / 2];
        let answers = one.send_file("sale", "bad.xml", broken).await;
        let last = answers.last().expect("answer");
        assert!(last.starts_with("failure\n"), "{last:?}");
    }
}

#[test]
fn the_official_order_sample_from_a_site_is_readable() {
    let pkg = commerceml::parse(&sample("sdk-commerceml-from.xml")).expect("from.xml");
    assert_eq!(pkg.documents.len(), 1);
    assert_eq!(pkg.documents[0].id, "36");
    assert_eq!(pkg.documents[0].amount.as_deref(), Some("6734.47"));
    let to = commerceml::parse(&sample("sdk-commerceml-to.xml")).expect("to.xml");
    assert_eq!(to.documents[0].number.as_deref(), Some("20"));
}

#[test]
fn the_validator_rejects_what_the_schema_forbids() {
    // Guards the guard: a document without its required <Номер>, a counterparty without
    // its role, and children out of order are all refused.
    let schema = schema();
    let ok = r#"<КоммерческаяИнформация ВерсияСхемы="2.10" ДатаФормирования="2026-11-29T09:00:00"><Документ><Ид>1</Ид><Номер>1</Номер><Дата>2026-11-29</Дата><ХозОперация>Заказ товара</ХозОперация><Роль>Продавец</Роль><Валюта>RUB</Валюта><Курс>1</Курс><Сумма>1</Сумма><Контрагенты><Контрагент><Ид>c</Ид><Наименование>A</Наименование><ПолноеНаименование>A</ПолноеНаименование><Роль>Покупатель</Роль></Контрагент></Контрагенты></Документ></КоммерческаяИнформация>"#;
    schema
        .validate(&tree(ok).unwrap())
        .expect("minimal valid document");
    let no_number = ok.replace("<Номер>1</Номер>", "");
    assert!(schema.validate(&tree(&no_number).unwrap()).is_err());
    let no_role = ok.replace("<Роль>Покупатель</Роль>", "");
    assert!(schema.validate(&tree(&no_role).unwrap()).is_err());
    let swapped = ok.replace(
        "<Валюта>RUB</Валюта><Курс>1</Курс>",
        "<Курс>1</Курс><Валюта>RUB</Валюта>",
    );
    assert!(schema.validate(&tree(&swapped).unwrap()).is_err());
    let no_date_attr = ok.replace(r#" ДатаФормирования="2026-11-29T09:00:00""#, "");
    assert!(schema.validate(&tree(&no_date_attr).unwrap()).is_err());
}
