//! The moto EC2 server for integration tests: a real EC2 API on 127.0.0.1.
//!
//! One server per test binary (moto takes seconds to start), shared by every
//! test through [`moto`], which serialises the tests and resets the server
//! (`POST /moto-api/reset`) before handing it out. The server is started
//! through `tests/moto/moto_server.py`, which can refuse configured pools in
//! CreateFleet (see [`MotoGuard::refuse`]) and exits with this process.
//!
//! Python: `$NODEWRIGHT_PYTHON`, else `$HOME/.cache/nodewright/venv/bin/python`.
//! If it cannot import moto the test panics with instructions: never skipped.
#![allow(
    dead_code,
    reason = "each test binary includes this module and uses part of it"
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running moto server.
pub struct Moto {
    child: std::sync::Mutex<Child>,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub port: u16,
    refused_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let mut c = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("NODEWRIGHT_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").expect("HOME is not set; set NODEWRIGHT_PYTHON");
    PathBuf::from(home).join(".cache/nodewright/venv/bin/python")
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

/// A bare HTTP/1.1 request to the server; returns (status, body).
pub fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Ok((status, body))
}

impl Moto {
    /// Starts a fresh server and waits (up to 60 s) until it answers.
    pub fn start() -> Moto {
        let py = python();
        let check = Command::new(&py)
            .args(["-c", "import moto, flask"])
            .output();
        match check {
            Ok(o) if o.status.success() => {}
            other => panic!(
                "moto is not available to {}: {:?}\n\
                 Install it with:\n  python3 -m venv ~/.cache/nodewright/venv && \
                 ~/.cache/nodewright/venv/bin/pip install 'moto[server]==5.2.1'\n\
                 or set NODEWRIGHT_PYTHON to a python that has it (scripts/test.sh does both).",
                py.display(),
                other.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            ),
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let refused_path = dir.path().join("refused.json");
        std::fs::write(&refused_path, "[]").expect("write refused.json");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/moto/moto_server.py");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("moto.log")).expect("moto.log");
        let child = Command::new(&py)
            .arg(script)
            .arg(port.to_string())
            .arg(&refused_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", py.display()));
        let moto = Moto {
            child: std::sync::Mutex::new(child),
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            refused_path,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = http(port, "GET", "/moto-api/", "") {
                break;
            }
            if let Ok(Some(status)) = moto
                .child
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .try_wait()
            {
                let log =
                    std::fs::read_to_string(moto._dir.path().join("moto.log")).unwrap_or_default();
                panic!("moto server exited early ({status}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "moto server did not answer on port {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// Drops every resource (`POST /moto-api/reset`) and refuses nothing.
    pub fn reset(&self) {
        std::fs::write(&self.refused_path, "[]").expect("write refused.json");
        let (status, body) = http(self.port, "POST", "/moto-api/reset", "").expect("reset moto");
        assert_eq!(status, 200, "moto reset failed: {body}");
    }

    /// Makes CreateFleet refuse these pools with InsufficientInstanceCapacity:
    /// (instance type, zone, capacity type or None for both).
    pub fn refuse(&self, pools: &[(&str, &str, Option<&str>)]) {
        let list: Vec<serde_json::Value> = pools
            .iter()
            .map(|(t, z, ct)| {
                let mut v = serde_json::json!({"instance_type": t, "zone": z});
                if let Some(ct) = ct {
                    v["capacity_type"] = serde_json::json!(ct);
                }
                v
            })
            .collect();
        std::fs::write(
            &self.refused_path,
            serde_json::to_string(&list).expect("json"),
        )
        .expect("write refused.json");
    }

    /// Makes CreateFleet fill these pools only partly: at most `limit`
    /// instances of (instance type, zone) per fleet, the rest refused with
    /// InsufficientInstanceCapacity. Replaces what [`Self::refuse`] set.
    pub fn limit(&self, pools: &[(&str, &str, usize)]) {
        let list: Vec<serde_json::Value> = pools
            .iter()
            .map(|(t, z, n)| serde_json::json!({"instance_type": t, "zone": z, "limit": n}))
            .collect();
        std::fs::write(
            &self.refused_path,
            serde_json::to_string(&list).expect("json"),
        )
        .expect("write refused.json");
    }

    /// An EC2 client for this server: static test credentials, us-east-1, no SDK retries.
    pub async fn ec2(&self) -> aws_sdk_ec2::Client {
        nodewright::cloud::ec2::connect(&self.settings()).await
    }

    /// Settings pointing nodewright's client at this server.
    pub fn settings(&self) -> nodewright::cloud::ec2::Ec2Settings {
        nodewright::cloud::ec2::Ec2Settings::static_test(&self.endpoint)
    }

    /// Settings for this server in another region (moto keeps one world per region).
    pub fn settings_in(&self, region: &str) -> nodewright::cloud::ec2::Ec2Settings {
        nodewright::cloud::ec2::Ec2Settings::static_test_in(&self.endpoint, region)
    }
}

static SERVER: OnceLock<Moto> = OnceLock::new();
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Exclusive use of this binary's moto server, freshly reset.
pub struct MotoGuard {
    _lock: tokio::sync::MutexGuard<'static, ()>,
    pub moto: &'static Moto,
}

impl std::ops::Deref for MotoGuard {
    type Target = Moto;
    fn deref(&self) -> &Moto {
        self.moto
    }
}

/// The shared server, reset, for one test at a time.
pub async fn moto() -> MotoGuard {
    let lock = LOCK.lock().await;
    let moto = SERVER.get_or_init(Moto::start);
    moto.reset();
    MotoGuard { _lock: lock, moto }
}
