//! Test harness: starts REAL test parts (Pebble, nginx, certbot, acme2certifier) on free loopback
//! ports so integration tests run in parallel. Everything is synchronous; processes are stopped
//! and temp dirs removed on drop; startup failures carry the part's log.

mod http;
mod process;

pub mod a2c;
pub mod bind;
pub mod certbot;
pub mod chain;
pub mod nginx;
pub mod pebble;
pub mod ports;
pub mod tls;

pub use a2c::{Acme2Certifier, Acme2CertifierBuilder};
pub use certbot::{Certbot, CertbotOutput};
pub use chain::{pem_certs, verify_chain};
pub use nginx::{Nginx, NginxBuilder};
pub use pebble::{Pebble, PebbleBuilder};
pub use ports::free_port;
pub use tls::{LocalTls, localhost_tls, self_signed_pem};
