//! A fleet API server on 127.0.0.1, port 0: `serve_tls` with a test's Router, a fresh API
//! identity and internal CA, and a shutdown switch.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use certfleet_fleet::client::{FleetClient, FleetClientBuilder, ServerTrust};
use certfleet_fleet::pki::{InternalCa, ServerIdentity};
use certfleet_fleet::tls::{ServeOptions, serve_tls_with, server_config};
use time::OffsetDateTime;

pub struct TestServer {
    pub addr: SocketAddr,
    pub identity: ServerIdentity,
    pub ca: Arc<InternalCa>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub async fn start(app: axum::Router) -> Self {
        Self::start_with(app, ServeOptions::default()).await
    }

    pub async fn start_with(app: axum::Router, opts: ServeOptions) -> Self {
        let now = OffsetDateTime::now_utc();
        let identity = ServerIdentity::generate(&[], now).unwrap();
        let ca = Arc::new(InternalCa::generate(now).unwrap());
        let config = server_config(&identity, &ca).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_tls_with(
            listener,
            config,
            app,
            async move {
                let _ = rx.await;
            },
            opts,
        ));
        Self {
            addr,
            identity,
            ca,
            stop: Some(tx),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// A client pinning this server's certificate.
    pub fn pinned(&self) -> FleetClientBuilder {
        FleetClient::builder(&self.url(), ServerTrust::Pin(self.identity.fingerprint()))
    }

    /// Start the graceful shutdown; `task` then completes.
    pub fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
