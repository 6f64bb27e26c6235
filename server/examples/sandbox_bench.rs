//! The exercises sandbox's benchmark (a measurement, not a test):
//! `cargo run -p taproom-server --release --example sandbox_bench [RUNS]`.
//!
//! 1. Start-up overhead: the mean time of a trivial program (`/usr/bin/true`, then
//!    Debian's python3 printing `ok`) run in the sandbox, minus the same program spawned
//!    directly, over RUNS runs each (default 50). Target: under 50 ms.
//! 2. Throughput at full pool: RUNS × 2 evaluations of a real exercise (FizzBuzz, four
//!    tests, through the python harness) on as many threads as the default pool has
//!    workers (the cores), in evaluations per second.
//!
//! It uses the service's own sandbox, harness and grading with the default limits.

use std::time::{Duration, Instant};
use taproom_server::exercises::{self, languages, sandbox::Program, worker};
use taproom_server::runtime::config::SandboxSettings;

const TESTS: &str = "def test_fizz():\n    assert fizzbuzz(9) == 'Fizz'\n\ndef test_buzz():\n    assert fizzbuzz(10) == 'Buzz'\n\ndef test_fizzbuzz():\n    assert fizzbuzz(30) == 'FizzBuzz'\n\ndef test_number():\n    assert fizzbuzz(7) == '7'\n";
const SOLUTION: &str = "def fizzbuzz(n):\n    if n % 15 == 0:\n        return 'FizzBuzz'\n    if n % 3 == 0:\n        return 'Fizz'\n    if n % 5 == 0:\n        return 'Buzz'\n    return str(n)\n";

fn mean(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1000.0 / n as f64
}

fn direct(argv: &[&str], runs: usize) -> Duration {
    let start = Instant::now();
    for _ in 0..runs {
        let status = std::process::Command::new(argv[0])
            .args(&argv[1..])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("spawn");
        assert!(status.success());
    }
    start.elapsed()
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let settings = SandboxSettings::default();
    let sandbox = exercises::sandbox(&settings);
    let python = languages::find("python3").expect("python3");

    for (name, argv) in [
        ("/usr/bin/true", &["/usr/bin/true"][..]),
        ("python3 print('ok')", python.probe),
    ] {
        let plain = direct(argv, runs);
        let start = Instant::now();
        for _ in 0..runs {
            let run = sandbox
                .run(0, &Program { argv, stdin: b"" }, 64)
                .expect("sandboxed run");
            assert_eq!(
                run.ending,
                exercises::sandbox::Ending::Exited(0),
                "{}",
                String::from_utf8_lossy(&run.output)
            );
        }
        let boxed = start.elapsed();
        println!(
            "{name}: direct {:.1} ms, sandboxed {:.1} ms, sandbox overhead {:.1} ms per run ({runs} runs)",
            mean(plain, runs),
            mean(boxed, runs),
            mean(boxed, runs) - mean(plain, runs)
        );
    }

    let workers = exercises::workers(&settings);
    let total = runs * 2;
    let input = serde_json::json!({"solution": SOLUTION, "tests": TESTS}).to_string();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for slot in 0..workers {
            let (sandbox, input, next) = (&sandbox, &input, &next);
            scope.spawn(move || {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < total {
                    let run = sandbox
                        .run(
                            slot,
                            &Program {
                                argv: python.argv,
                                stdin: input.as_bytes(),
                            },
                            worker::OUTPUT_KEEP,
                        )
                        .expect("sandboxed run");
                    let graded = worker::grade(&run, sandbox);
                    assert_eq!(graded.status.to_string(), "passed", "{:?}", graded.message);
                }
            });
        }
    });
    let elapsed = start.elapsed();
    println!(
        "FizzBuzz graded in the sandbox: {total} evaluations on {workers} workers in {:.2} s = {:.1} evaluations/s ({:.1} ms each)",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        mean(elapsed, total) * workers as f64
    );
}
