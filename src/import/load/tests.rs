//! Loads against a target in memory: refused, interrupted and resumed runs write each client
//! once, on both stores.

use crate::domain::bid;
use std::sync::Mutex;

use chrono::Utc;

use super::rows::mark_sending;
use super::*;
use crate::clock::SystemClock;
use crate::import::{RawRecord, prepare};
use crate::store::testing;

/// A target in memory; refuses creates while `refuse` is set, and the one client named
/// `refuse_name` on its own. `unmarked` leaves the run tag off what it creates.
#[derive(Default)]
struct Memory {
    contacts: Mutex<Vec<ContactRecord>>,
    refuse: Mutex<bool>,
    refuse_name: Option<String>,
    unmarked: bool,
    writes: Mutex<usize>,
}

#[async_trait]
impl ImportTarget for Memory {
    fn system(&self) -> System {
        System::AmoCrm
    }
    fn batch_size(&self) -> usize {
        2
    }
    fn marks_own(&self) -> bool {
        !self.unmarked
    }
    async fn existing(&self) -> Result<Vec<ContactRecord>, CrmError> {
        Ok(self.contacts.lock().unwrap().clone())
    }
    async fn search(&self, _clients: &[Client]) -> Result<Vec<ContactRecord>, CrmError> {
        Ok(self.contacts.lock().unwrap().clone())
    }
    async fn create(&self, drafts: &[ContactDraft]) -> Result<Outcomes<String>, CrmError> {
        if *self.refuse.lock().unwrap() {
            return Err(CrmError::permanent("refused for the test"));
        }
        *self.writes.lock().unwrap() += 1;
        let mut all = self.contacts.lock().unwrap();
        Ok(drafts
            .iter()
            .map(|d| {
                if self.refuse_name.as_ref() == Some(&d.name) {
                    return Err(CrmError::permanent("this one is refused"));
                }
                let id = (all.len() + 1).to_string();
                all.push(ContactRecord {
                    id: id.clone(),
                    name: d.name.clone(),
                    phones: d.phones.clone(),
                    emails: d.emails.clone(),
                    tags: if self.unmarked {
                        Vec::new()
                    } else {
                        d.tag.iter().cloned().collect()
                    },
                });
                Ok(id)
            })
            .collect())
    }
    async fn update(&self, items: &[ContactUpdate]) -> Result<Outcomes<()>, CrmError> {
        *self.writes.lock().unwrap() += 1;
        let mut all = self.contacts.lock().unwrap();
        for u in items {
            if let Some(c) = all.iter_mut().find(|c| c.id == u.id) {
                c.phones = u.phones.clone();
                c.emails = u.emails.clone();
            }
        }
        Ok(vec![Ok(()); items.len()])
    }
}

fn record(row: usize, name: &str, phone: &str, email: &str) -> RawRecord {
    RawRecord {
        row,
        full_name: Some(name.into()),
        phones: vec![phone.into()],
        emails: vec![email.into()],
        ..RawRecord::default()
    }
}

async fn load_once(store: &Store, target: Arc<Memory>, prepared: &Prepared) -> Counts {
    let (counts, _) = load(
        prepared,
        target,
        LoadOptions {
            store,
            clock: Arc::new(SystemClock),
            sync: SyncConfig::default(),
            business_id: &bid("b1"),
            digest: "d1d1d1d1d1d1d1d1",
            file_name: "clients.csv",
            progress: ProgressBar::hidden(),
            listing: None,
        },
    )
    .await
    .unwrap();
    counts
}

#[tokio::test]
async fn refused_then_resumed_creates_each_client_once_on_both_stores() {
    for store in testing::all().await {
        let prepared = prepare(vec![
            record(2, "Анна", "89120000001", "a@mail.ru"),
            record(3, "Борис", "89120000002", "b@mail.ru"),
            record(4, "Вера", "89120000003", "v@mail.ru"),
            record(5, "Глеб", "89120000004", "g@mail.ru"),
        ]);
        let target = Arc::new(Memory::default());
        // Already in the target: typed by hand, without the email.
        target.contacts.lock().unwrap().push(ContactRecord {
            id: "100".into(),
            name: "Анна С.".into(),
            phones: vec!["8 912 000-00-01".into()],
            ..ContactRecord::default()
        });
        // Made by an earlier start of this run that died before recording it.
        target.contacts.lock().unwrap().push(ContactRecord {
            id: "101".into(),
            name: "Борис".into(),
            phones: vec!["+79120000002".into()],
            emails: vec!["b@mail.ru".into()],
            tags: vec![run_tag("d1d1d1d1d1d1d1d1")],
        });
        *target.refuse.lock().unwrap() = true;
        let first = load_once(&store, target.clone(), &prepared).await;
        assert_eq!(
            (first.created, first.updated, first.failed),
            (1, 1, 2),
            "{first:?}"
        );
        *target.refuse.lock().unwrap() = false;
        let second = load_once(&store, target.clone(), &prepared).await;
        assert_eq!(
            (
                second.created,
                second.updated,
                second.skipped,
                second.failed
            ),
            (3, 1, 0, 0)
        );
        let contacts = target.contacts.lock().unwrap().clone();
        assert_eq!(contacts.len(), 4);
        assert_eq!(contacts[0].phones, ["8 912 000-00-01"]);
        assert_eq!(contacts[0].emails, ["a@mail.ru"]);
        let writes = *target.writes.lock().unwrap();
        let third = load_once(&store, target.clone(), &prepared).await;
        assert_eq!(third, second);
        assert_eq!(
            *target.writes.lock().unwrap(),
            writes,
            "a finished run writes nothing"
        );
    }
}

#[tokio::test]
async fn a_refused_client_fails_alone_and_is_reported() {
    let store = testing::sqlite().await;
    let prepared = prepare(vec![
        record(2, "Анна", "89120000001", "a@mail.ru"),
        record(3, "Борис", "89120000002", "b@mail.ru"),
        record(4, "Вера", "89120000003", "v@mail.ru"),
    ]);
    let target = Arc::new(Memory {
        refuse_name: Some("Борис".into()),
        ..Memory::default()
    });
    let (counts, refused) = load(
        &prepared,
        target.clone(),
        LoadOptions {
            store: &store,
            clock: Arc::new(SystemClock),
            sync: SyncConfig::default(),
            business_id: &bid("b1"),
            digest: "d1d1d1d1d1d1d1d1",
            file_name: "clients.csv",
            progress: ProgressBar::hidden(),
            listing: None,
        },
    )
    .await
    .unwrap();
    assert_eq!((counts.created, counts.failed), (2, 1), "{counts:?}");
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].row, Some(3));
    assert_eq!(refused[0].kind, ProblemKind::WriteFailed);
    assert!(refused[0].detail.contains("this one is refused"));
    let names: Vec<String> = target
        .contacts
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(names, ["Анна", "Вера"]);
}

#[tokio::test]
async fn an_unmarked_contact_whose_create_was_in_flight_counts_as_created() {
    for unmarked in [true, false] {
        let store = testing::sqlite().await;
        let prepared = prepare(vec![
            record(2, "Анна", "89120000001", "a@mail.ru"),
            record(3, "Борис", "89120000002", "b@mail.ru"),
        ]);
        let target = Arc::new(Memory {
            unmarked,
            ..Memory::default()
        });
        // An earlier start sent Анна's create, the target made her (without a mark), and
        // the process died before the answer was stored.
        let run = open_run(
            &store,
            &bid("b1"),
            System::AmoCrm,
            "d1d1d1d1d1d1d1d1",
            "clients.csv",
            &prepared.clients,
            Utc::now(),
        )
        .await
        .unwrap();
        let anna = &prepared.clients[0];
        mark_sending(
            &store,
            run.id,
            std::slice::from_ref(&anna.key),
            "sending",
            Utc::now(),
        )
        .await
        .unwrap();
        target.contacts.lock().unwrap().push(ContactRecord {
            id: "900".into(),
            name: anna.name.clone(),
            phones: vec![anna.phones[0].to_string()],
            emails: vec![anna.emails[0].to_string()],
            tags: Vec::new(),
        });
        let counts = load_once(&store, target.clone(), &prepared).await;
        // A target that marks its contacts knows an unmarked one is not its own.
        let expected = if unmarked { (2, 0) } else { (1, 1) };
        assert_eq!(
            (counts.created, counts.skipped),
            expected,
            "unmarked {unmarked}: {counts:?}"
        );
        assert_eq!(target.contacts.lock().unwrap().len(), 2);
    }
}

#[tokio::test]
async fn an_update_whose_answer_was_lost_counts_as_updated() {
    let store = testing::sqlite().await;
    let prepared = prepare(vec![record(2, "Анна", "89120000001", "a@mail.ru")]);
    let target = Arc::new(Memory::default());
    let run = open_run(
        &store,
        &bid("b1"),
        System::AmoCrm,
        "d1d1d1d1d1d1d1d1",
        "clients.csv",
        &prepared.clients,
        Utc::now(),
    )
    .await
    .unwrap();
    let key = prepared.clients[0].key.clone();
    mark_sending(&store, run.id, &[key], "updating", Utc::now())
        .await
        .unwrap();
    // The update went through; its answer was lost with the process.
    target.contacts.lock().unwrap().push(ContactRecord {
        id: "100".into(),
        name: "Анна С.".into(),
        phones: vec!["8 912 000-00-01".into()],
        emails: vec!["a@mail.ru".into()],
        tags: Vec::new(),
    });
    let counts = load_once(&store, target.clone(), &prepared).await;
    assert_eq!((counts.updated, counts.skipped), (1, 0), "{counts:?}");
    assert_eq!(*target.writes.lock().unwrap(), 0);
}

#[test]
fn a_single_valued_target_gets_only_what_it_can_hold() {
    let prepared = prepare(vec![RawRecord {
        row: 2,
        full_name: Some("Анна".into()),
        phones: vec!["89120000001, 89120000009".into()],
        emails: vec!["a@mail.ru".into()],
        ..RawRecord::default()
    }]);
    let held = ContactRecord {
        id: "7".into(),
        name: "Анна С.".into(),
        phones: vec!["79120000001".into()],
        ..ContactRecord::default()
    };
    let single = Index::new(vec![held.clone()]).single_valued(true);
    assert_eq!(
        single.plan(&prepared.clients[0], "tag"),
        Plan::Update {
            id: "7".into(),
            name: "Анна С.".into(),
            phones: vec!["79120000001".into()],
            emails: vec!["a@mail.ru".into()],
            new_phones: vec![],
            new_emails: vec!["a@mail.ru".into()],
        }
    );
    let multi = Index::new(vec![held]);
    let Plan::Update { new_phones, .. } = multi.plan(&prepared.clients[0], "tag") else {
        panic!("an update")
    };
    assert_eq!(new_phones, ["+79120000009"]);
}

#[test]
fn matching_links_when_nothing_is_new() {
    let prepared = prepare(vec![record(2, "Анна", "89120000001", "A@Mail.ru")]);
    let index = Index::new(vec![ContactRecord {
        id: "7".into(),
        phones: vec!["+7 912 000 00 01".into()],
        emails: vec!["a@mail.ru".into()],
        ..ContactRecord::default()
    }]);
    assert_eq!(
        index.plan(&prepared.clients[0], "tag"),
        Plan::Link { id: "7".into() }
    );
    let counts = dry_run_counts(&prepared, &index, &Memory::default());
    assert_eq!((counts.created, counts.updated, counts.skipped), (0, 0, 1));
}
