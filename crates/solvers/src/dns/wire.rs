//! DNS on the wire: send one message to one server over UDP, retry over TCP when the answer is
//! truncated (or the message is too big for UDP), optionally TSIG-signed (RFC 8945) with the
//! response's signature checked. hickory-proto builds and parses messages; the HMACs are
//! computed here because hickory only signs with the SHA-2 family and certbot's dns-rfc2136
//! also accepts HMAC-MD5 (its default) and HMAC-SHA1.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::tsig::{
    TSIG, TsigAlgorithm as HickoryAlg, TsigError, make_tsig_record, message_tbs, signed_bitmessage_to_buf,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{DnsError, Secret};

/// TSIG MAC algorithms accepted in credentials (certbot's list minus nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    HmacMd5,
    HmacSha1,
    HmacSha224,
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl TsigAlgorithm {
    /// Parse `HMAC-SHA512`, `hmac-sha512`, `hmac-sha512.` or `HMAC-MD5.SIG-ALG.REG.INT`.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().trim_end_matches('.').to_ascii_lowercase();
        Some(match s.as_str() {
            "hmac-md5" | "hmac-md5.sig-alg.reg.int" => TsigAlgorithm::HmacMd5,
            "hmac-sha1" => TsigAlgorithm::HmacSha1,
            "hmac-sha224" => TsigAlgorithm::HmacSha224,
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha384" => TsigAlgorithm::HmacSha384,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            _ => return None,
        })
    }

    fn hickory(self) -> HickoryAlg {
        match self {
            TsigAlgorithm::HmacMd5 => HickoryAlg::HmacMd5,
            TsigAlgorithm::HmacSha1 => HickoryAlg::HmacSha1,
            TsigAlgorithm::HmacSha224 => HickoryAlg::HmacSha224,
            TsigAlgorithm::HmacSha256 => HickoryAlg::HmacSha256,
            TsigAlgorithm::HmacSha384 => HickoryAlg::HmacSha384,
            TsigAlgorithm::HmacSha512 => HickoryAlg::HmacSha512,
        }
    }

    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        use aws_lc_rs::hmac;
        let alg = match self {
            TsigAlgorithm::HmacMd5 => {
                use ::hmac::Mac;
                let mut m =
                    <::hmac::Hmac<md5::Md5>>::new_from_slice(key).expect("HMAC accepts any key length");
                m.update(data);
                return m.finalize().into_bytes().to_vec();
            }
            TsigAlgorithm::HmacSha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            TsigAlgorithm::HmacSha224 => hmac::HMAC_SHA224,
            TsigAlgorithm::HmacSha256 => hmac::HMAC_SHA256,
            TsigAlgorithm::HmacSha384 => hmac::HMAC_SHA384,
            TsigAlgorithm::HmacSha512 => hmac::HMAC_SHA512,
        };
        hmac::sign(&hmac::Key::new(alg, key), data).as_ref().to_vec()
    }
}

impl std::fmt::Display for TsigAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TsigAlgorithm::HmacMd5 => "HMAC-MD5",
            TsigAlgorithm::HmacSha1 => "HMAC-SHA1",
            TsigAlgorithm::HmacSha224 => "HMAC-SHA224",
            TsigAlgorithm::HmacSha256 => "HMAC-SHA256",
            TsigAlgorithm::HmacSha384 => "HMAC-SHA384",
            TsigAlgorithm::HmacSha512 => "HMAC-SHA512",
        })
    }
}

/// A TSIG key: name, algorithm and decoded secret. `Debug` omits the secret.
#[derive(Clone)]
pub(crate) struct TsigKey {
    pub name: Name,
    pub algorithm: TsigAlgorithm,
    secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name.to_ascii())
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Fudge (allowed clock skew), as BIND's nsupdate uses.
const FUDGE: u16 = 300;

impl TsigKey {
    /// `secret` is base64 (as `tsig-keygen` prints it). Errors never contain it.
    pub fn new(name: &str, algorithm: TsigAlgorithm, secret: &Secret) -> Result<Self, String> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(secret.expose().trim())
            .map_err(|_| "the TSIG secret is not valid base64".to_string())?;
        if bytes.is_empty() {
            return Err("the TSIG secret is empty".into());
        }
        let mut name = Name::from_ascii(name.trim()).map_err(|e| format!("bad TSIG key name: {e}"))?;
        name.set_fqdn(true);
        Ok(TsigKey {
            name,
            algorithm,
            secret: bytes,
        })
    }

    /// Sign `msg` in place; returns the request MAC (needed to check the response).
    fn sign(&self, msg: &mut Message, now: u64) -> Result<Vec<u8>, String> {
        let pre = TSIG::new(
            self.algorithm.hickory(),
            now,
            FUDGE,
            Vec::new(),
            msg.metadata.id,
            None,
            Vec::new(),
        );
        let tbs = message_tbs(msg, &pre, &self.name).map_err(|e| e.to_string())?;
        let mac = self.algorithm.mac(&self.secret, &tbs);
        msg.set_signature(Box::new(make_tsig_record(
            self.name.clone(),
            pre.set_mac(mac.clone()),
        )));
        Ok(mac)
    }

    /// Check the TSIG on a response; explain TSIG errors in terms of the key.
    fn verify(&self, response: &[u8], request_mac: &[u8], now: u64) -> Result<(), String> {
        let (tbv, rr) = signed_bitmessage_to_buf(response, Some(request_mac), true)
            .map_err(|_| "the response is not TSIG-signed".to_string())?;
        let key = self.name.to_ascii();
        if let Some(err) = rr.data.error {
            return Err(tsig_error_text(err, &key));
        }
        // Compare algorithm names case-insensitively: BIND answers `hmac-md5.sig-alg.reg.int`.
        let same_alg = rr
            .data
            .algorithm
            .to_name()
            .eq_ignore_root(&self.algorithm.hickory().to_name());
        if !rr.name.eq_ignore_root(&self.name) || !same_alg {
            return Err(format!("the response is signed with another key than {key}"));
        }
        let expected = self.algorithm.mac(&self.secret, &tbv);
        if aws_lc_rs::constant_time::verify_slices_are_equal(&expected, &rr.data.mac).is_err() {
            return Err(format!(
                "the response's TSIG signature does not verify with key {key}"
            ));
        }
        if rr.data.time.abs_diff(now) > u64::from(rr.data.fudge) {
            return Err("the response's TSIG time is outside the allowed clock skew".into());
        }
        Ok(())
    }
}

fn tsig_error_text(err: TsigError, key: &str) -> String {
    match err {
        TsigError::BadKey => format!(
            "the server does not know TSIG key {key} (BADKEY): check dns_rfc2136_name and the algorithm"
        ),
        TsigError::BadSig => format!(
            "the TSIG signature with key {key} was rejected (BADSIG): the secret or algorithm is wrong"
        ),
        TsigError::BadTime => {
            "the server rejected the TSIG time (BADTIME): this machine's clock is off".into()
        }
        other => format!("TSIG error {other:?} for key {key}"),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The largest UDP answer we ask for (EDNS); above it the server truncates and we use TCP.
const UDP_PAYLOAD: u16 = 1232;

/// Attach an EDNS OPT so servers may answer up to [`UDP_PAYLOAD`] bytes over UDP.
pub(crate) fn add_edns(msg: &mut Message) {
    let mut edns = Edns::new();
    edns.set_max_payload(UDP_PAYLOAD);
    msg.set_edns(edns);
}

/// Send `msg` to `server` (signing it with `tsig` if given) and return the parsed response.
/// The response must match the request's id; its TSIG is checked when the request was signed.
pub(crate) async fn exchange(
    server: SocketAddr,
    mut msg: Message,
    tsig: Option<&TsigKey>,
    timeout: Duration,
) -> Result<Message, DnsError> {
    let err = |why: String| DnsError::Transport {
        server: server.to_string(),
        why,
    };
    let now = now_secs();
    let request_mac = match tsig {
        Some(k) => Some(k.sign(&mut msg, now).map_err(err)?),
        None => None,
    };
    let bytes = msg
        .to_vec()
        .map_err(|e| err(format!("encoding the request: {e}")))?;
    let id = msg.metadata.id;

    let mut raw = if bytes.len() <= 512 {
        udp_exchange(server, &bytes, id, timeout).await.map_err(err)?
    } else {
        tcp_exchange(server, &bytes, id, timeout).await.map_err(err)?
    };
    let resp = Message::from_vec(&raw).map_err(|e| err(format!("malformed response: {e}")))?;
    if resp.metadata.truncation {
        raw = tcp_exchange(server, &bytes, id, timeout).await.map_err(err)?;
    }
    let signed = tsig.zip(request_mac.as_deref());
    check_response(&raw, signed, now_secs()).map_err(err)
}

/// Parse a response and, when the request was signed with key `.0` giving MAC `.1`, check the
/// response's TSIG at time `now`.
fn check_response(raw: &[u8], signed: Option<(&TsigKey, &[u8])>, now: u64) -> Result<Message, String> {
    let resp = Message::from_vec(raw).map_err(|e| format!("malformed response: {e}"))?;
    if let Some((k, mac)) = signed {
        // A server that does not accept the key answers unsigned with NOTAUTH and a TSIG error.
        if let Some(sig) = resp.signature()
            && let Some(e) = sig.data.error
        {
            return Err(tsig_error_text(e, &k.name.to_ascii()));
        }
        if resp.metadata.response_code == ResponseCode::NotAuth && resp.signature().is_none() {
            return Err(format!(
                "the server rejected TSIG key {} (NOTAUTH): check the key name, secret and algorithm",
                k.name.to_ascii()
            ));
        }
        k.verify(raw, mac, now)?;
    }
    Ok(resp)
}

/// [`check_response`] for a response to a request signed with TSIG key `name`/`algorithm`/
/// `secret` (base64) whose MAC was `request_mac`, or unsigned when `key` is `None`.
#[doc(hidden)]
pub fn parse_response(
    raw: &[u8],
    key: Option<(&str, TsigAlgorithm, &Secret)>,
    request_mac: &[u8],
    now: u64,
) -> Result<Message, String> {
    let key = key
        .map(|(name, alg, secret)| TsigKey::new(name, alg, secret))
        .transpose()?;
    check_response(raw, key.as_ref().map(|k| (k, request_mac)), now)
}

/// One UDP request with up to 3 tries (each `timeout / 3`, at least 300 ms).
async fn udp_exchange(
    server: SocketAddr,
    bytes: &[u8],
    id: u16,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let sock = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("UDP socket: {e}"))?;
    sock.connect(server)
        .await
        .map_err(|e| format!("UDP connect: {e}"))?;
    let per_try = (timeout / 3).max(Duration::from_millis(300));
    let mut buf = vec![0u8; 65535];
    for _ in 0..3 {
        sock.send(bytes).await.map_err(|e| format!("UDP send: {e}"))?;
        let deadline = tokio::time::Instant::now() + per_try;
        loop {
            match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
                Err(_) => break, // this try timed out
                // ICMP port unreachable surfaces as ECONNREFUSED: nothing listens there.
                Ok(Err(e)) => return Err(format!("UDP receive: {e}")),
                Ok(Ok(n)) if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id => {
                    return Ok(buf[..n].to_vec());
                }
                Ok(Ok(_)) => continue, // a late answer to an earlier try, or noise
            }
        }
    }
    Err(format!("no answer over UDP in {} ms", timeout.as_millis()))
}

async fn tcp_exchange(
    server: SocketAddr,
    bytes: &[u8],
    id: u16,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let work = async {
        let mut s = TcpStream::connect(server)
            .await
            .map_err(|e| format!("TCP connect: {e}"))?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        framed.extend_from_slice(bytes);
        s.write_all(&framed).await.map_err(|e| format!("TCP send: {e}"))?;
        loop {
            let len = s.read_u16().await.map_err(|e| format!("TCP receive: {e}"))? as usize;
            let mut buf = vec![0u8; len];
            s.read_exact(&mut buf)
                .await
                .map_err(|e| format!("TCP receive: {e}"))?;
            if len >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
                return Ok(buf);
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no answer over TCP in {} ms", timeout.as_millis()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_certbot_and_bind_spellings() {
        assert_eq!(
            TsigAlgorithm::parse("HMAC-SHA512"),
            Some(TsigAlgorithm::HmacSha512)
        );
        assert_eq!(
            TsigAlgorithm::parse("hmac-sha256."),
            Some(TsigAlgorithm::HmacSha256)
        );
        assert_eq!(
            TsigAlgorithm::parse("HMAC-MD5.SIG-ALG.REG.INT"),
            Some(TsigAlgorithm::HmacMd5)
        );
        assert_eq!(TsigAlgorithm::parse("hmac-sha3"), None);
    }

    #[test]
    fn hmac_md5_matches_rfc2202() {
        // RFC 2202 test case 2.
        let mac = TsigAlgorithm::HmacMd5.mac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex(&mac), "750c783e6ab0b503eaa86e310a5db738");
        let mac = TsigAlgorithm::HmacSha1.mac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex(&mac), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn key_debug_hides_secret() {
        let k = TsigKey::new("k1", TsigAlgorithm::HmacSha256, &Secret::new("c2VjcmV0c2VjcmV0")).unwrap();
        let d = format!("{k:?}");
        assert!(!d.contains("c2VjcmV0") && !d.contains("115, 101"), "{d}");
        let e = TsigKey::new("k1", TsigAlgorithm::HmacSha256, &Secret::new("not base64!!")).unwrap_err();
        assert!(!e.contains("base64!!"));
    }
}
