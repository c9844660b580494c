//! Routing in Lua (5.4, through mlua): a rule with `script = { file, function }` hands the
//! decision to a Lua function.
//!
//! One Lua state per [`Policy`](crate::Policy) (so one per worker: cairn's driver is one
//! thread), built with the policy from the configuration and replaced with it. Each file
//! runs once at build time in an environment of its own (its globals do not clash with
//! another file's; the standard functions are shared). The function is then called for
//! every request the rule matches, with no argument: it reads the request through the
//! functions of the `cairn` table (`cairn.ruri_user()`, `cairn.header("X-Foo")`, ...; no
//! table is built per call) and returns its decision:
//!
//! * `nil` (or nothing): the rule does not take the request; the next rules are tried;
//! * a string: the name of a destination set or of an LCR table;
//! * a list of destination URIs (`{"sip:192.0.2.10:5060", "sip:192.0.2.11;transport=tcp"}`),
//!   tried in order (`"parallel"` as a second value forks to all of them);
//! * a number: a final response code (300 to 699), the reason phrase as an optional second
//!   value.
//!
//! It may also change the forwarded request (`cairn.set_ruri_user`, `cairn.set_ruri_host`,
//! `cairn.add_header`, `cairn.remove_header`) and the CANCEL Reason
//! (`cairn.set_cancel_reason`).
//!
//! Limits: each call may run `routing.script_max_instructions` Lua VM instructions
//! (counted by a hook every 1000 instructions) and the state may hold
//! `routing.script_max_memory_kb`. Scripts cannot catch errors (no `pcall`, `xpcall`) nor
//! do I/O (no `io`, `os`, `package`, `debug`, `require`, `load`, `dofile`), so a limit
//! always ends the call. An error at run time (a Lua error, a limit, a bad return value)
//! answers the request with the rule's `script.failure` response (default 500).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cairn_sip::{HeaderName, Message, NameAddr, Transport, Uri};
use mlua::{Function, HookTriggers, Lua, LuaOptions, MultiValue, StdLib, Table, Value, VmState};

use crate::config::{ResponseConfig, ScriptConfig};
use crate::error::{BuildError, KeyPath};
use crate::manip::{other_form, Manipulation};
use crate::policy::{build_response, ForkMode, RouteInput, Target};
use crate::reason::check_reason_value;
use crate::uri::parse_destination_uri;

/// The instruction hook fires every this many Lua VM instructions.
pub const SCRIPT_HOOK_STEP: u32 = 1000;
/// The range of `routing.script_max_instructions`.
pub const SCRIPT_INSTRUCTIONS_RANGE: (u64, u64) = (1_000, 1_000_000_000);
/// The range of `routing.script_max_memory_kb`.
pub const SCRIPT_MEMORY_KB_RANGE: (u64, u64) = (256, 4 * 1024 * 1024);
/// The most targets a script may return.
pub const MAX_SCRIPT_TARGETS: usize = 16;
/// The set name written in the plans made from a script's list of targets.
pub const SCRIPT_SET_NAME: &str = "script";

/// What a name returned by a script stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Named {
    Set(usize),
    Lcr(usize),
}

/// A script's decision, before the policy turns it into a [`Decision`](crate::Decision).
#[derive(Debug)]
pub(crate) enum ScriptDecision {
    /// `nil`: try the next rules.
    Continue,
    /// A destination set or LCR table by name.
    Named(Named),
    /// Explicit targets.
    Targets(Vec<Target>, ForkMode),
    /// A final response.
    Respond(u16, Arc<str>),
}

/// Everything one call produced.
#[derive(Debug)]
pub(crate) struct ScriptResult {
    /// `Err`: the call failed (message with file and line when known).
    pub decision: Result<ScriptDecision, String>,
    /// What the script changed of the forwarded request, if anything.
    pub manipulation: Option<Manipulation>,
    /// `cairn.set_cancel_reason`.
    pub cancel_reason: Option<Arc<str>>,
}

/// One loaded function: where it came from, for logs.
struct ScriptFn {
    func: Function,
    file: Arc<str>,
}

/// The request being routed and what the script changed: the application data of the Lua
/// state during a call. The buffers are reused from call to call.
#[derive(Default)]
struct CallCtx {
    method: String,
    ruri_user: Option<String>,
    ruri_host: String,
    ruri_port: Option<u16>,
    call_id: Vec<u8>,
    source: Option<SocketAddr>,
    transport: Option<Transport>,
    request: Option<Message>,
    manipulation: Manipulation,
    cancel_reason: Option<Arc<str>>,
}

impl CallCtx {
    fn fill(&mut self, input: &RouteInput<'_>) {
        self.method.clear();
        self.method.push_str(input.method);
        match (input.ruri_user, &mut self.ruri_user) {
            (Some(u), Some(buf)) => {
                buf.clear();
                buf.push_str(u);
            }
            (Some(u), none) => *none = Some(u.to_owned()),
            (None, slot) => *slot = None,
        }
        self.ruri_host.clear();
        self.ruri_host.push_str(input.ruri_host);
        self.ruri_port = input.ruri_port;
        self.call_id.clear();
        self.call_id.extend_from_slice(input.call_id);
        self.source = Some(input.source);
        self.transport = Some(input.transport);
        self.request = input.request.cloned();
        self.manipulation = Manipulation::default();
        self.cancel_reason = None;
    }
}

/// The Lua state of a policy's script rules.
pub(crate) struct ScriptEngine {
    lua: Lua,
    functions: Vec<ScriptFn>,
    /// Environments of the files loaded, by resolved path.
    files: HashMap<PathBuf, Table>,
    names: HashMap<Box<str>, Named>,
    /// Hook steps used by the running call.
    steps: Arc<AtomicU64>,
    max_instructions: u64,
    errors: AtomicU64,
}

impl fmt::Debug for ScriptEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptEngine")
            .field("functions", &self.functions.len())
            .field("files", &self.files.len())
            .field("max_instructions", &self.max_instructions)
            .finish()
    }
}

/// A Lua error as one line with the script's file and line when Lua gave them.
fn describe(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => describe(cause),
        mlua::Error::WithContext { cause, .. } => describe(cause),
        mlua::Error::RuntimeError(m) => first_line(m),
        mlua::Error::SyntaxError { message, .. } => first_line(message),
        mlua::Error::MemoryError(_) => "memory limit reached (routing.script_max_memory_kb)".into(),
        other => first_line(&other.to_string()),
    }
}

fn first_line(m: &str) -> String {
    m.lines().next().unwrap_or("").to_owned()
}

/// `FILE:LINE: ` of the Lua code that called the running Rust function, if known.
fn caller_location(lua: &Lua) -> String {
    lua.inspect_stack(1, |d| {
        let src = d.source().short_src.map(|s| s.into_owned());
        match (src, d.current_line()) {
            (Some(s), Some(l)) => format!("{s}:{l}: "),
            _ => String::new(),
        }
    })
    .unwrap_or_default()
}

/// A run-time error raised from a `cairn` function, located at the script line that
/// called it.
fn raise(lua: &Lua, what: &str, message: impl fmt::Display) -> mlua::Error {
    mlua::Error::RuntimeError(format!("{}{what}: {message}", caller_location(lua)))
}

fn with_ctx<R>(lua: &Lua, f: impl FnOnce(&CallCtx) -> R) -> mlua::Result<R> {
    let ctx = lua
        .app_data_ref::<CallCtx>()
        .ok_or_else(|| mlua::Error::runtime("no request is being routed"))?;
    Ok(f(&ctx))
}

fn with_ctx_mut<R>(lua: &Lua, f: impl FnOnce(&mut CallCtx) -> R) -> mlua::Result<R> {
    let mut ctx = lua
        .app_data_mut::<CallCtx>()
        .ok_or_else(|| mlua::Error::runtime("no request is being routed"))?;
    Ok(f(&mut ctx))
}

/// The user part of the URI of a From or To value.
fn user_of(value: &[u8]) -> Option<&[u8]> {
    let na = NameAddr::parse(value).ok()?;
    Uri::parse(na.uri).ok()?.user
}

/// The first value of a header, by name (case-insensitive, compact forms too).
fn header_value<'m>(msg: &'m Message, name: &str) -> Option<&'m [u8]> {
    if let Some(h) = msg.headers_by_name(name.as_bytes()).next() {
        return Some(msg.slice(h.value));
    }
    if HeaderName::from_bytes(name.as_bytes()) != HeaderName::Other {
        return None;
    }
    let other = other_form(name)?;
    msg.headers_by_name(other.as_bytes())
        .next()
        .map(|h| msg.slice(h.value))
}

impl ScriptEngine {
    /// A Lua state with the safe standard libraries, the `cairn` functions and the limits.
    pub fn new(
        max_instructions: u64,
        max_memory_kb: u64,
        names: HashMap<Box<str>, Named>,
    ) -> Result<ScriptEngine, String> {
        let lua = Lua::new_with(
            StdLib::STRING | StdLib::TABLE | StdLib::MATH | StdLib::UTF8,
            LuaOptions::default(),
        )
        .map_err(|e| format!("cannot create the Lua state: {e}"))?;
        lua.set_memory_limit((max_memory_kb * 1024) as usize)
            .map_err(|e| format!("cannot limit the Lua state's memory: {e}"))?;
        let steps = Arc::new(AtomicU64::new(0));
        let max_steps = max_instructions.div_ceil(SCRIPT_HOOK_STEP as u64);
        let counter = steps.clone();
        lua.set_hook(
            HookTriggers::new().every_nth_instruction(SCRIPT_HOOK_STEP),
            move |_, debug| {
                if counter.fetch_add(1, Ordering::Relaxed) + 1 > max_steps {
                    let src = debug.source().short_src.map(|s| s.into_owned());
                    let at = match (src, debug.current_line()) {
                        (Some(s), Some(l)) => format!("{s}:{l}: "),
                        _ => String::new(),
                    };
                    return Err(mlua::Error::RuntimeError(format!(
                        "{at}instruction limit of {max_instructions} reached (routing.script_max_instructions)"
                    )));
                }
                Ok(VmState::Continue)
            },
        )
        .map_err(|e| format!("cannot set the Lua instruction hook: {e}"))?;
        lua.set_app_data(CallCtx::default());
        register(&lua).map_err(|e| format!("cannot set up the cairn functions: {e}"))?;
        Ok(ScriptEngine {
            lua,
            functions: Vec::new(),
            files: HashMap::new(),
            names,
            steps,
            max_instructions,
            errors: AtomicU64::new(0),
        })
    }

    /// Load a rule's script (its file once per engine) and return the function's index for
    /// [`run`](ScriptEngine::run).
    pub fn add(
        &mut self,
        cfg: &ScriptConfig,
        base_dir: Option<&Path>,
        path: &KeyPath,
    ) -> Result<usize, BuildError> {
        let file_key = path.key("file");
        if cfg.file.trim().is_empty() {
            return Err(BuildError::new(file_key, "empty file name"));
        }
        let resolved = match base_dir {
            Some(dir) if Path::new(&cfg.file).is_relative() => dir.join(&cfg.file),
            _ => PathBuf::from(&cfg.file),
        };
        let shown: Arc<str> = Arc::from(resolved.display().to_string());
        let env = match self.files.get(&resolved) {
            Some(env) => env.clone(),
            None => {
                let source = std::fs::read(&resolved).map_err(|e| {
                    BuildError::new(file_key.clone(), format!("cannot read {shown}: {e}"))
                })?;
                let env = self.new_env().map_err(|e| {
                    BuildError::new(file_key.clone(), format!("{shown}: {}", describe(&e)))
                })?;
                self.steps.store(0, Ordering::Relaxed);
                self.lua
                    .load(&source[..])
                    // Lua shortens chunk names to 60 characters in messages: the name
                    // as configured (usually relative) keeps FILE:LINE readable.
                    .set_name(format!("@{}", cfg.file.trim()))
                    .set_environment(env.clone())
                    .exec()
                    .map_err(|e| BuildError::new(file_key.clone(), describe(&e)))?;
                self.files.insert(resolved.clone(), env.clone());
                env
            }
        };
        let fkey = path.key("function");
        let name = cfg.function.trim();
        if name.is_empty() {
            return Err(BuildError::new(fkey, "empty function name"));
        }
        let func = match env.get::<Value>(name) {
            Ok(Value::Function(f)) => f,
            Ok(Value::Nil) => {
                return Err(BuildError::new(
                    fkey,
                    format!("{shown} defines no global function \"{name}\""),
                ))
            }
            Ok(other) => {
                return Err(BuildError::new(
                    fkey,
                    format!(
                        "\"{name}\" of {shown} is a {}, not a function",
                        other.type_name()
                    ),
                ))
            }
            Err(e) => return Err(BuildError::new(fkey, describe(&e))),
        };
        self.functions.push(ScriptFn { func, file: shown });
        Ok(self.functions.len() - 1)
    }

    /// A fresh environment for a file: its own globals, reading through to the shared ones.
    fn new_env(&self) -> mlua::Result<Table> {
        let env = self.lua.create_table()?;
        let meta = self.lua.create_table()?;
        meta.raw_set("__index", self.lua.globals())?;
        env.set_metatable(Some(meta))?;
        Ok(env)
    }

    /// The file of function `index`, for logs.
    pub fn file(&self, index: usize) -> Option<&Arc<str>> {
        self.functions.get(index).map(|f| &f.file)
    }

    /// Run-time errors so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// Call function `index` for a request.
    pub fn run(&self, index: usize, input: &RouteInput<'_>) -> ScriptResult {
        let mut result = ScriptResult {
            decision: Ok(ScriptDecision::Continue),
            manipulation: None,
            cancel_reason: None,
        };
        let Some(f) = self.functions.get(index) else {
            result.decision = Err("no such script function".into());
            return result;
        };
        let filled = with_ctx_mut(&self.lua, |c| c.fill(input));
        if let Err(e) = filled {
            result.decision = Err(describe(&e));
            return result;
        }
        self.steps.store(0, Ordering::Relaxed);
        result.decision = f
            .func
            .call::<MultiValue>(())
            .map_err(|e| describe(&e))
            .and_then(|ret| self.decision_of(ret));
        let _ = with_ctx_mut(&self.lua, |c| {
            c.request = None;
            if !c.manipulation.is_empty() {
                result.manipulation = Some(std::mem::take(&mut c.manipulation));
            }
            result.cancel_reason = c.cancel_reason.take();
        });
        if result.decision.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Interpret what the function returned.
    fn decision_of(&self, ret: MultiValue) -> Result<ScriptDecision, String> {
        let mut it = ret.into_iter();
        let first = it.next().unwrap_or(Value::Nil);
        let second = it.next().unwrap_or(Value::Nil);
        match first {
            Value::Nil => Ok(ScriptDecision::Continue),
            Value::String(s) => {
                let name = s.to_str().map_err(|_| "the returned name is not UTF-8")?;
                match self.names.get(&*name) {
                    Some(&n) => Ok(ScriptDecision::Named(n)),
                    None => Err(format!(
                        "returned \"{}\": no destination set or lcr table of that name",
                        &*name
                    )),
                }
            }
            Value::Integer(code) => {
                let reason = match second {
                    Value::Nil => None,
                    Value::String(r) => Some(r.to_string_lossy()),
                    other => {
                        return Err(format!(
                            "returned code {code} with a {} as reason: expected a string",
                            other.type_name()
                        ))
                    }
                };
                let code = u16::try_from(code).unwrap_or(0);
                let (code, reason) =
                    build_response(&ResponseConfig { code, reason }, &KeyPath::root("return"))
                        .map_err(|e| format!("returned a bad response: {}", e.message))?;
                Ok(ScriptDecision::Respond(code, reason))
            }
            Value::Number(n) => Err(format!(
                "returned {n}: a response code is an integer (300 to 699)"
            )),
            Value::Table(t) => {
                let mode = match second {
                    Value::Nil => ForkMode::Serial,
                    Value::String(m) if m.as_bytes().eq_ignore_ascii_case(b"serial") => {
                        ForkMode::Serial
                    }
                    Value::String(m) if m.as_bytes().eq_ignore_ascii_case(b"parallel") => {
                        ForkMode::Parallel
                    }
                    other => {
                        return Err(format!(
                            "returned targets with mode {}: expected \"serial\" or \"parallel\"",
                            value_text(&other)
                        ))
                    }
                };
                let n = t.raw_len();
                if n == 0 {
                    return Err("returned an empty list of targets".into());
                }
                if n > MAX_SCRIPT_TARGETS {
                    return Err(format!(
                        "returned {n} targets: at most {MAX_SCRIPT_TARGETS}"
                    ));
                }
                let mut targets: Vec<Target> = Vec::with_capacity(n);
                for i in 1..=n {
                    let text = match t.raw_get::<Value>(i) {
                        Ok(Value::String(s)) => s.to_string_lossy(),
                        Ok(other) => {
                            return Err(format!(
                                "target {i} is a {}: expected a URI string",
                                other.type_name()
                            ))
                        }
                        Err(e) => return Err(describe(&e)),
                    };
                    let (addr, transport) = parse_destination_uri(&text)
                        .and_then(|u| u.resolve(None))
                        .map_err(|m| format!("target {i}: {m}"))?;
                    if let Some(k) = targets
                        .iter()
                        .position(|t| t.addr == addr && t.transport == transport)
                    {
                        return Err(format!(
                            "target {i}: {transport} {addr} is already target {}",
                            k + 1
                        ));
                    }
                    targets.push(Target {
                        addr,
                        transport,
                        rewrite_ruri_host: false,
                        name: Arc::from(text.as_str()),
                        index: i - 1,
                    });
                }
                Ok(ScriptDecision::Targets(targets, mode))
            }
            other => Err(format!(
                "returned a {}: expected nil, a set name, a list of targets or a response code",
                other.type_name()
            )),
        }
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => format!("\"{}\"", s.to_string_lossy()),
        other => format!("a {}", other.type_name()),
    }
}

/// The `cairn` table and the standard functions a script may not have.
fn register(lua: &Lua) -> mlua::Result<()> {
    let g = lua.globals();
    for name in ["dofile", "loadfile", "load", "require", "pcall", "xpcall"] {
        g.raw_set(name, Value::Nil)?;
    }
    let cairn = lua.create_table()?;

    cairn.raw_set(
        "method",
        lua.create_function(|lua, ()| with_ctx(lua, |c| lua.create_string(&c.method))?)?,
    )?;
    cairn.raw_set(
        "ruri_user",
        lua.create_function(|lua, ()| {
            with_ctx(lua, |c| {
                c.ruri_user
                    .as_deref()
                    .map(|u| lua.create_string(u))
                    .transpose()
            })?
        })?,
    )?;
    cairn.raw_set(
        "ruri_host",
        lua.create_function(|lua, ()| with_ctx(lua, |c| lua.create_string(&c.ruri_host))?)?,
    )?;
    cairn.raw_set(
        "ruri_port",
        lua.create_function(|lua, ()| with_ctx(lua, |c| c.ruri_port))?,
    )?;
    cairn.raw_set(
        "ruri",
        lua.create_function(|lua, ()| {
            with_ctx(lua, |c| {
                c.request
                    .as_ref()
                    .map(|m| lua.create_string(m.request_uri_bytes()))
                    .transpose()
            })?
        })?,
    )?;
    cairn.raw_set(
        "call_id",
        lua.create_function(|lua, ()| with_ctx(lua, |c| lua.create_string(&c.call_id))?)?,
    )?;
    cairn.raw_set(
        "from_user",
        lua.create_function(|lua, ()| {
            with_ctx(lua, |c| {
                c.request
                    .as_ref()
                    .and_then(|m| user_of(m.from_value()))
                    .map(|u| lua.create_string(u))
                    .transpose()
            })?
        })?,
    )?;
    cairn.raw_set(
        "to_user",
        lua.create_function(|lua, ()| {
            with_ctx(lua, |c| {
                c.request
                    .as_ref()
                    .and_then(|m| user_of(m.to_value()))
                    .map(|u| lua.create_string(u))
                    .transpose()
            })?
        })?,
    )?;
    cairn.raw_set(
        "header",
        lua.create_function(|lua, name: mlua::LuaString| {
            let name = name.to_str()?;
            with_ctx(lua, |c| {
                c.request
                    .as_ref()
                    .and_then(|m| header_value(m, &name))
                    .map(|v| lua.create_string(v))
                    .transpose()
            })?
        })?,
    )?;
    cairn.raw_set(
        "source_ip",
        lua.create_function(|lua, ()| with_ctx(lua, |c| c.source.map(|s| s.ip().to_string())))?,
    )?;
    cairn.raw_set(
        "source_port",
        lua.create_function(|lua, ()| with_ctx(lua, |c| c.source.map(|s| s.port())))?,
    )?;
    cairn.raw_set(
        "transport",
        lua.create_function(|lua, ()| with_ctx(lua, |c| c.transport.map(|t| t.name())))?,
    )?;

    cairn.raw_set(
        "set_ruri_user",
        lua.create_function(|lua, user: mlua::LuaString| {
            let user = user.to_str()?;
            with_ctx_mut(lua, |c| c.manipulation.set_ruri_user(&user))?
                .map_err(|m| raise(lua, "cairn.set_ruri_user", m))
        })?,
    )?;
    cairn.raw_set(
        "set_ruri_host",
        lua.create_function(|lua, (host, port): (mlua::LuaString, Option<u16>)| {
            let host = host.to_str()?;
            let text = match port {
                Some(p) => format!("{}:{p}", &*host),
                None => host.to_string(),
            };
            with_ctx_mut(lua, |c| c.manipulation.set_ruri_host(&text))?
                .map_err(|m| raise(lua, "cairn.set_ruri_host", m))
        })?,
    )?;
    cairn.raw_set(
        "add_header",
        lua.create_function(
            |lua, (name, value): (mlua::LuaString, Option<mlua::LuaString>)| {
                let name = name.to_str()?;
                let r = match value {
                    Some(v) => {
                        let v = v.to_str()?;
                        with_ctx_mut(lua, |c| c.manipulation.add_header(name.trim(), v.trim()))?
                    }
                    None => with_ctx_mut(lua, |c| c.manipulation.add_header_line(&name))?,
                };
                r.map_err(|m| raise(lua, "cairn.add_header", m))
            },
        )?,
    )?;
    cairn.raw_set(
        "remove_header",
        lua.create_function(|lua, name: mlua::LuaString| {
            let name = name.to_str()?;
            with_ctx_mut(lua, |c| c.manipulation.remove_header(name.trim()))?
                .map_err(|m| raise(lua, "cairn.remove_header", m))
        })?,
    )?;
    cairn.raw_set(
        "set_cancel_reason",
        lua.create_function(|lua, value: mlua::LuaString| {
            let value = value.to_str()?;
            check_reason_value(&value).map_err(|m| raise(lua, "cairn.set_cancel_reason", m))?;
            with_ctx_mut(lua, |c| c.cancel_reason = Some(Arc::from(value.trim())))
        })?,
    )?;
    let log = lua.create_function(|lua, args: MultiValue| {
        let at = caller_location(lua);
        let text: Vec<String> = args
            .iter()
            .map(|v| match v {
                Value::String(s) => s.to_string_lossy(),
                other => format!("{other:?}"),
            })
            .collect();
        tracing::info!(target: "cairn_routing::script", "{at}{}", text.join(" "));
        Ok(())
    })?;
    cairn.raw_set("log", log.clone())?;
    g.raw_set("print", log)?;
    g.raw_set("cairn", cairn)?;
    Ok(())
}
