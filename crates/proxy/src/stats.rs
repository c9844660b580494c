//! Counters the core keeps; the driver exports them as metrics.

/// Monotonic counters of what the core did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub requests_in: u64,
    pub responses_in: u64,
    pub parse_errors: u64,
    pub retransmissions_in: u64,
    pub requests_forwarded: u64,
    pub responses_forwarded: u64,
    pub local_finals: u64,
    pub cancels_in: u64,
    pub cancels_matched: u64,
    pub cancels_unmatched: u64,
    pub cancels_out: u64,
    /// INVITEs answered 487 because their CANCEL came first.
    pub cancelled_before_invite: u64,
    /// CANCELs that arrived while their INVITE was being routed.
    pub cancelled_while_routing: u64,
    /// Routing lookups started.
    pub lookups: u64,
    /// Transaction records queued for the store.
    pub records_written: u64,
    /// Transactions rebuilt from the store at start.
    pub records_restored: u64,
    pub dialogs_started: u64,
    pub dialogs_ended: u64,
    pub dialogs_restored: u64,
    /// Cluster: CANCELs and ACKs whose INVITE's node was looked up.
    pub owner_lookups: u64,
    /// Cluster: messages relayed to the node that owns their transaction.
    pub relayed_to_nodes: u64,
}
