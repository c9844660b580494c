//! A minimal blocking Redis client: RESP2 over one TCP connection, with
//! timeouts on connect, read and write, and explicit pipelining (write many
//! commands, then read as many replies). Only what [`crate::RedisStore`]
//! needs; no dependency.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Where the Redis server is: parsed from `redis://[[user]:password@]host:port[/db]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub port: u16,
    pub db: u32,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl Target {
    /// Parses a `redis://` URL; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| format!("{url:?}: expected redis://host:port[/db]"))?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let (hostport, db) = match rest.split_once('/') {
            Some((h, "")) => (h, 0),
            Some((h, d)) => (
                h,
                d.parse::<u32>()
                    .map_err(|_| format!("{url:?}: database {d:?} is not a number"))?,
            ),
            None => (rest, 0),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{url:?}: port {p:?} is not a number"))?,
            ),
            _ => (hostport, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        let (user, password) = match auth {
            None => (None, None),
            Some(a) => match a.split_once(':') {
                Some(("", p)) => (None, Some(p.to_string())),
                Some((u, p)) => (Some(u.to_string()), Some(p.to_string())),
                None => (None, Some(a.to_string())),
            },
        };
        Ok(Target {
            host: host.to_string(),
            port,
            db,
            user,
            password,
        })
    }

    fn addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok((self.host.as_str(), self.port).to_socket_addrs()?.collect())
    }
}

/// One reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The error text of an error reply.
    pub fn error(&self) -> Option<&str> {
        match self {
            Reply::Error(e) => Some(e),
            _ => None,
        }
    }
}

/// Appends one command (an array of bulk strings) to `out`.
pub(crate) fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_num(out, args.len());
    for a in args {
        out.push(b'$');
        push_num(out, a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

fn push_num(out: &mut Vec<u8>, n: usize) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
    out.extend_from_slice(b"\r\n");
}

/// Deepest nesting of arrays accepted in a reply, and the largest bulk.
const MAX_DEPTH: usize = 4;
const MAX_BULK: usize = 512 * 1024 * 1024;

/// A connection.
pub(crate) struct Conn {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Connects (each address in turn, `timeout` each), sets the I/O
    /// timeout, authenticates and selects the database.
    pub fn open(target: &Target, timeout: Duration, io_timeout: Duration) -> io::Result<Conn> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the host resolves to no address");
        for addr in target.addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    s.set_nodelay(true)?;
                    s.set_read_timeout(Some(io_timeout))?;
                    s.set_write_timeout(Some(io_timeout))?;
                    let reader = BufReader::with_capacity(64 * 1024, s.try_clone()?);
                    let mut conn = Conn { writer: s, reader };
                    conn.handshake(target)?;
                    return Ok(conn);
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn handshake(&mut self, target: &Target) -> io::Result<()> {
        let mut buf = Vec::new();
        let mut n = 0;
        if let Some(p) = &target.password {
            match &target.user {
                Some(u) => command(&mut buf, &[b"AUTH", u.as_bytes(), p.as_bytes()]),
                None => command(&mut buf, &[b"AUTH", p.as_bytes()]),
            }
            n += 1;
        }
        if target.db != 0 {
            command(&mut buf, &[b"SELECT", target.db.to_string().as_bytes()]);
            n += 1;
        }
        if n == 0 {
            return Ok(());
        }
        self.send(&buf)?;
        for _ in 0..n {
            if let Reply::Error(e) = self.read()? {
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, e));
            }
        }
        Ok(())
    }

    /// Writes encoded commands.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    /// Sends one command and reads its reply.
    pub fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut buf = Vec::new();
        command(&mut buf, args);
        self.send(&buf)?;
        self.read()
    }

    /// Reads one reply.
    pub fn read(&mut self) -> io::Result<Reply> {
        self.read_depth(0)
    }

    fn line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::with_capacity(16);
        let n = self.reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        if !line.ends_with(b"\r\n") {
            return Err(bad("a reply line without CRLF"));
        }
        line.truncate(line.len() - 2);
        Ok(line)
    }

    fn read_depth(&mut self, depth: usize) -> io::Result<Reply> {
        let line = self.line()?;
        let Some((&kind, rest)) = line.split_first() else {
            return Err(bad("an empty reply line"));
        };
        let text = || String::from_utf8_lossy(rest).into_owned();
        match kind {
            b'+' => Ok(Reply::Simple(text())),
            b'-' => Ok(Reply::Error(text())),
            b':' => Ok(Reply::Int(int(rest)?)),
            b'$' => {
                let n = int(rest)?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let n = usize::try_from(n).map_err(|_| bad("bulk length"))?;
                if n > MAX_BULK {
                    return Err(bad("bulk string too large"));
                }
                let mut v = vec![0u8; n + 2];
                self.reader.read_exact(&mut v)?;
                if &v[n..] != b"\r\n" {
                    return Err(bad("a bulk string without CRLF"));
                }
                v.truncate(n);
                Ok(Reply::Bulk(Some(v)))
            }
            b'*' => {
                let n = int(rest)?;
                if n < 0 {
                    return Ok(Reply::Array(None));
                }
                if depth >= MAX_DEPTH {
                    return Err(bad("arrays nested too deep"));
                }
                let n = usize::try_from(n).map_err(|_| bad("array length"))?;
                let mut items = Vec::with_capacity(n.min(4096));
                for _ in 0..n {
                    items.push(self.read_depth(depth + 1)?);
                }
                Ok(Reply::Array(Some(items)))
            }
            other => Err(bad(&format!("unknown reply type {:?}", other as char))),
        }
    }
}

fn int(b: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("a number that is not one"))
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("protocol error: {what}"),
    )
}

/// Escapes the glob characters of `s` for a SCAN MATCH pattern.
pub(crate) fn glob_escape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 4);
    for &c in s {
        if matches!(c, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands() {
        let mut out = Vec::new();
        command(&mut out, &[b"SET", b"k", b""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }

    #[test]
    fn parses_urls() {
        let t = Target::parse("redis://127.0.0.5:6390/2").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db), ("127.0.0.5", 6390, 2));
        let t = Target::parse("redis://:secret@localhost").unwrap();
        assert_eq!((t.port, t.password.as_deref()), (6379, Some("secret")));
        let t = Target::parse("redis://[::1]:7000").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 7000));
        assert!(Target::parse("http://x").unwrap_err().contains("redis://"));
        assert!(Target::parse("redis://h:port")
            .unwrap_err()
            .contains("port"));
        assert!(Target::parse("redis://h:1/x")
            .unwrap_err()
            .contains("database"));
    }

    #[test]
    fn escapes_globs() {
        assert_eq!(glob_escape(b"a*b?[c]\\"), b"a\\*b\\?\\[c\\]\\\\".to_vec());
    }
}
