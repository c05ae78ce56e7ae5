//! `[onec]` settings: how zapis reaches the business's 1C.
//!
//! ```toml
//! [onec]
//! mode = "odata"                       # or "commerceml" (1C calls us)
//! base_url = "http://1c.local/buh"     # the publication; /odata/standard.odata is appended
//! user = "zapis"
//! password = "secret"
//! organisation_key = "…guid…"          # Организация_Key of the documents
//! nomenclature_key = "…guid…"          # Номенклатура_Key of services not mapped below
//! post_sales = false                   # post the sales document, or leave it to the accountant
//! low_stock_threshold = 3              # alert when a stock line falls to this or below
//! stock_check_interval = "1h"          # how often `zapis run` reads the balance (OData)
//!
//! [onec.objects]                       # names differ by configuration and release
//! invoice = "Document_СчетНаОплатуКлиенту"
//!
//! [onec.services]                      # our service id (or course key) → Номенклатура_Key
//! haircut = "…guid…"
//!
//! [onec.commerceml]                    # 1C's own site exchange, when mode = "commerceml"
//! user = "1c"
//! password = "…"                       # a long random string; placeholders are refused
//! upload_limit = 268435456             # bytes one exchange session may keep on disk
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnecConfig {
    pub mode: OnecMode,
    #[serde(default)]
    pub base_url: Option<Url>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<SecretString>,
    #[serde(default)]
    pub organisation_key: Option<String>,
    #[serde(default)]
    pub nomenclature_key: Option<String>,
    #[serde(default)]
    pub post_sales: bool,
    #[serde(default)]
    pub low_stock_threshold: Option<u64>,
    /// How often `zapis run` reads the stock balance (OData mode with a threshold); 1 h when
    /// not set.
    #[serde(default, deserialize_with = "de_opt_duration")]
    pub stock_check_interval: Option<Duration>,
    #[serde(default)]
    pub objects: ObjectNames,
    #[serde(default)]
    pub services: BTreeMap<String, String>,
    #[serde(default)]
    pub commerceml: Option<CommerceMlConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnecMode {
    Odata,
    Commerceml,
}

/// The OData names of the objects zapis writes and reads. Defaults are 1С:Бухгалтерия 3.0's;
/// `zapis onec check` compares them with the base's `$metadata`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectNames {
    pub counterparties: String,
    pub invoice: String,
    /// The tabular section of the invoice that carries the lines.
    pub invoice_lines: String,
    pub sales: String,
    pub sales_lines: String,
    /// The accumulation register whose `/Balance` is the stock.
    pub stock_register: String,
    /// The balance resource of that register (`<resource>Balance`).
    pub stock_resource: String,
    /// The dimension naming the item.
    pub stock_item: String,
    /// The counterparty's contact-information tabular section (its own entity set
    /// `<counterparties>_<section>`, rows carrying the owner's `Ref_Key`).
    pub contacts_section: String,
    /// The attribute of that section holding the phone.
    pub phone_field: String,
    /// The attribute of that section holding the e-mail.
    pub email_field: String,
}

impl Default for ObjectNames {
    fn default() -> Self {
        ObjectNames {
            counterparties: "Catalog_Контрагенты".into(),
            invoice: "Document_СчетНаОплатуПокупателю".into(),
            invoice_lines: "Товары".into(),
            sales: "Document_РеализацияТоваровУслуг".into(),
            sales_lines: "Услуги".into(),
            stock_register: "AccumulationRegister_ТоварыНаСкладах".into(),
            stock_resource: "ВНаличии".into(),
            stock_item: "Номенклатура_Key".into(),
            contacts_section: "КонтактнаяИнформация".into(),
            phone_field: "НомерТелефона".into(),
            email_field: "АдресЭП".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommerceMlConfig {
    /// The login and password typed into 1C's «обмен с сайтом» settings.
    pub user: String,
    pub password: SecretString,
    /// Whether 1C may send zipped files.
    #[serde(default = "yes")]
    pub zip: bool,
    /// The largest piece 1C sends in one `mode=file` request, in bytes.
    #[serde(default = "default_file_limit")]
    pub file_limit: u64,
    /// The encoding of the documents `mode=query` hands out: `utf-8` or `windows-1251`.
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// The most one exchange session keeps on disk: the files 1C uploads plus what their zip
    /// archives unpack to. Pieces stream to disk, never to memory.
    #[serde(default = "default_upload_limit")]
    pub upload_limit: u64,
    /// The most the zip archives of one session may unpack to, in total.
    #[serde(default = "default_unpack_limit")]
    pub unpack_limit: u64,
    /// The most entries a zip archive may list.
    #[serde(default = "default_zip_entry_limit")]
    pub zip_entry_limit: u64,
    /// A session unused this long ends: its files are deleted.
    #[serde(
        default = "default_session_ttl",
        deserialize_with = "crate::sync::config::de_duration"
    )]
    pub session_ttl: Duration,
    /// Where the sessions' files are kept (a directory per session); the system's temporary
    /// directory when not set.
    #[serde(default)]
    pub upload_dir: Option<std::path::PathBuf>,
}

/// Passwords that come from examples and habits, refused for the exchange login.
const PLACEHOLDER_PASSWORDS: &[&str] = &[
    "secret",
    "replace-me",
    "change-me",
    "changeme",
    "password",
    "…",
    "...",
    "1c",
    "admin",
    "123456",
    "12345678",
    "qwerty",
];

/// The shortest exchange password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

fn default_upload_limit() -> u64 {
    256 * 1024 * 1024
}

fn default_unpack_limit() -> u64 {
    256 * 1024 * 1024
}

fn default_zip_entry_limit() -> u64 {
    10_000
}

fn default_session_ttl() -> Duration {
    Duration::from_secs(3600)
}

impl CommerceMlConfig {
    /// The exchange settings with their defaults, for the given login.
    pub fn new(user: &str, password: SecretString) -> CommerceMlConfig {
        CommerceMlConfig {
            user: user.into(),
            password,
            zip: true,
            file_limit: default_file_limit(),
            encoding: default_encoding(),
            upload_limit: default_upload_limit(),
            unpack_limit: default_unpack_limit(),
            zip_entry_limit: default_zip_entry_limit(),
            session_ttl: default_session_ttl(),
            upload_dir: None,
        }
    }
}

fn de_opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    crate::sync::config::de_duration(d).map(Some)
}

/// The stock check's period when `stock_check_interval` is not set.
pub const DEFAULT_STOCK_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

fn yes() -> bool {
    true
}

fn default_file_limit() -> u64 {
    1_048_576
}

fn default_encoding() -> String {
    "utf-8".into()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid configuration: key `{key}`: {message}")]
pub struct OnecConfigError {
    pub key: String,
    pub message: String,
}

fn err(key: &str, message: &str) -> OnecConfigError {
    OnecConfigError {
        key: key.into(),
        message: message.into(),
    }
}

impl OnecConfig {
    /// How often `zapis run` checks the stock: only over OData and with a threshold to check
    /// against (CommerceML alerts as 1C's offers arrive).
    pub fn stock_check_every(&self) -> Option<Duration> {
        (self.mode == OnecMode::Odata && self.low_stock_threshold.is_some()).then(|| {
            self.stock_check_interval
                .unwrap_or(DEFAULT_STOCK_CHECK_INTERVAL)
        })
    }

    pub fn validate(&self) -> Result<(), OnecConfigError> {
        if let Some(every) = self.stock_check_interval {
            if self.mode != OnecMode::Odata {
                return Err(err(
                    "onec.stock_check_interval",
                    "the periodic stock check reads 1C over OData (mode = \"odata\"); with \
                     CommerceML the alert comes with each offers import",
                ));
            }
            if self.low_stock_threshold.is_none() {
                return Err(err(
                    "onec.stock_check_interval",
                    "needs onec.low_stock_threshold to check against",
                ));
            }
            if every < Duration::from_secs(60) {
                return Err(err(
                    "onec.stock_check_interval",
                    "must be at least 1m: each check reads the whole balance",
                ));
            }
        }

        match self.mode {
            OnecMode::Odata => {
                let Some(url) = &self.base_url else {
                    return Err(err(
                        "onec.base_url",
                        "mode = \"odata\" needs the publication address",
                    ));
                };
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(err("onec.base_url", "must be an http(s) address"));
                }
                if self.user.as_deref().unwrap_or("").is_empty() {
                    return Err(err("onec.user", "mode = \"odata\" needs the infobase user"));
                }
                if self.password.is_none() {
                    return Err(err("onec.password", "mode = \"odata\" needs the password"));
                }
                let key = self.organisation_key.as_deref().unwrap_or("");
                if !is_guid(key) {
                    return Err(err(
                        "onec.organisation_key",
                        "must be the Организация's Ref_Key GUID",
                    ));
                }
                if let Some(n) = &self.nomenclature_key
                    && !is_guid(n)
                {
                    return Err(err(
                        "onec.nomenclature_key",
                        "must be a Номенклатура Ref_Key GUID",
                    ));
                }
                for (service, key) in &self.services {
                    if !is_guid(key) {
                        return Err(err(
                            &format!("onec.services.{service}"),
                            "must be a Номенклатура Ref_Key GUID",
                        ));
                    }
                }
            }
            OnecMode::Commerceml => {
                let Some(cml) = &self.commerceml else {
                    return Err(err(
                        "onec.commerceml",
                        "mode = \"commerceml\" needs a [onec.commerceml] section",
                    ));
                };
                if cml.user.is_empty() {
                    return Err(err("onec.commerceml.user", "must not be empty"));
                }
                let password = cml.password.expose_secret();
                if password.trim().is_empty() {
                    return Err(err("onec.commerceml.password", "must not be empty"));
                }
                let lower = password.trim().to_lowercase();
                if PLACEHOLDER_PASSWORDS.contains(&lower.as_str())
                    || lower == cml.user.trim().to_lowercase()
                {
                    return Err(err(
                        "onec.commerceml.password",
                        "is a placeholder anyone can guess; set a long random password (the same \
                         in 1C's exchange settings)",
                    ));
                }
                if password.chars().count() < MIN_PASSWORD_CHARS {
                    return Err(err(
                        "onec.commerceml.password",
                        &format!("must be at least {MIN_PASSWORD_CHARS} characters"),
                    ));
                }
                if cml.upload_limit < cml.file_limit {
                    return Err(err(
                        "onec.commerceml.upload_limit",
                        "must be at least onec.commerceml.file_limit",
                    ));
                }
                if cml.unpack_limit < 1024 * 1024 {
                    return Err(err(
                        "onec.commerceml.unpack_limit",
                        "must be at least 1 MiB",
                    ));
                }
                if cml.zip_entry_limit == 0 {
                    return Err(err("onec.commerceml.zip_entry_limit", "must be positive"));
                }
                if cml.session_ttl < Duration::from_secs(60) {
                    return Err(err(
                        "onec.commerceml.session_ttl",
                        "must be at least 1m: 1C repeats `import` while a big file is read",
                    ));
                }
                if let Some(dir) = &cml.upload_dir
                    && !dir.is_dir()
                {
                    return Err(err(
                        "onec.commerceml.upload_dir",
                        &format!("{} is not a directory", dir.display()),
                    ));
                }
                if cml.file_limit < 1024 || cml.file_limit > super::exchange::MAX_PIECE as u64 {
                    return Err(err(
                        "onec.commerceml.file_limit",
                        "must be between 1024 bytes and 64 MiB",
                    ));
                }
                if encoding_rs::Encoding::for_label(cml.encoding.as_bytes()).is_none() {
                    return Err(err(
                        "onec.commerceml.encoding",
                        "use \"utf-8\" or \"windows-1251\"",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `8-4-4-4-12` hex digits, the form of every 1C reference.
pub fn is_guid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok() && s.len() == 36
}
