//! The dependency rules ARCHITECTURE.md states, checked on the real
//! dependency graph (`cargo tree`, with each crate's own features, as a
//! service depending on it alone would build it).

use std::collections::BTreeSet;
use std::process::Command;

/// The HTTP and WebSocket stacks: only the server (and the example) knows
/// them.
const HTTP: &[&str] = &["hyper", "axum", "tungstenite", "tokio-tungstenite"];
/// Database access and its drivers.
const DATABASE: &[&str] = &["sea-orm", "sqlx", "sqlx-sqlite", "sqlx-postgres"];
/// The database drivers alone.
const DRIVERS: &[&str] = &["sqlx-sqlite", "sqlx-postgres"];
/// The broker client behind whisper-rooms' `redis` feature.
const BROKER: &[&str] = &["redis", "deadpool-redis"];

/// The names of every crate `package` builds with, normal dependencies
/// only, with `args` (features) added to the `cargo tree` call.
fn dependencies(package: &str, args: &[&str]) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(["tree", "--locked", "--offline", "--edges", "normal"])
        .args(["--prefix", "none", "--format", "{p}", "--package", package])
        .args(args)
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn assert_none_of(package: &str, args: &[&str], forbidden: &[&[&str]]) {
    let found = dependencies(package, args);
    assert!(found.contains(package), "{package} in its own tree");
    let offending: Vec<&str> = forbidden
        .iter()
        .flat_map(|names| names.iter().copied())
        .filter(|name| found.contains(*name))
        .collect();
    assert!(
        offending.is_empty(),
        "{package} {args:?} must not depend on {offending:?}"
    );
}

#[test]
fn protocol_does_no_io() {
    assert_none_of(
        "whisper-protocol",
        &[],
        &[HTTP, DATABASE, BROKER, &["tokio"]],
    );
}

#[test]
fn rooms_knows_no_http_or_database_and_redis_only_by_feature() {
    assert_none_of("whisper-rooms", &[], &[HTTP, DATABASE, BROKER]);
    assert_none_of("whisper-rooms", &["--features", "redis"], &[HTTP, DATABASE]);
}

#[test]
fn chat_knows_no_transport_and_no_database() {
    assert_none_of("whisper-chat", &[], &[HTTP, DATABASE, BROKER]);
}

#[test]
fn auth_knows_no_http_and_takes_drivers_only_by_feature() {
    assert_none_of("whisper-auth", &[], &[HTTP, BROKER]);
    assert_none_of("whisper-auth", &["--no-default-features"], &[HTTP, DRIVERS]);
}

#[test]
fn store_knows_no_http_broker_or_layer_and_takes_drivers_only_by_feature() {
    assert_none_of("whisper-store", &[], &[HTTP, BROKER, &["whisper-rooms"]]);
    assert_none_of(
        "whisper-store",
        &["--no-default-features"],
        &[HTTP, DRIVERS],
    );
}

#[test]
fn manage_builds_without_the_server_or_its_http_stack() {
    assert_none_of(
        "whisper-manage",
        &[],
        &[HTTP, &["whisper-server", "prometheus-client", "rust-embed"]],
    );
}

#[test]
fn the_forbidden_names_are_real_crates() {
    // Guards the lists above against a renamed crate passing silently.
    let server = dependencies("whisper-server", &[]);
    for name in [
        "hyper",
        "tokio-tungstenite",
        "sea-orm",
        "sqlx-sqlite",
        "prometheus-client",
        "rust-embed",
    ] {
        assert!(server.contains(name), "whisper-server uses {name}");
    }
    let redis = dependencies("whisper-rooms", &["--features", "redis"]);
    assert!(BROKER.iter().all(|name| redis.contains(*name)));
}
