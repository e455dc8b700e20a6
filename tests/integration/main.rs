//! The one integration-test binary: real nodes on port 0, real sockets, real stores.

mod cluster;
mod helpers;
mod module_cycles;
mod mongo;
mod node;
mod ops;
mod presence_contract;
mod security;
mod store_contract;
