//! Writing the moderation record from wherever an action is taken: the
//! admin API, and the chat itself (a staff member erasing someone's
//! message, muting someone).

use whisper_auth::{UserId, UserStore};
use whisper_store::{ModerationRecord, NewEntry, RecordedEntry, StoreError};

/// The moderation record as the server writes it: every entry is also
/// logged, and an entry that cannot be stored is logged at error level
/// instead of failing the action, which is already done. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Moderation {
    record: ModerationRecord,
    users: UserStore,
}

impl Moderation {
    pub fn new(record: ModerationRecord, users: UserStore) -> Self {
        Moderation { record, users }
    }

    /// Writes an action just taken to the record, and to the log.
    pub async fn record(&self, entry: NewEntry<'_>) {
        let NewEntry {
            actor,
            action,
            subject,
            detail,
        } = entry;
        match self.record.record(entry).await {
            Ok(()) => tracing::info!(actor, %action, subject, detail, "moderation"),
            Err(error) => tracing::error!(
                %error, actor, %action, subject, detail,
                "moderation action taken but not recorded"
            ),
        }
    }

    /// The latest `limit` entries, newest first.
    pub async fn latest(&self, limit: u64) -> Result<Vec<RecordedEntry>, StoreError> {
        self.record.latest(limit).await
    }

    /// How the record names the user with this id: `user ann`, or
    /// `user #7` when the account is gone or cannot be read (the entry is
    /// written either way).
    pub async fn user_named(&self, id: i64) -> String {
        match self.users.get(UserId(id)).await {
            Ok(Some(user)) => format!("user {}", user.username),
            Ok(None) | Err(_) => format!("user #{id}"),
        }
    }
}
