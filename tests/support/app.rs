//! The real service object as `zapis run` builds it (`App::build` from a loaded config), on
//! settings written in code, with the fakes a test asks for started on free ports, a fake
//! clock, and a drain that runs the job queue until it is idle.
//!
//! Settings are a tree of keys built in code and rendered to TOML in one place
//! ([`Settings::toml`]), then loaded by `Config::load` as an operator's file is, so a test
//! goes through the same parsing, defaults and checks as a deployment.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use zapis::app::App;
use zapis::clock::{Clock, FakeClock};
use zapis::config::Config;
use zapis::sync::{Engine, JobState};

use super::fake_alfacrm::{self, FakeAlfa};
use super::fake_amocrm::{self, FakeAmo};
use super::fake_bitrix24::FakeBitrix;
use super::fake_dikidi::{self, FakeDikidi};
use super::fake_getcourse::{self, FakeGetCourse};
use super::fake_max::{self, FakeMax};
use super::fake_onec::{self, FakeOnec};
use super::fake_telegram::{self, FakeTelegram};
use super::fake_yclients::{self, FakeYclients};

/// A deployment's settings as a tree of TOML keys.
#[derive(Clone, Debug)]
pub struct Settings(Map<String, Value>);

impl Settings {
    /// A salon (`salon`, Europe/Moscow) on `store_url`.
    pub fn new(store_url: &str) -> Settings {
        Settings::empty()
            .set("store.url", store_url)
            .set("business.id", "salon")
            .set("business.name", "Салон")
            .set("business.timezone", "Europe/Moscow")
    }

    /// No keys at all: a deployment's file, or a business's own file in its `businesses`
    /// folder.
    pub fn empty() -> Settings {
        Settings(Map::new())
    }

    /// The one business of a deployment that names none (no `business.id`), called `name`,
    /// in Europe/Moscow, on `store_url`.
    pub fn single(store_url: &str, name: &str) -> Settings {
        Settings::new(store_url)
            .remove("business.id")
            .set("business.name", name)
    }

    /// Sets a dotted key (`onec.services.svc-haircut`), making its tables on the way.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Settings {
        let (table, last) = self.table_of(key);
        table.insert(last.to_string(), value.into());
        self
    }

    /// Leaves a key out (its default applies).
    pub fn remove(mut self, key: &str) -> Settings {
        let (table, last) = self.table_of(key);
        table.remove(last);
        self
    }

    /// Appends a table to an array of tables (`[[school.courses]]`).
    pub fn push(mut self, key: &str, table: Value) -> Settings {
        let (parent, last) = self.table_of(key);
        let list = parent
            .entry(last.to_string())
            .or_insert_with(|| Value::Array(Vec::new()));
        list.as_array_mut()
            .unwrap_or_else(|| panic!("{key} is not an array of tables"))
            .push(table);
        self
    }

    fn table_of<'a>(&mut self, key: &'a str) -> (&mut Map<String, Value>, &'a str) {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().expect("a key");
        let mut table = &mut self.0;
        for part in parts {
            table = table
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .unwrap_or_else(|| panic!("{key}: {part} is not a table"));
        }
        (table, last)
    }

    /// amoCRM as the CRM, with the fake account's long-lived token, pipeline, first stage and
    /// booking field.
    pub fn amocrm(self, fake: &FakeAmo) -> Settings {
        self.amocrm_minimal(fake)
            .set("crm.amocrm.new_status_id", fake_amocrm::STATUS_NEW)
            .set(
                "crm.amocrm.booking_id_field_id",
                fake_amocrm::FIELD_BOOKING_ID,
            )
    }

    /// amoCRM as the CRM with only what an operator must name: the fake account, its
    /// long-lived token and pipeline; the stage and the booking field are left to defaults.
    pub fn amocrm_minimal(self, fake: &FakeAmo) -> Settings {
        self.set("crm.system", "amocrm")
            .set("crm.amocrm.base_url", fake.base_url.to_string())
            .set("crm.amocrm.token", fake_amocrm::LONG_LIVED_TOKEN)
            .set("crm.amocrm.pipeline_id", fake_amocrm::PIPELINE_ID)
    }

    /// Bitrix24 as the CRM, through the fake portal's inbound webhook.
    pub fn bitrix24(self, fake: &FakeBitrix) -> Settings {
        self.set("crm.system", "bitrix24")
            .set("crm.bitrix24.webhook_url", fake.webhook_url())
    }

    /// A Telegram bot on the fake Bot API, paced at 20 messages a second per chat: at
    /// Telegram's own 1 a second after a burst of 3, every booking a scripted client walks
    /// through would wait ~9 s on the pacer (the pacing itself is tested in
    /// `messenger::telegram::pacing`).
    pub fn telegram(self, fake: &FakeTelegram) -> Settings {
        self.telegram_at(&fake.api_url())
    }

    /// [`Settings::telegram`] with the Bot API at `api_url` (one that may not answer).
    pub fn telegram_at(self, api_url: &url::Url) -> Settings {
        self.set("telegram.token", fake_telegram::TOKEN)
            .set("telegram.api_url", api_url.to_string())
            .set("telegram.limits.chat_messages_per_second", 20)
            .set("telegram.limits.chat_burst", 20)
    }

    /// A MAX bot polling the fake platform API.
    pub fn max(self, fake: &FakeMax) -> Settings {
        self.set("max.token", fake_max::TOKEN)
            .set("max.api_url", fake.api_url().to_string())
    }

    /// YClients as the schedule: company `company_id` at the fake, with the partner token.
    pub fn yclients(self, fake: &FakeYclients, company_id: u64) -> Settings {
        self.set("booking.system", "yclients")
            .set("booking.yclients.base_url", fake.base_url.to_string())
            .set("booking.yclients.company_id", company_id)
            .set(
                "booking.yclients.partner_token",
                fake_yclients::PARTNER_TOKEN,
            )
    }

    /// Dikidi as the schedule: the fake's company.
    pub fn dikidi(self, fake: &FakeDikidi) -> Settings {
        self.set("booking.system", "dikidi")
            .set("booking.dikidi.base_url", fake.base_url().to_string())
            .set("booking.dikidi.company_id", fake_dikidi::COMPANY)
    }

    /// The HTTP face on `127.0.0.1:port`, its webhooks under `secret`.
    pub fn http(self, port: u16, secret: &str) -> Settings {
        self.set("http.listen", format!("127.0.0.1:{port}"))
            .set("http.webhook_secret", secret)
    }

    /// 1C over OData at the fake base, with its organisation and the shampoo as the default
    /// nomenclature.
    pub fn onec_odata(self, fake: &FakeOnec) -> Settings {
        self.set("onec.mode", "odata")
            .set("onec.base_url", fake.base_url())
            .set("onec.user", fake_onec::USER)
            .set("onec.password", fake_onec::PASSWORD)
            .set("onec.organisation_key", fake_onec::ORGANISATION)
            .set("onec.nomenclature_key", fake_onec::NOMENCLATURE_SHAMPOO)
    }

    /// AlfaCRM for a school, with the fake account's login and branch.
    pub fn alfacrm(self, fake: &FakeAlfa) -> Settings {
        self.set("school.alfacrm.base_url", fake.url.clone())
            .set("school.alfacrm.email", fake_alfacrm::EMAIL)
            .set("school.alfacrm.api_key", fake_alfacrm::API_KEY)
            .set("school.alfacrm.branch_id", fake_alfacrm::BRANCH)
    }

    /// GetCourse for a school, with the fake account's key and this access mode.
    pub fn getcourse(self, fake: &FakeGetCourse, access: &str) -> Settings {
        self.set("school.getcourse.account_url", fake.url.clone())
            .set("school.getcourse.key", fake_getcourse::KEY)
            .set("school.getcourse.access", access)
    }

    /// The settings as a TOML file.
    pub fn toml(&self) -> String {
        let mut out = String::new();
        render(&mut out, "", &self.0);
        out
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.toml()).expect("write the settings");
    }

    /// Written as `dir/zapis.toml`, the file `zapis run --config` is then given.
    pub fn write_in(&self, dir: &Path) -> PathBuf {
        let path = dir.join("zapis.toml");
        self.write(&path);
        path
    }

    /// Loaded as `zapis run --config` loads a file.
    pub fn config(&self) -> Config {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("zapis.toml");
        self.write(&path);
        Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{}", self.toml()))
    }

    /// The service object on these settings and this clock.
    pub async fn app(&self, clock: Arc<FakeClock>) -> App {
        App::build(self.config(), clock).await.expect("app")
    }
}

/// Plain values first, then tables, then arrays of tables, as TOML wants them.
fn render(out: &mut String, path: &str, table: &Map<String, Value>) {
    let is_tables = |v: &Value| {
        v.as_array()
            .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_object))
    };
    for (k, v) in table {
        if !v.is_object() && !is_tables(v) {
            writeln!(out, "{} = {}", key(k), inline(v)).unwrap();
        }
    }
    for (k, v) in table {
        if let Value::Object(sub) = v {
            let p = joined(path, k);
            writeln!(out, "\n[{p}]").unwrap();
            render(out, &p, sub);
        }
    }
    for (k, v) in table {
        if is_tables(v) {
            let p = joined(path, k);
            for item in v.as_array().unwrap() {
                writeln!(out, "\n[[{p}]]").unwrap();
                render(out, &p, item.as_object().unwrap());
            }
        }
    }
}

fn joined(path: &str, k: &str) -> String {
    if path.is_empty() {
        key(k)
    } else {
        format!("{path}.{}", key(k))
    }
}

fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        serde_json::to_string(k).unwrap()
    }
}

/// A JSON string is a valid TOML basic string; numbers and booleans read the same.
fn inline(v: &Value) -> String {
    match v {
        Value::Null => panic!("TOML has no null; leave the key out"),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{} = {}", key(k), inline(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// Runs every due job, moving the fake clock to the next retry, until the queue is idle. A
/// due job may wait behind an earlier one of the same client, so when nothing ran the clock
/// moves to the next retry of any pending job.
pub async fn drain(engine: &Engine, clock: &FakeClock) {
    for _ in 0..200 {
        let ran = engine.run_due().await.expect("run");
        let pending = engine
            .queue()
            .jobs_in_state(JobState::Pending)
            .await
            .expect("pending");
        if pending.is_empty() {
            return;
        }
        let now = clock.now();
        if ran == 0
            && let Some(next) = pending.iter().map(|j| j.run_at).filter(|t| *t > now).min()
        {
            clock.set(next);
        }
    }
    let pending = engine.queue().jobs_in_state(JobState::Pending).await;
    panic!("the queue did not settle: {pending:#?}");
}

/// The service on the fakes it asked for, with its clock.
pub struct TestApp {
    pub app: App,
    pub clock: Arc<FakeClock>,
    pub settings: Settings,
    pub amocrm: Option<FakeAmo>,
    pub onec: Option<FakeOnec>,
}

impl TestApp {
    /// A salon on `store_url`, its clock at `now`.
    pub fn builder(store_url: &str, now: DateTime<Utc>) -> TestAppBuilder {
        TestAppBuilder {
            settings: Settings::new(store_url),
            now,
            amocrm: false,
            onec: false,
            edits: Vec::new(),
        }
    }

    pub fn engine(&self) -> Engine {
        self.app.engine()
    }

    /// Runs the queue until it is idle (see [`drain`]).
    pub async fn drain(&self) {
        drain(&self.app.engine(), &self.clock).await;
    }
}

type Edit = Box<dyn FnOnce(Settings) -> Settings>;

pub struct TestAppBuilder {
    settings: Settings,
    now: DateTime<Utc>,
    amocrm: bool,
    onec: bool,
    edits: Vec<Edit>,
}

impl TestAppBuilder {
    /// A fake amoCRM account as the CRM.
    pub fn amocrm(mut self) -> TestAppBuilder {
        self.amocrm = true;
        self
    }

    /// A fake 1C over OData.
    pub fn onec_odata(mut self) -> TestAppBuilder {
        self.onec = true;
        self
    }

    /// Changes the settings once the fakes are up (their addresses are known by then).
    pub fn settings(mut self, edit: impl FnOnce(Settings) -> Settings + 'static) -> TestAppBuilder {
        self.edits.push(Box::new(edit));
        self
    }

    pub async fn build(self) -> TestApp {
        let mut settings = self.settings;
        let amocrm = match self.amocrm {
            true => Some(FakeAmo::start().await),
            false => None,
        };
        let onec = match self.onec {
            true => Some(FakeOnec::start().await),
            false => None,
        };
        if let Some(fake) = &amocrm {
            settings = settings.amocrm(fake);
        }
        if let Some(fake) = &onec {
            settings = settings.onec_odata(fake);
        }
        for edit in self.edits {
            settings = edit(settings);
        }
        let clock = Arc::new(FakeClock::new(self.now));
        let app = settings.app(clock.clone()).await;
        TestApp {
            app,
            clock,
            settings,
            amocrm,
            onec,
        }
    }
}
