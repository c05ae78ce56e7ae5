//! Plays 1C's side of the CommerceML site exchange against our real `/1c/exchange` endpoint,
//! with 1C's official sample files (../shared/contracts/onec/: sdk-commerceml-import.xml,
//! sdk-commerceml-offers.xml, sdk-commerceml-to.xml, sdk-commerceml-from.xml): plain and
//! zipped, UTF-8 with BOM and windows-1251, split into `file_limit` pieces. The documents we
//! hand out are checked against the CommerceML 2.10 XSD.

use crate::support;
use crate::support::bid;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use secrecy::SecretString;
use sqlx::Row;
use support::app::Settings;
use support::cml_xsd::{Node, Schema, tree};
use zapis::accounting::commerceml;
use zapis::accounting::config::CommerceMlConfig;
use zapis::accounting::exchange::Exchange;
use zapis::clock::{Clock, FakeClock};
use zapis::domain::{Booking, BookingStatus, Channel, Money, Source, Utm};
use zapis::http::HttpState;
use zapis::normalize::Phone;
use zapis::store::Store;
use zapis::store::test_support::raw_pool;
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
    exchange: Arc<Exchange>,
    /// Where the exchange keeps its sessions' files.
    uploads: tempfile::TempDir,
}

impl Site {
    /// Files the exchange holds on disk now, with their sizes.
    fn files_on_disk(&self) -> Vec<u64> {
        let mut sizes = Vec::new();
        for dir in std::fs::read_dir(self.uploads.path()).expect("upload dir") {
            let dir = dir.expect("entry").path();
            if dir.is_dir() {
                for f in std::fs::read_dir(&dir).expect("session dir") {
                    sizes.push(f.expect("file").metadata().expect("meta").len());
                }
            } else {
                sizes.push(dir.metadata().expect("meta").len());
            }
        }
        sizes.sort_unstable();
        sizes
    }

    /// Session directories in the upload directory.
    fn session_dirs(&self) -> usize {
        std::fs::read_dir(self.uploads.path())
            .expect("upload dir")
            .count()
    }
}

async fn site(store: Store, encoding: &str, file_limit: u64) -> Site {
    site_with(store, |c| {
        c.encoding = encoding.into();
        c.file_limit = file_limit;
    })
    .await
}

async fn site_with(store: Store, tune: impl FnOnce(&mut CommerceMlConfig)) -> Site {
    let uploads = tempfile::tempdir().expect("upload dir");
    let mut config = CommerceMlConfig::new(USER, SecretString::from(PASSWORD.to_string()));
    config.upload_dir = Some(uploads.path().to_path_buf());
    tune(&mut config);
    let clock = Arc::new(FakeClock::new(
        Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap(),
    ));
    let sink = MemorySink::default();
    let exchange = Exchange::new(
        store.clone(),
        &bid(BIZ),
        clock.clone(),
        config,
        chrono_tz::Europe::Moscow,
    )
    .with_low_stock_alert(Some(19), Alerts::new(vec![Arc::new(sink.clone())]));
    let exchange = Arc::new(exchange);
    let state = HttpState {
        store: store.clone(),
        business_id: Some(bid(BIZ)),
        secret: SecretString::from("a-webhook-secret-0123".to_string()),
        sources: Vec::new(),
        clock: clock.clone(),
        max_secret: None,
        telegram_secret: None,
        bitrix24_token: None,
        onec: Some(exchange.clone()),
        ops: None,
        console: None,
        forms: None,
    };
    let addr = serve(state).await;
    Site {
        url: format!("http://{addr}/1c/exchange"),
        store,
        alerts: sink,
        clock,
        exchange,
        uploads,
    }
}

/// The real server (`zapis run`'s), with peer addresses, on a free port.
async fn serve(state: HttpState) -> std::net::SocketAddr {
    // 0.0.0.0 so clients may come from any 127.x address: the login throttle counts by address.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(zapis::http::serve_on(
        listener,
        state,
        std::future::pending::<()>(),
    ));
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
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
    .fetch_all(raw_pool(store))
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
        let stock = commerceml::stock(&site.store, &bid(BIZ))
            .await
            .expect("stock");
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
        .fetch_one(raw_pool(&site.store))
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
            commerceml::stock(&site.store, &bid(BIZ))
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
        id: crate::support::bk(id),
        business_id: bid(BIZ),
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
                    &crate::support::bk("bk-anna"),
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
        let incoming = commerceml::incoming(&site.store, &bid(BIZ))
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
            commerceml::incoming(&site.store, &bid(BIZ))
                .await
                .unwrap()
                .len(),
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

/// Sends a request head claiming a big body and none of the body, and returns the first line
/// of the answer: a server that reads the body before checking anything never answers.
async fn answer_without_the_body(addr: &str, target: &str, extra: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 60000000\r\n{extra}\r\n"
    );
    conn.write_all(head.as_bytes()).await.expect("head");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    // Not a speed target: a server waiting for 60 MB that never come would hang here forever.
    let read = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "{target}: no answer while the body is held back: the server waits to read it"
    );
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

fn host_of(url: &str) -> String {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exchange_exists_only_with_commerceml_and_reads_no_body_before_the_session() {
    let store = Store::connect("sqlite::memory:").await.expect("sqlite");
    // Without 1C in CommerceML mode there is no route at all.
    let state = HttpState {
        store: store.clone(),
        business_id: Some(bid(BIZ)),
        secret: SecretString::from("a-webhook-secret-0123".to_string()),
        clock: Arc::new(FakeClock::new(Utc::now())),
        max_secret: None,
        telegram_secret: None,
        bitrix24_token: None,
        onec: None,
        ops: None,
        console: None,
        forms: None,
        sources: Vec::new(),
    };
    let bare = serve(state).await.to_string();
    let status = answer_without_the_body(
        &bare,
        "/1c/exchange?type=catalog&mode=file&filename=a.xml",
        "",
    )
    .await;
    assert!(status.contains(" 404 "), "{status}");

    let site = site(store, "utf-8", 4096).await;
    let addr = host_of(&site.url);
    for (target, extra) in [
        (
            "/1c/exchange?type=catalog&mode=file&filename=import.xml",
            "",
        ),
        (
            "/1c/exchange?type=catalog&mode=file&filename=import.xml",
            "Cookie: zapis_1c=forged\r\n",
        ),
        ("/1c/exchange?type=sale&mode=file&filename=to.xml", ""),
        ("/1c/exchange?type=catalog&mode=checkauth", ""),
    ] {
        let status = answer_without_the_body(&addr, target, extra).await;
        assert!(status.contains(" 401 "), "{target} {extra:?}: {status}");
    }
    assert!(site.files_on_disk().is_empty());

    // Logged in, a piece declared larger than file_limit is refused before it is read.
    let one = OneC::login(&site.url, "catalog").await;
    let status = answer_without_the_body(
        &addr,
        "/1c/exchange?type=catalog&mode=file&filename=import.xml",
        &format!("Cookie: {}\r\n", one.cookie),
    )
    .await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        site.files_on_disk().is_empty(),
        "{:?}",
        site.files_on_disk()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pieces_stream_to_disk_under_file_limit_and_upload_limit() {
    let store = Store::connect("sqlite::memory:").await.expect("sqlite");
    let site = site_with(store, |c| {
        c.file_limit = 4096;
        c.upload_limit = 10_000;
    })
    .await;
    let one = OneC::login(&site.url, "catalog").await;
    let (_, body) = one
        .call(
            "catalog",
            "file",
            Some("import.xml"),
            Some(vec![b'a'; 4096]),
        )
        .await;
    assert_eq!(body.trim(), "success");
    assert_eq!(site.files_on_disk(), vec![4096], "the piece is on disk");

    // A piece over file_limit, sent chunked so no length is declared: refused, nothing kept.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(vec![b'b'; 3000]), Ok(vec![b'b'; 3000])];
    let answer = reqwest::Client::new()
        .post(format!(
            "{}?type=catalog&mode=file&filename=import.xml",
            site.url
        ))
        .header("Cookie", &one.cookie)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .expect("chunked piece");
    let body = answer.text().await.expect("body");
    assert!(body.starts_with("failure\n"), "{body}");
    assert!(body.contains("file_limit"), "{body}");
    assert_eq!(
        site.files_on_disk(),
        vec![4096],
        "the refused piece left nothing"
    );

    // The session may hold 10,000 bytes: the third full piece does not fit.
    let (_, body) = one
        .call(
            "catalog",
            "file",
            Some("import.xml"),
            Some(vec![b'a'; 4096]),
        )
        .await;
    assert_eq!(body.trim(), "success");
    let (_, body) = one
        .call(
            "catalog",
            "file",
            Some("offers.xml"),
            Some(vec![b'a'; 4096]),
        )
        .await;
    assert!(body.starts_with("failure\n"), "{body}");
    assert!(body.contains("upload_limit"), "{body}");
    assert_eq!(site.files_on_disk(), vec![8192]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_their_files_go_on_complete_deactivate_and_expiry() {
    let store = Store::connect("sqlite::memory:").await.expect("sqlite");
    let site = site(store, "utf-8", 4096).await;
    let import = sample("sdk-commerceml-import.xml");
    for ending in ["complete", "deactivate"] {
        let one = OneC::login(&site.url, "catalog").await;
        one.send_file("catalog", "import.xml", &import).await;
        assert_eq!(site.session_dirs(), 1);
        assert_eq!(
            site.files_on_disk().iter().sum::<u64>(),
            import.len() as u64
        );
        let (status, body) = one.call("catalog", ending, None, None).await;
        assert_eq!((status, body.trim()), (200, "success"));
        assert_eq!(site.session_dirs(), 0, "{ending} frees the session's files");
        assert_eq!(
            site.exchange.open_sessions(),
            0,
            "{ending} frees the session"
        );
        // The pieces are gone: importing now is a failure, not the old file.
        let answer = one.import("import.xml").await;
        assert!(answer.starts_with("failure\n"), "{ending}: {answer:?}");
        assert!(answer.contains("not received"), "{ending}: {answer:?}");
        one.call("catalog", "complete", None, None).await;
    }

    // An exchange that stops halfway (older 1C releases never send complete) ends after
    // session_ttl without a request.
    let one = OneC::login(&site.url, "catalog").await;
    one.send_file("catalog", "import.xml", &import).await;
    assert_eq!(site.session_dirs(), 1);
    site.clock.advance(chrono::Duration::minutes(59));
    // Any request sweeps; this one is 1C's next exchange logging in.
    let next = OneC::login(&site.url, "sale").await;
    assert_eq!(site.exchange.open_sessions(), 2, "not idle long enough yet");
    next.call("sale", "complete", None, None).await;
    assert_eq!(site.exchange.open_sessions(), 1);
    site.clock.advance(chrono::Duration::minutes(2));
    let other = OneC::login(&site.url, "sale").await;
    other.call("sale", "complete", None, None).await;
    assert_eq!(site.exchange.open_sessions(), 0, "idle sessions ended");
    assert_eq!(site.session_dirs(), 0);
    let answer = one.import("import.xml").await;
    assert!(answer.contains("not received"), "{answer:?}");
}

fn zip_of(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes) in entries {
        zip.start_file(*name, zip::write::SimpleFileOptions::default())
            .expect("zip entry");
        zip.write_all(bytes).expect("zip write");
    }
    zip.finish().expect("zip finish").into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_bombs_are_refused_with_a_reason() {
    let store = Store::connect("sqlite::memory:").await.expect("sqlite");
    let site = site_with(store, |c| {
        c.file_limit = 1024 * 1024;
        c.unpack_limit = 1024 * 1024;
        c.zip_entry_limit = 5;
    })
    .await;
    let import = sample("sdk-commerceml-import.xml");

    // An entry that inflates past unpack_limit: 2 MiB of zeros packs to a few KB.
    let one = OneC::login(&site.url, "catalog").await;
    let bomb = zip_of(&[("import.xml", vec![0u8; 2 * 1024 * 1024])]);
    assert!(bomb.len() < 64 * 1024);
    one.send_file("catalog", "import.zip", &bomb).await;
    let answer = one.import("import.xml").await;
    assert!(answer.starts_with("failure\n"), "{answer:?}");
    assert!(answer.contains("unpack_limit"), "{answer:?}");
    assert!(
        site.files_on_disk().iter().sum::<u64>() < 1024 * 1024,
        "nothing past the limit stays on disk: {:?}",
        site.files_on_disk()
    );

    // Several entries each under the limit, together over it (the sale side unpacks all).
    let sale = OneC::login(&site.url, "sale").await;
    let many = zip_of(&[
        ("a.xml", vec![b' '; 600 * 1024]),
        ("b.xml", vec![b' '; 600 * 1024]),
    ]);
    let answers = sale.send_file("sale", "orders.zip", &many).await;
    let last = answers.last().expect("answer");
    assert!(last.starts_with("failure\n"), "{last:?}");
    assert!(last.contains("unpack_limit"), "{last:?}");

    // More entries than zip_entry_limit.
    let one = OneC::login(&site.url, "catalog").await;
    let crowded: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("import_files/{i}.jpg"), vec![1u8; 10]))
        .collect();
    let mut entries: Vec<(&str, Vec<u8>)> = crowded
        .iter()
        .map(|(n, b)| (n.as_str(), b.clone()))
        .collect();
    entries.push(("import.xml", import.clone()));
    one.send_file("catalog", "import.zip", &zip_of(&entries))
        .await;
    let answer = one.import("import.xml").await;
    assert!(answer.starts_with("failure\n"), "{answer:?}");
    assert!(answer.contains("zip_entry_limit"), "{answer:?}");

    // Within the limits the same archive shape is fine.
    let one = OneC::login(&site.url, "catalog").await;
    one.send_file(
        "catalog",
        "import.zip",
        &zip_of(&[
            ("import_files/a.jpg", vec![1u8; 10]),
            ("import.xml", import),
        ]),
    )
    .await;
    assert_eq!(one.import("import.xml").await.trim(), "success");
    assert_eq!(catalog(&site.store).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_is_refused_by_depth_and_flat_files_read_in_one_pass() {
    let store = Store::connect("sqlite::memory:").await.expect("sqlite");
    let site = site(store, "utf-8", 1024 * 1024).await;
    let one = OneC::login(&site.url, "catalog").await;
    // 320,000 nested elements took 15 s to read when every item looked back along the path.
    let depth = 320_000;
    let mut deep = String::from("<КоммерческаяИнформация><Каталог><Товары>");
    deep.push_str(&"<Группы>".repeat(depth));
    deep.push_str(&"</Группы>".repeat(depth));
    deep.push_str("</Товары></Каталог></КоммерческаяИнформация>");
    one.send_file("catalog", "import.xml", deep.as_bytes())
        .await;
    let answer = one.import("import.xml").await;
    assert!(answer.starts_with("failure\n"), "{answer:?}");
    assert!(answer.contains("deeper than"), "{answer:?}");

    // Many items under nesting that is allowed are all read.
    let mut wide = String::from("<КоммерческаяИнформация><Каталог><Товары>");
    for i in 0..20_000 {
        wide.push_str(&format!(
            "<Товар><Ид>id-{i}</Ид><Наименование>Товар {i}</Наименование></Товар>"
        ));
    }
    wide.push_str("</Товары></Каталог></КоммерческаяИнформация>");
    let again = OneC::login(&site.url, "catalog").await;
    again
        .send_file("catalog", "import.xml", wide.as_bytes())
        .await;
    assert_eq!(again.import("import.xml").await.trim(), "success");
    assert_eq!(
        commerceml::catalog_count(&site.store, &bid(BIZ))
            .await
            .unwrap(),
        20_000
    );
}

fn client_from(last_octet: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, last_octet]))
        .build()
        .expect("client")
}

async fn checkauth_from(site: &Site, client: &reqwest::Client, password: &str) -> (u16, String) {
    let answer = client
        .get(format!("{}?type=catalog&mode=checkauth", site.url))
        .basic_auth(USER, Some(password))
        .send()
        .await
        .expect("checkauth");
    let status = answer.status().as_u16();
    (status, answer.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_logins_are_throttled_per_address_and_for_everyone() {
    let store = Store::connect("sqlite::memory:").await.expect("sqlite");
    let site = site(store, "utf-8", 4096).await;
    let guesser = client_from(2);
    let mut tries = 0;
    loop {
        tries += 1;
        let (status, body) = checkauth_from(&site, &guesser, &format!("guess-{tries}")).await;
        assert!(body.starts_with("failure\n"), "{body}");
        if status == 429 {
            assert!(body.contains("try again in"), "{body}");
            break;
        }
        assert_eq!(status, 401);
        assert!(tries < 20, "unlimited guesses from one address");
    }
    assert!(tries > 5, "a few typos are not punished: {tries}");
    // While it waits, even the right password is refused, so guesses teach nothing.
    let (status, _) = checkauth_from(&site, &guesser, PASSWORD).await;
    assert_eq!(status, 429);
    // Another address is not affected.
    let (status, body) = checkauth_from(&site, &client_from(3), PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    // After the wait the right password works again.
    site.clock.advance(chrono::Duration::minutes(2));
    let (status, body) = checkauth_from(&site, &guesser, PASSWORD).await;
    assert_eq!(status, 200, "{body}");

    // Many addresses, each under its own budget, together run out of the global one.
    let mut refused_early = false;
    'spread: for octet in 10..=60u8 {
        let client = client_from(octet);
        for i in 0..5 {
            let (status, _) = checkauth_from(&site, &client, &format!("spread-{octet}-{i}")).await;
            if status == 429 {
                refused_early = true;
                break 'spread;
            }
        }
    }
    assert!(
        refused_early,
        "guesses spread over addresses are not limited"
    );
    let (status, _) = checkauth_from(&site, &client_from(99), PASSWORD).await;
    assert_eq!(
        status, 429,
        "everyone waits while the global budget is spent"
    );
    site.clock.advance(chrono::Duration::minutes(5));
    let (status, _) = checkauth_from(&site, &client_from(99), PASSWORD).await;
    assert_eq!(status, 200);
}

async fn zapis_run(config: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("zapis.toml");
    std::fs::write(&path, config).expect("config");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_zapis"))
            .args(["run", "--config"])
            .arg(&path)
            .env_remove("ZAPIS_ONEC__COMMERCEML__PASSWORD")
            .output()
            .expect("zapis runs")
    })
    .await
    .expect("join");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zapis_run_refuses_empty_and_placeholder_exchange_passwords() {
    let dir = tempfile::tempdir().expect("dir");
    let store = format!("sqlite://{}", dir.path().join("z.db").display());
    for password in ["", "secret", "Secret", "short-pw"] {
        let config = Settings::new(&store)
            .remove("business.id")
            .set("telegram.token", "123:abc")
            .set("telegram.api_url", "http://127.0.0.1:9")
            .set("telegram.bot_username", "b")
            .set("http.listen", "127.0.0.1:9")
            .set("http.webhook_secret", "0123456789abcdef")
            .set("onec.mode", "commerceml")
            .set("onec.commerceml.user", "1c-exchange")
            .set("onec.commerceml.password", password)
            .toml();
        let (ok, out) = zapis_run(&config).await;
        assert!(!ok, "{password:?}: {out}");
        assert!(
            out.contains("onec.commerceml.password"),
            "{password:?}: {out}"
        );
        if !password.is_empty() {
            assert!(
                !out.contains(&format!("\"{password}\"")),
                "the password is not echoed: {out}"
            );
        }
    }
}
