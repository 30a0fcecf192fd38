//! The `moderation_record` table: who did what, to whom, and when.
//!
//! Every administration and moderation action (an account created,
//! deactivated or deleted, a password reset, a room deleted, a message
//! erased, a user muted) is written here by whoever took it: the server for
//! its admin page and its moderators, `whisper-manage` for an operator at
//! the command line. Superusers read it on the admin page. Names are stored
//! as text, not as ids, so the record still says who did what once an
//! account is gone.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait, QueryOrder, QuerySelect,
};

use crate::StoreError;

mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "moderation_record")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub at: i64,
        pub actor: String,
        pub action: String,
        pub subject: String,
        pub detail: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// What was done. Stored as the word [`Display`](fmt::Display) gives, so
/// the record reads the same from SQL as on the admin page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModerationAction {
    /// An account was created (by a superuser or an operator).
    CreateUser,
    /// An account was deactivated: no login, sessions ended.
    Deactivate,
    /// A deactivated account was made active again.
    Activate,
    /// An account was deleted; its messages stay.
    DeleteUser,
    /// A password was set by someone other than its owner.
    ResetPassword,
    /// Staff status was granted.
    GrantStaff,
    /// Staff status was removed.
    RevokeStaff,
    /// A room was created.
    CreateRoom,
    /// A room was deleted, with its log.
    DeleteRoom,
    /// A room was limited to staff.
    RoomStaffOnly,
    /// A room was opened to everyone.
    RoomOpened,
    /// A room's stored history was cleared.
    ClearHistory,
    /// A message's text was erased by someone other than its author.
    DeleteMessage,
    /// A user was muted in a room.
    Mute,
    /// A mute was ended early.
    Unmute,
}

impl ModerationAction {
    /// The word stored and shown for the action.
    pub fn as_str(self) -> &'static str {
        match self {
            ModerationAction::CreateUser => "create-user",
            ModerationAction::Deactivate => "deactivate",
            ModerationAction::Activate => "activate",
            ModerationAction::DeleteUser => "delete-user",
            ModerationAction::ResetPassword => "reset-password",
            ModerationAction::GrantStaff => "grant-staff",
            ModerationAction::RevokeStaff => "revoke-staff",
            ModerationAction::CreateRoom => "create-room",
            ModerationAction::DeleteRoom => "delete-room",
            ModerationAction::RoomStaffOnly => "room-staff-only",
            ModerationAction::RoomOpened => "room-opened",
            ModerationAction::ClearHistory => "clear-history",
            ModerationAction::DeleteMessage => "delete-message",
            ModerationAction::Mute => "mute",
            ModerationAction::Unmute => "unmute",
        }
    }
}

impl fmt::Display for ModerationAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An action to record, as its taker describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewEntry<'a> {
    /// Who took it: a username, or the tool's name when no account did
    /// (`whisper-manage`).
    pub actor: &'a str,
    /// What was done.
    pub action: ModerationAction,
    /// To whom or what: `user bob`, `room 3`, `message 3#17 by bob`.
    pub subject: &'a str,
    /// Anything more worth knowing later (a mute's end, a new flag);
    /// empty when there is nothing.
    pub detail: &'a str,
}

/// One recorded action, as superusers read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEntry {
    /// When, in Unix milliseconds.
    pub at: i64,
    /// Who took it.
    pub actor: String,
    /// What was done: a [`ModerationAction`]'s word.
    pub action: String,
    /// To whom or what.
    pub subject: String,
    /// Anything more; may be empty.
    pub detail: String,
}

/// The record of moderation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ModerationRecord {
    db: DatabaseConnection,
}

impl ModerationRecord {
    /// The record over a connection whose schema has been migrated.
    pub fn new(db: DatabaseConnection) -> Self {
        ModerationRecord { db }
    }

    /// Writes an action, stamped with the current time. Call it once the
    /// action itself is stored: the record says what happened, never what
    /// was only attempted.
    pub async fn record(&self, entry: NewEntry<'_>) -> Result<(), StoreError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
            });
        entity::ActiveModel {
            at: Set(now),
            actor: Set(entry.actor.to_owned()),
            action: Set(entry.action.as_str().to_owned()),
            subject: Set(entry.subject.to_owned()),
            detail: Set(entry.detail.to_owned()),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    /// The latest `limit` actions, newest first.
    pub async fn latest(&self, limit: u64) -> Result<Vec<RecordedEntry>, StoreError> {
        Ok(entity::Entity::find()
            .order_by_desc(entity::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| RecordedEntry {
                at: row.at,
                actor: row.actor,
                action: row.action,
                subject: row.subject,
                detail: row.detail,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    on_sqlite_and_postgres!(actions_read_back_newest_first);

    async fn actions_read_back_newest_first(db: DatabaseConnection) {
        let record = ModerationRecord::new(db);
        assert_eq!(record.latest(10).await.expect("read"), []);
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis();
        for (actor, action, subject) in [
            ("root", ModerationAction::Deactivate, "user bob"),
            ("whisper-manage", ModerationAction::DeleteUser, "user bob"),
            ("ann", ModerationAction::Mute, "user cid in room 3"),
        ] {
            let entry = NewEntry {
                actor,
                action,
                subject,
                detail: if action == ModerationAction::Mute {
                    "until 2026-11-30 12:00 UTC"
                } else {
                    ""
                },
            };
            record.record(entry).await.expect("record");
        }
        let latest = record.latest(2).await.expect("read");
        let summary: Vec<(&str, &str, &str, &str)> = latest
            .iter()
            .map(|entry| {
                (
                    entry.actor.as_str(),
                    entry.action.as_str(),
                    entry.subject.as_str(),
                    entry.detail.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "ann",
                    "mute",
                    "user cid in room 3",
                    "until 2026-11-30 12:00 UTC"
                ),
                ("whisper-manage", "delete-user", "user bob", ""),
            ]
        );
        assert!(latest.iter().all(|entry| entry.at as u128 >= before));
    }
}
