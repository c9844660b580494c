//! Test harness for cairn's integration tests: the real `cairn` binary,
//! real SIPp processes, loopback only.
//!
//! * [`TestNet`]: a loopback address of its own for each test
//!   (`127.A.B.1`), so that every test can use the same well-known ports:
//!   cairn on 5060, the SIPp UAC on 5070, the SIPp UASes on 5071 and 5072,
//!   raw sockets on 5080 and up ([`ports`]).
//! * [`Cairn`]: writes a TOML config, runs `cairn --config FILE` with its
//!   output in a log file, waits until every `[[listen]]` socket of the
//!   config is bound, stops the process by PID (SIGTERM, then SIGKILL) when
//!   dropped and prints its log when the test is failing.
//! * [`Sipp`]: a SIPp UAS or UAC as a foreground child process with its
//!   message log, error log, statistics CSV and final screen in a directory
//!   of its own; [`SippResult`] holds the exit status, the call counters and
//!   the parsed message log ([`SipMsg`]).
//! * [`RawUdp`] sends hand-written (e.g. malformed) datagrams and reads the
//!   answer; [`BlackHole`] is a gateway that never answers.
//! * [`wait_until`]: poll a condition against a deadline; nothing in here
//!   sleeps and hopes.
//!
//! Every process this harness starts is killed by its own PID, never by
//! name, and every SIPp run carries `-timeout` so it stops by itself.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Well-known ports, the same in every test (each test has its own IP).
pub mod ports {
    /// cairn's listeners (UDP and TCP).
    pub const CAIRN: u16 = 5060;
    /// The SIPp UAC's local port.
    pub const UAC: u16 = 5070;
    /// First SIPp UAS ("gateway 1").
    pub const UAS1: u16 = 5071;
    /// Second SIPp UAS ("gateway 2").
    pub const UAS2: u16 = 5072;
    /// First port for raw sockets ([`super::RawUdp`], [`super::BlackHole`]).
    pub const RAW: u16 = 5080;
}

/// Ports checked free at a candidate address before a test gets it.
const PROBE_PORTS: &[u16] = &[5060, 5070, 5071, 5072, 5073, 5080, 5081];

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/// Polls `cond` every 10 ms until it holds (true) or `timeout` has passed
/// (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for a child to exit, at most `timeout`; `None` if it is still
/// running then.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) => {}
            Err(e) => panic!("waiting for pid {}: {e}", child.id()),
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends a signal to one process we started, by PID (`kill -SIG PID`).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// SIGTERM, then SIGKILL after `grace` if the child has not exited.
pub fn terminate(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(st)) = child.try_wait() {
        return Some(st);
    }
    signal(child.id(), "TERM");
    if let Some(st) = wait_child(child, grace) {
        return Some(st);
    }
    let _ = child.kill();
    wait_child(child, Duration::from_secs(5))
}

// ---------------------------------------------------------------------------
// Directories
// ---------------------------------------------------------------------------

static DIR_SEQ: AtomicU32 = AtomicU32::new(0);
static CLEANED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// A fresh directory for one process's files:
/// `target/tmp/cairn-it/<test name>/<label>-<pid>-<n>`.
///
/// Files stay after the test, passed or failed, so they can be read; the
/// first `test_dir` of a test in a run removes what an earlier run of that
/// test left, so the disk holds one run's worth at most.
pub fn test_dir(label: &str) -> PathBuf {
    let test = std::thread::current()
        .name()
        .unwrap_or("main")
        .replace("::", "-")
        .replace(
            |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_',
            "_",
        );
    let n = DIR_SEQ.fetch_add(1, Ordering::SeqCst);
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("cairn-it")
        .join(&test);
    {
        let mut cleaned = CLEANED.lock().unwrap_or_else(|e| e.into_inner());
        if !cleaned.contains(&test) {
            let _ = fs::remove_dir_all(&root);
            cleaned.push(test.clone());
        }
    }
    let dir = root.join(format!("{label}-{}-{n}", std::process::id()));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `max` bytes of `s` (at a char boundary), for printing logs.
fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

// ---------------------------------------------------------------------------
// Addresses
// ---------------------------------------------------------------------------

static NET_SEQ: AtomicU32 = AtomicU32::new(0);

/// The loopback address of one test: `127.A.B.1` with A in 1..=250.
///
/// Chosen from the process id and a process-wide counter, so tests running
/// in parallel threads and test binaries never share one, and checked by
/// binding UDP and TCP on the well-known ports before it is handed out.
/// 127.0.0.0/8 is all loopback on Linux, no setup needed.
#[derive(Clone, Copy, Debug)]
pub struct TestNet {
    pub ip: IpAddr,
}

impl TestNet {
    pub fn new() -> TestNet {
        let pid = std::process::id();
        for _ in 0..500 {
            let n = NET_SEQ.fetch_add(1, Ordering::SeqCst);
            let idx = (pid.wrapping_mul(97).wrapping_add(n.wrapping_mul(7919))) % (250 * 256);
            let ip = Ipv4Addr::new(127, 1 + (idx / 256) as u8, (idx % 256) as u8, 1);
            if Self::free(ip) {
                return TestNet { ip: IpAddr::V4(ip) };
            }
        }
        panic!("no free loopback address found for this test");
    }

    fn free(ip: Ipv4Addr) -> bool {
        PROBE_PORTS.iter().all(|&p| {
            let sa = SocketAddr::new(IpAddr::V4(ip), p);
            UdpSocket::bind(sa).is_ok() && TcpListener::bind(sa).is_ok()
        })
    }

    /// `ip:port` of this test.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip, port)
    }

    /// cairn's address (port 5060).
    pub fn cairn(&self) -> SocketAddr {
        self.addr(ports::CAIRN)
    }

    /// `[[listen]]` blocks for UDP and TCP on this test's IP, port 5060.
    pub fn listen_toml(&self) -> String {
        format!(
            "[[listen]]\ntransport = \"udp\"\naddress = \"{a}\"\n\n\
             [[listen]]\ntransport = \"tcp\"\naddress = \"{a}\"\n\n",
            a = self.cairn()
        )
    }
}

impl Default for TestNet {
    fn default() -> Self {
        TestNet::new()
    }
}

/// SIP transports as the tests use them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// SIPp's `-t` value: one socket for everything.
    pub fn sipp_mode(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }
    /// A `;transport=` URI parameter ("" for UDP, the default).
    pub fn uri_param(self) -> &'static str {
        match self {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
        }
    }
    /// Upper-case name as in a Via header: "UDP" / "TCP".
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// Is some socket bound at `addr` (UDP) or listening there (TCP)?
///
/// Read from /proc/net/{udp,tcp}{,6}: since each test has an address of its
/// own, whatever is bound there belongs to the process the test started.
/// This needs no cooperation from the process (no probe message, no log
/// line), which makes it the readiness check for cairn and for SIPp UASes.
pub fn is_bound(addr: SocketAddr, transport: Transport) -> bool {
    let (file, want_state) = match (transport, addr.ip()) {
        (Transport::Udp, IpAddr::V4(_)) => ("/proc/net/udp", None),
        (Transport::Udp, IpAddr::V6(_)) => ("/proc/net/udp6", None),
        (Transport::Tcp, IpAddr::V4(_)) => ("/proc/net/tcp", Some("0A")),
        (Transport::Tcp, IpAddr::V6(_)) => ("/proc/net/tcp6", Some("0A")),
    };
    let ip_hex = match addr.ip() {
        IpAddr::V4(v4) => format!("{:08X}", u32::from_le_bytes(v4.octets())),
        IpAddr::V6(v6) => v6
            .octets()
            .chunks(4)
            .map(|c| format!("{:08X}", u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
    };
    let want = format!("{ip_hex}:{:04X}", addr.port());
    let table = read_lossy(Path::new(file));
    table.lines().skip(1).any(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        cols.len() > 3
            && cols[1].eq_ignore_ascii_case(&want)
            && want_state.is_none_or(|s| cols[3] == s)
    })
}

// ---------------------------------------------------------------------------
// cairn
// ---------------------------------------------------------------------------

/// Path of the cairn binary under test. `CAIRN_BIN` overrides it (to run
/// the suite against another build); by default it is the one Cargo built.
pub fn cairn_bin() -> PathBuf {
    std::env::var_os("CAIRN_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cairn")))
}

/// The `[[listen]]` sockets named in a config (a small line scanner that is
/// enough for the configs the tests write: `transport = "..."` and
/// `address = "..."` inside `[[listen]]` tables).
pub fn listeners_in(config_toml: &str) -> Vec<(Transport, SocketAddr)> {
    let mut out = Vec::new();
    let mut in_listen = false;
    let mut cur: (Option<Transport>, Option<SocketAddr>) = (None, None);
    let flush = |cur: &mut (Option<Transport>, Option<SocketAddr>), out: &mut Vec<_>| {
        if let (Some(t), Some(a)) = (cur.0, cur.1) {
            out.push((t, a));
        }
        *cur = (None, None);
    };
    for raw in config_toml.lines() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            if in_listen {
                flush(&mut cur, &mut out);
            }
            in_listen = line == "[[listen]]";
            continue;
        }
        if !in_listen {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches('"');
            match k.trim() {
                "transport" => {
                    cur.0 = match v.to_ascii_lowercase().as_str() {
                        "udp" => Some(Transport::Udp),
                        "tcp" => Some(Transport::Tcp),
                        _ => None,
                    }
                }
                "address" => cur.1 = v.parse().ok(),
                _ => {}
            }
        }
    }
    if in_listen {
        flush(&mut cur, &mut out);
    }
    out
}

/// A running cairn, killed by PID when dropped.
pub struct Cairn {
    child: Child,
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub listeners: Vec<(Transport, SocketAddr)>,
    stopped: Option<ExitStatus>,
}

impl Cairn {
    /// How long cairn gets to bind its listeners.
    pub const START_TIMEOUT: Duration = Duration::from_secs(20);

    /// Starts `cairn --config FILE` and waits until every `[[listen]]`
    /// socket of the config is bound (UDP) or listening (TCP); see
    /// [`is_bound`]. Panics, printing cairn's log, if it exits or does not
    /// get ready in time.
    pub fn start(config_toml: &str) -> Cairn {
        match Cairn::try_start(config_toml) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    /// Like [`Cairn::start`], with the failure as a value.
    pub fn try_start(config_toml: &str) -> Result<Cairn, String> {
        let dir = test_dir("cairn");
        let config_path = dir.join("cairn.toml");
        let log_path = dir.join("cairn.log");
        fs::write(&config_path, config_toml).map_err(|e| format!("write config: {e}"))?;
        let log = fs::File::create(&log_path).map_err(|e| format!("create log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let bin = cairn_bin();
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config_path)
            .current_dir(&dir)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let listeners = listeners_in(config_toml);
        let mut cairn = Cairn {
            child,
            dir,
            config_path,
            log_path,
            listeners,
            stopped: None,
        };

        let mut exited = None;
        let ready = wait_until(Self::START_TIMEOUT, || {
            if let Ok(Some(st)) = cairn.child.try_wait() {
                exited = Some(st);
                return true;
            }
            cairn.listeners.iter().all(|&(t, a)| is_bound(a, t))
        });
        if let Some(st) = exited {
            cairn.stopped = Some(st);
            return Err(format!(
                "cairn exited during startup ({st})\n--- config ---\n{config_toml}\n--- log ---\n{}",
                cairn.log()
            ));
        }
        if !ready {
            let missing: Vec<_> = cairn
                .listeners
                .iter()
                .filter(|&&(t, a)| !is_bound(a, t))
                .map(|(t, a)| format!("{t:?} {a}"))
                .collect();
            return Err(format!(
                "cairn did not bind {missing:?} within {:?}\n--- log ---\n{}",
                Self::START_TIMEOUT,
                cairn.log()
            ));
        }
        Ok(cairn)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything cairn printed so far.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    /// Is the process still running?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// CPU time used so far (utime + stime, in seconds), from /proc/PID/stat.
    pub fn cpu_seconds(&self) -> f64 {
        proc_cpu_seconds(self.pid()).unwrap_or(0.0)
    }

    /// SIGTERM, SIGKILL after 3 s; returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.stopped.is_none() {
            self.stopped = terminate(&mut self.child, Duration::from_secs(3));
        }
        self.stopped
    }
}

impl Drop for Cairn {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "===== cairn log ({}) =====\n{}\n===== end of cairn log =====",
                self.log_path.display(),
                tail(&self.log(), 64 * 1024)
            );
        }
    }
}

/// utime + stime of a process in seconds (clock ticks of 1/100 s, the value
/// of `getconf CLK_TCK` on Linux).
pub fn proc_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: split after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Runs `cairn ARGS...` to completion (e.g. `check-config FILE`), at most
/// 30 s, returning the exit status and stdout + stderr together.
pub fn run_cairn(args: &[&str]) -> (ExitStatus, String) {
    let dir = test_dir("cairn-run");
    let out_path = dir.join("output.log");
    let out = fs::File::create(&out_path).unwrap();
    let mut child = Command::new(cairn_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn cairn: {e}"));
    let st = match wait_child(&mut child, Duration::from_secs(30)) {
        Some(st) => st,
        None => {
            terminate(&mut child, Duration::from_secs(2));
            panic!("cairn {args:?} did not exit within 30 s");
        }
    };
    let text = read_lossy(&out_path);
    let _ = fs::remove_dir_all(&dir);
    (st, text)
}

// ---------------------------------------------------------------------------
// SIPp
// ---------------------------------------------------------------------------

/// The SIPp binary: `SIPP` overrides, else `sipp` from PATH.
pub fn sipp_bin() -> PathBuf {
    std::env::var_os("SIPP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("sipp"))
}

/// Path of a scenario file in `tests/scenarios/`.
pub fn scenario(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("scenarios")
        .join(name);
    assert!(p.is_file(), "no scenario {}", p.display());
    p
}

/// The marker on the line of `uac_expect.xml` that holds the expected code.
const EXPECT_MARKER: &str = "<!-- EXPECTED-FINAL-CODE -->";

/// A copy of `uac_expect.xml` that expects final response `code`
/// (SIPp takes `<recv response="...">` literally, so the code is written
/// into the file).
pub fn uac_expect(code: u16) -> PathBuf {
    let src = fs::read_to_string(scenario("uac_expect.xml")).unwrap();
    let mut out = String::new();
    let mut replaced = 0;
    for line in src.lines() {
        if line.contains(EXPECT_MARKER) {
            let start = line.find("response=\"").expect("marker line has response=") + 10;
            let end = start + line[start..].find('"').unwrap();
            out.push_str(&format!("{}{code}{}", &line[..start], &line[end..]));
            replaced += 1;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    assert_eq!(
        replaced, 1,
        "uac_expect.xml must have exactly one {EXPECT_MARKER} line"
    );
    let dir = test_dir(&format!("scenario-expect-{code}"));
    let path = dir.join(format!("uac_expect_{code}.xml"));
    fs::write(&path, out).unwrap();
    path
}

/// A copy of `uac_cancel.xml` whose caller lets the call ring `ms`
/// milliseconds (instead of 200) before it sends its CANCEL.
pub fn uac_cancel_after(ms: u64) -> PathBuf {
    const PAUSE: &str = "<pause milliseconds=\"200\"/>";
    let src = fs::read_to_string(scenario("uac_cancel.xml")).unwrap();
    assert_eq!(
        src.matches(PAUSE).count(),
        1,
        "uac_cancel.xml must have exactly one {PAUSE}"
    );
    let out = src.replace(PAUSE, &format!("<pause milliseconds=\"{ms}\"/>"));
    let path = test_dir(&format!("scenario-cancel-{ms}")).join(format!("uac_cancel_{ms}.xml"));
    fs::write(&path, out).unwrap();
    path
}

/// Each CANCEL a gateway received, with the INVITE of the same call it received before.
pub fn cancels_with_invites(gw: &SippResult) -> Vec<(SipMsg, SipMsg)> {
    gw.received_requests("CANCEL")
        .into_iter()
        .map(|c| {
            let inv = gw
                .received_requests("INVITE")
                .into_iter()
                .find(|i| i.call_id() == c.call_id())
                .unwrap_or_else(|| {
                    panic!(
                        "{}: a CANCEL for a call whose INVITE it never got:\n{}",
                        gw.name, c.text
                    )
                });
            (c.clone(), inv.clone())
        })
        .collect()
}

/// A CANCEL as RFC 3261 9.1 builds it from the INVITE it cancels.
#[track_caller]
pub fn assert_cancel_matches(c: &SipMsg, inv: &SipMsg) {
    assert_eq!(
        c.request_uri(),
        inv.request_uri(),
        "{}\n{}",
        inv.text,
        c.text
    );
    assert_eq!(
        c.top_via_branch(),
        inv.top_via_branch(),
        "{}\n{}",
        inv.text,
        c.text
    );
    assert_eq!(c.call_id(), inv.call_id());
    assert_eq!(c.cseq().map(|x| x.0), inv.cseq().map(|x| x.0));
    assert_eq!(c.cseq().map(|x| x.1), Some("CANCEL".to_string()));
    assert_eq!(c.vias().len(), 1, "one Via, the branch's:\n{}", c.text);
    assert_eq!(c.header("From"), inv.header("From"));
    assert_eq!(c.header("To"), inv.header("To"));
}

/// Per-process counter for SIPp's control (-cp) and media (-mp) ports, so
/// several SIPp instances on one test IP do not collide.
static SIPP_SEQ: AtomicU32 = AtomicU32::new(0);

/// Options of one SIPp run. Start from [`SippOpts::new`] and chain.
#[derive(Clone, Debug)]
pub struct SippOpts {
    pub transport: Transport,
    /// `-m`: stop after this many calls (UAC; for a UAS `None` = until
    /// stopped).
    pub calls: Option<u64>,
    /// `-r`: calls per second (UAC).
    pub rate: f64,
    /// `-l`: limit of simultaneous calls.
    pub limit: Option<u64>,
    /// `-timeout`: SIPp quits after this long, whatever happens.
    pub timeout: Duration,
    /// `-d`: length of the scenarios' `<pause/>` in milliseconds.
    pub pause_ms: u64,
    /// `-s`: Request-URI user (`[service]`).
    pub service: String,
    /// `-key NAME VALUE` pairs. `ruri_host` and `max_forwards` get
    /// defaults (remote address, 70) unless set here.
    pub keys: Vec<(String, String)>,
    /// Anything else, appended as is.
    pub extra: Vec<String>,
    /// Write the message log (-trace_msg). On by default; off for load.
    pub trace_msg: bool,
}

impl SippOpts {
    pub fn new(transport: Transport) -> SippOpts {
        SippOpts {
            transport,
            calls: None,
            rate: 10.0,
            limit: None,
            timeout: Duration::from_secs(30),
            pause_ms: 0,
            service: "service".into(),
            keys: Vec::new(),
            extra: Vec::new(),
            trace_msg: true,
        }
    }
    pub fn udp() -> SippOpts {
        SippOpts::new(Transport::Udp)
    }
    pub fn tcp() -> SippOpts {
        SippOpts::new(Transport::Tcp)
    }
    pub fn calls(mut self, n: u64) -> Self {
        self.calls = Some(n);
        self
    }
    pub fn rate(mut self, cps: f64) -> Self {
        self.rate = cps;
        self
    }
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }
    pub fn pause_ms(mut self, ms: u64) -> Self {
        self.pause_ms = ms;
        self
    }
    pub fn service(mut self, user: &str) -> Self {
        self.service = user.into();
        self
    }
    pub fn key(mut self, name: &str, value: &str) -> Self {
        self.keys.retain(|(k, _)| k != name);
        self.keys.push((name.into(), value.into()));
        self
    }
    /// Request-URI host part (key `ruri_host`).
    pub fn ruri_host(self, host: &str) -> Self {
        self.key("ruri_host", host)
    }
    /// Max-Forwards of uac_expect.xml's INVITE (key `max_forwards`).
    pub fn max_forwards(self, n: u32) -> Self {
        self.key("max_forwards", &n.to_string())
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.extra.push(a.into());
        self
    }
    pub fn no_trace_msg(mut self) -> Self {
        self.trace_msg = false;
        self
    }
}

/// Which side a SIPp instance plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Uas,
    Uac,
}

/// A running SIPp process (foreground child, `-nostdin`).
pub struct Sipp {
    child: Child,
    pub role: Role,
    pub name: String,
    pub dir: PathBuf,
    pub local: SocketAddr,
    pub opts: SippOpts,
    result: Option<SippResult>,
}

impl Sipp {
    /// Shortest `-timeout` of a UAS.
    pub const UAS_MIN_TIMEOUT: Duration = Duration::from_secs(120);

    /// A UAS listening at `local` (its IP and port); returns once the socket
    /// is bound (UDP) or listening (TCP). Stop it with [`Sipp::stop`]; its
    /// `-timeout` is at least [`Sipp::UAS_MIN_TIMEOUT`], so that it outlives
    /// the UAC of the test.
    pub fn uas(scenario: &Path, local: SocketAddr, mut opts: SippOpts) -> Sipp {
        opts.timeout = opts.timeout.max(Sipp::UAS_MIN_TIMEOUT);
        let mut s = Sipp::spawn(Role::Uas, scenario, local, None, opts);
        let t = s.opts.transport;
        let ok = wait_until(Duration::from_secs(10), || {
            matches!(s.child.try_wait(), Ok(None)) && is_bound(local, t)
                || !matches!(s.child.try_wait(), Ok(None))
        });
        if !matches!(s.child.try_wait(), Ok(None)) || !ok {
            let r = s.finish(None);
            panic!("SIPp UAS {} did not start:\n{r}", s.name);
        }
        s
    }

    /// A UAC at `local` sending to `remote` (normally cairn). Wait for it
    /// with [`Sipp::wait`].
    pub fn uac(scenario: &Path, local: SocketAddr, remote: SocketAddr, opts: SippOpts) -> Sipp {
        Sipp::spawn(Role::Uac, scenario, local, Some(remote), opts)
    }

    /// Runs a UAC to completion: [`Sipp::uac`] then [`Sipp::wait`].
    pub fn run_uac(
        scenario: &Path,
        local: SocketAddr,
        remote: SocketAddr,
        opts: SippOpts,
    ) -> SippResult {
        Sipp::uac(scenario, local, remote, opts).wait()
    }

    fn spawn(
        role: Role,
        scenario: &Path,
        local: SocketAddr,
        remote: Option<SocketAddr>,
        opts: SippOpts,
    ) -> Sipp {
        let stem = scenario
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("scenario");
        let name = format!(
            "{}-{}-{}",
            if role == Role::Uas { "uas" } else { "uac" },
            stem,
            local.port()
        );
        let dir = test_dir(&name);
        let seq = SIPP_SEQ.fetch_add(1, Ordering::SeqCst);
        let ip = local.ip().to_string();
        let mut args: Vec<String> = Vec::new();
        if let Some(r) = remote {
            args.push(r.to_string());
        }
        let s = |v: &str| v.to_string();
        args.extend([
            s("-sf"),
            scenario.display().to_string(),
            s("-t"),
            s(opts.transport.sipp_mode()),
            s("-i"),
            ip.clone(),
            s("-p"),
            local.port().to_string(),
            s("-mi"),
            ip.clone(),
            s("-mp"),
            (20000 + (seq % 2000) * 8).to_string(),
            s("-ci"),
            ip.clone(),
            s("-cp"),
            (9000 + seq % 2000).to_string(),
            s("-nostdin"),
            s("-timeout"),
            format!("{}s", opts.timeout.as_secs().max(1)),
            s("-timeout_error"),
            s("-d"),
            opts.pause_ms.to_string(),
            s("-s"),
            opts.service.clone(),
            s("-trace_err"),
            s("-error_file"),
            dir.join("errors.log").display().to_string(),
            s("-trace_stat"),
            s("-stf"),
            dir.join("stats.csv").display().to_string(),
            s("-fd"),
            s("1"),
            s("-trace_screen"),
            s("-screen_file"),
            dir.join("screen.log").display().to_string(),
        ]);
        if opts.trace_msg {
            args.extend([
                s("-trace_msg"),
                s("-message_file"),
                dir.join("messages.log").display().to_string(),
            ]);
        }
        if role == Role::Uac {
            args.extend([s("-r"), opts.rate.to_string()]);
            let mut keys = opts.keys.clone();
            if !keys.iter().any(|(k, _)| k == "ruri_host") {
                keys.push((
                    s("ruri_host"),
                    remote.map(|r| r.to_string()).unwrap_or_default(),
                ));
            }
            if !keys.iter().any(|(k, _)| k == "max_forwards") {
                keys.push((s("max_forwards"), s("70")));
            }
            for (k, v) in keys {
                args.extend([s("-key"), k, v]);
            }
        } else {
            for (k, v) in &opts.keys {
                args.extend([s("-key"), k.clone(), v.clone()]);
            }
        }
        if let Some(m) = opts.calls {
            args.extend([s("-m"), m.to_string()]);
        }
        if let Some(l) = opts.limit {
            args.extend([s("-l"), l.to_string()]);
        }
        args.extend(opts.extra.iter().cloned());
        fs::write(
            dir.join("command.txt"),
            format!("{} {}\n", sipp_bin().display(), args.join(" ")),
        )
        .unwrap();

        let out = fs::File::create(dir.join("stdout.log")).unwrap();
        let child = Command::new(sipp_bin())
            .args(&args)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): install SIPp (Debian package sip-tester; \
                     scripts/test.sh does it)",
                    sipp_bin().display()
                )
            });
        Sipp {
            child,
            role,
            name,
            dir,
            local,
            opts,
            result: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for SIPp to exit by itself (a UAC after `-m` calls), at most
    /// its `-timeout` plus 10 s, then kills it.
    pub fn wait(mut self) -> SippResult {
        let limit = self.opts.timeout + Duration::from_secs(10);
        self.finish(Some(limit))
    }

    /// Soft stop (SIGUSR1: no new calls, open calls run to their end), at
    /// most 15 s, then SIGKILL. The normal way to end a UAS.
    pub fn stop(mut self) -> SippResult {
        if matches!(self.child.try_wait(), Ok(None)) {
            signal(self.pid(), "USR1");
        }
        self.finish(Some(Duration::from_secs(15)))
    }

    fn finish(&mut self, limit: Option<Duration>) -> SippResult {
        if let Some(r) = &self.result {
            return r.clone();
        }
        let status = match limit.and_then(|l| wait_child(&mut self.child, l)) {
            Some(st) => Some(st),
            None => terminate(&mut self.child, Duration::from_secs(2)).filter(|_| limit.is_none()),
        };
        let r = SippResult::collect(&self.name, &self.dir, status);
        self.result = Some(r.clone());
        r
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            terminate(&mut self.child, Duration::from_secs(2));
        }
        if std::thread::panicking() {
            let r = self.finish(None);
            eprintln!(
                "===== SIPp {} ({}) =====\n{r}",
                self.name,
                self.dir.display()
            );
        }
    }
}

/// What a finished SIPp run left behind.
#[derive(Clone, Debug, Default)]
pub struct SippResult {
    pub name: String,
    pub dir: PathBuf,
    /// Exit code: 0 all calls succeeded, 1 some failed, 97 internal
    /// command / soft exit, 99 no call processed, 255 fatal; `None` if it
    /// had to be killed.
    pub exit_code: Option<i32>,
    /// SuccessfulCall(C) from the final statistics row.
    pub successful: u64,
    /// FailedCall(C).
    pub failed: u64,
    /// TotalCallCreated: for a UAS, the number of INVITEs (new calls) that
    /// reached it.
    pub created: u64,
    /// Every column of the final statistics row.
    pub stats: BTreeMap<String, String>,
    /// The message log, in order.
    pub messages: Vec<SipMsg>,
    pub errors: String,
    pub screen: String,
    pub stdout: String,
}

impl SippResult {
    fn collect(name: &str, dir: &Path, status: Option<ExitStatus>) -> SippResult {
        let stats = parse_stats_csv(&read_lossy(&dir.join("stats.csv")));
        let num = |k: &str| {
            stats
                .get(k)
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        SippResult {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            exit_code: status.and_then(|s| s.code()),
            successful: num("SuccessfulCall(C)"),
            failed: num("FailedCall(C)"),
            created: num("TotalCallCreated"),
            messages: parse_message_log(&read_lossy(&dir.join("messages.log"))),
            errors: read_lossy(&dir.join("errors.log")),
            screen: read_lossy(&dir.join("screen.log")),
            stdout: read_lossy(&dir.join("stdout.log")),
            stats,
        }
    }

    /// A numeric column of the final statistics row (0 if absent).
    pub fn stat(&self, column: &str) -> u64 {
        self.stats
            .get(column)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Asserts that SIPp exited 0 with `n` successful and no failed calls.
    #[track_caller]
    pub fn assert_all_ok(&self, n: u64) {
        assert!(
            self.exit_code == Some(0) && self.successful == n && self.failed == 0,
            "expected {n} successful calls, exit code 0, no failure:\n{self}"
        );
    }

    pub fn received(&self) -> impl Iterator<Item = &SipMsg> {
        self.messages.iter().filter(|m| m.received)
    }
    pub fn sent(&self) -> impl Iterator<Item = &SipMsg> {
        self.messages.iter().filter(|m| !m.received)
    }
    /// Requests of `method` this SIPp received.
    pub fn received_requests(&self, method: &str) -> Vec<&SipMsg> {
        self.received()
            .filter(|m| m.method() == Some(method))
            .collect()
    }
    /// Requests of `method` this SIPp sent.
    pub fn sent_requests(&self, method: &str) -> Vec<&SipMsg> {
        self.sent().filter(|m| m.method() == Some(method)).collect()
    }
    /// Responses with status `code` this SIPp received.
    pub fn received_responses(&self, code: u16) -> Vec<&SipMsg> {
        self.received()
            .filter(|m| m.status() == Some(code))
            .collect()
    }
}

impl fmt::Display for SippResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "SIPp {}: exit {:?}, created {}, successful {}, failed {} (files in {})",
            self.name,
            self.exit_code,
            self.created,
            self.successful,
            self.failed,
            self.dir.display()
        )?;
        let failures: Vec<String> = self
            .stats
            .iter()
            .filter(|(k, v)| k.starts_with("Failed") && k.ends_with("(C)") && v.trim() != "0")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !failures.is_empty() {
            writeln!(f, "  failure counters: {}", failures.join(", "))?;
        }
        if !self.errors.trim().is_empty() {
            writeln!(f, "--- errors.log (tail) ---\n{}", tail(&self.errors, 6000))?;
        }
        if self.stats.is_empty() || self.exit_code != Some(0) {
            writeln!(f, "--- stdout (tail) ---\n{}", tail(&self.stdout, 3000))?;
        }
        if !self.messages.is_empty() {
            writeln!(f, "--- first messages ({} in all) ---", self.messages.len())?;
            for m in self.messages.iter().take(12) {
                writeln!(
                    f,
                    "{} {}",
                    if m.received { "<<" } else { ">>" },
                    m.first_line()
                )?;
            }
        }
        Ok(())
    }
}

/// The last data row of a SIPp `-trace_stat` CSV, by column name.
pub fn parse_stats_csv(text: &str) -> BTreeMap<String, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else {
        return BTreeMap::new();
    };
    let Some(last) = lines.next_back() else {
        return BTreeMap::new();
    };
    header
        .split(';')
        .zip(last.split(';'))
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .collect()
}

/// One SIP message from a SIPp message log.
#[derive(Clone, Debug)]
pub struct SipMsg {
    /// true: SIPp received it; false: SIPp sent it.
    pub received: bool,
    /// "UDP" / "TCP" as SIPp wrote it.
    pub transport: String,
    /// The message with CR LF turned into LF.
    pub text: String,
}

impl SipMsg {
    /// Parses a message from its text (CR LF or LF line ends).
    pub fn parse(text: &str, received: bool) -> SipMsg {
        SipMsg {
            received,
            transport: String::new(),
            text: text.replace("\r\n", "\n"),
        }
    }

    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }
    pub fn is_response(&self) -> bool {
        self.first_line().starts_with("SIP/2.0 ")
    }
    /// The method of a request.
    pub fn method(&self) -> Option<&str> {
        if self.is_response() {
            return None;
        }
        self.first_line().split(' ').next()
    }
    /// The Request-URI of a request.
    pub fn request_uri(&self) -> Option<&str> {
        if self.is_response() {
            return None;
        }
        self.first_line().split(' ').nth(1)
    }
    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        if !self.is_response() {
            return None;
        }
        self.first_line().split(' ').nth(1)?.parse().ok()
    }
    fn header_lines(&self) -> impl Iterator<Item = &str> {
        self.text.lines().skip(1).take_while(|l| !l.is_empty())
    }
    /// Values of every header line named `name` (case-insensitive, compact
    /// forms included), in order, one entry per line.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        let compact = compact_form(name);
        self.header_lines()
            .filter_map(|l| {
                let (n, v) = l.split_once(':')?;
                let n = n.trim();
                (n.eq_ignore_ascii_case(name) || compact.is_some_and(|c| n.eq_ignore_ascii_case(c)))
                    .then(|| v.trim())
            })
            .collect()
    }
    /// The first header line named `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }
    /// Every value of a header, comma-separated values split apart (for
    /// Via, Route, Record-Route: SIPp itself joins several lines into one).
    pub fn header_list(&self, name: &str) -> Vec<String> {
        self.header_values(name)
            .iter()
            .flat_map(|v| split_commas(v))
            .collect()
    }
    /// Via values, top first.
    pub fn vias(&self) -> Vec<String> {
        self.header_list("Via")
    }
    /// The `branch` parameter of the top Via.
    pub fn top_via_branch(&self) -> Option<String> {
        param(self.vias().first()?, "branch")
    }
    pub fn call_id(&self) -> Option<&str> {
        self.header("Call-ID")
    }
    /// CSeq as (number, method).
    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.header("CSeq")?;
        let mut it = v.split_whitespace();
        Some((it.next()?.parse().ok()?, it.next()?.to_string()))
    }
    pub fn max_forwards(&self) -> Option<u32> {
        self.header("Max-Forwards")?.trim().parse().ok()
    }
}

fn compact_form(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_lowercase().as_str() {
        "via" => "v",
        "call-id" => "i",
        "from" => "f",
        "to" => "t",
        "contact" => "m",
        "content-length" => "l",
        "content-type" => "c",
        _ => return None,
    })
}

/// Splits a header value at commas outside quotes and angle brackets.
pub fn split_commas(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut cur) = (0i32, false, String::new());
    for c in v.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// A `;name=value` parameter of a header value (case-insensitive name).
pub fn param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// A parameter of the URI inside a name-addr (`<sip:h:p;lr>` -> `lr`), or
/// of a bare URI; `Some("")` for a parameter without a value.
pub fn uri_param(value: &str, name: &str) -> Option<String> {
    let uri = match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value,
    };
    param(uri, name)
}

/// Parses a SIPp `-trace_msg` log: entries start with a line of 47 dashes
/// and a timestamp, then "UDP message received [N] bytes :" or
/// "UDP message sent (N bytes):", a blank line and the message.
pub fn parse_message_log(text: &str) -> Vec<SipMsg> {
    let sep = "-----------------------------------------------";
    let mut out = Vec::new();
    for entry in text.split(&format!("{sep} ")).skip(1) {
        let mut lines = entry.lines();
        let _timestamp = lines.next();
        let Some(kind) = lines.next() else { continue };
        let received = kind.contains("message received");
        if !received && !kind.contains("message sent") {
            continue;
        }
        let transport = kind.split_whitespace().next().unwrap_or("").to_string();
        let body: Vec<&str> = lines.map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
        let start = body
            .iter()
            .position(|l| !l.trim().is_empty())
            .unwrap_or(body.len());
        let end = body
            .iter()
            .rposition(|l| !l.trim().is_empty())
            .map_or(start, |e| e + 1);
        let msg = body[start..end].join("\n");
        if msg.is_empty() {
            continue;
        }
        out.push(SipMsg {
            received,
            transport,
            text: msg,
        });
    }
    out
}

// ---------------------------------------------------------------------------
// Raw sockets
// ---------------------------------------------------------------------------

/// A plain UDP socket for hand-written SIP (malformed requests and such).
pub struct RawUdp {
    pub sock: UdpSocket,
    pub local: SocketAddr,
}

impl RawUdp {
    pub fn bind(local: SocketAddr) -> RawUdp {
        let sock = UdpSocket::bind(local).unwrap_or_else(|e| panic!("bind {local}: {e}"));
        let local = sock.local_addr().unwrap();
        RawUdp { sock, local }
    }

    pub fn send(&self, to: SocketAddr, msg: &str) {
        self.sock
            .send_to(msg.as_bytes(), to)
            .unwrap_or_else(|e| panic!("send to {to}: {e}"));
    }

    /// The next datagram within `timeout`, as text.
    pub fn recv(&self, timeout: Duration) -> Option<(String, SocketAddr)> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65535];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    return Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                Err(e) => panic!("recv on {}: {e}", self.local),
            }
        }
    }

    /// Skips datagrams until one satisfies `pred` (e.g. a final response),
    /// within `timeout`.
    pub fn recv_matching(
        &self,
        timeout: Duration,
        pred: impl Fn(&SipMsg) -> bool,
    ) -> Option<SipMsg> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (text, _) = self.recv(left)?;
            let m = SipMsg::parse(&text, true);
            if pred(&m) {
                return Some(m);
            }
        }
    }

    /// Sends `msg` to `to` and returns the first final (>= 200) response.
    pub fn request(&self, to: SocketAddr, msg: &str, timeout: Duration) -> Option<SipMsg> {
        self.send(to, msg);
        self.recv_matching(timeout, |m| m.status().is_some_and(|c| c >= 200))
    }
}

/// A gateway that never answers: a UDP socket that only counts what
/// arrives (INVITEs and everything else), until dropped.
pub struct BlackHole {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl BlackHole {
    pub fn bind(addr: SocketAddr) -> BlackHole {
        let sock = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65535];
            while !s.load(Ordering::SeqCst) {
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    r.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        });
        BlackHole {
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// Everything received so far.
    pub fn messages(&self) -> Vec<SipMsg> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|t| SipMsg::parse(t, true))
            .collect()
    }

    /// How many requests of `method` arrived (retransmissions included).
    pub fn count(&self, method: &str) -> usize {
        self.messages()
            .iter()
            .filter(|m| m.method() == Some(method))
            .count()
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A unique-enough token for hand-written messages (Call-ID, branch).
pub fn token() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{:x}{:x}{}",
        t,
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

// ---------------------------------------------------------------------------
// Configs
// ---------------------------------------------------------------------------

/// Default `[timers]` body (the RFC values, timer C 3 minutes).
pub const DEFAULT_TIMERS: &str = "t1_ms = 500\nt2_ms = 4000\nt4_ms = 5000\ntimer_c_ms = 180000\n";

/// A whole cairn config for `net`: `[log]` (level from `CAIRN_TEST_LOG`,
/// default "debug"), UDP and TCP listeners on port 5060, record_route on,
/// `[timers]` from `timers`, then `routing` (the `[[destination_set]]` and
/// `[[rule]]` tables), then `[routing] no_match = 404`.
pub fn cairn_config(net: &TestNet, timers: &str, routing: &str) -> String {
    let level = std::env::var("CAIRN_TEST_LOG").unwrap_or_else(|_| "debug".into());
    format!(
        "[log]\nlevel = \"{level}\"\nformat = \"human\"\n\n{listen}\
         [proxy]\nrecord_route = true\n\n[timers]\n{timers}\n{routing}\n\
         [routing]\nno_match = {{ code = 404, reason = \"Not Found\" }}\n",
        listen = net.listen_toml()
    )
}

/// A `[[destination_set]]` named `name` plus a `[[rule]]` sending INVITE,
/// OPTIONS and MESSAGE to it. `dests` are (port, extra inline-table keys,
/// e.g. `priority = 1`); URIs are `sip:IP:PORT` (+ `;transport=tcp`).
pub fn gateway_set(
    net: &TestNet,
    t: Transport,
    name: &str,
    algorithm: &str,
    failover_codes: &[&str],
    dests: &[(u16, &str)],
) -> String {
    let dests: Vec<String> = dests
        .iter()
        .map(|(port, extra)| {
            let uri = format!("sip:{}:{port}{}", net.ip, t.uri_param());
            if extra.is_empty() {
                format!("    {{ uri = \"{uri}\" }},")
            } else {
                format!("    {{ uri = \"{uri}\", {extra} }},")
            }
        })
        .collect();
    let codes: Vec<String> = failover_codes.iter().map(|c| format!("\"{c}\"")).collect();
    format!(
        "[[destination_set]]\nname = \"{name}\"\nalgorithm = \"{algorithm}\"\n\
         failover_codes = [{codes}]\nfailover_on_timeout = true\ndestinations = [\n{dests}\n]\n\n\
         [[rule]]\nname = \"to-{name}\"\nmethods = [\"INVITE\", \"OPTIONS\", \"MESSAGE\"]\n\
         destination_set = \"{name}\"\n\n",
        codes = codes.join(", "),
        dests = dests.join("\n")
    )
}

/// Host and port of a Via value (`SIP/2.0/UDP host:port;params`) or of the
/// URI in a name-addr (`<sip:host:port;lr>`); port `None` when absent.
pub fn host_port(value: &str) -> Option<(String, Option<u16>)> {
    let hp = if let Some(rest) = value.strip_prefix("SIP/2.0/") {
        rest.split_whitespace()
            .nth(1)?
            .split(';')
            .next()?
            .to_string()
    } else {
        let uri = match (value.find('<'), value.find('>')) {
            (Some(a), Some(b)) if a < b => &value[a + 1..b],
            _ => value,
        };
        let uri = uri.split_once(':').map(|(_, r)| r).unwrap_or(uri);
        let uri = uri.rsplit_once('@').map(|(_, r)| r).unwrap_or(uri);
        uri.split(';').next()?.to_string()
    };
    if let Some(v6) = hp.strip_prefix('[') {
        let (h, rest) = v6.split_once(']')?;
        let port = rest.strip_prefix(':').and_then(|p| p.parse().ok());
        return Some((h.to_string(), port));
    }
    match hp.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), p.parse().ok())),
        None => Some((hp, None)),
    }
}

/// Does this Via / Route / Record-Route value name `addr` (port 5060 may be
/// left out, being SIP's default)?
pub fn names(value: &str, addr: SocketAddr) -> bool {
    match host_port(value) {
        Some((h, p)) => {
            h.parse::<IpAddr>().ok() == Some(addr.ip())
                && (p == Some(addr.port()) || (p.is_none() && addr.port() == 5060))
        }
        None => false,
    }
}

// ---------------------------------------------------------------------------
// Restarts (tests/restart.rs): SIGKILL, start again on the same files,
// the admin API, SIPp message logs read while SIPp runs
// ---------------------------------------------------------------------------

impl Cairn {
    /// SIGKILL by PID (no drain, no shutdown code runs: a crash), and wait
    /// until the process is gone. Returns its exit status.
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        if self.stopped.is_none() {
            signal(self.pid(), "KILL");
            self.stopped = wait_child(&mut self.child, Duration::from_secs(10));
            assert!(
                self.stopped.is_some(),
                "cairn (pid {}) survived SIGKILL",
                self.pid()
            );
        }
        self.stopped
    }

    /// Starts cairn again after [`Cairn::kill9`] (or [`Cairn::stop`]) with
    /// the same configuration file in the same directory, so a relative
    /// `[store] path` names the same store. The log is appended to the same
    /// file after a `=== restart N ===` line. Waits until every listener is
    /// bound, as [`Cairn::start`] does.
    pub fn restart(&mut self) -> Result<(), String> {
        assert!(
            self.stopped.is_some() || !self.is_running(),
            "restart() of a running cairn"
        );
        static RESTARTS: AtomicU32 = AtomicU32::new(0);
        let n = RESTARTS.fetch_add(1, Ordering::SeqCst) + 1;
        let mut log = fs::OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .map_err(|e| format!("open log: {e}"))?;
        {
            use std::io::Write;
            let _ = writeln!(log, "=== restart {n} (test harness) ===");
        }
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        self.child = Command::new(cairn_bin())
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(&self.dir)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn cairn: {e}"))?;
        self.stopped = None;
        let mut exited = None;
        let ready = wait_until(Self::START_TIMEOUT, || {
            if let Ok(Some(st)) = self.child.try_wait() {
                exited = Some(st);
                return true;
            }
            self.listeners.iter().all(|&(t, a)| is_bound(a, t))
        });
        if let Some(st) = exited {
            self.stopped = Some(st);
            return Err(format!(
                "cairn exited during restart ({st})\n--- log ---\n{}",
                tail(&self.log(), 16 * 1024)
            ));
        }
        if !ready {
            return Err(format!(
                "cairn did not bind its listeners within {:?} after a restart",
                Self::START_TIMEOUT
            ));
        }
        Ok(())
    }
}

/// `GET path` on an HTTP/1.1 server (the admin API) over plain TCP:
/// `Some((status, body))`, `None` if it cannot be reached or answers
/// nothing within 5 s.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http_request(addr, "GET", path)
}

/// `POST path` with no body, as [`http_get`].
pub fn http_post(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http_request(addr, "POST", path)
}

fn http_request(addr: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = if method == "GET" {
        ""
    } else {
        "Content-Length: 0\r\n"
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{body}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

/// The body of a chunked HTTP/1.1 message.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of one sample of a Prometheus text exposition, e.g.
/// `metric_value(text, "cairn_records_restored{space=\"transactions\"}")`.
pub fn metric_value(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

impl Sipp {
    /// The messages SIPp has logged so far, while it is still running
    /// (SIPp flushes its `-trace_msg` log as it goes).
    pub fn messages_so_far(&self) -> Vec<SipMsg> {
        parse_message_log(&read_lossy(&self.dir.join("messages.log")))
    }

    /// How many messages logged so far satisfy `pred`.
    pub fn count_so_far(&self, pred: impl Fn(&SipMsg) -> bool) -> usize {
        self.messages_so_far().iter().filter(|m| pred(m)).count()
    }
}
