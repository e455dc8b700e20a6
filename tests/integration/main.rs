//! The one integration-test binary: real nodes on port 0, real sockets, real stores.

mod admission;
mod cluster;
mod console_gate;
mod contract_gaps;
mod delivery;
mod failover;
mod hardening;
mod helpers;
mod module_cycles;
mod mongo;
mod node;
mod ops;
mod presence_contract;
mod proof;
mod recovery_cluster;
mod recovery_contract;
mod redis_cost;
mod scale;
mod sec_app;
mod sec_engine;
mod sec_http;
mod security;
mod store_contract;
