//! Access that follows changes at once, on one server (SQLite, in-memory
//! layer): the scenarios of `whisper_tests::access` with both "nodes" the
//! same server. The two-node runs are in whisper-server's `multinode.rs`.

use whisper_tests::{Nodes, TestServer, access};

#[tokio::test]
async fn a_room_made_staff_only_loses_its_other_members_at_once() {
    let server = TestServer::start().await;
    access::a_room_made_staff_only_loses_its_other_members_at_once(Nodes::one(&server)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_deleted_room_is_left_by_every_member_at_once() {
    let server = TestServer::start().await;
    access::a_deleted_room_is_left_by_every_member_at_once(Nodes::one(&server)).await;
    server.stop().await;
}

#[tokio::test]
async fn logging_out_closes_that_sessions_sockets_at_once() {
    let server = TestServer::start().await;
    access::logging_out_closes_that_sessions_sockets_at_once(Nodes::one(&server)).await;
    server.stop().await;
}

#[tokio::test]
async fn losing_staff_leaves_the_staff_rooms_at_once() {
    let server = TestServer::start().await;
    access::losing_staff_leaves_the_staff_rooms_at_once(Nodes::one(&server)).await;
    server.stop().await;
}

#[tokio::test]
async fn a_password_changed_by_the_operator_closes_the_users_sockets_at_once() {
    let server = TestServer::start().await;
    access::a_password_changed_by_the_operator_closes_the_users_sockets_at_once(Nodes::one(
        &server,
    ))
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_user_deactivated_by_the_operator_is_logged_out_everywhere_at_once() {
    let server = TestServer::start().await;
    access::a_user_deactivated_by_the_operator_is_logged_out_everywhere_at_once(Nodes::one(
        &server,
    ))
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_password_reset_on_the_admin_page_closes_the_users_sockets_at_once() {
    let server = TestServer::start().await;
    access::a_password_reset_on_the_admin_page_closes_the_users_sockets_at_once(Nodes::one(
        &server,
    ))
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_user_deactivated_on_the_admin_page_is_logged_out_everywhere_at_once() {
    let server = TestServer::start().await;
    access::a_user_deactivated_on_the_admin_page_is_logged_out_everywhere_at_once(Nodes::one(
        &server,
    ))
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_user_deleted_on_the_admin_page_is_logged_out_everywhere_at_once() {
    let server = TestServer::start().await;
    access::a_user_deleted_on_the_admin_page_is_logged_out_everywhere_at_once(Nodes::one(&server))
        .await;
    server.stop().await;
}
