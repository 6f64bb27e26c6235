//! The evaluation worker pool: `SANDBOX_WORKERS` tasks, each claiming one pending
//! submission at a time from the database (so the queue survives restarts, and a claim
//! of a worker that died expires after the lease), running it in the sandbox on a
//! blocking thread, and storing the grade with its `submission.graded` event.

use super::languages;
use super::sandbox::{Ending, Program, Run, Sandbox};
use super::store::{self, Claimed, Graded};
use crate::runtime::Db;
use std::sync::Arc;
use std::time::Duration;
use taproom_client::exercises::types::{SubmissionStatus, TestResult};
use taproom_client::scores::types as scores;
use tokio::sync::Notify;

/// The first bytes of output a submission keeps.
pub const OUTPUT_KEEP: usize = 8 * 1024;

/// Claims of one submission after which it is given up on (each ended with its worker
/// gone: the code may be what brings the service down).
const MAX_ATTEMPTS: i64 = 3;

/// How often idle workers look for work when not woken.
const POLL: Duration = Duration::from_millis(500);

/// A running pool; dropping it stops the workers (runs in progress finish on their
/// threads, bounded by the wall-clock limit, and their results are still stored).
pub struct Pool {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    wake: Arc<Notify>,
}

impl Pool {
    /// Wakes a worker (after a submission was queued).
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What the workers share.
struct Shared {
    db: Db,
    sandbox: Arc<Sandbox>,
    /// How long a claim holds: past the wall-clock limit, so a live run is never taken
    /// over.
    lease: Duration,
    /// Wakes the outbox relay after a grade is stored.
    relay: Option<Arc<Notify>>,
    log: slog::Logger,
}

/// Starts `workers` workers.
pub fn spawn(
    db: Db,
    sandbox: Arc<Sandbox>,
    workers: usize,
    relay: Option<Arc<Notify>>,
    log: &slog::Logger,
) -> Pool {
    let wake = Arc::new(Notify::new());
    let shared = Arc::new(Shared {
        db,
        lease: sandbox.limits.wall + Duration::from_secs(10),
        sandbox,
        relay,
        log: log.new(slog::o!("component" => "evaluation")),
    });
    let pool_id = uuid::Uuid::new_v4();
    let tasks = (0..workers)
        .map(|slot| {
            let (shared, wake) = (shared.clone(), wake.clone());
            let name = format!("{pool_id}/{slot}");
            tokio::spawn(async move { work(shared, slot, name, wake).await })
        })
        .collect();
    Pool { tasks, wake }
}

async fn work(shared: Arc<Shared>, slot: usize, name: String, wake: Arc<Notify>) {
    loop {
        match store::claim(&shared.db, &name, shared.lease).await {
            Ok(Some(claimed)) => {
                let graded = evaluate(&shared, slot, &claimed).await;
                slog::info!(shared.log, "submission graded"; "submission_id" => %claimed.id,
                    "status" => %graded.status, "slot" => slot);
                let event = |id, at| graded_event(id, at, &claimed, &graded);
                match store::finish(&shared.db, &name, &claimed, &graded, event).await {
                    Ok(true) => {
                        if let Some(relay) = &shared.relay {
                            relay.notify_one();
                        }
                    }
                    Ok(false) => slog::warn!(shared.log, "claim lost before the grade was stored";
                        "submission_id" => %claimed.id),
                    Err(e) => slog::error!(shared.log, "storing a grade failed; it will run again";
                        "submission_id" => %claimed.id, "error" => ?e),
                }
                // More may be waiting: look again at once.
                continue;
            }
            Ok(None) => {}
            Err(e) => slog::warn!(shared.log, "claiming a submission failed"; "error" => ?e),
        }
        let _ = tokio::time::timeout(POLL, wake.notified()).await;
    }
}

fn error(message: impl Into<String>) -> Graded {
    Graded {
        status: SubmissionStatus::Error,
        tests: Vec::new(),
        output: String::new(),
        output_truncated: false,
        message: Some(message.into()),
    }
}

async fn evaluate(shared: &Shared, slot: usize, claimed: &Claimed) -> Graded {
    if claimed.attempts > MAX_ATTEMPTS {
        return error("its evaluation was interrupted too often; it is not run again");
    }
    let Some(tests) = &claimed.test_code else {
        return error("the exercise was deleted before the submission ran");
    };
    let Some(language) = languages::find(&claimed.language) else {
        return error(format!("language {:?} cannot be run here", claimed.language));
    };
    let input = serde_json::json!({"solution": claimed.code, "tests": tests}).to_string();
    let sandbox = shared.sandbox.clone();
    let run = tokio::task::spawn_blocking(move || {
        sandbox.run(
            slot,
            &Program {
                argv: language.argv,
                stdin: input.as_bytes(),
            },
            OUTPUT_KEEP,
        )
    })
    .await;
    match run {
        Ok(Ok(run)) => grade(&run, &shared.sandbox),
        Ok(Err(e)) => {
            slog::error!(shared.log, "the sandbox failed"; "submission_id" => %claimed.id, "error" => %format!("{e:#}"));
            error("the sandbox could not run it")
        }
        Err(e) => {
            slog::error!(shared.log, "the evaluation thread failed"; "error" => %e);
            error("the sandbox could not run it")
        }
    }
}

/// The grade of a finished run: its ending first, then what the harness reported.
pub fn grade(run: &Run, sandbox: &Sandbox) -> Graded {
    let tests: Option<Vec<TestResult>> = String::from_utf8_lossy(&run.results)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).ok())
        .collect();
    let limits = &sandbox.limits;
    let (status, message) = match run.ending {
        Ending::WallLimit => (
            SubmissionStatus::TimedOut,
            Some(format!(
                "wall-clock limit ({} ms) reached",
                limits.wall.as_millis()
            )),
        ),
        Ending::CpuLimit => (
            SubmissionStatus::TimedOut,
            Some(format!("CPU time limit ({} s) reached", limits.cpu.as_secs())),
        ),
        Ending::OutputLimit => (
            SubmissionStatus::Error,
            Some(format!(
                "printed more than the output limit ({} bytes)",
                limits.output_bytes
            )),
        ),
        Ending::Signalled(signal) => (
            SubmissionStatus::Error,
            Some(format!("killed by signal {signal}")),
        ),
        Ending::Exited(code) => match &tests {
            None => (
                SubmissionStatus::Error,
                Some("its test report could not be read".to_string()),
            ),
            Some(t) if t.is_empty() => (
                SubmissionStatus::Error,
                Some(format!("no test ran (exit status {code})")),
            ),
            Some(_) if code != 0 => (
                SubmissionStatus::Error,
                Some(format!("exited with status {code} before the tests finished")),
            ),
            Some(t) if t.iter().all(|r| r.status == "passed".parse().expect("a status")) => {
                (SubmissionStatus::Passed, None)
            }
            Some(_) => (SubmissionStatus::Failed, None),
        },
    };
    Graded {
        status,
        tests: tests.unwrap_or_default(),
        output: String::from_utf8_lossy(&run.output).into_owned(),
        output_truncated: run.output_len > run.output.len(),
        message,
    }
}

/// The `submission.graded` event body (scores' `Event`).
fn graded_event(
    id: uuid::Uuid,
    at: chrono::DateTime<chrono::Utc>,
    claimed: &Claimed,
    graded: &Graded,
) -> String {
    let passed = graded
        .tests
        .iter()
        .filter(|t| t.status.to_string() == "passed")
        .count();
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).min(100_000);
    let event = scores::Event {
        id,
        type_: scores::EventType::SubmissionGraded,
        occurred_at: at,
        submission: scores::GradedSubmission {
            submission_id: claimed.id,
            exercise_id: claimed.exercise_id,
            user_id: claimed.owner_id,
            status: graded
                .status
                .to_string()
                .parse()
                .expect("every final status is a grade"),
            passed_tests: count(passed),
            total_tests: count(graded.tests.len()),
        },
    };
    serde_json::to_string(&event).expect("an event serialises")
}
