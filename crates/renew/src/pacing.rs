//! Pacing a batch of renewals against one CA: at most `jobs` in flight (`--jobs N`), and new
//! ones started no faster than a steady rate with a small burst, so a fleet-wide renewal does
//! not trip the CA's per-account request limits. One [`Pacer`] per CA, shared by clones.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct Pacer {
    slots: Arc<Semaphore>,
    bucket: Arc<Mutex<Gcra>>,
}

/// Token bucket in its GCRA form: one "theoretical arrival time" instead of a token count
/// plus refill timer, which makes reservations under a lock trivial.
#[derive(Debug)]
struct Gcra {
    interval: Duration,
    tolerance: Duration,
    tat: Option<Instant>,
}

/// Held while one renewal runs; dropping it frees the slot for the next.
#[derive(Debug)]
pub struct PacerPermit {
    _slot: OwnedSemaphorePermit,
}

impl Pacer {
    /// `jobs` concurrent (at least 1), starts at most `per_second` per second on average with
    /// up to `burst` (at least 1) at once. `per_second <= 0` means no rate limit.
    pub fn new(jobs: usize, per_second: f64, burst: u32) -> Self {
        let interval = if per_second > 0.0 && per_second.is_finite() {
            Duration::from_secs_f64(1.0 / per_second)
        } else {
            Duration::ZERO
        };
        let burst = burst.max(1);
        Self {
            slots: Arc::new(Semaphore::new(jobs.max(1))),
            bucket: Arc::new(Mutex::new(Gcra {
                interval,
                tolerance: interval * (burst - 1),
                tat: None,
            })),
        }
    }

    /// Wait for a free slot, then for the rate to allow a start.
    pub async fn acquire(&self) -> PacerPermit {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("pacer semaphore is never closed");
        let start_at = {
            let mut g = self.bucket.lock().await;
            let now = Instant::now();
            let tat = g.tat.map_or(now, |t| t.max(now));
            let allowed = tat.checked_sub(g.tolerance).unwrap_or(now).max(now);
            g.tat = Some(tat + g.interval);
            allowed
        };
        tokio::time::sleep_until(start_at).await;
        PacerPermit { _slot: slot }
    }

    /// Run `fut` under a permit.
    pub async fn run<F: std::future::Future>(&self, fut: F) -> F::Output {
        let _permit = self.acquire().await;
        fut.await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn limits_concurrency_and_rate() {
        // 20/s with burst 2, 4 jobs: 12 tasks, each taking 30 ms.
        let pacer = Pacer::new(4, 20.0, 2);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_seen = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..12 {
            let (p, inf, max) = (pacer.clone(), in_flight.clone(), max_seen.clone());
            tasks.push(tokio::spawn(async move {
                p.run(async {
                    let started = t0.elapsed();
                    let n = inf.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    inf.fetch_sub(1, Ordering::SeqCst);
                    started
                })
                .await
            }));
        }
        let mut starts = Vec::new();
        for t in tasks {
            starts.push(t.await.unwrap());
        }
        starts.sort();
        println!("starts: {starts:?}");
        assert!(max_seen.load(Ordering::SeqCst) <= 4);
        // Burst of 2, then one per 50 ms: the 12th start is at >= 10 * 50 ms.
        assert!(starts[11] >= Duration::from_millis(490), "{starts:?}");
        for w in starts.windows(3) {
            // Any three consecutive starts span at least one interval (burst 2).
            assert!(w[2] - w[0] >= Duration::from_millis(45), "{starts:?}");
        }
    }

    #[tokio::test]
    async fn burst_starts_at_once_then_paces() {
        // Long interval so a loaded machine cannot blur the difference.
        let pacer = Pacer::new(8, 2.0, 2);
        let t0 = Instant::now();
        let _a = pacer.acquire().await;
        let _b = pacer.acquire().await;
        assert!(
            t0.elapsed() < Duration::from_millis(250),
            "burst of 2 is immediate: {:?}",
            t0.elapsed()
        );
        let _c = pacer.acquire().await;
        assert!(
            t0.elapsed() >= Duration::from_millis(490),
            "third waits an interval: {:?}",
            t0.elapsed()
        );
        // After idling, the burst is available again.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let t1 = Instant::now();
        let _d = pacer.acquire().await;
        let _e = pacer.acquire().await;
        assert!(t1.elapsed() < Duration::from_millis(250), "{:?}", t1.elapsed());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrency_only_when_unlimited_rate() {
        let pacer = Pacer::new(2, 0.0, 1);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_seen = Arc::new(AtomicUsize::new(0));
        let t0 = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let (p, inf, max) = (pacer.clone(), in_flight.clone(), max_seen.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = p.acquire().await;
                let n = inf.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                inf.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(max_seen.load(Ordering::SeqCst), 2);
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(150) && took < Duration::from_secs(2),
            "{took:?}"
        );
    }
}
