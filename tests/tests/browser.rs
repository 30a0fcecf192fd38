//! The web client in real headless Chromium: people log in through the form,
//! click rooms, type messages and see each other, as in a browser.
//!
//! Each test starts its own chromedriver and one Chromium per user (separate
//! profiles, so separate cookies). Screenshots of each browser's last page go
//! to `<target dir>/browser-screenshots/<test>-<user>.png`, and a failed wait
//! leaves `<test>-<user>-failure.png` there.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use whisper_tests::browser::{Browser, BrowserDriver};
use whisper_tests::{RECV_TIMEOUT, TestServer};

const PASSWORD: &str = "correct horse battery";

#[tokio::test]
async fn two_users_see_each_others_messages_and_join_notices() {
    let driver = BrowserDriver::start("two-users");
    let server = TestServer::start().await;
    let lobby = server.create_room("Lobby", false).await;
    let ann = driver.open_as(&server, "ann", PASSWORD, false).await;
    let bob = driver.open_as(&server, "bob", PASSWORD, false).await;

    ann.join(lobby).await;
    bob.join(lobby).await;
    // Bob joined second: his ENTER reaches Ann's pane.
    ann.wait_for_notice(lobby, "enter", "bob joined").await;

    ann.send(lobby, "Hello Bob").await;
    bob.send(lobby, "Hi Ann, good to see you").await;
    for browser in [&ann, &bob] {
        browser.wait_for_message(lobby, "ann", "Hello Bob").await;
        browser
            .wait_for_message(lobby, "bob", "Hi Ann, good to see you")
            .await;
    }
    // Each sees every message once, in the same order, own ones marked.
    let ann_sees = ann.messages(lobby).await;
    let bob_sees = bob.messages(lobby).await;
    let lines = |seen: &[whisper_tests::browser::ShownMessage]| {
        seen.iter()
            .map(|m| (m.user.clone(), m.text.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(lines(&ann_sees), lines(&bob_sees));
    assert_eq!(ann_sees.len(), 2, "{ann_sees:?}");
    for message in &ann_sees {
        assert_eq!(
            message.own,
            message.user == "ann",
            "Ann's view: {message:?}"
        );
    }
    for message in &bob_sees {
        assert_eq!(
            message.own,
            message.user == "bob",
            "Bob's view: {message:?}"
        );
    }

    // Clicking a joined room shows it; it never leaves it.
    ann.click_room(lobby).await;
    // Long enough for a leave's round trip, had the click sent one.
    tokio::time::sleep(Duration::from_millis(500)).await;
    ann.wait_joined(lobby, Duration::from_secs(1)).await;
    assert_eq!(ann.count(&Browser::pane(lobby)).await, 1);

    // Bob leaves with the pane's button: his pane goes, Ann sees him leave.
    bob.click(&format!("{} .leave-button", Browser::pane(lobby)))
        .await;
    bob.wait_for_js(
        "Bob's pane gone and his room button no longer joined",
        "const [pane, button] = arguments; \
         return !document.querySelector(pane) && !document.querySelector(button + '.joined');",
        vec![
            json!(Browser::pane(lobby)),
            json!(Browser::room_button(lobby)),
        ],
    )
    .await;
    ann.wait_for_notice(lobby, "leave", "bob left").await;

    ann.close().await;
    bob.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_staff_only_room_refuses_a_non_staff_user_in_words() {
    let driver = BrowserDriver::start("staff-only");
    let server = TestServer::start().await;
    let staff_room = server.create_room("Staff room", true).await;
    let lobby = server.create_room("Lobby", false).await;

    let ann = driver.open_as(&server, "ann", PASSWORD, false).await;
    let button = Browser::room_button(staff_room);
    ann.wait_for_element(&format!("{button} .badge")).await;
    assert_eq!(
        ann.count(&format!("{} .badge", Browser::room_button(lobby)))
            .await,
        0,
        "only staff-only rooms carry the badge"
    );

    ann.click_room(staff_room).await;
    let status = ann
        .wait_for_js(
            "#status explaining the room is for staff",
            "const s = document.querySelector('#status'); \
             return s && /staff/i.test(s.textContent) ? s.textContent : null;",
            vec![],
        )
        .await;
    assert!(
        status.as_str().is_some_and(|s| s.contains("Staff room")),
        "the refusal names the room: {status}"
    );
    assert_eq!(ann.count(&Browser::pane(staff_room)).await, 0, "no pane");
    assert_eq!(ann.count(&format!("{button}.joined")).await, 0);

    // The connection stays usable: an open room still works.
    ann.join(lobby).await;
    ann.send(lobby, "still here").await;
    ann.wait_for_message(lobby, "ann", "still here").await;
    assert_eq!(ann.count(&Browser::pane(staff_room)).await, 0, "no pane");

    ann.close().await;
    server.stop().await;
}

#[tokio::test]
async fn message_text_never_becomes_markup_or_script() {
    let driver = BrowserDriver::start("no-xss");
    let server = TestServer::start().await;
    let lobby = server.create_room("Lobby", false).await;
    let mallory = driver.open_as(&server, "mallory", PASSWORD, false).await;
    let bob = driver.open_as(&server, "bob", PASSWORD, false).await;
    mallory.join(lobby).await;
    bob.join(lobby).await;
    // The server's CSP blocks inline script, so an injected handler or
    // javascript: link would not open a dialog; the attempt still shows up
    // as a CSP violation, which is what gives it away.
    for browser in [&mallory, &bob] {
        browser.execute(WATCH_CSP_VIOLATIONS, vec![]).await;
    }

    let image = "<img src=x onerror=alert(1)>";
    let script_url = "javascript:alert(1)";
    let link = "https://example.com/docs?page=2&lang=en";
    let with_link = format!("read {link} first");
    for text in [image, script_url, with_link.as_str()] {
        mallory.send(lobby, text).await;
        // Sent one at a time, so the order is known.
        mallory.wait_for_message(lobby, "mallory", text).await;
    }

    for browser in [&mallory, &bob] {
        for text in [image, script_url, with_link.as_str()] {
            browser.wait_for_message(lobby, "mallory", text).await;
        }
        assert_eq!(browser.count(".messages img").await, 0, "no <img>");
        assert_eq!(browser.count("img").await, 0, "no <img> anywhere");
        assert_eq!(
            browser.count("a[href^='javascript' i]").await,
            0,
            "no javascript: link"
        );
        let schemes = browser
            .execute(
                "return [...document.querySelectorAll('.messages a')].map((a) => a.protocol);",
                vec![],
            )
            .await;
        assert!(
            schemes
                .as_array()
                .is_some_and(|all| all.iter().all(|p| p == "http:" || p == "https:")),
            "links in messages are http(s) only: {schemes}"
        );
        // The web client renders http(s) URLs as links (web/static/format.js).
        let rendered = format!(".messages li.message .msg-text a[href='{link}']");
        browser.wait_for_element(&rendered).await;
        browser.assert_no_dialog().await;
    }

    // Clicking the text does nothing either.
    bob.click_message_text(lobby, script_url).await;
    bob.click_message_text(lobby, image).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    bob.assert_no_dialog().await;
    mallory.assert_no_dialog().await;
    let path = bob.execute("return location.pathname;", vec![]).await;
    assert_eq!(path, json!("/"), "clicking did not navigate");
    for browser in [&mallory, &bob] {
        let violations = browser
            .execute("return window.cspViolations;", vec![])
            .await;
        assert_eq!(violations, json!([]), "no blocked inline script");
    }

    mallory.close().await;
    bob.close().await;
    server.stop().await;
}

/// Records every Content-Security-Policy violation in `window.cspViolations`.
const WATCH_CSP_VIOLATIONS: &str = "window.cspViolations = []; \
    document.addEventListener('securitypolicyviolation', \
        (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`)); \
    return null;";

#[tokio::test]
async fn the_page_reconnects_and_rejoins_after_a_server_restart() {
    let driver = BrowserDriver::start("restart");
    let mut server = TestServer::start().await;
    server.create_user("watcher", PASSWORD, false).await;
    let lobby = server.create_room("Lobby", false).await;

    let ann = driver.open_as(&server, "ann", PASSWORD, false).await;
    let bob = driver.open_as(&server, "bob", PASSWORD, false).await;
    ann.join(lobby).await;
    bob.join(lobby).await;
    ann.send(lobby, "before the restart").await;
    bob.wait_for_message(lobby, "ann", "before the restart")
        .await;

    let addr = server.addr;
    server.restart().await;
    assert_eq!(server.addr, addr);

    // The new server starts with no presence at all: both users showing up
    // in it proves each page rejoined by itself.
    let watcher = server
        .login("watcher", PASSWORD)
        .await
        .expect("sessions and users survive the restart");
    let mut ws = server.connect(&watcher).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        ws.send_json(json!({"command": "room_users", "room": lobby}))
            .await;
        let reply = ws.recv_json().await;
        let users = present(&reply);
        if users.iter().any(|u| u == "ann") && users.iter().any(|u| u == "bob") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "both pages rejoin within 30 s; presence: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for browser in [&ann, &bob] {
        browser.wait_connected_within(RECV_TIMEOUT).await;
        browser.wait_joined(lobby, RECV_TIMEOUT).await;
        // The pane was kept, with what it showed before.
        browser
            .wait_for_message(lobby, "ann", "before the restart")
            .await;
    }
    bob.send(lobby, "after the restart").await;
    ann.wait_for_message(lobby, "bob", "after the restart")
        .await;
    ann.send(lobby, "welcome back").await;
    bob.wait_for_message(lobby, "ann", "welcome back").await;

    ws.close().await;
    ann.close().await;
    bob.close().await;
    server.stop().await;
}

/// The users a `room_users` reply shows as present.
fn present(reply: &Value) -> Vec<String> {
    reply["data"]["users"]
        .as_object()
        .map(|users| {
            users
                .values()
                .filter(|user| user["left"] == json!(false))
                .filter_map(|user| user["username"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn staff_create_rooms_on_the_admin_page_that_others_then_see() {
    let driver = BrowserDriver::start("admin");
    let server = TestServer::start().await;

    let sam = driver.open_as(&server, "sam", PASSWORD, true).await;
    let ann = driver.open_as(&server, "ann", PASSWORD, false).await;

    // Only staff get the way in.
    assert!(
        !ann.is_visible("a#admin-link").await,
        "a non-staff user sees no admin link"
    );
    sam.wait_for_js(
        "a visible admin link for staff",
        "const a = document.querySelector('a#admin-link'); \
         return !!a && !a.hidden && a.getClientRects().length > 0;",
        vec![],
    )
    .await;
    sam.click("a#admin-link").await;
    sam.wait_for_js(
        "the admin page",
        "return location.pathname === '/admin/' && !!document.querySelector('#new-room-form');",
        vec![],
    )
    .await;

    let book_club = create_room(&sam, "Book club", false).await;
    let staff_lounge = create_room(&sam, "Staff lounge", true).await;

    ann.reload().await;
    ann.wait_connected().await;
    let button = Browser::room_button(book_club);
    ann.wait_for_element(&button).await;
    assert_eq!(
        ann.text_of(&format!("{button} .room-title")).await,
        Some("Book club".to_owned())
    );
    assert_eq!(ann.count(&format!("{button} .badge")).await, 0);
    let lounge = Browser::room_button(staff_lounge);
    ann.wait_for_element(&format!("{lounge} .badge")).await;
    ann.join(book_club).await;

    // Ann is refused the admin page and its API by the server itself.
    let status = ann
        .execute(
            "return fetch('/admin/', { credentials: 'same-origin' }).then((r) => r.status);",
            vec![],
        )
        .await;
    assert_eq!(status, json!(403), "GET /admin/ for a non-staff user");
    ann.goto(&server.url("/admin/")).await;
    assert_eq!(ann.count("#new-room-form").await, 0, "no admin form");

    sam.close().await;
    ann.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_newcomer_finds_general_and_an_empty_list_says_who_makes_rooms() {
    let driver = BrowserDriver::start("first-run");
    let server = TestServer::start().await;
    let general = server.db.general_room().await;

    // A fresh install, as the README's first steps leave it: someone who
    // just signed up has a room to talk in.
    let ann = driver.open_as(&server, "ann", PASSWORD, false).await;
    let button = Browser::room_button(general);
    ann.wait_for_element(&button).await;
    assert_eq!(
        ann.text_of(&format!("{button} .room-title")).await,
        Some("General".to_owned())
    );
    ann.join(general).await;
    ann.send(general, "hello, anyone here?").await;
    ann.wait_for_message(general, "ann", "hello, anyone here?")
        .await;

    // Every room deleted: the list says who can make one, and staff where.
    server.db.delete_room(general).await;
    let sam = driver.open_as(&server, "sam", PASSWORD, true).await;
    ann.reload().await;
    ann.wait_connected().await;
    let hint = "#room-list li.no-rooms";
    for browser in [&ann, &sam] {
        browser.wait_for_element(hint).await;
    }
    assert_eq!(
        ann.text_of(hint).await,
        Some("No rooms yet. Only staff can create rooms; ask an administrator.".to_owned())
    );
    assert_eq!(ann.count(&format!("{hint} a")).await, 0, "no link for ann");
    assert_eq!(
        sam.text_of(hint).await,
        Some("No rooms yet. Create one on the admin page.".to_owned())
    );
    sam.click(&format!("{hint} a")).await;
    sam.wait_for_js(
        "the admin page, from the hint's link",
        "return location.pathname === '/admin/' && !!document.querySelector('#new-room-form');",
        vec![],
    )
    .await;

    ann.close().await;
    sam.close().await;
    server.stop().await;
}

/// Creates a room through the admin page's form and returns its id once the
/// rooms table shows it.
async fn create_room(admin: &Browser, title: &str, staff_only: bool) -> i64 {
    admin.type_into("#new-room-title", title).await;
    let checked = admin
        .execute(
            "return document.querySelector('#new-room-staff-only').checked;",
            vec![],
        )
        .await;
    if checked != json!(staff_only) {
        admin.click("#new-room-staff-only").await;
    }
    admin.click("#new-room-form button[type=submit]").await;
    let id = admin
        .wait_for_js(
            &format!("{title:?} in #admin-rooms"),
            "const row = [...document.querySelectorAll('#admin-rooms tr[data-room-id]')] \
                 .find((tr) => tr.querySelector('.room-title')?.textContent.trim() === arguments[0]); \
             return row ? row.dataset.roomId : null;",
            vec![json!(title)],
        )
        .await;
    id.as_str()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("room id of {title:?}: {id}"))
}

#[tokio::test]
async fn a_shortcode_becomes_its_emoji_as_it_is_typed() {
    let driver = BrowserDriver::start("shortcodes");
    let server = TestServer::start().await;
    let lobby = server.create_room("Lobby", false).await;
    let ann = driver.open_as(&server, "ann", PASSWORD, false).await;
    ann.join(lobby).await;
    let input = Browser::input(lobby);

    ann.type_into(&input, ":smile:").await;
    assert_eq!(ann.input_value(lobby).await, "😄");
    ann.type_into(&input, " ok :+1: :tada:").await;
    assert_eq!(ann.input_value(lobby).await, "😄 ok 👍 🎉");
    // Unknown names, and colons inside words and times, stay as typed.
    ann.type_into(&input, " at 10:100: :nope: a:fire:").await;
    let typed = "😄 ok 👍 🎉 at 10:100: :nope: a:fire:";
    assert_eq!(ann.input_value(lobby).await, typed);

    ann.send(lobby, "").await;
    ann.wait_for_message(lobby, "ann", typed).await;

    ann.close().await;
    server.stop().await;
}
