//! The console in a real browser: Debian's Chromium driven through ChromeDriver (WebDriver)
//! against the real `zapis run`, with the fake Telegram and a fake amoCRM that goes down and
//! comes back. A marketer makes a tracked link and sees the booking made through it; a manager
//! reads the client's card and conversation; an operator retries the delivery amoCRM refused;
//! nobody opens what their role or business does not allow. Every page is saved as a
//! screenshot under `target/console-screenshots/`.
//!
//! Needs `chromedriver` and `chromium` (Debian: `apt-get install chromium chromium-driver`;
//! `.ci/run` installs them). `CHROMEDRIVER` may name the driver binary.

use crate::support;
use support::e2e::free_port;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use support::app::Settings;
use support::e2e::{Service, WAIT, book_first_slot};
use support::fake_amocrm::{self as amo_fake, FakeAmo};
use support::fake_telegram::FakeTelegram;
use zapis::store::test_support::raw_pool;

const SECRET: &str = "webhook-secret-0123456789";
const PASSWORD: &str = "correct horse battery";

/// ChromeDriver on a port of its own, stopped with the test.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = free_port();
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {binary}: {e}. The console's browser test needs Chromium and \
                     ChromeDriver: `apt-get install chromium chromium-driver` (.ci/run does)"
                )
            });
        // Dropped on every path, so the driver is stopped even when it never listens.
        let driver = Driver { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return driver;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{binary} did not listen on port {port} within 10 s");
    }

    async fn browser(&self) -> Client {
        let mut options = json!({
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--lang=ru-RU"
            ],
            "prefs": { "intl.accept_languages": "ru-RU,ru" }
        });
        for binary in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
            if Path::new(binary).exists() {
                options["binary"] = json!(binary);
                break;
            }
        }
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), options);
        // ChromeDriver is on this machine and speaks plain HTTP: no TLS stack is needed.
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/console-screenshots"
    ));
    std::fs::create_dir_all(&dir).expect("the screenshot folder");
    dir
}

async fn shot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("a screenshot");
    std::fs::write(screenshots().join(format!("{name}.png")), png).expect("the screenshot saved");
}

fn zapis_with_stdin(args: &[&str], config: &Path, stdin: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("zapis runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("the password written");
    let out = child.wait_with_output().expect("zapis ends");
    assert!(
        out.status.success(),
        "zapis {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first element matching `css`, waited for up to [`WAIT`]; the page is shown when it does
/// not come.
async fn find(b: &Client, css: &str) -> fantoccini::elements::Element {
    for _ in 0..(WAIT.as_millis() / 100) {
        if let Ok(found) = b.find(Locator::Css(css)).await {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no {css} on {}: {}",
        b.current_url().await.unwrap(),
        b.source().await.unwrap()
    );
}

struct Site {
    base: String,
}

impl Site {
    async fn sign_in(&self, b: &Client, login: &str) {
        b.goto(&format!("{}/console/login", self.base))
            .await
            .unwrap();
        find(b, "input[name=login]")
            .await
            .send_keys(login)
            .await
            .unwrap();
        find(b, "input[name=password]")
            .await
            .send_keys(PASSWORD)
            .await
            .unwrap();
        find(b, "form button[type=submit]")
            .await
            .click()
            .await
            .unwrap();
        for _ in 0..(WAIT.as_millis() / 100) {
            if b.current_url().await.unwrap().path() != "/console/login" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{login} was not signed in: {}", b.source().await.unwrap());
    }

    async fn sign_out(&self, b: &Client) {
        // An error page has no menu: the user goes home first, as its link offers.
        if b.find(Locator::Css("header.top")).await.is_err() {
            find(b, "a[href='/console']").await.click().await.unwrap();
        }
        find(b, "header.top form button")
            .await
            .click()
            .await
            .unwrap();
        find(b, "input[name=password]").await;
        // The session is over on the server: its pages lead back to sign-in.
        b.goto(&format!("{}/console/b/default/sources", self.base))
            .await
            .unwrap();
        find(b, "input[name=password]").await;
    }

    async fn open(&self, b: &Client, path: &str) -> String {
        b.goto(&format!("{}{path}", self.base)).await.unwrap();
        b.source().await.unwrap()
    }
}

/// The numbers of the Sources table's row for `source`: started, reached contact, booked.
async fn funnel_row(b: &Client, source: &str) -> Option<(String, String, String)> {
    let rows = b
        .find_all(Locator::Css("table.funnel tbody tr"))
        .await
        .unwrap();
    for row in rows {
        if row.attr("data-source").await.unwrap().as_deref() == Some(source) {
            let mut texts = Vec::new();
            for cell in row.find_all(Locator::Css("td")).await.unwrap() {
                texts.push(cell.text().await.unwrap());
            }
            return Some((texts[1].clone(), texts[2].clone(), texts[4].clone()));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketers_managers_and_operators_do_their_work_in_a_browser() {
    let driver = Driver::start();
    let tg = FakeTelegram::start().await;
    let amo = FakeAmo::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let store_url = format!("sqlite://{}", dir.path().join("zapis.db").display());
    let config = Settings::single(&store_url, "Салон «Лилия»")
        .telegram(&tg)
        .set("telegram.bot_username", "lilia_bot")
        .set("sync.poll", "100ms")
        .http(port, SECRET)
        .amocrm_minimal(&amo)
        .set("crm.amocrm.timeout_secs", 1)
        .write_in(dir.path());
    let password = format!("{PASSWORD}\n");
    for (login, role, business) in [
        ("olga", "owner", "default"),
        ("mila", "marketer", "default"),
        ("oleg", "operator", "default"),
        ("bob", "owner", "other-salon"),
    ] {
        let out = zapis_with_stdin(
            &["user", "add", login, "--role", role, "--business", business],
            &config,
            &password,
        );
        assert!(out.contains(&format!("user {login} added")), "{out}");
    }
    let service = Service::start(&config);
    let site = Site {
        base: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if reqwest::get(format!("{}/health/live", site.base))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = driver.browser().await;

    // Without a session, the console is the sign-in page.
    b.goto(&format!("{}/console/b/default/deliveries", site.base))
        .await
        .unwrap();
    find(&b, "input[name=password]").await;
    shot(&b, "01-sign-in").await;

    // The marketer makes a tracked link.
    site.sign_in(&b, "mila").await;
    assert!(b.current_url().await.unwrap().path().ends_with("/sources"));
    find(&b, "#links input[name=name]")
        .await
        .send_keys("Весна-VK")
        .await
        .unwrap();
    find(&b, "#links input[name=utm_source]")
        .await
        .send_keys("vk")
        .await
        .unwrap();
    find(&b, "#links form button[type=submit]")
        .await
        .click()
        .await
        .unwrap();
    let link = find(
        &b,
        "tr[data-link='Весна-VK'] a[href^='https://t.me/lilia_bot?start=']",
    )
    .await;
    let href = link.attr("href").await.unwrap().unwrap();
    let token = href.rsplit("start=").next().unwrap().to_string();
    assert!(token.starts_with("l_"), "{href}");
    shot(&b, "02-link-created").await;

    // A client arrives through it and books while amoCRM is down.
    amo.set_down(true);
    let user = tg.user(7001);
    user.send_text(&format!("/start {token}"));
    user.wait_for_text("Салон «Лилия»", WAIT).await;
    book_first_slot(&user, "Женская стрижка", "+7 912 345-67-89", "Анна").await;
    user.wait_for_text("вы записаны", WAIT).await;

    b.refresh().await.unwrap();
    let mut row = None;
    for _ in 0..50 {
        row = funnel_row(&b, "Весна-VK").await;
        if row.as_ref().is_some_and(|(_, _, booked)| booked == "1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        b.refresh().await.unwrap();
    }
    let table = find(&b, "table.funnel").await.html(false).await.unwrap();
    assert_eq!(
        row,
        Some(("1".into(), "1".into(), "1".into())),
        "started, reached contact, booked under the link: {table}"
    );
    shot(&b, "03-sources").await;
    assert!(
        b.source().await.unwrap().contains("sources.csv"),
        "a CSV export is offered"
    );

    // Deliveries are not the marketer's.
    let page = site.open(&b, "/console/b/default/deliveries").await;
    assert!(page.contains("403"), "{page}");
    assert!(
        !page.contains("amocrm"),
        "nothing of the page leaks: {page}"
    );
    shot(&b, "04-marketer-forbidden").await;
    site.sign_out(&b).await;

    // The owner finds the booking and the client's card with the conversation.
    site.sign_in(&b, "olga").await;
    site.open(&b, "/console/b/default/bookings").await;
    let client = find(&b, "table.bookings a[href*='/clients/']").await;
    let card_path = client.attr("href").await.unwrap().unwrap();
    shot(&b, "05-bookings").await;
    client.click().await.unwrap();
    find(&b, "section.transcript").await;
    let card = b.source().await.unwrap();
    assert!(
        card.contains("Анна") && card.contains("+7 912 345-67-89"),
        "{card}"
    );
    assert!(
        card.contains(&format!("/start {token}")),
        "the transcript starts with the link"
    );
    assert!(
        card.contains("Проверьте запись"),
        "the bot's side is there too"
    );
    assert!(card.contains("Весна-VK"), "the client's source");
    shot(&b, "06-client-card").await;
    site.sign_out(&b).await;

    // An owner of another business cannot open this client by its address.
    site.sign_in(&b, "bob").await;
    let page = site.open(&b, &card_path).await;
    assert!(page.contains("403") && !page.contains("Анна"), "{page}");
    shot(&b, "07-other-business-forbidden").await;
    site.sign_out(&b).await;

    // The operator sees amoCRM down and the lead waiting, and retries it once amoCRM is back.
    let store = zapis::store::Store::connect(&store_url).await.unwrap();
    let mut job_id = None;
    for _ in 0..(WAIT.as_millis() / 100) {
        job_id = sqlx::query_scalar::<_, i64>(
            "SELECT id FROM sync_jobs WHERE system = 'amocrm' AND state = 'pending' AND attempts > 0",
        )
        .fetch_optional(raw_pool(&store))
        .await
        .unwrap();
        if job_id.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let job_id = job_id.expect("the amoCRM delivery failed and waits");
    site.sign_in(&b, "oleg").await;
    site.open(&b, "/console/b/default/deliveries").await;
    let health = find(&b, "tr.health-down").await.text().await.unwrap();
    assert!(health.contains("amocrm"), "{health}");
    shot(&b, "08-deliveries-down").await;
    let retry = find(&b, &format!("button[data-job='{job_id}']")).await;
    amo.set_down(false);
    retry.click().await.unwrap();
    let flash = find(&b, "#retry-result").await.text().await.unwrap();
    assert!(flash.contains(&job_id.to_string()), "{flash}");
    let mut delivered = false;
    for _ in 0..(WAIT.as_millis() / 250) {
        let text = find(&b, "#retry-result").await.text().await.unwrap();
        if text.contains("доставлены") {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        b.refresh().await.unwrap();
    }
    assert!(delivered, "the retried job is shown delivered");
    assert_eq!(amo.leads().len(), 1, "one lead, whatever the outage");
    shot(&b, "09-deliveries-retried").await;

    // Setup help lists the CRM's pipelines and stages with their ids, read from amoCRM.
    site.open(&b, "/console/b/default/setup").await;
    let ours = find(
        &b,
        &format!("table.pipeline[data-pipeline='{}']", amo_fake::PIPELINE_ID),
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(
        ours.contains(&amo_fake::STATUS_NEW.to_string()) && ours.contains("Новая запись"),
        "{ours}"
    );
    find(
        &b,
        &format!(
            "table.pipeline[data-pipeline='{}']",
            amo_fake::OTHER_PIPELINE_ID
        ),
    )
    .await;
    let fields = find(&b, "table.fields").await.text().await.unwrap();
    assert!(
        fields.lines().count() > 1,
        "the lead fields with their ids: {fields}"
    );
    b.execute(
        "document.getElementById('crm').scrollIntoView()",
        Vec::new(),
    )
    .await
    .unwrap();
    shot(&b, "10-setup").await;
    site.sign_out(&b).await;
    shot(&b, "11-signed-out").await;

    b.close().await.unwrap();
    service.stop();
}
