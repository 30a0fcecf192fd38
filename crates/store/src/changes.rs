//! The `access_changes` table: changes of access recorded by a process
//! that reaches no server's channel layer, for every node to pick up.
//!
//! A server that changes who may use what (deletes a room, ends a session)
//! tells its connections through the channel layer at once. An
//! administration tool (`whisper-manage`) runs apart from every server,
//! often with no broker at all (one node, in-memory layer), so it records
//! the change here instead; each node reads what is new every half second
//! or so and announces it to its own connections. The text of a change is
//! the host's business (Whisper's server stores `whisper_chat::AccessChange`
//! in its text form); this crate keeps it, in order, for a while.

use std::time::{SystemTime, UNIX_EPOCH};

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use crate::StoreError;

mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "access_changes")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub change: String,
        pub created_at: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// One recorded change: its place in the feed and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedChange {
    /// Increases with every change recorded; a reader asks for what came
    /// after the last one it saw.
    pub id: i64,
    /// The change, as the recorder wrote it.
    pub change: String,
}

/// The feed of recorded changes. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ChangeFeed {
    db: DatabaseConnection,
}

impl ChangeFeed {
    /// The feed over a connection whose schema has been migrated.
    pub fn new(db: DatabaseConnection) -> Self {
        ChangeFeed { db }
    }

    /// Records a change, once the change itself is stored: a reader acts
    /// on it by reading the new state.
    pub async fn record(&self, change: &str) -> Result<(), StoreError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
            });
        entity::ActiveModel {
            change: Set(change.to_owned()),
            created_at: Set(now),
            ..Default::default()
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    /// The id of the latest change, 0 when there is none: where a reader
    /// that starts now begins (what came before was acted on by the
    /// sessions and rooms it changed).
    pub async fn latest(&self) -> Result<i64, StoreError> {
        let latest = entity::Entity::find()
            .order_by_desc(entity::Column::Id)
            .one(&self.db)
            .await?;
        Ok(latest.map_or(0, |row| row.id))
    }

    /// At most `limit` changes recorded after the one with id `after`,
    /// oldest first.
    pub async fn after(&self, after: i64, limit: u64) -> Result<Vec<RecordedChange>, StoreError> {
        Ok(entity::Entity::find()
            .filter(entity::Column::Id.gt(after))
            .order_by_asc(entity::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|row| RecordedChange {
                id: row.id,
                change: row.change,
            })
            .collect())
    }

    /// Deletes the changes recorded before `before` (Unix milliseconds);
    /// returns how many. Every node reads within a second of a change, so
    /// an hour's worth is plenty to keep.
    pub async fn prune(&self, before: i64) -> Result<u64, StoreError> {
        let deleted = entity::Entity::delete_many()
            .filter(entity::Column::CreatedAt.lt(before))
            .exec(&self.db)
            .await?;
        Ok(deleted.rows_affected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn feed() -> ChangeFeed {
        let db = whisper_migrations::connect_migrated("sqlite::memory:")
            .await
            .expect("migrated");
        ChangeFeed::new(db)
    }

    #[tokio::test]
    async fn changes_are_read_in_order_from_where_a_reader_stands() {
        let feed = feed().await;
        assert_eq!(feed.latest().await.expect("latest"), 0);
        for change in ["user 1", "room-deleted 2", "user 3"] {
            feed.record(change).await.expect("record");
        }
        let all = feed.after(0, 10).await.expect("read");
        let texts: Vec<&str> = all.iter().map(|row| row.change.as_str()).collect();
        assert_eq!(texts, ["user 1", "room-deleted 2", "user 3"]);
        assert_eq!(feed.latest().await.expect("latest"), all[2].id);
        let rest = feed.after(all[0].id, 1).await.expect("read");
        assert_eq!(rest, [all[1].clone()]);

        assert_eq!(feed.prune(0).await.expect("prune"), 0, "none that old");
        assert_eq!(feed.prune(i64::MAX).await.expect("prune"), 3);
        assert!(feed.after(0, 10).await.expect("read").is_empty());
    }
}
