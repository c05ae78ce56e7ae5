use super::*;
use crate::i18n::Lang;
use crate::messenger::config::MaxMode;
use secrecy::ExposeSecret;
use url::Url;

/// Loads inside figment's Jail: it serialises tests that touch the environment and clears
/// `ZAPIS_*` variables another test may have set.
#[allow(clippy::result_large_err)] // Jail's closure signature is figment's, not ours.
fn load(toml: &str) -> Result<Config, ConfigError> {
    let mut result = None;
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file("zapis.toml", toml)?;
        result = Some(Config::load(Path::new("zapis.toml")));
        Ok(())
    });
    result.expect("the jail ran")
}

const MINIMAL: &str = r#"
[business]
name = "Салон"
timezone = "Asia/Yekaterinburg"
"#;

#[test]
fn privacy_consent_is_on_by_default_and_a_bad_policy_url_is_refused_by_name() {
    let c = load(MINIMAL).expect("loads");
    assert!(c.privacy.consent);
    assert_eq!(c.privacy.policy_url, None);
    let c = load(&format!(
        "{MINIMAL}\n[privacy]\nconsent = false\npolicy_url = \"https://salon.example/privacy\"\n"
    ))
    .expect("loads");
    assert!(!c.privacy.consent);
    assert_eq!(
        c.privacy.policy_url.as_ref().map(Url::as_str),
        Some("https://salon.example/privacy")
    );
    for bad in [
        "http://salon.example/privacy",
        "not a link",
        "mailto:a@b.ru",
    ] {
        let err = load(&format!("{MINIMAL}\n[privacy]\npolicy_url = \"{bad}\"\n"))
            .expect_err(bad)
            .to_string();
        assert!(err.contains("privacy.policy_url"), "{bad}: {err}");
    }
    let err = load(&format!("{MINIMAL}\n[privacy]\nconsent = \"yes\"\n"))
        .expect_err("a string")
        .to_string();
    assert!(err.contains("privacy.consent"), "{err}");
    let err = load(&format!("{MINIMAL}\n[privacy]\nconsnet = false\n"))
        .expect_err("a typo")
        .to_string();
    assert!(err.contains("consnet"), "{err}");
}

#[test]
fn retention_periods_parse_and_a_short_or_unknown_one_is_refused_by_name() {
    let c = load(&format!(
        "{MINIMAL}\n[retention]\ninbox_bodies = \"7d\"\nchat_log = \"off\"\n"
    ))
    .expect("loads");
    let day = std::time::Duration::from_secs(86_400);
    assert_eq!(c.retention.inbox_bodies, Some(7 * day));
    assert_eq!(c.retention.chat_log, None);
    assert_eq!(c.retention.dialogs, Some(365 * day));
    assert_eq!(
        load(MINIMAL).expect("loads").retention.chat_log,
        Some(180 * day)
    );
    for (toml, named) in [
        ("chat_log = \"10m\"", "shorter than an hour"),
        ("chat_logs = \"30d\"", "chat_logs"),
        ("dialogs = \"soon\"", "soon"),
    ] {
        let e = load(&format!("{MINIMAL}\n[retention]\n{toml}\n"))
            .expect_err(toml)
            .to_string();
        assert!(e.contains("retention") && e.contains(named), "{toml}: {e}");
    }
}

#[test]
fn alerts_by_email_load_and_a_wrong_setting_is_refused_by_its_key() {
    const EMAIL: &str = "[alerts.email]\nhost = \"smtp.example.ru\"\nfrom = \"alerts@salon.example\"\n\
                         to = [\"owner@salon.example\"]\n";
    let c = load(&format!(
        "{MINIMAL}\n{EMAIL}username = \"alerts\"\npassword = \"smtp-pass-0123\"\n"
    ))
    .expect("loads");
    let scrubbed = crate::secrets::Scrubber::from_config(&c)
        .scrub("535 auth failed for alerts / smtp-pass-0123")
        .into_owned();
    assert!(!scrubbed.contains("smtp-pass-0123"), "{scrubbed}");
    let email = c.alerts.email.expect("[alerts.email]");
    assert_eq!(email.security, crate::sync::SmtpSecurity::Starttls);
    assert_eq!(email.port(), 587);
    assert_eq!(
        email.password.map(|p| p.expose_secret().to_string()),
        Some("smtp-pass-0123".to_string())
    );
    for (extra, named) in [
        ("security = \"ssl\"", "alerts.email.security"),
        ("username = \"alerts\"", "alerts.email.password"),
        (
            "username = \"a\"\npassword = \"p\"\nsecurity = \"none\"",
            "alerts.email.security",
        ),
        ("port = 0", "alerts.email.port"),
        ("reply_to = \"x@y.z\"", "reply_to"),
    ] {
        let e = load(&format!("{MINIMAL}\n{EMAIL}{extra}\n"))
            .expect_err(extra)
            .to_string();
        assert!(e.contains(named), "{extra}: {e}");
    }
    for (section, named) in [
        (
            "[alerts.email]\nhost = \"h\"\nfrom = \"not an address\"\nto = [\"a@b.c\"]\n",
            "alerts.email.from",
        ),
        (
            "[alerts.email]\nhost = \"h\"\nfrom = \"a@b.c\"\nto = []\n",
            "alerts.email.to",
        ),
        (
            "[alerts.email]\nhost = \"h\"\nfrom = \"a@b.c\"\nto = [\"a@b.c\", \"@\"]\n",
            "alerts.email.to",
        ),
        (
            "[alerts.email]\nhost = \"h\"\nfrom = \"a@b.c\"\n",
            "missing field `to`",
        ),
    ] {
        let e = load(&format!("{MINIMAL}\n{section}"))
            .expect_err(section)
            .to_string();
        assert!(e.contains(named), "{section}: {e}");
        assert!(!e.contains("smtp-pass"), "{e}");
    }
}

#[test]
fn the_shipped_example_config_is_valid() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/zapis.example.toml"))
        .expect("zapis.example.toml is shipped");
    let c = load(&text).expect("the example loads");
    assert!(c.telegram.is_some() && c.max.is_some());
    assert_eq!(c.sync.alert_after, std::time::Duration::from_secs(2 * 3600));
}

#[test]
fn the_http_example_block_is_valid_when_uncommented() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/zapis.example.toml"))
        .expect("zapis.example.toml is shipped");
    let start = text.find("# [http]\n").expect("an [http] example");
    let block: String = text[start..]
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches("# "))
        // Its prose lines are not TOML; its keys and their trailing comments are.
        .filter(|l| {
            l.starts_with('[')
                || l.split_once(" = ")
                    .is_some_and(|(k, _)| k.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        })
        .map(|l| format!("{l}\n"))
        .collect();
    // The example's secret is a placeholder that is refused at start.
    let block = block.replace(
        "at-least-16-chars-of-A-Za-z0-9-_",
        "0f1e2d3c4b5a69788796a5b4",
    );
    let c = load(&format!("{MINIMAL}\n{block}")).expect("the [http] example loads");
    let http = c.http.expect("[http]");
    assert!(!http.metrics, "metrics stay off unless asked for");
    assert_eq!(
        http.metrics_listen,
        Some("127.0.0.1:9464".parse().expect("an address"))
    );
    let err = load(&format!(
        "{MINIMAL}\n[http]\nlisten = \"127.0.0.1:8080\"\n\
         webhook_secret = \"0f1e2d3c4b5a69788796a5b4\"\nmetrics = \"yes\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("metrics"), "{err}");
}

/// The commented `[onec]` block of the example, uncommented.
fn onec_example() -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/zapis.example.toml"))
        .expect("zapis.example.toml is shipped");
    let start = text.find("# [onec]\n").expect("an [onec] example");
    text[start..]
        .lines()
        .take_while(|l| l.starts_with("# "))
        .map(|l| l.trim_start_matches("# "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_onec_example_is_valid_in_both_modes() {
    let c = load(&format!("{MINIMAL}\n{}", onec_example())).expect("odata example");
    let onec = c.onec.expect("onec");
    assert_eq!(onec.mode, crate::accounting::config::OnecMode::Odata);
    assert_eq!(onec.objects.invoice, "Document_СчетНаОплатуПокупателю");
    assert_eq!(onec.services.len(), 1);
    let cml = onec_example()
        .replacen("mode = \"odata\"", "mode = \"commerceml\"", 1)
        .lines()
        .filter(|l| !l.starts_with("stock_check_interval"))
        .collect::<Vec<_>>()
        .join("\n");
    // The example's exchange password is a placeholder: refused, naming the key.
    let err = load(&format!("{MINIMAL}\n{cml}")).unwrap_err().to_string();
    assert!(err.contains("onec.commerceml.password"), "{err}");
    let cml = cml.replacen(
        "password = \"secret\"                   # placeholder",
        "password = \"Xq7-long-random-exchange-password\" #",
        1,
    );
    let err = load(&format!("{MINIMAL}\n{cml}")).unwrap_err().to_string();
    assert!(err.contains("`http`"), "{err}");
    let http = "[http]\nlisten = \"127.0.0.1:8080\"\nwebhook_secret = \"0123456789abcdef\"\n";
    let c = load(&format!("{MINIMAL}\n{http}\n{cml}")).expect("commerceml example");
    assert_eq!(
        c.onec.and_then(|o| o.commerceml).map(|m| m.file_limit),
        Some(1_048_576)
    );
}

#[test]
fn the_change_cutoff_is_a_duration_and_a_bad_one_names_the_key() {
    let c = load(MINIMAL).expect("minimal");
    assert_eq!(
        c.booking.change_cutoff, None,
        "no cut-off unless configured"
    );
    let with = |v: &str| {
        load(&format!("{MINIMAL}\n[booking]\nchange_cutoff = {v}\n")).map_err(|e| e.to_string())
    };
    let c = with("\"3h\"").expect("3h");
    assert_eq!(
        c.booking.change_cutoff,
        Some(std::time::Duration::from_secs(3 * 3600))
    );
    assert_eq!(
        with("\"90m\"").expect("90m").booking.change_cutoff,
        Some(std::time::Duration::from_secs(90 * 60))
    );
    for bad in ["\"soon\"", "\"3 hours\"", "3", "\"30d\""] {
        let err = with(bad).expect_err(bad);
        assert!(err.contains("booking.change_cutoff"), "{bad}: {err}");
    }
}

#[test]
fn onec_odata_without_organisation_names_the_key() {
    let broken = onec_example().replace("organisation_key = ", "# organisation_key = ");
    let err = load(&format!("{MINIMAL}\n{broken}"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("onec.organisation_key"), "{err}");
    let bad_service = onec_example().replace(
        "haircut = \"7a2b9c44-7b3c-11e6-8343-40167e2531c3\"",
        "haircut = \"not-a-guid\"",
    );
    let err = load(&format!("{MINIMAL}\n{bad_service}"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("onec.services.haircut"), "{err}");
    let no_section = format!("{MINIMAL}\n[onec]\nmode = \"commerceml\"\n");
    let err = load(&no_section).unwrap_err().to_string();
    assert!(err.contains("onec.commerceml"), "{err}");
}

#[test]
fn the_stock_check_interval_is_checked_at_start() {
    let c = load(&format!("{MINIMAL}\n{}", onec_example())).expect("odata example");
    let onec = c.onec.expect("onec");
    assert_eq!(
        onec.stock_check_every(),
        Some(std::time::Duration::from_secs(3600))
    );
    let with = |from: &str, to: &str| {
        load(&format!(
            "{MINIMAL}\n{}",
            onec_example().replacen(from, to, 1)
        ))
        .map_err(|e| e.to_string())
    };
    let c = with(
        "stock_check_interval = \"1h\"",
        "stock_check_interval = \"10m\"",
    )
    .expect("10m");
    assert_eq!(
        c.onec.and_then(|o| o.stock_check_every()),
        Some(std::time::Duration::from_secs(600))
    );
    let err = with(
        "stock_check_interval = \"1h\"",
        "stock_check_interval = \"10s\"",
    )
    .unwrap_err();
    assert!(err.contains("onec.stock_check_interval"), "{err}");
    let err = with("low_stock_threshold = 3", "").unwrap_err();
    assert!(err.contains("onec.stock_check_interval"), "{err}");
    assert!(err.contains("low_stock_threshold"), "{err}");
    let err = with(
        "stock_check_interval = \"1h\"",
        "stock_check_interval = \"hourly\"",
    )
    .unwrap_err();
    assert!(err.contains("stock_check_interval"), "{err}");
    let http = "[http]\nlisten = \"127.0.0.1:8080\"\nwebhook_secret = \"0123456789abcdef\"\n";
    let cml = onec_example().replacen("mode = \"odata\"", "mode = \"commerceml\"", 1);
    let err = load(&format!("{MINIMAL}\n{http}\n{cml}"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("onec.stock_check_interval"), "{err}");
    // Without a threshold and without the key there is no check, and no error.
    let none = onec_example()
        .replace("low_stock_threshold = 3", "")
        .replace("stock_check_interval = \"1h\"", "");
    let c = load(&format!("{MINIMAL}\n{none}")).expect("no stock check");
    assert_eq!(c.onec.and_then(|o| o.stock_check_every()), None);
}

#[test]
fn the_example_school_block_is_valid_when_uncommented() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/zapis.example.toml"))
        .expect("zapis.example.toml is shipped");
    let start = text
        .find("# [school.forms]")
        .expect("the school block is shipped");
    let block: String = text[start..]
        .lines()
        .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
        .map(|l| format!("{l}\n"))
        .collect();
    let school_kind = format!(
        "{}\n{block}",
        MINIMAL.replace("[business]", "[business]\nkind = \"school\"")
    );
    let c = load(&school_kind).expect("the school example loads");
    let school = c.school.expect("school section");
    assert_eq!(c.business.kind, BusinessKind::School);
    assert_eq!(school.courses[0].alfacrm_group_ids, vec![12, 13]);
    assert_eq!(school.alfacrm.unwrap().lead_sources["getcourse"], 9);
    let err = load(&format!("{MINIMAL}\n[school.alfacrm]\ncolour = 1\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("colour"), "{err}");
    let err = load(&MINIMAL.replace("[business]", "[business]\nkind = \"school\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("business.kind"), "{err}");
}

#[test]
fn business_words_follow_the_kind_and_a_locales_dir_beside_the_config() {
    use crate::i18n::Lang;
    let c = load(MINIMAL).expect("loads");
    assert_eq!(c.business.kind, BusinessKind::Salon);
    assert_eq!(
        c.business.texts.t(Lang::Ru, "btn-any-master"),
        "Любой мастер"
    );
    let clinic = MINIMAL.replace("[business]", "[business]\nkind = \"clinic\"");
    let c = load(&clinic).expect("a clinic loads");
    assert_eq!(c.business.kind, BusinessKind::Clinic);
    assert_eq!(c.business.texts.t(Lang::Ru, "btn-any-master"), "Любой врач");

    #[allow(clippy::result_large_err)]
    fn load_in_conf(toml: &str, ftl: &str) -> Result<Config, ConfigError> {
        let mut result = None;
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_dir("conf/words/ru")?;
            jail.create_file("conf/words/ru/main.ftl", ftl)?;
            jail.create_file("conf/zapis.toml", toml)?;
            result = Some(Config::load(Path::new("conf/zapis.toml")));
            Ok(())
        });
        result.expect("the jail ran")
    }
    let with_dir = clinic.replace("[business]", "[business]\nlocales = \"words\"");
    let c = load_in_conf(&with_dir, "btn-any-master = Кто угодно\n").expect("loads");
    assert_eq!(c.business.texts.t(Lang::Ru, "btn-any-master"), "Кто угодно");
    assert_eq!(c.business.texts.t(Lang::En, "btn-any-master"), "Any doctor");
    let err = load_in_conf(&with_dir, "btn-any-master = { $who }\n")
        .unwrap_err()
        .to_string();
    for want in [
        "business.locales",
        "words/ru/main.ftl",
        "`btn-any-master`",
        "$who",
    ] {
        assert!(err.contains(want), "{want:?} missing in {err}");
    }
    let err = load(&with_dir).unwrap_err().to_string();
    assert!(err.contains("business.locales"), "{err}");
    let err = load(&MINIMAL.replace("[business]", "[business]\nkind = \"spa\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("kind"), "{err}");
}

#[test]
fn minimal_config_fills_defaults() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.store.url, "sqlite://zapis.db");
    assert_eq!(c.business.timezone, chrono_tz::Asia::Yekaterinburg);
    assert_eq!(c.business.locale, Lang::Ru);
    assert_eq!(c.booking.system, BookingSystemKind::Sandbox);
    assert!(c.telegram.is_none());
}

#[test]
fn unknown_key_is_rejected_with_key_and_file_named() {
    let err = load(&format!("{MINIMAL}\ncolour = \"red\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("colour"), "{err}");
    assert!(err.contains("zapis.toml"), "{err}");
}

#[test]
fn telegram_limits_default_to_telegrams_and_a_zero_names_the_key() {
    let c = load(&format!("{MINIMAL}\n[telegram]\ntoken = \"1:A\"\n")).unwrap();
    let limits = c.telegram.unwrap().limits;
    assert!(limits.enabled);
    assert_eq!(limits.messages_per_second.get(), 30);
    assert_eq!(limits.chat_messages_per_second.get(), 1);
    assert_eq!(limits.group_messages_per_minute.get(), 20);
    let c = load(&format!(
        "{MINIMAL}\n[telegram]\ntoken = \"1:A\"\n[telegram.limits]\nenabled = false\nchat_burst = 5\n"
    ))
    .unwrap();
    let limits = c.telegram.unwrap().limits;
    assert!(!limits.enabled);
    assert_eq!(limits.chat_burst.get(), 5);
    let err = load(&format!(
        "{MINIMAL}\n[telegram]\ntoken = \"1:A\"\n[telegram.limits]\nmessages_per_second = 0\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("telegram.limits.messages_per_second"), "{err}");
}

#[test]
fn bad_timezone_names_the_key() {
    let err = load("[business]\nname = \"S\"\ntimezone = \"Mars/Olympus\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("business.timezone"), "{err}");
    assert!(err.contains("zapis.toml"), "{err}");
}

#[test]
// Jail's closure signature is figment's, not ours.
#[allow(clippy::result_large_err)]
fn env_overrides_the_file_and_secrets_never_print() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "zapis.toml",
            &format!("{MINIMAL}\n[telegram]\ntoken = \"from-file\"\n"),
        )?;
        jail.set_env("ZAPIS_TELEGRAM__TOKEN", "123:SECRET");
        jail.set_env("ZAPIS_TEST_POSTGRES_URL", "postgres://ignored");
        let c = Config::load(Path::new("zapis.toml")).expect("config loads");
        let tg = c.telegram.as_ref().expect("telegram section");
        assert_eq!(tg.token.expose_secret(), "123:SECRET");
        assert!(!format!("{c:?}").contains("SECRET"));
        Ok(())
    });
}

#[test]
fn yclients_needs_its_section_and_reads_defaults() {
    let err = load(&format!("{MINIMAL}\n[booking]\nsystem = \"yclients\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("booking.yclients"), "{err}");
    let c = load(&format!(
        "{MINIMAL}\n[booking]\nsystem = \"yclients\"\n[booking.yclients]\ncompany_id = 42\npartner_token = \"PT-SECRET\"\n"
    ))
    .unwrap();
    let y = c.booking.yclients.as_ref().expect("section");
    assert_eq!(y.company_id, 42);
    assert_eq!(y.base_url.as_str(), "https://api.yclients.com/");
    assert_eq!(y.slot_cache_ttl_secs, 30);
    assert_eq!(y.rate_limit_per_second, 5);
    assert_eq!(y.partner_token.expose_secret(), "PT-SECRET");
    assert!(!format!("{c:?}").contains("PT-SECRET"));
    let err = load(&format!(
        "{MINIMAL}\n[booking]\nsystem = \"yclients\"\n[booking.yclients]\ncompany_id = 1\npartner_token = \"x\"\nrate_limit_per_second = 50\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("rate_limit_per_second"), "{err}");
    let err = load(&format!(
        "{MINIMAL}\n[booking]\nsystem = \"yclients\"\n[booking.yclients]\ncompany_id = 1\npartner_token = \"x\"\ncolour = 1\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn max_section_reads_defaults_and_checks_webhook_settings() {
    let c = load(&format!("{MINIMAL}\n[max]\ntoken = \"MAX-SECRET\"\n")).unwrap();
    let m = c.max.as_ref().expect("max section");
    assert_eq!(m.api_url.as_str(), "https://platform-api2.max.ru/");
    assert_eq!(m.mode, MaxMode::Polling);
    assert!(!format!("{c:?}").contains("MAX-SECRET"));
    let err = load(&format!(
        "{MINIMAL}\n[max]\ntoken = \"t\"\nmode = \"webhook\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("max.webhook_url"), "{err}");
    let err = load(&format!(
        "{MINIMAL}\n[max]\ntoken = \"t\"\nwebhook_secret = \"no spaces!\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("max.webhook_secret"), "{err}");
    let err = load(&format!(
        "{MINIMAL}\n[max]\ntoken = \"t\"\nwebhook_url = \"http://x.ru/h\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("https"), "{err}");
    let err = load(&format!(
        "{MINIMAL}\n[max]\ntoken = \"t\"\nca_cert = \"/nonexistent/ca.pem\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("max.ca_cert"), "{err}");
    let system_roots = "/etc/ssl/certs/ca-certificates.crt";
    if Path::new(system_roots).exists() {
        let c = load(&format!(
            "{MINIMAL}\n[max]\ntoken = \"t\"\nca_cert = \"{system_roots}\"\n"
        ))
        .unwrap();
        assert!(c.max.unwrap().ca_cert.is_some());
    }
    let err = load(&format!("{MINIMAL}\n[max]\ntoken = \"t\"\ncolour = 1\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("colour"), "{err}");
    let c = load(&format!(
        "{MINIMAL}\n[max]\ntoken = \"t\"\nmode = \"webhook\"\nwebhook_url = \"https://zapis.example/webhooks/max/abcde\"\nwebhook_secret = \"abc_DEF-123\"\n"
    ))
    .unwrap();
    assert_eq!(c.max.unwrap().mode, MaxMode::Webhook);
}

#[test]
fn dikidi_needs_its_section_and_reads_defaults() {
    use crate::booking::dikidi::DikidiMode;
    let err = load(&format!("{MINIMAL}\n[booking]\nsystem = \"dikidi\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("booking.dikidi"), "{err}");
    let c = load(&format!(
        "{MINIMAL}\n[booking]\nsystem = \"dikidi\"\n[booking.dikidi]\ncompany_id = 550001\n"
    ))
    .unwrap();
    let d = c.booking.dikidi.as_ref().expect("section");
    assert_eq!(d.mode, DikidiMode::Widget);
    assert_eq!(d.base_url.as_str(), "https://dikidi.net/");
    assert_eq!(d.poll_interval_secs, 300);
    let err = load(&format!(
        "{MINIMAL}\n[booking]\nsystem = \"dikidi\"\n[booking.dikidi]\ncompany_id = 1\nmode = \"partner\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("partner_token"), "{err}");
    let c = load(&format!(
        "{MINIMAL}\n[booking]\nsystem = \"dikidi\"\n[booking.dikidi]\ncompany_id = 1\nmode = \"partner\"\npartner_token = \"DK-SECRET\"\n"
    ))
    .unwrap();
    assert!(!format!("{c:?}").contains("DK-SECRET"));
}

#[test]
fn missing_file_is_named() {
    let err = Config::load(Path::new("/nonexistent/zapis.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nonexistent/zapis.toml"), "{err}");
}

#[test]
fn demo_config_is_valid() {
    let c = Config::demo("sqlite::memory:");
    assert_eq!(c.store.url, "sqlite::memory:");
    assert_eq!(c.business.timezone, chrono_tz::Europe::Moscow);
}

/// Today's single file taken apart: what a process has once in the deployment, what a business
/// sets up for itself in its settings, and every value where the file put it.
#[test]
fn the_single_file_splits_into_the_deployment_and_the_business() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/zapis.example.toml"))
        .expect("zapis.example.toml is shipped");
    let extra = "\n[http]\nlisten = \"127.0.0.1:8080\"\nwebhook_secret = \"0123456789abcdef\"\n\
                 [log]\nformat = \"json\"\n\
                 [support]\ntelegram_chat_id = -100123\n";
    let c = load(&format!("{text}{extra}")).expect("the example with every section loads");
    let (tg_token, max_token) = (
        c.telegram
            .as_ref()
            .map(|t| t.token.expose_secret().to_string()),
        c.max.as_ref().map(|m| m.token.expose_secret().to_string()),
    );
    let (deployment, business) = c.into_parts();

    assert_eq!(deployment.store.url, "sqlite://zapis.db");
    assert_eq!(
        deployment.http.as_ref().map(|h| h.listen),
        Some("127.0.0.1:8080".parse().expect("an address"))
    );
    assert_eq!(deployment.log.format, LogFormat::Json);
    assert_eq!(deployment.sync.workers, 2);
    assert_eq!(
        deployment.sync.alert_after,
        std::time::Duration::from_secs(2 * 3600)
    );
    let day = std::time::Duration::from_secs(24 * 3600);
    assert_eq!(deployment.retention.chat_log, Some(180 * day));
    assert!(deployment.alerts.webhook_url.is_none());

    assert_eq!(business.business.id, "default");
    assert_eq!(business.business.name, "Салон «Лилия»");
    assert_eq!(business.booking.system, BookingSystemKind::Sandbox);
    assert_eq!(
        business
            .telegram
            .as_ref()
            .map(|t| t.token.expose_secret().to_string()),
        tg_token
    );
    assert!(tg_token.is_some());
    assert_eq!(
        business
            .max
            .as_ref()
            .map(|m| m.token.expose_secret().to_string()),
        max_token
    );
    assert!(max_token.is_some());
    assert!(business.reminders.enabled);
    assert!(business.privacy.consent);
    assert_eq!(
        business.support.as_ref().and_then(|s| s.telegram_chat_id),
        Some(-100123)
    );
    assert!(business.crm.is_none() && business.school.is_none() && business.onec.is_none());

    let (deployment, business) = Config::demo("sqlite::memory:").into_parts();
    assert_eq!(deployment.store.url, "sqlite::memory:");
    assert!(deployment.http.is_none());
    assert_eq!(business.business.timezone, chrono_tz::Europe::Moscow);
    assert!(business.telegram.is_none() && business.max.is_none());
}

#[test]
fn telegram_webhook_mode_needs_an_https_address_a_secret_and_the_http_server() {
    let http =
        "[http]\nlisten = \"127.0.0.1:8080\"\nwebhook_secret = \"0f1e2d3c4b5a69788796a5b4\"\n";
    let tg = "[telegram]\ntoken = \"1:A\"\nmode = \"webhook\"\n";
    let url = "webhook_url = \"https://hub.example/webhooks/telegram/0f1e2d3c4b5a69788796a5b4\"\n";
    let secret = "webhook_secret = \"tg_secret-0123\"\n";
    let ok = load(&format!("{MINIMAL}\n{http}\n{tg}{url}{secret}")).expect("loads");
    assert_eq!(
        ok.telegram.expect("[telegram]").mode,
        crate::messenger::config::TelegramMode::Webhook
    );
    for (toml, key) in [
        (
            format!("{MINIMAL}\n{http}\n{tg}{secret}"),
            "telegram.webhook_url",
        ),
        (
            format!("{MINIMAL}\n{http}\n{tg}{url}"),
            "telegram.webhook_secret",
        ),
        (
            format!(
                "{MINIMAL}\n{http}\n{tg}{}{secret}",
                url.replace("https", "http")
            ),
            "telegram.webhook_url",
        ),
        (
            format!("{MINIMAL}\n{http}\n{tg}{url}webhook_secret = \"has spaces\"\n"),
            "telegram.webhook_secret",
        ),
        (format!("{MINIMAL}\n{tg}{url}{secret}"), "`http`"),
    ] {
        let err = load(&toml).expect_err(key).to_string();
        assert!(err.contains(key), "{key}: {err}");
        assert!(!err.contains("tg_secret-0123"), "{err}");
    }
}
