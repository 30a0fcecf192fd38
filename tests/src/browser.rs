//! Real-browser test support: headless Chromium driven over WebDriver
//! (fantoccini), against a real server.
//!
//! A test starts a [`BrowserDriver`] (its own chromedriver process) and opens
//! one [`Browser`] per user: each is a separate Chromium with a fresh profile,
//! so two browsers are two people with separate cookies. A [`Browser`] speaks
//! the chat page's DOM contract (room buttons `[data-room-id]`, panes
//! `[data-room-pane]`, `li.message` with `.msg-user`, `.msg-text`, the
//! message's `data-seq` once stored and a `.msg-status` until then, notices
//! `li.notice-enter`, `li.notice-leave` and `li.notice-reload`, a pane's
//! `.typing` line and `input.send-input`, `#status`), so tests read as what a
//! user does and sees.
//!
//! Every wait is bounded ([`WAIT_TIMEOUT`] unless said otherwise). A wait
//! that runs out saves a screenshot (`<test>-<user>-failure.png`) and fails
//! the test with the page's URL and status line. Screenshots go to
//! [`screenshot_dir`], inside the build's target directory.
//!
//! The reconnect scenario restarts its server with
//! [`crate::TestServer::restart`].

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fantoccini::error::CmdError;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use whisper_testkit::ChromeDriver;
use whisper_testkit::chromedriver::chromium_binary;

use crate::{Site, TestServer};

/// Longest wait for something to appear on a page.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a wait looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Where screenshots go: `<target dir>/browser-screenshots`, the target dir
/// being `CARGO_TARGET_DIR` when set, else the workspace's `target`.
pub fn screenshot_dir() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let workspace = manifest.parent().map_or(manifest.clone(), PathBuf::from);
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if PathBuf::from(&dir).is_absolute() => PathBuf::from(dir),
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    target.join("browser-screenshots")
}

/// One test's chromedriver; browsers opened from it are closed with it.
pub struct BrowserDriver {
    test: String,
    chromedriver: Mutex<ChromeDriver>,
}

impl BrowserDriver {
    /// Starts chromedriver for the test named `test` (used in screenshot
    /// names). Fails, naming `scripts/test`, when chromedriver or Chromium
    /// is missing.
    pub fn start(test: &str) -> BrowserDriver {
        BrowserDriver {
            test: test.to_owned(),
            chromedriver: Mutex::new(ChromeDriver::start()),
        }
    }

    /// Creates an account with `password` and opens a browser of its own,
    /// logged in through the login form: one person at their screen.
    pub async fn open_as(
        &self,
        server: &TestServer,
        username: &str,
        password: &str,
        is_staff: bool,
    ) -> Browser {
        server.create_user(username, password, is_staff).await;
        let browser = self.open(username).await;
        browser.log_in(server, username, password).await;
        browser
    }

    /// Opens a new headless Chromium with an empty profile, for `user`.
    pub async fn open(&self, user: &str) -> Browser {
        let (url, profile) = {
            let driver = self.chromedriver.lock().expect("chromedriver lock");
            (driver.url(), driver.new_profile_dir())
        };
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let capabilities = json!({
            "browserName": "chrome",
            // An alert stays open for the test to find, instead of being
            // dismissed by the next command.
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": { "binary": chromium_binary(), "args": args },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("capabilities are an object")
        };
        // WebDriver on loopback speaks plain HTTP: no TLS stack needed.
        let client = tokio::time::timeout(
            Duration::from_secs(30),
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&url),
        )
        .await
        .expect("Chromium starts within 30 s")
        .unwrap_or_else(|error| panic!("Chromium session via {url}: {error}"));
        Browser {
            client,
            label: format!("{}-{user}", self.test),
        }
    }
}

/// A chat message as a page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownMessage {
    /// `.msg-user`'s text.
    pub user: String,
    /// `.msg-text`'s text content, exactly.
    pub text: String,
    /// Whether the line has class `own`.
    pub own: bool,
    /// Its seq (`data-seq`), once the server has stored it.
    pub seq: Option<u64>,
    /// `.msg-status`'s text (`sending…`, `failed — retry`) for an own
    /// message the server has not acknowledged; `None` for a stored one.
    pub status: Option<String>,
}

/// One browser window, logged in as one user.
pub struct Browser {
    client: Client,
    label: String,
}

impl Browser {
    /// The underlying WebDriver client, for anything not covered here.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|error| panic!("{}: open {url}: {error}", self.label));
    }

    /// Reloads the page.
    pub async fn reload(&self) {
        self.client
            .refresh()
            .await
            .unwrap_or_else(|error| panic!("{}: reload: {error}", self.label));
    }

    /// Opens the site, is sent to the login form, logs in through it, and
    /// waits for the chat page's connection to open.
    pub async fn log_in(&self, site: &Site, username: &str, password: &str) {
        self.goto(&site.url("/")).await;
        self.wait_for_js(
            "the login form",
            "return location.pathname === '/accounts/login/' \
                 && !!document.querySelector('#login-form');",
            vec![],
        )
        .await;
        self.type_into("#login-form input[name=username]", username)
            .await;
        self.type_into("#login-form input[name=password]", password)
            .await;
        self.click("#login-form button[type=submit]").await;
        self.wait_for_js(
            &format!("the chat page after logging in as {username}"),
            "return location.pathname === '/' && !!document.querySelector('#room-list');",
            vec![],
        )
        .await;
        self.wait_connected().await;
    }

    /// Waits until `#status` says the WebSocket is open.
    pub async fn wait_connected(&self) {
        self.wait_connected_within(WAIT_TIMEOUT).await;
    }

    /// Waits up to `timeout` until `#status` says the WebSocket is open.
    pub async fn wait_connected_within(&self, timeout: Duration) {
        self.wait_for_js_within(
            timeout,
            "#status saying connected",
            "const s = document.querySelector('#status'); \
             return !!s && (s.dataset.state === 'open' \
                 || /^connected/i.test(s.textContent.trim()));",
            vec![],
        )
        .await;
    }

    /// Clicks the element matching `css`, waiting for it first.
    pub async fn click(&self, css: &str) {
        self.wait_for_element(css).await;
        let element = self.find(css).await;
        element
            .click()
            .await
            .unwrap_or_else(|error| panic!("{}: click {css}: {error}", self.label));
    }

    /// Types `text` into the element matching `css`, waiting for it first.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.wait_for_element(css).await;
        let element = self.find(css).await;
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|error| panic!("{}: type into {css}: {error}", self.label));
    }

    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("{}: find {css}: {error}", self.label))
    }

    /// Waits until an element matches `css`.
    pub async fn wait_for_element(&self, css: &str) {
        self.wait_for_js(
            &format!("an element matching {css}"),
            "return !!document.querySelector(arguments[0]);",
            vec![json!(css)],
        )
        .await;
    }

    /// How many elements match `css` right now.
    pub async fn count(&self, css: &str) -> usize {
        let count = self
            .execute(
                "return document.querySelectorAll(arguments[0]).length;",
                vec![json!(css)],
            )
            .await;
        count
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or_default()
    }

    /// The text content of the first element matching `css`, if any.
    pub async fn text_of(&self, css: &str) -> Option<String> {
        self.execute(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            vec![json!(css)],
        )
        .await
        .as_str()
        .map(String::from)
    }

    /// Whether an element matches `css` and is displayed.
    pub async fn is_visible(&self, css: &str) -> bool {
        self.execute(
            "const e = document.querySelector(arguments[0]); \
             return !!e && !e.hidden && e.getClientRects().length > 0 \
                 && getComputedStyle(e).visibility !== 'hidden';",
            vec![json!(css)],
        )
        .await
            == json!(true)
    }

    /// The `#status` line's text.
    pub async fn status(&self) -> String {
        self.text_of("#status").await.unwrap_or_default()
    }

    /// The room button for `room` in `#room-list`.
    pub fn room_button(room: i64) -> String {
        format!("#room-list button[data-room-id=\"{room}\"]")
    }

    /// The pane of a joined room.
    pub fn pane(room: i64) -> String {
        format!("[data-room-pane=\"{room}\"]")
    }

    /// Clicks a room in the room list (which asks to join it, or shows its
    /// pane when joined).
    pub async fn click_room(&self, room: i64) {
        self.click(&Browser::room_button(room)).await;
    }

    /// Joins `room` by clicking it, and waits for its pane and for the
    /// button to show it joined.
    pub async fn join(&self, room: i64) {
        self.click_room(room).await;
        self.wait_joined(room, WAIT_TIMEOUT).await;
    }

    /// Waits until `room` has a pane and its button is marked `.joined`.
    pub async fn wait_joined(&self, room: i64, timeout: Duration) {
        self.wait_for_js_within(
            timeout,
            &format!("room {room} joined (a pane and a .joined button)"),
            "const [pane, button] = arguments; \
             return !!document.querySelector(pane) \
                 && !!document.querySelector(button + '.joined');",
            vec![
                json!(Browser::pane(room)),
                json!(Browser::room_button(room)),
            ],
        )
        .await;
    }

    /// The message box of `room`'s pane.
    pub fn input(room: i64) -> String {
        format!("{} .send-form input.send-input", Browser::pane(room))
    }

    /// Types `text` into `room`'s message box and presses Enter.
    pub async fn send(&self, room: i64, text: &str) {
        // U+E007 is WebDriver's Enter key.
        self.type_into(&Browser::input(room), &format!("{text}\u{E007}"))
            .await;
    }

    /// What `room`'s message box holds.
    pub async fn input_value(&self, room: i64) -> String {
        let value = self
            .execute(
                "return document.querySelector(arguments[0])?.value ?? null;",
                vec![json!(Browser::input(room))],
            )
            .await;
        value
            .as_str()
            .map(String::from)
            .unwrap_or_else(|| panic!("{}: no message box in room {room}", self.label))
    }

    /// The text of `room`'s typing line ("bob is typing…"), empty when
    /// nobody is typing.
    pub async fn typing_notice(&self, room: i64) -> String {
        self.text_of(&format!("{} .typing", Browser::pane(room)))
            .await
            .unwrap_or_default()
    }

    /// Scrolls `room`'s messages to the very top, as a user looking for
    /// older messages does.
    pub async fn scroll_messages_to_top(&self, room: i64) {
        self.execute(
            "document.querySelector(arguments[0] + ' .messages').scrollTop = 0; return null;",
            vec![json!(Browser::pane(room))],
        )
        .await;
    }

    /// Every message in `room`'s pane, in order.
    pub async fn messages(&self, room: i64) -> Vec<ShownMessage> {
        let lines = self
            .execute(
                "return [...document.querySelectorAll(arguments[0] + ' .messages li.message')] \
                     .map((li) => ({ \
                         user: li.querySelector('.msg-user')?.textContent ?? null, \
                         text: li.querySelector('.msg-text')?.textContent ?? null, \
                         own: li.classList.contains('own'), \
                         seq: li.dataset.seq ? Number(li.dataset.seq) : null, \
                         status: li.querySelector('.msg-status')?.textContent ?? null }));",
                vec![json!(Browser::pane(room))],
            )
            .await;
        lines
            .as_array()
            .map(|lines| {
                lines
                    .iter()
                    .map(|line| ShownMessage {
                        user: line["user"].as_str().unwrap_or("<no .msg-user>").into(),
                        text: line["text"].as_str().unwrap_or("<no .msg-text>").into(),
                        own: line["own"] == json!(true),
                        seq: line["seq"].as_u64(),
                        status: line["status"].as_str().map(String::from),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until `room`'s pane shows a message from `user` whose text is
    /// exactly `text`, and returns it.
    pub async fn wait_for_message(&self, room: i64, user: &str, text: &str) -> ShownMessage {
        self.wait_for_messages(
            room,
            &format!("a message {text:?} from {user}"),
            |messages| messages.iter().any(|m| m.user == user && m.text == text),
        )
        .await
        .into_iter()
        .find(|m| m.user == user && m.text == text)
        .expect("the message waited for")
    }

    /// Waits until `room`'s messages satisfy `done`, and returns them;
    /// fails naming `what` and showing the pane's messages.
    pub async fn wait_for_messages(
        &self,
        room: i64,
        what: &str,
        done: impl Fn(&[ShownMessage]) -> bool,
    ) -> Vec<ShownMessage> {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            let messages = self.messages(room).await;
            if done(&messages) {
                return messages;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}",
                    self.failure(&format!(
                        "{what} in room {room}; the pane shows {messages:?}"
                    ))
                    .await
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Clicks the text of the message in `room` that reads exactly `text`
    /// (which must not contain a single quote).
    pub async fn click_message_text(&self, room: i64, text: &str) {
        assert!(!text.contains('\''), "XPath literal cannot hold {text:?}");
        let xpath = format!(
            "//*[@data-room-pane='{room}']//li[contains(concat(' ', @class, ' '), ' message ')]\
             //*[contains(concat(' ', @class, ' '), ' msg-text ')][string(.)='{text}']"
        );
        let element = self
            .client
            .find(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|error| panic!("{}: find message {text:?}: {error}", self.label));
        element
            .click()
            .await
            .unwrap_or_else(|error| panic!("{}: click message {text:?}: {error}", self.label));
    }

    /// Waits until `room`'s pane shows a notice `li.notice-<kind>` whose
    /// text contains `text`.
    pub async fn wait_for_notice(&self, room: i64, kind: &str, text: &str) {
        self.wait_for_js(
            &format!("a notice-{kind} saying {text:?} in room {room}"),
            "const [pane, kind, text] = arguments; \
             return [...document.querySelectorAll(pane + ' .messages li.notice-' + kind)] \
                 .some((li) => li.textContent.includes(text));",
            vec![json!(Browser::pane(room)), json!(kind), json!(text)],
        )
        .await;
    }

    /// Starts recording the page's uncaught script errors and unhandled
    /// promise rejections, until the page is left or reloaded; see
    /// [`Browser::assert_no_script_errors`].
    pub async fn record_script_errors(&self) {
        self.execute(RECORD_SCRIPT_ERRORS, vec![]).await;
    }

    /// Fails the test if the page had a script error since
    /// [`Browser::record_script_errors`].
    pub async fn assert_no_script_errors(&self) {
        let errors = self
            .execute("return window.scriptErrors ?? null;", vec![])
            .await;
        assert!(
            errors.is_array(),
            "{}: script errors were not being recorded",
            self.label
        );
        assert_eq!(errors, json!([]), "{}: script errors", self.label);
    }

    /// Fails the test if a JavaScript dialog (alert, confirm, prompt) is open.
    pub async fn assert_no_dialog(&self) {
        match self.client.get_alert_text().await {
            Err(error) if error.is_no_such_alert() => {}
            Ok(text) => panic!(
                "{}",
                self.failure(&format!("no dialog, but one is open saying {text:?}"))
                    .await
            ),
            Err(error) => panic!("{}: asking for a dialog: {error}", self.label),
        }
    }

    /// Runs `script` (a function body; arguments are `arguments[i]`; a
    /// returned promise is awaited) and returns its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|error| panic!("{}: script failed: {error}\n{script}", self.label))
    }

    /// Polls `script` until it returns something other than null, false or
    /// an empty string, for at most [`WAIT_TIMEOUT`].
    pub async fn wait_for_js(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        self.wait_for_js_within(WAIT_TIMEOUT, what, script, args)
            .await
    }

    /// Polls `script` until it returns something other than null, false or
    /// an empty string, for at most `timeout`; then fails, naming `what`.
    pub async fn wait_for_js_within(
        &self,
        timeout: Duration,
        what: &str,
        script: &str,
        args: Vec<Value>,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last_error = None;
        loop {
            match self.client.execute(script, args.clone()).await {
                Ok(Value::Null | Value::Bool(false)) => {}
                Ok(Value::String(text)) if text.is_empty() => {}
                Ok(value) => return value,
                // Between pages (a form submitted, a reload), scripts may
                // fail briefly; anything lasting shows up as a timeout.
                Err(error) if transient(&error) => last_error = Some(error),
                Err(error) => panic!("{}: waiting for {what}: {error}", self.label),
            }
            if Instant::now() >= deadline {
                let mut expected = format!("{what} within {timeout:?}");
                if let Some(error) = last_error {
                    expected.push_str(&format!(" (last script error: {error})"));
                }
                panic!("{}", self.failure(&expected).await);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Saves a screenshot as `<test>-<user><suffix>.png` in
    /// [`screenshot_dir`] and returns its path.
    pub async fn screenshot(&self, suffix: &str) -> PathBuf {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        let path = dir.join(format!("{}{suffix}.png", self.label));
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|error| panic!("{}: screenshot: {error}", self.label));
        std::fs::write(&path, png).expect("screenshot written");
        path
    }

    /// Saves a failure screenshot (`<test>-<user>-failure.png`) and returns
    /// a report for the panic: what was expected and where the page stands.
    pub async fn failure(&self, expected: &str) -> String {
        let url = match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(error) => format!("<unknown: {error}>"),
        };
        let status = match self.client.execute(STATUS_SCRIPT, vec![]).await {
            Ok(value) => value.to_string(),
            Err(error) => format!("<unknown: {error}>"),
        };
        let shot = match self.client.screenshot().await {
            Ok(png) => {
                let dir = screenshot_dir();
                let path = dir.join(format!("{}-failure.png", self.label));
                match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, png)) {
                    Ok(()) => path.display().to_string(),
                    Err(error) => format!("<not saved: {error}>"),
                }
            }
            Err(error) => format!("<no screenshot: {error}>"),
        };
        format!(
            "{}: expected {expected}\n  page: {url}\n  #status: {status}\n  screenshot: {shot}",
            self.label
        )
    }

    /// Saves a final screenshot (`<test>-<user>.png`) and closes the browser.
    pub async fn close(self) -> PathBuf {
        let shot = self.screenshot("").await;
        let _ = self.client.close().await;
        shot
    }
}

const RECORD_SCRIPT_ERRORS: &str = "window.scriptErrors = []; \
    window.addEventListener('error', (e) => window.scriptErrors.push(String(e.message))); \
    window.addEventListener('unhandledrejection', \
        (e) => window.scriptErrors.push(`unhandled rejection: ${e.reason}`)); \
    return null;";

const STATUS_SCRIPT: &str = "const s = document.querySelector('#status'); \
    return s ? s.textContent : null;";

/// Errors a page in the middle of navigating can give.
fn transient(error: &CmdError) -> bool {
    error.is_stale_element_reference()
        || error.is_no_such_element()
        || error.is_javascript_error()
        || error.is_no_such_window()
}
