use super::*;
use crate::dialog::Button;

fn reply(buttons: Vec<Vec<(&str, &str)>>) -> Reply {
    Reply {
        text: "x".into(),
        buttons: buttons
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|(l, d)| Button {
                        label: l.into(),
                        data: d.into(),
                    })
                    .collect()
            })
            .collect(),
        ..Reply::default()
    }
}

#[test]
fn vcards_give_their_phone() {
    let vcf = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Анна\r\nTEL;TYPE=cell:+79161234567\r\nEND:VCARD";
    assert_eq!(vcard_phone(vcf).as_deref(), Some("+79161234567"));
    assert_eq!(
        vcard_phone("BEGIN:VCARD\nitem1.TEL;VALUE=uri:tel:+7 912 345-67-89\nEND:VCARD").as_deref(),
        Some("+7 912 345-67-89")
    );
    assert_eq!(vcard_phone("BEGIN:VCARD\nFN:x\nEND:VCARD"), None);
    let att =
        json!([{"type": "contact", "payload": {"vcf_info": vcf, "max_info": {"user_id": 1}}}]);
    assert_eq!(
        contact_phone(att.as_array().unwrap()).as_deref(),
        Some("+79161234567")
    );
    let att = json!([{"type": "image", "payload": {}}]);
    assert_eq!(contact_phone(att.as_array().unwrap()), None);
}

#[test]
fn keyboards_respect_max_limits() {
    let many: Vec<(&str, &str)> = (0..10).map(|_| ("b", "p")).collect();
    let kb = keyboard(&reply(vec![many]), Lang::Ru).unwrap();
    let rows = kb["payload"]["buttons"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].as_array().unwrap().len(), 7);
    let long = "я".repeat(300);
    let kb = keyboard(
        &reply(vec![vec![
            (long.as_str(), "p"),
            ("Сайт", "https://example.com"),
        ]]),
        Lang::Ru,
    )
    .unwrap();
    let b = &kb["payload"]["buttons"][0];
    assert_eq!(b[0]["text"].as_str().unwrap().chars().count(), 128);
    assert_eq!(b[1]["type"], "link");
    let rows: Vec<Vec<(&str, &str)>> = (0..40).map(|_| vec![("b", "p")]).collect();
    let mut r = reply(rows);
    r.request_contact = true;
    let kb = keyboard(&r, Lang::En).unwrap();
    let rows = kb["payload"]["buttons"].as_array().unwrap();
    assert_eq!(rows.len(), MAX_ROWS);
    assert_eq!(rows[0][0]["type"], "request_contact");
    assert!(keyboard(&reply(vec![]), Lang::Ru).is_none());
}

#[test]
fn updates_translate_to_chat_events() {
    let started = MaxUpdate::from_value(
        json!({"update_type":"bot_started","timestamp":1,"chat_id":5,
        "user":{"user_id":7,"name":"A"},"payload":"src_landing","user_locale":"en"}),
    );
    let i = incoming(&started).unwrap();
    assert_eq!(i.target, MaxTarget::User(7));
    assert_eq!(i.lang.as_deref(), Some("en"));
    assert_eq!(
        i.event,
        ChatEvent::Start {
            payload: Some("src_landing".into())
        }
    );
    let typed = MaxUpdate::from_value(json!({"update_type":"message_created","timestamp":1,
        "message":{"recipient":{"chat_id":5,"chat_type":"dialog"},"timestamp":1,
          "body":{"mid":"m1","seq":116327994376978687_i64,"text":"/start ad_vk"},
          "sender":{"user_id":7,"is_bot":false}}}));
    assert_eq!(
        incoming(&typed).unwrap().event,
        ChatEvent::Start {
            payload: Some("ad_vk".into())
        }
    );
    let echo = MaxUpdate::from_value(json!({"update_type":"message_created","timestamp":1,
        "message":{"recipient":{"chat_id":-5,"chat_type":"chat"},"timestamp":1,
          "body":{"mid":"m1","seq":1,"text":"hi"},"sender":{"user_id":9,"is_bot":true}}}));
    assert!(incoming(&echo).is_none());
    let other = MaxUpdate::from_value(json!({"update_type":"bot_stopped","timestamp":1}));
    assert!(incoming(&other).is_none());
    let broken = MaxUpdate::from_value(json!({"update_type":"bot_started","timestamp":1}));
    assert!(matches!(broken, MaxUpdate::Unreadable { .. }));
}

#[test]
fn webhook_secret_is_checked() {
    let secret = SecretString::from("s3cret_value");
    let body = br#"{"update_type":"bot_started","timestamp":1,"chat_id":1,"user":{"user_id":1}}"#;
    let mut headers = HeaderMap::new();
    assert!(matches!(
        parse_webhook(&headers, body, Some(&secret)),
        Err(MaxError::BadSecret)
    ));
    headers.insert(SECRET_HEADER, HeaderValue::from_static("s3cret_value"));
    let updates = parse_webhook(&headers, body, Some(&secret)).unwrap();
    assert_eq!(updates.len(), 1);
    assert!(parse_webhook(&headers, b"[1]", Some(&secret)).is_err());
}

#[test]
fn contacts_are_logged_masked() {
    let text = describe(&ChatEvent::Contact {
        phone: "+79161234567".into(),
    });
    assert!(!text.contains("1234567"), "{text}");
}

#[test]
fn a_press_takes_its_label_from_the_keyboard_it_came_with() {
    let keyboard = keyboard(
        &reply(vec![
            vec![("10:00", "t:1000"), ("11:00", "t:1100")],
            vec![("Назад", "back")],
        ]),
        Lang::Ru,
    )
    .expect("a keyboard");
    let attachments = [
        serde_json::json!({"type": "image", "payload": {}}),
        keyboard,
    ];
    assert_eq!(
        bot::pressed_label(&attachments, "t:1100").as_deref(),
        Some("11:00")
    );
    assert_eq!(
        bot::pressed_label(&attachments, "back").as_deref(),
        Some("Назад")
    );
    assert_eq!(bot::pressed_label(&attachments, "t:1200"), None);
    assert_eq!(bot::pressed_label(&[], "t:1100"), None);
}
