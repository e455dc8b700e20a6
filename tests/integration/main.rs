//! The one integration-test binary: real nodes on port 0, real sockets, real stores.

mod helpers;
mod node;
mod ops;
mod store_contract;
