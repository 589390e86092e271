//! Client compatibility: the official `openai` and `anthropic` Python SDKs
//! against `cordon demo` (tests/sdk/test_*_sdk.py, run with pytest).
//!
//! Python comes from `CORDON_PYTHON`, else `.venv/bin/python` when it exists,
//! else `python3`. Without Python or its `openai`, `anthropic` and `pytest` modules the test
//! is skipped with the reason printed, except under `CI=true`, where it fails.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

const SETUP: &str = "python3 -m venv .venv && .venv/bin/pip install openai anthropic pytest";

#[test]
fn official_openai_python_sdk_works_against_cordon_demo() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ci = std::env::var_os("CI").is_some_and(|v| v == "true");
    let python: OsString = std::env::var_os("CORDON_PYTHON").unwrap_or_else(|| {
        let venv = root.join(".venv/bin/python");
        if venv.exists() {
            venv.into_os_string()
        } else {
            "python3".into()
        }
    });
    let shown = Path::new(&python).display().to_string();

    let missing = match Command::new(&python)
        .args(["-c", "import openai, anthropic, pytest"])
        .output()
    {
        Err(e) => Some(format!("cannot run `{shown}`: {e}")),
        Ok(o) if !o.status.success() => Some(format!(
            "`{shown}` cannot import openai, anthropic and pytest: {}",
            String::from_utf8_lossy(&o.stderr)
                .trim()
                .lines()
                .last()
                .unwrap_or("")
        )),
        Ok(_) => None,
    };
    if let Some(why) = missing {
        assert!(
            !ci,
            "CI=true, so this test may not be skipped: {why}. Set it up with `{SETUP}` or set CORDON_PYTHON."
        );
        eprintln!(
            "SKIPPED official_openai_python_sdk_works_against_cordon_demo: {why}. \
             To run it: `{SETUP}` (or set CORDON_PYTHON)."
        );
        return;
    }

    let out = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/sdk"])
        .current_dir(root)
        .env("CORDON_BIN", env!("CARGO_BIN_EXE_cordon"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // The demo is on 127.0.0.1: never through a proxy.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .output()
        .expect("run pytest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "pytest tests/sdk failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}
