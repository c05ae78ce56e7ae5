//! The Bitrix24 connector over real HTTP against the fake portal in tests/support, in both
//! modes (deal and lead), with webhook and OAuth authorisation: what only Bitrix24 does (its
//! batches, its bucket, its events, lead mode). The stories every CRM tells alike are in
//! crm_conformance.rs.

// The same sample booking, transcript and store the conformance suite tells its stories with.
use crate::crm_conformance::{booking, request, store, transcript};
use crate::support;
use crate::support::bid;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use support::fake_bitrix24::{self as fake, FakeBitrix, contract, contract_json, php_form};
use zapis::clock::SystemClock;
use zapis::crm::bitrix24::{Bitrix24, EventError, EventKind};
use zapis::crm::config::{Bitrix24Config, Bitrix24Mode, Bitrix24Todo};
use zapis::crm::{Crm, LeadRequest, Stage, TaskRequest};

pub(crate) fn deal_config(fake: &FakeBitrix) -> Bitrix24Config {
    let mut c = Bitrix24Config::with_webhook(&fake.webhook_url());
    c.category_id = fake::CATEGORY;
    c.booking_id_field = fake::BOOKING_FIELD.into();
    c.sources.insert("telegram".into(), "UC_TELEGRAM".into());
    c.responsible_id = Some(5);
    c.application_token = Some(SecretString::from(fake::APPLICATION_TOKEN.to_string()));
    c
}

fn lead_config(fake: &FakeBitrix) -> Bitrix24Config {
    let mut c = deal_config(fake);
    c.mode = Bitrix24Mode::Lead;
    c.category_id = 0;
    c.todo = Bitrix24Todo::Task;
    c
}

pub(crate) fn oauth_config(fake: &FakeBitrix) -> Bitrix24Config {
    let mut c = Bitrix24Config::with_oauth(
        fake.base_url.clone(),
        fake::CLIENT_ID,
        fake::CLIENT_SECRET,
        fake.token_url(),
    );
    c.booking_id_field = fake::BOOKING_FIELD.into();
    c
}

async fn client(cfg: Bitrix24Config) -> Bitrix24 {
    Bitrix24::new(cfg, store().await, &bid("salon"), Arc::new(SystemClock)).expect("client")
}

fn task(lead_id: &str) -> TaskRequest {
    TaskRequest {
        lead_id: lead_id.into(),
        text: "Подтвердить запись Анны на стрижку".into(),
        visit_at: Utc.with_ymd_and_hms(2030, 6, 1, 10, 0, 0).unwrap(),
    }
}

#[tokio::test]
async fn fake_accepts_every_request_example_in_the_contracts_as_json_and_form() {
    let fake = FakeBitrix::start().await;
    for id in [123, 10, 1] {
        fake.insert_deal(id, json!({"TITLE": format!("deal {id}")}));
    }
    let http = reqwest::Client::new();
    let cases = [
        ("crm.lead.add", "crm-lead-add.request.json"),
        (
            "crm.duplicate.findbycomm",
            "crm-duplicate-findbycomm.request.json",
        ),
        ("crm.deal.update", "crm-deal-update.request.json"),
        (
            "crm.timeline.comment.add",
            "crm-timeline-comment-add.request.json",
        ),
        (
            "crm.activity.todo.add",
            "crm-activity-todo-add.request.json",
        ),
        ("tasks.task.add", "tasks-task-add.request.json"),
    ];
    for (method, file) in cases {
        let url = format!("{}{method}.json", fake.webhook_url());
        let json_body = contract(file);
        let form_body = php_form(&contract_json(file));
        for (ct, body) in [
            ("application/json", json_body),
            ("application/x-www-form-urlencoded", form_body.into_bytes()),
        ] {
            let r = http
                .post(&url)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            assert_eq!(status, 200, "{file} as {ct} → {method}: {body}");
            assert!(
                body.get("result").is_some() && body["time"].is_object(),
                "{body}"
            );
        }
    }
    let lead = fake.leads().pop().unwrap();
    assert_eq!(lead["TITLE"], "IP Titov");
    assert_eq!(lead["OPPORTUNITY"], "12500.00");
    assert_eq!(lead["PHONE"][0]["VALUE"], "555888");
    assert_eq!(fake.deal("123")["STAGE_ID"], "WON");
    assert_eq!(fake.comments_of("deal", "10").len(), 2);
    assert_eq!(fake.activities().len(), 2);
    assert_eq!(
        fake.tasks()[0]["UF_CRM_TASK"],
        json!(["L_4", "C_7", "CO_5", "D_10"])
    );

    // A wrong webhook code is refused as documented; a missing deal is the legacy empty-code error.
    let bad = format!("{}rest/1/wrong/crm.deal.get", fake.base_url);
    let r = http
        .post(&bad)
        .json(&json!({"id": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "NO_AUTH_FOUND");
    let r = http
        .post(format!("{}crm.deal.get", fake.webhook_url()))
        .json(&json!({"id": 999}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "", "error_description": "Not found"})
    );
    // Lists page by 50 with total and next.
    for i in 0..60 {
        fake.insert_deal(1000 + i, json!({}));
    }
    let r: Value = http
        .post(format!("{}crm.deal.list", fake.webhook_url()))
        .json(&json!({"select": ["ID"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["result"].as_array().unwrap().len(), 50);
    assert_eq!(
        (r["total"].clone(), r["next"].clone()),
        (json!(63), json!(50))
    );
}

#[tokio::test]
async fn deal_mode_makes_one_contact_one_deal_one_comment_one_todo() {
    let fake = FakeBitrix::start().await;
    let crm: Arc<dyn Crm> = Arc::new(client(deal_config(&fake)).await);
    assert_eq!(crm.system(), "bitrix24");
    let b = booking("a1b2c3d4e5f60718293a4b5c6d7e8f90", "8 912 345 67 89");
    let created = crm.create_lead(&request(b.clone(), 3)).await.unwrap();
    assert!(created.contact.as_ref().unwrap().created);
    assert_eq!(fake.contacts().len(), 1);
    assert_eq!(fake.deals().len(), 1);
    let deal = fake.deal(&created.lead_id);
    for (key, want) in [
        ("CATEGORY_ID", "1"),
        ("STAGE_ID", "C1:NEW"),
        ("SOURCE_ID", "UC_TELEGRAM"),
        ("OPPORTUNITY", "1500.00"),
        ("CURRENCY_ID", "RUB"),
        ("UTM_SOURCE", "yandex"),
        ("UTM_MEDIUM", "cpc"),
        ("UTM_CAMPAIGN", "spring"),
        ("UTM_CONTENT", "banner"),
        ("UTM_TERM", "стрижка"),
        ("TITLE", "Стрижка — Анна"),
        ("ASSIGNED_BY_ID", "5"),
    ] {
        assert_eq!(deal[key], want, "{key} in {deal}");
    }
    assert_eq!(deal[fake::BOOKING_FIELD], b.id.as_str());
    assert_eq!(deal["CONTACT_ID"], created.contact.as_ref().unwrap().id);
    let description = deal["SOURCE_DESCRIPTION"].as_str().unwrap();
    assert!(
        description.contains("landing") && description.contains("start=src_landing"),
        "{description}"
    );
    let contact = &fake.contacts()[0];
    assert_eq!(contact["PHONE"][0]["VALUE"], "+79123456789");
    assert_eq!(contact["EMAIL"][0]["VALUE"], "anna@example.ru");

    let comments = fake.comments_of("deal", &created.lead_id);
    assert_eq!(comments.len(), 1);
    assert_eq!(
        created.note_ids,
        vec![comments[0]["ID"].as_str().unwrap().to_string()]
    );
    assert!(
        comments[0]["COMMENT"]
            .as_str()
            .unwrap()
            .starts_with("Переписка с ботом:")
    );

    let task_id = crm.create_task(&task(&created.lead_id)).await.unwrap();
    let todos = fake.activities();
    assert_eq!(todos.len(), 1);
    assert_eq!(todos[0]["id"].to_string(), task_id);
    assert_eq!(todos[0]["ownerTypeId"], json!(2));
    assert_eq!(todos[0]["ownerId"].to_string(), created.lead_id);
    assert_eq!(todos[0]["responsibleId"], json!(5));
    // Due the default hour before the visit.
    assert_eq!(todos[0]["deadline"], "2030-06-01T09:00:00+00:00");

    // get_lead reads the stage: CATEGORY_ID as pipeline, the stage's directory id as status.
    let read = crm.get_lead(&created.lead_id).await.unwrap().unwrap();
    assert_eq!(
        (read.pipeline_id, read.status_id, read.price),
        (1, 200, Some(1500))
    );
    assert!(crm.get_lead("999999").await.unwrap().is_none());

    // The same phone typed the other way reuses the contact.
    let again = crm
        .create_lead(&request(booking("second-booking", "+7 (912) 345-67-89"), 0))
        .await
        .unwrap();
    assert_eq!(again.contact.unwrap().id, created.contact.unwrap().id);
    assert_eq!(fake.contacts().len(), 1);
    assert_eq!(fake.deals().len(), 2);
}

#[tokio::test]
async fn moves_to_cancelled_and_done_carry_a_comment_and_events_reread_the_stage() {
    let fake = FakeBitrix::start().await;
    let crm = client(deal_config(&fake)).await;
    let created = crm
        .create_lead(&request(booking("m1", "+79123456789"), 0))
        .await
        .unwrap();
    crm.move_lead(
        &created.lead_id,
        &Stage::Cancelled,
        Some("Клиент отменил запись"),
    )
    .await
    .unwrap();
    assert_eq!(fake.deal(&created.lead_id)["STAGE_ID"], "C1:LOSE");
    let comments = fake.comments_of("deal", &created.lead_id);
    assert_eq!(comments.last().unwrap()["COMMENT"], "Клиент отменил запись");
    // Update and comment travelled together in one batch.
    assert_eq!(fake.count("batch"), 1);
    assert_eq!(
        fake.batched(),
        vec!["crm.deal.update", "crm.timeline.comment.add"]
    );
    let stage = crm.deal_stage(&created.lead_id).await.unwrap().unwrap();
    assert_eq!(
        (stage.stage_id.as_str(), stage.stage),
        ("C1:LOSE", Some(Stage::Cancelled))
    );

    crm.move_lead(&created.lead_id, &Stage::Done, None)
        .await
        .unwrap();
    assert_eq!(fake.deal(&created.lead_id)["STAGE_ID"], "C1:WON");
    // A custom stage by its directory id (what get_lead reports).
    crm.move_lead(
        &created.lead_id,
        &Stage::Custom {
            pipeline_id: None,
            status_id: 201,
        },
        None,
    )
    .await
    .unwrap();
    assert_eq!(fake.deal(&created.lead_id)["STAGE_ID"], "C1:CONFIRMED");
    assert!(crm.deal_stage("424242").await.unwrap().is_none());

    // The outbound event about it: form-encoded, verified, only the id.
    let body = format!(
        "event=ONCRMDEALUPDATE&event_handler_id=7&data%5BFIELDS%5D%5BID%5D={}&ts=1736405807&auth%5Bdomain%5D=salon.bitrix24.ru&auth%5Bmember_id%5D=m&auth%5Bapplication_token%5D={}",
        created.lead_id,
        fake::APPLICATION_TOKEN
    );
    let event = crm.parse_event(body.as_bytes()).unwrap();
    assert_eq!(event.kind, EventKind::DealUpdate);
    let reread = crm
        .deal_stage(event.id.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reread.stage_id, "C1:CONFIRMED");
}

#[tokio::test]
async fn lead_mode_puts_the_client_on_the_lead_and_links_a_known_contact() {
    let fake = FakeBitrix::start().await;
    let crm = client(lead_config(&fake)).await;
    // No contact yet: the lead carries name, phone and email itself; no contact is created.
    let created = crm
        .create_lead(&request(booking("lead-1", "8 912 345 67 89"), 3))
        .await
        .unwrap();
    assert!(created.contact.is_none());
    assert!(fake.contacts().is_empty());
    let lead = fake.lead(&created.lead_id);
    for (key, want) in [
        ("STATUS_ID", "NEW"),
        ("NAME", "Анна"),
        ("SOURCE_ID", "UC_TELEGRAM"),
        ("OPPORTUNITY", "1500.00"),
        ("CURRENCY_ID", "RUB"),
        ("UTM_CAMPAIGN", "spring"),
    ] {
        assert_eq!(lead[key], want, "{key} in {lead}");
    }
    assert_eq!(lead["PHONE"][0]["VALUE"], "+79123456789");
    assert_eq!(lead["EMAIL"][0]["VALUE"], "anna@example.ru");
    assert_eq!(lead[fake::BOOKING_FIELD], "lead-1");
    assert!(lead.get("CATEGORY_ID").is_none());
    assert_eq!(fake.comments_of("lead", &created.lead_id).len(), 1);

    // A known contact is linked by CONTACT_ID.
    let known = fake.insert_contact_with_phone("Анна", "+7 912 345-67-89");
    let second = crm
        .create_lead(&request(booking("lead-2", "+79123456789"), 0))
        .await
        .unwrap();
    assert_eq!(second.contact.as_ref().unwrap().id, known.to_string());
    assert_eq!(fake.lead(&second.lead_id)["CONTACT_ID"], known.to_string());

    // The reminder is a task bound to the lead.
    let task_id = crm.create_task(&task(&second.lead_id)).await.unwrap();
    let tasks = fake.tasks();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["ID"], task_id);
    assert_eq!(
        tasks[0]["UF_CRM_TASK"],
        json!([format!("L_{}", second.lead_id)])
    );
    assert_eq!(tasks[0]["RESPONSIBLE_ID"], json!(5));

    crm.move_lead(&second.lead_id, &Stage::Done, Some("Клиент пришёл"))
        .await
        .unwrap();
    assert_eq!(fake.lead(&second.lead_id)["STATUS_ID"], "CONVERTED");
    crm.move_lead(&created.lead_id, &Stage::Cancelled, None)
        .await
        .unwrap();
    assert_eq!(fake.lead(&created.lead_id)["STATUS_ID"], "JUNK");
    let read = crm.get_lead(&created.lead_id).await.unwrap().unwrap();
    assert_eq!((read.pipeline_id, read.status_id), (0, 304));
    assert_eq!(
        crm.find_lead_by_booking("lead-2")
            .await
            .unwrap()
            .unwrap()
            .id,
        second.lead_id
    );
}

#[tokio::test]
async fn a_partly_failed_batch_names_the_failing_command_and_a_retry_adds_only_what_is_missing() {
    let fake = FakeBitrix::start().await;
    let mut cfg = deal_config(&fake);
    cfg.note_max_chars = 1000;
    let crm = client(cfg).await;
    let created = crm
        .create_lead(&request(booking("batch-1", "+79123456789"), 0))
        .await
        .unwrap();
    let lines = transcript(60);
    fake.fail_when(
        "crm.timeline.comment.add",
        "Переписка с ботом (2/",
        400,
        json!({"error": "", "error_description": "Parameter 'fields' must be array."}),
    );
    let err = crm.add_notes(&created.lead_id, &lines).await.unwrap_err();
    assert!(err.is_permanent(), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("comment_1") && msg.contains("crm.timeline.comment.add"),
        "{msg}"
    );
    assert_eq!(err.details()[0].request_id.as_deref(), Some("comment_1"));
    assert!(msg.contains("must be array"), "{msg}");
    let parts = fake.batched().len();
    assert!(parts >= 3, "{parts} parts should need a batch");
    assert_eq!(fake.comments_of("deal", &created.lead_id).len(), parts - 1);
    // The batch answered 200 all the same.
    assert_eq!(fake.count("batch"), 1);

    fake.clear_failures();
    let added = crm
        .ensure_transcript(&created.lead_id, &lines)
        .await
        .unwrap();
    assert_eq!(added.len(), 1);
    assert_eq!(fake.comments_of("deal", &created.lead_id).len(), parts);
    assert!(
        crm.ensure_transcript(&created.lead_id, &lines)
            .await
            .unwrap()
            .is_empty()
    );

    // A move whose update fails leaves no comment behind (halt=1).
    fake.fail_when(
        "crm.deal.update",
        "",
        400,
        json!({"error": "", "error_description": "Not found"}),
    );
    let err = crm
        .move_lead(&created.lead_id, &Stage::Cancelled, Some("отмена"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("move (crm.deal.update)"), "{err}");
    assert!(err.to_string().contains("not run: comment"), "{err}");
    assert!(
        !fake
            .comments_of("deal", &created.lead_id)
            .iter()
            .any(|c| c["COMMENT"] == "отмена")
    );
}

#[tokio::test]
async fn a_burst_of_50_operations_never_overflows_the_portal_bucket() {
    let fake = FakeBitrix::start().await;
    // An Enterprise-rate portal whose bucket other apps already half fill: block above 20.
    fake.set_bucket(20.0, 5.0);
    let mut cfg = deal_config(&fake);
    cfg.max_requests_per_second = 5;
    cfg.burst = 10;
    // Two clients of one portal share one limiter.
    let a = client(cfg.clone()).await;
    let b = client(cfg).await;
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..50)
        .map(|i| {
            let crm = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { crm.find_lead_by_booking(&format!("burst-{i}")).await })
        })
        .collect();
    for h in handles {
        assert!(h.await.unwrap().unwrap().is_none());
    }
    eprintln!(
        "50 operations in {:?}, bucket peaked at {:.2} (threshold 20), {} throttled",
        started.elapsed(),
        fake.max_level(),
        fake.throttled()
    );
    assert_eq!(fake.throttled(), 0);
    assert!(fake.max_level() <= 20.0, "{}", fake.max_level());
    assert_eq!(fake.count("crm.deal.list"), 50);

    // Without the limiter the same burst overflows: the fake does block.
    let http = reqwest::Client::new();
    let url = format!("{}crm.deal.list", fake.webhook_url());
    let raw: Vec<_> = (0..40)
        .map(|_| tokio::spawn(http.post(&url).json(&json!({})).send()))
        .collect();
    let mut statuses = Vec::new();
    for h in raw {
        statuses.push(h.await.unwrap().unwrap().status().as_u16());
    }
    assert!(statuses.contains(&503), "{statuses:?}");
}

#[tokio::test]
async fn rate_and_time_limits_are_transient_with_retry_after() {
    let fake = FakeBitrix::start().await;
    let crm = client(deal_config(&fake)).await;
    // QUERY_LIMIT_EXCEEDED and a 500 are in crm_conformance.rs.
    let reset = Utc::now().timestamp() + 120;
    fake.inject(
        429,
        json!({"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked due to operation time limit.", "time": {"operating_reset_at": reset}}),
    );
    let err = crm.get_lead("1").await.unwrap_err();
    assert!(err.is_transient() && err.status() == Some(429), "{err:?}");
    let wait = err.retry_after().unwrap().as_secs();
    assert!((110..=121).contains(&wait), "{wait}");

    // A real overflow of the fake's bucket, not an injected one.
    fake.set_bucket(1.0, 0.01);
    let _ = crm.get_lead("1").await;
    let err = crm.get_lead("1").await.unwrap_err();
    assert!(
        err.is_transient() && err.to_string().contains("QUERY_LIMIT_EXCEEDED"),
        "{err}"
    );
}

#[tokio::test]
async fn errors_are_sorted_by_what_to_do_and_never_show_the_webhook_code() {
    let fake = FakeBitrix::start().await;
    let crm = client(deal_config(&fake)).await;
    // Empty `error`, 403: access denied is permanent and says what to fix.
    fake.inject(403, contract_json("error-access-denied.response.json"));
    let err = crm.get_lead("1").await.unwrap_err();
    assert!(
        err.is_permanent() && err.to_string().contains("Access denied"),
        "{err}"
    );
    fake.inject(403, json!({"error": "insufficient_scope", "error_description": "The request requires higher privileges than provided by the webhook token"}));
    assert!(crm.get_lead("1").await.unwrap_err().is_permanent());
    // A comment on a deal that does not exist: NOT_FOUND, permanent.
    let err = crm.add_note("424242", "x").await.unwrap_err();
    assert!(
        err.is_permanent() && err.to_string().contains("NOT_FOUND"),
        "{err}"
    );
    // Validation with an empty code.
    fake.inject(
        400,
        contract_json("error-fields-must-be-array.response.json"),
    );
    let err = crm.add_note("1", "x").await.unwrap_err();
    assert!(
        err.is_permanent() && err.to_string().contains("must be array"),
        "{err}"
    );

    let mut cfg = deal_config(&fake);
    cfg.webhook_url = Some(SecretString::from(format!(
        "{}rest/1/Wr0ngC0de/",
        fake.base_url
    )));
    let err = client(cfg).await.get_lead("1").await.unwrap_err();
    let msg = err.to_string();
    assert!(
        err.is_auth() && msg.contains("crm.bitrix24.webhook_url"),
        "{msg}"
    );
    assert!(!msg.contains("Wr0ngC0de"), "{msg}");

    // A portal that is down: transient, and the URL with the code stays out of the message.
    let mut cfg = deal_config(&fake);
    cfg.webhook_url = Some(SecretString::from(
        "http://127.0.0.1:9/rest/1/S3cretC0de/".to_string(),
    ));
    let err = client(cfg).await.get_lead("1").await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(!err.to_string().contains("S3cretC0de"), "{err}");
    assert!(!format!("{:?}", deal_config(&fake)).contains(fake::WEBHOOK_CODE));
}

#[test]
fn events_parse_from_the_contract_json_and_its_form_encoding_and_check_the_token() {
    let token = SecretString::from(fake::APPLICATION_TOKEN.to_string());
    let json_body = contract("event-oncrmdealadd.webhook.json");
    let event = zapis::crm::bitrix24::parse_event(&json_body, &token).unwrap();
    assert_eq!(event.kind, EventKind::DealAdd);
    assert_eq!(event.id.as_deref(), Some("7405"));
    assert_eq!(event.ts, Some(1766047124));
    assert_eq!(event.domain.as_deref(), Some("some-domain.bitrix24.com"));
    assert_eq!(event.handler_id.as_deref(), Some("975"));

    // On the wire it is form-encoded with bracket keys, every value a string.
    let form = php_form(&contract_json("event-oncrmdealadd.webhook.json"));
    assert!(form.contains("data%5BFIELDS%5D%5BID%5D=7405"), "{form}");
    assert_eq!(
        zapis::crm::bitrix24::parse_event(form.as_bytes(), &token).unwrap(),
        event
    );

    let wrong = SecretString::from("someone-elses-token-0000000000000".to_string());
    assert_eq!(
        zapis::crm::bitrix24::parse_event(form.as_bytes(), &wrong).unwrap_err(),
        EventError::WrongToken
    );
    assert_eq!(
        zapis::crm::bitrix24::parse_event(
            b"event=ONCRMDEALUPDATE&data%5BFIELDS%5D%5BID%5D=1",
            &token
        )
        .unwrap_err(),
        EventError::MissingToken
    );
    let lead = format!(
        "event=ONCRMLEADUPDATE&data[FIELDS][ID]=9&auth[application_token]={}",
        fake::APPLICATION_TOKEN
    );
    let e = zapis::crm::bitrix24::parse_event(lead.as_bytes(), &token).unwrap();
    assert_eq!(
        (e.kind, e.id.as_deref()),
        (EventKind::LeadUpdate, Some("9"))
    );
}

#[tokio::test]
async fn check_reports_stages_and_sources_and_names_a_wrong_key() {
    let fake = FakeBitrix::start().await;
    let report = client(deal_config(&fake)).await.check().await.unwrap();
    assert_eq!(report.directory, "DEAL_STAGE_1");
    assert!(report.stages.iter().any(|s| s.status_id == "C1:LOSE"));
    assert!(report.sources.iter().any(|s| s.status_id == "UC_TELEGRAM"));
    let printed = report.to_string();
    assert!(
        printed.contains("C1:LOSE Cancelled  <- cancelled_stage_id"),
        "{printed}"
    );

    let mut cfg = deal_config(&fake);
    cfg.done_stage_id = Some("C1:PAID".into());
    let err = client(cfg).await.check().await.unwrap_err();
    assert!(
        err.to_string().contains("crm.bitrix24.done_stage_id"),
        "{err}"
    );
    let mut cfg = deal_config(&fake);
    cfg.booking_id_field = "UF_CRM_NOPE".into();
    let err = client(cfg).await.check().await.unwrap_err();
    assert!(
        err.to_string().contains("crm.bitrix24.booking_id_field"),
        "{err}"
    );
    let mut cfg = deal_config(&fake);
    cfg.sources.insert("max".into(), "MAX_BOT".into());
    let err = client(cfg).await.check().await.unwrap_err();
    assert!(
        err.to_string().contains("crm.bitrix24.sources.max"),
        "{err}"
    );
    let mut cfg = lead_config(&fake);
    cfg.booking_id_field = "ORIGIN_ID".into();
    let report = client(cfg).await.check().await.unwrap();
    assert_eq!(report.directory, "STATUS");
}

#[tokio::test]
async fn the_catalog_lists_the_funnels_stages_the_fields_and_the_sources_with_their_ids() {
    use zapis::crm::Crm as _;
    let fake = FakeBitrix::start().await;
    let catalog = client(deal_config(&fake)).await.catalog().await.unwrap();
    assert_eq!(catalog.pipelines.len(), 1);
    let funnel = &catalog.pipelines[0];
    assert_eq!(funnel.name, "DEAL_STAGE_1");
    assert!(
        funnel
            .stages
            .iter()
            .any(|(id, name)| id == "C1:LOSE" && name == "Cancelled"),
        "{funnel:?}"
    );
    assert!(
        catalog.fields.iter().any(|f| f.id == "STAGE_ID"),
        "{:?}",
        catalog.fields
    );
    assert!(catalog.fields.iter().any(|f| f.kind == "crm_category"));
    assert!(catalog.sources.iter().any(|(id, _)| id == "UC_TELEGRAM"));
    // Leads have statuses, not a funnel's stages, and no category field.
    let catalog = client(lead_config(&fake)).await.catalog().await.unwrap();
    assert_eq!(catalog.pipelines[0].name, "STATUS");
    assert!(catalog.fields.iter().any(|f| f.id == "STATUS_ID"));
    assert!(!catalog.fields.iter().any(|f| f.id == "CATEGORY_ID"));
}

/// A lead that is no booking of the client's (an unfinished one), in lead mode: its own title,
/// no contact even where one has the booking's number, no phone or e-mail on the lead; found
/// again by its key. Deal mode tells the story in crm_conformance.rs.
#[tokio::test]
async fn a_lead_without_contact_carries_no_client_and_its_own_title_in_lead_mode() {
    let fake = FakeBitrix::start().await;
    fake.insert_contact_with_phone("Анна", "+7 912 345-67-89");
    let crm = client(lead_config(&fake)).await;
    let key = "u0123456789abcdef0123456789abcd";
    let req = LeadRequest {
        title: Some("Незавершённая запись — Стрижка".into()),
        without_contact: true,
        ..LeadRequest::for_booking(booking(key, "+79123456789"), None)
    };
    let created = crm.create_lead(&req).await.unwrap();
    assert!(created.contact.is_none());
    let entity = fake.lead(&created.lead_id);
    assert_eq!(
        entity["TITLE"], "Незавершённая запись — Стрижка",
        "{entity}"
    );
    assert!(
        entity.get("CONTACT_ID").is_none_or(Value::is_null),
        "{entity}"
    );
    assert!(entity.get("PHONE").is_none(), "{entity}");
    assert!(entity.get("EMAIL").is_none(), "{entity}");
    assert_eq!(fake.contacts().len(), 1, "no contact was made");
    assert_eq!(
        crm.find_lead_by_booking(key).await.unwrap().map(|l| l.id),
        Some(created.lead_id)
    );
}

/// An unpaid portal refuses the code exchange as payment required (the rest of the OAuth
/// story is in crm_conformance.rs).
#[tokio::test]
async fn an_unpaid_portal_refuses_the_code_exchange_as_payment_required() {
    let fake = FakeBitrix::start().await;
    let crm = client(oauth_config(&fake)).await;
    fake.set_unpaid(true);
    fake.issue_code("code-2");
    let err = crm.exchange_code("code-2").await.unwrap_err();
    assert!(err.is_payment_required(), "{err:?}");
}
