//! Reading the configuration: the file, then `ZAPIS_SECTION__KEY` overrides; the built-in demo;
//! error messages that name the key and never repeat its value.

use super::*;

impl Config {
    /// Reads `path`, then applies `ZAPIS_SECTION__KEY` environment overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::Missing(path.to_path_buf()));
        }
        let figment = Figment::from(Toml::file_exact(path)).merge(env_provider());
        Self::from_figment_in(figment, path.parent())
    }

    /// The built-in sandbox salon used by `zapis demo`.
    pub fn demo(store_url: &str) -> Config {
        let base = Figment::from(Toml::string(DEMO_TOML))
            .merge(Serialized::default("store.url", store_url));
        Self::from_figment(base).expect("the built-in demo config is valid")
    }

    pub(crate) fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        Self::from_figment_in(figment, None)
    }

    /// `base`: the config file's directory, which relative paths in it start from.
    pub(super) fn from_figment_in(
        figment: Figment,
        base: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let mut config: Config = figment.extract().map_err(figment_error)?;
        config.validate()?;
        config.business.texts = match &mut config.business.locales {
            None => crate::i18n::Texts::builtin(config.business.kind),
            Some(dir) => {
                if let Some(base) = base.filter(|_| dir.is_relative()) {
                    *dir = base.join(&*dir);
                }
                crate::i18n::Texts::load(config.business.kind, dir).map_err(|e| {
                    ConfigError::Key {
                        key: "business.locales".into(),
                        message: e.to_string(),
                    }
                })?
            }
        };
        Ok(config)
    }
}

/// One message per problem, each naming the key and its source, never the value.
pub(super) fn figment_error(e: figment::Error) -> ConfigError {
    let all: Vec<String> = e
        .into_iter()
        .map(|e| without_value(e).to_string())
        .collect();
    ConfigError::Invalid(all.join("; ").replace("key \"default.", "key \""))
}

/// A configuration error that says what was wrong with a value without repeating it: the value
/// may be a token (`token = 12345` is an integer where a string belongs), and the TOML parser
/// quotes the whole offending line.
fn without_value(mut e: figment::Error) -> figment::Error {
    use figment::error::{Actual, Kind};
    let kind_of = |a: &Actual| -> &'static str {
        match a {
            Actual::Bool(_) => "a boolean",
            Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
            Actual::Float(_) => "a float",
            Actual::Char(_) => "a character",
            Actual::Str(_) | Actual::Other(_) => "a string",
            Actual::Bytes(_) => "bytes",
            Actual::Unit | Actual::Option => "nothing",
            Actual::Seq => "a list",
            Actual::Map => "a table",
            _ => "a value",
        }
    };
    e.kind = match e.kind {
        Kind::InvalidType(actual, expected) => Kind::Message(format!(
            "invalid type: found {}, expected {expected}",
            kind_of(&actual)
        )),
        Kind::InvalidValue(actual, expected) => Kind::Message(format!(
            "invalid value: {}, expected {expected}",
            kind_of(&actual)
        )),
        Kind::Message(m) => Kind::Message(without_quoted_source(&m)),
        other => other,
    };
    e
}

/// Drops the source excerpt TOML parse errors carry (`3 | token = "ab`, the caret line).
fn without_quoted_source(message: &str) -> String {
    let kept: Vec<&str> = message
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            let gutter = t.split_once('|').is_some_and(|(head, _)| {
                head.trim().is_empty() || head.trim().chars().all(|c| c.is_ascii_digit())
            });
            !gutter && !t.is_empty()
        })
        .collect();
    kept.join(" ")
}

/// `ZAPIS_TELEGRAM__TOKEN` → `telegram.token`. Variables without a section separator (such as
/// test settings) are not configuration keys and are left alone.
pub(super) fn env_provider() -> Env {
    Env::prefixed("ZAPIS_")
        .split("__")
        .filter(|k| k.as_str().contains("__") || k.as_str().contains('.'))
}

const DEMO_TOML: &str = r#"
[business]
name = "Салон «Лилия»"
timezone = "Europe/Moscow"
locale = "ru"
address = "Москва, ул. Пушкина, 10"
phone = "+7 495 123-45-67"

[booking]
system = "sandbox"
"#;
