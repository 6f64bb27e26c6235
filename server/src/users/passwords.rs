//! Passwords: argon2id with the argon2 crate's defaults (OWASP's recommended parameters),
//! hashed and verified off the async workers (on threads of their own, below) because
//! each takes tens of milliseconds and ~19 MiB on purpose. The only place that touches argon2.
//!
//! Admission control: hashes run on `PASSWORD_HASH_CONCURRENCY` dedicated threads and at
//! most `PASSWORD_HASH_QUEUE` wait; anything beyond is refused at once (`Busy`, a 503),
//! so a flood of logins costs a bounded amount of memory and leaves the other services'
//! cores alone. The bound is process-wide because memory and cores are.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier};
use argon2::password_hash::SaltString;
use crate::runtime::config::Config;
use crate::runtime::Problem;
use std::sync::{Arc, Mutex, OnceLock};

fn hash_now(password: &[u8]) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
}

/// Why a password could not be hashed or checked.
#[derive(Debug)]
pub enum Refused {
    /// Every slot is running and the queue is full: retry shortly.
    Busy,
    Failed(anyhow::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Busy => f.write_str("every password-hashing slot is taken"),
            Refused::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

impl std::error::Error for Refused {}

impl Refused {
    /// The answer for a request: 503 with `Retry-After` when busy, else a 500.
    pub fn problem(self, log: &slog::Logger, request_id: &str) -> Problem {
        match self {
            Refused::Busy => Problem::unavailable(
                "The service is checking as many passwords as it can; retry shortly.",
            )
            .header(http::header::RETRY_AFTER, "1"),
            Refused::Failed(e) => Problem::internal(log, &e),
        }
        .request(request_id)
    }
}

impl From<anyhow::Error> for Refused {
    fn from(e: anyhow::Error) -> Self {
        Refused::Failed(e)
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The threads hashing runs on, and the bounded queue in front of them. Dedicated threads
/// rather than tokio's blocking pool: that pool grows to hundreds of threads, and the
/// allocator keeps a 19 MiB block in each thread's arena that ever hashed, so memory
/// would follow the number of threads rather than the number of hashes running.
struct Gate {
    queue: std::sync::mpsc::SyncSender<Job>,
}

static GATE: OnceLock<Gate> = OnceLock::new();

/// Sets the bounds from the configuration; the first call wins (one process, one
/// bound), and without any call the defaults apply.
pub fn configure(config: &Config) {
    let _ = gate_from(config.password_hash_concurrency, config.password_hash_queue);
}

fn gate_from(concurrency: usize, queue: usize) -> &'static Gate {
    GATE.get_or_init(|| {
        let threads = if concurrency == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            concurrency
        };
        return_large_blocks();
        let (queue, jobs) = std::sync::mpsc::sync_channel::<Job>(queue);
        let jobs = Arc::new(Mutex::new(jobs));
        for n in 0..threads {
            let jobs = Arc::clone(&jobs);
            let spawned = std::thread::Builder::new()
                .name(format!("password-hash-{n}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next job.
                    let job = match jobs.lock() {
                        Ok(jobs) => jobs.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                // Fewer threads only means fewer hashes at once; none at all is caught
                // by every hash being refused below.
                eprintln!("password hashing: cannot start a thread: {e}");
            }
        }
        Gate { queue }
    })
}

/// Makes glibc give every allocation of 1 MiB or more straight back to the system when
/// freed. By default it raises that threshold after the first large free, and argon2's
/// 19 MiB blocks then stay in the allocator's arenas: measured with 2 hashing threads,
/// a few logins left the process at 270 MiB instead of 50 MiB. A fixed threshold keeps
/// memory at rest what it was, at the cost of one mmap per large allocation.
fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Runs `work` on a hashing thread, or refuses at once when every thread is busy and
/// the queue is full.
async fn admitted<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Refused> {
    let gate = gate_from(0, 16);
    let (done, result) = tokio::sync::oneshot::channel();
    // The job runs to the end even if the request is dropped meanwhile (the answer is
    // then just not read): a client hanging up cannot free a thread argon2 still uses.
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    match gate.queue.try_send(job) {
        Ok(()) => {}
        Err(std::sync::mpsc::TrySendError::Full(_)) => return Err(Refused::Busy),
        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => {
            return Err(Refused::Failed(anyhow::anyhow!(
                "no password-hashing thread is running"
            )))
        }
    }
    result
        .await
        .map_err(|_| Refused::Failed(anyhow::anyhow!("a password-hashing thread stopped")))
}

/// A new salted hash of `password`, in PHC string form.
pub async fn hash(password: String) -> Result<String, Refused> {
    Ok(admitted(move || hash_now(password.as_bytes())).await??)
}

/// Whether `password` matches `hash` (a hash that cannot be read matches nothing).
pub async fn verify(password: String, hash: String) -> Result<bool, Refused> {
    admitted(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                argon2::Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
}

/// A hash of a random secret, to verify against when an account does not exist, so that
/// refusing an unknown account costs as much as refusing a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_now(uuid::Uuid::new_v4().as_bytes()).unwrap_or_default())
}
