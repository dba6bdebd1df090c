//! http-01 (RFC 8555 section 8.3): answer `GET /.well-known/acme-challenge/<token>` with the
//! key authorization, either by writing files into a web server's document root (webroot)
//! or by serving them from a built-in HTTP server (standalone).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use certfleet_core::{ChallengeType, Identifier};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::listener::{self, Listener, Mine};
use crate::{ChallengeTask, Solver, SolverError};

pub const CHALLENGE_PATH: &str = ".well-known/acme-challenge";

/// Writes challenge files under each domain's webroot (certbot's `-w PATH -d NAME` pairing).
#[derive(Debug, Clone)]
pub struct Webroot {
    /// Domain (as ordered, normalised) -> document root.
    map: BTreeMap<String, PathBuf>,
}

/// Directories this process created under webroots, removed again on cleanup once empty
/// (certbot does the same). Process-wide, not per solver: concurrent renewals sharing a webroot
/// each see the other's directory, and whichever cleans up last removes it. Holding this lock
/// while creating directories and writing into them, and while removing them, is what keeps one
/// renewal's cleanup from removing a directory another is about to write into.
static CREATED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

impl Webroot {
    pub fn new(map: BTreeMap<String, PathBuf>) -> Self {
        Self { map }
    }

    pub fn map(&self) -> &BTreeMap<String, PathBuf> {
        &self.map
    }

    fn root_for(&self, id: &Identifier) -> Result<&Path, SolverError> {
        self.map.get(&id.value()).map(PathBuf::as_path).ok_or_else(|| {
            SolverError::Setup(format!(
                "no webroot for {id}: give one with -w PATH before -d {id} (each -w applies to the -d flags after it)"
            ))
        })
    }

    fn challenge_dir(root: &Path) -> PathBuf {
        root.join(CHALLENGE_PATH)
    }

    /// Create each missing level of `dir` ourselves, recording it so cleanup removes exactly
    /// what we made. The caller holds the `CREATED` lock.
    fn ensure_dir(created: &mut BTreeSet<PathBuf>, dir: &Path) -> Result<(), SolverError> {
        let mut missing = Vec::new();
        let mut cur = dir;
        while !cur.exists() {
            missing.push(cur.to_path_buf());
            match cur.parent() {
                Some(p) => cur = p,
                None => break,
            }
        }
        for d in missing.into_iter().rev() {
            match std::fs::create_dir(&d) {
                Ok(()) => {
                    set_mode(&d, 0o755);
                    created.insert(d);
                }
                // Made by someone else (a web server, certbot) in the meantime: fine.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
                Err(e) => {
                    return Err(SolverError::Io {
                        context: format!(
                            "cannot create {} (is the webroot writable by this user?)",
                            d.display()
                        ),
                        source: e,
                    });
                }
            }
        }
        Ok(())
    }

    /// Write `data` to `dir/name`, creating `dir` as needed, under the `CREATED` lock.
    fn write_in(dir: &Path, name: &str, data: &[u8], mode: u32) -> Result<PathBuf, SolverError> {
        let mut created = CREATED.lock().unwrap();
        Self::ensure_dir(&mut created, dir)?;
        let path = dir.join(name);
        std::fs::write(&path, data).map_err(|e| SolverError::Io {
            context: format!(
                "cannot write challenge file {} (is the webroot writable by this user?)",
                path.display()
            ),
            source: e,
        })?;
        // The web server usually runs as another user: the file must be world-readable.
        set_mode(&path, mode);
        Ok(path)
    }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

#[async_trait::async_trait]
impl Solver for Webroot {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Http01
    }

    async fn preflight(&self, identifiers: &[Identifier]) -> Result<(), SolverError> {
        for id in identifiers {
            if id.is_wildcard() {
                return Err(wildcard_error(id));
            }
            let root = self.root_for(id)?;
            if !root.is_dir() {
                return Err(SolverError::Setup(format!(
                    "webroot {} for {id} does not exist or is not a directory (create it, or point -w at the \
                     DocumentRoot/root of the site that serves http://{id}/)",
                    root.display()
                )));
            }
            let dir = Self::challenge_dir(root);
            let probe = Self::write_in(
                &dir,
                &format!(".certfleet-write-test-{}", std::process::id()),
                b"",
                0o600,
            )
            .map_err(|e| {
                SolverError::Setup(format!("webroot {} for {id} is not usable: {e}", root.display()))
            })?;
            let _ = std::fs::remove_file(&probe);
        }
        Ok(())
    }

    async fn present(&self, tasks: &[ChallengeTask]) -> Result<(), SolverError> {
        for t in tasks {
            let dir = Self::challenge_dir(self.root_for(&t.identifier)?);
            Self::write_in(&dir, &t.token, t.key_authorization.as_bytes(), 0o644)?;
        }
        Ok(())
    }

    async fn cleanup(&self, tasks: &[ChallengeTask]) -> Result<(), SolverError> {
        for t in tasks {
            if let Ok(root) = self.root_for(&t.identifier) {
                let _ = std::fs::remove_file(Self::challenge_dir(root).join(&t.token));
            }
        }
        let roots: Vec<&PathBuf> = self.map.values().collect();
        let mut created = CREATED.lock().unwrap();
        // Deepest first; remove_dir only succeeds on empty directories, so others' files stay
        // (a directory still in use is forgotten only once it is gone).
        let mut mine: Vec<PathBuf> = created
            .iter()
            .filter(|d| roots.iter().any(|r| d.starts_with(r)))
            .cloned()
            .collect();
        mine.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in mine {
            match std::fs::remove_dir(&d) {
                Ok(()) => {
                    created.remove(&d);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    created.remove(&d);
                }
                Err(_) => {}
            }
        }
        Ok(())
    }
}

fn wildcard_error(id: &Identifier) -> SolverError {
    SolverError::Setup(format!(
        "{id} is a wildcard: wildcards need dns-01; use --dns-rfc2136, --dns-cloudflare or --manual \
         --preferred-challenges dns instead of --webroot/--standalone"
    ))
}

type TokenMap = Arc<RwLock<HashMap<String, String>>>;

/// A built-in HTTP server answering challenges, for hosts with nothing on port 80. Every
/// Standalone on one address in this process shares one listener (see [`crate::listener`]).
pub struct Standalone {
    server: Arc<Listener<TokenMap>>,
    /// The tokens this one presented.
    mine: Mine,
}

impl std::fmt::Debug for Standalone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Standalone({})", self.server.local_addr())
    }
}

impl Drop for Standalone {
    fn drop(&mut self) {
        self.forget(self.mine.take_all());
    }
}

impl Standalone {
    /// Bind now (or join this process's listener on `addr`), so a taken port is reported
    /// before any request reaches the CA.
    pub async fn bind(addr: SocketAddr) -> Result<Self, SolverError> {
        let server = listener::shared(addr, "http-01", TokenMap::default, bind_hint, serve).await?;
        Ok(Self {
            server,
            mine: Mine::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    fn forget(&self, tokens: impl IntoIterator<Item = String>) {
        let mut map = self.server.state().write().unwrap_or_else(|p| p.into_inner());
        for t in tokens {
            map.remove(&t);
        }
    }
}

fn bind_hint(e: &std::io::Error, addr: SocketAddr) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "port {} is already in use (a web server?): stop it, use --webroot instead, or pass \
             --http-01-port/--http-01-address",
            addr.port()
        ),
        std::io::ErrorKind::PermissionDenied => {
            format!("binding port {} needs root or CAP_NET_BIND_SERVICE", addr.port())
        }
        _ => format!("cannot listen on {addr}"),
    }
}

async fn serve(listener: tokio::net::TcpListener, tokens: TokenMap) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let served = tokens.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let served = served.clone();
                async move { Ok::<_, Infallible>(answer(&served, req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(tokens: &TokenMap, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let prefix = concat!("/", ".well-known/acme-challenge", "/");
    let found = req.uri().path().strip_prefix(prefix).and_then(|token| {
        tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    });
    match found {
        Some(body) => Response::builder()
            .header("content-type", "application/octet-stream")
            .body(Full::new(Bytes::from(body)))
            .expect("static response"),
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()))
            .expect("static response"),
    }
}

#[async_trait::async_trait]
impl Solver for Standalone {
    fn challenge_type(&self) -> ChallengeType {
        ChallengeType::Http01
    }

    async fn preflight(&self, identifiers: &[Identifier]) -> Result<(), SolverError> {
        match identifiers.iter().find(|i| i.is_wildcard()) {
            Some(id) => Err(wildcard_error(id)),
            None => Ok(()),
        }
    }

    async fn present(&self, tasks: &[ChallengeTask]) -> Result<(), SolverError> {
        let mut map = self.server.state().write().unwrap_or_else(|p| p.into_inner());
        for t in tasks {
            map.insert(t.token.clone(), t.key_authorization.clone());
            self.mine.add(t.token.clone());
        }
        Ok(())
    }

    async fn cleanup(&self, tasks: &[ChallengeTask]) -> Result<(), SolverError> {
        let tokens = tasks.iter().filter(|t| self.mine.take(&t.token));
        self.forget(tokens.map(|t| t.token.clone()));
        Ok(())
    }

    async fn cleanup_all(&self) -> Result<(), SolverError> {
        self.forget(self.mine.take_all());
        Ok(())
    }
}
