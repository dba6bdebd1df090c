//! `certfleet serve`: the database, the HTTPS API ([`api::app`]), the http-01 responder
//! ([`http01::responder`]) and the renewal loop ([`renewal::RenewalLoop`]) in one process.
//!
//! First start in a data dir makes what the server needs and tells the operator where it is:
//! the API's self-signed certificate and its fingerprint (`api.fingerprint`), the admin token
//! (`admin.token`, 0600; only its hash is stored), the internal CA that issues agents' client
//! certificates (kept in the database, so every node of a shared PostgreSQL has the same one),
//! and the key file that seals server-custody private keys (`custody.key`, 0600).

pub mod alerts;
pub mod api;
pub mod auth;
pub mod dashboard;
pub mod error;
pub mod http01;
pub mod metrics;
pub mod openapi;
pub mod renewal;
pub mod state;
pub mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use certfleet_core::Clock;
use tokio::net::TcpListener;

use crate::db::{DbError, FleetDb};
use crate::pki::{InternalCa, PkiError, ServerIdentity};
use crate::secretbox::{SecretBox, SecretBoxError};
pub use renewal::AcmeSettings;
pub use state::AppState;

pub const DB_FILE: &str = "fleet.db";
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
pub const CUSTODY_KEY_FILE: &str = "custody.key";
pub const API_URL_FILE: &str = "api.url";
/// This node's lease owner name (see [`node_id`]).
pub const NODE_ID_FILE: &str = "node.id";
const CA_CERT_SETTING: &str = "internal-ca-cert";
const CA_KEY_SETTING: &str = "internal-ca-key";
const ADMIN_TOKEN_SETTING: &str = "admin-token-created";

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    /// `postgres://...`; `None`: SQLite in `data_dir/fleet.db`.
    pub database_url: Option<String>,
    pub listen: SocketAddr,
    pub http01_listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub tls_files: Option<(PathBuf, PathBuf)>,
    pub api_names: Vec<String>,
    pub custody_key_file: Option<PathBuf>,
    pub jobs: usize,
    pub acme: AcmeSettings,
    /// `--metrics-token FILE`: `/metrics` then needs `Authorization: Bearer <its contents>`.
    pub metrics_token_file: Option<PathBuf>,
    /// Alerts: channels (`--smtp-url`, `--notify-*`) and when to send.
    pub notify: crate::notify::NotifyConfig,
    /// The served-certificate watch (`--watch-interval`, `--watch-roots`).
    pub watch: watch::WatchConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Store(certfleet_store::StoreError),
    #[error("another certfleet serve is running with data dir {}: stop it first, or give this one its own --data-dir", .0.display())]
    Locked(PathBuf),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    SecretBox(#[from] SecretBoxError),
    #[error("the metrics token file {} is empty: put a random token in it (e.g. `openssl rand -hex 32`)", .0.display())]
    EmptyMetricsToken(PathBuf),
    #[error("notifications: {0}")]
    Notify(#[from] crate::notify::NotifyError),
    #[error(
        "cannot listen on {addr} ({what}): {source}; is another server running there? choose another with {flag}"
    )]
    Listen {
        what: &'static str,
        flag: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// What the first start made, for the operator.
#[derive(Debug)]
pub struct Started {
    pub api_url: String,
    pub fingerprint: String,
    pub admin_token_file: Option<PathBuf>,
    pub http01: Option<SocketAddr>,
    pub database: String,
}

/// Open everything, bind the listeners, then serve until `shutdown`. `on_started` is told the
/// bound addresses (tests bind port 0).
pub async fn run(
    cfg: ServeConfig,
    clock: Arc<dyn Clock>,
    on_started: impl FnOnce(&Started),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let dir = &cfg.data_dir;
    create_private_dir(dir)?;
    // One server per data dir: a second would share its node id and leases.
    let _lock = certfleet_store::lock::DirLock::acquire(dir).map_err(|e| match e {
        certfleet_store::StoreError::Locked { .. } => ServeError::Locked(dir.clone()),
        e => ServeError::Store(e),
    })?;
    let node = node_id(dir)?;
    let target = cfg
        .database_url
        .clone()
        .unwrap_or_else(|| dir.join(DB_FILE).to_string_lossy().into_owned());
    let db = FleetDb::open(&target).await?;
    let now = clock.now();

    let identity = match &cfg.tls_files {
        Some((cert, key)) => ServerIdentity::from_files(cert, key)?,
        None => ServerIdentity::load_or_create(dir, &cfg.api_names, now)?.0,
    };
    let fingerprint = identity.fingerprint();
    let ca = internal_ca(&db, clock.as_ref()).await?;
    let admin_token_file = first_admin_token(&db, dir, now.unix_timestamp()).await?;
    let custody_path = cfg
        .custody_key_file
        .clone()
        .unwrap_or_else(|| dir.join(CUSTODY_KEY_FILE));
    let secretbox = if custody_path.exists() {
        SecretBox::from_key_file(&custody_path)?
    } else {
        crate::secretbox::generate_key_file(&custody_path)?
    };

    let metrics_token = match &cfg.metrics_token_file {
        Some(path) => Some(read_metrics_token(path)?),
        None => None,
    };

    // Before binding: a wrong notification flag stops the start, not the first alert.
    let notifier = Arc::new(crate::notify::Notifier::from_config(&cfg.notify)?);

    let api_listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServeError::Listen {
            what: "API",
            flag: "--listen",
            addr: cfg.listen,
            source,
        })?;
    let api_addr = api_listener.local_addr().map_err(|source| ServeError::Listen {
        what: "API",
        flag: "--listen",
        addr: cfg.listen,
        source,
    })?;
    let http01 = match cfg.http01_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Listen {
                    what: "http-01 responder",
                    flag: "--http-01-listen",
                    addr,
                    source,
                })?,
        ),
        None => None,
    };
    let http01_addr = http01.as_ref().and_then(|l| l.local_addr().ok());
    let public_url = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("https://{api_addr}"));
    // `certfleet fleet --data-dir DIR` on this machine finds the API here (whole or not at all:
    // a client may read it the moment the port answers).
    certfleet_store::atomic::write_file(
        &dir.join(API_URL_FILE),
        format!("{public_url}\n").as_bytes(),
        0o644,
    )
    .map_err(ServeError::Store)?;

    let state = AppState {
        db: db.clone(),
        clock: clock.clone(),
        ca: Arc::new(ca),
        secretbox: Arc::new(secretbox),
        public_url: public_url.clone(),
        fingerprint: fingerprint.clone(),
        limiter: Arc::default(),
        wake: Arc::default(),
        http01_enabled: http01.is_some(),
        metrics: Arc::default(),
        metrics_token,
    };
    on_started(&Started {
        api_url: public_url,
        fingerprint,
        admin_token_file,
        http01: http01_addr,
        database: db.target().to_string(),
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Leases this node still holds were left by a run that was killed: take them back now.
    let released = db.release_leases_of(&node).await?;
    if released > 0 {
        tracing::warn!(
            "released {released} renewal lease(s) left by an earlier run of node {node} (crash or kill)"
        );
    }
    let renewals = Arc::new(renewal::RenewalLoop::new(
        state.clone(),
        cfg.acme.clone(),
        node,
        cfg.jobs,
        dir.join("dns-pending"),
    ));
    let renew_task = tokio::spawn(renewals.run(stop_rx.clone()));
    let alert_watch = alerts::AlertWatch {
        db: db.clone(),
        clock: clock.clone(),
        notifier: notifier.clone(),
        settings: alerts::WatchSettings {
            host_silent_after: cfg
                .notify
                .host_silent_after
                .unwrap_or(crate::notify::DEFAULT_HOST_SILENT_AFTER),
            digest_at: cfg.notify.digest_at,
            interval: cfg.notify.interval.unwrap_or(alerts::DEFAULT_INTERVAL),
            server_url: state.public_url.clone(),
            default_ca: cfg.acme.server.clone(),
        },
    };
    if !notifier.is_empty() {
        tracing::info!("alerts go to: {}", notifier.labels().join("; "));
    }
    let alerts_task = tokio::spawn(alert_watch.run(stop_rx.clone()));
    let watcher = Arc::new(watch::Watch::new(db.clone(), clock.clone(), cfg.watch.clone()));
    let watch_task = tokio::spawn(watcher.run(stop_rx.clone()));
    let http01_task = http01.map(|listener| {
        let app = http01::responder(db.clone(), clock.clone());
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let graceful = async move {
                let _ = stop.changed().await;
            };
            if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(graceful).await {
                tracing::error!("http-01 responder: {e}");
            }
        })
    });
    let tls = crate::tls::server_config(&identity, &state.ca)?;
    let mut stop_api = stop_rx.clone();
    let api_task = tokio::spawn(crate::tls::serve_tls(
        api_listener,
        tls,
        api::app(state).layer(axum::Extension(notifier)),
        async move {
            let _ = stop_api.changed().await;
        },
    ));

    shutdown.await;
    tracing::info!("shutting down: finishing renewals in flight");
    let _ = stop_tx.send(true);
    let _ = api_task.await;
    if let Some(t) = http01_task {
        let _ = t.await;
    }
    let _ = renew_task.await;
    let _ = watch_task.await;
    let _ = alerts_task.await;
    db.close().await;
    Ok(())
}

/// The metrics token: the file's contents, trimmed (a trailing newline is not part of it).
fn read_metrics_token(path: &Path) -> Result<Arc<str>, ServeError> {
    let text = std::fs::read_to_string(path).map_err(|source| ServeError::Io {
        what: "cannot read the metrics token file",
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ServeError::EmptyMetricsToken(path.to_path_buf()));
    }
    Ok(Arc::from(token))
}

fn create_private_dir(dir: &Path) -> Result<(), ServeError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| ServeError::Io {
            what: "cannot create the data directory",
            path: dir.to_path_buf(),
            source,
        })
}

/// This node's name in renewal leases: made once per data dir (host name and a random part,
/// so nodes sharing a PostgreSQL database differ) and kept, so a restarted node knows its own
/// leases.
fn node_id(dir: &Path) -> Result<String, ServeError> {
    let path = dir.join(NODE_ID_FILE);
    let io = |what, source| ServeError::Io {
        what,
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io("cannot read the node id", e)),
    }
    let host = crate::local_hostname().unwrap_or_else(|| "node".into());
    let id = format!("{host}-{:08x}", rand::random::<u32>());
    certfleet_store::atomic::write_file(&path, format!("{id}\n").as_bytes(), 0o644)
        .map_err(ServeError::Store)?;
    Ok(id)
}

/// The internal CA, from the database (made and stored on the very first start).
async fn internal_ca(db: &FleetDb, clock: &dyn Clock) -> Result<InternalCa, ServeError> {
    let now = clock.now();
    if let (Some(cert), Some(key)) = (
        db.setting(CA_CERT_SETTING).await?,
        db.setting(CA_KEY_SETTING).await?,
    ) {
        return Ok(InternalCa::from_pem(&cert, &key)?);
    }
    let ca = InternalCa::generate(now)?;
    db.put_setting(CA_CERT_SETTING, ca.cert_pem(), now.unix_timestamp())
        .await?;
    db.put_setting(CA_KEY_SETTING, &ca.key_pem(), now.unix_timestamp())
        .await?;
    Ok(ca)
}

/// On the database's first start, make the admin token and write it to `DIR/admin.token`
/// (0600). Later starts (and other nodes) leave it alone. Returns the file when made now.
async fn first_admin_token(db: &FleetDb, dir: &Path, now: i64) -> Result<Option<PathBuf>, ServeError> {
    if db.setting(ADMIN_TOKEN_SETTING).await?.is_some() {
        return Ok(None);
    }
    let token = crate::token::new_admin_token();
    let path = dir.join(ADMIN_TOKEN_FILE);
    write_private(&path, &format!("{token}\n"))?;
    db.put_admin_token(&crate::token::hash_secret(&token), "initial", now)
        .await?;
    db.put_setting(ADMIN_TOKEN_SETTING, &now.to_string(), now).await?;
    Ok(Some(path))
}

/// Write a secret file: created 0600 whatever the umask, complete or not at all.
pub fn write_private(path: &Path, text: &str) -> Result<(), ServeError> {
    certfleet_store::atomic::write_file(path, text.as_bytes(), 0o600).map_err(|e| ServeError::Io {
        what: "cannot write",
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })
}
