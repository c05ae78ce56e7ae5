//! `zapis demo` driven through stdin, as a person at a terminal would: book a slot in the
//! sandbox salon and see it confirmed and stored.

use crate::support::app::Settings;
use crate::support::bid;
use std::io::Write;
use std::process::{Command, Stdio};

use zapis::domain::BookingStatus;
use zapis::store::Store;
use zapis::store::test_support::raw_pool;

#[tokio::test]
async fn the_terminal_demo_books_a_slot() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(["demo", "--store", &url, "--start", "src_terminal"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("zapis demo starts");
    // Book → first service → first master → first free day → first time → consent (a phone
    // typed there is not taken) → phone → name → confirm.
    let script = "1\n1\n1\n1\n1\n8 912 345-67-89\n1\nне телефон\n8 912 345-67-89\nАнна\n1\n/quit\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("[1] 📅 Записаться"), "{stdout}");
    assert!(stdout.contains("Женская стрижка"), "{stdout}");
    // The consent comes before the phone is asked, and a phone typed on it is refused.
    let consent = stdout.find("Согласен").expect("the consent screen");
    let refused = stdout.find("Номер не сохранён").expect("the refusal");
    let asked = stdout
        .find("Оставьте номер телефона")
        .expect("the phone step");
    assert!(consent < refused && refused < asked, "{stdout}");
    // A bad phone is asked again with an example before the good one is taken.
    assert!(
        stdout.contains("Не получилось распознать номер"),
        "{stdout}"
    );
    assert!(stdout.contains("Готово, вы записаны"), "{stdout}");

    let store = Store::connect(&url).await.unwrap();
    let bookings = store.bookings(&bid("default")).await.unwrap();
    assert_eq!(bookings.len(), 1);
    assert_eq!(bookings[0].status, BookingStatus::Booked);
    assert_eq!(bookings[0].client_phone.as_str(), "+79123456789");
    assert_eq!(bookings[0].source.payload.as_deref(), Some("src_terminal"));
    assert_eq!(bookings[0].source.channel, zapis::domain::Channel::Console);
    let consent = store
        .client_consent(&bid("default"), &bookings[0].client_phone)
        .await
        .unwrap()
        .expect("the consent is stored with the client");
    assert!(consent.version.starts_with("ru-"), "{}", consent.version);
}

#[test]
fn help_explains_every_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["demo", "run", "check", "migrate", "link"] {
        assert!(text.contains(cmd), "{text}");
    }
}

#[test]
fn a_bad_config_fails_at_start_naming_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zapis.toml");
    std::fs::write(
        &path,
        "[business]\nname = \"S\"\ntimezone = \"Europe/Moskva\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("business.timezone"), "{err}");
    assert!(err.contains("zapis.toml"), "{err}");
}

#[tokio::test]
async fn tracked_links_carry_the_utm_set_and_count_bookings() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("z.db").display());
    // A bot that is never reached: the links only need its name.
    let path = Settings::single(&url, "S")
        .set("telegram.token", "1:x")
        .set("telegram.bot_username", "lilia_bot")
        .write_in(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args([
            "link",
            "create",
            "--name",
            "spring",
            "--utm-source",
            "yandex",
            "--utm-medium",
            "cpc",
        ])
        .args(["--utm-campaign", "spring", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let token = printed
        .split("start=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a deep link is printed")
        .to_string();
    assert!(
        printed.contains(&format!("https://t.me/lilia_bot?start={token}")),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("https://max.ru/lilia_bot?start={token}")),
        "{printed}"
    );
    assert!(
        token.len() <= 64
            && token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    );

    // A client arriving with the token books through the terminal demo on the same store.
    let mut child = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(["demo", "--store", &url, "--start", &token])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all("1\n1\n1\n1\n1\n1\n+79123456789\nОля\n1\n".as_bytes())
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let store = Store::connect(&url).await.unwrap();
    let booking = &store.bookings(&bid("default")).await.unwrap()[0];
    assert_eq!(booking.source.link_name.as_deref(), Some("spring"));
    assert_eq!(booking.source.utm.source.as_deref(), Some("yandex"));
    assert_eq!(booking.source.utm.campaign.as_deref(), Some("spring"));

    let out = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(["link", "list", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("spring") && listed.contains("bookings: 1"),
        "{listed}"
    );
}

fn zapis(args: &[&str], config: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_zapis"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn store_config(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    Settings::single(url, "S").write_in(dir)
}

async fn schema_versions(url: &str) -> Vec<i64> {
    let store = Store::open(url).await.unwrap();
    let versions = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(raw_pool(&store))
        .await
        .unwrap();
    store.close().await;
    versions
}

#[test]
fn read_only_commands_never_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("z.db");
    let config = store_config(dir.path(), &format!("sqlite://{}", db.display()));
    for args in [
        &["check"][..],
        &["queue"],
        &["journal"],
        &["bookings"],
        &["link", "list"],
    ] {
        let (ok, text) = zapis(args, &config);
        assert!(
            text.contains("zapis migrate"),
            "{args:?} says how to create the store: {text}"
        );
        // `check` goes on to check the vendors; the others have nothing to show.
        assert!(ok == (args == ["check"]), "{args:?}: {text}");
        assert!(!db.exists(), "{args:?} created {}", db.display());
    }
}

#[tokio::test]
async fn read_only_commands_never_migrate_and_migrate_names_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("z.db").display());
    let config = store_config(dir.path(), &url);

    let (ok, text) = zapis(&["migrate"], &config);
    assert!(ok, "{text}");
    let all = schema_versions(&url).await;
    let target = *all.last().unwrap();
    assert!(
        text.contains(&format!("schema version 0, this zapis: {target}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("migrated to schema version {target}")),
        "{text}"
    );
    let (ok, text) = zapis(&["migrate"], &config);
    assert!(ok && text.contains("up to date"), "{text}");
    let (ok, text) = zapis(&["queue"], &config);
    assert!(ok, "{text}");

    // A store one migration behind this binary: read-only commands refuse and leave it so.
    let store = Store::open(&url).await.unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(target)
        .execute(raw_pool(&store))
        .await
        .unwrap();
    store.close().await;
    let behind = all[all.len() - 2];
    for args in [&["queue"][..], &["journal"], &["bookings"], &["check"]] {
        let (ok, text) = zapis(args, &config);
        assert!(!ok, "{args:?}: {text}");
        assert!(
            text.contains(&format!(
                "schema version {behind}, this zapis needs {target}"
            )),
            "{args:?}: {text}"
        );
    }
    assert_eq!(
        schema_versions(&url).await.last(),
        Some(&behind),
        "nothing migrated"
    );
}

#[tokio::test]
async fn a_store_newer_than_the_binary_is_refused_naming_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("z.db").display());
    let config = store_config(dir.path(), &url);
    let store = Store::connect(&url).await.unwrap();
    let target = *schema_versions(&url).await.last().unwrap();
    let newer = 9_999_i64;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, \
         execution_time) SELECT $1, 'from a newer zapis', installed_on, success, checksum, \
         execution_time FROM _sqlx_migrations WHERE version = $2",
    )
    .bind(newer)
    .bind(target)
    .execute(raw_pool(&store))
    .await
    .unwrap();
    store.close().await;
    // `worker` opens the store as `run` does, to serve.
    for args in [&["queue"][..], &["migrate"], &["worker"]] {
        let (ok, text) = zapis(args, &config);
        assert!(!ok, "{args:?}: {text}");
        assert!(
            text.contains(&format!(
                "schema version {newer}, newer than this zapis knows ({target})"
            )),
            "{args:?}: {text}"
        );
    }
}
