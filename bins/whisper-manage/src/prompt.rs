//! Asking the operator for answers the command line left out.
//!
//! On a terminal, questions go to stderr (stdout stays for results) and
//! passwords are read without echo. When standard input is not a terminal
//! (a pipe in a script or a test), nobody is there to read the questions, so
//! none are printed and each answer is one line of input: a script gets
//! nothing on stderr but a possible `error:` line.
//!
//! Reading blocks the thread. That is fine on the binary's single-threaded
//! runtime: nothing else is running while a person types.

use std::io::{self, IsTerminal, Write};

use crate::error::ManageError;

/// Where answers come from, decided once per run.
#[derive(Debug, Clone, Copy)]
pub struct Prompter {
    terminal: bool,
}

impl Prompter {
    /// A prompter for this process's standard input.
    pub fn for_stdin() -> Self {
        Prompter {
            terminal: io::stdin().is_terminal(),
        }
    }

    /// One answer, surrounding whitespace removed (usernames and email
    /// addresses never have any).
    pub fn line(&self, question: &str, what: &'static str) -> Result<String, ManageError> {
        if self.terminal {
            eprint!("{question}");
            // A lost question only makes the prompt less friendly.
            let _ = io::stderr().flush();
        }
        Ok(read_line(what)?.trim().to_owned())
    }

    /// A new password for `username`, asked twice so a typo does not lock
    /// the user out.
    pub fn new_password(&self, username: &str) -> Result<String, ManageError> {
        let first = self.password(&format!("Password for {username}: "))?;
        let again = self.password("Password (again): ")?;
        if first != again {
            return Err(ManageError::PasswordMismatch);
        }
        Ok(first)
    }

    /// A password, kept exactly as typed (spaces are allowed in passwords).
    fn password(&self, question: &str) -> Result<String, ManageError> {
        const WHAT: &str = "password";
        if self.terminal {
            rpassword::prompt_password(question)
                .map_err(|source| ManageError::Input { what: WHAT, source })
        } else {
            read_line(WHAT)
        }
    }
}

/// One line of standard input without its line ending; end of input before
/// any line is bad input, not an empty answer.
fn read_line(what: &'static str) -> Result<String, ManageError> {
    let mut line = String::new();
    let read = io::stdin()
        .read_line(&mut line)
        .map_err(|source| ManageError::Input { what, source })?;
    if read == 0 {
        return Err(ManageError::EndOfInput(what));
    }
    let end = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(end);
    Ok(line)
}
