//! The deployment files in `deploy/`, checked against the binaries they run.
//!
//! No Docker engine runs where the tests run, so nothing here starts a
//! container. Instead, every name the files share with the code is checked:
//! each variable a whisper service sets is one its binary reads (taken from
//! the built server's `--help`, not from a list kept by hand) and has a value
//! the server accepts; nginx's upstream is the compose replicas on their
//! port; the Dockerfile copies every workspace member, builds the workspace's
//! two binaries and runs them as a user other than root; the systemd unit and
//! its environment file agree with the server too.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_yaml_ng::Value;

const SERVER: &str = env!("CARGO_BIN_EXE_whisper-server");

/// Variables the server reads (the README's configuration); `--help` must
/// list each.
const DOCUMENTED_SERVER_ENV: &[&str] = &[
    "WHISPER_BIND",
    "DATABASE_URL",
    "REDIS_URL",
    "WHISPER_ALLOWED_ORIGINS",
    "WHISPER_OPEN_SIGNUP",
    "WHISPER_SECURE_COOKIES",
    "WHISPER_MAX_MESSAGE_BYTES",
    "WHISPER_MAX_ROOMS_PER_CONNECTION",
    "WHISPER_PRESENCE_TTL_S",
    "WHISPER_TRUSTED_PROXIES",
    "WHISPER_NO_MIGRATE",
];

/// Read by the server though it is no flag: the log filter (README,
/// "Configuration").
const SERVER_ENV_BESIDES_FLAGS: &[&str] = &["RUST_LOG"];

/// The Dockerfile, compose file, nginx site and so on, by file name.
fn deploy_file(name: &str) -> PathBuf {
    repo_root().join("deploy").join(name)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

// ---------------------------------------------------------------------------
// What the binaries read

/// The variable names in clap's `[env: NAME=value]` (or `[env: NAME]`)
/// notes. Read token by token, so a note wrapped across lines still counts.
fn env_names_in_help(help: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut tokens = help.split_whitespace();
    while let Some(token) = tokens.next() {
        if token == "[env:" {
            let name: String = tokens
                .next()
                .unwrap_or_default()
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            assert!(!name.is_empty(), "an [env: ...] note without a name");
            names.insert(name);
        }
    }
    names
}

/// The variables `whisper-server --help` names.
fn server_help_env() -> BTreeSet<String> {
    let output = Command::new(SERVER)
        .arg("--help")
        .env_clear()
        .output()
        .expect("whisper-server --help runs");
    assert!(output.status.success(), "whisper-server --help failed");
    let names = env_names_in_help(&String::from_utf8_lossy(&output.stdout));
    assert!(
        names.contains("WHISPER_BIND"),
        "no [env: ...] notes found in whisper-server --help: {names:?}"
    );
    names
}

/// Every variable the server reads: its flags' and the log filter.
fn server_env() -> BTreeSet<String> {
    let mut names = server_help_env();
    names.extend(SERVER_ENV_BESIDES_FLAGS.iter().map(|&name| name.to_owned()));
    names
}

/// The variables `whisper-manage` reads. Its binary belongs to another
/// package (no `CARGO_BIN_EXE_` here, and it may not be built yet), so they
/// are taken from its clap definitions: every `env = "NAME"` in its sources.
fn manage_env() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut pending = vec![repo_root().join("bins/whisper-manage/src")];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let source = read(&path);
                for piece in source.split("env = \"").skip(1) {
                    let name = piece.split('"').next().unwrap_or_default();
                    names.insert(name.to_owned());
                }
            }
        }
    }
    assert!(
        names.contains("DATABASE_URL"),
        "whisper-manage's sources no longer read DATABASE_URL: {names:?}"
    );
    names
}

/// Binary names a package's manifest declares: its `[[bin]]` names, or the
/// package name when it has none.
fn bin_names(manifest: &str) -> Vec<String> {
    let mut section = String::new();
    let mut package_name = None;
    let mut bins = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
        } else if let Some(value) = line.strip_prefix("name") {
            let Some(value) = value.trim_start().strip_prefix('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"').to_owned();
            match section.as_str() {
                "[[bin]]" => bins.push(value),
                "[package]" => package_name = Some(value),
                _ => {}
            }
        }
    }
    if bins.is_empty() {
        bins.extend(package_name);
    }
    bins
}

/// The binaries deploy/ ships, as the workspace names them.
fn shipped_binaries() -> Vec<String> {
    let mut names = Vec::new();
    for package in ["bins/whisper-server", "bins/whisper-manage"] {
        names.extend(bin_names(&read(
            &repo_root().join(package).join("Cargo.toml"),
        )));
    }
    let server = Path::new(SERVER)
        .file_stem()
        .and_then(|stem| stem.to_str())
        .expect("binary name");
    assert!(names.iter().any(|name| name == server), "{names:?}");
    assert_eq!(names.len(), 2, "{names:?}");
    names
}

/// Runs the server with exactly `env` (plus `args`) and fails the test if
/// clap refuses it: bad input is exit code 2 with a one-line error, while any
/// later failure (the unreachable database given in `args`) is another code.
fn assert_server_accepts(what: &str, env: &BTreeMap<String, String>, args: &[&str]) {
    let mut child = Command::new(SERVER)
        .args(args)
        .env_clear()
        .envs(env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("whisper-server starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let output = child.wait_with_output().expect("stderr");
            assert_ne!(
                status.code(),
                Some(2),
                "whisper-server refused {what}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            return;
        }
        if Instant::now() > deadline {
            // Still running: the arguments were taken long ago.
            child.kill().expect("kill");
            child.wait().expect("reaped");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Arguments that keep [`assert_server_accepts`] off the network: an
/// ephemeral loopback port and a database file that cannot be opened.
const OFFLINE_ARGS: &[&str] = &[
    "--bind",
    "127.0.0.1:0",
    "--database-url",
    "sqlite:///nonexistent-whisper-deploy-test/none.db",
];

/// The port of a `host:port`, `[v6]:port` or `scheme://host:port` address
/// (`None` when it has none).
fn port_of(address: &str) -> Option<u16> {
    address
        .rsplit(':')
        .next()?
        .trim_end_matches('/')
        .parse()
        .ok()
}

fn expect_port(address: &str) -> u16 {
    port_of(address).unwrap_or_else(|| panic!("no port in {address:?}"))
}

// ---------------------------------------------------------------------------
// docker-compose.yml

/// The compose file with YAML merge keys (`<<`) applied, as Compose does.
fn compose() -> Value {
    let path = deploy_file("docker-compose.yml");
    let mut value: Value = serde_yaml_ng::from_str(&read(&path)).expect("valid YAML");
    // One pass merges one level of nested `<<`.
    for _ in 0..8 {
        if !has_merge_key(&value) {
            return value;
        }
        value.apply_merge().expect("merge keys");
    }
    panic!("merge keys nested too deep in {}", path.display());
}

fn has_merge_key(value: &Value) -> bool {
    match value {
        Value::Mapping(mapping) => {
            mapping.contains_key("<<") || mapping.values().any(has_merge_key)
        }
        Value::Sequence(items) => items.iter().any(has_merge_key),
        _ => false,
    }
}

fn services(compose: &Value) -> BTreeMap<String, &Value> {
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(name, service)| (name.as_str().expect("service name").to_owned(), service))
        .collect()
}

/// A YAML scalar as Compose hands it to a container.
fn scalar(value: &Value, what: &str) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(_) => panic!("{what}: quote booleans (Compose wants strings)"),
        other => panic!("{what}: not a scalar: {other:?}"),
    }
}

/// A service's `environment`, in either of Compose's forms.
fn environment(name: &str, service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Null => BTreeMap::new(),
        Value::Mapping(mapping) => mapping
            .iter()
            .map(|(key, value)| {
                let key = key.as_str().expect("variable name").to_owned();
                let value = scalar(value, &format!("{name}.environment.{key}"));
                (key, value)
            })
            .collect(),
        Value::Sequence(items) => items
            .iter()
            .map(|item| {
                let item = item.as_str().expect("NAME=value");
                let (key, value) = item.split_once('=').unwrap_or((item, ""));
                (key.to_owned(), value.to_owned())
            })
            .collect(),
        other => panic!("{name}.environment: {other:?}"),
    }
}

/// The program a service built from deploy/Dockerfile runs: its
/// `entrypoint`, or the image's (whisper-server). `None` for other images.
fn whisper_program(service: &Value) -> Option<String> {
    let dockerfile = service["build"]["dockerfile"].as_str()?;
    if !dockerfile.ends_with("deploy/Dockerfile") {
        return None;
    }
    let program = match &service["entrypoint"] {
        Value::Null => "whisper-server".to_owned(),
        Value::String(line) => line.split_whitespace().next()?.to_owned(),
        Value::Sequence(words) => words.first()?.as_str()?.to_owned(),
        _ => return None,
    };
    Some(program)
}

/// Compose services that run `program` from the Whisper image.
fn services_running<'a>(compose: &'a Value, program: &str) -> BTreeMap<String, &'a Value> {
    services(compose)
        .into_iter()
        .filter(|(_, service)| whisper_program(service).as_deref() == Some(program))
        .collect()
}

/// The port a compose whisper-server service listens on: its
/// `WHISPER_BIND`, or the image's.
fn compose_server_port(name: &str, service: &Value) -> u16 {
    environment(name, service)
        .get("WHISPER_BIND")
        .map(|bind| expect_port(bind))
        .unwrap_or_else(|| expect_port(&dockerfile_env()["WHISPER_BIND"]))
}

#[test]
fn server_help_lists_every_documented_variable() {
    let listed = server_help_env();
    let missing: Vec<_> = DOCUMENTED_SERVER_ENV
        .iter()
        .filter(|name| !listed.contains(**name))
        .collect();
    assert!(
        missing.is_empty(),
        "whisper-server --help does not list {missing:?} (it lists {listed:?})"
    );
}

#[test]
fn compose_replicas_set_only_variables_the_server_reads() {
    let compose = compose();
    let known = server_env();
    let replicas = services_running(&compose, "whisper-server");
    assert!(replicas.len() >= 2, "expected two replicas: {replicas:?}");
    for (name, service) in &replicas {
        let env = environment(name, service);
        let unknown: Vec<_> = env.keys().filter(|key| !known.contains(*key)).collect();
        assert!(
            unknown.is_empty(),
            "{name} sets {unknown:?}, which whisper-server does not read (it reads {known:?})"
        );
        // Replicas only make sense sharing one database and one Redis.
        let database = env.get("DATABASE_URL").map(String::as_str);
        assert!(
            database.is_some_and(|url| url.starts_with("postgres://")),
            "{name}: DATABASE_URL must be the shared PostgreSQL: {database:?}"
        );
        let redis = env.get("REDIS_URL").map(String::as_str);
        assert!(
            redis.is_some_and(|url| url.starts_with("redis://")),
            "{name}: REDIS_URL must be set, or the replicas do not share rooms: {redis:?}"
        );
    }
}

#[test]
fn compose_replica_values_are_accepted_by_the_server() {
    let compose = compose();
    for (name, service) in services_running(&compose, "whisper-server") {
        let mut env = environment(&name, service);
        if let Some(bind) = env.get("WHISPER_BIND") {
            bind.parse::<SocketAddr>()
                .unwrap_or_else(|e| panic!("{name}: WHISPER_BIND={bind}: {e}"));
        }
        // Both point at hosts that exist only inside Compose; OFFLINE_ARGS
        // replaces the database and no Redis is contacted.
        env.remove("REDIS_URL");
        assert_server_accepts(&format!("{name}'s environment"), &env, OFFLINE_ARGS);
    }
}

#[test]
fn compose_migrates_once_before_the_replicas_start() {
    let compose = compose();
    let known = manage_env();
    let migrators = services_running(&compose, "whisper-manage");
    assert_eq!(
        migrators.len(),
        1,
        "one whisper-manage service: {migrators:?}"
    );
    let (migrate, service) = migrators.into_iter().next().expect("one");
    let env = environment(&migrate, service);
    let unknown: Vec<_> = env.keys().filter(|key| !known.contains(*key)).collect();
    assert!(
        unknown.is_empty(),
        "{migrate} sets {unknown:?}, which whisper-manage does not read (it reads {known:?})"
    );
    let command: Vec<String> = match &service["command"] {
        Value::String(line) => line.split_whitespace().map(str::to_owned).collect(),
        Value::Sequence(words) => words
            .iter()
            .map(|word| word.as_str().expect("word").to_owned())
            .collect(),
        other => panic!("{migrate}.command: {other:?}"),
    };
    assert_eq!(command, vec!["migrate".to_owned()]);

    for (name, replica) in services_running(&compose, "whisper-server") {
        assert_eq!(
            replica["depends_on"][migrate.as_str()]["condition"].as_str(),
            Some("service_completed_successfully"),
            "{name} must wait for {migrate}"
        );
        assert_eq!(
            environment(&name, replica)
                .get("WHISPER_NO_MIGRATE")
                .map(String::as_str),
            Some("true"),
            "{name} must leave migrations to {migrate}"
        );
        assert_eq!(
            env.get("DATABASE_URL"),
            environment(&name, replica).get("DATABASE_URL"),
            "{migrate} must migrate the database {name} uses"
        );
    }
}

#[test]
fn compose_gives_replicas_time_to_drain() {
    let compose = compose();
    for (name, service) in services_running(&compose, "whisper-server") {
        let period = service["stop_grace_period"].as_str().unwrap_or("10s");
        let seconds: u32 = period
            .strip_suffix('s')
            .and_then(|seconds| seconds.parse().ok())
            .unwrap_or_else(|| panic!("{name}: stop_grace_period {period:?} in seconds"));
        assert!(
            seconds > 10,
            "{name}: stop_grace_period must exceed the server's 10 s drain"
        );
    }
}

#[test]
fn compose_builds_the_image_from_the_repository_root() {
    let compose = compose();
    let deploy = deploy_file("");
    let mut built = 0;
    for (name, service) in services(&compose) {
        let Some(dockerfile) = service["build"]["dockerfile"].as_str() else {
            continue;
        };
        built += 1;
        let context = service["build"]["context"].as_str().unwrap_or(".");
        let context = deploy.join(context);
        assert!(
            context.join("Cargo.lock").is_file(),
            "{name}: build context {} is not the repository root",
            context.display()
        );
        assert!(
            context.join(dockerfile).is_file(),
            "{name}: no Dockerfile at {dockerfile}"
        );
    }
    assert!(built > 0, "no service builds deploy/Dockerfile");
}

// ---------------------------------------------------------------------------
// nginx.conf

/// nginx.conf without comments.
fn nginx_conf() -> String {
    read(&deploy_file("nginx.conf"))
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The body of the block that starts with `header {`.
fn nginx_block<'a>(conf: &'a str, header: &str) -> Option<&'a str> {
    let body = conf
        .match_indices(header)
        .find_map(|(start, _)| conf[start + header.len()..].trim_start().strip_prefix('{'))?;
    let mut depth = 1;
    for (index, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&body[..index]);
                }
            }
            _ => {}
        }
    }
    None
}

/// The simple directives (`name args...;`) of a block body, nested blocks
/// included.
fn nginx_directives(body: &str) -> Vec<Vec<String>> {
    body.split([';', '{', '}'])
        .map(|statement| {
            statement
                .split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|words| !words.is_empty())
        .collect()
}

#[test]
fn nginx_upstream_is_the_compose_replicas() {
    let compose = compose();
    let conf = nginx_conf();
    let directives = nginx_directives(&conf);
    let upstreams: Vec<String> = directives
        .iter()
        .filter(|words| words[0] == "proxy_pass")
        .map(|words| {
            let target = words[1]
                .strip_prefix("http://")
                .expect("proxy_pass http://");
            target.trim_end_matches('/').to_owned()
        })
        .collect();
    assert!(!upstreams.is_empty(), "nginx.conf proxies nothing");

    let expected: BTreeSet<String> = services_running(&compose, "whisper-server")
        .into_iter()
        .map(|(name, service)| format!("{name}:{}", compose_server_port(&name, service)))
        .collect();
    for upstream in upstreams {
        let block = nginx_block(&conf, &format!("upstream {upstream}"))
            .unwrap_or_else(|| panic!("proxy_pass to {upstream}, which has no upstream block"));
        let servers: BTreeSet<String> = nginx_directives(block)
            .into_iter()
            .filter(|words| words[0] == "server")
            .map(|words| words[1].clone())
            .collect();
        assert_eq!(
            servers, expected,
            "upstream {upstream} must list the compose replicas"
        );
    }
}

#[test]
fn nginx_is_published_on_the_origin_the_replicas_allow() {
    let compose = compose();
    let services = services(&compose);
    let nginx = services
        .values()
        .find(|service| {
            service["image"]
                .as_str()
                .is_some_and(|image| image.starts_with("nginx"))
        })
        .expect("an nginx service");
    let mounts_this_file = nginx["volumes"]
        .as_sequence()
        .expect("nginx volumes")
        .iter()
        .filter_map(Value::as_str)
        .any(|volume| volume.starts_with("./nginx.conf:/etc/nginx/"));
    assert!(mounts_this_file, "nginx must mount deploy/nginx.conf");

    let port = scalar(&nginx["ports"][0], "nginx.ports[0]");
    let mut parts = port.rsplit(':');
    let container: u16 = parts.next().and_then(|p| p.parse().ok()).expect("port");
    let published: u16 = parts.next().and_then(|p| p.parse().ok()).expect("port");

    let listens: BTreeSet<u16> = nginx_directives(&nginx_conf())
        .into_iter()
        .filter(|words| words[0] == "listen")
        .map(|words| expect_port(&words[1]))
        .collect();
    assert!(
        listens.contains(&container),
        "nginx listens on {listens:?}, compose publishes {container}"
    );

    for (name, service) in services_running(&compose, "whisper-server") {
        let origins = environment(&name, service)
            .get("WHISPER_ALLOWED_ORIGINS")
            .cloned()
            .unwrap_or_default();
        assert!(
            origins
                .split(',')
                .any(|origin| port_of(origin.trim()) == Some(published)),
            "{name}: WHISPER_ALLOWED_ORIGINS={origins:?} must include nginx's :{published}"
        );
    }
}

#[test]
fn nginx_forwards_websocket_handshakes() {
    let conf = nginx_conf();
    let directives = nginx_directives(&conf);
    let has = |wanted: &[&str]| directives.iter().any(|words| words == wanted);
    assert!(has(&["proxy_http_version", "1.1"]), "HTTP/1.1 to upstream");
    assert!(
        has(&["proxy_set_header", "Upgrade", "$http_upgrade"]),
        "Upgrade header"
    );
    let connection = directives
        .iter()
        .find(|words| {
            words.len() == 3 && words[0] == "proxy_set_header" && words[1] == "Connection"
        })
        .map(|words| words[2].clone())
        .expect("Connection passed on");
    assert!(
        connection.trim_matches('"') == "upgrade"
            || conf.contains(&format!("map $http_upgrade {connection}")),
        "Connection must say upgrade on WebSocket handshakes: {connection}"
    );
    let host = directives
        .iter()
        .find(|words| words.len() == 3 && words[0] == "proxy_set_header" && words[1] == "Host")
        .map(|words| words[2].clone())
        .expect("Host passed through");
    assert!(
        host == "$host" || host == "$http_host" || conf.contains(&format!("map $http_host {host}")),
        "Host must be the browser's, not the upstream's: {host}"
    );
    let websocket = nginx_block(&conf, "location /chat/stream/").expect("WebSocket location");
    let read_timeout = nginx_directives(websocket)
        .into_iter()
        .find(|words| words[0] == "proxy_read_timeout")
        .map(|words| words[1].clone())
        .expect("proxy_read_timeout for idle WebSockets");
    assert!(
        read_timeout.ends_with('h') || read_timeout.ends_with('d'),
        "idle WebSockets need a long proxy_read_timeout, not {read_timeout}"
    );
}

// ---------------------------------------------------------------------------
// Dockerfile

/// The Dockerfile's instructions as (KEYWORD, arguments), continuation
/// lines joined and comments dropped.
fn dockerfile() -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in read(&deploy_file("Dockerfile")).lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(continued) = trimmed.strip_suffix('\\') {
            current.push_str(continued);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, rest) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        instructions.push((keyword.to_ascii_uppercase(), rest.trim().to_owned()));
        current.clear();
    }
    instructions
}

/// The instructions of the last stage (the image that ships).
fn final_stage() -> Vec<(String, String)> {
    let instructions = dockerfile();
    let start = instructions
        .iter()
        .rposition(|(keyword, _)| keyword == "FROM")
        .expect("FROM");
    instructions[start..].to_vec()
}

/// The `ENV` defaults of the final stage.
fn dockerfile_env() -> BTreeMap<String, String> {
    final_stage()
        .into_iter()
        .filter(|(keyword, _)| keyword == "ENV")
        .flat_map(|(_, rest)| {
            rest.split_whitespace()
                .filter_map(|pair| pair.split_once('='))
                .map(|(key, value)| (key.to_owned(), value.trim_matches('"').to_owned()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The workspace members listed in the root Cargo.toml.
fn workspace_members() -> Vec<String> {
    let manifest = read(&repo_root().join("Cargo.toml"));
    let list = manifest
        .split_once("members = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("[workspace] members");
    let members: Vec<String> = list
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(!members.is_empty(), "no workspace members");
    members
}

#[test]
fn dockerfile_copies_the_whole_workspace() {
    let copied: Vec<String> = dockerfile()
        .into_iter()
        .filter(|(keyword, rest)| keyword == "COPY" && !rest.starts_with("--from"))
        .flat_map(|(_, rest)| {
            let mut words: Vec<String> = rest
                .split_whitespace()
                .filter(|word| !word.starts_with("--"))
                .map(str::to_owned)
                .collect();
            words.pop(); // the destination
            words
        })
        .map(|source| source.trim_end_matches('/').to_owned())
        .collect();
    for needed in ["Cargo.toml", "Cargo.lock", "clippy.toml"] {
        assert!(copied.iter().any(|c| c == needed), "COPY {needed}");
    }
    for member in workspace_members() {
        assert!(
            copied
                .iter()
                .any(|c| member == *c || member.starts_with(&format!("{c}/"))),
            "the Dockerfile does not copy workspace member {member} (copies {copied:?})"
        );
    }
}

#[test]
fn dockerfile_builds_both_binaries_and_runs_the_server_unprivileged() {
    let instructions = dockerfile();
    let build = instructions
        .iter()
        .find(|(keyword, rest)| keyword == "RUN" && rest.contains("cargo build"))
        .map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>())
        .expect("a RUN cargo build");
    assert!(build.contains(&"--release"), "{build:?}");
    assert!(build.contains(&"--locked"), "{build:?}");
    let binaries = shipped_binaries();
    for binary in &binaries {
        assert!(
            build
                .windows(2)
                .any(|pair| pair == ["--bin", binary.as_str()]),
            "cargo build must name --bin {binary}: {build:?}"
        );
    }

    let stage = final_stage();
    let shipped: Vec<&str> = stage
        .iter()
        .filter(|(keyword, rest)| {
            keyword == "COPY" && rest.starts_with("--from") && rest.ends_with("/usr/local/bin/")
        })
        .flat_map(|(_, rest)| rest.split_whitespace())
        .collect();
    for binary in &binaries {
        assert!(
            shipped
                .iter()
                .any(|source| source.rsplit('/').next() == Some(binary.as_str())),
            "{binary} must be copied into /usr/local/bin/"
        );
    }

    let user = stage
        .iter()
        .rfind(|(keyword, _)| keyword == "USER")
        .map(|(_, user)| user.split(':').next().unwrap_or_default().to_owned())
        .expect("a USER in the final stage");
    assert!(user != "root" && user != "0", "runs as {user}");

    let last = |wanted: &str| {
        stage
            .iter()
            .rfind(|(keyword, _)| keyword == wanted)
            .map(|(_, rest)| rest.clone())
            .unwrap_or_else(|| panic!("no {wanted} in the final stage"))
    };
    let entrypoint = last("ENTRYPOINT");
    assert!(
        entrypoint.contains("\"whisper-server\"") || entrypoint.contains("/whisper-server\""),
        "ENTRYPOINT {entrypoint}"
    );
    assert_eq!(last("STOPSIGNAL"), "SIGTERM");
    let bind = &dockerfile_env()["WHISPER_BIND"];
    let address: SocketAddr = bind.parse().expect("WHISPER_BIND is an address");
    assert!(address.ip().is_unspecified(), "listen on every interface");
    assert_eq!(last("EXPOSE"), address.port().to_string());
    assert!(last("HEALTHCHECK").contains("/healthz"));
    let known = server_env();
    for key in dockerfile_env().keys() {
        assert!(known.contains(key), "ENV {key} is not read by the server");
    }
}

// ---------------------------------------------------------------------------
// systemd

/// `NAME=value` lines of whisper.env.example, the commented examples too.
fn env_example() -> Vec<(String, String, bool)> {
    read(&deploy_file("whisper.env.example"))
        .lines()
        .filter_map(|line| {
            let (active, rest) = match line.trim().strip_prefix('#') {
                Some(commented) => (false, commented.trim()),
                None => (true, line.trim()),
            };
            let (key, value) = rest.split_once('=')?;
            let is_name = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            is_name.then(|| (key.to_owned(), value.to_owned(), active))
        })
        .collect()
}

#[test]
fn env_example_sets_only_variables_the_server_reads() {
    let known = server_env();
    let lines = env_example();
    assert!(
        lines
            .iter()
            .any(|(key, _, active)| key == "DATABASE_URL" && *active)
    );
    for (key, _, _) in &lines {
        assert!(
            known.contains(key),
            "whisper.env.example: {key} is not read by whisper-server"
        );
    }
    for (key, value, _) in &lines {
        if key == "WHISPER_BIND" {
            value
                .parse::<SocketAddr>()
                .unwrap_or_else(|e| panic!("WHISPER_BIND={value}: {e}"));
        }
    }
    // Every value, the commented defaults too, is one the server takes.
    let env: BTreeMap<String, String> = lines
        .into_iter()
        .filter(|(key, _, _)| key != "REDIS_URL")
        .map(|(key, value, _)| (key, value))
        .collect();
    assert_server_accepts("whisper.env.example", &env, OFFLINE_ARGS);
}

#[test]
fn systemd_unit_runs_the_server_with_its_environment_file() {
    let unit = read(&deploy_file("whisper.service"));
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#') && !line.starts_with('['))
        .filter_map(|line| line.split_once('='))
        .collect();
    let get = |key: &str| {
        settings
            .iter()
            .rfind(|(name, _)| *name == key)
            .map(|(_, value)| *value)
            .unwrap_or_else(|| panic!("whisper.service has no {key}="))
    };
    let server = Path::new(SERVER).file_name().expect("binary name");
    assert_eq!(
        Path::new(get("ExecStart").split_whitespace().next().expect("path")),
        Path::new("/usr/local/bin").join(server)
    );
    assert_eq!(get("User"), "whisper");
    assert_eq!(get("EnvironmentFile"), "/etc/whisper/whisper.env");
    assert_eq!(get("KillSignal"), "SIGTERM");
    let stop: u32 = get("TimeoutStopSec")
        .trim_end_matches('s')
        .parse()
        .expect("TimeoutStopSec in seconds");
    assert!(
        stop > 10,
        "TimeoutStopSec must exceed the server's 10 s drain"
    );
    let writable = get("ReadWritePaths");
    assert!(
        writable
            .split_whitespace()
            .any(|path| path == get("WorkingDirectory")),
        "the working directory (where a SQLite file lives) must be writable"
    );
}
