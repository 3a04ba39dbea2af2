//! A rolling restart on loopback: three `ferrite serve` replicas (SmolLM2) behind HAProxy, which
//! health-checks their readiness endpoint and retries refused or failed connections elsewhere.
//! The official OpenAI Python client holds 64 concurrent clients (streamed and whole chat
//! completions, retries off) while each replica in turn gets SIGTERM, drains, exits 0, is started
//! again on its port and serves again (about a minute in all).
//!
//! Pass: every request got a complete answer (zero errors or cut streams reached a client),
//! every replica drained cleanly, and each restarted replica rejoined and served requests.
//!
//! Needs `haproxy` (Debian package, installed by `cargo xtask test`) and the Python client; a
//! missing one fails under `CI=true` and skips elsewhere.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{agent, clients_dir, skip, Server};
use serde_json::Value;

const REPLICAS: usize = 3;
/// The longest the load may run, seconds (it stops once every replica has been restarted and
/// served again, about a minute in).
const MAX_DURATION: u64 = 240;
/// Concurrent clients.
const CONCURRENCY: usize = 64;

/// A free loopback port (bound, then released for the process that will use it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// HAProxy's configuration: HTTP health checks on `/ready` every 250 ms (down after one failure,
/// up after one success), least-connections balancing, and layer-7 retries on another replica
/// for a refused connection, an empty response or a 503 (a replica loading or draining).
fn haproxy_config(front: u16, ports: &[u16], socket: &Path) -> String {
    let servers: String = ports.iter().enumerate().map(|(i, p)| format!("    server r{i} 127.0.0.1:{p}\n")).collect();
    format!(
        "global\n    maxconn 4096\n    stats socket {}\n\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 300s\n    timeout server 300s\n    \
         timeout http-request 30s\n    retries 6\n    option redispatch 1\n    \
         retry-on conn-failure empty-response 503\n    option http-buffer-request\n\
         frontend api\n    bind 127.0.0.1:{front}\n    default_backend ferrite\n\
         backend ferrite\n    balance leastconn\n    option httpchk GET /ready\n    http-check expect status 200\n    \
         default-server check inter 250ms fall 1 rise 1\n{servers}",
        socket.display()
    )
}

/// A replica on `port`, ready.
fn replica(model: &Path, port: u16) -> Server {
    let args = ["--model", model.to_str().unwrap(), "--name", "smol", "--threads", "1", "--drain-timeout", "60"];
    let mut s = Server::spawn_on(port, &args, &[]);
    s.wait_ready(Instant::now() + Duration::from_secs(120)).unwrap();
    s
}

/// A replica's load: (chat completions answered with 200 so far, requests in its engine now).
fn load_of(s: &Server) -> (u64, u64) {
    let (_, text) = s.get("/metrics");
    let value = |prefix: &str| -> u64 {
        text.lines().filter_map(|l| l.strip_prefix(prefix)).map(|v| v.parse::<f64>().unwrap() as u64).sum()
    };
    let served = value("ferrite_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"} ");
    let queued = value("ferrite:num_requests_running{model_name=\"smol\"} ")
        + value("ferrite:num_requests_waiting{model_name=\"smol\"} ");
    (served, queued)
}

/// Waits (up to 60 s) until `s` has requests in its engine; returns its load then.
fn busy(s: &Server, what: &str) -> (u64, u64) {
    let t = Instant::now();
    loop {
        let load = load_of(s);
        if load.1 > 0 {
            return load;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "{what}: no requests reached it");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed when the test ends, even by a panic.
struct Killed(Option<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn tools() -> Option<(PathBuf, PathBuf)> {
    let model = common::smollm2()?;
    let haproxy = Command::new("haproxy").arg("-v").stdout(Stdio::null()).status();
    if !haproxy.is_ok_and(|s| s.success()) {
        return skip("haproxy is not installed");
    }
    let python = clients_dir().join("venv/bin/python");
    let works = Command::new(&python).args(["-c", "import openai"]).status();
    if !works.is_ok_and(|s| s.success()) {
        return skip(&format!("the Python OpenAI client ({}) is missing", python.display()));
    }
    Some((model, python))
}

/// HAProxy's count of retried and redispatched requests for the backend (`show stat`).
fn backend_retries(socket: &Path) -> (u64, u64) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.write_all(b"show stat\n").unwrap();
    let mut csv = String::new();
    s.read_to_string(&mut csv).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().trim_start_matches("# ").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let row: Vec<&str> =
        lines.map(|l| l.split(',').collect::<Vec<_>>()).find(|r| r[0] == "ferrite" && r[1] == "BACKEND").unwrap();
    let num = |name: &str| row[col(name)].parse::<u64>().unwrap_or(0);
    (num("wretr"), num("wredis"))
}

#[test]
fn rolling_restart_behind_haproxy_loses_no_request() {
    let Some((model, python)) = tools() else { return };
    let ports: Vec<u16> = (0..REPLICAS).map(|_| free_port()).collect();
    let mut replicas: Vec<Server> = ports.iter().map(|&p| replica(&model, p)).collect();

    let front = free_port();
    let dir = std::env::temp_dir().join(format!("ferrite-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("haproxy.cfg");
    let socket = dir.join("haproxy.sock");
    std::fs::write(&cfg, haproxy_config(front, &ports, &socket)).unwrap();
    let check = Command::new("haproxy").arg("-c").arg("-f").arg(&cfg).output().unwrap();
    assert!(check.status.success(), "haproxy rejects its config: {}", String::from_utf8_lossy(&check.stderr));
    let _haproxy =
        Killed(Some(Command::new("haproxy").arg("-db").arg("-f").arg(&cfg).stdout(Stdio::null()).spawn().unwrap()));
    let front_url = format!("http://127.0.0.1:{front}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while agent().get(format!("{front_url}/ready")).call().map(|r| r.status().as_u16()).unwrap_or(0) != 200 {
        assert!(Instant::now() < deadline, "haproxy does not answer");
        std::thread::sleep(Duration::from_millis(100));
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/rolling_load.py");
    let stop = dir.join("stop");
    let load = Command::new(&python)
        .arg(&script)
        .env("OPENAI_BASE_URL", format!("{front_url}/v1"))
        .env("MODEL", "smol")
        .env("CONCURRENCY", CONCURRENCY.to_string())
        .env("DURATION", MAX_DURATION.to_string())
        .env("STOP_FILE", &stop)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut load = Killed(Some(load));

    // Each replica in turn, while the load runs: SIGTERM, a clean drain, a restart on its port,
    // and requests served again through HAProxy.
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let mut restarts = Vec::new();
    for (i, slot) in replicas.iter_mut().enumerate() {
        // SIGTERM while requests are in its engine, so that the drain has work to finish.
        let (before, in_engine) = busy(slot, &format!("replica {i}"));
        slot.terminate();
        let t = Instant::now();
        let status = slot.wait_exit(Duration::from_secs(90)).expect("a replica did not exit after SIGTERM");
        assert!(status.success(), "replica {i} did not drain cleanly: {status:?}");
        let drained = t.elapsed();
        *slot = replica(&model, ports[i]);
        let t = Instant::now();
        busy(slot, &format!("restarted replica {i}"));
        eprintln!(
            "replica {i}: SIGTERM with {in_engine} request(s) in its engine after {before} answered; drained and \
             exited 0 in {:.1} s; restarted, and serving again {:.1} s after it turned ready",
            drained.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
        restarts.push(drained);
        std::thread::sleep(Duration::from_secs(3));
    }
    // More load on the whole set, to a minute at least; then the clients finish what they sent.
    std::thread::sleep(Duration::from_secs(60).saturating_sub(started.elapsed()).max(Duration::from_secs(5)));
    std::fs::write(&stop, b"").unwrap();
    eprintln!("load stopped after {:.1} s", started.elapsed().as_secs_f64());

    let out = load.0.take().unwrap().wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    let (retries, redispatches) = backend_retries(&socket);
    eprintln!("rolling restart: {report}; haproxy retried {retries} request(s), {redispatches} on another replica");
    assert_eq!(report["failures"], 0, "errors reached the clients: {report}");
    assert!(out.status.success(), "{report}");
    let served_total = report["served"].as_u64().unwrap();
    assert!(served_total >= 100, "too little traffic to mean anything: {report}");
    assert!(report["streamed"].as_u64().unwrap() > 0 && report["whole"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(restarts.len(), REPLICAS);
    // Each restarted replica finished requests of its own.
    for (i, r) in replicas.iter().enumerate() {
        assert!(load_of(r).0 > 0, "restarted replica {i} answered nothing: {report}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
