//! A `ferrite serve` child process on 127.0.0.1 for the HTTP tests, and small HTTP helpers.
//! Every wait is bounded; the child is killed when the `Server` drops.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferrite_tensor::model_files::{test_model, SMOLLM2};
use serde_json::Value;

/// How long a server may take to load its model and bind.
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// How long one HTTP exchange may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The default chat model, or `None` (test skipped) when it is missing outside CI.
pub fn smollm2() -> Option<PathBuf> {
    test_model(SMOLLM2)
}

/// Whether this is a CI run (`CI=true`), where a missing model, client or tool is a failure.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Under `CI=true` a panic with `reason`; elsewhere `SKIPPED: reason` and `None`.
pub fn skip<T>(reason: &str) -> Option<T> {
    assert!(!ci(), "{reason} (under CI=true this is a failure; `cargo xtask test` installs what the tests need)");
    eprintln!("SKIPPED: {reason} (run `cargo xtask test`, which installs it)");
    None
}

/// `$FERRITE_CLIENTS`, else `clients` beside the models folder (as xtask decides): where the
/// official OpenAI clients are installed.
pub fn clients_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FERRITE_CLIENTS") {
        return PathBuf::from(d);
    }
    let models = ferrite_tensor::model_files::models_dir();
    models.parent().unwrap_or(&models).join("clients")
}

/// The URL of the structured `listening` line, if `line` is one.
pub fn listening_url(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    (v["event"] == "listening").then(|| v["url"].as_str().map(str::to_string)).flatten()
}

/// A running `ferrite serve`.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// stderr lines after the listening line.
    pub log: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `ferrite serve --host 127.0.0.1 --port 0 ARGS` with extra environment variables,
    /// and waits until it is ready.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut server = Server::spawn(args, env);
        if let Err(e) = server.wait_ready(Instant::now() + START_TIMEOUT) {
            let _ = server.child.kill();
            panic!("ferrite serve did not turn ready: {e}");
        }
        server
    }

    /// Like [`Server::start`], but returns as soon as the server listens (models maybe still
    /// loading).
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Server {
        Server::spawn_on(0, args, env)
    }

    /// [`Server::spawn`] on `port` (0: a free one).
    pub fn spawn_on(port: u16, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferrite"));
        let port = port.to_string();
        cmd.args(["serve", "--host", "127.0.0.1", "--port", &port, "--kv-cache-mb", "64"]);
        if !args.contains(&"--threads") {
            cmd.args(["--threads", "2"]);
        }
        cmd.args(args).env_remove("FERRITE_API_KEYS").stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn ferrite serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[server] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(base) = listening_url(&line) {
                        let addr = base.trim_start_matches("http://").to_string();
                        return Server { child, base, addr, log: rx };
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("ferrite serve did not print its listening line; stderr:\n{}", seen.join("\n"));
                }
            }
        }
    }

    /// Polls `GET /ready` until it answers 200 (the models are loaded) or `deadline` passes.
    pub fn wait_ready(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("the server exited with {status} while loading"));
            }
            match agent().get(self.url("/ready")).call() {
                Ok(resp) if resp.status() == 200 => return Ok(()),
                Ok(resp) if resp.status() == 503 => {}
                Ok(resp) => return Err(format!("GET /ready answered {}", resp.status())),
                Err(e) => return Err(format!("GET /ready: {e}")),
            }
            if Instant::now() >= deadline {
                return Err("still loading at the deadline".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts a server for the default model under `name`.
    pub fn smollm2(name: &str, extra: &[&str]) -> Option<Server> {
        let model = smollm2()?;
        let mut args = vec!["--model", model.to_str().unwrap(), "--name", name];
        args.extend_from_slice(extra);
        Some(Server::start(&args, &[]))
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// `GET path` → (status, body text).
    pub fn get(&self, path: &str) -> (u16, String) {
        let resp = agent().get(self.url(path)).call().unwrap();
        read(resp)
    }

    /// `GET path` → (status, JSON body).
    pub fn get_json(&self, path: &str) -> (u16, Value) {
        let (status, text) = self.get(path);
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}")))
    }

    /// `POST path` with a JSON body (and optional bearer key) → (status, JSON body).
    pub fn post(&self, path: &str, body: &Value, key: Option<&str>) -> (u16, Value) {
        self.post_text(path, &body.to_string(), key)
    }

    /// `POST path` with a raw body sent as JSON → (status, JSON body).
    pub fn post_text(&self, path: &str, body: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = agent().post(self.url(path)).header("content-type", "application/json");
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let (status, text) = read(req.send(body).unwrap());
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: {e}: {text}")))
    }

    /// `POST path` with a streaming request → (status, content type, every SSE `data:` payload).
    pub fn post_stream(&self, path: &str, body: &Value) -> (u16, String, Vec<String>) {
        let resp = agent()
            .post(self.url(path))
            .header("content-type", "application/json")
            .send(body.to_string().as_str())
            .unwrap();
        let status = resp.status().as_u16();
        let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let reader = BufReader::new(resp.into_body().into_reader());
        (status, ctype, sse_payloads(reader))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that returns error statuses instead of failing, with a global timeout.
pub fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(REQUEST_TIMEOUT)).build(),
    )
}

fn read(mut resp: ureq::http::Response<ureq::Body>) -> (u16, String) {
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

/// The `data:` payloads of an SSE body, checking that every line is `data: ...`, a comment or
/// blank, and that events are separated by blank lines.
pub fn sse_payloads(reader: impl BufRead) -> Vec<String> {
    let mut out = Vec::new();
    let mut expect_blank = false;
    for line in reader.lines() {
        let line = line.unwrap();
        if expect_blank {
            assert_eq!(line, "", "an SSE event must end with a blank line");
            expect_blank = false;
        } else if let Some(data) = line.strip_prefix("data: ") {
            out.push(data.to_string());
            expect_blank = true;
        } else {
            assert!(line.is_empty() || line.starts_with(':'), "not an SSE line: {line:?}");
        }
    }
    out
}

/// Opens a raw connection and sends `request` (for what an HTTP client would not send, and to
/// hang up mid-response).
pub fn raw(addr: &str, request: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    s
}

/// Reads a raw response to its end (the server closes HTTP/1.0 connections).
pub fn raw_response(mut s: TcpStream) -> (u16, String) {
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A POST as raw HTTP/1.0 text (so a streamed answer is not chunk-encoded and the server closes
/// the connection after it).
pub fn raw_post(path: &str, body: &str, content_type: Option<&str>) -> String {
    let ctype = content_type.map(|c| format!("Content-Type: {c}\r\n")).unwrap_or_default();
    format!("POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{ctype}Content-Length: {}\r\n\r\n{body}", body.len())
}

/// Polls `GET /metrics` until `line` appears, up to `timeout`; returns the last scrape.
pub fn wait_for_metric(server: &Server, line: &str, timeout: Duration) -> Result<String, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, text) = server.get("/metrics");
        assert_eq!(status, 200);
        if text.lines().any(|l| l == line) {
            return Ok(text);
        }
        if Instant::now() > deadline {
            return Err(text);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Asserts an OpenAI error body of the given type, param and code.
pub fn assert_error(body: &Value, kind: &str, param: Option<&str>, code: Option<&str>) {
    let e = &body["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "no message: {body}");
    assert_eq!(e["type"], kind, "{body}");
    assert_eq!(e["param"].as_str(), param, "{body}");
    assert_eq!(e["code"].as_str(), code, "{body}");
}
