//! cairn-routing: the routing policy of the proxy. Sans-I/O and synchronous.
//!
//! A [`Policy`] is compiled once from a [`RoutingConfig`] (the `[[destination_set]]`,
//! `[[rule]]` and `[routing]` parts of the configuration) and then answers, for each initial
//! request, with a [`Decision`]: forward along a [`Plan`] (ordered [`Target`]s, fork mode,
//! failover policy), respond with a final response, or ask an external service first
//! ([`Lookup`]: the driver performs it, then [`Policy::lookup_answer`] or
//! [`Policy::lookup_failed`] turns the outcome into a plan or a response).
//!
//! ```
//! use cairn_routing::*;
//! let cfg = RoutingConfig {
//!     destination_sets: vec![DestinationSetConfig::new(
//!         "gw", Algorithm::RoundRobin, &["sip:192.0.2.1", "sip:192.0.2.2;transport=tcp"])],
//!     rules: vec![RuleConfig {
//!         name: "all".into(), destination_set: Some("gw".into()), ..Default::default() }],
//!     ..Default::default()
//! };
//! let policy = Policy::build(&cfg).unwrap();
//! let input = RouteInput {
//!     method: "INVITE", ruri_user: Some("alice"), ruri_host: "example.com", ruri_port: None,
//!     source: "198.51.100.7:5060".parse().unwrap(), call_id: b"abc@host",
//!     now_unix_ms: 1_790_000_000_000, transport: cairn_sip::Transport::Udp, request: None,
//! };
//! let Decision::Forward(plan) = policy.route(&input) else { panic!() };
//! assert_eq!(plan.targets.len(), 2);
//! ```
//!
//! Rules can also route by least cost ([`LcrTable`]: longest-prefix match of the normalised
//! called number, carriers by priority and weight) and hold only in time windows
//! ([`TimeWindow`], in a named time zone, against [`RouteInput::now_unix_ms`]).
//!
//! Destinations live in their set behind an index ([`Target::index`]) with a shared
//! [`DestinationState`] (health, administrative override, dialog count); a
//! [`HealthTracker`] drives the health from OPTIONS probes the driver sends. The sets'
//! algorithms only order the destinations that are up.

mod cidr;
pub mod config;
mod error;
mod failover;
mod health;
pub mod host;
mod lcr;
mod lookup;
mod manip;
mod policy;
mod prefix;
mod reason;
mod rng;
mod script;
mod set;
mod time;
mod uri;

pub use cidr::Cidr;
pub use config::{
    Algorithm, CarrierConfig, CodePattern, DestinationConfig, DestinationSetConfig, HealthConfig,
    LcrConfig, LcrPrefixConfig, LookupConfig, NormalizeRule, ResponseConfig, RoutingConfig,
    RoutingSection, RuleConfig, ScriptConfig, StringList, TimeConditions, TimeWindowConfig,
    DEFAULT_LOOKUP_TIMEOUT_MS, DEFAULT_SCRIPT_MAX_INSTRUCTIONS, DEFAULT_SCRIPT_MAX_MEMORY_KB,
};
pub use error::{BuildError, KeyPath, PathSegment};
pub use failover::{CodeSet, Failover};
pub use health::{
    DestinationHealth, DestinationId, HealthSettings, HealthTracker, Probe, ProbeCounts,
    Transition, TransitionKind, UnknownDestination, MAX_PROBE_INTERVAL_MS, MAX_PROBE_THRESHOLD,
    MIN_PROBE_INTERVAL_MS,
};
pub use host::Host;
pub use lcr::{
    resolve_lcr_path, Carrier, LcrMatch, LcrRoute, LcrTable, MAX_LCR_ENTRIES, MAX_LCR_PREFIX_LEN,
    MAX_NORMALIZE_LEN,
};
pub use lookup::{
    LookupAnswer, LookupError, LookupMode, MAX_LOOKUP_TARGETS, MAX_LOOKUP_TIMEOUT_MS,
};
pub use manip::Manipulation;
pub use policy::{
    Action, Decision, ForkMode, Lookup, LookupAction, Plan, Policy, RouteInput, Rule, ScriptAction,
    Target, LOOKUP_SET_NAME, MAX_RING_TIMEOUT_MS,
};
pub use reason::{check_reason_value, standard_reason};
pub use rng::stable_hash;
pub use script::{
    MAX_SCRIPT_TARGETS, SCRIPT_HOOK_STEP, SCRIPT_INSTRUCTIONS_RANGE, SCRIPT_MEMORY_KB_RANGE,
    SCRIPT_SET_NAME,
};
pub use set::{Destination, DestinationSet, DestinationState};
pub use time::TimeWindow;

#[cfg(test)]
mod lcr_tests;
#[cfg(test)]
mod script_tests;
#[cfg(test)]
mod tests;
