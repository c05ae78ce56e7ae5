//! Many businesses in one deployment: a deployment file with `[businesses]` and one file per
//! business in its folder (`businesses/<id>.toml`), or today's single file for one business.
//!
//! A business file has the business's sections only (`[business]`, `[booking]`, `[telegram]`,
//! …); the deployment file has the deployment's only (`[store]`, `[http]`, `[log]`,
//! `[alerts]`, `[sync]`, `[retention]`) and `[businesses]`. A section in the wrong file is
//! refused by name, so a bot token cannot end up shared by every business, nor a business
//! quietly point at another store. The file's name is the business's id: it is in the
//! business's URLs and on every row of its data, so it is kept to lower-case letters, digits,
//! `-` and `_`, and a `business.id` in the file must agree with it.
//!
//! Each business is read as a whole [`Config`] (the deployment file, its environment
//! overrides, then the business file), so a business is checked with exactly the rules, defaults
//! and messages of the single file, and every command that works on one business works on any
//! one of them. Environment overrides reach the deployment's sections only: one variable cannot
//! mean every business's token.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::Deserialize;

use super::load::env_provider;
use super::{Config, ConfigError, Deployment};
use crate::domain::BusinessId;

/// The sections a business file may have; everything else is the deployment's.
pub const BUSINESS_SECTIONS: &[&str] = &[
    "business",
    "booking",
    "telegram",
    "max",
    "crm",
    "reminders",
    "school",
    "onec",
    "privacy",
    "support",
];

/// The sections of a deployment file (besides `[businesses]`).
pub const DEPLOYMENT_SECTIONS: &[&str] = &["store", "http", "log", "alerts", "sync", "retention"];

/// `[businesses]` of a deployment file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusinessesConfig {
    /// The folder of business files, relative to the deployment file's directory.
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
}

fn default_dir() -> PathBuf {
    PathBuf::from("businesses")
}

/// What a configuration file describes.
#[derive(Debug)]
pub enum Layout {
    /// Today's single file: one business and its deployment.
    Single(Box<Config>),
    /// A deployment file and a folder of business files.
    Fleet(Box<Fleet>),
}

/// A deployment file with `[businesses]`: the deployment, and where its businesses are.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// The deployment file.
    pub file: PathBuf,
    /// The folder of business files, resolved against the deployment file's directory.
    pub dir: PathBuf,
    pub deployment: Deployment,
}

/// One business file as read: its id (the file's name) and its configuration or what is wrong
/// with it.
#[derive(Debug)]
pub struct BusinessFile {
    pub id: String,
    pub path: PathBuf,
    /// SHA-256 of the bytes the configuration was read from: what tells a changed file.
    pub digest: [u8; 32],
    pub config: Result<Config, ConfigError>,
}

/// The deployment file's own table: everything but the businesses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentFile {
    #[serde(default)]
    store: super::StoreConfig,
    #[serde(default)]
    http: Option<super::HttpConfig>,
    #[serde(default)]
    log: super::LogConfig,
    #[serde(default)]
    alerts: crate::sync::AlertsConfig,
    #[serde(default)]
    sync: crate::sync::SyncConfig,
    #[serde(default)]
    retention: crate::store::retention::RetentionConfig,
    businesses: BusinessesConfig,
}

impl Layout {
    /// Reads `path`: a deployment file when it has `[businesses]`, else today's single file.
    pub fn load(path: &Path) -> Result<Layout, ConfigError> {
        if !path.exists() {
            return Err(ConfigError::Missing(path.to_path_buf()));
        }
        let file = Figment::from(Toml::file_exact(path));
        if !file.contains("businesses") {
            return Config::load(path).map(|c| Layout::Single(Box::new(c)));
        }
        let keys = top_level_keys(&file)?;
        if let Some(section) = keys
            .iter()
            .find(|k| BUSINESS_SECTIONS.contains(&k.as_str()))
        {
            return Err(ConfigError::Key {
                key: section.clone(),
                message: format!(
                    "a deployment file with [businesses] has no business sections: [{section}] \
                     goes in each business's own file in the businesses folder"
                ),
            });
        }
        let read: DeploymentFile = file
            .merge(env_provider())
            .extract()
            .map_err(super::load::figment_error)?;
        let base = path.parent().unwrap_or(Path::new(""));
        let dir = if read.businesses.dir.is_relative() {
            base.join(&read.businesses.dir)
        } else {
            read.businesses.dir.clone()
        };
        let deployment = Deployment {
            store: read.store,
            http: read.http,
            log: read.log,
            alerts: read.alerts,
            sync: read.sync,
            retention: read.retention,
        };
        if deployment.sync.reconcile_interval.is_zero() {
            return Err(ConfigError::Key {
                key: "sync.reconcile_interval".into(),
                message: "must be positive".into(),
            });
        }
        Ok(Layout::Fleet(Box::new(Fleet {
            file: path.to_path_buf(),
            dir,
            deployment,
        })))
    }
}

impl Fleet {
    /// Every `*.toml` in the businesses folder, by id, each read on its own: one broken file
    /// does not keep the others from being read. Fails only when the folder cannot be listed,
    /// or two files would be one business.
    pub fn businesses(&self) -> Result<Vec<BusinessFile>, ConfigError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|e| ConfigError::Key {
            key: "businesses.dir".into(),
            message: format!("cannot read the folder {}: {e}", self.dir.display()),
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
            .collect();
        paths.sort();
        let mut files: Vec<BusinessFile> = paths
            .into_iter()
            .map(|path| {
                let id = id_of(&path);
                // Read once: the digest and the configuration are of the same bytes, so a file
                // written meanwhile is seen as changed on the next reading, not missed.
                let (digest, config) = match std::fs::read_to_string(&path) {
                    Ok(text) => {
                        use sha2::Digest;
                        let digest = sha2::Sha256::digest(text.as_bytes()).into();
                        (digest, self.read(&id, &path, &text))
                    }
                    Err(e) => (
                        [0; 32],
                        Err(ConfigError::InFile {
                            file: path.clone(),
                            source: Box::new(ConfigError::Invalid(format!("cannot read it: {e}"))),
                        }),
                    ),
                };
                BusinessFile {
                    id,
                    path,
                    digest,
                    config,
                }
            })
            .collect();
        refuse_shared_bots(&mut files);
        Ok(files)
    }

    /// One business by id.
    pub fn business(&self, id: &str) -> Result<BusinessFile, ConfigError> {
        let path = self.dir.join(format!("{id}.toml"));
        if valid_id(id).is_some() || !path.is_file() {
            let known: Vec<String> = self
                .businesses()
                .map(|all| all.into_iter().map(|b| b.id).collect())
                .unwrap_or_default();
            return Err(ConfigError::Invalid(format!(
                "no business `{id}` in {} (there: {})",
                self.dir.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        }
        let all = self.businesses()?;
        all.into_iter()
            .find(|b| b.id == id)
            .ok_or(ConfigError::Missing(path))
    }

    /// A business file read as a whole configuration: the deployment file and its overrides
    /// under the business's own sections.
    fn read(&self, id: &str, path: &Path, text: &str) -> Result<Config, ConfigError> {
        let in_file = |source: ConfigError| ConfigError::InFile {
            file: path.to_path_buf(),
            source: Box::new(source),
        };
        if let Some(problem) = valid_id(id) {
            return Err(in_file(ConfigError::Invalid(format!(
                "the file's name is the business's id, which {problem}"
            ))));
        }
        let own = Figment::from(Toml::string(text));
        let keys = top_level_keys(&own).map_err(in_file)?;
        if let Some(section) = keys
            .iter()
            .find(|k| !BUSINESS_SECTIONS.contains(&k.as_str()))
        {
            let message = if DEPLOYMENT_SECTIONS.contains(&section.as_str()) {
                format!(
                    "[{section}] is the deployment's: it goes in {}, once for every business",
                    self.file.display()
                )
            } else {
                "unknown section".to_string()
            };
            return Err(in_file(ConfigError::Key {
                key: section.clone(),
                message,
            }));
        }
        if let Ok(given) = own.extract_inner::<String>("business.id")
            && given != id
        {
            return Err(in_file(ConfigError::Key {
                key: "business.id".into(),
                message: format!(
                    "is `{given}` but the file is named `{id}.toml`: the file's name is the id"
                ),
            }));
        }
        let figment = Figment::from(Toml::file_exact(&self.file))
            .merge(env_provider())
            .merge(own)
            .merge(Serialized::default("business.id", id));
        Config::from_figment_in(figment, path.parent()).map_err(in_file)
    }
}

/// The business id a file stands for.
fn id_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Why `id` cannot name a business, or `None`: it is a path segment of the business's URLs.
/// The rule is [`BusinessId`]'s, so a file name and a URL accept the same ids.
pub fn valid_id(id: &str) -> Option<&'static str> {
    BusinessId::parse(id).err().map(|e| e.problem())
}

fn top_level_keys(figment: &Figment) -> Result<Vec<String>, ConfigError> {
    let dict: figment::value::Dict = figment.extract().map_err(super::load::figment_error)?;
    Ok(dict.into_keys().collect())
}

/// A bot answers one business: two files with the same bot token would have two pollers
/// fight over its updates, so the later file is refused naming the earlier.
fn refuse_shared_bots(files: &mut [BusinessFile]) {
    use secrecy::ExposeSecret;
    let mut seen: Vec<(String, &'static str, String)> = Vec::new();
    for file in files.iter_mut() {
        let Ok(config) = &file.config else { continue };
        let mut tokens: Vec<(&'static str, String)> = Vec::new();
        if let Some(tg) = &config.telegram {
            tokens.push(("telegram.token", tg.token.expose_secret().to_string()));
        }
        if let Some(max) = &config.max {
            tokens.push(("max.token", max.token.expose_secret().to_string()));
        }
        let clash = tokens.iter().find_map(|(key, token)| {
            seen.iter()
                .find(|(t, k, _)| t == token && k == key)
                .map(|(_, _, other)| (*key, other.clone()))
        });
        if let Some((key, other)) = clash {
            file.config = Err(ConfigError::InFile {
                file: file.path.clone(),
                source: Box::new(ConfigError::Key {
                    key: key.into(),
                    message: format!(
                        "is the same bot as business `{other}`'s: each business needs a bot of \
                         its own"
                    ),
                }),
            });
            continue;
        }
        for (key, token) in tokens {
            seen.push((token, key, file.id.clone()));
        }
    }
}

#[cfg(test)]
// Jail's closure signature is figment's, not ours.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    const DEPLOYMENT: &str = r#"
[store]
url = "sqlite://zapis.db"

[http]
listen = "127.0.0.1:8080"
webhook_secret = "0f1e2d3c4b5a69788796a5b4"

[businesses]
"#;

    fn salon(name: &str, token: &str) -> String {
        format!(
            "[business]\nname = \"{name}\"\ntimezone = \"Europe/Moscow\"\n\n\
             [telegram]\ntoken = \"{token}\"\n"
        )
    }

    /// Runs `check` on a deployment folder made of `files` (path, text) in figment's Jail,
    /// which also clears `ZAPIS_*` variables another test may have set.
    fn in_folder(files: &[(&str, &str)], check: impl FnOnce()) {
        let mut check = Some(check);
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            std::fs::create_dir_all(jail.directory().join("businesses")).expect("folder");
            for (path, text) in files {
                jail.create_file(path, text)?;
            }
            if let Some(check) = check.take() {
                check();
            }
            Ok(())
        });
    }

    fn fleet() -> Fleet {
        match Layout::load(Path::new("zapis.toml")).expect("the deployment file loads") {
            Layout::Fleet(fleet) => *fleet,
            Layout::Single(_) => panic!("read as a single business"),
        }
    }

    #[test]
    fn each_business_file_is_a_whole_configuration_named_by_its_file() {
        in_folder(
            &[
                ("zapis.toml", DEPLOYMENT),
                ("businesses/salon-a.toml", &salon("Салон А", "111:aaa")),
                ("businesses/clinic_b.toml", &salon("Клиника Б", "222:bbb")),
                ("businesses/notes.txt", "not a business"),
            ],
            || {
                let fleet = fleet();
                assert_eq!(fleet.deployment.store.url, "sqlite://zapis.db");
                let files = fleet.businesses().expect("the folder reads");
                let ids: Vec<&str> = files.iter().map(|f| f.id.as_str()).collect();
                assert_eq!(ids, ["clinic_b", "salon-a"]);
                let a = files[1].config.as_ref().expect("salon-a reads");
                assert_eq!(a.business.id, "salon-a");
                assert_eq!(a.business.name, "Салон А");
                // The deployment's sections come with every business.
                assert!(a.http.is_some());
                assert_eq!(a.store.url, "sqlite://zapis.db");
                let one = fleet.business("clinic_b").expect("by id");
                assert_eq!(one.config.expect("reads").business.name, "Клиника Б");
                let err = fleet
                    .business("nobody")
                    .expect_err("no such file")
                    .to_string();
                assert!(err.contains("nobody") && err.contains("salon-a"), "{err}");
            },
        );
    }

    #[test]
    fn a_broken_business_file_is_refused_by_file_and_key_and_the_others_still_read() {
        in_folder(
            &[
                ("zapis.toml", DEPLOYMENT),
                ("businesses/good.toml", &salon("Салон", "111:aaa")),
                (
                    "businesses/typo.toml",
                    "[business]\nname = \"Б\"\ntimezone = \"Europe/Mars\"\n",
                ),
                (
                    "businesses/store.toml",
                    "[business]\nname = \"В\"\ntimezone = \"Europe/Moscow\"\n[store]\nurl = \"sqlite://other.db\"\n",
                ),
                (
                    "businesses/named.toml",
                    "[business]\nid = \"other\"\nname = \"Г\"\ntimezone = \"Europe/Moscow\"\n",
                ),
                ("businesses/Big Name.toml", &salon("Д", "333:ccc")),
                ("businesses/twin.toml", &salon("Двойник", "111:aaa")),
            ],
            || {
                let files = fleet().businesses().expect("the folder reads");
                let by_id = |id: &str| {
                    files
                        .iter()
                        .find(|f| f.id == id)
                        .unwrap_or_else(|| panic!("{id} listed"))
                };
                assert!(by_id("good").config.is_ok());
                let err = |id: &str| by_id(id).config.as_ref().expect_err(id).to_string();
                let typo = err("typo");
                assert!(
                    typo.contains("typo.toml") && typo.contains("business.timezone"),
                    "{typo}"
                );
                let store = err("store");
                assert!(
                    store.contains("store.toml")
                        && store.contains("`store`")
                        && store.contains("deployment"),
                    "{store}"
                );
                let named = err("named");
                assert!(
                    named.contains("business.id") && named.contains("named.toml"),
                    "{named}"
                );
                let big = err("Big Name");
                assert!(big.contains("lower-case"), "{big}");
                // The first file with a bot keeps it; the second is refused naming the first.
                let twin = err("twin");
                assert!(
                    twin.contains("telegram.token") && twin.contains("`good`"),
                    "{twin}"
                );
                assert!(
                    !twin.contains("111:aaa"),
                    "a token is never repeated: {twin}"
                );
            },
        );
    }

    #[test]
    fn a_business_section_in_the_deployment_file_is_refused_by_name() {
        in_folder(
            &[(
                "zapis.toml",
                &format!("{DEPLOYMENT}\n[telegram]\ntoken = \"111:aaa\"\n"),
            )],
            || {
                let err = Layout::load(Path::new("zapis.toml"))
                    .expect_err("a bot for every business")
                    .to_string();
                assert!(err.contains("`telegram`"), "{err}");
                assert!(!err.contains("111:aaa"), "{err}");
            },
        );
    }

    #[test]
    fn environment_overrides_reach_the_deployment_and_not_the_businesses() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            std::fs::create_dir_all(jail.directory().join("businesses")).expect("folder");
            jail.create_file("zapis.toml", DEPLOYMENT)?;
            jail.create_file("businesses/a.toml", &salon("А", "111:aaa"))?;
            jail.set_env("ZAPIS_STORE__URL", "sqlite://elsewhere.db");
            let files = fleet().businesses().expect("reads");
            let a = files[0].config.as_ref().expect("a reads");
            assert_eq!(a.store.url, "sqlite://elsewhere.db");
            jail.set_env("ZAPIS_TELEGRAM__TOKEN", "999:zzz");
            let err = Layout::load(Path::new("zapis.toml"))
                .expect_err("one variable for every business's bot")
                .to_string();
            assert!(err.contains("telegram"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_file_without_businesses_is_the_single_business_it_always_was() {
        in_folder(
            &[(
                "zapis.toml",
                "[business]\nname = \"Салон\"\ntimezone = \"Europe/Moscow\"\n",
            )],
            || match Layout::load(Path::new("zapis.toml")).expect("loads") {
                Layout::Single(config) => assert_eq!(config.business.id, "default"),
                Layout::Fleet(_) => panic!("read as a deployment"),
            },
        );
    }
}
