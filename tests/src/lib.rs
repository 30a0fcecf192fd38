//! Test support: a real Whisper server on a free loopback port, with its own
//! SQLite file, and clients that speak to it the way a browser does (log in
//! through the form, then open the WebSocket with the session cookie and an
//! Origin header). [`Cluster`] runs two server processes on one PostgreSQL
//! database and one Redis; [`v2`] holds protocol v2's helpers and the
//! scenarios run on one server and on a cluster alike.
//!
//! Every wait is bounded: a frame that does not arrive within
//! [`RECV_TIMEOUT`] fails the test instead of hanging it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use whisper_auth::{NewUser, UserStore};
use whisper_chat::AccessChange;
use whisper_server::{Config, RoomCatalog, Server, ServerError};
use whisper_store::{ChangeFeed, MessageStore, ModerationRecord};

pub mod access;
pub mod browser;
pub mod cluster;
pub mod mutes;
mod nodes;
pub mod v2;

pub use cluster::Cluster;
pub use nodes::Nodes;

/// Longest wait for one expected frame.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server and the database behind it.
///
/// It dereferences to its [`Site`], so `server.login(..)` and
/// `server.connect(..)` work directly.
pub struct TestServer {
    site: Site,
    /// The server's database, for setting up users and rooms.
    pub db: TestDatabase,
    config: Config,
    start: Starter,
    running: Option<RunningServer>,
    _dir: TempDir,
}

/// Binds and spawns a server, with a fresh channel layer, for a
/// configuration; kept so [`TestServer::restart`] can start the same kind
/// of server again.
type Starter = Box<
    dyn Fn(Config) -> Pin<Box<dyn Future<Output = Result<RunningServer, ServerError>> + Send>>
        + Send
        + Sync,
>;

/// A server task and the token that stops it.
struct RunningServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningServer {
    fn spawn<L: whisper_rooms::ChannelLayer>(server: Server<L>) -> RunningServer {
        let addr = server.local_addr();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            server.run(stop).await.expect("server runs");
        });
        RunningServer {
            addr,
            shutdown,
            task,
        }
    }

    /// Shuts the server down gracefully (as SIGTERM would) and waits for it.
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("server stops in time")
            .expect("server task ends cleanly");
    }
}

/// Longest wait for a stopped server's port to be free again.
const REBIND_TIMEOUT: Duration = Duration::from_secs(10);

impl std::ops::Deref for TestServer {
    type Target = Site;

    fn deref(&self) -> &Site {
        &self.site
    }
}

impl TestServer {
    /// A server with the default configuration on a free port.
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// A server whose configuration `adjust` may change first.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::start_with_layer(adjust, |_| whisper_rooms::MemoryLayer::default()).await
    }

    /// A server over the channel layer `make_layer` builds from the final
    /// configuration (for example a wrapper that injects faults).
    pub async fn start_with_layer<L: whisper_rooms::ChannelLayer>(
        adjust: impl FnOnce(&mut Config),
        make_layer: impl Fn(&Config) -> L + Send + Sync + 'static,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let database_url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("whisper.db").display()
        );
        let mut config = Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url,
            ..Config::default()
        };
        adjust(&mut config);
        let start: Starter = Box::new(move |config: Config| {
            let layer = make_layer(&config);
            Box::pin(async move { Ok(RunningServer::spawn(Server::bind(config, layer).await?)) })
        });
        let running = start(config.clone()).await.expect("server starts");
        // From now on, the same address every time.
        config.bind = running.addr;
        TestServer {
            site: Site { addr: running.addr },
            db: TestDatabase::connect(&config.database_url).await,
            config,
            start,
            running: Some(running),
            _dir: dir,
        }
    }

    /// Creates an account directly in the database.
    pub async fn create_user(&self, username: &str, password: &str, is_staff: bool) {
        self.db.create_user(username, password, is_staff).await;
    }

    /// Creates a room and returns its id.
    pub async fn create_room(&self, title: &str, staff_only: bool) -> i64 {
        self.db.create_room(title, staff_only).await
    }

    /// Creates an account and logs it in through the login form.
    pub async fn user(&self, username: &str, is_staff: bool) -> Session {
        self.create_user(username, "correct horse", is_staff).await;
        self.login(username, "correct horse")
            .await
            .expect("login succeeds")
    }

    /// Creates a superuser (as `whisper-manage createsuperuser` does) and
    /// logs it in through the login form.
    pub async fn superuser(&self, username: &str) -> Session {
        self.db.create_superuser(username, "correct horse").await;
        self.login(username, "correct horse")
            .await
            .expect("login succeeds")
    }

    /// Ann and Bob, both in `room`: Bob joins first and has read Ann's
    /// ENTER, so neither has a frame waiting.
    pub async fn ann_and_bob_in(&self, room: i64) -> (WsClient, WsClient) {
        let ann = self.user("ann", false).await;
        let bob = self.user("bob", false).await;
        let mut a = self.connect(&ann).await;
        let mut b = self.connect(&bob).await;
        b.join(room).await;
        a.join(room).await;
        assert_eq!(b.recv_json().await["msg_type"], 4, "Ann's ENTER");
        (a, b)
    }

    /// Stops the server gracefully (unless [`TestServer::halt`] already
    /// did) and starts a new one on the same address and database, as an
    /// operator's restart would: sessions and rooms survive, connections and
    /// presence do not.
    pub async fn restart(&mut self) {
        self.halt().await;
        let deadline = std::time::Instant::now() + REBIND_TIMEOUT;
        let running = loop {
            match (self.start)(self.config.clone()).await {
                Ok(running) => break running,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("server does not start again on {}: {error}", self.addr),
            }
        };
        self.running = Some(running);
    }

    /// Stops the server gracefully, keeping its address and database, so a
    /// test can see what clients do while it is down;
    /// [`TestServer::restart`] brings it back.
    pub async fn halt(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    /// Asks the server to shut down (as SIGTERM would) and waits for it.
    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }
}

impl Drop for TestServer {
    /// A test that panics before [`TestServer::stop`] still ends its server.
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.shutdown.cancel();
        }
    }
}

/// Direct access to a server's database, to set up users and rooms the
/// way `whisper-manage` would.
pub struct TestDatabase {
    /// The users table, for changes an operator would make.
    pub users: UserStore,
    rooms: RoomCatalog,
    messages: MessageStore,
    /// The connection itself, for what no store offers (sessions' rows).
    db: sea_orm::DatabaseConnection,
}

impl TestDatabase {
    /// Connects to a migrated database.
    pub async fn connect(url: &str) -> TestDatabase {
        let db = sea_orm::Database::connect(url)
            .await
            .expect("test database connection");
        TestDatabase {
            users: UserStore::new(db.clone()),
            rooms: RoomCatalog::new(db.clone()),
            messages: MessageStore::new(db.clone()),
            db,
        }
    }

    /// Changes `username`'s password as `whisper-manage changepassword`
    /// does: the password and every session ended (both by
    /// `UserStore::set_password`), and the change recorded for the running
    /// servers.
    pub async fn change_password(&self, username: &str, password: &str) {
        let user = self
            .users
            .set_password(username, password)
            .await
            .expect("password changed");
        self.record(AccessChange::User(user.id.0)).await;
    }

    /// Deactivates or reactivates `username` as `whisper-manage deactivate`
    /// and `activate` do: the flag (and, deactivating, every session
    /// ended), and the change recorded for the running servers.
    pub async fn set_active(&self, username: &str, is_active: bool) {
        let user = self
            .users
            .set_active(username, is_active)
            .await
            .expect("active changed");
        self.record(AccessChange::User(user.id.0)).await;
    }

    /// Records `change` for the running servers, as `whisper-manage` does
    /// after changing access: every node reads it within a second.
    async fn record(&self, change: AccessChange) {
        ChangeFeed::new(self.db.clone())
            .record(&change.to_string())
            .await
            .expect("change recorded");
    }

    /// Makes every session of `username` expired, as two weeks passing
    /// would.
    pub async fn expire_sessions_of(&self, username: &str) {
        let id = self.user_id(username).await;
        self.db
            .execute_unprepared(&format!(
                "UPDATE sessions SET expires_at = 0 WHERE user_id = {id}"
            ))
            .await
            .expect("sessions expired");
    }

    /// The moderation record, oldest first, each entry as `actor action
    /// subject detail` (without the trailing space of an empty detail).
    pub async fn moderation_record(&self) -> Vec<String> {
        let entries = ModerationRecord::new(self.db.clone())
            .latest(1000)
            .await
            .expect("the record");
        entries
            .iter()
            .rev()
            .map(|entry| {
                format!(
                    "{} {} {} {}",
                    entry.actor, entry.action, entry.subject, entry.detail
                )
                .trim_end()
                .to_owned()
            })
            .collect()
    }

    /// How many rows of the sessions table belong to `username`, expired
    /// or not.
    pub async fn session_rows_of(&self, username: &str) -> i64 {
        let id = self.user_id(username).await;
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                format!("SELECT COUNT(*) FROM sessions WHERE user_id = {id}"),
            ))
            .await
            .expect("sessions counted")
            .expect("a count");
        row.try_get_by_index::<i64>(0).expect("a number")
    }

    async fn user_id(&self, username: &str) -> i64 {
        self.users
            .find_by_username(username)
            .await
            .expect("user lookup")
            .unwrap_or_else(|| panic!("no user {username}"))
            .id
            .0
    }

    /// Creates an account.
    pub async fn create_user(&self, username: &str, password: &str, is_staff: bool) {
        let mut new = NewUser::new(username, password);
        new.is_staff = is_staff;
        self.users.create(new).await.expect("user created");
    }

    /// Creates a superuser, as `whisper-manage createsuperuser` does.
    pub async fn create_superuser(&self, username: &str, password: &str) {
        let mut new = NewUser::new(username, password);
        new.is_superuser = true;
        self.users.create(new).await.expect("superuser created");
    }

    /// Creates a room and returns its id.
    pub async fn create_room(&self, title: &str, staff_only: bool) -> i64 {
        self.rooms
            .create(title, staff_only)
            .await
            .expect("room created")
            .id
            .0
    }

    /// The id of "General", the room a fresh database is given.
    pub async fn general_room(&self) -> i64 {
        let rooms = self.rooms.list().await.expect("rooms listed");
        rooms
            .iter()
            .find(|room| room.title == "General")
            .unwrap_or_else(|| panic!("no General room in {rooms:?}"))
            .id
            .0
    }

    /// Deletes a room's stored messages and gives its log a new epoch, as
    /// `whisper-manage clearhistory` does.
    pub async fn clear_history(&self, room: i64) {
        self.messages
            .clear(whisper_protocol::RoomId(room))
            .await
            .expect("history cleared");
    }

    /// Deletes a room, as an operator would.
    pub async fn delete_room(&self, id: i64) {
        self.rooms
            .delete(whisper_protocol::RoomId(id))
            .await
            .expect("room deleted");
    }
}

/// A server as a browser sees it: an address to log in at and open
/// WebSockets to. Works the same for an in-process server and a process.
#[derive(Debug, Clone, Copy)]
pub struct Site {
    /// Where it listens.
    pub addr: SocketAddr,
}

impl Site {
    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The Origin a browser on this server's pages sends.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Logs in through the form as a browser would; `None` when the server
    /// set no session cookie.
    pub async fn login(&self, username: &str, password: &str) -> Option<Session> {
        let client = http_client();
        let csrf = csrf_token(&client, &self.url("/accounts/login/")).await;
        let response = self
            .post_form(
                "/accounts/login/",
                &csrf,
                &[
                    ("username", username),
                    ("password", password),
                    ("next", "/"),
                ],
            )
            .await;
        Session::from_response(&response)
    }

    /// A JSON request to the API as the admin page's script sends it: the
    /// session and CSRF cookies, and in `X-CSRFToken` the token when `csrf`
    /// is `Some("")`, the given text for any other `Some`, nothing for
    /// `None`. Returns the status and the body as JSON (`null` when it is
    /// not JSON).
    pub async fn api_call(
        &self,
        session: &Session,
        csrf: Option<&str>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (reqwest::StatusCode, Value) {
        let client = http_client();
        let token = csrf_token(&client, &self.url("/accounts/login/")).await;
        let mut request = client
            .request(method, self.url(path))
            .header("cookie", format!("{}; csrftoken={token}", session.cookie()));
        if let Some(csrf) = csrf {
            let header = if csrf.is_empty() {
                token.as_str()
            } else {
                csrf
            };
            request = request.header("x-csrftoken", header);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// [`api_call`](Self::api_call) with the right CSRF token, as the admin
    /// page sends it.
    pub async fn api(
        &self,
        session: &Session,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (reqwest::StatusCode, Value) {
        self.api_call(session, Some(""), method, path, body).await
    }

    /// Opens the chat WebSocket with this session and the server's own Origin.
    pub async fn connect(&self, session: &Session) -> WsClient {
        self.try_connect(Some(&session.cookie()), Some(&self.origin()))
            .await
            .expect("WebSocket opens")
    }

    /// Opens the chat WebSocket speaking protocol v2 (offering the
    /// `whisper.v2` subprotocol); panics unless the server accepts it.
    pub async fn connect_v2(&self, session: &Session) -> WsClient {
        let (client, protocol) = self
            .handshake(
                Some(&session.cookie()),
                Some(&self.origin()),
                Some(whisper_chat::V2_SUBPROTOCOL),
            )
            .await
            .expect("WebSocket opens");
        assert_eq!(protocol.as_deref(), Some(whisper_chat::V2_SUBPROTOCOL));
        client
    }

    /// Attempts the WebSocket handshake with the given Cookie and Origin
    /// headers; the error carries the refusal (for example HTTP 403).
    pub async fn try_connect(
        &self,
        cookie: Option<&str>,
        origin: Option<&str>,
    ) -> Result<WsClient, tungstenite::Error> {
        let (client, _) = self.handshake(cookie, origin, None).await?;
        Ok(client)
    }

    /// The WebSocket handshake, offering `subprotocol` if given; returns
    /// the client and the subprotocol the server answered with.
    pub async fn handshake(
        &self,
        cookie: Option<&str>,
        origin: Option<&str>,
        subprotocol: Option<&str>,
    ) -> Result<(WsClient, Option<String>), tungstenite::Error> {
        let headers = [
            ("cookie", cookie),
            ("origin", origin),
            ("sec-websocket-protocol", subprotocol),
        ];
        let present: Vec<(&str, &str)> = headers
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?)))
            .collect();
        self.handshake_with_headers(&present).await
    }

    /// The WebSocket handshake with these extra headers (cookie, origin,
    /// what a proxy would add); returns the client and the subprotocol the
    /// server answered with.
    pub async fn handshake_with_headers(
        &self,
        extra: &[(&str, &str)],
    ) -> Result<(WsClient, Option<String>), tungstenite::Error> {
        let request = self.chat_request(extra);
        let (ws, response) = tokio_tungstenite::connect_async(request).await?;
        let answered = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Ok((WsClient { ws }, answered))
    }

    /// The chat WebSocket's handshake request with these extra headers, for
    /// a test that opens the socket over a transport of its own.
    pub fn chat_request(&self, extra: &[(&str, &str)]) -> tungstenite::handshake::client::Request {
        let mut request = format!("ws://{}/chat/stream/", self.addr)
            .into_client_request()
            .expect("request");
        let headers = request.headers_mut();
        for &(name, value) in extra {
            headers.insert(
                tungstenite::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            );
        }
        request
    }

    /// Polls `/healthz` until it answers `status`, for at most fifteen
    /// seconds; panics with the last answer otherwise.
    pub async fn wait_for_health(&self, status: u16) {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (got, body) = self.get("/healthz").await;
            if got == status {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "healthz stayed {got} {body}, expected {status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET path`: the status and the body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = http_client().get(self.url(path)).send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// POSTs a form as a browser on this site does: the CSRF token in the
    /// `csrftoken` cookie and in the `csrfmiddlewaretoken` field.
    pub async fn post_form(
        &self,
        path: &str,
        csrf: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Response {
        self.try_post_form(&http_client(), path, csrf, fields)
            .await
            .expect("POST")
    }

    /// Like [`Site::post_form`], through `client` (for example one from
    /// [`http_client_from`]), giving back a failure to get an answer
    /// instead of panicking, for tests that count them.
    pub async fn try_post_form(
        &self,
        client: &reqwest::Client,
        path: &str,
        csrf: &str,
        fields: &[(&str, &str)],
    ) -> reqwest::Result<reqwest::Response> {
        let mut form = fields.to_vec();
        form.push(("csrfmiddlewaretoken", csrf));
        client
            .post(self.url(path))
            .header("cookie", format!("csrftoken={csrf}"))
            .form(&form)
            .send()
            .await
    }

    /// `GET /api/me` as this session: who the server thinks it is.
    pub async fn me(&self, session: &Session) -> serde_json::Value {
        let response = self.get_as(session, "/api/me").await;
        response.json().await.expect("/api/me answers JSON")
    }

    /// `GET path` as a logged-in browser: the session cookie is sent.
    pub async fn get_as(&self, session: &Session, path: &str) -> reqwest::Response {
        http_client()
            .get(self.url(path))
            .header("cookie", session.cookie())
            .send()
            .await
            .expect("GET")
    }
}

/// A `whisper-server` binary running as a child process, as in production.
/// Killed when dropped.
pub struct ServerProcess {
    site: Site,
    child: std::process::Child,
}

impl std::ops::Deref for ServerProcess {
    type Target = Site;

    fn deref(&self) -> &Site {
        &self.site
    }
}

impl ServerProcess {
    /// Starts `binary` on a free loopback port with extra `args`, and waits
    /// for the line announcing its URL. Its log (warnings) goes to the
    /// test's stderr.
    pub fn start(binary: &str, args: &[&str]) -> ServerProcess {
        ServerProcess::spawn(binary, args, "warn", std::process::Stdio::inherit())
    }

    /// Like [`ServerProcess::start`], logging everything (`RUST_LOG=trace`)
    /// into `log`.
    pub fn start_logging_to(binary: &str, args: &[&str], log: std::fs::File) -> ServerProcess {
        ServerProcess::spawn(binary, args, "trace", log.into())
    }

    fn spawn(binary: &str, args: &[&str], filter: &str, log: std::process::Stdio) -> ServerProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(binary)
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", filter)
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("whisper-server starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the URL line");
        let addr = line
            .trim()
            .strip_prefix("Whisper is listening on http://")
            .and_then(|rest| rest.strip_suffix('/'))
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        ServerProcess {
            site: Site { addr },
            child,
        }
    }
}

/// A process's memory as the kernel counts it, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResidentMemory {
    /// Resident now (`VmRSS`).
    pub now: u64,
    /// The most it has ever been resident (`VmHWM`).
    pub peak: u64,
}

impl ServerProcess {
    /// The process's resident memory, read from `/proc` (Linux only).
    pub fn memory(&self) -> ResidentMemory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/PID/status of the server");
        let kib = |field: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.trim().strip_suffix("kB"))
                .and_then(|number| number.trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {field} in {status}"))
        };
        ResidentMemory {
            now: kib("VmRSS:") * 1024,
            peak: kib("VmHWM:") * 1024,
        }
    }

    /// Kills the process with SIGKILL, as a crash or the OOM killer would,
    /// and reaps it. Its address is dead from now on; dropping it again
    /// does nothing more.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (at most 15 s) for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "SIGTERM sent");
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTP client that does not follow redirects, so tests see them.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(RECV_TIMEOUT)
        .build()
        .expect("HTTP client")
}

/// An HTTP client like [`http_client`] whose connections leave from
/// `source`: on Linux every 127.0.0.0/8 address is loopback, so one test
/// can play many client addresses. Waits up to a minute for an answer.
pub fn http_client_from(source: std::net::IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(source)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client")
}

/// Fetches a form page and returns the CSRF token its cookie carries.
pub async fn csrf_token(client: &reqwest::Client, url: &str) -> String {
    let response = client.get(url).send().await.expect("form page");
    set_cookie_value(&response, "csrftoken").expect("form page sets csrftoken")
}

/// The value a response's Set-Cookie gives to `name`.
pub fn set_cookie_value(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .cookies()
        .find(|cookie| cookie.name() == name && !cookie.value().is_empty())
        .map(|cookie| cookie.value().to_owned())
}

/// A logged-in browser's session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The `sessionid` cookie's value.
    pub sessionid: String,
}

impl Session {
    /// The session a response (a login, a signup) set, if any.
    pub fn from_response(response: &reqwest::Response) -> Option<Session> {
        let sessionid = set_cookie_value(response, "sessionid")?;
        Some(Session { sessionid })
    }

    /// The Cookie header a browser would send.
    pub fn cookie(&self) -> String {
        format!("sessionid={}", self.sessionid)
    }
}

/// A LEAVE event as the server encodes it.
fn leave_event(room: i64, username: &str) -> String {
    format!(r#"{{"msg_type":5,"room":{room},"username":"{username}"}}"#)
}

/// The value of the sample `name` in a `/metrics` answer (a line
/// `name value`); panics when there is none.
pub fn metric_sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

/// One chat WebSocket.
pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Sends a JSON command.
    pub async fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("frame sent");
    }

    /// Sends any frame.
    pub async fn send_message(&mut self, message: Message) -> Result<(), tungstenite::Error> {
        self.ws.send(message).await
    }

    /// The next text frame, exactly as sent. Panics on a close, an error or
    /// a timeout.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Some(Message::Text(text)) => text.to_string(),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    /// The next frame other than ping/pong, or `None` when the connection
    /// ended (closed or reset). Panics after [`RECV_TIMEOUT`].
    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            let next = tokio::time::timeout(RECV_TIMEOUT, self.ws.next())
                .await
                .expect("a frame within the timeout");
            match next {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(message)) => return Some(message),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// The next text frame, parsed.
    pub async fn recv_json(&mut self) -> Value {
        serde_json::from_str(&self.recv_text().await).expect("JSON frame")
    }

    /// Joins `room` and waits for the join reply, passing over ENTER
    /// notices of others who join meanwhile; panics on anything else.
    pub async fn join(&mut self, room: i64) -> Value {
        self.send_json(serde_json::json!({"command": "join", "room": room}))
            .await;
        loop {
            let frame = self.recv_json().await;
            if frame.get("join").is_some() {
                return frame;
            }
            assert_eq!(frame["msg_type"], 4, "expected the join reply, got {frame}");
        }
    }

    /// Sends a v2 command and returns the next frame that is not an event
    /// (its reply), passing over events that arrive meanwhile.
    pub async fn request(&mut self, command: Value) -> Value {
        self.send_json(command).await;
        loop {
            let frame = self.recv_json().await;
            if frame.get("event").is_none() {
                return frame;
            }
        }
    }

    /// The next v2 event, passing over nothing: panics on a reply.
    pub async fn recv_event(&mut self) -> Value {
        let frame = self.recv_json().await;
        assert!(
            frame.get("event").is_some(),
            "expected an event, got {frame}"
        );
        frame
    }

    /// Asks for `room`'s users and returns the reply.
    pub async fn room_users(&mut self, room: i64) -> Value {
        self.send_json(serde_json::json!({"command": "room_users", "room": room}))
            .await;
        self.recv_json().await
    }

    /// Asserts that the next frame is `username`'s LEAVE event in `room`,
    /// byte for byte.
    pub async fn expect_leave(&mut self, room: i64, username: &str) {
        assert_eq!(self.recv_text().await, leave_event(room, username));
    }

    /// Asserts that the next two frames are the leave reply and the
    /// leaver's own LEAVE event, in either order (the reply is written
    /// directly, the event comes through the channel layer).
    pub async fn expect_own_leave(&mut self, room: i64, username: &str) {
        let mut seen = vec![self.recv_text().await, self.recv_text().await];
        seen.sort();
        let mut expected = vec![
            format!(r#"{{"leave":"{room}"}}"#),
            leave_event(room, username),
        ];
        expected.sort();
        assert_eq!(
            seen, expected,
            "the leaver gets the reply and its own LEAVE"
        );
    }

    /// Asserts that nothing arrives for `wait` but pings and pongs (the
    /// node's ping wheel may ping a socket at any moment of its first
    /// interval), and that the connection stays open.
    pub async fn expect_silence(&mut self, wait: Duration) {
        assert!(
            self.stay_idle(wait).await,
            "expected silence, but the connection ended"
        );
    }

    /// Reads (and so answers pings) for `time`, expecting no frame but
    /// pings and pongs; `false` when the connection ended meanwhile.
    pub async fn stay_idle(&mut self, time: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + time;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(Some(Ok(other))) => panic!("expected no frame, got {other:?}"),
                Ok(Some(Err(_)) | None) => return false,
            }
        }
    }

    /// Reads until the connection closes and returns the close frame, if any.
    pub async fn close_frame(&mut self) -> Option<CloseFrame> {
        loop {
            match self.recv().await {
                Some(Message::Close(frame)) => return frame,
                Some(_) => continue,
                None => return None,
            }
        }
    }

    /// Closes politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Drops the TCP connection without a close frame, as a crashed
    /// browser or a lost network would.
    pub fn vanish(self) {
        drop(self.ws);
    }

    /// The WebSocket itself, for a test that reads and writes at once
    /// (split into its two halves).
    pub fn into_websocket(self) -> WebSocketStream<MaybeTlsStream<TcpStream>> {
        self.ws
    }

    /// The TCP connection under the WebSocket, for a test that reads what
    /// the server writes without decoding it.
    pub fn into_tcp(self) -> TcpStream {
        match self.ws.into_inner() {
            MaybeTlsStream::Plain(tcp) => tcp,
            _ => panic!("test sockets are plain TCP"),
        }
    }
}
