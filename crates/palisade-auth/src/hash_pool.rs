//! The threads password hashing runs on: a fixed set started with the hasher, each at a lower CPU
//! priority (nice +10), so that a flood of sign-ins yields the cores to the requests of people
//! already signed in instead of competing with them as equals. With no other work waiting the
//! hashes run as fast as before: a nice value only matters when threads contend.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, mpsc};

use crate::password::HashError;

/// How much lower than the server's other threads hashing runs (CFS weight 110 against 1024).
pub const HASH_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed pool of hashing threads; they stop when the last handle is dropped.
pub(crate) struct HashPool {
    jobs: mpsc::Sender<Job>,
}

impl HashPool {
    pub(crate) fn start(workers: usize) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..workers.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("palisade-hash-{n}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let next = match queue.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = next else { return };
                        // A panicking job drops its answer channel (the caller gets an error);
                        // the thread goes on to the next job.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
                    }
                })
                .expect("starting a password hashing thread");
        }
        Self { jobs }
    }

    /// Runs `work` on a hashing thread and waits for its result without blocking the caller's
    /// async worker.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (answer, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = answer.send(work());
            }))
            .map_err(|_| HashError::Internal("the password hashing threads have stopped".into()))?;
        result.await.map_err(|_| HashError::Internal("a password hashing job failed".into()))
    }
}

/// Lowers the calling thread's priority. On Linux the nice value is per thread, so only this
/// thread changes. A failure (a seccomp filter, say) is logged: hashing still works, at the
/// normal priority.
fn lower_priority() {
    let tid = nix::unistd::gettid().as_raw();
    let Ok(tid) = libc::id_t::try_from(tid) else { return };
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, HASH_NICE) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "password hashing runs at normal CPU priority");
    }
}

/// The nice value of the calling thread (for tests: what `lower_priority` achieved).
pub fn current_thread_nice() -> Option<i32> {
    let tid = nix::unistd::gettid().as_raw();
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // Field 19 (nice) counted after the command name's closing parenthesis, which may hold spaces.
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(16)?.parse().ok()
}
