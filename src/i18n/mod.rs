//! User-facing text lives in `locales/` as Fluent files; this module picks the language and
//! looks messages up.
//!
//! A business's words are three layers, each overriding the one before: the built-in messages
//! (`locales/{ru,en}/*.ftl`, which speak of a salon), the terms of its kind
//! (`locales/{ru,en}/kinds/{clinic,school}.ftl`: `-master` becomes a doctor or a teacher), and
//! the business's own files from `business.locales`, read and checked at start.
//!
//! ```
//! use zapis::domain::BusinessKind;
//! use zapis::i18n::{Lang, Texts, t, t_args};
//! assert_eq!(t_args(Lang::Ru, "minutes", &[("count", 3.into())]), "3 минуты");
//! assert_eq!(t(Lang::En, "btn-book"), "📅 Book");
//! let clinic = Texts::builtin(BusinessKind::Clinic);
//! assert_eq!(clinic.t(Lang::Ru, "btn-any-master"), "Любой врач");
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use fluent_templates::fluent_bundle::concurrent::FluentBundle;
use fluent_templates::fluent_bundle::{FluentArgs, FluentResource};
use fluent_templates::{LanguageIdentifier, langid};
use serde::{Deserialize, Serialize};

use crate::domain::BusinessKind;

mod overrides;

pub use overrides::OverrideError;
use overrides::{check_override, parse_override};

/// A value for a message placeable: `"text".into()`, `5.into()`.
pub use fluent_templates::fluent_bundle::FluentValue;

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

/// The built-in messages of a language, before any kind or business layer.
fn builtin_sources(lang: Lang) -> [(&'static str, &'static str); 2] {
    match lang {
        Lang::Ru => [
            ("ru/main.ftl", include_str!("../../locales/ru/main.ftl")),
            (
                "ru/console.ftl",
                include_str!("../../locales/ru/console.ftl"),
            ),
        ],
        Lang::En => [
            ("en/main.ftl", include_str!("../../locales/en/main.ftl")),
            (
                "en/console.ftl",
                include_str!("../../locales/en/console.ftl"),
            ),
        ],
    }
}

/// The terms a kind of business says differently from a salon (the built-in messages' own).
fn kind_source(kind: BusinessKind, lang: Lang) -> Option<(&'static str, &'static str)> {
    Some(match (kind, lang) {
        (BusinessKind::Salon, _) => return None,
        (BusinessKind::Clinic, Lang::Ru) => (
            "ru/kinds/clinic.ftl",
            include_str!("../../locales/ru/kinds/clinic.ftl"),
        ),
        (BusinessKind::Clinic, Lang::En) => (
            "en/kinds/clinic.ftl",
            include_str!("../../locales/en/kinds/clinic.ftl"),
        ),
        (BusinessKind::School, Lang::Ru) => (
            "ru/kinds/school.ftl",
            include_str!("../../locales/ru/kinds/school.ftl"),
        ),
        (BusinessKind::School, Lang::En) => (
            "en/kinds/school.ftl",
            include_str!("../../locales/en/kinds/school.ftl"),
        ),
    })
}

const KINDS: [BusinessKind; 3] = [
    BusinessKind::Salon,
    BusinessKind::Clinic,
    BusinessKind::School,
];

fn builtin_resource(name: &str, source: &str) -> FluentResource {
    // Built-in files are part of the program; the tests parse every one of them.
    FluentResource::try_new(source.to_string())
        .unwrap_or_else(|(_, errors)| panic!("built-in {name}: {errors:?}"))
}

type Bundle = FluentBundle<FluentResource>;

/// The words one business's clients read: the built-ins, its kind's terms and its own
/// overrides, in both languages. Cheap to clone.
#[derive(Clone)]
pub struct Texts(Arc<Layers>);

struct Layers {
    kind: BusinessKind,
    ru: Bundle,
    en: Bundle,
    /// Messages and terms the business's own files replace.
    overridden: usize,
    /// What [`Texts::t_count`] answered, by language, message and count.
    counts: dashmap::DashMap<(Lang, &'static str, i64), String>,
}

/// Answers of [`Texts::t_count`] kept at most: counts shown are few (minutes of an hour,
/// hours of a day), and a bound keeps a stray one from growing the map.
const COUNTS_KEPT: usize = 512;

impl std::fmt::Debug for Texts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Texts")
            .field("kind", &self.0.kind)
            .field("overridden", &self.0.overridden)
            .finish()
    }
}

impl Default for Texts {
    fn default() -> Self {
        Texts::builtin(BusinessKind::default())
    }
}

static BUILTIN: LazyLock<[Texts; 3]> = LazyLock::new(|| KINDS.map(|k| Texts::build(k, [], [])));

impl Texts {
    /// The words of a kind of business with no overrides of its own.
    pub fn builtin(kind: BusinessKind) -> Texts {
        let i = KINDS.iter().position(|k| *k == kind).unwrap_or(0);
        BUILTIN[i].clone()
    }

    /// The words of a kind of business with its own `ru/*.ftl` and `en/*.ftl` from `dir`
    /// layered on top. Every override is checked against the built-in messages, so a typo in
    /// an id or a placeable stops the start instead of showing a client a raw key.
    pub fn load(kind: BusinessKind, dir: &Path) -> Result<Texts, OverrideError> {
        if !dir.is_dir() {
            return Err(OverrideError::NoDir {
                dir: dir.to_path_buf(),
            });
        }
        let mut layers: [Vec<FluentResource>; 2] = [Vec::new(), Vec::new()];
        let mut any = false;
        for (slot, lang) in [Lang::Ru, Lang::En].into_iter().enumerate() {
            let sub = dir.join(lang.code());
            if !sub.is_dir() {
                continue;
            }
            let read_err = |source| OverrideError::Read {
                path: sub.clone(),
                source,
            };
            let mut files = Vec::new();
            for entry in std::fs::read_dir(&sub).map_err(read_err)? {
                let path = entry.map_err(read_err)?.path();
                if path.is_file() && path.extension().is_some_and(|e| e == "ftl") {
                    files.push(path);
                }
            }
            files.sort();
            let mut seen: HashMap<String, PathBuf> = HashMap::new();
            for path in files {
                let source =
                    std::fs::read_to_string(&path).map_err(|source| OverrideError::Read {
                        path: path.clone(),
                        source,
                    })?;
                let resource = parse_override(&path, source)?;
                check_override(&path, &resource, &mut seen)?;
                any = true;
                layers[slot].push(resource);
            }
        }
        if !any {
            return Err(OverrideError::Empty {
                dir: dir.to_path_buf(),
            });
        }
        let [ru, en] = layers;
        Ok(Texts::build(kind, ru, en))
    }

    fn build(
        kind: BusinessKind,
        ru: impl IntoIterator<Item = FluentResource>,
        en: impl IntoIterator<Item = FluentResource>,
    ) -> Texts {
        let mut overridden = 0;
        let mut bundle = |lang: Lang, own: Vec<FluentResource>| {
            let mut b = Bundle::new_concurrent(vec![lang.id().clone()]);
            // Isolation marks (U+2068/U+2069) around placeables show up as garbage in some
            // messenger clients and break substring matching of phone numbers and prices.
            b.set_use_isolating(false);
            for (name, source) in builtin_sources(lang) {
                if let Err(errors) = b.add_resource(builtin_resource(name, source)) {
                    panic!("built-in {name} redefines messages: {errors:?}");
                }
            }
            if let Some((name, source)) = kind_source(kind, lang) {
                b.add_resource_overriding(builtin_resource(name, source));
            }
            for r in own {
                overridden += r.entries().count();
                b.add_resource_overriding(r);
            }
            b
        };
        let ru = bundle(Lang::Ru, ru.into_iter().collect());
        let en = bundle(Lang::En, en.into_iter().collect());
        Texts(Arc::new(Layers {
            kind,
            ru,
            en,
            overridden,
            counts: dashmap::DashMap::new(),
        }))
    }

    /// The kind of business these words are for.
    pub fn kind(&self) -> BusinessKind {
        self.0.kind
    }

    /// How many messages and terms the business's own files replace.
    pub fn overridden(&self) -> usize {
        self.0.overridden
    }

    fn bundle(&self, lang: Lang) -> &Bundle {
        match lang {
            Lang::Ru => &self.0.ru,
            Lang::En => &self.0.en,
        }
    }

    /// The message `key` without arguments.
    pub fn t(&self, lang: Lang, key: &str) -> String {
        self.t_args(lang, key, &[])
    }

    /// The message `key` with named arguments:
    /// `texts.t_args(lang, "minutes", &[("count", 5.into())])`.
    ///
    /// A key missing in `lang` falls back to Russian, and one missing everywhere yields the
    /// key itself: a user should see something rather than nothing. Debug builds (and so the
    /// tests) panic instead, so a missing translation or argument is caught before release.
    pub fn t_args(&self, lang: Lang, key: &str, args: &[(&str, FluentValue<'_>)]) -> String {
        let args: FluentArgs<'_> = args.iter().map(|(k, v)| (*k, v.clone())).collect();
        match self.format(lang, key, &args) {
            Ok(text) => text,
            Err(err) => {
                debug_assert!(false, "message {key:?} in {lang:?}: {err}");
                self.format(Lang::Ru, key, &args)
                    .unwrap_or_else(|_| key.to_string())
            }
        }
    }

    /// The message `key` with its one argument `count` (`minutes`, `hours`). A catalogue screen
    /// asks for the same few counts once a service, and each through Fluent's plural rules is
    /// a dozen allocations: answers are kept.
    pub fn t_count(&self, lang: Lang, key: &'static str, count: i64) -> String {
        if let Some(text) = self.0.counts.get(&(lang, key, count)) {
            return text.clone();
        }
        let text = self.t_args(lang, key, &[("count", count.into())]);
        if self.0.counts.len() < COUNTS_KEPT {
            self.0.counts.insert((lang, key, count), text.clone());
        }
        text
    }

    fn format(&self, lang: Lang, key: &str, args: &FluentArgs<'_>) -> Result<String, String> {
        let bundle = self.bundle(lang);
        let pattern = bundle
            .get_message(key)
            .and_then(|m| m.value())
            .ok_or("no such message")?;
        let mut errors = Vec::new();
        let text = bundle.format_pattern(pattern, Some(args), &mut errors);
        if errors.is_empty() {
            Ok(text.into_owned())
        } else {
            Err(format!("{errors:?}"))
        }
    }
}

/// The built-in (salon) message `key` without arguments: for texts no business words touch,
/// such as the console's.
pub fn t(lang: Lang, key: &str) -> String {
    t_args(lang, key, &[])
}

/// The built-in (salon) message `key` with named arguments:
/// `t_args(lang, "minutes", &[("count", 5.into())])`. See [`Texts::t_args`].
pub fn t_args(lang: Lang, key: &str, args: &[(&str, FluentValue<'_>)]) -> String {
    Texts::builtin(BusinessKind::Salon).t_args(lang, key, args)
}

#[cfg(test)]
mod tests;
