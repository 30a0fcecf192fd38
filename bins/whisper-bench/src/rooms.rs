//! The rooms a scenario uses: ids given on the command line, or rooms
//! created for the run with `whisper-manage createroom`.
//!
//! Rooms are administered, not signed up for: there is no HTTP route a
//! plain user may create them with, so the bench either trusts ids the
//! operator made (`--room-ids`, the simplest when one database serves many
//! runs) or runs the same command an operator would on the server's
//! database (`--database-url`, for one-command runs).

use std::path::Path;
use std::process::Command;

use whisper_protocol::RoomId;

use crate::cli::Common;
use crate::error::BenchError;
use crate::progress::note;

/// The `count` rooms of this run.
pub async fn provide(common: &Common, count: usize) -> Result<Vec<RoomId>, BenchError> {
    if !common.room_ids.is_empty() {
        return Ok(common
            .room_ids
            .iter()
            .take(count)
            .map(|&id| RoomId(id))
            .collect());
    }
    let Some(database_url) = common.database_url.clone() else {
        return Err(BenchError::Usage(
            "give the rooms to use with --room-ids, or --database-url to create them".into(),
        ));
    };
    let manage = common.manage_bin.clone();
    let rooms = tokio::task::spawn_blocking(move || {
        (0..count)
            .map(|index| create_room(&manage, &database_url, index))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|error| BenchError::Rooms(error.to_string()))??;
    let ids: Vec<String> = rooms.iter().map(ToString::to_string).collect();
    note(&format!("created rooms {}", ids.join(",")));
    Ok(rooms)
}

/// Runs `whisper-manage --database-url URL createroom --title T`, which
/// prints the new id as its last line.
fn create_room(manage: &Path, database_url: &str, index: usize) -> Result<RoomId, BenchError> {
    let title = format!("bench {} #{index}", std::process::id());
    let output = Command::new(manage)
        .args([
            "--database-url",
            database_url,
            "createroom",
            "--title",
            &title,
        ])
        .output()
        .map_err(|error| BenchError::Rooms(format!("cannot run {}: {error}", manage.display())))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(BenchError::Rooms(format!(
            "{} createroom failed ({}): {}",
            manage.display(),
            output.status,
            stderr.trim()
        )));
    }
    stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .and_then(|line| line.trim().parse().ok())
        .map(RoomId)
        .ok_or_else(|| {
            BenchError::Rooms(format!(
                "{} createroom printed no room id: {stdout:?}",
                manage.display()
            ))
        })
}
