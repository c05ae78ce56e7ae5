//! The built-in messages agree across languages and kinds, and business overrides are checked.

use std::collections::BTreeSet;

use super::overrides::{BUILTIN_IDS, check_override, entry_parts};
use super::*;

const RU_FTL: &str = include_str!("../../locales/ru/main.ftl");
const EN_FTL: &str = include_str!("../../locales/en/main.ftl");

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

/// Kept counts answer what Fluent does, asked once or again, in each language, and each
/// business's words keep their own: one business's override is not another's answer.
#[test]
fn kept_counts_answer_as_fluent_does_and_per_business() {
    let builtin = Texts::builtin(BusinessKind::Salon);
    for _ in 0..2 {
        for n in [0, 1, 2, 3, 5, 11, 21, 24, 45, 90] {
            for lang in [Lang::Ru, Lang::En] {
                for key in ["minutes", "hours"] {
                    assert_eq!(
                        builtin.t_count(lang, key, n),
                        builtin.t_args(lang, key, &[("count", n.into())]),
                        "{key} {n} {lang:?}"
                    );
                }
            }
        }
    }
    assert_eq!(builtin.t_count(Lang::Ru, "hours", 2), "2 часа");
    let own = load(&[(
        "ru/main.ftl",
        "minutes = { $count ->\n    [one] { $count } мин.\n   *[other] { $count } мин.\n}\n",
    )])
    .expect("valid overrides");
    assert_eq!(own.t_count(Lang::Ru, "minutes", 45), "45 мин.");
    assert_eq!(builtin.t_count(Lang::Ru, "minutes", 45), "45 минут");
    assert_eq!(own.t_count(Lang::Ru, "minutes", 45), "45 мин.");
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
