//! The terminal frontend of `zapis demo`: buttons are numbered, typed answers go through as text.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use crate::conversation::{ChatEvent, ConversationError, Conversations};
use crate::dialog::{Button, Reply};
use crate::domain::{Channel, ChatRef};

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Conversation(#[from] ConversationError),
    #[error("terminal: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs one conversation over `input`/`output` until end of input or `/quit`.
pub async fn run<R, W>(
    conversations: &Conversations,
    input: R,
    mut output: W,
    start_payload: Option<String>,
    user_lang: Option<&str>,
) -> Result<(), ConsoleError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let chat = ChatRef::new(Channel::Console, "local");
    let mut buttons: Vec<Button> = Vec::new();
    let replies = conversations
        .handle(
            &chat,
            user_lang,
            ChatEvent::Start {
                payload: start_payload,
            },
        )
        .await?;
    render(&mut output, &replies, &mut buttons).await?;
    let mut lines = input.lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        if line.is_empty() {
            output.write_all(b"> ").await?;
            output.flush().await?;
            continue;
        }
        if line == "/quit" || line == "/exit" {
            break;
        }
        let event = event_for(line, &buttons);
        let replies = conversations.handle(&chat, user_lang, event).await?;
        render(&mut output, &replies, &mut buttons).await?;
    }
    output.flush().await?;
    Ok(())
}

/// A number picks a button of the last keyboard; anything else is typed text.
fn event_for(line: &str, buttons: &[Button]) -> ChatEvent {
    if let Some(rest) = line.strip_prefix("/start") {
        let payload = rest.trim();
        return ChatEvent::Start {
            payload: (!payload.is_empty()).then(|| payload.to_string()),
        };
    }
    if let Some(button) = line
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| buttons.get(i))
    {
        return ChatEvent::pressing(button);
    }
    ChatEvent::Text(line.to_string())
}

async fn render<W: AsyncWrite + Unpin>(
    out: &mut W,
    replies: &[Reply],
    buttons: &mut Vec<Button>,
) -> Result<(), std::io::Error> {
    let mut text = String::new();
    for reply in replies {
        text.push('\n');
        text.push_str(reply.text.trim_end());
        text.push('\n');
        if !reply.buttons.is_empty() {
            buttons.clear();
            for row in &reply.buttons {
                let cells: Vec<String> = row
                    .iter()
                    .map(|b| {
                        buttons.push(b.clone());
                        format!("[{}] {}", buttons.len(), b.label)
                    })
                    .collect();
                text.push_str("  ");
                text.push_str(&cells.join("   "));
                text.push('\n');
            }
        }
    }
    text.push_str("> ");
    out.write_all(text.as_bytes()).await?;
    out.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_press_buttons_and_text_stays_text() {
        let buttons = vec![
            Button {
                label: "A".into(),
                data: "1|a".into(),
            },
            Button {
                label: "B".into(),
                data: "1|b".into(),
            },
        ];
        assert_eq!(event_for("2", &buttons), ChatEvent::press("1|b", "B"));
        assert_eq!(event_for("3", &buttons), ChatEvent::Text("3".into()));
        assert_eq!(event_for("0", &buttons), ChatEvent::Text("0".into()));
        assert_eq!(
            event_for("+7 912", &buttons),
            ChatEvent::Text("+7 912".into())
        );
        assert_eq!(
            event_for("/start promo", &buttons),
            ChatEvent::Start {
                payload: Some("promo".into())
            }
        );
        assert_eq!(
            event_for("/start", &buttons),
            ChatEvent::Start { payload: None }
        );
    }
}
