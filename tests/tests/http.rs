//! The HTTP surface: pages, login, signup, logout, CSRF, the API, and the
//! WebSocket handshake's refusals.

use reqwest::StatusCode;
use whisper_tests::{Session, TestServer, csrf_token, http_client, set_cookie_value};

#[tokio::test]
async fn anonymous_visitors_are_sent_to_login_and_the_api_says_401() {
    let server = TestServer::start().await;
    let client = http_client();
    let response = client.get(server.url("/")).send().await.expect("GET /");
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], "/accounts/login/?next=/");
    for path in ["/api/me", "/api/rooms"] {
        let response = client.get(server.url(path)).send().await.expect("GET api");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn login_form_sets_csrf_and_a_good_login_gets_an_httponly_session() {
    let server = TestServer::start().await;
    server.create_user("ann", "correct horse", false).await;
    let client = http_client();
    let form = client
        .get(server.url("/accounts/login/?next=/x"))
        .send()
        .await
        .expect("form");
    assert_eq!(form.status(), StatusCode::OK);
    let csrf = set_cookie_value(&form, "csrftoken").expect("csrftoken cookie");
    let csp = form.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert_eq!(form.headers()["x-frame-options"], "DENY");
    let page = form.text().await.expect("page");
    assert!(
        page.contains(&format!(r#"value="{csrf}""#)),
        "hidden csrfmiddlewaretoken field"
    );
    assert!(page.contains("csrfmiddlewaretoken"));

    let response = server
        .post_form(
            "/accounts/login/",
            &csrf,
            &[
                ("username", "ann"),
                ("password", "correct horse"),
                ("next", "/x"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers()["location"], "/x");
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sessionid="))
        .expect("session cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"),
        "{cookie}"
    );

    let session = Session::from_response(&response).expect("session");
    assert_eq!(
        server.me(&session).await,
        serde_json::json!({"id": 1, "username": "ann", "name": "", "is_staff": false})
    );
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_password_gives_the_form_again_and_no_session() {
    let server = TestServer::start().await;
    server.create_user("ann", "correct horse", false).await;
    assert!(server.login("ann", "wrong horse").await.is_none());
    assert!(server.login("nobody", "correct horse").await.is_none());

    let client = http_client();
    let csrf = csrf_token(&client, &server.url("/accounts/login/")).await;
    let response = server
        .post_form(
            "/accounts/login/",
            &csrf,
            &[("username", "ann"), ("password", "nope nope")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(set_cookie_value(&response, "sessionid").is_none());
    assert!(
        response
            .text()
            .await
            .expect("page")
            .contains("correct username and password")
    );
    server.stop().await;
}

#[tokio::test]
async fn repeated_failures_throttle_the_username() {
    let server = TestServer::start().await;
    server.create_user("ann", "correct horse", false).await;
    for _ in 0..5 {
        assert!(server.login("ann", "wrong horse").await.is_none());
    }
    assert!(
        server.login("ann", "correct horse").await.is_none(),
        "throttled even with the right password"
    );
    server.stop().await;
}

#[tokio::test]
async fn posts_without_a_matching_csrf_token_are_refused() {
    let server = TestServer::start().await;
    server.create_user("ann", "correct horse", false).await;
    let client = http_client();
    let csrf = csrf_token(&client, &server.url("/accounts/login/")).await;
    let attempts = [
        (None, None),
        (Some(csrf.clone()), None),
        (None, Some(csrf.clone())),
        (
            Some(csrf.clone()),
            Some("forged-token-forged-token-forged-token".to_owned()),
        ),
    ];
    for (cookie, field) in attempts {
        let mut request = client.post(server.url("/accounts/login/"));
        if let Some(cookie) = &cookie {
            request = request.header("cookie", format!("csrftoken={cookie}"));
        }
        let mut form = vec![
            ("username", "ann".to_owned()),
            ("password", "correct horse".to_owned()),
        ];
        if let Some(field) = field.clone() {
            form.push(("csrfmiddlewaretoken", field));
        }
        let response = request.form(&form).send().await.expect("post");
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "cookie {cookie:?} field {field:?}"
        );
        assert!(set_cookie_value(&response, "sessionid").is_none());
    }

    let session = server.login("ann", "correct horse").await.expect("login");
    let response = client
        .post(server.url("/accounts/logout/"))
        .header("cookie", session.cookie())
        .send()
        .await
        .expect("logout without token");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The session survived the forged logout; a real one (token in the
    // X-CSRFToken header) ends it.
    let me = server.get_as(&session, "/api/me").await;
    assert_eq!(me.status(), StatusCode::OK);
    let response = client
        .post(server.url("/accounts/logout/"))
        .header("cookie", format!("{}; csrftoken={csrf}", session.cookie()))
        .header("x-csrftoken", &csrf)
        .send()
        .await
        .expect("logout");
    assert_eq!(response.status(), StatusCode::FOUND);
    let me = server.get_as(&session, "/api/me").await;
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn signup_creates_an_account_and_logs_it_in() {
    let server = TestServer::start().await;
    let csrf = csrf_token(&http_client(), &server.url("/accounts/signup/")).await;
    let site = *server;
    let signup = move |username: &'static str, password2: &'static str| {
        let fields = [
            ("username", username),
            ("name", "Ann"),
            ("password1", "correct horse"),
            ("password2", password2),
        ];
        let csrf = csrf.clone();
        async move { site.post_form("/accounts/signup/", &csrf, &fields).await }
    };
    let mismatch = signup("ann", "other horse").await;
    assert_eq!(mismatch.status(), StatusCode::OK);
    assert!(
        mismatch
            .text()
            .await
            .expect("page")
            .contains("do not match")
    );

    let response = signup("ann", "correct horse").await;
    assert_eq!(response.status(), StatusCode::FOUND);
    let session = Session::from_response(&response).expect("logged in");
    let me = server.me(&session).await;
    assert_eq!(me["username"], "ann");
    assert_eq!(me["name"], "Ann");

    let taken = signup("ann", "correct horse").await;
    assert!(taken.text().await.expect("page").contains("taken"));
    let hostile = signup("<script>", "correct horse").await;
    let page = hostile.text().await.expect("page");
    assert!(
        !page.contains("<script>") && page.contains("&lt;script&gt;"),
        "user text is escaped"
    );
    server.stop().await;
}

#[tokio::test]
async fn look_alike_usernames_are_refused_at_signup() {
    let server = TestServer::start().await;
    let csrf = csrf_token(&http_client(), &server.url("/accounts/signup/")).await;
    let site = *server;
    let signup = move |username: &'static str| {
        let fields = [
            ("username", username),
            ("password1", "correct horse"),
            ("password2", "correct horse"),
        ];
        let csrf = csrf.clone();
        async move { site.post_form("/accounts/signup/", &csrf, &fields).await }
    };
    let alice = signup("alice").await;
    assert_eq!(alice.status(), StatusCode::FOUND);
    for (username, error) in [
        // A Cyrillic а among Latin letters.
        (
            "\u{430}lice",
            "Usernames are 1 to 150 letters of one alphabet",
        ),
        ("Alice", "That username is taken."),
        ("AL\u{131}CE", "That username is taken."),
    ] {
        let refused = signup(username).await;
        assert_eq!(refused.status(), StatusCode::OK, "{username:?}");
        assert!(Session::from_response(&refused).is_none(), "{username:?}");
        let page = refused.text().await.expect("page");
        assert!(page.contains(error), "{username:?}: {page}");
    }
    let usernames: Vec<String> = server
        .db
        .users
        .list()
        .await
        .expect("users")
        .into_iter()
        .map(|user| user.username)
        .collect();
    assert_eq!(usernames, ["alice"]);
    // Unicode names of one script are still welcome.
    let alisa = signup("\u{430}\u{43b}\u{438}\u{441}\u{430}").await;
    assert_eq!(alisa.status(), StatusCode::FOUND);
    server.stop().await;
}

#[tokio::test]
async fn closed_signup_says_so_and_creates_nothing() {
    let server = TestServer::start_with(|config| config.open_signup = false).await;
    let client = http_client();
    let form = client
        .get(server.url("/accounts/signup/"))
        .send()
        .await
        .expect("form");
    let csrf = set_cookie_value(&form, "csrftoken").expect("csrf");
    assert!(
        form.text()
            .await
            .expect("page")
            .contains("Signup is closed")
    );
    let response = server
        .post_form(
            "/accounts/signup/",
            &csrf,
            &[
                ("username", "ann"),
                ("password1", "correct horse"),
                ("password2", "correct horse"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(server.login("ann", "correct horse").await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn a_fresh_server_lists_one_room_general_open_to_everyone() {
    let server = TestServer::start().await;
    let ann = server.user("ann", false).await;
    let rooms: serde_json::Value = server
        .get_as(&ann, "/api/rooms")
        .await
        .json()
        .await
        .expect("JSON");
    let id = rooms[0]["id"].as_i64().expect("an id");
    assert_eq!(
        rooms,
        serde_json::json!([
            {"id": id, "title": "General", "staff_only": false, "group_name": format!("room-{id}")}
        ])
    );
    // Anyone may join it: a newcomer has somewhere to talk.
    let mut socket = server.connect(&ann).await;
    assert_eq!(socket.join(id).await["title"], "General");
    server.stop().await;
}

#[tokio::test]
async fn rooms_api_lists_rooms_by_title_with_group_names() {
    let server = TestServer::start().await;
    let general = server.db.general_room().await;
    let zoo = server.create_room("Zoo", false).await;
    let staff = server.create_room("Admins", true).await;
    let ann = server.user("ann", false).await;
    let body = server
        .get_as(&ann, "/api/rooms")
        .await
        .text()
        .await
        .expect("body");
    assert_eq!(
        body,
        format!(
            r#"[{{"id":{staff},"title":"Admins","staff_only":true,"group_name":"room-{staff}"}},{{"id":{general},"title":"General","staff_only":false,"group_name":"room-{general}"}},{{"id":{zoo},"title":"Zoo","staff_only":false,"group_name":"room-{zoo}"}}]"#
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn every_api_answer_is_no_store_and_static_files_stay_cacheable() {
    let server = TestServer::start().await;
    let ann = server.user("ann", false).await;
    let boss = server.user("boss", true).await;
    let anonymous = http_client()
        .get(server.url("/api/me"))
        .send()
        .await
        .expect("GET /api/me");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let mut answers = vec![("anonymous /api/me", anonymous)];
    for path in ["/api/me", "/api/rooms", "/api/nowhere", "/api/admin/users"] {
        answers.push((path, server.get_as(&ann, path).await));
    }
    answers.push((
        "staff /api/admin/users",
        server.get_as(&boss, "/api/admin/users").await,
    ));
    let statuses: Vec<u16> = answers.iter().map(|(_, r)| r.status().as_u16()).collect();
    assert_eq!(statuses, [401, 200, 200, 404, 403, 200]);
    for (what, response) in &answers {
        let cache = response.headers().get("cache-control");
        assert_eq!(
            cache.map(|v| v.as_bytes()),
            Some(&b"no-store"[..]),
            "{what}"
        );
    }
    let script = server.get_as(&ann, "/static/chat.js").await;
    assert_eq!(script.headers()["cache-control"], "public, max-age=300");
    server.stop().await;
}

#[tokio::test]
async fn chat_page_static_assets_and_health() {
    let server = TestServer::start().await;
    let ann = server.user("ann", false).await;
    let client = http_client();
    let page = server.get_as(&ann, "/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.expect("html").contains("/static/chat.js"));
    let script = client
        .get(server.url("/static/chat.js"))
        .send()
        .await
        .expect("script");
    assert_eq!(script.status(), StatusCode::OK);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/javascript")
    );
    let etag = script.headers()["etag"].clone();
    let again = client
        .get(server.url("/static/chat.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .expect("script");
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    for missing in ["/static/nope.js", "/static/../Cargo.toml", "/nowhere"] {
        let response = client.get(server.url(missing)).send().await.expect("get");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{missing}");
    }
    let health = client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(
        health.text().await.expect("body"),
        r#"{"status":"ok","database":"ok","channel_layer":"ok"}"#
    );
    server.stop().await;
}

#[tokio::test]
async fn websocket_needs_a_session_and_an_allowed_origin() {
    let server = TestServer::start().await;
    let ann = server.user("ann", false).await;
    let origin = server.origin();
    let refusals = [
        (None, Some(origin.as_str())),
        (
            Some("sessionid=forged-forged-forged-forged-forged"),
            Some(origin.as_str()),
        ),
        (Some(ann.cookie().as_str()), Some("http://evil.example")),
        (Some(ann.cookie().as_str()), None),
    ]
    .map(|(cookie, origin)| (cookie.map(str::to_owned), origin.map(str::to_owned)));
    for (cookie, origin) in refusals {
        let error = server
            .try_connect(cookie.as_deref(), origin.as_deref())
            .await
            .err()
            .unwrap_or_else(|| {
                panic!("handshake with cookie {cookie:?} origin {origin:?} must fail")
            });
        match error {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                assert_eq!(response.status(), StatusCode::FORBIDDEN.as_u16());
            }
            other => panic!("expected HTTP 403, got {other}"),
        }
    }
    assert!(
        server
            .try_connect(Some(&ann.cookie()), Some(&origin))
            .await
            .is_ok()
    );
    server.stop().await;
}

/// Whether the handshake with these headers is let through (101) or
/// refused with 403; anything else fails the test.
async fn handshake_passes(server: &TestServer, headers: &[(&str, &str)]) -> bool {
    match server.handshake_with_headers(headers).await {
        Ok(_) => true,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::FORBIDDEN.as_u16());
            false
        }
        Err(other) => panic!("expected 101 or 403, got {other}"),
    }
}

#[tokio::test]
async fn the_origin_must_have_the_servers_own_scheme() {
    let plain = TestServer::start().await;
    let ann = plain.user("ann", false).await;
    let cookie = ann.cookie();
    let http = plain.origin();
    let https = http.replacen("http://", "https://", 1);
    let cases = [
        (http.as_str(), None, true),
        (https.as_str(), None, false),
        (https.as_str(), Some("https"), true),
        (http.as_str(), Some("https"), false),
    ];
    for (origin, proto, passes) in cases {
        let mut headers = vec![("cookie", cookie.as_str()), ("origin", origin)];
        headers.extend(proto.map(|proto| ("x-forwarded-proto", proto)));
        assert_eq!(
            handshake_passes(&plain, &headers).await,
            passes,
            "plain server, Origin {origin}, X-Forwarded-Proto {proto:?}"
        );
    }
    plain.stop().await;

    let secure = TestServer::start_with(|config| config.secure_cookies = true).await;
    let ann = secure.user("ann", false).await;
    let cookie = ann.cookie();
    let http = secure.origin();
    let https = http.replacen("http://", "https://", 1);
    for (origin, passes) in [(https.as_str(), true), (http.as_str(), false)] {
        let headers = [("cookie", cookie.as_str()), ("origin", origin)];
        assert_eq!(
            handshake_passes(&secure, &headers).await,
            passes,
            "server with secure cookies, Origin {origin}"
        );
    }
    secure.stop().await;
}

#[tokio::test]
async fn a_declared_path_asked_with_another_method_is_405_with_its_methods() {
    let server = TestServer::start().await;
    let client = http_client();
    let csrf = csrf_token(&client, &server.url("/accounts/login/")).await;
    let cases = [
        ("DELETE", "/", "GET,HEAD"),
        ("PUT", "/accounts/login/", "GET,HEAD,POST"),
        ("GET", "/accounts/logout/", "POST"),
        ("POST", "/api/rooms", "GET,HEAD"),
        ("POST", "/chat/stream/", "GET,HEAD"),
        ("OPTIONS", "/static/chat.js", "GET,HEAD"),
        ("GET", "/api/admin/rooms", "POST"),
        ("PUT", "/api/admin/rooms/1", "DELETE,PATCH"),
        ("PUT", "/api/admin/users/1", "DELETE,PATCH"),
    ];
    for (method, path, allowed) in cases {
        // A valid token, so the refusal is the method's and not CSRF's.
        let response = client
            .request(method.parse().expect("method"), server.url(path))
            .header("cookie", format!("csrftoken={csrf}"))
            .header("x-csrftoken", &csrf)
            .send()
            .await
            .expect("response");
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        let allow = response.headers()["allow"].to_str().expect("allow");
        let mut methods: Vec<_> = allow.split(',').map(str::trim).collect();
        methods.sort_unstable();
        assert_eq!(methods.join(","), allowed, "{method} {path}");
        assert_eq!(response.text().await.expect("body"), "Method not allowed\n");
    }
    let unknown = client
        .delete(server.url("/nowhere"))
        .header("cookie", format!("csrftoken={csrf}"))
        .header("x-csrftoken", &csrf)
        .send()
        .await
        .expect("response");
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(unknown.headers().get("allow").is_none());
    assert_eq!(unknown.text().await.expect("body"), "Not found\n");
    server.stop().await;
}
