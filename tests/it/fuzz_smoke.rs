//! A short pass of every fuzzing entry point (`zapis::fuzz`) on stable Rust: the vendors'
//! verbatim payloads from ../shared/contracts and the seeds in fuzz/seeds, then a few thousand
//! deterministic mutations of them per entry point, then every crash cargo-fuzz ever found.
//! A panic in any parser fails the test and names the entry point and the input.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const MUTATIONS: usize = 2_000;
/// Entry points that touch the disk or unpack archives get fewer, larger-effect mutations.
const HEAVY_MUTATIONS: usize = 400;
const MAX_LEN: usize = 64 << 10;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(&keep))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}

fn contracts(vendor: &str, keep: impl Fn(&str) -> bool) -> Vec<Vec<u8>> {
    files(&root().join("../shared/contracts").join(vendor), keep)
}

/// The committed seeds of a target (binary ones contracts cannot hold: zips, workbooks).
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = root().join("fuzz/seeds").join(target);
    if dir.is_dir() {
        files(&dir, |_| true)
    } else {
        Vec::new()
    }
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let mut out = seeds(target);
    let json = |n: &str| n.ends_with(".json");
    let add = |out: &mut Vec<Vec<u8>>, more: Vec<Vec<u8>>| out.extend(more);
    match target {
        "yclients_webhook" => add(&mut out, contracts("yclients", |n| n.contains("webhook"))),
        "amocrm_webhook" => add(&mut out, contracts("amocrm", |n| n.starts_with("webhook"))),
        "bitrix24_event" => add(&mut out, contracts("bitrix24", |n| n.starts_with("event"))),
        "max_update" => add(
            &mut out,
            contracts("max", |n| n.contains("update") || n.contains("webhook")),
        ),
        "telegram_update" => add(
            &mut out,
            contracts("telegram", |n| n.starts_with("get-updates")),
        ),
        "dikidi_answer" => {
            add(&mut out, contracts("dikidi", json));
            add(&mut out, files(&root().join("tests/fixtures/dikidi"), json));
        }
        "commerceml_document" => add(&mut out, contracts("onec", |n| n.ends_with(".xml"))),
        "config" => add(
            &mut out,
            vec![std::fs::read(root().join("zapis.example.toml")).expect("zapis.example.toml")],
        ),
        _ => {}
    }
    out
}

/// Tokens that tend to break parsers of these formats.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{}",
    b"[]",
    b"null",
    b"-1",
    b"0",
    b"1e999",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"%",
    b"%FF",
    b"%D0",
    b"&",
    b"=",
    b"[]=",
    b"[0]",
    b"<",
    b">",
    b"</",
    b"<![CDATA[",
    b"]]>",
    b"&#0;",
    b"&amp;",
    b"&#x10FFFF;",
    b"\r\n",
    b",",
    b";",
    b"\t",
    b"\xd0",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    "доб.".as_bytes(),
    "ё".as_bytes(),
    "\u{301}".as_bytes(),
    b"+7",
    b"8 (",
    b"@",
    b"xn--",
    b"PK\x03\x04",
    b"PK\x01\x02",
    b"PK\x05\x06",
    b"encoding=\"windows-1251\"",
    b"[http]",
    b"= \"\"",
];

fn mutate(rng: &mut StdRng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut data = base.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = data.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                data[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                data[i] = *[0u8, 0x7f, 0x80, 0xff, b'"', b'<', b'{', b'%', b'0', b'9']
                    .get(rng.random_range(0..10))
                    .unwrap_or(&0);
            }
            2 if len > 0 => {
                let start = rng.random_range(0..len);
                let end = (start + rng.random_range(1..=64)).min(len);
                data.drain(start..end);
            }
            3 if len > 0 => {
                let start = rng.random_range(0..len);
                let end = (start + rng.random_range(1..=256)).min(len);
                let piece = data[start..end].to_vec();
                let at = rng.random_range(0..=len);
                let times = rng.random_range(1..=8);
                for _ in 0..times {
                    data.splice(at..at, piece.iter().copied());
                }
            }
            4 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                let at = rng.random_range(0..=len);
                data.splice(at..at, token.iter().copied());
            }
            5 if len > 0 => data.truncate(rng.random_range(0..len)),
            6 if !other.is_empty() => {
                let cut = rng.random_range(0..=len);
                let from = rng.random_range(0..other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            _ => {
                let at = rng.random_range(0..=len);
                let byte: u8 = rng.random();
                data.insert(at, byte);
            }
        }
    }
    data.truncate(MAX_LEN);
    data
}

fn run(target: &str, mutations: usize, extra_seeds: &[&[u8]]) {
    let entry = zapis::fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no entry point {target}"));
    let mut seeds = corpus(target);
    seeds.extend(extra_seeds.iter().map(|s| s.to_vec()));
    assert!(!seeds.is_empty(), "{target} has no seeds");
    let feed = |data: &[u8]| {
        let outcome = std::panic::catch_unwind(|| entry(data));
        assert!(
            outcome.is_ok(),
            "{target} panicked on {:?}",
            String::from_utf8_lossy(data)
        );
    };
    for seed in &seeds {
        feed(seed);
    }
    // Seeded by the target's name: the same inputs on every run and machine.
    let seed = target.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let mut rng = StdRng::seed_from_u64(seed);
    let mut last = seeds[0].clone();
    for _ in 0..mutations {
        let base = if rng.random_bool(0.3) {
            last.clone()
        } else {
            seeds[rng.random_range(0..seeds.len())].clone()
        };
        let other = &seeds[rng.random_range(0..seeds.len())];
        let data = mutate(&mut rng, &base, other);
        feed(&data);
        last = data;
    }
}

#[test]
fn yclients_webhook() {
    run("yclients_webhook", MUTATIONS, &[b"[]"]);
}

#[test]
fn amocrm_webhook() {
    run("amocrm_webhook", MUTATIONS, &[]);
}

#[test]
fn bitrix24_event() {
    run(
        "bitrix24_event",
        MUTATIONS,
        &[b"event=ONCRMDEALUPDATE&data%5BFIELDS%5D%5BID%5D=42&ts=1700000000&auth%5Bapplication_token%5D=fuzz-application-token"],
    );
}

#[test]
fn max_update() {
    run("max_update", MUTATIONS, &[]);
}

#[test]
fn telegram_update() {
    run("telegram_update", MUTATIONS, &[]);
}

#[test]
fn dikidi_answer() {
    run("dikidi_answer", MUTATIONS, &[]);
}

#[test]
fn getcourse_notice() {
    run(
        "getcourse_notice",
        MUTATIONS,
        &[
            "status=payed&id=1017&number=55&email=Anna%40Example.ru&phone=%2B7%20916%20123-45-67&name=%D0%90%D0%BD%D0%BD%D0%B0&payed_money=4990.50%20%D1%80%D1%83%D0%B1.&offers=PY-1\n".as_bytes(),
            "status=Оплачен&number=7\nphone=89161234567&cost_money=1 000,00&positions=English".as_bytes(),
        ],
    );
}

#[test]
fn form_post() {
    run(
        "form_post",
        MUTATIONS,
        &[
            b"\x00203.0.113.9, 10.0.0.2\nname=%D0%90%D0%BD%D0%BD%D0%B0&phone=%2B79161234567&email=anna%40example.ru&course=python&group=7&trial=on&utm_source=vk",
            b"\x03[2001:db8::1]:443\n{\"name\":\"Anna\",\"phone\":\"8 916 123-45-67\",\"course\":\"english\",\"trial\":true,\"group_id\":8}",
        ],
    );
}

#[test]
fn commerceml_document() {
    run("commerceml_document", HEAVY_MUTATIONS, &[]);
}

#[test]
fn commerceml_zip() {
    run("commerceml_zip", HEAVY_MUTATIONS, &[]);
}

#[test]
fn import_csv() {
    run(
        "import_csv",
        MUTATIONS,
        &[
            "ФИО;Телефон;Email;Дата рождения;Комментарий\nИванова Анна;+7 916 123-45-67, 8(495)1234567 доб. 12;anna@mail.ru;01.02.1990;VIP\n\"Пётр, Сидоров\";89161234567;petr@gmial.com;1985-13-40;\n".as_bytes(),
            b"name,phone,email\nAnna,79161234567,ANNA@EXAMPLE.RU\n,,\n",
        ],
    );
}

#[test]
fn import_xlsx() {
    run("import_xlsx", HEAVY_MUTATIONS, &[]);
}

#[test]
fn phone() {
    run(
        "phone",
        MUTATIONS,
        &[
            b"+7 (916) 123-45-67",
            "8 916 123 45 67 доб. 123".as_bytes(),
            b"79161234567 89161234568",
            b"+44 20 7946 0958",
            "８９１６１２３４５６７".as_bytes(),
            b"+7916123456778161234567",
        ],
    );
}

#[test]
fn email() {
    run(
        "email",
        MUTATIONS,
        &[
            b"Anna.Ivanova+salon@Example.RU",
            "почта@пример.рф".as_bytes(),
            b"user@xn--e1afmkfd.xn--p1ai",
            b"petr@gmial.com",
            "Иванова анна-мария".as_bytes(),
            b"31.12.1999",
        ],
    );
}

#[test]
fn config() {
    run(
        "config",
        MUTATIONS / 4,
        &[b"[store]\nurl = \"sqlite::memory:\"\n[business]\nname = \"x\"\ntimezone = \"Europe/Moscow\"\n"],
    );
}

#[test]
fn every_entry_point_has_a_pass_here() {
    let source = include_str!("fuzz_smoke.rs");
    for (name, _) in zapis::fuzz::TARGETS {
        assert!(
            source.contains(&format!("run(\"{name}\""))
                || source.contains(&format!("\"{name}\",\n")),
            "{name} is not exercised by the smoke pass"
        );
    }
}

/// The binary seeds reach past the container into the parsers: a workbook whose rows are read,
/// an archive whose CommerceML documents are found.
#[test]
fn the_binary_seeds_are_what_they_claim() {
    let workbook = &seeds("import_xlsx")[0];
    let rows = zapis::import::read::xlsx(workbook, &[]).expect("the seed workbook reads");
    assert_eq!(rows.len(), 2, "two clients in the seed workbook");
    for archive in seeds("commerceml_zip") {
        let zip = zip::ZipArchive::new(std::io::Cursor::new(archive)).expect("a zip");
        assert!(zip.file_names().any(|n| n.ends_with(".xml")));
    }
}
