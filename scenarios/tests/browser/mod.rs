//! A real headless browser for the timeline tests: Debian's chromium, which loads a page,
//! runs its script and prints the DOM the script built (`--dump-dom`).
//!
//! Without chromium the tests say so loudly and pass (install it with `apt-get install
//! chromium`, or name it in `CONCLAVE_CHROMIUM`); with `CONCLAVE_REQUIRE_BROWSER=1` (CI
//! sets it) they fail instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The browser to use, if any.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CONCLAVE_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// The DOM of `page` after its script ran, or `None` (said loudly) when there is no
/// browser here and none is required.
///
/// # Panics
///
/// If a browser is required and absent, or it fails or hangs.
pub(crate) fn dump_dom(page: &Path) -> Option<String> {
    let Some(browser) = chromium() else {
        let required = std::env::var("CONCLAVE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(!required, "CONCLAVE_REQUIRE_BROWSER=1, but no chromium was found (apt-get install chromium)");
        // Straight to the terminal: the test harness would swallow a passing test's output.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** NO BROWSER: the timeline page was NOT opened in a browser; install chromium \
             (apt-get install chromium) or set CONCLAVE_CHROMIUM, and CONCLAVE_REQUIRE_BROWSER=1 \
             to make its absence fail ***\n"
        );
        return None;
    };
    let profile = std::env::temp_dir().join(format!(
        "conclave-chromium-{}-{}",
        std::process::id(),
        page.display().to_string().len()
    ));
    let page = std::fs::canonicalize(page).expect("the page exists");
    let (dom_file, log_file) = (profile.with_extension("dom"), profile.with_extension("log"));
    let mut child = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1400,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        // Into files, not pipes: a DOM larger than a pipe's buffer would block the browser.
        .stdout(Stdio::from(std::fs::File::create(&dom_file).expect("a temporary file")))
        .stderr(Stdio::from(std::fs::File::create(&log_file).expect("a temporary file")))
        .spawn()
        .unwrap_or_else(|e| panic!("{} does not start: {e}", browser.display()));
    // A browser that hangs must not hang the tests: two minutes at most, in 50 ms naps.
    let mut naps = 0;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if naps >= 2400 => {
                let _ = child.kill();
                panic!("{} did not finish within two minutes", browser.display());
            }
            Ok(None) => {
                naps += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("waiting for {}: {e}", browser.display()),
        }
    }
    let status = child.wait().expect("its status");
    let dom = std::fs::read_to_string(&dom_file).unwrap_or_default();
    let log = std::fs::read_to_string(&log_file).unwrap_or_default();
    for path in [&dom_file, &log_file] {
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_dir_all(&profile);
    assert!(status.success() && dom.contains("</html>"), "{} failed ({status}): {log}", browser.display());
    Some(dom)
}

/// How many elements of the DOM have a class attribute starting with `class`.
pub(crate) fn count(dom: &str, element: &str, class: &str) -> usize {
    dom.matches(&format!("<{element} class=\"{class}")).count()
}
