//! Raw argon2id hashes per second with Palisade's parameters (m = 19 MiB, t = 2, p = 1), on N
//! threads for S seconds: the baseline the sign-in benchmark is compared against.
//!   cargo run --release -p palisade-auth --example hash_rate -- THREADS SECONDS

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, SaltString};

// The server's allocator (palisade-server's main.rs): glibc malloc maps and faults in the 19 MiB
// block of every hash afresh, ~10 % of a hash's time, which the server does not pay.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let done = done.clone();
            std::thread::spawn(move || {
                let hasher = palisade_auth::password::argon2id();
                while Instant::now() < until {
                    let salt = SaltString::generate(&mut rand::rngs::OsRng);
                    let _ = hasher.hash_password(b"violet-kettle-orbit-93", &salt).expect("hash");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker");
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!("{rate:.1}");
}
