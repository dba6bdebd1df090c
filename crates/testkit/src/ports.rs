//! Free loopback ports for parallel tests.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Ports are drawn from below Linux's ephemeral range (32768-60999) so an outgoing
/// connection's local port can never take a port between "picked" and "bound by the server".
const RANGE: std::ops::Range<u16> = 20000..32000;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A loopback port that is currently free for both TCP and UDP on 127.0.0.1 and has not been
/// handed out before in this process. Random start point, so parallel test *processes* rarely
/// collide either.
pub fn free_port() -> u16 {
    let mut guard = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let taken = guard.get_or_insert_with(HashSet::new);
    let span = (RANGE.end - RANGE.start) as u64;
    for _ in 0..10_000 {
        let seed = RandomState::new().hash_one((std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let port = RANGE.start + (seed % span) as u16;
        if taken.contains(&port) {
            continue;
        }
        // Both protocols: DNS servers (challtestsrv, BIND) listen on UDP and TCP of one port.
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, port));
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, port));
        if tcp.is_ok() && udp.is_ok() {
            taken.insert(port);
            return port;
        }
    }
    panic!("free_port: no free loopback port found in {RANGE:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let set: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(set.len(), ports.len());
        for p in ports.iter().take(5) {
            TcpListener::bind((Ipv4Addr::LOCALHOST, *p)).unwrap();
        }
    }
}
