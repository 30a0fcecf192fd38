//! Protocol v2's guarantees on two `whisper-server` nodes sharing one
//! PostgreSQL database and one Redis: history, recovery, safe retries, v1
//! and v2 in one room, typing, deletion and retention, with each test's
//! clients spread over both nodes, so every guarantee is seen crossing
//! Redis and the shared log. The scenarios of `whisper_tests::v2::guarantees`
//! and `whisper_tests::v2::deletion` run here as they run on one server in
//! whisper-tests' `tests/v2.rs`;
//! durability across `kill -9` is in `durability.rs`.

use serde_json::json;
use whisper_tests::Nodes;
use whisper_tests::v2::{deletion, guarantees};
use whisper_tests::v2::{seqs, texts};
use whisper_tests::{Cluster, WsClient};

const BIN: &str = env!("CARGO_BIN_EXE_whisper-server");

#[tokio::test]
async fn a_late_joiner_on_the_other_node_gets_the_latest_page_and_pages_back() {
    let cluster = Cluster::start(BIN).await;
    guarantees::a_late_joiner_gets_the_latest_page_and_pages_back(Nodes::two(&cluster)).await;
}

#[tokio::test]
async fn a_reconnect_recovers_without_gap_or_duplicate_while_another_node_talks() {
    let cluster = Cluster::start(BIN).await;
    guarantees::a_reconnect_recovers_without_gap_or_duplicate_while_others_talk(Nodes::two(
        &cluster,
    ))
    .await;
}

#[tokio::test]
async fn a_retried_nonce_is_acknowledged_again_on_either_node_but_heard_once() {
    let cluster = Cluster::start(BIN).await;
    guarantees::a_retried_nonce_is_acknowledged_again_but_heard_once(Nodes::two(&cluster)).await;
}

#[tokio::test]
async fn v1_and_v2_members_on_two_nodes_hear_each_other_and_v1_sends_are_stored() {
    let cluster = Cluster::start(BIN).await;
    guarantees::v1_and_v2_members_hear_each_other_and_v1_sends_are_stored(Nodes::two(&cluster))
        .await;
}

#[tokio::test]
async fn typing_reaches_the_other_node_and_is_not_stored() {
    let cluster = Cluster::start(BIN).await;
    guarantees::typing_reaches_the_others_and_is_not_stored(Nodes::two(&cluster)).await;
}

#[tokio::test]
async fn a_message_deleted_on_one_node_is_deleted_for_members_on_both() {
    let cluster = Cluster::start(BIN).await;
    deletion::the_author_or_staff_delete_and_every_node_sees_it(Nodes::two(&cluster)).await;
}

/// The server applies retention when it starts (and every minute), so a
/// node restarted with a small `--history-max-per-room` trims what the
/// other node stored.
#[tokio::test]
async fn retention_on_postgres_keeps_the_latest_messages_and_numbering_goes_on() {
    let mut cluster = Cluster::start(BIN).await;
    let room = cluster.db.create_room("Lobby", false).await;
    let ann = cluster.user(&cluster.a, "ann", false).await;
    let mut on_a = cluster.a.connect_v2(&ann).await;
    let joined = on_a.request(json!({"command": "join", "room": room})).await;
    let epoch = joined["result"]["epoch"].clone();
    for n in 1..=5 {
        on_a.say(room, &format!("m{n}")).await;
    }

    cluster.b = cluster.node(&["--history-max-per-room", "3"]);
    let mut on_b = cluster.b.connect_v2(&ann).await;
    let kept = on_b.history_until(room, &[3, 4, 5]).await;
    assert_eq!(texts(&kept["messages"]), ["m3", "m4", "m5"]);
    assert_eq!(kept["has_more"], false, "nothing older is kept");
    assert_eq!(kept["epoch"], epoch, "retention keeps the epoch");

    // Missed messages that were removed cannot be recovered; those kept
    // can.
    let rejoin =
        |seq: u64| json!({"command": "join", "room": room, "since": {"seq": seq, "epoch": epoch}});
    let too_late = on_b.request(rejoin(1)).await;
    assert_eq!(too_late["result"]["recovered"], false, "{too_late}");
    assert_eq!(seqs(&too_late["result"]["messages"]), [3, 4, 5]);
    let in_time = on_b.request(rejoin(2)).await;
    assert_eq!(in_time["result"]["recovered"], true, "{in_time}");
    assert_eq!(seqs(&in_time["result"]["messages"]), [3, 4, 5]);

    assert_eq!(on_a.say(room, "m6").await["seq"], 6);
    assert_eq!(on_b.say(room, "m7").await["seq"], 7);
    assert_eq!(seqs(&on_b.whole_history(room).await), [3, 4, 5, 6, 7]);
}

#[tokio::test]
async fn v2_on_two_nodes_gives_each_room_one_numbering_seen_in_order_everywhere() {
    const EACH: usize = 150;
    let cluster = Cluster::start(BIN).await;
    let room = cluster.db.create_room("Lobby", false).await;
    let ann = cluster.user(&cluster.a, "ann", false).await;
    let bob = cluster.user(&cluster.b, "bob", false).await;
    let mut on_a = cluster.a.connect_v2(&ann).await;
    let mut on_b = cluster.b.connect_v2(&bob).await;
    let mut watch_a = cluster.a.connect_v2(&ann).await;
    let mut watch_b = cluster.b.connect_v2(&bob).await;
    for client in [&mut on_a, &mut on_b, &mut watch_a, &mut watch_b] {
        client
            .request(json!({"command": "join", "room": room}))
            .await;
    }
    // Both nodes store and publish at once: their publications interleave,
    // and may overtake each other.
    let send_all = |mut client: WsClient, who: &'static str| {
        tokio::spawn(async move {
            for n in 0..EACH {
                client
                    .send_json(
                        json!({"command": "send", "room": room, "text": format!("{who}{n}")}),
                    )
                    .await;
            }
            client
        })
    };
    let sending_a = send_all(on_a, "a");
    let sending_b = send_all(on_b, "b");
    let total = (2 * EACH) as u64;
    let in_order: Vec<u64> = (1..=total).collect();
    assert_eq!(
        seqs(&watch_a.next_messages(2 * EACH).await),
        in_order,
        "on A"
    );
    assert_eq!(
        seqs(&watch_b.next_messages(2 * EACH).await),
        in_order,
        "on B"
    );
    sending_a.await.expect("A sent");
    sending_b.await.expect("B sent");
}

#[tokio::test]
async fn v2_recovers_across_nodes_and_from_the_database_after_redis_restarts() {
    let mut cluster = Cluster::start(BIN).await;
    let room = cluster.db.create_room("Lobby", false).await;
    let ann = cluster.user(&cluster.a, "ann", false).await;
    let bob = cluster.user(&cluster.b, "bob", false).await;
    let mut on_a = cluster.a.connect_v2(&ann).await;
    let mut on_b = cluster.b.connect_v2(&bob).await;
    on_b.request(json!({"command": "join", "room": room})).await;
    let joined = on_a.request(json!({"command": "join", "room": room})).await;
    let epoch = joined["result"]["epoch"].clone();

    // Redis goes away: sends are still stored and acknowledged, but
    // reach no other node.
    cluster.redis.stop();
    for n in 1..=3 {
        let sent = on_a
            .request(json!({"command": "send", "room": room, "text": format!("while down {n}")}))
            .await;
        assert_eq!(sent["result"]["seq"], n, "{sent}");
    }
    cluster.redis.restart();
    cluster.a.wait_for_health(200).await;
    cluster.b.wait_for_health(200).await;
    on_a.request(json!({"command": "send", "room": room, "text": "back"}))
        .await;
    // Bob's socket sees seq 4 arrive after a gap, and reads 1 to 3 from
    // the database.
    assert_eq!(seqs(&on_b.next_messages(4).await), [1, 2, 3, 4]);

    // A socket that reconnects to the other node recovers from there.
    drop(on_b);
    on_a.request(json!({"command": "send", "room": room, "text": "missed"}))
        .await;
    let mut on_a_again = cluster.a.connect_v2(&bob).await;
    let since = json!({"seq": 4, "epoch": epoch});
    let rejoined = on_a_again
        .request(json!({"command": "join", "room": room, "since": since}))
        .await;
    assert_eq!(rejoined["result"]["recovered"], true, "{rejoined}");
    assert_eq!(rejoined["result"]["messages"][0]["text"], "missed");
}
