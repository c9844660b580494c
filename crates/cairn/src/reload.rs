//! Live reload of the configuration (SIGHUP, `POST /reload`).
//!
//! The file and the tables it names (LCR CSV files) are read and checked
//! off the event loop, in a blocking thread, exactly as at start
//! ([`config::load`]); a configuration that does not pass is refused with
//! its reason (file, line, key path) and the running one stays in force.
//! One that passes is swapped in by the driver between two events: the
//! routing policy (rules, destination sets with their health checks, LCR
//! tables, `[routing]`) and `[cancel]`. Calls in flight keep the targets
//! they were routed to; destinations that remain keep their health state.
//!
//! The other sections need a restart ([`RESTART_ONLY`]): a reload that
//! changes one of them says so and keeps its running value.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use crate::admin::Reply;
use crate::config::{
    self, AdminSettings, Config, ConfigError, DialogSettings, Listen, LogConfig, ProxyConfig,
    StoreSettings, Timers,
};

/// The sections a reload does not change: they take effect at the next
/// start.
pub const RESTART_ONLY: [&str; 7] = [
    "log", "listen", "proxy", "timers", "store", "dialogs", "admin",
];

/// The running values of the sections a reload cannot change.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartOnly {
    log: LogConfig,
    listen: Vec<Listen>,
    proxy: ProxyConfig,
    timers: Timers,
    store: StoreSettings,
    dialogs: DialogSettings,
    admin: AdminSettings,
}

impl RestartOnly {
    pub fn of(cfg: &Config) -> RestartOnly {
        RestartOnly {
            log: cfg.log.clone(),
            listen: cfg.listen.clone(),
            proxy: cfg.proxy.clone(),
            timers: cfg.timers,
            store: cfg.store.clone(),
            dialogs: cfg.dialogs,
            admin: cfg.admin,
        }
    }

    /// The sections of `new` that differ from the running values, in the
    /// order of [`RESTART_ONLY`].
    pub fn changed_in(&self, new: &Config) -> Vec<&'static str> {
        let n = RestartOnly::of(new);
        let differs = [
            self.log != n.log,
            self.listen != n.listen,
            self.proxy != n.proxy,
            self.timers != n.timers,
            self.store != n.store,
            self.dialogs != n.dialogs,
            self.admin != n.admin,
        ];
        RESTART_ONLY
            .iter()
            .zip(differs)
            .filter_map(|(name, d)| d.then_some(*name))
            .collect()
    }
}

/// A configuration read and checked for a reload.
pub struct Loaded {
    pub config: Config,
    /// Reading, parsing and building (tables included).
    pub load_time: Duration,
}

/// What one reload read: the new configuration, or why it was refused.
pub type LoadResult = Result<Loaded, ConfigError>;

/// Read and check the configuration at `path` (blocking: files are read).
pub fn load(path: &Path) -> LoadResult {
    let start = Instant::now();
    let config = config::load(path)?;
    Ok(Loaded {
        config,
        load_time: start.elapsed(),
    })
}

/// Reloads asked for and in progress. Requests that arrive while one runs
/// are served by one more run after it (the file may have changed since it
/// was read), never by the result of a read that started before them.
pub struct Reloader {
    path: PathBuf,
    running: RestartOnly,
    in_progress: bool,
    /// Who waits for the reload in progress (`None`: a SIGHUP).
    waiting: Vec<Option<oneshot::Sender<Reply>>>,
    /// Who asked while it ran.
    queued: Vec<Option<oneshot::Sender<Reply>>>,
    tx: mpsc::UnboundedSender<LoadResult>,
}

impl Reloader {
    /// A reloader of the file `path`, which `cfg` was loaded from. Results
    /// come back on the receiver: hand each to [`Reloader::finished`].
    pub fn new(path: PathBuf, cfg: &Config) -> (Reloader, mpsc::UnboundedReceiver<LoadResult>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let r = Reloader {
            path,
            running: RestartOnly::of(cfg),
            in_progress: false,
            waiting: Vec::new(),
            queued: Vec::new(),
            tx,
        };
        (r, rx)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Ask for a reload; `reply` gets its outcome.
    pub fn request(&mut self, reply: Option<oneshot::Sender<Reply>>) {
        if self.in_progress {
            self.queued.push(reply);
            return;
        }
        self.waiting.push(reply);
        self.start();
    }

    fn start(&mut self) {
        self.in_progress = true;
        info!(file = %self.path.display(), "reloading the configuration");
        let path = self.path.clone();
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(load(&path));
        });
    }

    /// The sections of a new configuration that need a restart, each
    /// logged at warn: their running values stay.
    pub fn restart_only_changes(&self, new: &Config) -> Vec<&'static str> {
        let changed = self.running.changed_in(new);
        for section in &changed {
            warn!(
                section,
                file = %self.path.display(),
                "[{section}] changed, but it is read at start only: the running value stays until a restart"
            );
        }
        changed
    }

    /// A reload is over: answer whoever waited for it with `reply`, and
    /// start the next one if more were asked for meanwhile.
    pub fn finished(&mut self, reply: &Reply) {
        self.in_progress = false;
        for w in self.waiting.drain(..).flatten() {
            let _ = w.send(reply.clone());
        }
        if !self.queued.is_empty() {
            self.waiting = std::mem::take(&mut self.queued);
            self.start();
        }
    }

    /// The answer to a refused reload, logged at error.
    pub fn refused(&self, e: &ConfigError) -> Reply {
        error!(error = %e, "configuration reload refused: the running configuration stays in force");
        let mut body = serde_json::json!({
            "result": "refused",
            "error": e.to_string(),
            "file": e.origin,
            "message": e.message,
        });
        if let Some((line, column)) = e.location {
            body["line"] = line.into();
            body["column"] = column.into();
        }
        if let Some(key) = &e.key {
            body["key"] = key.as_str().into();
        }
        Reply {
            status: 400,
            body: body.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[[listen]]\ntransport = \"udp\"\naddress = \"127.0.0.1:5060\"\n";

    fn cfg(text: &str) -> Config {
        config::parse(text, "t.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn restart_only_sections_are_named() {
        let running = RestartOnly::of(&cfg(BASE));
        let same = cfg(&format!(
            "{BASE}[cancel]\nunmatched = \"forward\"\n[[destination_set]]\nname = \"g\"\n\
             destinations = [{{ uri = \"sip:10.0.0.1\" }}]\n"
        ));
        assert_eq!(
            running.changed_in(&same),
            Vec::<&str>::new(),
            "routing and cancel reload"
        );
        let changed = cfg(&format!(
            "[log]\nlevel = \"debug\"\n{BASE}[[listen]]\ntransport = \"tcp\"\naddress = \"127.0.0.1:5060\"\n\
             [timers]\nt1_ms = 250\n[store]\ndurability = \"off\"\n[dialogs]\nenabled = true\n\
             [admin]\nlisten = \"127.0.0.1:8080\"\n[proxy]\nrecord_route = false\n"
        ));
        assert_eq!(running.changed_in(&changed), RESTART_ONLY.to_vec());
    }

    #[test]
    fn a_refusal_names_file_line_and_key() {
        let e = config::parse(
            &format!("{BASE}[[destination_set]]\nname = \"g\"\nalgorithm = \"sideways\"\n"),
            "cairn.toml",
        )
        .err()
        .unwrap();
        let (r, _rx) = Reloader::new("cairn.toml".into(), &cfg(BASE));
        let reply = r.refused(&e);
        assert_eq!(reply.status, 400);
        let v: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        assert_eq!(v["result"], "refused");
        assert_eq!(v["file"], "cairn.toml");
        assert_eq!(v["line"], 6);
        assert_eq!(v["key"], "destination_set[0].algorithm");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .starts_with("cairn.toml:6:13: destination_set[0].algorithm: unknown variant"),
            "{v}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn requests_during_a_reload_get_a_reload_of_their_own() {
        let dir = std::env::temp_dir().join(format!("cairn-reload-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cairn.toml");
        std::fs::write(&path, BASE).unwrap();
        let (mut r, mut rx) = Reloader::new(path.clone(), &cfg(BASE));
        let (a_tx, a_rx) = oneshot::channel();
        let (b_tx, b_rx) = oneshot::channel();
        r.request(Some(a_tx));
        r.request(None);
        r.request(Some(b_tx));
        let first = rx.recv().await.unwrap();
        assert!(first.is_ok());
        // The file changes after the first read: the queued requests see the change.
        std::fs::write(&path, "[[listen]]\n").unwrap();
        r.finished(&Reply::ok("first".into()));
        assert_eq!(a_rx.await.unwrap().body, "first");
        let second = rx.recv().await.unwrap();
        let e = second.err().expect("the broken file");
        assert_eq!(e.key.as_deref(), Some("listen[0]"));
        r.finished(&r.refused(&e));
        assert_eq!(b_rx.await.unwrap().status, 400);
        assert!(!r.in_progress);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
