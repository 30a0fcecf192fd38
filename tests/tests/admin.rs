//! The staff-only admin page and its JSON API: staff can manage rooms,
//! superusers create users and change staff flags, who is active and
//! passwords (never their own); everyone else gets 401 or 403; every
//! change is CSRF-checked.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use whisper_tests::{Session, TestServer, http_client};

/// Someone signed in on the admin page, calling its API as its script does.
struct AdminPage<'a> {
    server: &'a TestServer,
    session: &'a Session,
}

impl AdminPage<'_> {
    /// [`Site::api`]; panics unless the answer has status `expected`.
    async fn expect(
        &self,
        expected: StatusCode,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let (status, value) = self
            .server
            .api(self.session, method.clone(), path, body)
            .await;
        assert_eq!(status, expected, "{method} {path}");
        value
    }
}

/// Who the tests of what superusers alone may do take part: Root (a
/// superuser), Ann (staff, not a superuser) and Bob (neither), each
/// signed in on one server.
struct Cast {
    server: TestServer,
    root: Session,
    ann: Session,
    bob: Session,
}

impl Cast {
    async fn new() -> Cast {
        let server = TestServer::start().await;
        let root = server.superuser("root").await;
        let ann = server.user("ann", true).await;
        let bob = server.user("bob", false).await;
        Cast {
            server,
            root,
            ann,
            bob,
        }
    }

    /// The admin page as Root.
    fn as_root(&self) -> AdminPage<'_> {
        AdminPage {
            server: &self.server,
            session: &self.root,
        }
    }

    /// The admin page as Ann.
    fn as_ann(&self) -> AdminPage<'_> {
        AdminPage {
            server: &self.server,
            session: &self.ann,
        }
    }

    /// Root's, Ann's and Bob's path for an action on a user:
    /// `/api/admin/users/{id}` followed by `action` (`/active`, say).
    async fn paths(&self, action: &str) -> [String; 3] {
        let mut paths = Vec::with_capacity(3);
        for session in [&self.root, &self.ann, &self.bob] {
            let id = &self.server.me(session).await["id"];
            paths.push(format!("/api/admin/users/{id}{action}"));
        }
        paths.try_into().expect("three paths")
    }
}

#[tokio::test]
async fn staff_manage_rooms_and_superusers_staff_flags() {
    let server = TestServer::start().await;
    let admin = server.superuser("admin").await;
    server.user("ann", false).await;

    let page = server.get_as(&admin, "/admin/").await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text()
            .await
            .expect("html")
            .contains("/static/admin.js")
    );

    let page = AdminPage {
        server: &server,
        session: &admin,
    };
    let new_room = json!({"title": "New room", "staff_only": true});
    let room = page
        .expect(
            StatusCode::CREATED,
            Method::POST,
            "/api/admin/rooms",
            Some(new_room),
        )
        .await;
    assert_eq!(room["title"], "New room");
    assert_eq!(room["staff_only"], true);
    let id = room["id"].as_i64().expect("id");
    let room_path = format!("/api/admin/rooms/{id}");

    let change = json!({"staff_only": false});
    let room = page
        .expect(StatusCode::OK, Method::PATCH, &room_path, Some(change))
        .await;
    assert_eq!(room["staff_only"], false);

    // Reading needs no CSRF token.
    let (ann, ann_path) = listed(&server, &admin, "ann").await;
    assert_eq!(ann["is_staff"], false);
    let change = json!({"is_staff": true});
    let ann = page
        .expect(StatusCode::OK, Method::PATCH, &ann_path, Some(change))
        .await;
    assert_eq!(ann["is_staff"], true);

    page.expect(StatusCode::NO_CONTENT, Method::DELETE, &room_path, None)
        .await;
    page.expect(StatusCode::NOT_FOUND, Method::DELETE, &room_path, None)
        .await;
    server.stop().await;
}

#[tokio::test]
async fn bad_admin_requests_are_refused_clearly() {
    let server = TestServer::start().await;
    let admin = server.user("admin", true).await;
    let cases = [
        (
            Method::POST,
            "/api/admin/rooms",
            Some(json!({"title": "   "})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/admin/rooms",
            Some(json!({"name": "x"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::POST,
            "/api/admin/rooms",
            None,
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PATCH,
            "/api/admin/rooms/999",
            Some(json!({"staff_only": true})),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PATCH,
            "/api/admin/rooms/abc",
            Some(json!({"staff_only": true})),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PATCH,
            "/api/admin/users/999",
            Some(json!({"is_staff": true})),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::PUT,
            "/api/admin/rooms/1",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (method, path, body, expected) in cases {
        let (status, _) = server.api(&admin, method.clone(), path, body.clone()).await;
        assert_eq!(status, expected, "{method} {path} {body:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn non_staff_and_forged_requests_change_nothing() {
    let server = TestServer::start().await;
    let admin = server.user("admin", true).await;
    let ann = server.user("ann", false).await;
    let room = server.create_room("Lobby", false).await;
    let rooms_before = rooms(&server, &admin).await;

    let page = server.get_as(&ann, "/admin/").await;
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    let anonymous = http_client()
        .get(server.url("/admin/"))
        .send()
        .await
        .expect("page");
    assert_eq!(anonymous.status(), StatusCode::FOUND);

    let attempts = [
        (Method::GET, "/api/admin/users".to_owned(), None),
        (
            Method::POST,
            "/api/admin/rooms".to_owned(),
            Some(json!({"title": "Mine"})),
        ),
        (
            Method::PATCH,
            format!("/api/admin/rooms/{room}"),
            Some(json!({"staff_only": true})),
        ),
        (Method::DELETE, format!("/api/admin/rooms/{room}"), None),
        (
            Method::PATCH,
            "/api/admin/users/2".to_owned(),
            Some(json!({"is_staff": true})),
        ),
        (
            Method::POST,
            "/api/admin/users/1/active".to_owned(),
            Some(json!({"is_active": false})),
        ),
        (
            Method::POST,
            "/api/admin/users".to_owned(),
            Some(json!({"username": "mallory", "password": "long enough"})),
        ),
        (
            Method::POST,
            "/api/admin/users/1/password".to_owned(),
            Some(json!({"password": "long enough"})),
        ),
    ];
    for (method, path, body) in &attempts {
        let (status, _) = server.api(&ann, method.clone(), path, body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "non-staff {method} {path}");
    }
    for (method, path, body) in attempts.iter().skip(1) {
        for csrf in [None, Some("forged-token-forged-token-forged-token")] {
            let (status, _) = server
                .api_call(&admin, csrf, method.clone(), path, body.clone())
                .await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "staff without CSRF {method} {path}"
            );
        }
    }
    let (_, users) = server
        .api_call(&admin, None, Method::GET, "/api/admin/users", None)
        .await;
    assert!(
        users
            .as_array()
            .expect("array")
            .iter()
            .all(|u| u["username"] != "ann" || u["is_staff"] == false)
    );
    assert_eq!(rooms(&server, &admin).await, rooms_before);
    server.stop().await;
}

/// `username` as `session` sees it in the admin user list (read without a
/// CSRF token, as reading needs none), and the path that changes it.
async fn listed(server: &TestServer, session: &Session, username: &str) -> (Value, String) {
    let (status, users) = server
        .api_call(session, None, Method::GET, "/api/admin/users", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let user = users
        .as_array()
        .expect("array")
        .iter()
        .find(|u| u["username"] == username)
        .unwrap_or_else(|| panic!("{username} listed in {users}"))
        .clone();
    let path = format!("/api/admin/users/{}", user["id"]);
    (user, path)
}

#[tokio::test]
async fn only_a_superuser_changes_staff_flags_and_never_their_own() {
    let cast = Cast::new().await;
    let (server, root, ann) = (&cast.server, &cast.root, &cast.ann);
    let [root_path, ann_path, bob_path] = cast.paths("").await;
    let (as_root, as_ann) = (cast.as_root(), cast.as_ann());
    let refused = |why: &str| json!({"error": why});
    let only_superusers = refused("Only a superuser can change staff status.");
    let not_your_own = refused("Nobody can change their own staff status.");
    let superuser_is_staff = refused("A superuser is always staff.");

    // Ann is staff, not a superuser: she can demote nobody, promote
    // nobody, and not touch her own flag; each answer says why.
    let demote = || Some(json!({"is_staff": false}));
    let promote = || Some(json!({"is_staff": true}));
    for (path, body, why) in [
        (&root_path, demote(), &only_superusers),
        (&bob_path, promote(), &only_superusers),
        (&ann_path, demote(), &not_your_own),
    ] {
        let answer = as_ann
            .expect(StatusCode::FORBIDDEN, Method::PATCH, path, body)
            .await;
        assert_eq!(answer, *why, "Ann: PATCH {path}");
    }
    // A superuser cannot demote themselves, and no field makes one.
    let answer = as_root
        .expect(StatusCode::FORBIDDEN, Method::PATCH, &root_path, demote())
        .await;
    assert_eq!(answer, not_your_own);
    let escalate = Some(json!({"is_staff": true, "is_superuser": true}));
    as_root
        .expect(StatusCode::BAD_REQUEST, Method::PATCH, &bob_path, escalate)
        .await;

    // Nothing changed: root is still staff (and reaches the admin page).
    assert_eq!(server.me(root).await["is_staff"], true);
    assert_eq!(
        server.get_as(root, "/admin/").await.status(),
        StatusCode::OK
    );
    // What the page is told it may do, per viewer.
    let locked = |user: Value| user["staff_locked"].clone();
    assert_eq!(
        locked(listed(server, ann, "ann").await.0),
        not_your_own["error"]
    );
    assert_eq!(
        locked(listed(server, ann, "bob").await.0),
        only_superusers["error"]
    );
    assert_eq!(
        locked(listed(server, root, "root").await.0),
        not_your_own["error"]
    );
    let (ann_seen, _) = listed(server, root, "ann").await;
    let (bob_seen, _) = listed(server, root, "bob").await;
    assert_eq!(ann_seen["is_staff"], true);
    assert_eq!(ann_seen["staff_locked"], Value::Null);
    assert_eq!(bob_seen["is_staff"], false);
    assert_eq!(bob_seen["staff_locked"], Value::Null);

    // The superuser changes the others.
    let bob = as_root
        .expect(StatusCode::OK, Method::PATCH, &bob_path, promote())
        .await;
    assert_eq!(bob["is_staff"], true);
    let ann = as_root
        .expect(StatusCode::OK, Method::PATCH, &ann_path, demote())
        .await;
    assert_eq!(ann["is_staff"], false);

    // Another superuser stays staff, whoever asks.
    server.db.create_superuser("rex", "correct horse").await;
    let (rex, rex_path) = listed(server, root, "rex").await;
    assert_eq!(locked(rex), superuser_is_staff["error"]);
    let answer = as_root
        .expect(StatusCode::FORBIDDEN, Method::PATCH, &rex_path, demote())
        .await;
    assert_eq!(answer, superuser_is_staff);
    cast.server.stop().await;
}

#[tokio::test]
async fn only_a_superuser_deactivates_users_and_never_themselves() {
    let cast = Cast::new().await;
    let (server, root, ann, bob) = (&cast.server, &cast.root, &cast.ann, &cast.bob);
    let [root_path, ann_path, bob_path] = cast.paths("/active").await;
    let (as_root, as_ann) = (cast.as_root(), cast.as_ann());
    let refused = |why: &str| json!({"error": why});
    let only_superusers = refused("Only a superuser can deactivate or reactivate users.");
    let not_yourself = refused("Nobody can deactivate themselves.");
    let off = || Some(json!({"is_active": false}));
    let on = || Some(json!({"is_active": true}));

    // Staff who are not superusers deactivate nobody, and each answer says
    // why; the list tells the page so.
    for (path, why) in [
        (&bob_path, &only_superusers),
        (&root_path, &only_superusers),
        (&ann_path, &not_yourself),
    ] {
        let answer = as_ann
            .expect(StatusCode::FORBIDDEN, Method::POST, path, off())
            .await;
        assert_eq!(answer, *why, "Ann: POST {path}");
    }
    let locked = |user: Value| user["active_locked"].clone();
    assert_eq!(
        locked(listed(server, ann, "bob").await.0),
        only_superusers["error"]
    );
    assert_eq!(
        locked(listed(server, ann, "ann").await.0),
        not_yourself["error"]
    );
    // Nor does anyone else; a superuser not themselves, and never without
    // the CSRF token.
    let (status, _) = server.api(bob, Method::POST, &ann_path, off()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "non-staff");
    let answer = as_root
        .expect(StatusCode::FORBIDDEN, Method::POST, &root_path, off())
        .await;
    assert_eq!(answer, not_yourself);
    assert_eq!(
        locked(listed(server, root, "root").await.0),
        not_yourself["error"]
    );
    for csrf in [None, Some("forged-token-forged-token-forged-token")] {
        let (status, _) = server
            .api_call(root, csrf, Method::POST, &bob_path, off())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "without CSRF: {csrf:?}");
    }
    as_root
        .expect(StatusCode::BAD_REQUEST, Method::POST, &bob_path, None)
        .await;
    let extra = Some(json!({"is_active": false, "is_superuser": true}));
    as_root
        .expect(StatusCode::BAD_REQUEST, Method::POST, &bob_path, extra)
        .await;
    as_root
        .expect(
            StatusCode::NOT_FOUND,
            Method::POST,
            "/api/admin/users/999/active",
            off(),
        )
        .await;
    assert_eq!(server.me(bob).await["username"], "bob", "still logged in");

    // The superuser deactivates Bob, whose session ends, and reactivates
    // him, who must log in again.
    let (bob_seen, _) = listed(server, root, "bob").await;
    assert_eq!(
        (bob_seen["is_active"].clone(), locked(bob_seen)),
        (json!(true), Value::Null)
    );
    let answer = as_root
        .expect(StatusCode::OK, Method::POST, &bob_path, off())
        .await;
    assert_eq!(answer["is_active"], false);
    assert_eq!(listed(server, root, "bob").await.0["is_active"], false);
    assert_eq!(server.me(bob).await["username"], Value::Null);
    assert!(server.login("bob", "correct horse").await.is_none());
    let answer = as_root
        .expect(StatusCode::OK, Method::POST, &bob_path, on())
        .await;
    assert_eq!(answer["is_active"], true);
    assert!(server.login("bob", "correct horse").await.is_some());
    cast.server.stop().await;
}

#[tokio::test]
async fn a_superuser_creates_users_who_can_log_in() {
    let server = TestServer::start().await;
    let root = server.superuser("root").await;
    let ann = server.user("ann", true).await;
    let bob = server.user("bob", false).await;
    let as_root = AdminPage {
        server: &server,
        session: &root,
    };
    let new = |username: &str| json!({"username": username, "password": "cid's secret"});

    // The form is on a superuser's page only.
    for (session, shown) in [(&root, true), (&ann, false)] {
        let page = server.get_as(session, "/admin/").await.text().await;
        assert_eq!(page.expect("the page").contains("new-user-form"), shown);
    }

    let body =
        json!({"username": "cid", "name": " Cid ", "password": "cid's secret", "is_staff": true});
    let cid = as_root
        .expect(
            StatusCode::CREATED,
            Method::POST,
            "/api/admin/users",
            Some(body),
        )
        .await;
    assert_eq!(
        (&cid["username"], &cid["name"], &cid["is_staff"]),
        (&json!("cid"), &json!("Cid"), &json!(true))
    );
    assert_eq!(
        (
            &cid["is_superuser"],
            &cid["is_active"],
            &cid["staff_locked"]
        ),
        (&json!(false), &json!(true), &Value::Null)
    );
    assert_eq!(
        listed(&server, &root, "cid").await.0,
        cid,
        "as the list shows it"
    );
    let session = server
        .login("cid", "cid's secret")
        .await
        .expect("cid logs in");
    assert_eq!(server.me(&session).await["is_staff"], true);
    let plain = as_root
        .expect(
            StatusCode::CREATED,
            Method::POST,
            "/api/admin/users",
            Some(new("dan")),
        )
        .await;
    assert_eq!(
        (&plain["name"], &plain["is_staff"]),
        (&json!(""), &json!(false))
    );

    // A taken name, or one that looks like it, is a conflict.
    for taken in ["cid", "CID", "ann"] {
        let answer = as_root
            .expect(
                StatusCode::CONFLICT,
                Method::POST,
                "/api/admin/users",
                Some(new(taken)),
            )
            .await;
        assert_eq!(
            answer,
            json!({"error": "that username is taken"}),
            "{taken}"
        );
    }
    // The rules of every account, and nothing but the form's fields.
    for body in [
        Some(json!({"username": "eve", "password": "short"})),
        Some(new("e ve")),
        Some(new("")),
        Some(json!({"username": "eve", "password": "long enough", "is_superuser": true})),
        Some(json!({"username": "eve"})),
        None,
    ] {
        as_root
            .expect(
                StatusCode::BAD_REQUEST,
                Method::POST,
                "/api/admin/users",
                body,
            )
            .await;
    }
    // Never without the CSRF token, nor by staff who are not superusers,
    // nor by anyone else.
    for csrf in [None, Some("forged-token-forged-token-forged-token")] {
        let (status, _) = server
            .api_call(
                &root,
                csrf,
                Method::POST,
                "/api/admin/users",
                Some(new("eve")),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "without CSRF: {csrf:?}");
    }
    let answer = AdminPage {
        server: &server,
        session: &ann,
    }
    .expect(
        StatusCode::FORBIDDEN,
        Method::POST,
        "/api/admin/users",
        Some(new("eve")),
    )
    .await;
    assert_eq!(
        answer,
        json!({"error": "Only a superuser can create users."})
    );
    let (status, _) = server
        .api(&bob, Method::POST, "/api/admin/users", Some(new("eve")))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "non-staff");
    assert!(server.login("eve", "cid's secret").await.is_none());
    server.stop().await;
}

#[tokio::test]
async fn only_a_superuser_resets_passwords_and_never_their_own() {
    let cast = Cast::new().await;
    let (server, root, ann, bob) = (&cast.server, &cast.root, &cast.ann, &cast.bob);
    let [root_path, ann_path, bob_path] = cast.paths("/password").await;
    let (as_root, as_ann) = (cast.as_root(), cast.as_ann());
    let refused = |why: &str| json!({"error": why});
    let only_superusers = refused("Only a superuser can reset passwords.");
    let not_your_own = refused("Nobody can reset their own password here.");
    let new_password = || Some(json!({"password": "battery staple"}));

    // Staff who are not superusers reset nobody's, and a superuser not
    // their own; each answer says why, and the list tells the page so.
    for (page, path, why) in [
        (&as_ann, &bob_path, &only_superusers),
        (&as_ann, &root_path, &only_superusers),
        (&as_ann, &ann_path, &not_your_own),
        (&as_root, &root_path, &not_your_own),
    ] {
        let answer = page
            .expect(StatusCode::FORBIDDEN, Method::POST, path, new_password())
            .await;
        assert_eq!(answer, *why, "POST {path}");
    }
    let locked = |user: Value| user["password_locked"].clone();
    assert_eq!(
        locked(listed(server, ann, "bob").await.0),
        only_superusers["error"]
    );
    assert_eq!(
        locked(listed(server, root, "root").await.0),
        not_your_own["error"]
    );
    assert_eq!(locked(listed(server, root, "bob").await.0), Value::Null);
    // Nor anyone else, nor without the CSRF token; and the password
    // follows the rule of every password.
    let (status, _) = server
        .api(bob, Method::POST, &bob_path, new_password())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "non-staff");
    for csrf in [None, Some("forged-token-forged-token-forged-token")] {
        let (status, _) = server
            .api_call(root, csrf, Method::POST, &bob_path, new_password())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "without CSRF: {csrf:?}");
    }
    for body in [
        Some(json!({"password": "short"})),
        Some(json!({"password": "battery staple", "is_superuser": true})),
        None,
    ] {
        as_root
            .expect(StatusCode::BAD_REQUEST, Method::POST, &bob_path, body)
            .await;
    }
    as_root
        .expect(
            StatusCode::NOT_FOUND,
            Method::POST,
            "/api/admin/users/999/password",
            new_password(),
        )
        .await;
    assert_eq!(server.me(bob).await["username"], "bob", "still logged in");

    // The superuser sets Bob's password: his session ends, the old
    // password is refused and the new one accepted.
    let answer = as_root
        .expect(StatusCode::OK, Method::POST, &bob_path, new_password())
        .await;
    assert_eq!(answer, listed(server, root, "bob").await.0);
    assert_eq!(server.me(bob).await["username"], Value::Null);
    assert!(server.login("bob", "correct horse").await.is_none());
    assert!(server.login("bob", "battery staple").await.is_some());
    cast.server.stop().await;
}

/// `GET /api/rooms` as `session`.
async fn rooms(server: &TestServer, session: &Session) -> Value {
    server
        .get_as(session, "/api/rooms")
        .await
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn only_a_superuser_deletes_users_and_never_themselves() {
    let cast = Cast::new().await;
    let (server, root, ann, bob) = (&cast.server, &cast.root, &cast.ann, &cast.bob);
    let [root_path, ann_path, bob_path] = cast.paths("").await;
    let (as_root, as_ann) = (cast.as_root(), cast.as_ann());
    let refused = |why: &str| json!({"error": why});
    let only_superusers = refused("Only a superuser can delete users.");
    let not_yourself = refused("Nobody can delete themselves.");

    // Staff who are not superusers delete nobody, and a superuser not
    // themselves; each answer says why, and the list tells the page so.
    for (page, path, why) in [
        (&as_ann, &bob_path, &only_superusers),
        (&as_ann, &root_path, &only_superusers),
        (&as_ann, &ann_path, &not_yourself),
        (&as_root, &root_path, &not_yourself),
    ] {
        let answer = page
            .expect(StatusCode::FORBIDDEN, Method::DELETE, path, None)
            .await;
        assert_eq!(answer, *why, "DELETE {path}");
    }
    let locked = |user: Value| user["delete_locked"].clone();
    assert_eq!(
        locked(listed(server, ann, "bob").await.0),
        only_superusers["error"]
    );
    assert_eq!(
        locked(listed(server, root, "root").await.0),
        not_yourself["error"]
    );
    assert_eq!(locked(listed(server, root, "bob").await.0), Value::Null);
    // Nor anyone else, nor without the CSRF token.
    let (status, _) = server.api(bob, Method::DELETE, &ann_path, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "non-staff");
    for csrf in [None, Some("forged-token-forged-token-forged-token")] {
        let (status, _) = server
            .api_call(root, csrf, Method::DELETE, &bob_path, None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "without CSRF: {csrf:?}");
    }
    as_root
        .expect(
            StatusCode::NOT_FOUND,
            Method::DELETE,
            "/api/admin/users/999",
            None,
        )
        .await;
    assert_eq!(server.me(bob).await["username"], "bob", "still logged in");

    // The superuser deletes Bob: his session ends, he is no longer listed
    // and cannot log in; a second delete finds nobody.
    as_root
        .expect(StatusCode::NO_CONTENT, Method::DELETE, &bob_path, None)
        .await;
    assert_eq!(server.me(bob).await["username"], Value::Null);
    assert!(server.login("bob", "correct horse").await.is_none());
    let (_, users) = server
        .api(root, Method::GET, "/api/admin/users", None)
        .await;
    let names: Vec<&Value> = users
        .as_array()
        .expect("array")
        .iter()
        .map(|user| &user["username"])
        .collect();
    assert_eq!(names, [&json!("ann"), &json!("root")]);
    as_root
        .expect(StatusCode::NOT_FOUND, Method::DELETE, &bob_path, None)
        .await;
    cast.server.stop().await;
}

#[tokio::test]
async fn superusers_read_who_did_what_to_whom_and_when() {
    let cast = Cast::new().await;
    let (server, bob) = (&cast.server, &cast.bob);
    let [_, ann_path, bob_path] = cast.paths("").await;
    let (as_root, as_ann) = (cast.as_root(), cast.as_ann());
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis();

    // Ann (staff) manages a room; Root changes accounts.
    let room = as_ann
        .expect(
            StatusCode::CREATED,
            Method::POST,
            "/api/admin/rooms",
            Some(json!({"title": "Town <hall>", "staff_only": true})),
        )
        .await;
    let room_path = format!("/api/admin/rooms/{}", room["id"]);
    as_ann
        .expect(StatusCode::NO_CONTENT, Method::DELETE, &room_path, None)
        .await;
    let steps = [
        (
            Method::POST,
            "/api/admin/users".to_owned(),
            Some(json!({"username": "cid", "password": "correct horse", "is_staff": true})),
        ),
        (
            Method::PATCH,
            bob_path.clone(),
            Some(json!({"is_staff": true})),
        ),
        (
            Method::POST,
            format!("{bob_path}/active"),
            Some(json!({"is_active": false})),
        ),
        (
            Method::POST,
            format!("{bob_path}/active"),
            Some(json!({"is_active": true})),
        ),
        (
            Method::POST,
            format!("{bob_path}/password"),
            Some(json!({"password": "battery staple"})),
        ),
        (Method::DELETE, bob_path.clone(), None),
    ];
    for (method, path, body) in steps {
        let (status, answer) = server.api(&cast.root, method.clone(), &path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
    }
    // A refused change is not an action.
    as_ann
        .expect(StatusCode::FORBIDDEN, Method::DELETE, &ann_path, None)
        .await;

    let record = as_root
        .expect(StatusCode::OK, Method::GET, "/api/admin/record", None)
        .await;
    let entries = record.as_array().expect("an array");
    let read: Vec<String> = entries
        .iter()
        .rev()
        .map(|entry| {
            assert!(
                entry["at"].as_u64().expect("a time") as u128 >= before,
                "{entry}"
            );
            format!(
                "{} {} {} {}",
                entry["actor"].as_str().expect("actor"),
                entry["action"].as_str().expect("action"),
                entry["subject"].as_str().expect("subject"),
                entry["detail"].as_str().expect("detail"),
            )
            .trim_end()
            .to_owned()
        })
        .collect();
    let room_named = format!("room {} \"Town <hall>\"", room["id"]);
    assert_eq!(
        read,
        [
            format!("ann create-room {room_named} staff-only"),
            format!("ann delete-room {room_named}"),
            "root create-user user cid staff".to_owned(),
            "root grant-staff user bob".to_owned(),
            "root deactivate user bob".to_owned(),
            "root activate user bob".to_owned(),
            "root reset-password user bob".to_owned(),
            "root delete-user user bob".to_owned(),
        ]
    );

    // Only superusers read it.
    let only_superusers = json!({"error": "Only a superuser can read the moderation record."});
    let answer = as_ann
        .expect(
            StatusCode::FORBIDDEN,
            Method::GET,
            "/api/admin/record",
            None,
        )
        .await;
    assert_eq!(answer, only_superusers);
    let (status, _) = server
        .api(bob, Method::GET, "/api/admin/record", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "Bob was deleted");
    let (status, _) = server
        .api(
            &server.user("dan", false).await,
            Method::GET,
            "/api/admin/record",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "not staff");
    cast.server.stop().await;
}
