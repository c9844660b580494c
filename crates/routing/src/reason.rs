//! Standard reason phrases (RFC 3261 section 21 and later RFCs) for the final codes a
//! configuration may use, so that `respond = { code = 403 }` is enough.

/// The standard reason phrase of a final response code, if it has one.
pub fn standard_reason(code: u16) -> Option<&'static str> {
    cairn_sip::build::standard_reason(code)
}

/// Check a Reason header value (RFC 3326) that cairn will write on CANCELs:
/// `protocol;param[;param...]`, e.g. `SIP;cause=480;text="NO_ANSWER"` or
/// `Q.850;cause=16`, or several such values separated by commas. The protocol and every
/// parameter name are tokens, `cause` is digits, `text` a quoted string; no line breaks or
/// control characters anywhere (they would inject headers).
pub fn check_reason_value(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("a Reason value must not be empty".into());
    }
    if let Some(c) = value.chars().find(|&c| c.is_control() && c != '\t') {
        let what = if c == '\r' || c == '\n' {
            "line breaks"
        } else {
            "control characters"
        };
        return Err(format!("{value:?}: a Reason value must not contain {what}"));
    }
    for v in split_outside_quotes(value, ',')? {
        check_one_reason(v.trim()).map_err(|m| format!("{value:?}: {m}"))?;
    }
    Ok(())
}

fn check_one_reason(v: &str) -> Result<(), String> {
    let parts = split_outside_quotes(v, ';')?;
    let protocol = parts[0].trim();
    if protocol.is_empty() {
        return Err(
            "expected protocol;params, e.g. SIP;cause=480;text=\"NO_ANSWER\" (the protocol is missing)"
                .into(),
        );
    }
    if !protocol.bytes().all(is_token) {
        return Err(format!(
            "\"{protocol}\" is not a protocol token (SIP, Q.850, ...)"
        ));
    }
    if parts.len() < 2 {
        return Err(format!(
            "expected protocol;params, e.g. {protocol};cause=480;text=\"NO_ANSWER\" (no parameter)"
        ));
    }
    for p in &parts[1..] {
        let p = p.trim();
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (p, None),
        };
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(format!("\"{p}\" is not a parameter (name=value)"));
        }
        match (name.to_ascii_lowercase().as_str(), value) {
            ("cause", Some(c)) if !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()) => {}
            ("cause", _) => return Err(format!("\"{p}\": cause must be a number")),
            ("text", Some(t)) if is_quoted_string(t) => {}
            ("text", _) => {
                return Err(format!(
                    "\"{p}\": text must be a quoted string (text=\"...\")"
                ))
            }
            (_, None) => {}
            (_, Some(v)) if is_quoted_string(v) => {}
            (_, Some(v))
                if !v.is_empty() && v.bytes().all(|b| is_token(b) || b":[]".contains(&b)) => {}
            (_, Some(_)) => {
                return Err(format!(
                    "\"{p}\": a parameter value is a token or a quoted string"
                ))
            }
        }
    }
    Ok(())
}

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}

fn is_quoted_string(v: &str) -> bool {
    let b = v.as_bytes();
    if b.len() < 2 || b[0] != b'"' || b[b.len() - 1] != b'"' {
        return false;
    }
    let mut i = 1;
    while i < b.len() - 1 {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return false,
            _ => i += 1,
        }
    }
    i == b.len() - 1
}

/// Split at `sep` outside double quotes (with backslash escapes); an unclosed quote is an
/// error.
fn split_outside_quotes(v: &str, sep: char) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in v.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&v[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err(format!("{v:?}: unclosed quoted string"));
    }
    out.push(&v[start..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_values() {
        for ok in [
            "SIP;cause=480;text=\"NO_ANSWER\"",
            "SIP;cause=200;text=\"Call completed elsewhere\"",
            "Q.850;cause=16",
            "SIP ; cause=487 ; text=\"ORIGINATOR_CANCEL\"",
            "SIP;cause=486;text=\"Busy, \\\"really\\\"; yes\"",
            "SIP;cause=200;text=\"x\", Q.850;cause=16;text=\"Normal call clearing\"",
            "X-Vendor;code=abc;flag",
            "SIP;text=\"tab\there\"",
        ] {
            assert_eq!(check_reason_value(ok), Ok(()), "{ok}");
        }
        for (bad, want) in [
            ("", "empty"),
            ("SIP", "no parameter"),
            ("SIP;cause=480\r\nX-Evil: 1", "line breaks"),
            ("SIP;cause=480\u{7}", "control characters"),
            (";cause=480", "protocol is missing"),
            ("S I P;cause=1", "not a protocol token"),
            ("SIP;cause=abc", "cause must be a number"),
            ("SIP;cause=", "cause must be a number"),
            ("SIP;text=NO_ANSWER", "quoted string"),
            ("SIP;text=\"open", "unclosed"),
            ("SIP;cause=480;=x", "not a parameter"),
            ("SIP;cause=480, Q.850", "no parameter"),
            ("SIP;x=a b", "token or a quoted string"),
        ] {
            let e = check_reason_value(bad).unwrap_err();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }
}
