//! User-facing text lives in `locales/` as Fluent files; this module picks the language and
//! looks messages up.
//!
//! ```
//! use zapis::i18n::{Lang, t, t_args};
//! assert_eq!(t_args(Lang::Ru, "minutes", &[("count", 3.into())]), "3 минуты");
//! assert_eq!(t(Lang::En, "btn-book"), "📅 Book");
//! ```

use std::collections::HashMap;

use fluent_templates::{LanguageIdentifier, langid, static_loader};
use serde::{Deserialize, Serialize};

/// A value for a message placeable: `"text".into()`, `5.into()`.
pub use fluent_templates::fluent_bundle::FluentValue;

static_loader! {
    static LOCALES = {
        locales: "./locales",
        fallback_language: "ru",
        // Isolation marks (U+2068/U+2069) around placeables show up as garbage in some
        // messenger clients and break substring matching of phone numbers and prices.
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

static RU: LanguageIdentifier = langid!("ru");
static EN: LanguageIdentifier = langid!("en");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    Ru,
    En,
}

/// Languages whose speakers in our market read Russian more readily than English.
const RUSSIAN_READERS: &[&str] = &["ru", "uk", "be", "kk", "ky", "uz", "tg", "tt", "ba"];

impl Lang {
    /// Reads a messenger language code (`ru`, `en-US`, `uk`, `pt_BR`); `None` when we have no
    /// better guess than the business default.
    pub fn from_code(code: &str) -> Option<Lang> {
        let primary = code
            .trim()
            .split(['-', '_'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if primary == "en" {
            Some(Lang::En)
        } else if RUSSIAN_READERS.contains(&primary.as_str()) {
            Some(Lang::Ru)
        } else {
            None
        }
    }

    /// The language to talk to a user in: theirs when we speak it, else the business default.
    pub fn pick(user: Option<&str>, default: Lang) -> Lang {
        user.and_then(Lang::from_code).unwrap_or(default)
    }

    /// `ru`, `en`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ru => "ru",
            Lang::En => "en",
        }
    }

    fn id(self) -> &'static LanguageIdentifier {
        match self {
            Lang::Ru => &RU,
            Lang::En => &EN,
        }
    }
}

/// The message `key` without arguments.
pub fn t(lang: Lang, key: &str) -> String {
    t_args(lang, key, &[])
}

/// The message `key` with named arguments: `t_args(lang, "minutes", &[("count", 5.into())])`.
///
/// A key missing in `lang` falls back to Russian, and one missing everywhere yields the key
/// itself: a user should see something rather than nothing. Debug builds (and so the tests)
/// panic instead, so a missing translation or argument is caught before release.
pub fn t_args(lang: Lang, key: &str, args: &[(&str, FluentValue<'_>)]) -> String {
    let map: HashMap<&str, FluentValue<'_>> = args.iter().map(|(k, v)| (*k, v.clone())).collect();
    let map = (!map.is_empty()).then_some(&map);
    match LOCALES.lookup_single_language(lang.id(), key, map) {
        Ok(text) => text,
        Err(err) => {
            debug_assert!(false, "message {key:?} in {lang:?}: {err}");
            LOCALES
                .lookup_single_language(&RU, key, map)
                .unwrap_or_else(|_| key.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const RU_FTL: &str = include_str!("../locales/ru/main.ftl");
    const EN_FTL: &str = include_str!("../locales/en/main.ftl");

    /// Message ids defined at the top level of a Fluent file.
    fn keys(ftl: &str) -> BTreeSet<String> {
        ftl.lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_lowercase()))
            .filter_map(|l| l.split_once('='))
            .map(|(k, _)| k.trim().to_string())
            .collect()
    }

    #[test]
    fn both_locales_define_the_same_messages() {
        let ru = keys(RU_FTL);
        let en = keys(EN_FTL);
        assert!(ru.len() > 50, "parsed only {} keys", ru.len());
        let only_ru: Vec<_> = ru.difference(&en).collect();
        let only_en: Vec<_> = en.difference(&ru).collect();
        assert!(only_ru.is_empty(), "missing in en: {only_ru:?}");
        assert!(only_en.is_empty(), "missing in ru: {only_en:?}");
    }

    #[test]
    fn every_key_in_the_source_is_defined() {
        // Message ids are written as string literals in the engine; any literal shaped like an
        // id that is not defined would show the user a raw key.
        let defined = keys(RU_FTL);
        let src = include_str!("dialog/engine.rs");
        let mut missing = Vec::new();
        for lit in src.split('"').skip(1).step_by(2) {
            let looks_like_key = lit.contains('-')
                && lit
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && lit.starts_with(|c: char| c.is_ascii_lowercase())
                && !lit.ends_with('-');
            if looks_like_key && !defined.contains(lit) {
                missing.push(lit.to_string());
            }
        }
        assert!(missing.is_empty(), "undefined message ids: {missing:?}");
    }

    #[test]
    fn calendar_names_exist_in_both_languages() {
        for lang in [Lang::Ru, Lang::En] {
            for d in 1..=7 {
                assert!(!t(lang, &format!("weekday-{d}")).is_empty());
            }
            for m in 1..=12 {
                assert!(!t(lang, &format!("month-{m}")).is_empty());
            }
        }
        assert_eq!(t(Lang::Ru, "weekday-1"), "Пн");
        assert_eq!(t(Lang::En, "month-12"), "Dec");
    }

    #[test]
    fn russian_plurals_follow_the_rules() {
        let m = |n: i64| t_args(Lang::Ru, "minutes", &[("count", n.into())]);
        assert_eq!(m(1), "1 минута");
        assert_eq!(m(21), "21 минута");
        assert_eq!(m(3), "3 минуты");
        assert_eq!(m(24), "24 минуты");
        assert_eq!(m(5), "5 минут");
        assert_eq!(m(11), "11 минут");
        assert_eq!(m(45), "45 минут");
        let b = |n: i64| t_args(Lang::Ru, "my-count", &[("count", n.into())]);
        assert!(b(1).contains("1 запись"), "{}", b(1));
        assert!(b(2).contains("2 записи"), "{}", b(2));
        assert!(b(5).contains("5 записей"), "{}", b(5));
        let e = |n: i64| t_args(Lang::En, "minutes", &[("count", n.into())]);
        assert_eq!(e(1), "1 minute");
        assert_eq!(e(45), "45 minutes");
    }

    #[test]
    fn no_isolation_marks_around_arguments() {
        let s = t_args(Lang::En, "minutes", &[("count", 5.into())]);
        assert!(!s.contains('\u{2068}') && !s.contains('\u{2069}'), "{s:?}");
    }

    #[test]
    fn languages_are_picked_from_messenger_codes() {
        assert_eq!(Lang::from_code("en-US"), Some(Lang::En));
        assert_eq!(Lang::from_code("EN"), Some(Lang::En));
        assert_eq!(Lang::from_code("ru"), Some(Lang::Ru));
        assert_eq!(Lang::from_code("uk"), Some(Lang::Ru));
        assert_eq!(Lang::from_code("kk_KZ"), Some(Lang::Ru));
        assert_eq!(Lang::from_code("de"), None);
        assert_eq!(Lang::from_code(""), None);
        assert_eq!(Lang::pick(Some("de"), Lang::En), Lang::En);
        assert_eq!(Lang::pick(None, Lang::Ru), Lang::Ru);
        assert_eq!(Lang::pick(Some("en-GB"), Lang::Ru), Lang::En);
        assert_eq!(Lang::pick(Some("be"), Lang::En), Lang::Ru);
    }
}
