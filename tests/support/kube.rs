//! A real Kubernetes control plane for integration tests: etcd and kube-apiserver
//! on 127.0.0.1, in a temporary folder, with no kubelet, scheduler or controllers
//! (pods stay Pending; Node objects are plain API objects).
//!
//! The binaries are built from Go modules by `scripts/kube-bins.sh` (pinned in
//! `tools/kube/go.mod`), which prints the folder holding them; the tests read that
//! folder from `$NODEWRIGHT_KUBE_BIN` (`scripts/test.sh` sets it). If it is unset or
//! the binaries are missing the test panics with instructions: never skipped.
//! The `openssl` command is needed too (service-account key, `/readyz` probe).
//!
//! One control plane per test binary (it takes seconds to start), shared through
//! [`kube`]; [`kube_exclusive`] also serialises the tests that need the cluster to
//! themselves (e.g. ones that list every Node). Access: the kubeconfig file in
//! [`KubeApi::kubeconfig`] (bearer token of a `system:masters` user, server
//! certificate not verified), or [`KubeApi::client`].
//!
//! [`KubeApi::stop_apiserver`] and [`KubeApi::start_apiserver`] stop and start
//! kube-apiserver again on the same etcd, port and certificates (for a test of
//! what survives an API server restart; use a [`KubeApi::start`] of its own).
//!
//! The processes are killed when the [`KubeApi`] is dropped, and, since a shared
//! one lives in a static and is never dropped, also by a watchdog (`sh`) that
//! kills them and removes the folder as soon as this test process exits.
#![allow(
    dead_code,
    reason = "each test binary includes this module and uses part of it"
)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Bearer token of the test user (`nodewright-admin`, group `system:masters`).
pub const TOKEN: &str = "nodewright-test-token";
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// A running etcd + kube-apiserver.
pub struct KubeApi {
    /// A kubeconfig for this control plane (context `nodewright-test`, namespace `default`).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    pub port: u16,
    /// `http://127.0.0.1:PORT` of etcd.
    pub etcd: String,
    apiserver: Mutex<Child>,
    etcd_child: Mutex<Child>,
    watchdog: Mutex<Child>,
    /// Watchdogs of kube-apiservers started again ([`KubeApi::start_apiserver`]).
    more_watchdogs: Mutex<Vec<Child>>,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        let more = std::mem::take(
            &mut *self
                .more_watchdogs
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        for mut c in more {
            let _ = c.kill();
            let _ = c.wait();
        }
        for c in [&self.watchdog, &self.apiserver, &self.etcd_child] {
            let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The kube-apiserver command for the control plane in `d` (its files are
/// written by [`KubeApi::start`]; certificates are generated into `d/certs`
/// on the first start and reused after).
fn apiserver_command(bin: &Path, d: &Path, etcd_url: &str, api_port: u16) -> Command {
    let sa_key = d.join("sa.key");
    let mut c = Command::new(bin.join("kube-apiserver"));
    c.arg(format!("--etcd-servers={etcd_url}"))
        .arg("--bind-address=127.0.0.1")
        .arg("--advertise-address=127.0.0.1")
        .arg(format!("--secure-port={api_port}"))
        .arg(format!("--cert-dir={}", d.join("certs").display()))
        .arg(format!("--service-account-key-file={}", sa_key.display()))
        .arg(format!(
            "--service-account-signing-key-file={}",
            sa_key.display()
        ))
        .arg("--service-account-issuer=https://kubernetes.default.svc")
        .arg(format!(
            "--token-auth-file={}",
            d.join("tokens.csv").display()
        ))
        .arg("--authorization-mode=RBAC")
        .arg("--service-cluster-ip-range=10.0.0.0/24")
        // No token controller runs: let pods be created without a service-account token.
        .arg("--disable-admission-plugins=ServiceAccount")
        // Its endpoints reconciler rejects the loopback advertise address (logs an
        // error every 10 s): nothing here needs the `kubernetes` Endpoints.
        .arg("--endpoint-reconciler-type=none")
        .arg("--allow-privileged=true")
        .arg("--profiling=false")
        .current_dir(d)
        .stdin(Stdio::null())
        .stdout(log_file(&d.join("kube-apiserver.log")))
        .stderr(log_file(&d.join("kube-apiserver.log")));
    c
}

/// A process that kills `pids` (and removes `dir`, if given) as soon as this test
/// process exits (its stdin closes).
pub fn watchdog(pids: &[u32], dir: Option<&Path>) -> Child {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let script = match dir {
        Some(d) => format!(
            "cat >/dev/null; kill -9 {} 2>/dev/null; sleep 1; rm -rf '{}'",
            pids.join(" "),
            d.display()
        ),
        None => format!("cat >/dev/null; kill -9 {} 2>/dev/null", pids.join(" ")),
    };
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the watchdog (sh)")
}

/// The folder holding `kube-apiserver` and `etcd`, from `$NODEWRIGHT_KUBE_BIN`.
pub fn bin_dir() -> PathBuf {
    let how = "Build them with:\n  bash scripts/kube-bins.sh\n\
               and set NODEWRIGHT_KUBE_BIN to the folder it prints on its last line:\n  \
               export NODEWRIGHT_KUBE_BIN=\"$(bash scripts/kube-bins.sh)\"\n\
               (scripts/test.sh does both; it needs Go >= 1.24 and the Go module proxy).";
    let dir = match std::env::var_os("NODEWRIGHT_KUBE_BIN") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => panic!(
            "NODEWRIGHT_KUBE_BIN is not set: the Kubernetes tests need kube-apiserver and etcd.\n{how}"
        ),
    };
    for b in ["kube-apiserver", "etcd"] {
        assert!(
            dir.join(b).is_file(),
            "{} is missing (NODEWRIGHT_KUBE_BIN={}).\n{how}",
            dir.join(b).display(),
            dir.display()
        );
    }
    dir
}

/// `n` distinct free ports on 127.0.0.1 (held together so they differ).
fn free_ports<const N: usize>() -> [u16; N] {
    let ls: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    std::array::from_fn(|i| ls[i].local_addr().expect("local addr").port())
}

fn openssl(args: &[&str]) -> std::process::Output {
    Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run `openssl` ({e}): the Kubernetes tests need it (apt-get install openssl)"
            )
        })
}

/// A handle on `path`, opened for appending (stdout and stderr share the file).
pub fn log_file(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// The last `n` lines of a file (or a note that it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}

/// HTTP status of `GET path` on the apiserver with the test token (TLS through
/// `openssl s_client`, certificate not verified); None if it does not answer.
fn https_status(port: u16, path: &str) -> Option<u16> {
    // Cheap check first: no openssl process while nothing listens yet.
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &format!("127.0.0.1:{port}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Connection: close\r\n\r\n"
    );
    let _ = child.stdin.take()?.write_all(req.as_bytes());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let out = child.wait_with_output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "HTTP/1.1 200 OK"
    text.lines().next()?.split_whitespace().nth(1)?.parse().ok()
}

impl KubeApi {
    /// Starts etcd and kube-apiserver in a fresh folder and waits (up to 90 s)
    /// until `/readyz` answers 200.
    pub fn start() -> KubeApi {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("nodewright-kube-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let [api_port, etcd_port, peer_port] = free_ports::<3>();

        // Service-account signing key (required by kube-apiserver; nothing here uses it).
        let sa_key = d.join("sa.key");
        let sa_key_s = sa_key.to_str().expect("utf-8 tempdir");
        let o = openssl(&["genrsa", "-out", sa_key_s, "2048"]);
        assert!(
            o.status.success(),
            "openssl genrsa failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let tokens = d.join("tokens.csv");
        std::fs::write(
            &tokens,
            format!("{TOKEN},nodewright-admin,nodewright-admin,\"system:masters\"\n"),
        )
        .expect("write tokens.csv");

        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_log = d.join("etcd.log");
        let etcd_child = Command::new(bin.join("etcd"))
            .arg("--name=default")
            .arg(format!("--data-dir={}", d.join("etcd").display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .arg("--initial-cluster-state=new")
            // A throwaway store: no fsync, small logs.
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn")
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(log_file(&etcd_log))
            .stderr(log_file(&etcd_log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.join("etcd").display()));

        let spawned = apiserver_command(&bin, d, &etcd_url, api_port).spawn();
        let apiserver = match spawned {
            Ok(c) => c,
            Err(e) => {
                let mut etcd_child = etcd_child;
                let _ = etcd_child.kill();
                let _ = etcd_child.wait();
                panic!("cannot start {}: {e}", bin.join("kube-apiserver").display())
            }
        };

        // Kills both and removes the folder when this process exits (its stdin closes).
        let watchdog = watchdog(&[apiserver.id(), etcd_child.id()], Some(d));

        let kubeconfig = d.join("kubeconfig");
        let server = format!("https://127.0.0.1:{api_port}");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\n\
                 kind: Config\n\
                 clusters:\n\
                 - name: nodewright-test\n  \
                   cluster:\n    \
                     server: {server}\n    \
                     insecure-skip-tls-verify: true\n\
                 users:\n\
                 - name: nodewright-admin\n  \
                   user:\n    \
                     token: {TOKEN}\n\
                 contexts:\n\
                 - name: nodewright-test\n  \
                   context:\n    \
                     cluster: nodewright-test\n    \
                     user: nodewright-admin\n    \
                     namespace: default\n\
                 current-context: nodewright-test\n"
            ),
        )
        .expect("write kubeconfig");

        let api = KubeApi {
            kubeconfig,
            server,
            port: api_port,
            etcd: etcd_url,
            apiserver: Mutex::new(apiserver),
            etcd_child: Mutex::new(etcd_child),
            watchdog: Mutex::new(watchdog),
            more_watchdogs: Mutex::new(Vec::new()),
            bin,
            dir,
        };
        api.wait_ready();
        api
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        let mut last = None;
        loop {
            last = https_status(self.port, "/readyz").or(last);
            if last == Some(200) {
                return;
            }
            for (name, child) in [
                ("kube-apiserver", &self.apiserver),
                ("etcd", &self.etcd_child),
            ] {
                if let Ok(Some(status)) = child.lock().unwrap_or_else(|p| p.into_inner()).try_wait()
                {
                    panic!("{name} exited early ({status}).\n{}", self.logs(80));
                }
            }
            if start.elapsed() > READY_TIMEOUT {
                let verbose = https_status(self.port, "/readyz?verbose")
                    .map(|s| format!("{s}"))
                    .unwrap_or_else(|| "no answer".into());
                panic!(
                    "kube-apiserver on port {} not ready within {} s (last /readyz: {last:?}, \
                     /readyz?verbose: {verbose}).\n{}",
                    self.port,
                    READY_TIMEOUT.as_secs(),
                    self.logs(80)
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Kills kube-apiserver (etcd keeps running, with its data). Blocking.
    pub fn stop_apiserver(&self) {
        let mut c = self.apiserver.lock().unwrap_or_else(|p| p.into_inner());
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Starts kube-apiserver again on the same etcd, port and certificates (stopping
    /// the running one first, if any), and waits (up to 90 s) until `/readyz` answers
    /// 200. Blocking.
    pub fn start_apiserver(&self) {
        self.stop_apiserver();
        let d = self.dir.path();
        let child = apiserver_command(&self.bin, d, &self.etcd, self.port)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start kube-apiserver again: {e}"));
        let dog = watchdog(&[child.id()], None);
        self.more_watchdogs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(dog);
        *self.apiserver.lock().unwrap_or_else(|p| p.into_inner()) = child;
        self.wait_ready();
    }

    /// The last `n` lines of the kube-apiserver and etcd logs.
    pub fn logs(&self, n: usize) -> String {
        let d = self.dir.path();
        format!(
            "--- kube-apiserver.log (tail) ---\n{}\n--- etcd.log (tail) ---\n{}",
            tail(&d.join("kube-apiserver.log"), n),
            tail(&d.join("etcd.log"), n),
        )
    }

    /// The folder holding the logs, the kubeconfig and etcd's data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A kube-rs client for this control plane, from [`KubeApi::kubeconfig`]. Make one
    /// per test: a client is tied to the tokio runtime that first uses it.
    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig).expect("read kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .expect("kube config from kubeconfig");
        kube::Client::try_from(config).expect("kube client")
    }
}

static SERVER: OnceLock<KubeApi> = OnceLock::new();
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// This test binary's control plane, started on first use and shared by every test
/// (use distinct namespaces / object names).
pub fn kube() -> &'static KubeApi {
    SERVER.get_or_init(KubeApi::start)
}

/// Exclusive use of this binary's control plane (against other `kube_exclusive` users).
pub struct KubeGuard {
    _lock: tokio::sync::MutexGuard<'static, ()>,
    pub kube: &'static KubeApi,
}

impl std::ops::Deref for KubeGuard {
    type Target = KubeApi;
    fn deref(&self) -> &KubeApi {
        self.kube
    }
}

/// The shared control plane, for one test at a time.
pub async fn kube_exclusive() -> KubeGuard {
    let lock = LOCK.lock().await;
    // Starting blocks for seconds: keep it off the async worker.
    let kube = match tokio::task::spawn_blocking(kube).await {
        Ok(k) => k,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("starting the control plane: {e}"),
    };
    KubeGuard { _lock: lock, kube }
}
