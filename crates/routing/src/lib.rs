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
//!     routing: RoutingSection::default(),
//! };
//! let policy = Policy::build(&cfg).unwrap();
//! let input = RouteInput {
//!     method: "INVITE", ruri_user: Some("alice"), ruri_host: "example.com", ruri_port: None,
//!     source: "198.51.100.7:5060".parse().unwrap(), call_id: b"abc@host",
//! };
//! let Decision::Forward(plan) = policy.route(&input) else { panic!() };
//! assert_eq!(plan.targets.len(), 2);
//! ```
//!
//! Extension points: destinations live in their set behind an index ([`Target::index`]) with
//! a shared [`DestinationState`] (up/down today) for health checks; the set's algorithm only
//! orders the destinations that are up.

mod cidr;
pub mod config;
mod error;
mod failover;
pub mod host;
mod lookup;
mod policy;
mod reason;
mod rng;
mod set;
mod uri;

pub use cidr::Cidr;
pub use config::{
    Algorithm, CodePattern, DestinationConfig, DestinationSetConfig, LookupConfig, ResponseConfig,
    RoutingConfig, RoutingSection, RuleConfig, StringList, DEFAULT_LOOKUP_TIMEOUT_MS,
};
pub use error::{BuildError, KeyPath, PathSegment};
pub use failover::{CodeSet, Failover};
pub use host::Host;
pub use lookup::{
    LookupAnswer, LookupError, LookupMode, MAX_LOOKUP_TARGETS, MAX_LOOKUP_TIMEOUT_MS,
};
pub use policy::{
    Action, Decision, ForkMode, Lookup, LookupAction, Plan, Policy, RouteInput, Rule, Target,
    LOOKUP_SET_NAME, MAX_RING_TIMEOUT_MS,
};
pub use reason::{check_reason_value, standard_reason};
pub use rng::stable_hash;
pub use set::{Destination, DestinationSet, DestinationState};

#[cfg(test)]
mod tests;
