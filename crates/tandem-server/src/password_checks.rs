//! Password verification with a bound on what a flood of wrong passwords can cost.
//!
//! An argon2id check takes tens of milliseconds and about 19 MiB. Run unbounded in parallel, a
//! few hundred wrong-password requests took a node to several gigabytes (and glibc kept the
//! memory: `src/main.rs` tunes it to). So checks run on a fixed pool of threads (memory is
//! bounded by the pool, and each thread keeps to its own malloc arena), a bounded queue waits in
//! front of it, and a request that finds the queue full is refused at once (`503` with
//! `Retry-After`) instead of waiting. A user name that does not exist is checked against a dummy
//! hash, so its answer takes as long as a wrong password's and user names cannot be found by
//! timing.

use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, OnceLock};
use tokio::sync::oneshot;

/// Checks that run at once: the cores of the smallest supported server. Each holds about
/// 19 MiB for its duration, so a flood costs at most this many times that.
pub const PASSWORD_CHECKS_CONCURRENT_MAX: usize = 2;
/// Checks that may wait for a free thread: at ~25 ms each, a full queue is drained in under
/// half a second, well within a client's patience; more would only queue a flood.
pub const PASSWORD_CHECKS_WAITING_MAX: usize = 32;

struct Job {
    password: String,
    hash: Option<String>,
    answer: oneshot::Sender<bool>,
}

/// The pool; cheap to clone.
#[derive(Clone)]
pub struct PasswordChecks {
    jobs: SyncSender<Job>,
}

/// The queue is full: the caller answers 503 with Retry-After.
#[derive(Debug)]
pub struct Busy;

impl Default for PasswordChecks {
    fn default() -> Self {
        Self::new()
    }
}

impl PasswordChecks {
    pub fn new() -> Self {
        let (jobs, receiver) = std::sync::mpsc::sync_channel::<Job>(PASSWORD_CHECKS_WAITING_MAX);
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        for index in 0..PASSWORD_CHECKS_CONCURRENT_MAX {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tandem-password-{index}"))
                .spawn(move || {
                    loop {
                        let job = {
                            let receiver = receiver
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            receiver.recv()
                        };
                        // All senders gone: the server stopped.
                        let Ok(job) = job else { break };
                        let verified = match &job.hash {
                            Some(hash) => tandem_crypto::verify_password(&job.password, hash),
                            None => {
                                // As long as a real check, and never true.
                                let _ = tandem_crypto::verify_password(&job.password, dummy_hash());
                                false
                            }
                        };
                        let _ = job.answer.send(verified);
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a password check thread");
            }
        }
        Self { jobs }
    }

    /// Whether `password` matches `hash` (`None`: no such user; checked against a dummy hash,
    /// always false). `Err(Busy)` when the queue is full.
    pub async fn verify(&self, password: &str, hash: Option<String>) -> Result<bool, Busy> {
        let (answer, answered) = oneshot::channel();
        let job = Job {
            password: password.to_owned(),
            hash,
            answer,
        };
        match self.jobs.try_send(job) {
            Ok(()) => Ok(answered.await.unwrap_or(false)),
            Err(TrySendError::Full(_)) => Err(Busy),
            // The pool is gone (its threads could not start): refuse rather than let anyone in.
            Err(TrySendError::Disconnected(_)) => Ok(false),
        }
    }
}

/// An argon2id hash of a random password, made once: what a name that is no user is checked
/// against.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        tandem_crypto::hash_password(&tandem_crypto::random_secret(24)).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_beyond_the_queue_is_refused_at_once_and_real_checks_still_answer() {
        let checks = PasswordChecks::new();
        let hash = tandem_crypto::hash_password("right horse battery").unwrap();
        assert!(
            checks
                .verify("right horse battery", Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(!checks.verify("wrong", Some(hash.clone())).await.unwrap());
        assert!(
            !checks.verify("anything", None).await.unwrap(),
            "no such user"
        );
        // Far more at once than the pool and queue hold: some are refused, none waits long,
        // and every check that ran gave the right answer.
        let flood: Vec<_> = (0..200)
            .map(|_| {
                let (checks, hash) = (checks.clone(), hash.clone());
                tokio::spawn(async move { checks.verify("wrong", Some(hash)).await })
            })
            .collect();
        let mut busy = 0;
        for answer in flood {
            match answer.await.unwrap() {
                Ok(verified) => assert!(!verified),
                Err(Busy) => busy += 1,
            }
        }
        // 200 arrive within microseconds; a check takes milliseconds, so the queue overflows.
        assert!(busy > 0, "none refused");
        assert!(
            checks
                .verify("right horse battery", Some(hash))
                .await
                .unwrap()
        );
    }
}
