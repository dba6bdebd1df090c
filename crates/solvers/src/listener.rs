//! Challenge listeners shared within the process, one per address.
//!
//! A renewal pass renews several lineages at once, and their standalone (http-01) or
//! tls-alpn-01 authenticators usually want the same port. Binding once and answering every
//! lineage's challenges from that one listener lets them run side by side; a bind per lineage
//! made all but one fail with "address already in use". Port 0 (tests) is never shared.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::SolverError;

#[derive(Default)]
struct Registry {
    /// Address -> (challenge kind, the listener while anyone holds it).
    live: HashMap<SocketAddr, (&'static str, Weak<dyn Any + Send + Sync>)>,
    /// Accept loops told to stop whose socket may still be open: tokio drops an aborted task,
    /// and so closes its listener, only when the runtime next polls it. Binding the same
    /// address again waits for them.
    stopping: HashMap<SocketAddr, JoinHandle<()>>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);
/// Held while binding, so two callers wanting one address share it instead of racing for it.
static BINDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// A bound challenge listener and the state its accept loop answers from. The loop stops when
/// the last holder drops it.
pub(crate) struct Listener<S> {
    kind: &'static str,
    requested: SocketAddr,
    local: SocketAddr,
    state: S,
    task: Option<JoinHandle<()>>,
}

impl<S> Listener<S> {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn state(&self) -> &S {
        &self.state
    }
}

impl<S> Drop for Listener<S> {
    fn drop(&mut self) {
        let Some(task) = self.task.take() else {
            return;
        };
        task.abort();
        if self.requested.port() == 0 {
            return;
        }
        let mut reg = registry();
        if reg
            .live
            .get(&self.requested)
            .is_some_and(|(_, w)| w.strong_count() == 0)
        {
            reg.live.remove(&self.requested);
        }
        reg.stopping.insert(self.requested, task);
    }
}

/// What a failed bind means for the user, given the error and the address.
pub(crate) type BindHint = fn(&std::io::Error, SocketAddr) -> String;

/// The `kind` listener on `addr`: the one this process already has there, or one bound now (so
/// a taken port fails before any CA request) with `serve` running its accept loop on `state`.
pub(crate) async fn shared<S, F, Fut>(
    addr: SocketAddr,
    kind: &'static str,
    state: impl FnOnce() -> S,
    hint: BindHint,
    serve: F,
) -> Result<Arc<Listener<S>>, SolverError>
where
    S: Clone + Send + Sync + 'static,
    F: FnOnce(TcpListener, S) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let share = addr.port() != 0;
    let _gate = if share { Some(BINDING.lock().await) } else { None };
    if share {
        let stopping = {
            let mut reg = registry();
            if let Some((held_by, weak)) = reg.live.get(&addr)
                && let Some(any) = weak.upgrade()
            {
                if *held_by != kind {
                    return Err(SolverError::Setup(format!(
                        "{addr} is already answering this run's {held_by} challenges: give {kind} another port"
                    )));
                }
                return Ok(any
                    .downcast::<Listener<S>>()
                    .expect("one state type per challenge kind"));
            }
            reg.stopping.remove(&addr)
        };
        if let Some(task) = stopping {
            let _ = task.await;
        }
    }
    let listener = bind_retrying(addr, share).await.map_err(|e| SolverError::Io {
        context: hint(&e, addr),
        source: e,
    })?;
    let local = listener.local_addr().map_err(|e| SolverError::Io {
        context: format!("cannot read the address bound for {addr}"),
        source: e,
    })?;
    let state = state();
    let task = tokio::spawn(serve(listener, state.clone()));
    let l = Arc::new(Listener {
        kind,
        requested: addr,
        local,
        state,
        task: Some(task),
    });
    if share {
        let weak: Weak<dyn Any + Send + Sync> = Arc::downgrade(&l) as _;
        registry().live.insert(addr, (l.kind, weak));
    }
    Ok(l)
}

/// Bind `addr`. A shared address this process just released can still be taken for a moment
/// (the last holder may be between letting go and registering its stopping loop, or the loop
/// not yet dropped), so "in use" is retried for up to half a second before it is reported.
async fn bind_retrying(addr: SocketAddr, share: bool) -> std::io::Result<TcpListener> {
    let mut tries = 0;
    loop {
        match TcpListener::bind(addr).await {
            Err(e) if share && e.kind() == std::io::ErrorKind::AddrInUse && tries < 20 => {
                tries += 1;
                let stopping = registry().stopping.remove(&addr);
                match stopping {
                    Some(task) => {
                        let _ = task.await;
                    }
                    None => tokio::time::sleep(std::time::Duration::from_millis(25)).await,
                }
            }
            other => return other,
        }
    }
}

/// The keys one holder put into a shared map, so it takes out exactly those (on cleanup, on
/// interruption, and when dropped) and never another holder's.
#[derive(Debug, Default)]
pub(crate) struct Mine(Mutex<std::collections::HashSet<String>>);

impl Mine {
    pub fn add(&self, key: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(key);
    }

    /// Forget `key`; true when it was this holder's.
    pub fn take(&self, key: &str) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key)
    }

    pub fn take_all(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).drain().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn idle(l: TcpListener, _: ()) {
        loop {
            let _ = l.accept().await;
        }
    }

    fn hint(_: &std::io::Error, addr: SocketAddr) -> String {
        format!("cannot listen on {addr}")
    }

    /// A free port below the kernel's ephemeral range (32768 and up), like port 80 or 443 in
    /// real use: no other process's outgoing connection can take it between two binds.
    fn free_port() -> SocketAddr {
        let start = 20_000 + (std::process::id() % 10_000) as u16;
        (start..32_000)
            .chain(20_000..start)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .find(|a| std::net::TcpListener::bind(a).is_ok())
            .expect("a free port below 32000")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_address_is_bound_once_and_rebound_at_once_after_release() {
        let addr = free_port();
        let a = shared(addr, "test", || (), hint, idle).await.unwrap();
        let b = shared(addr, "test", || (), hint, idle).await.unwrap();
        assert!(Arc::ptr_eq(&a, &b), "a second holder shares the listener");
        let err = shared(addr, "other", || (), hint, idle)
            .await
            .err()
            .expect("another kind on the same address is refused");
        assert!(err.to_string().contains("another port"), "{err}");
        drop((a, b));
        // Released and rebound straight away, many times: no "address already in use".
        for _ in 0..50 {
            let l = shared(addr, "test", || (), hint, idle).await.unwrap();
            assert_eq!(l.local_addr(), addr);
        }
    }

    #[tokio::test]
    async fn port_zero_is_never_shared() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let a = shared(any, "test", || (), hint, idle).await.unwrap();
        let b = shared(any, "test", || (), hint, idle).await.unwrap();
        assert_ne!(a.local_addr(), b.local_addr());
    }
}
