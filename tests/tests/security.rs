//! Protections, each tested so that removing it fails a test: limits with
//! clear errors, sessions that end everywhere, staff status re-checked on
//! open sockets, security headers.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use whisper_tests::{TestServer, csrf_token, http_client, http_client_from, set_cookie_value};

/// Sockets re-check their session this often in these tests.
const RECHECK: Duration = Duration::from_millis(200);

#[tokio::test]
async fn frames_past_the_rate_are_refused_then_allowed_again() {
    let server = TestServer::start_with(|config| config.max_messages_per_second = 5).await;
    let room = server.create_room("Lobby", false).await;
    let ann = server.user("ann", false).await;
    let mut a = server.connect(&ann).await;
    a.join(room).await;
    // The burst is twice the rate: 10 frames (the join took from the
    // joins' own bucket).
    for n in 0..20 {
        a.send_json(json!({"command": "send", "room": room, "message": n.to_string()}))
            .await;
    }
    let mut delivered = 0;
    let mut limited = 0;
    for _ in 0..20 {
        let frame = a.recv_json().await;
        if frame["error"] == "RATE_LIMITED" {
            limited += 1;
        } else {
            assert_eq!(frame["msg_type"], 0);
            delivered += 1;
        }
    }
    assert!(
        delivered >= 9 && limited >= 9,
        "{delivered} delivered, {limited} limited"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    a.send_json(json!({"command": "send", "room": room, "message": "later"}))
        .await;
    assert_eq!(a.recv_json().await["message"], "later");
    server.stop().await;
}

/// The web client joins every open room again after a reconnect, one
/// right after the other: a connection joins as many rooms as it may be in
/// at once, however few frames a second it may send, yet a client cycling
/// join and leave is still refused.
#[tokio::test]
async fn a_client_joins_all_its_rooms_at_once_but_join_floods_are_refused() {
    // The defaults, set here so the test keeps its meaning: the rooms
    // outnumber a burst of frames (twice the rate).
    let max_rooms = 100;
    let server = TestServer::start_with(|config| {
        config.max_rooms_per_connection = max_rooms;
        config.max_messages_per_second = 20;
    })
    .await;
    let mut rooms = Vec::new();
    for n in 0..max_rooms {
        rooms.push(server.create_room(&format!("Room {n}"), false).await);
    }
    let ann = server.user("ann", false).await;
    let mut a = server.connect(&ann).await;
    // Sent all at once, as a flood would be: no time for the bucket to refill.
    for room in &rooms {
        a.send_json(json!({"command": "join", "room": room})).await;
    }
    for (n, room) in rooms.iter().enumerate() {
        let expected = json!({"join": room.to_string(), "title": format!("Room {n}")});
        assert_eq!(a.recv_json().await, expected);
    }
    // Cycling leave and join: both buckets are spent within a few dozen.
    for room in &rooms {
        a.send_json(json!({"command": "leave", "room": room})).await;
        a.send_json(json!({"command": "join", "room": room})).await;
    }
    let mut replies = 0;
    let mut limited = 0;
    while replies < 2 * max_rooms {
        let frame = a.recv_json().await;
        if frame.get("msg_type").is_some() {
            continue; // Ann's own LEAVE
        }
        replies += 1;
        if frame["error"] == "RATE_LIMITED" {
            limited += 1;
        }
    }
    assert!(limited >= max_rooms / 2, "{limited} of {replies} refused");
    server.stop().await;
}

#[tokio::test]
async fn connections_per_user_are_capped() {
    let server = TestServer::start_with(|config| config.max_connections_per_user = 2).await;
    let ann = server.user("ann", false).await;
    let bob = server.user("bob", false).await;
    let first = server.connect(&ann).await;
    let _second = server.connect(&ann).await;
    match server
        .try_connect(Some(&ann.cookie()), Some(&server.origin()))
        .await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS.as_u16());
        }
        Err(other) => panic!("expected 429, got {other}"),
        Ok(_) => panic!("a third connection must be refused"),
    }
    let _bob = server.connect(&bob).await;
    first.close().await;
    // The slot is given back when the connection's task ends.
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok(client) = server
            .try_connect(Some(&ann.cookie()), Some(&server.origin()))
            .await
        {
            reopened = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(reopened.is_some(), "a closed connection frees its slot");
    server.stop().await;
}

#[tokio::test]
async fn slow_headers_are_cut_off_and_large_requests_refused() {
    let server =
        TestServer::start_with(|config| config.header_read_timeout = Duration::from_millis(500))
            .await;
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("partial headers");
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buffer)).await;
    assert!(
        read.is_ok(),
        "the server closes a connection whose headers never finish"
    );

    let client = http_client();
    let huge_header = "a".repeat(100 * 1024);
    let response = client
        .get(server.url("/"))
        .header("x-junk", huge_header)
        .send()
        .await;
    if let Ok(response) = response {
        assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
    }
    let csrf = csrf_token(&client, &server.url("/accounts/login/")).await;
    let response = client
        .post(server.url("/accounts/login/"))
        .header("cookie", format!("csrftoken={csrf}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrfmiddlewaretoken={csrf}&username={}",
            "u".repeat(100 * 1024)
        ))
        .send()
        .await
        .expect("response");
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = server.get("/healthz").await;
    assert_eq!(status, 200);
    server.stop().await;
}

/// A connection that sends a request head announcing a body of 1,000
/// bytes, and then nothing.
async fn request_without_its_body(server: &TestServer, method: &str, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 1000\r\n\r\n",
        server.addr
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream
}

/// Everything the server sends on `stream` until it closes it; fails the
/// test if it is still open after `within`.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection in time")
        .expect("read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// `GET /healthz` on a connection of its own: the whole answer.
async fn raw_health_check(server: &TestServer) -> String {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr
    );
    stream.write_all(request.as_bytes()).await.expect("request");
    read_until_closed(&mut stream, Duration::from_secs(5)).await
}

#[tokio::test]
async fn a_body_that_never_comes_is_cut_off() {
    let server =
        TestServer::start_with(|config| config.body_read_timeout = Duration::from_millis(500))
            .await;
    let mut post = request_without_its_body(&server, "POST", "/accounts/logout/").await;
    let mut get = request_without_its_body(&server, "GET", "/").await;
    let answer = read_until_closed(&mut post, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    read_until_closed(&mut get, Duration::from_secs(5)).await;
    server.stop().await;
}

#[tokio::test]
async fn connections_past_the_cap_get_503_while_chat_sockets_carry_on() {
    const CAP: usize = 8;
    let server = TestServer::start_with(|config| {
        config.max_connections = CAP;
        config.body_read_timeout = Duration::from_secs(3);
    })
    .await;
    let room = server.create_room("Lobby", false).await;
    let (mut ann, mut bob) = server.ann_and_bob_in(room).await;
    // The two chat sockets count too: with these the cap is reached (any
    // connection of the logins not yet closed only makes it sooner).
    let mut stalled = Vec::new();
    for _ in 0..CAP - 2 {
        stalled.push(request_without_its_body(&server, "POST", "/accounts/logout/").await);
    }
    let refused = raw_health_check(&server).await;
    assert!(refused.starts_with("HTTP/1.1 503 "), "{refused}");
    assert!(
        refused.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused}"
    );

    ann.send_json(json!({"command": "send", "room": room, "message": "still here"}))
        .await;
    assert_eq!(bob.recv_json().await["message"], "still here");
    assert_eq!(ann.recv_json().await["message"], "still here");

    for stream in &mut stalled {
        read_until_closed(stream, Duration::from_secs(10)).await;
    }
    let served = raw_health_check(&server).await;
    assert!(served.starts_with("HTTP/1.1 200 "), "{served}");
    server.stop().await;
}

/// Any 32 characters or more pass as a CSRF token when the cookie holds
/// the same.
const CSRF: &str = "throttledthrottledthrottledthrottled";

/// POSTs a login from `source` (a 127.0.0.0/8 address), through a proxy
/// claiming `forwarded_for` if given; the status and `Retry-After`.
async fn login_from(
    server: &TestServer,
    source: [u8; 4],
    forwarded_for: Option<&str>,
    username: &str,
    password: &str,
) -> (StatusCode, Option<String>) {
    let client = http_client_from(source.into());
    let fields = [
        ("username", username),
        ("password", password),
        ("csrfmiddlewaretoken", CSRF),
    ];
    let mut request = client
        .post(server.url("/accounts/login/"))
        .header("cookie", format!("csrftoken={CSRF}"))
        .form(&fields);
    if let Some(forwarded_for) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded_for);
    }
    let response = request.send().await.expect("an answer");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    (response.status(), retry_after)
}

#[tokio::test]
async fn parallel_wrong_passwords_are_counted_before_they_are_checked() {
    let server = TestServer::start().await;
    server.create_user("ann", "correct horse", false).await;
    let attempts = (0..40u8).map(|n| {
        let server = &server;
        async move { login_from(server, [127, 0, 1, n + 1], None, "ann", "wrong horse").await }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let checked = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .count();
    let refused = answers
        .iter()
        .filter(|(status, retry)| *status == StatusCode::TOO_MANY_REQUESTS && retry.is_some())
        .count();
    assert_eq!(
        checked, 5,
        "only the username's limit is checked: {answers:?}"
    );
    assert_eq!(
        refused, 35,
        "the rest are refused with Retry-After: {answers:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn signups_are_limited_per_client_address() {
    let server = TestServer::start().await;
    let signup = |source: [u8; 4], n: u32| {
        let server = &server;
        async move {
            let name = format!("newcomer{n}");
            let fields = [
                ("username", name.as_str()),
                ("password1", "correct horse"),
                ("password2", "correct horse"),
            ];
            let client = http_client_from(source.into());
            let response = server
                .try_post_form(&client, "/accounts/signup/", CSRF, &fields)
                .await
                .expect("an answer");
            (
                response.status(),
                response.headers().contains_key("retry-after"),
            )
        }
    };
    for n in 0..10 {
        assert_eq!(
            signup([127, 0, 2, 1], n).await.0,
            StatusCode::FOUND,
            "signup {n}"
        );
    }
    assert_eq!(
        signup([127, 0, 2, 1], 10).await,
        (StatusCode::TOO_MANY_REQUESTS, true),
        "the 11th from one address is refused"
    );
    assert_eq!(
        signup([127, 0, 2, 2], 11).await.0,
        StatusCode::FOUND,
        "another address"
    );
    server.stop().await;
}

#[tokio::test]
async fn past_the_address_limit_logins_are_slowed_and_claims_of_untrusted_peers_ignored() {
    // 127.0.0.1 is a trusted proxy; 127.0.3.1 is not, so what it writes in
    // X-Forwarded-For is ignored and all its attempts count against it.
    let server = TestServer::start_with(|config| {
        config.trusted_proxies = vec!["127.0.0.1".parse().expect("an address")];
    })
    .await;
    server.create_user("ann", "correct horse", false).await;
    let guesser = [127, 0, 3, 1];
    for n in 0..20 {
        let claim = format!("198.51.100.{n}");
        let (status, _) = login_from(
            &server,
            guesser,
            Some(&claim),
            &format!("nobody{n}"),
            "wrong horse",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "failure {n} is checked");
    }
    // Past the limit one attempt a second goes ahead, queued up to 10 s:
    // of 15 at once, the ones further out are refused.
    let flood = (20..35).map(|n| {
        let server = &server;
        async move {
            let claim = format!("198.51.100.{n}");
            login_from(
                server,
                guesser,
                Some(&claim),
                &format!("nobody{n}"),
                "wrong horse",
            )
            .await
        }
    });
    let answers = futures_util::future::join_all(flood).await;
    let refused = answers
        .iter()
        .filter(|(status, retry)| *status == StatusCode::TOO_MANY_REQUESTS && retry.is_some())
        .count();
    assert!((3..=5).contains(&refused), "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(status, _)| matches!(*status, StatusCode::OK | StatusCode::TOO_MANY_REQUESTS)),
        "{answers:?}"
    );
    // Someone else is not held up by the guesser.
    let (status, _) = login_from(&server, [127, 0, 3, 2], None, "ann", "correct horse").await;
    assert_eq!(status, StatusCode::FOUND);
    server.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_a_guesser_locks_nobody_out() {
    let server = TestServer::start_with(|config| {
        config.trusted_proxies = vec!["127.0.0.0/8".parse().expect("a network")];
    })
    .await;
    server.create_user("ann", "correct horse", false).await;
    server.create_user("bob", "correct horse", false).await;
    let proxy = [127, 0, 0, 1];
    for n in 0..25 {
        let (status, _) = login_from(
            &server,
            proxy,
            Some("198.51.100.66"),
            &format!("nobody{n}"),
            "wrong horse",
        )
        .await;
        assert_eq!(status, StatusCode::OK, "failure {n} is checked");
    }
    // Another client of the same proxy logs in as if nothing happened.
    let (status, _) =
        login_from(&server, proxy, Some("198.51.100.7"), "ann", "correct horse").await;
    assert_eq!(status, StatusCode::FOUND, "ann, from her own address");
    // Even one sharing the guesser's address gets in, only a little later.
    let (status, _) = login_from(
        &server,
        proxy,
        Some("198.51.100.66"),
        "bob",
        "correct horse",
    )
    .await;
    assert_eq!(status, StatusCode::FOUND, "bob, behind the guesser's NAT");
    server.stop().await;
}

#[tokio::test]
async fn login_issues_a_fresh_session_key_and_drops_the_old_one() {
    let server = TestServer::start().await;
    let ann = server.user("ann", false).await;
    let client = http_client();
    let csrf = csrf_token(&client, &server.url("/accounts/login/")).await;
    let response = client
        .post(server.url("/accounts/login/"))
        .header("cookie", format!("csrftoken={csrf}; {}", ann.cookie()))
        .form(&[
            ("username", "ann"),
            ("password", "correct horse"),
            ("csrfmiddlewaretoken", &csrf),
        ])
        .send()
        .await
        .expect("login");
    let fresh = set_cookie_value(&response, "sessionid").expect("a new session");
    assert_ne!(
        fresh, ann.sessionid,
        "a session key planted before login is never kept"
    );
    let old = server.get_as(&ann, "/api/me").await;
    assert_eq!(old.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn expired_sessions_are_deleted_in_the_background() {
    let server = TestServer::start_with(|config| {
        config.session_purge_interval = Duration::from_millis(100);
    })
    .await;
    let _ann = server.user("ann", false).await;
    let bob = server.user("bob", false).await;
    server.db.expire_sessions_of("ann").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server.db.session_rows_of("ann").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ann's expired session is still stored"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(server.db.session_rows_of("bob").await, 1);
    assert_eq!(server.me(&bob).await["username"], "bob");
    server.stop().await;
}

#[tokio::test]
async fn open_sockets_close_when_the_session_ends() {
    let server = TestServer::start_with(|config| config.session_recheck = RECHECK).await;
    let ann = server.user("ann", false).await;
    let bob = server.user("bob", false).await;
    let carl = server.user("carl", false).await;
    let mut a = server.connect(&ann).await;
    let mut b = server.connect(&bob).await;
    let mut c = server.connect(&carl).await;

    let client = http_client();
    let csrf = csrf_token(&client, &server.url("/accounts/login/")).await;
    let logout = client
        .post(server.url("/accounts/logout/"))
        .header("cookie", format!("{}; csrftoken={csrf}", ann.cookie()))
        .header("x-csrftoken", &csrf)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), StatusCode::FOUND);
    server
        .db
        .users
        .set_active("bob", false)
        .await
        .expect("deactivate");
    server.db.users.delete("carl").await.expect("delete");
    for (name, client) in [
        ("logged out", &mut a),
        ("deactivated", &mut b),
        ("deleted", &mut c),
    ] {
        let frame = client
            .close_frame()
            .await
            .unwrap_or_else(|| panic!("{name}: a close frame"));
        assert_eq!(frame.code, CloseCode::Policy, "{name}");
    }
    server.stop().await;
}

#[tokio::test]
async fn losing_staff_status_leaves_staff_only_rooms() {
    let server = TestServer::start_with(|config| config.session_recheck = RECHECK).await;
    let staff_room = server.create_room("Staff", true).await;
    let lobby = server.create_room("Lobby", false).await;
    let sue = server.user("sue", true).await;
    let max = server.user("max", true).await;
    let mut s = server.connect(&sue).await;
    let mut m = server.connect(&max).await;
    m.join(staff_room).await;
    for room in [staff_room, lobby] {
        s.join(room).await;
    }
    assert_eq!(m.recv_json().await["msg_type"], 4);

    server
        .db
        .users
        .set_staff("sue", false)
        .await
        .expect("remove staff");
    // Taken out before LEAVE went out: the reply alone.
    assert_eq!(
        s.recv_text().await,
        format!(r#"{{"leave":"{staff_room}"}}"#)
    );
    m.expect_leave(staff_room, "sue").await;
    for command in ["send", "room_users"] {
        s.send_json(json!({"command": command, "room": staff_room, "message": "x"}))
            .await;
        assert_eq!(
            s.recv_text().await,
            r#"{"error":"ROOM_ACCESS_DENIED"}"#,
            "{command}"
        );
    }
    s.send_json(json!({"command": "send", "room": lobby, "message": "still here"}))
        .await;
    assert_eq!(s.recv_json().await["message"], "still here");
    server.stop().await;
}

#[tokio::test]
async fn every_page_carries_the_security_headers() {
    let server = TestServer::start().await;
    let ann = server.user("ann", false).await;
    for path in [
        "/",
        "/accounts/login/",
        "/accounts/signup/",
        "/api/me",
        "/static/chat.js",
        "/nowhere",
    ] {
        let response = server.get_as(&ann, path).await;
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().expect("csp");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{path}: {csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
    }
    server.stop().await;
}
