//! Contract tests of the exercises service through the generated client: admins write
//! exercises, users read them without the tests and submit solutions, which are run in
//! the bubblewrap sandbox and graded. Real exercises are solved right and wrong (on
//! SQLite and PostgreSQL); every attack of issue 16 is performed (SQLite: the database
//! file is one of the targets) and must end as failed / timed_out / error with the
//! service still healthy; a restart picks queued submissions up again; a service whose
//! sandbox cannot start refuses to start.

use serde_json::json;
use std::time::Duration;
use taproom_client::exercises::{types, Client, Error};
use taproom_tests::{graded, is_final, on_both_databases, Backend, Exercises};

const FIZZBUZZ_TESTS: &str = "\
def test_fizz():
    assert fizzbuzz(9) == 'Fizz', fizzbuzz(9)

def test_buzz():
    assert fizzbuzz(10) == 'Buzz', fizzbuzz(10)

def test_fizzbuzz():
    assert fizzbuzz(30) == 'FizzBuzz', fizzbuzz(30)

def test_number():
    assert fizzbuzz(7) == '7', fizzbuzz(7)
";

const FIZZBUZZ_RIGHT: &str = "\
def fizzbuzz(n):
    if n % 15 == 0:
        return 'FizzBuzz'
    if n % 3 == 0:
        return 'Fizz'
    if n % 5 == 0:
        return 'Buzz'
    return str(n)
";

/// Checks 3 before 15: 30 comes out as `Fizz`.
const FIZZBUZZ_WRONG: &str = "\
def fizzbuzz(n):
    print('checking', n)
    if n % 3 == 0:
        return 'Fizz'
    if n % 5 == 0:
        return 'Buzz'
    return str(n)
";

const PALINDROME_TESTS: &str = "\
def test_word():
    assert is_palindrome('Racecar')

def test_sentence():
    assert is_palindrome('A man, a plan, a canal: Panama')

def test_not():
    assert not is_palindrome('taproom')
";

const PALINDROME_RIGHT: &str = "\
def is_palindrome(text):
    letters = [c.lower() for c in text if c.isalnum()]
    return letters == letters[::-1]
";

/// Ignores case but not punctuation: the sentence fails.
const PALINDROME_WRONG: &str = "\
def is_palindrome(text):
    return text.lower() == text.lower()[::-1]
";

/// The attacks' exercise: `attack()` must return for the test to pass, and each attack
/// returns only if the sandbox let it do what it tried.
const ATTACK_TESTS: &str = "\
def test_attack():
    attack()
";

fn exercise(title: &str, tests: &str) -> types::CreateExercise {
    serde_json::from_value(json!({
        "title": title,
        "statement": format!("Solve *{title}*."),
        "language": "python3",
        "starter_code": "# your code here\n",
        "test_code": tests,
    }))
    .unwrap()
}

fn submission(code: &str) -> types::CreateSubmission {
    serde_json::from_value(json!({ "code": code })).unwrap()
}

fn status<T: std::fmt::Debug>(result: Result<T, Error<types::Problem>>) -> u16 {
    match result {
        Err(Error::ErrorResponse(rv)) => rv.status().as_u16(),
        other => panic!("expected an error response, got {other:?}"),
    }
}

/// Submits `code` and returns the submission as first answered (202).
async fn submit(client: &Client, exercise: uuid::Uuid, code: &str) -> types::Submission {
    let answer = client
        .create_submission()
        .exercise_id(exercise)
        .body(submission(code))
        .send()
        .await
        .expect("create_submission");
    assert_eq!(answer.status().as_u16(), 202);
    let location = answer
        .headers()
        .get("location")
        .expect("Location")
        .to_str()
        .unwrap()
        .to_string();
    let s = answer.into_inner();
    assert_eq!(
        location,
        format!("/v1/exercises/{exercise}/submissions/{}", s.id)
    );
    assert_eq!(s.status, types::SubmissionStatus::Pending);
    s
}

async fn create(client: &Client, title: &str, tests: &str) -> uuid::Uuid {
    client
        .create_exercise()
        .body(exercise(title, tests))
        .send()
        .await
        .expect("create_exercise")
        .into_inner()
        .id
}

async fn admins_write_exercises_and_users_read_them_without_the_tests(backend: Backend) {
    let world = Exercises::start(backend).await;
    let admin = world.exercises(&world.users.admin_token().await);
    let (_, token) = world.users.register("learner").await;
    let learner = world.exercises(&token);

    assert_eq!(
        status(
            learner
                .create_exercise()
                .body(exercise("mine", FIZZBUZZ_TESTS))
                .send()
                .await
        ),
        403
    );
    let id = create(&admin, "FizzBuzz", FIZZBUZZ_TESTS).await;
    let seen = learner.get_exercise().exercise_id(id).send().await.unwrap();
    assert_eq!(seen.title, "FizzBuzz");
    assert_eq!(seen.test_code, None, "users never see the tests");
    assert_eq!(seen.starter_code.as_deref(), Some("# your code here\n"));
    let listed = learner.list_exercises().send().await.unwrap().into_inner();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].test_code, None);
    let as_admin = admin.get_exercise().exercise_id(id).send().await.unwrap();
    assert_eq!(as_admin.test_code.as_deref(), Some(FIZZBUZZ_TESTS));

    let changed = admin
        .update_exercise()
        .exercise_id(id)
        .body(
            serde_json::from_value::<types::UpdateExercise>(json!({"title": "Fizz Buzz"})).unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(changed.title, "Fizz Buzz");
    assert_eq!(changed.statement, "Solve *FizzBuzz*.");
    assert_eq!(
        status(
            learner
                .update_exercise()
                .exercise_id(id)
                .body(
                    serde_json::from_value::<types::UpdateExercise>(json!({"title": "x"})).unwrap()
                )
                .send()
                .await
        ),
        403
    );
    assert_eq!(
        status(learner.delete_exercise().exercise_id(id).send().await),
        403
    );
    let submitted = submit(&learner, id, FIZZBUZZ_RIGHT).await;
    admin
        .delete_exercise()
        .exercise_id(id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        status(learner.get_exercise().exercise_id(id).send().await),
        404
    );
    // Its submissions went with it.
    assert_eq!(
        status(
            learner
                .get_submission()
                .exercise_id(id)
                .submission_id(submitted.id)
                .send()
                .await
        ),
        404
    );
    assert_eq!(
        status(
            learner
                .create_submission()
                .exercise_id(id)
                .body(submission(FIZZBUZZ_RIGHT))
                .send()
                .await
        ),
        404
    );
}

async fn real_exercises_are_graded_right_and_wrong(backend: Backend) {
    let world = Exercises::start(backend).await;
    let admin = world.exercises(&world.users.admin_token().await);
    let (_, token) = world.users.register("solver").await;
    let solver = world.exercises(&token);
    let (_, other_token) = world.users.register("nosy").await;
    let nosy = world.exercises(&other_token);
    let fizzbuzz = create(&admin, "FizzBuzz", FIZZBUZZ_TESTS).await;
    let palindrome = create(&admin, "Palindromes", PALINDROME_TESTS).await;

    let right = submit(&solver, fizzbuzz, FIZZBUZZ_RIGHT).await;
    let wrong = submit(&solver, fizzbuzz, FIZZBUZZ_WRONG).await;
    let p_right = submit(&solver, palindrome, PALINDROME_RIGHT).await;
    let p_wrong = submit(&solver, palindrome, PALINDROME_WRONG).await;
    let broken = submit(&solver, palindrome, "def is_palindrome(text:\n").await;

    let right = graded(&solver, fizzbuzz, right.id).await;
    assert_eq!(right.status, types::SubmissionStatus::Passed, "{right:?}");
    let names: Vec<&str> = right.tests.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["test_fizz", "test_buzz", "test_fizzbuzz", "test_number"]
    );
    assert!(right.finished_at.is_some());

    let wrong = graded(&solver, fizzbuzz, wrong.id).await;
    assert_eq!(wrong.status, types::SubmissionStatus::Failed, "{wrong:?}");
    let failed: Vec<_> = wrong
        .tests
        .iter()
        .filter(|t| t.status != types::TestResultStatus::Passed)
        .collect();
    assert_eq!(failed.len(), 1, "{wrong:?}");
    assert_eq!(failed[0].name, "test_fizzbuzz");
    assert_eq!(failed[0].status, types::TestResultStatus::Failed);
    assert!(failed[0].message.as_deref().unwrap().contains("Fizz"));
    assert!(wrong.output.as_deref().unwrap().contains("checking 30"));

    let p_right = graded(&solver, palindrome, p_right.id).await;
    assert_eq!(
        p_right.status,
        types::SubmissionStatus::Passed,
        "{p_right:?}"
    );
    let p_wrong = graded(&solver, palindrome, p_wrong.id).await;
    assert_eq!(
        p_wrong.status,
        types::SubmissionStatus::Failed,
        "{p_wrong:?}"
    );
    let broken = graded(&solver, palindrome, broken.id).await;
    assert_eq!(broken.status, types::SubmissionStatus::Failed, "{broken:?}");
    assert!(broken.tests[0]
        .message
        .as_deref()
        .unwrap()
        .contains("SyntaxError"));

    // Someone else's submission does not exist for them.
    assert_eq!(
        status(
            nosy.get_submission()
                .exercise_id(fizzbuzz)
                .submission_id(right.id)
                .send()
                .await
        ),
        404
    );
    let theirs = nosy
        .list_submissions()
        .exercise_id(fizzbuzz)
        .send()
        .await
        .unwrap();
    assert!(theirs.items.is_empty());
    let mine = solver
        .list_submissions()
        .exercise_id(fizzbuzz)
        .limit(1)
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.items.len(), 1);
    let rest = solver
        .list_submissions()
        .exercise_id(fizzbuzz)
        .page_token(mine.next_page_token.unwrap())
        .send()
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].id, wrong.id);
}

on_both_databases!(
    admins_write_exercises_and_users_read_them_without_the_tests,
    real_exercises_are_graded_right_and_wrong,
);

/// The attack test's `SANDBOX_UID_BASE`: its own, so that the fork bomb shares no
/// process count with other tests' runs and its leftovers are told apart.
const ATTACK_UID_BASE: u32 = 310_000;

/// The processes of the attack test's sandboxed runs still alive.
fn sandbox_processes() -> Vec<String> {
    let base = ATTACK_UID_BASE;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue;
        };
        let uid: Option<u32> = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse().ok());
        if uid.is_some_and(|u| (base..base + 64).contains(&u)) {
            found.push(status.lines().next().unwrap_or_default().to_string());
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_fails_and_the_service_stays_healthy() {
    // A secret in the service's environment, which no run may see.
    std::env::set_var("TAPROOM_SANDBOX_SECRET", "do not leak me");
    let world = Exercises::start_with(Backend::Sqlite, |config| {
        config.sandbox.sandbox_uid_base = ATTACK_UID_BASE;
    })
    .await;
    let admin = world.exercises(&world.users.admin_token().await);
    let (_, token) = world.users.register("mallory").await;
    let mallory = world.exercises(&token);
    let target = create(&admin, "Attack", ATTACK_TESTS).await;
    let data_dir = world.users.db.data_dir();
    let db_file = data_dir.join("exercises.db");
    assert!(db_file.exists(), "the database file the attack reads");
    let service_port = world.url.rsplit(':').next().unwrap().to_string();

    use types::SubmissionStatus::{Error as E, Failed as F, TimedOut as T};
    let attacks: Vec<(&str, String, &[types::SubmissionStatus])> = vec![
        (
            "infinite loop",
            "def attack():\n    while True:\n        pass\n".into(),
            &[T],
        ),
        (
            "sleeping past the wall-clock limit",
            "import time\ndef attack():\n    time.sleep(120)\n".into(),
            &[T],
        ),
        (
            "fork bomb",
            "import os\ndef attack():\n    while True:\n        os.fork()\n".into(),
            &[F, T, E],
        ),
        (
            "memory bomb",
            "def attack():\n    hog = []\n    while True:\n        hog.append(bytearray(10**7))\n"
                .into(),
            &[F, E],
        ),
        (
            "100 MB of output",
            "import sys\ndef attack():\n    chunk = 'x' * 2**20\n    for _ in range(100):\n        sys.stdout.write(chunk)\n"
                .into(),
            &[E],
        ),
        (
            "a socket to the database port",
            "import socket\ndef attack():\n    socket.create_connection(('127.0.0.1', 5432), timeout=2)\n"
                .into(),
            &[F],
        ),
        (
            "a socket to the service itself",
            format!("import socket\ndef attack():\n    socket.create_connection(('127.0.0.1', {service_port}), timeout=2)\n"),
            &[F],
        ),
        (
            "reading the service's database file",
            format!("def attack():\n    open({:?}, 'rb').read()\n", db_file.display().to_string()),
            &[F],
        ),
        (
            "reading the environment of pid 1 and its own",
            "def attack():\n    seen = open('/proc/1/environ', 'rb').read() + open('/proc/self/environ', 'rb').read()\n    assert b'TAPROOM_SANDBOX_SECRET' in seen, seen\n"
                .into(),
            &[F],
        ),
        (
            "writing outside the tmpfs",
            format!(
                "def attack():\n    for path in ['/evil', '/usr/evil', '/dev/evil', '/dev/shm/evil', {:?}]:\n        try:\n            open(path, 'w').write('x')\n            return\n        except OSError:\n            pass\n    raise AssertionError('nothing outside /tmp was writable')\n",
                data_dir.join("evil").display().to_string()
            ),
            &[F],
        ),
        (
            "os.kill of the parent, then of everything",
            "import os, signal\ndef attack():\n    os.kill(os.getppid(), signal.SIGKILL)\n    os.kill(-1, signal.SIGKILL)\n    raise AssertionError('still here')\n"
                .into(),
            &[F, E],
        ),
    ];
    let mut submitted = Vec::new();
    for (name, code, _) in &attacks {
        submitted.push((name, submit(&mallory, target, code).await.id));
    }
    for ((name, id), (_, _, allowed)) in submitted.iter().zip(&attacks) {
        let s = graded(&mallory, target, *id).await;
        eprintln!("{name}: {:?} ({:?}) {:?}", s.status, s.message, s.tests);
        assert!(
            allowed.contains(&s.status),
            "{name}: ended as {:?}, expected one of {allowed:?}: {s:?}",
            s.status
        );
        match **name {
            "100 MB of output" => {
                assert!(s.output_truncated);
                assert_eq!(s.output.as_deref().map(str::len), Some(8 * 1024));
                assert!(s.message.as_deref().unwrap().contains("output limit"));
            }
            "infinite loop" | "sleeping past the wall-clock limit" => {
                assert!(s.message.is_some(), "{s:?}")
            }
            _ => {}
        }
        let text = format!("{s:?}");
        assert!(!text.contains("do not leak me"), "{name} leaked the secret");
    }
    assert!(
        !data_dir.join("evil").exists(),
        "a run wrote into the data directory"
    );
    // The service is healthy and still grades.
    let ping = reqwest::get(format!("{}/readyz", world.url)).await.unwrap();
    assert_eq!(ping.status(), 200);
    let honest = create(&admin, "FizzBuzz", FIZZBUZZ_TESTS).await;
    let s = submit(&mallory, honest, FIZZBUZZ_RIGHT).await;
    assert_eq!(
        graded(&mallory, honest, s.id).await.status,
        types::SubmissionStatus::Passed
    );
    // Nothing of any run is left running (the fork bomb's children included).
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let mut left = sandbox_processes();
        for _ in 0..50 {
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            left = sandbox_processes();
        }
        assert!(left.is_empty(), "sandboxed processes still alive: {left:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_submissions_are_run_after_a_restart() {
    let mut world = Exercises::start_with(Backend::Sqlite, |config| {
        config.sandbox.sandbox_workers = 1;
        config.sandbox.sandbox_wall_ms = 2000;
    })
    .await;
    let admin = world.exercises(&world.users.admin_token().await);
    let (_, token) = world.users.register("patient").await;
    let id = create(&admin, "FizzBuzz", FIZZBUZZ_TESTS).await;
    let slow = format!("import time\ntime.sleep(0.5)\n{FIZZBUZZ_RIGHT}");
    let client = world.exercises(&token);
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(submit(&client, id, &slow).await.id);
    }
    world.stop_exercises().await;
    world.start_exercises().await;
    let client = world.exercises(&token);
    let mut waiting = 0;
    for s in &queued {
        let now = client
            .get_submission()
            .exercise_id(id)
            .submission_id(*s)
            .send()
            .await
            .unwrap();
        waiting += usize::from(!is_final(now.status));
    }
    assert!(waiting >= 2, "the restart came too late to prove anything");
    for s in queued {
        let s = graded(&client, id, s).await;
        assert_eq!(s.status, types::SubmissionStatus::Passed, "{s:?}");
    }
}

#[tokio::test]
async fn the_service_refuses_to_start_without_a_working_sandbox() {
    let users = taproom_tests::Users::start(Backend::Sqlite).await;
    let mut config = users.db.config();
    config.sandbox.sandbox_bwrap = "/nonexistent/bwrap".into();
    let log =
        taproom_server::runtime::server::logger(&config.log_level, config.log_format).unwrap();
    let mut peers = users.peers();
    peers.insert("scores", "http://127.0.0.1:9".into());
    let error = match taproom_server::exercises::start(&config, &peers, &log).await {
        Ok(_) => panic!("started without bubblewrap"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("bubblewrap"), "{error}");
    assert!(error.contains("unsandboxed"), "{error}");
}
