//! `ferry passwd`: manage the password file, as `mosquitto_passwd` does.
//!
//! `ferry passwd FILE USER` adds the user or changes their password (asked twice on a
//! terminal, without echo; read as one line from standard input otherwise, for scripts);
//! `ferry passwd -D FILE USER` removes the user. The file is written atomically, mode 0600;
//! a running broker picks the change up on SIGHUP (or by itself with `auth.watch_files`).

use std::io::{BufRead, IsTerminal};
use std::path::Path;

use anyhow::{bail, Context};
use ferry_auth::password::{add_or_update_user, remove_user, HashParams};

/// Runs the subcommand.
pub(crate) fn run(file: &Path, user: &str, delete: bool) -> anyhow::Result<()> {
    if delete {
        if remove_user(file, user)? {
            eprintln!("ferry: removed {user} from {}", file.display());
            return Ok(());
        }
        bail!("{user} is not in {}", file.display());
    }
    let password = read_password()?;
    if password.is_empty() {
        bail!("empty password refused");
    }
    add_or_update_user(file, user, password.as_bytes(), &HashParams::default())?;
    eprintln!("ferry: {user} set in {}", file.display());
    Ok(())
}

/// The new password: prompted twice on a terminal, one line of standard input otherwise.
fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let again = rpassword::prompt_password("Password again: ").context("cannot read the password")?;
        if first != again {
            bail!("the passwords do not match");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
