//! The systems zapis delivers to, takes work from, or journals under: the `system` column of
//! `sync_jobs`, `sync_journal`, `sync_outages`, `links`, `crm_tokens` and `known_state`.
//!
//! The names are stored, so [`System::as_str`] must keep returning exactly what rows already
//! hold; a new system gets a new name, an old name is never changed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One system by its stored name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum System {
    /// amoCRM: leads, contacts, tasks.
    AmoCrm,
    /// Bitrix24: deals or leads, contacts, activities.
    Bitrix24,
    /// The YClients schedule.
    Yclients,
    /// The Dikidi schedule.
    Dikidi,
    /// The built-in demo schedule.
    Sandbox,
    /// 1C over OData (documents) or CommerceML (the site exchange).
    Onec,
    /// AlfaCRM, a school's CRM.
    AlfaCrm,
    /// GetCourse, a school's CRM and payments.
    GetCourse,
    /// Messages to a client's Telegram chat.
    Telegram,
    /// Messages to a client's MAX chat.
    Max,
    /// Questions relayed to the admin chat.
    Support,
    /// Webhooks taken in and handled later (`sync_inbox`).
    Inbox,
    /// The generic HTTP target of `zapis worker --http-target`, under its default name.
    Http,
    /// What a person did in the console (journal only).
    Console,
    /// What the store did itself, such as an erasure (journal only).
    Store,
    /// An import's bulk contact writes into amoCRM, claimed only by the import command.
    ImportAmoCrm,
    /// An import's bulk contact writes into Bitrix24.
    ImportBitrix24,
    /// An import's bulk client writes into YClients.
    ImportYclients,
}

impl System {
    /// Every system, for listings and for the test that every stored name reads back.
    pub const ALL: [System; 18] = [
        System::AmoCrm,
        System::Bitrix24,
        System::Yclients,
        System::Dikidi,
        System::Sandbox,
        System::Onec,
        System::AlfaCrm,
        System::GetCourse,
        System::Telegram,
        System::Max,
        System::Support,
        System::Inbox,
        System::Http,
        System::Console,
        System::Store,
        System::ImportAmoCrm,
        System::ImportBitrix24,
        System::ImportYclients,
    ];

    /// The name rows hold.
    pub const fn as_str(self) -> &'static str {
        match self {
            System::AmoCrm => "amocrm",
            System::Bitrix24 => "bitrix24",
            System::Yclients => "yclients",
            System::Dikidi => "dikidi",
            System::Sandbox => "sandbox",
            System::Onec => "onec",
            System::AlfaCrm => "alfacrm",
            System::GetCourse => "getcourse",
            System::Telegram => "telegram",
            System::Max => "max",
            System::Support => "support",
            System::Inbox => "inbox",
            System::Http => "http",
            System::Console => "console",
            System::Store => "store",
            System::ImportAmoCrm => "import.amocrm",
            System::ImportBitrix24 => "import.bitrix24",
            System::ImportYclients => "import.yclients",
        }
    }

    /// The system an import into `self` runs its jobs under: distinct from the target's own,
    /// so only the import command (which registers it) claims them.
    pub const fn import(self) -> Option<System> {
        match self {
            System::AmoCrm => Some(System::ImportAmoCrm),
            System::Bitrix24 => Some(System::ImportBitrix24),
            System::Yclients => Some(System::ImportYclients),
            _ => None,
        }
    }
}

/// A stored or given name that names no system.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a system zapis knows")]
pub struct UnknownSystem(String);

impl FromStr for System {
    type Err = UnknownSystem;
    fn from_str(s: &str) -> Result<System, UnknownSystem> {
        System::ALL
            .into_iter()
            .find(|system| system.as_str() == s)
            .ok_or_else(|| UnknownSystem(s.chars().take(64).collect()))
    }
}

/// Pads like a `str` does, so `{:<16}` columns of listings line up as they did with names.
impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl PartialEq<str> for System {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for System {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl Serialize for System {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for System {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<System, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names rows hold today; changing one would orphan every row written under it.
    const STORED: &[&str] = &[
        "amocrm",
        "bitrix24",
        "yclients",
        "dikidi",
        "sandbox",
        "onec",
        "alfacrm",
        "getcourse",
        "telegram",
        "max",
        "support",
        "inbox",
        "http",
        "console",
        "store",
        "import.amocrm",
        "import.bitrix24",
        "import.yclients",
    ];

    #[test]
    fn every_stored_name_reads_back_as_the_same_name() {
        for name in STORED {
            let system: System = name.parse().expect(name);
            assert_eq!(system.as_str(), *name);
            assert_eq!(system.to_string(), *name);
        }
        let all: Vec<&str> = System::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            all, STORED,
            "a system was added or renamed: add its stored name above"
        );
    }

    #[test]
    fn an_unknown_stored_name_is_an_error_not_a_panic() {
        for name in [
            "",
            "AmoCRM",
            "amocrm ",
            "crm",
            "import.dikidi",
            "amocrm#auth",
        ] {
            let err = name.parse::<System>().expect_err(name);
            assert!(err.to_string().contains("not a system"), "{err}");
        }
        assert!(serde_json::from_str::<System>("\"nope\"").is_err());
    }

    #[test]
    fn it_pads_in_a_column_like_its_name() {
        assert_eq!(format!("{:<9}|", System::Max), "max      |");
        assert_eq!(format!("{:>8}|", System::Onec), "    onec|");
    }

    #[test]
    fn it_is_its_stored_name_in_json() {
        assert_eq!(
            serde_json::to_string(&System::ImportAmoCrm).expect("json"),
            "\"import.amocrm\""
        );
        let back: System = serde_json::from_str("\"getcourse\"").expect("json");
        assert_eq!(back, System::GetCourse);
    }

    #[test]
    fn an_import_runs_under_its_own_system_named_after_the_target() {
        for target in [System::AmoCrm, System::Bitrix24, System::Yclients] {
            let import = target.import().expect("an import target");
            assert_eq!(import.as_str(), format!("import.{target}"));
        }
        assert_eq!(System::Dikidi.import(), None);
    }
}
