//! The console's page shell (navigation by role, the business, the user, sign-out, language)
//! and the small formatting every page shares: times in the business's zone, money, states in
//! words.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{Page, Visit};
use crate::i18n::{FluentValue, Lang, t, t_args};
use crate::store::ConsoleSession;

pub fn tr(lang: Lang, key: &str) -> String {
    t(lang, key)
}

pub fn tr_args(lang: Lang, key: &str, args: &[(&str, FluentValue<'_>)]) -> String {
    t_args(lang, key, args)
}

fn head(lang: Lang, title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " — zapis" }
            link rel="stylesheet" href="/console/assets/console.css";
            @if lang == Lang::En { meta name="language" content="en"; }
        }
    }
}

fn lang_code(lang: Lang) -> &'static str {
    match lang {
        Lang::Ru => "ru",
        Lang::En => "en",
    }
}

/// A full page for a signed-in user: `body` under the navigation of `current`.
pub fn page(visit: &Visit, current: Page, title: &str, path: &str, body: Markup) -> Response {
    let lang = visit.lang;
    let business = &*visit.business;
    let role = visit.session.user.role;
    let markup = html! {
        (DOCTYPE)
        html lang=(lang_code(lang)) {
            (head(lang, title))
            body {
                header.top {
                    span.brand { "zapis" }
                    span.business { (business.name) }
                    nav {
                        @for p in Page::ALL {
                            @if p != Page::Clients && p.allowed(role) {
                                a href=(format!("/console/b/{}/{}", business.id, p.slug()))
                                  class=[(p == current).then_some("current")] {
                                    (tr(lang, &format!("console-nav-{}", p.slug())))
                                }
                            }
                        }
                    }
                    span.user {
                        (visit.login()) " · " (tr(lang, &format!("console-role-{}", role.as_str())))
                    }
                    span.langs {
                        a href=(format!("/console/lang?to=ru&back={}", urlencode(path))) { "RU" }
                        " "
                        a href=(format!("/console/lang?to=en&back={}", urlencode(path))) { "EN" }
                    }
                    form.inline method="post" action="/console/logout" {
                        input type="hidden" name="csrf" value=(visit.session.csrf);
                        button type="submit" { (tr(lang, "console-sign-out")) }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    markup.into_response()
}

/// For a signed-in user none of whose businesses this deployment serves: who they are, why
/// there is nothing to show, and the way out.
pub fn no_business(lang: Lang, session: &ConsoleSession) -> Response {
    let text = tr(lang, "console-no-business");
    let markup = html! {
        (DOCTYPE)
        html lang=(lang_code(lang)) {
            (head(lang, &text))
            body {
                header.top {
                    span.brand { "zapis" }
                    span.user {
                        (session.user.login) " · "
                        (tr(lang, &format!("console-role-{}", session.user.role.as_str())))
                    }
                    form.inline method="post" action="/console/logout" {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button type="submit" { (tr(lang, "console-sign-out")) }
                    }
                }
                main { h1 { "zapis" } p.error role="alert" { (text) } }
            }
        }
    };
    (StatusCode::FORBIDDEN, markup).into_response()
}

pub fn login(lang: Lang, csrf: &str, error: Option<&str>) -> Response {
    let title = tr(lang, "console-sign-in");
    html! {
        (DOCTYPE)
        html lang=(lang_code(lang)) {
            (head(lang, &title))
            body.login {
                main {
                    h1 { "zapis" }
                    @if let Some(key) = error {
                        p.error role="alert" { (tr(lang, key)) }
                    }
                    form method="post" action="/console/login" {
                        input type="hidden" name="csrf" value=(csrf);
                        label { (tr(lang, "console-login")) input name="login" autocomplete="username" required maxlength="256"; }
                        label { (tr(lang, "console-password")) input name="password" type="password" autocomplete="current-password" required maxlength="256"; }
                        button type="submit" { (title) }
                    }
                    p.langs {
                        a href="/console/lang?to=ru&back=/console/login" { "Русский" }
                        " · "
                        a href="/console/lang?to=en&back=/console/login" { "English" }
                    }
                }
            }
        }
    }
    .into_response()
}

pub fn error_page(lang: Lang, status: StatusCode, key: &str) -> Response {
    let text = tr(lang, key);
    let markup = html! {
        (DOCTYPE)
        html lang=(lang_code(lang)) {
            (head(lang, &text))
            body.login {
                main {
                    h1 { (status.as_u16()) }
                    p { (text) }
                    p { a href="/console" { (tr(lang, "console-home")) } }
                }
            }
        }
    };
    (status, markup).into_response()
}

/// `2026-12-04 14:30` in the business's zone.
pub fn local_time(at: DateTime<Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
}

/// `a / b` as a whole percent, or a dash when there is nothing to divide.
pub fn percent(part: i64, whole: i64) -> String {
    if whole <= 0 {
        "—".into()
    } else {
        format!("{}%", (part * 100 + whole / 2) / whole)
    }
}

/// Percent-encodes a path for a query value.
pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Text that is already safe HTML (an SVG we drew ourselves).
pub fn trusted(svg: String) -> Markup {
    PreEscaped(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percents_are_whole_and_never_divide_by_zero() {
        assert_eq!(percent(1, 3), "33%");
        assert_eq!(percent(2, 3), "67%");
        assert_eq!(percent(5, 0), "—");
    }
}
