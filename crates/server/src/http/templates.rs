//! The HTML pages' templates: `web/templates`, rendered by minijinja.
//!
//! A maintained engine instead of our own placeholder filler, so escaping
//! is not ours to get right: every template whose name ends in `.html` is
//! auto-escaped (minijinja's default for that extension), so user text
//! (a username, a form's values) always renders as text, never as markup.
//! Templates come from the files embedded in the binary only, read on
//! first use and kept by the one environment.

use std::sync::LazyLock;

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};

use super::HttpError;
use super::assets::WebAssets;

/// The one template environment, built on first use.
static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // A value the template names but the handler did not give is a bug,
    // not an empty string.
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_loader(load);
    env
});

/// Reads `web/templates/<name>` from the embedded files.
fn load(name: &str) -> Result<Option<String>, Error> {
    let Some(file) = WebAssets::get(&format!("templates/{name}")) else {
        return Ok(None);
    };
    String::from_utf8(file.data.into_owned())
        .map(Some)
        .map_err(|error| {
            Error::new(ErrorKind::InvalidOperation, "template is not UTF-8").with_source(error)
        })
}

/// Renders `web/templates/<name>` with `context` (built with
/// [`minijinja::context!`]).
pub(crate) fn render(name: &str, context: Value) -> Result<String, HttpError> {
    Ok(TEMPLATES.get_template(name)?.render(context)?)
}

#[cfg(test)]
mod tests {
    use minijinja::context;

    use super::*;

    #[test]
    fn user_text_renders_as_text() {
        let login = render(
            "login.html",
            context! {
                csrf_token => "T0K",
                next => "/x",
                username => r#"<script>"'&"#,
                error => "",
            },
        )
        .expect("login renders");
        assert!(login.contains(r#"value="T0K""#), "{login}");
        assert!(
            login.contains("&lt;script&gt;&quot;&#x27;&amp;") && !login.contains("<script>"),
            "{login}"
        );
    }

    #[test]
    fn every_template_renders_with_its_values() {
        let login = render(
            "login.html",
            context! { csrf_token => "T", next => "/", username => "", error => "" },
        )
        .expect("login renders");
        let signup = |closed: bool| {
            render(
                "signup.html",
                context! {
                    csrf_token => "T", username => "", name => "", email => "", error => "", closed,
                },
            )
            .expect("signup renders")
        };
        let (open, closed) = (signup(false), signup(true));
        assert!(!open.contains(" hidden>") && closed.contains(" hidden>"));
        let chat = render(
            "chat.html",
            context! { csrf_token => "T", username => "ann" },
        )
        .expect("chat renders");
        assert!(chat.contains("/static/chat.js"));
        let admin = |is_superuser: bool| {
            render(
                "admin.html",
                context! { csrf_token => "T", username => "sam", is_superuser },
            )
            .expect("admin renders")
        };
        let (superuser, staff) = (admin(true), admin(false));
        for superusers_only in [r#"id="new-user-form""#, r#"id="admin-record""#] {
            assert!(superuser.contains(superusers_only) && !staff.contains(superusers_only));
        }
        for page in [&login, &open, &closed, &chat, &superuser, &staff] {
            assert!(page.contains(r#"<link rel="stylesheet" href="/static/style.css">"#));
            assert!(!page.contains("{{") && !page.contains("{%"));
        }
    }

    #[test]
    fn a_missing_value_is_an_error() {
        let error = render("chat.html", context! { csrf_token => "T" });
        assert!(matches!(error, Err(HttpError::Template(_))));
    }
}
