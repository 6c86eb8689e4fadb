//! Password hashing on a few threads of its own, with a bounded queue.
//!
//! Each argon2id hash takes 19 MiB and tens of milliseconds by design. Run on a pool that grows
//! with demand, a flood of registrations takes gigabytes; here at most one hash runs per core,
//! a bounded number wait, and the rest are told at once to come back (`Busy`). A job whose
//! caller has gone (its connection dropped while it waited) is skipped.
//!
//! Each thread hashes into one block buffer of its own, made on first use and kept: allocated
//! and freed per hash, glibc keeps the 19 MiB chunks in its arenas (after the first free it
//! raises its mmap threshold past them), and a flood left hundreds of MiB behind.

use std::time::Duration;

use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use super::AuthError;

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// A hashing thread's argon2 memory, reused by every hash it runs.
#[derive(Debug, Default)]
pub(crate) struct Memory(Vec<Block>);

impl Memory {
    /// Hashes `password` with a fresh salt and the default parameters, as a PHC string.
    pub(crate) fn hash(&mut self, password: &[u8], salt: &[u8; 16]) -> Result<String, String> {
        let salt = SaltString::encode_b64(salt).map_err(|e| e.to_string())?;
        let defaults = Argon2::default();
        self.compute(
            Algorithm::Argon2id,
            Version::V0x13,
            defaults.params().clone(),
            password,
            salt.as_salt(),
        )
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
    }

    /// Whether `password` matches the PHC string `stored` (compared in constant time).
    pub(crate) fn verify(&mut self, password: &[u8], stored: &str) -> bool {
        let Ok(stored) = PasswordHash::new(stored) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (stored.salt, &stored.hash) else {
            return false;
        };
        let computed = Algorithm::try_from(stored.algorithm).and_then(|algorithm| {
            let version = stored
                .version
                .map_or(Ok(Version::default()), Version::try_from)?;
            let params = Params::try_from(&stored)?;
            self.compute(algorithm, version, params, password, salt)
        });
        // `Output` compares in constant time.
        computed.is_ok_and(|hash| hash.hash.as_ref() == Some(expected))
    }

    fn compute<'a>(
        &mut self,
        algorithm: Algorithm,
        version: Version,
        params: Params,
        password: &[u8],
        salt: Salt<'a>,
    ) -> argon2::password_hash::Result<PasswordHash<'a>> {
        let mut salt_bytes = [0u8; 64];
        let salt_raw = salt.decode_b64(&mut salt_bytes)?;
        let blocks = params.block_count();
        if self.0.len() < blocks {
            self.0.resize(blocks, Block::default());
        }
        let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let argon2 = Argon2::new(algorithm, version, params.clone());
        let output = Output::init_with(len, |out| {
            argon2
                .hash_password_into_with_memory(password, salt_raw, out, &mut self.0[..blocks])
                .map_err(argon2::password_hash::Error::from)
        })?;
        Ok(PasswordHash {
            algorithm: algorithm.ident(),
            version: Some(version.into()),
            params: ParamsString::try_from(&params)?,
            salt: Some(salt),
            hash: Some(output),
        })
    }
}

/// How long a turned-away caller is told to wait.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The hashing threads and their queue.
#[derive(Debug)]
pub(crate) struct Hashing {
    jobs: async_channel::Sender<Job>,
}

impl Hashing {
    /// Starts `workers` threads sharing a queue of `queue` waiting jobs.
    pub(crate) fn start(workers: usize, queue: usize) -> std::io::Result<Hashing> {
        let (jobs, waiting) = async_channel::bounded::<Job>(queue.max(1));
        for n in 0..workers.max(1) {
            let waiting = waiting.clone();
            std::thread::Builder::new()
                .name(format!("roomcast-hash-{n}"))
                .spawn(move || {
                    let mut memory = Memory::default();
                    while let Ok(job) = waiting.recv_blocking() {
                        job(&mut memory);
                    }
                })?;
        }
        Ok(Hashing { jobs })
    }

    /// Runs `work` on a hashing thread, or refuses with [`AuthError::Busy`] if the queue is
    /// full.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let (done, answer) = async_channel::bounded(1);
        let job: Job = Box::new(move |memory| {
            if done.receiver_count() == 0 {
                return; // The caller gave up while this waited.
            }
            let _ = done.try_send(work(memory));
        });
        self.jobs.try_send(job).map_err(|_| AuthError::Busy {
            retry_after: RETRY_AFTER,
        })?;
        answer
            .recv()
            .await
            .map_err(|_| AuthError::Unavailable("the hashing threads stopped".into()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn a_full_queue_turns_callers_away_at_once() {
        let hashing = Hashing::start(1, 1).unwrap();
        let (started_tx, started) = mpsc::channel();
        let (release, gate) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            // One job runs (held until released), one waits: the third is refused.
            let first = s.spawn(|| {
                futures_lite::future::block_on(hashing.run(move |_| {
                    started_tx.send(()).unwrap();
                    gate.recv().unwrap();
                    1
                }))
            });
            started.recv().unwrap();
            let second = s.spawn(|| futures_lite::future::block_on(hashing.run(|_| 2)));
            while hashing.jobs.is_empty() {
                std::thread::yield_now();
            }
            let refused = futures_lite::future::block_on(hashing.run(|_| 3));
            assert!(
                matches!(refused, Err(AuthError::Busy { .. })),
                "{refused:?}"
            );
            release.send(()).unwrap();
            assert_eq!(first.join().unwrap(), Ok(1));
            assert_eq!(second.join().unwrap(), Ok(2));
        });
    }

    #[test]
    fn hashes_verify_and_match_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let mut memory = Memory::default();
        let ours = memory.hash(b"correct horse", &[7; 16]).unwrap();
        assert!(memory.verify(b"correct horse", &ours));
        assert!(!memory.verify(b"wrong horse", &ours));
        assert!(!memory.verify(b"correct horse", "not a hash"));
        // The same string the crate makes, and each verifies the other's.
        let salt = SaltString::encode_b64(&[7; 16]).unwrap();
        let theirs = Argon2::default()
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert_eq!(ours, theirs);
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse", &parsed)
                .is_ok()
        );
        // The memory is made once and reused.
        let blocks = memory.0.len();
        memory.hash(b"another", &[8; 16]).unwrap();
        assert_eq!(memory.0.len(), blocks);
    }
}
