//! The HTML report in a real browser: headless Chromium loads it from disk with the network
//! unused, and the test reads the DOM the browser rendered and the console messages it logged.
//!
//! Needs a Chromium (or Chrome) binary: `$VGRAD_CHROMIUM`, else `chromium`, `chromium-browser`,
//! `google-chrome` or `google-chrome-stable` on `PATH` (Debian: `apt-get install chromium`).
//! Without one the test prints a notice and passes, unless `VGRAD_REQUIRE_BROWSER=1` (set in
//! CI), when it fails.
#![cfg(feature = "plot")]

use rand::{rngs::StdRng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vgrad::monitor::{GradMonitor, MonitorConfig};
use vgrad::nn::{
    mse_loss, Activation, BatchNorm1d, Ctx, Linear, Module, Optimizer, Reduction, Sequential, Sgd,
    SgdConfig,
};
use vgrad::{Tape, Tensor};

/// The longest a browser may take to load and dump one page (it takes about a second).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

fn find_browser() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VGRAD_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let names = [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ];
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// The browser, or `None` after a loud notice when it is optional.
fn browser_or_skip() -> Option<PathBuf> {
    let found = find_browser();
    if found.is_none() {
        assert!(
            std::env::var("VGRAD_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "VGRAD_REQUIRE_BROWSER=1 but no chromium, chromium-browser, google-chrome or \
             google-chrome-stable on PATH (or VGRAD_CHROMIUM)"
        );
        // Straight to the stream: the test harness captures `eprintln!` of passing tests.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "\n*** monitor_html: NO BROWSER FOUND, the HTML report was NOT tested in a browser. \
             Install chromium (apt-get install chromium) or set VGRAD_CHROMIUM. ***\n"
        );
    }
    found
}

/// What the browser made of a page.
struct Rendered {
    dom: String,
    console: Vec<String>,
}

/// Loads `page` in headless Chromium and returns the DOM after load and every console message,
/// killing the browser if it outlives [`BROWSER_TIMEOUT`].
fn render(browser: &Path, page: &Path, scratch: &Path) -> Rendered {
    let profile = scratch.join("profile");
    let out = scratch.join("dom.html");
    let err = scratch.join("stderr.txt");
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser.display()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} took more than {BROWSER_TIMEOUT:?}", browser.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let dom = std::fs::read_to_string(&out).unwrap();
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(status.success(), "browser exited with {status}:\n{stderr}");
    // Chromium logs each console message, errors and uncaught exceptions included, as a
    // `:CONSOLE` line; the report writes none.
    let console = stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    Rendered { dom, console }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vgrad-html-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A few steps of a small network with a normalisation layer, so that the report has layers the
/// plots leave out (they show the `Linear` layers) and the table must still list.
fn small_run() -> GradMonitor<f32> {
    let mut rng = StdRng::seed_from_u64(5);
    let mut net = Sequential::<f32>::new()
        .push(Linear::new(6, 12, &mut rng).unwrap())
        .push(BatchNorm1d::new(12).unwrap())
        .push(Activation::Tanh)
        .push(Linear::new(12, 12, &mut rng).unwrap())
        .push(Activation::Relu)
        .push(Linear::new(12, 2, &mut rng).unwrap());
    let x = Tensor::from_fn(&[16, 6], |i| ((i * 37) % 11) as f32 / 5.0 - 1.0);
    let y = Tensor::from_fn(&[16, 2], |i| ((i * 13) % 7) as f32 / 7.0);
    let mut opt = Sgd::new(SgdConfig {
        lr: 0.05,
        ..SgdConfig::default()
    })
    .unwrap();
    let mut mon = GradMonitor::new(MonitorConfig::default());
    for _ in 0..4 {
        let tape = Tape::new();
        let mut ctx = Ctx::new(&tape);
        let out = net.forward(&mut ctx, tape.constant(x.clone()));
        let grads = mon.backward(&ctx, &net, mse_loss(out, y.clone(), Reduction::Mean));
        opt.step(&mut net, &grads).unwrap();
    }
    mon.after_update(&net);
    mon
}

#[test]
fn the_html_report_loads_in_a_browser_without_errors_and_shows_every_layer() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let dir = scratch("report");
    let mon = small_run();
    let page = dir.join("report.html");
    mon.write_html(&page).unwrap();
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing is fetched (the only URLs are SVG's namespace).
    for fetch in ["src=", "href=", "@import", "url("] {
        assert!(
            !html.contains(fetch),
            "the report refers to a resource: {fetch}"
        );
    }

    let r = render(&browser, &page, &dir);
    assert!(r.console.is_empty(), "console messages: {:#?}", r.console);
    let layers = &mon.latest().unwrap().layers;
    assert_eq!(layers.len(), 4, "three Linear layers and the BatchNorm");
    // The page's own script ran to the end and counted every layer's row, with no error.
    let status = format!(
        "data-layers=\"{}\" data-errors=\"0\">loaded: {} layers, 0 script errors",
        layers.len(),
        layers.len()
    );
    assert!(
        r.dom.contains(&status),
        "no self-check `{status}` in the DOM"
    );
    for l in layers {
        let cell = format!("<td class=\"name\">{}</td>", l.name);
        assert!(
            r.dom.contains(&cell),
            "layer {} is not in the table",
            l.name
        );
    }
    // The three plots drew, each with hover titles naming the layers.
    assert_eq!(r.dom.matches("<svg").count(), 3);
    for (i, l) in layers
        .iter()
        .filter(|l| l.weight_shape.len() == 2)
        .enumerate()
    {
        let hover = format!("Linear layer {i} · {}\n", l.name);
        assert!(r.dom.contains(&hover), "no hover text `{hover}`");
    }
    assert!(r
        .dom
        .contains(&mon.diagnose().summary.replace('&', "&amp;")));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The check above would pass on a browser that ignored errors: this page has one of each kind,
/// and both must be caught.
#[test]
fn the_browser_check_catches_console_errors_and_uncaught_exceptions() {
    let Some(browser) = browser_or_skip() else {
        return;
    };
    let dir = scratch("broken");
    let page = dir.join("broken.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><script>console.error('logged');\
         </script></head><body><p>text</p><script>notDefined();</script></body></html>",
    )
    .unwrap();
    let r = render(&browser, &page, &dir);
    assert!(r.dom.contains("<p>text</p>"));
    assert_eq!(r.console.len(), 2, "{:#?}", r.console);
    assert!(r.console.iter().any(|l| l.contains("logged")));
    assert!(r
        .console
        .iter()
        .any(|l| l.contains("Uncaught ReferenceError")));
    let _ = std::fs::remove_dir_all(&dir);
}
