//! Per-chat turns: one chat's updates one at a time, in arrival order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Per-chat turns: updates of one chat are handled one at a time, in the order they arrived,
/// while different chats run concurrently. A chat holds state only while it has an update in
/// flight, so idle chats cost nothing.
#[derive(Default)]
pub(super) struct ChatTurns {
    waiting: Mutex<HashMap<i64, VecDeque<oneshot::Sender<()>>>>,
}

/// A place in a chat's line; dropping it passes the turn on. It owns its way back to the
/// line, so a turn can move onto a task of its own.
pub(super) struct Turn {
    turns: Arc<ChatTurns>,
    chat: i64,
    wait: Option<oneshot::Receiver<()>>,
}

impl ChatTurns {
    /// Joins the chat's line without waiting (call before the first await of a handler).
    pub(super) fn enter(self: &Arc<Self>, chat: i64) -> Turn {
        let mut waiting = self.lock();
        let wait = match waiting.get_mut(&chat) {
            Some(line) => {
                let (tx, rx) = oneshot::channel();
                line.push_back(tx);
                Some(rx)
            }
            None => {
                waiting.insert(chat, VecDeque::new());
                None
            }
        };
        Turn {
            turns: self.clone(),
            chat,
            wait,
        }
    }

    /// Chats with an update in flight.
    #[cfg(test)]
    pub(super) fn busy_chats(&self) -> usize {
        self.lock().len()
    }

    fn pass_on(&self, chat: i64) {
        let mut waiting = self.lock();
        if let Some(line) = waiting.get_mut(&chat) {
            while let Some(next) = line.pop_front() {
                // A waiter that went away (its handler was dropped) is skipped.
                if next.send(()).is_ok() {
                    return;
                }
            }
            waiting.remove(&chat);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, VecDeque<oneshot::Sender<()>>>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Turn {
    /// Resolves when every earlier update of this chat is done.
    pub(super) async fn wait(&mut self) {
        if let Some(rx) = self.wait.as_mut() {
            // The sender is dropped only by `pass_on` after a failed send, never while queued.
            let _ = rx.await;
            self.wait = None;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let holds = match self.wait.as_mut() {
            None => true,
            Some(rx) => {
                // Dropped while waiting: refuse the turn, unless it was given just now.
                rx.close();
                rx.try_recv().is_ok()
            }
        };
        if holds {
            self.turns.pass_on(self.chat);
        }
    }
}
