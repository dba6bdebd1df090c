//! Fleet mode: `certfleet serve` holds every certificate in a database, renews centrally and
//! answers challenges centrally; `certfleet agent` on each host pulls only its own certificates,
//! installs them where its own config says, proves by a TLS handshake that the service serves
//! them, and rolls back if not.
//!
//! Data flows one way: admin CLI -> API -> database <- renewal loop -> engine -> CA;
//! agent -> API (pull, report) -> database. The server never pushes commands to hosts: the
//! agent's local config is the only source of paths and commands, so a compromised server
//! cannot make a host write outside its configured paths or run anything.

pub mod agent;
pub mod client;
pub mod db;
pub mod notify;
pub mod pki;
pub mod proto;
pub mod secretbox;
pub mod server;
pub mod tls;
pub mod token;

/// This machine's host name (gethostname(2)), if it has a usable one: named in the agent's
/// client certificate request and in the server's node id.
pub fn local_hostname() -> Option<String> {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
}
