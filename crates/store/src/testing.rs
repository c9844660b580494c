//! A real `redis-server` as a child process, for tests (of this crate and of
//! the cairn binary): bound to a loopback address and port, no persistence,
//! stopped and killed by its PID only.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::resp::{Conn, Reply, Target};

/// A `redis-server` child process.
pub struct RedisServer {
    child: Option<Child>,
    addr: SocketAddr,
    log: PathBuf,
}

/// The `redis-server` binary: `$REDIS_SERVER`, else on `PATH`, else
/// `/usr/bin/redis-server` (Debian's `redis-server` package).
pub fn redis_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("REDIS_SERVER") {
        return PathBuf::from(p);
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("redis-server");
            if p.is_file() {
                return p;
            }
        }
    }
    PathBuf::from("/usr/bin/redis-server")
}

impl RedisServer {
    /// Starts `redis-server --port P --bind IP --save "" --appendonly no` on
    /// `addr` (its log in `log`), and waits (at most 10 s) until it answers
    /// PING.
    pub fn start(addr: SocketAddr, log: &Path) -> io::Result<RedisServer> {
        let mut s = RedisServer {
            child: None,
            addr,
            log: log.to_path_buf(),
        };
        s.spawn()?;
        Ok(s)
    }

    /// [`RedisServer::start`] on 127.0.0.1 and a port the kernel says is
    /// free (tried a few times: another process may take it meanwhile).
    pub fn start_anywhere(log: &Path) -> io::Result<RedisServer> {
        let mut last = io::Error::other("no attempt");
        for _ in 0..5 {
            let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            match RedisServer::start(addr, log) {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn spawn(&mut self) -> io::Result<()> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let dir = self.log.parent().unwrap_or(Path::new("."));
        let child = Command::new(redis_server_bin())
            .arg("--port")
            .arg(self.addr.port().to_string())
            .arg("--bind")
            .arg(self.addr.ip().to_string())
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot run {}: {e}", redis_server_bin().display()),
                )
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping() {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    return Err(io::Error::other(format!(
                        "redis-server on {} exited with {status}; its log: {}",
                        self.addr,
                        std::fs::read_to_string(&self.log).unwrap_or_default()
                    )));
                }
            }
            if Instant::now() > deadline {
                self.stop();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("redis-server on {} did not answer within 10 s", self.addr),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn ping(&self) -> bool {
        let t = Duration::from_millis(200);
        let Ok(target) = Target::parse(&self.url()) else {
            return false;
        };
        Conn::open(&target, t, t)
            .and_then(|mut c| c.call(&[b"PING"]))
            .is_ok_and(|r| r == Reply::Simple("PONG".into()))
    }

    /// `redis://ip:port`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The child's PID (while running).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server (SIGKILL by its PID) and waits for it: its data is
    /// gone (no persistence).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same address, empty.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }

    /// Runs one command on a connection of its own.
    pub fn command(&self, args: &[&str]) -> io::Result<String> {
        let t = Duration::from_secs(2);
        let target = Target::parse(&self.url()).map_err(io::Error::other)?;
        let mut c = Conn::open(&target, t, t)?;
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        Ok(match c.call(&args)? {
            Reply::Simple(s) | Reply::Error(s) => s,
            Reply::Int(i) => i.to_string(),
            Reply::Bulk(b) => b
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
            Reply::Array(a) => format!("{a:?}"),
        })
    }

    /// Keys matching `pattern` (KEYS: for tests only).
    pub fn keys(&self, pattern: &str) -> io::Result<Vec<String>> {
        let t = Duration::from_secs(2);
        let target = Target::parse(&self.url()).map_err(io::Error::other)?;
        let mut c = Conn::open(&target, t, t)?;
        match c.call(&[b"KEYS", pattern.as_bytes()])? {
            Reply::Array(Some(items)) => Ok(items
                .into_iter()
                .filter_map(|r| match r {
                    Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(&b).into_owned()),
                    _ => None,
                })
                .collect()),
            other => Err(io::Error::other(format!("KEYS: {other:?}"))),
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
