//! Checks of values against what they stand for, made at load time so that
//! `--dry-run` catches them with their line: a login name that will end up
//! in an ssh_config and in remote commands, a key file that must be a
//! private key, a local path a run will read.

use crate::error::{ConfigError, Source};
use crate::yaml::Node;
use std::io::Read;
use std::path::Path;

/// A user name as `useradd` and cloud images accept it: a letter or `_`,
/// then letters, digits, `_`, `-` or `.`, at most 32 characters. Nothing a
/// shell or an ssh_config would read as syntax can pass.
pub fn login_name(src: &Source, node: &Node, what: &str, name: &str) -> Result<(), ConfigError> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if first_ok && rest_ok && name.len() <= 32 {
        return Ok(());
    }
    Err(src
        .error_at(
            node.pos,
            node.width,
            format!("{what} `{}` is not a valid user name", shown(name)),
        )
        .expected("a letter or `_`, then letters, digits, `_`, `-` or `.` (at most 32)")
        .hint(
            "the name goes into ssh_config and remote commands, so it must be a plain login name",
        ))
}

/// The file at `path` exists and holds a private key (OpenSSH, PEM or
/// PKCS#8). Its contents are never shown: only what kind of file it is.
pub fn private_key_file(
    src: &Source,
    node: &Node,
    what: &str,
    path: &Path,
) -> Result<(), ConfigError> {
    let err = |message: String| src.error_at(node.pos, node.width, message);
    let mut head = [0u8; 64];
    let read = std::fs::File::open(path).and_then(|mut f| {
        if f.metadata()?.is_dir() {
            return Err(std::io::Error::from(std::io::ErrorKind::IsADirectory));
        }
        f.read(&mut head)
    });
    let n = match read {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(err(format!("{what}: no such file `{}`", path.display()))
                .expected("the path of your private SSH key, e.g. `~/.ssh/id_ed25519`")
                .hint(
                    "create one with `ssh-keygen -t ed25519`, or point `key:` at an existing one",
                ));
        }
        Err(e) => {
            return Err(
                err(format!("{what}: cannot read `{}`: {e}", path.display()))
                    .expected("a readable private key file"),
            );
        }
    };
    let head = String::from_utf8_lossy(&head[..n]);
    if head.starts_with("-----BEGIN ") && head.contains("PRIVATE KEY-----") {
        return Ok(());
    }
    let public = head.starts_with("ssh-")
        || head.starts_with("ecdsa-")
        || head.starts_with("sk-")
        || head.contains("PUBLIC KEY");
    let e = if public {
        err(format!("{what}: `{}` is a public key", path.display()))
            .expected("the private key (the same path without `.pub`)")
    } else {
        err(format!("{what}: `{}` is not a private key", path.display()))
            .expected("a private key file, starting with `-----BEGIN … PRIVATE KEY-----`")
    };
    Err(e)
}

/// A local path a run reads (a resource) exists.
pub fn existing_path(
    src: &Source,
    node: &Node,
    what: &str,
    path: &Path,
) -> Result<(), ConfigError> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(()),
        Err(e) => Err(src
            .error_at(
                node.pos,
                node.width,
                format!("{what}: `{}`: {}", path.display(), io_words(&e)),
            )
            .expected("a file or folder on this machine")
            .hint("write `!cluster /path` for a path that exists only on the cluster's hosts")),
    }
}

fn io_words(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or folder".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

/// A value shown in a message, with control characters escaped so that an
/// error can never rewrite the terminal.
fn shown(text: &str) -> String {
    text.chars().flat_map(char::escape_debug).take(80).collect()
}
