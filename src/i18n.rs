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

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use fluent_syntax::ast;
use fluent_templates::fluent_bundle::concurrent::FluentBundle;
use fluent_templates::fluent_bundle::{FluentArgs, FluentResource};
use fluent_templates::{LanguageIdentifier, langid};
use serde::{Deserialize, Serialize};

use crate::domain::BusinessKind;

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
            ("ru/main.ftl", include_str!("../locales/ru/main.ftl")),
            ("ru/console.ftl", include_str!("../locales/ru/console.ftl")),
        ],
        Lang::En => [
            ("en/main.ftl", include_str!("../locales/en/main.ftl")),
            ("en/console.ftl", include_str!("../locales/en/console.ftl")),
        ],
    }
}

/// The terms a kind of business says differently from a salon (the built-in messages' own).
fn kind_source(kind: BusinessKind, lang: Lang) -> Option<(&'static str, &'static str)> {
    Some(match (kind, lang) {
        (BusinessKind::Salon, _) => return None,
        (BusinessKind::Clinic, Lang::Ru) => (
            "ru/kinds/clinic.ftl",
            include_str!("../locales/ru/kinds/clinic.ftl"),
        ),
        (BusinessKind::Clinic, Lang::En) => (
            "en/kinds/clinic.ftl",
            include_str!("../locales/en/kinds/clinic.ftl"),
        ),
        (BusinessKind::School, Lang::Ru) => (
            "ru/kinds/school.ftl",
            include_str!("../locales/ru/kinds/school.ftl"),
        ),
        (BusinessKind::School, Lang::En) => (
            "en/kinds/school.ftl",
            include_str!("../locales/en/kinds/school.ftl"),
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
}

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

// ---- business overrides ------------------------------------------------------------------

/// Why a business's own message files cannot be used. Each names the file and the message.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error("{dir} is not a directory")]
    NoDir { dir: PathBuf },
    #[error("{dir} holds no ru/*.ftl or en/*.ftl files")]
    Empty { dir: PathBuf },
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: message `{id}` (line {line}): Fluent syntax error: {message}")]
    Syntax {
        path: PathBuf,
        id: String,
        line: usize,
        message: String,
    },
    #[error(
        "{path}: message `{id}` is not a built-in message or term, so nothing would show it \
         (a typo in the id?)"
    )]
    UnknownId { path: PathBuf, id: String },
    #[error(
        "{path}: message `{id}`: broken placeholder `{{ ${var} }}`: the bot gives this message {given}"
    )]
    UnknownVariable {
        path: PathBuf,
        id: String,
        var: String,
        given: String,
    },
    #[error("{path}: message `{id}`: broken placeholder `{{ {reference} }}`: {why}")]
    BrokenReference {
        path: PathBuf,
        id: String,
        reference: String,
        why: &'static str,
    },
    #[error("{path}: message `{id}` has no text of its own, only attributes")]
    NoValue { path: PathBuf, id: String },
    #[error("{path}: message `{id}` is defined twice (also in {other})")]
    Duplicate {
        path: PathBuf,
        id: String,
        other: PathBuf,
    },
}

/// Every built-in message and term (terms with their leading `-`) with the variables the bot
/// gives it, across both languages and all kinds.
static BUILTIN_IDS: LazyLock<HashMap<String, BTreeSet<String>>> = LazyLock::new(|| {
    let mut ids: HashMap<String, BTreeSet<String>> = HashMap::new();
    for lang in [Lang::Ru, Lang::En] {
        let kinds = KINDS.iter().filter_map(|k| kind_source(*k, lang));
        for (name, source) in builtin_sources(lang).into_iter().chain(kinds) {
            let resource = builtin_resource(name, source);
            for entry in resource.entries() {
                if let Some((id, patterns, _)) = entry_parts(entry) {
                    let mut refs = Refs::default();
                    patterns.into_iter().for_each(|p| refs.pattern(p));
                    ids.entry(id).or_default().extend(refs.vars);
                }
            }
        }
    }
    ids
});

/// An entry's id (`-term` for terms), its patterns, and whether it has a value.
fn entry_parts<'a>(
    entry: &'a ast::Entry<&'a str>,
) -> Option<(String, Vec<&'a ast::Pattern<&'a str>>, bool)> {
    match entry {
        ast::Entry::Message(m) => {
            let mut patterns: Vec<_> = m.value.iter().collect();
            patterns.extend(m.attributes.iter().map(|a| &a.value));
            Some((m.id.name.to_string(), patterns, m.value.is_some()))
        }
        ast::Entry::Term(t) => {
            let mut patterns = vec![&t.value];
            patterns.extend(t.attributes.iter().map(|a| &a.value));
            Some((format!("-{}", t.id.name), patterns, true))
        }
        _ => None,
    }
}

/// What a pattern refers to: variables, other messages and terms, functions.
#[derive(Default)]
struct Refs {
    vars: Vec<String>,
    messages: Vec<String>,
    terms: Vec<String>,
    functions: Vec<String>,
}

impl Refs {
    fn pattern(&mut self, p: &ast::Pattern<&str>) {
        for element in &p.elements {
            if let ast::PatternElement::Placeable { expression } = element {
                self.expression(expression);
            }
        }
    }

    fn expression(&mut self, e: &ast::Expression<&str>) {
        match e {
            ast::Expression::Select { selector, variants } => {
                self.inline(selector);
                for v in variants {
                    self.pattern(&v.value);
                }
            }
            ast::Expression::Inline(i) => self.inline(i),
        }
    }

    fn inline(&mut self, i: &ast::InlineExpression<&str>) {
        match i {
            ast::InlineExpression::StringLiteral { .. }
            | ast::InlineExpression::NumberLiteral { .. } => {}
            ast::InlineExpression::FunctionReference { id, arguments } => {
                self.functions.push(id.name.to_string());
                self.arguments(arguments);
            }
            ast::InlineExpression::MessageReference { id, .. } => {
                self.messages.push(id.name.to_string());
            }
            ast::InlineExpression::TermReference { id, arguments, .. } => {
                self.terms.push(format!("-{}", id.name));
                if let Some(a) = arguments {
                    self.arguments(a);
                }
            }
            ast::InlineExpression::VariableReference { id } => self.vars.push(id.name.to_string()),
            ast::InlineExpression::Placeable { expression } => self.expression(expression),
        }
    }

    fn arguments(&mut self, a: &ast::CallArguments<&str>) {
        a.positional.iter().for_each(|i| self.inline(i));
        a.named.iter().for_each(|n| self.inline(&n.value));
    }
}

fn parse_override(path: &Path, source: String) -> Result<FluentResource, OverrideError> {
    match FluentResource::try_new(source.clone()) {
        Ok(r) => Ok(r),
        Err((_, errors)) => {
            let first = errors.first();
            // The slice starts at the broken entry; the position is where the parser gave up,
            // which may be lines further down, in the next message.
            let at = first
                .map_or(0, |e| e.slice.as_ref().map_or(e.pos.start, |s| s.start))
                .min(source.len());
            let (line, id) = entry_at(&source, at);
            Err(OverrideError::Syntax {
                path: path.to_path_buf(),
                id,
                line,
                message: first.map_or_else(|| "unreadable".to_string(), ToString::to_string),
            })
        }
    }
}

/// The line of byte `at` and the id of the message that line belongs to: the nearest
/// `id =` at or above it.
fn entry_at(source: &str, at: usize) -> (usize, String) {
    let head = source.get(..at).unwrap_or(source);
    let line = head.matches('\n').count() + 1;
    let id = source
        .lines()
        .take(line)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .find_map(|l| {
            let (id, _) = l.split_once('=')?;
            let id = id.trim_end();
            let name = id.strip_prefix('-').unwrap_or(id);
            let ok = !l.starts_with(char::is_whitespace)
                && name.starts_with(|c: char| c.is_ascii_alphabetic())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            ok.then(|| id.to_string())
        })
        .unwrap_or_else(|| "(before the first message)".to_string());
    (line, id)
}

fn check_override(
    path: &Path,
    resource: &FluentResource,
    seen: &mut HashMap<String, PathBuf>,
) -> Result<(), OverrideError> {
    let path_buf = || path.to_path_buf();
    for entry in resource.entries() {
        let Some((id, patterns, has_value)) = entry_parts(entry) else {
            continue;
        };
        let Some(given) = BUILTIN_IDS.get(&id) else {
            return Err(OverrideError::UnknownId {
                path: path_buf(),
                id,
            });
        };
        if let Some(other) = seen.insert(id.clone(), path_buf()) {
            return Err(OverrideError::Duplicate {
                path: path_buf(),
                id,
                other,
            });
        }
        if !has_value {
            return Err(OverrideError::NoValue {
                path: path_buf(),
                id,
            });
        }
        let mut refs = Refs::default();
        patterns.into_iter().for_each(|p| refs.pattern(p));
        if let Some(var) = refs.vars.into_iter().find(|v| !given.contains(v)) {
            let given = if given.is_empty() {
                "no values".to_string()
            } else {
                let names: Vec<String> = given.iter().map(|v| format!("${v}")).collect();
                format!("only {}", names.join(", "))
            };
            return Err(OverrideError::UnknownVariable {
                path: path_buf(),
                id,
                var,
                given,
            });
        }
        let broken = |reference: String, why| OverrideError::BrokenReference {
            path: path_buf(),
            id: id.clone(),
            reference,
            why,
        };
        if let Some(f) = refs.functions.into_iter().next() {
            return Err(broken(format!("{f}(…)"), "functions are not available"));
        }
        if let Some(m) = refs
            .messages
            .into_iter()
            .find(|m| !BUILTIN_IDS.contains_key(m))
        {
            return Err(broken(m, "there is no such built-in message"));
        }
        if let Some(t) = refs
            .terms
            .into_iter()
            .find(|t| !BUILTIN_IDS.contains_key(t))
        {
            return Err(broken(t, "there is no such built-in term"));
        }
    }
    Ok(())
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
        // Every file of the engine, read from disk so a new one cannot be left out.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/dialog/engine");
        let mut sources = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("the engine's folder") {
            let path = entry.expect("an entry").path();
            if path.extension().is_some_and(|e| e == "rs") {
                sources.push(std::fs::read_to_string(&path).expect("an engine file"));
            }
        }
        assert!(
            sources.len() >= 8,
            "read only {} engine files",
            sources.len()
        );
        let mut missing = Vec::new();
        for lit in sources
            .iter()
            .flat_map(|src| src.split('"').skip(1).step_by(2))
        {
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

    /// Every message of every kind in both languages formats without an error, given the
    /// variables the bot gives it.
    #[test]
    fn every_message_formats_in_every_kind() {
        for kind in KINDS {
            let texts = Texts::builtin(kind);
            for lang in [Lang::Ru, Lang::En] {
                for (id, vars) in BUILTIN_IDS.iter().filter(|(id, _)| !id.starts_with('-')) {
                    let args: FluentArgs<'_> = vars
                        .iter()
                        .map(|v| (v.as_str(), FluentValue::from(2)))
                        .collect();
                    let text = texts.format(lang, id, &args);
                    assert!(text.is_ok(), "{kind:?} {lang:?} {id}: {text:?}");
                }
            }
        }
    }

    #[test]
    fn kinds_change_only_built_in_terms() {
        for kind in KINDS {
            for lang in [Lang::Ru, Lang::En] {
                let Some((name, source)) = kind_source(kind, lang) else {
                    continue;
                };
                let resource = builtin_resource(name, source);
                assert!(
                    resource
                        .entries()
                        .filter_map(entry_parts)
                        .all(|(id, _, _)| id.starts_with('-')),
                    "{name} defines a message, not only terms"
                );
                check_override(Path::new(name), &resource, &mut HashMap::new())
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    #[test]
    fn each_kind_has_its_words() {
        let words = |kind, lang, key: &str| Texts::builtin(kind).t(lang, key);
        use BusinessKind::*;
        assert_eq!(words(Salon, Lang::Ru, "btn-any-master"), "Любой мастер");
        assert_eq!(words(Clinic, Lang::Ru, "btn-any-master"), "Любой врач");
        assert_eq!(
            words(School, Lang::Ru, "btn-any-master"),
            "Любой преподаватель"
        );
        assert_eq!(words(Clinic, Lang::En, "btn-any-master"), "Any doctor");
        assert_eq!(words(School, Lang::En, "btn-any-master"), "Any teacher");
        assert_eq!(words(Clinic, Lang::En, "btn-my"), "🗂 My appointments");
        assert_eq!(words(Salon, Lang::En, "btn-my"), "🗂 My bookings");
        assert_eq!(words(School, Lang::Ru, "choose-service"), "Выберите курс:");
        assert!(words(Clinic, Lang::Ru, "my-item-call-nophone").ends_with("позвоните в клинику."));
        assert!(words(Salon, Lang::Ru, "my-item-call-nophone").ends_with("позвоните в салон."));
        assert!(words(Clinic, Lang::Ru, "my-item-call-nophone").contains("до приёма мало"));
        // The free functions are the salon's words.
        assert_eq!(t(Lang::Ru, "btn-any-master"), "Любой мастер");
    }

    /// A directory with `files` (`ru/a.ftl`, text) in it.
    fn overrides(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for (path, text) in files {
            let path = dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("lang dir");
            std::fs::write(path, text).expect("override file");
        }
        dir
    }

    fn load(files: &[(&str, &str)]) -> Result<Texts, OverrideError> {
        let dir = overrides(files);
        Texts::load(BusinessKind::Clinic, dir.path())
    }

    #[test]
    fn overrides_win_over_kind_and_built_ins() {
        let texts = load(&[
            ("ru/main.ftl", "greeting = Привет из { $business }!\n"),
            (
                "en/terms.ftl",
                "-master = { $case ->\n   *[nom] physician\n    [label] Physician\n}\n",
            ),
            ("en/notes.txt", "not a Fluent file, ignored"),
        ])
        .expect("valid overrides");
        assert_eq!(texts.kind(), BusinessKind::Clinic);
        assert_eq!(texts.overridden(), 2);
        let greeting = texts.t_args(Lang::Ru, "greeting", &[("business", "Дента".into())]);
        assert_eq!(greeting, "Привет из Дента!");
        // What is not overridden keeps the kind's words, and English keeps its greeting.
        assert_eq!(texts.t(Lang::Ru, "btn-any-master"), "Любой врач");
        assert!(
            texts
                .t_args(Lang::En, "greeting", &[("business", "Denta".into())])
                .starts_with("Hello!")
        );
        assert_eq!(texts.t(Lang::En, "btn-any-master"), "Any physician");
    }

    #[track_caller]
    fn fails(files: &[(&str, &str)], want: &[&str]) {
        let err = load(files)
            .expect_err("the override is refused")
            .to_string();
        for w in want {
            assert!(err.contains(w), "{w:?} missing in: {err}");
        }
    }

    #[test]
    fn a_bad_override_is_refused_naming_the_file_and_the_message() {
        // An id the bot never shows.
        fn_bad_id();
        // Fluent that does not parse.
        fails(
            &[(
                "ru/b.ftl",
                "menu = Меню\ngreeting = Привет, { $business\nhelp = Справка\n",
            )],
            &["ru/b.ftl", "`greeting` (line 2)", "syntax error"],
        );
        // A variable the bot does not give this message.
        fails(
            &[("en/c.ftl", "greeting = Hello, { $client }!\n")],
            &["en/c.ftl", "`greeting`", "$client", "only $business"],
        );
        // A selector over a variable the message does not get.
        fails(
            &[("ru/d.ftl", "menu = { $count ->\n   *[other] Меню\n}\n")],
            &["ru/d.ftl", "`menu`", "$count", "no values"],
        );
        // A term or message that does not exist.
        fails(
            &[("ru/e.ftl", "menu = Меню { -salon }\n")],
            &["ru/e.ftl", "`menu`", "-salon", "no such built-in term"],
        );
        fails(
            &[("ru/f.ftl", "menu = { greting }\n")],
            &["ru/f.ftl", "`menu`", "greting", "no such built-in message"],
        );
        fails(
            &[("ru/g.ftl", "menu = { NUMBER(1) }\n")],
            &["ru/g.ftl", "`menu`", "functions"],
        );
        // Two files of one language defining one message.
        fails(
            &[("ru/h1.ftl", "menu = А\n"), ("ru/h2.ftl", "menu = Б\n")],
            &["ru/h2.ftl", "`menu`", "twice", "ru/h1.ftl"],
        );
        // Nothing to read.
        fails(
            &[("de/x.ftl", "menu = Menü\n")],
            &["no ru/*.ftl or en/*.ftl"],
        );
        let missing = Texts::load(BusinessKind::Salon, Path::new("/nonexistent/zapis-words"));
        assert!(missing.is_err_and(|e| e.to_string().contains("/nonexistent/zapis-words")));
    }

    fn fn_bad_id() {
        fails(
            &[("ru/a.ftl", "greeting = Привет!\ngreting = Опечатка\n")],
            &["ru/a.ftl", "`greting`", "not a built-in message"],
        );
    }
}
