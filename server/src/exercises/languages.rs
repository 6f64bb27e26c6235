//! The languages exercises may be written in: for each, the command run in the sandbox
//! and the harness that runs a solution against an exercise's tests. A new language is
//! one more entry here (its interpreter must be under `/usr` on the host) and one more
//! value in the spec's `Language` enum.
//!
//! Every harness reads `{"solution": …, "tests": …}` on stdin, runs each test, and
//! writes one JSON object per test to file descriptor 3:
//! `{"name": …, "status": "passed"|"failed"|"error", "message": …}`. What the solution
//! prints goes to stdout/stderr and is kept separately (the first 8 KiB).
//!
//! The harness runs in the same process as the solution, so a solution can forge its own
//! results; that only ever affects its own grade. What the sandbox protects is the
//! service and the other users, not the honesty of one user's score (SECURITY.md).

/// One language.
pub struct Language {
    /// The name in the API (`Language` in openapi/exercises.yaml).
    pub name: &'static str,
    /// The command line inside the sandbox; the harness comes on stdin with the code.
    pub argv: &'static [&'static str],
    /// A program that prints `ok`, run at start-up to prove the sandbox works.
    pub probe: &'static [&'static str],
}

/// Python 3: `tests` is Python that sees the solution's names (as after
/// `from solution import *`, and `import solution` works too) and defines `test_*`
/// functions, run in the order written; an `AssertionError` fails a test, any other
/// exception is an error.
const PYTHON_HARNESS: &str = r#"
import json, os, sys, traceback
spec = json.loads(sys.stdin.buffer.read())
report = os.fdopen(3, "w")
def emit(name, status, message=None):
    entry = {"name": name, "status": status}
    if message:
        entry["message"] = message[:1000]
    report.write(json.dumps(entry) + "\n")
    report.flush()
def last_line(e):
    return "".join(traceback.format_exception_only(type(e), e)).strip()
with open("/tmp/solution.py", "w") as f:
    f.write(spec["solution"])
sys.path.insert(0, "/tmp")
try:
    import solution
except BaseException as e:
    emit("solution", "error", last_line(e))
    sys.exit(0)
names = {k: v for k, v in vars(solution).items() if not k.startswith("__")}
names["__name__"] = "tests"
names["solution"] = solution
try:
    exec(compile(spec["tests"], "tests.py", "exec"), names)
except BaseException as e:
    emit("tests", "error", last_line(e))
    sys.exit(0)
for name, test in list(names.items()):
    if not (name.startswith("test_") and callable(test)):
        continue
    try:
        test()
        emit(name, "passed")
    except AssertionError as e:
        emit(name, "failed", str(e) or last_line(e))
    except BaseException as e:
        emit(name, "error", last_line(e))
"#;

pub const LANGUAGES: &[Language] = &[Language {
    name: "python3",
    argv: &["/usr/bin/python3", "-I", "-S", "-c", PYTHON_HARNESS],
    probe: &["/usr/bin/python3", "-I", "-S", "-c", "print('ok')"],
}];

pub fn find(name: &str) -> Option<&'static Language> {
    LANGUAGES.iter().find(|l| l.name == name)
}
