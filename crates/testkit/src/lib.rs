//! Test harness: starts REAL test parts (Pebble, nginx, certbot, acme2certifier, PostgreSQL) on free loopback
//! ports so integration tests run in parallel. Everything is synchronous; processes are stopped
//! and temp dirs removed on drop; startup failures carry the part's log.
//!
//! ```no_run
//! use certfleet_testkit::{Certbot, Nginx, Pebble};
//! # fn main() -> anyhow::Result<()> {
//! // Pebble's VA sends http-01 requests to the nginx that serves our webroot.
//! let nginx = Nginx::start()?;
//! let pebble = Pebble::builder().http_port(nginx.http_port()).validity_seconds(60).start()?;
//! let certbot = Certbot::for_pebble(&pebble)?;
//! let root = nginx.webroot().display().to_string();
//! certbot.run_ok(&["certonly", "--webroot", "-w", &root, "-d", "a.example.test",
//!     "--agree-tos", "--register-unsafely-without-email"])?;
//! let fullchain = std::fs::read(certbot.live_dir("a.example.test").join("fullchain.pem"))?;
//! assert_eq!(pebble.verify_chain(&fullchain, &["a.example.test"], std::time::SystemTime::now())?, 0);
//! # Ok(()) }
//! ```

mod http;
mod process;

pub mod a2c;
pub mod bind;
pub mod certbot;
pub mod chain;
pub mod nginx;
pub mod pebble;
pub mod ports;
pub mod postgres;
pub mod smtp;
pub mod tls;
pub mod webserver;

pub use a2c::{Acme2Certifier, Acme2CertifierBuilder};
pub use certbot::{Certbot, CertbotOutput};
pub use chain::{pem_certs, verify_chain};
pub use nginx::{Nginx, NginxBuilder};
pub use pebble::{Pebble, PebbleBuilder};
pub use ports::free_port;
pub use postgres::{PgCluster, PgDatabase};
pub use smtp::{Mail, SmtpMode, SmtpReceiver};
pub use tls::{LocalTls, localhost_tls, self_signed_pem};
