//! Users created by hand and the chat history: conversations and their messages.
//!
//! A message is written when it starts and rewritten as it streams (`update_message`), each write
//! its own transaction, so a crash loses at most the tokens since the last write and never a
//! finished message.

use rusqlite::{params, OptionalExtension};

use super::{now, MemoryStore};
use crate::error::{Error, Result};

/// One conversation, newest activity first in listings.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: i64,
    pub user: String,
    pub title: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub messages: i64,
}

/// One message; `payload` is JSON the caller owns (tool calls, recommendations, cited memories).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: i64,
    pub conversation_id: i64,
    pub role: String,
    pub content: String,
    pub payload: String,
    pub created_at: i64,
}

const ROLES: [&str; 3] = ["user", "assistant", "system"];
const MAX_TITLE_CHARS: usize = 200;

fn check_role(role: &str) -> Result<()> {
    if ROLES.contains(&role) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("message role must be one of {ROLES:?}, not {role:?}")))
    }
}

fn check_payload(payload: &str) -> Result<()> {
    serde_json::from_str::<serde_json::Value>(payload)
        .map(|_| ())
        .map_err(|e| Error::InvalidArgument(format!("message payload is not JSON: {e}")))
}

impl MemoryStore {
    /// Adds a user with no history (a person starting from scratch); true if it was new.
    pub fn add_user(&self, user: &str) -> Result<bool> {
        let user = user.trim();
        if user.is_empty() || user.chars().any(char::is_control) {
            return Err(Error::InvalidArgument(format!("invalid user id {user:?}")));
        }
        self.write("while adding a user", |tx, _| {
            let added = tx.execute(
                "INSERT OR IGNORE INTO users (ext_id, attributes, created_at) VALUES (?1, '{}', ?2)",
                params![user, now()],
            )?;
            Ok(added == 1)
        })
    }

    pub fn create_conversation(&self, user: &str, title: &str) -> Result<i64> {
        let title: String = title.trim().chars().take(MAX_TITLE_CHARS).collect();
        self.write("while creating a conversation", |tx, _| {
            let uid = Self::require_user(tx, user)?;
            let t = now();
            tx.execute(
                "INSERT INTO conversations (user_id, title, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
                params![uid, title, t],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    pub fn rename_conversation(&self, id: i64, title: &str) -> Result<()> {
        let title: String = title.trim().chars().take(MAX_TITLE_CHARS).collect();
        self.write("while renaming a conversation", |tx, _| {
            let n = tx.execute(
                "UPDATE conversations SET title = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, title, now()],
            )?;
            if n == 0 {
                return Err(Error::NotFound(format!("unknown conversation {id}")));
            }
            Ok(())
        })
    }

    /// Deletes a conversation and its messages (from the file too: see `scrub_wal`).
    pub fn delete_conversation(&self, id: i64) -> Result<bool> {
        let deleted = self.write("while deleting a conversation", |tx, _| {
            tx.execute("DELETE FROM messages WHERE conversation_id = ?1", params![id])?;
            Ok(tx.execute("DELETE FROM conversations WHERE id = ?1", params![id])? == 1)
        })?;
        if deleted {
            self.scrub_wal();
        }
        Ok(deleted)
    }

    /// A user's conversations, most recently active first.
    pub fn list_conversations(&self, user: &str, limit: usize) -> Result<Vec<Conversation>> {
        let conn = self.reader();
        let uid = Self::require_user(&conn, user)?;
        let mut stmt = conn.prepare_cached(
            "SELECT c.id, c.title, c.created_at, c.updated_at, \
             (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id) \
             FROM conversations c WHERE c.user_id = ?1 ORDER BY c.updated_at DESC, c.id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![uid, limit as i64], |r| {
            Ok(Conversation {
                id: r.get(0)?,
                user: user.to_string(),
                title: r.get(1)?,
                created_at: r.get(2)?,
                updated_at: r.get(3)?,
                messages: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Appends a message and returns its id (the conversation's activity time moves on).
    pub fn add_message(&self, conversation_id: i64, role: &str, content: &str, payload: &str) -> Result<i64> {
        check_role(role)?;
        check_payload(payload)?;
        self.write("while saving a message", |tx, _| {
            let t = now();
            let n = tx.execute("UPDATE conversations SET updated_at = ?2 WHERE id = ?1", params![conversation_id, t])?;
            if n == 0 {
                return Err(Error::NotFound(format!("unknown conversation {conversation_id}")));
            }
            tx.execute(
                "INSERT INTO messages (conversation_id, role, content, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![conversation_id, role, content, payload, t],
            )?;
            Ok(tx.last_insert_rowid())
        })
    }

    /// Rewrites a message's content (and payload, when given) as it streams in.
    pub fn update_message(&self, id: i64, content: &str, payload: Option<&str>) -> Result<()> {
        if let Some(p) = payload {
            check_payload(p)?;
        }
        self.write("while saving a message", |tx, _| {
            let n = match payload {
                Some(p) => {
                    tx.execute("UPDATE messages SET content = ?2, payload = ?3 WHERE id = ?1", params![id, content, p])?
                }
                None => tx.execute("UPDATE messages SET content = ?2 WHERE id = ?1", params![id, content])?,
            };
            if n == 0 {
                return Err(Error::NotFound(format!("unknown message {id}")));
            }
            Ok(())
        })
    }

    /// A conversation's messages, oldest first.
    pub fn conversation_messages(&self, conversation_id: i64) -> Result<Vec<Message>> {
        let conn = self.reader();
        let exists: Option<i64> = conn
            .query_row("SELECT id FROM conversations WHERE id = ?1", params![conversation_id], |r| r.get(0))
            .optional()?;
        if exists.is_none() {
            return Err(Error::NotFound(format!("unknown conversation {conversation_id}")));
        }
        let mut stmt = conn.prepare_cached(
            "SELECT id, role, content, payload, created_at FROM messages WHERE conversation_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map(params![conversation_id], |r| {
            Ok(Message {
                id: r.get(0)?,
                conversation_id,
                role: r.get(1)?,
                content: r.get(2)?,
                payload: r.get(3)?,
                created_at: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    fn store() -> (tempfile::TempDir, MemoryStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = MemoryStore::open(dir.path(), StoreOptions::default()).unwrap();
        (dir, store)
    }

    #[test]
    fn conversations_keep_messages_in_order_and_stream_updates() {
        let (_dir, s) = store();
        assert!(s.add_user("ana").unwrap());
        assert!(!s.add_user("ana").unwrap());
        let c = s.create_conversation("ana", "  Friday night  ").unwrap();
        let q = s.add_message(c, "user", "a funny movie", "{}").unwrap();
        let a = s.add_message(c, "assistant", "", "{}").unwrap();
        s.update_message(a, "Here are", None).unwrap();
        s.update_message(a, "Here are ten", Some(r#"{"items": [1, 2]}"#)).unwrap();
        let msgs = s.conversation_messages(c).unwrap();
        assert_eq!(msgs.iter().map(|m| m.id).collect::<Vec<_>>(), vec![q, a]);
        assert_eq!(msgs[1].content, "Here are ten");
        assert_eq!(msgs[1].payload, r#"{"items": [1, 2]}"#);
        let list = s.list_conversations("ana", 10).unwrap();
        assert_eq!((list[0].title.as_str(), list[0].messages), ("Friday night", 2));
        assert!(s.delete_conversation(c).unwrap());
        assert!(s.list_conversations("ana", 10).unwrap().is_empty());
        assert!(matches!(s.conversation_messages(c), Err(Error::NotFound(_))));
    }

    /// Bytes of the database and its WAL, as a forensic reader of the disk would see them.
    fn on_disk(dir: &std::path::Path) -> Vec<u8> {
        let mut bytes = std::fs::read(dir.join("memory.sqlite3")).unwrap();
        bytes.extend(std::fs::read(dir.join("memory.sqlite3-wal")).unwrap_or_default());
        bytes
    }

    fn holds(haystack: &[u8], needle: &str) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    #[test]
    fn deleted_text_is_gone_from_the_files_while_the_store_is_open() {
        use crate::model::{NewMemory, Tier};
        let (dir, s) = store();
        s.add_user("ana").unwrap();
        let c = s.create_conversation("ana", "x").unwrap();
        s.add_message(c, "user", "my secret SECRETCHAT1 question", "{}").unwrap();
        let m = s
            .add_memory(&NewMemory {
                tier: Some(Tier::Pattern),
                user: Some("ana".into()),
                text: "remembers SECRETMEMORY2 about ana".into(),
                ..Default::default()
            })
            .unwrap();
        s.add_memory(&NewMemory {
            tier: Some(Tier::Pattern),
            user: Some("ana".into()),
            text: "a memory that stays".into(),
            ..Default::default()
        })
        .unwrap();
        let before = on_disk(dir.path());
        assert!(holds(&before, "SECRETCHAT1") && holds(&before, "SECRETMEMORY2"));
        assert!(s.delete_conversation(c).unwrap());
        assert_eq!(s.forget_memory(&[m]).unwrap(), 1);
        let after = on_disk(dir.path());
        assert!(!holds(&after, "SECRETCHAT1") && !holds(&after, "SECRETMEMORY2"));
        assert!(holds(&after, "a memory that stays"));
    }

    #[test]
    fn bad_input_is_rejected_and_writes_nothing() {
        let (_dir, s) = store();
        assert!(matches!(s.add_user(" "), Err(Error::InvalidArgument(_))));
        assert!(matches!(s.create_conversation("nobody", "x"), Err(Error::NotFound(_))));
        s.add_user("ana").unwrap();
        let c = s.create_conversation("ana", "x").unwrap();
        assert!(matches!(s.add_message(c, "robot", "hi", "{}"), Err(Error::InvalidArgument(_))));
        assert!(matches!(s.add_message(c, "user", "hi", "{not json"), Err(Error::InvalidArgument(_))));
        assert!(matches!(s.add_message(c + 1, "user", "hi", "{}"), Err(Error::NotFound(_))));
        assert!(matches!(s.update_message(999, "x", None), Err(Error::NotFound(_))));
        assert!(s.conversation_messages(c).unwrap().is_empty());
    }
}
