//! The MIME multipart cloud-init and nodeadm read: the user's parts first, Kestrel's after them, so
//! nodeadm merges Kestrel's NodeConfig over the user's and the user's scripts run before bootstrap.

use super::UserDataError;

/// The boundary of the documents Kestrel writes.
pub const BOUNDARY: &str = "//";

/// One part: its content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub content_type: String,
    pub body: String,
}

/// The user's userData as parts: a MIME multipart's own parts, or one part whose type follows its
/// first line (`#!` a shell script, anything else `default_type`).
pub fn parts(user: &str, default_type: &str) -> Result<Vec<Part>, UserDataError> {
    let trimmed = user.trim_start();
    if !trimmed.starts_with("MIME-Version:") {
        if trimmed.is_empty() {
            return Ok(Vec::new());
        }
        let content_type = if trimmed.starts_with("#!") {
            "text/x-shellscript; charset=\"us-ascii\""
        } else {
            default_type
        };
        return Ok(vec![Part {
            content_type: content_type.to_string(),
            body: user.to_string(),
        }]);
    }
    let (head, body) = split_headers(trimmed);
    let boundary = header(head, "content-type")
        .and_then(|v| {
            v.split(';')
                .find_map(|p| p.trim().strip_prefix("boundary="))
                .map(|b| b.trim_matches('"').to_string())
        })
        .ok_or(UserDataError::NoBoundary)?;
    let delimiter = format!("--{boundary}");
    let mut out = Vec::new();
    for chunk in body.split(&delimiter).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let chunk = chunk
            .strip_prefix("\r\n")
            .or_else(|| chunk.strip_prefix('\n'))
            .unwrap_or(chunk);
        let (head, body) = split_headers(chunk);
        out.push(Part {
            content_type: header(head, "content-type")
                .unwrap_or("text/plain")
                .to_string(),
            body: body.trim_end_matches(['\r', '\n']).to_string() + "\n",
        });
    }
    Ok(out)
}

fn split_headers(text: &str) -> (&str, &str) {
    text.split_once("\r\n\r\n")
        .or_else(|| text.split_once("\n\n"))
        .unwrap_or((text, ""))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The multipart document of these parts.
pub fn document(parts: &[Part]) -> String {
    let mut out =
        format!("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\n\n");
    for part in parts {
        out.push_str(&format!(
            "--{BOUNDARY}\nContent-Type: {}\n\n",
            part.content_type
        ));
        out.push_str(part.body.trim_end_matches('\n'));
        out.push('\n');
    }
    out.push_str(&format!("--{BOUNDARY}--\n"));
    out
}
