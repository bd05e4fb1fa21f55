//! A real three-node OpenBao raft cluster on loopback, configured like a
//! [`Lab`](super::openbao::Lab).
//!
//! Node `i` listens on `127.0.0.<i+1>` (API on one shared port, cluster
//! traffic on the next), so one host name can resolve to all three nodes on
//! one port, as a DNS round-robin name would. Every node has `storage "raft"`
//! with `performance_multiplier = 1` (1 s elections instead of 5 s) and a
//! `retry_join` to the others, a certificate valid for [`SERVER_NAME`], the
//! three addresses and `localhost`, and its own file audit log, so a test can
//! count which node served what. [`Cluster::start`] initialises node 0 with
//! one key share, unseals all three, waits until autopilot has made them all
//! voters and then applies the lab configuration on the leader.
//!
//! [`Trap`] listens on a dead node's API address: a client that followed a
//! redirect to it would show up there.

use std::fs::{self, OpenOptions, Permissions};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, sleep};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use super::bao_binary;
use super::jwt::{Claims, Issuer};
use super::openbao::{AUDIT_LOG, bao_command, configure, operator_init, write_tls_material_for};
use super::provider::Backend;
use super::tmp::TempDir;

/// The name every node's certificate carries, for `openbao.tlsServerName`.
pub const SERVER_NAME: &str = "openbao.ha.test";
const NODES: usize = 3;
/// Attempts at a port nobody grabs between our probe and bao's bind.
const PORT_ATTEMPTS: usize = 5;
/// Start to three voters took ~12 s on an idle 2-core machine; a loaded one
/// may take several times that.
const FORMATION_TIMEOUT: Duration = Duration::from_secs(120);
/// A restarted or killed node's peers need a few election rounds.
const ELECTION_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_TAIL_LINES: usize = 30;

/// The audit device table is replicated, so every node must declare the same
/// device; a path relative to each node's working directory (its own
/// directory) still gives every node its own log.
const AUDIT_HCL: &str = "audit \"file\" \"lab\" {\n  options {\n    file_path = \"audit.log\"\n    log_raw = \"true\"\n  }\n}\n";

/// One `bao server` process and its files.
struct Node {
    ip: Ipv4Addr,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn config(&self) -> PathBuf {
        self.dir.join("bao.hcl")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("bao.log")
    }
}

/// Three raft nodes, their shared CA, root token and trusted JWT issuer.
pub struct Cluster {
    port: u16,
    /// The node `operator init` ran on, the first leader.
    first: usize,
    nodes: Vec<Node>,
    root_token: String,
    unseal_key: String,
    ca_file: PathBuf,
    issuer: Issuer,
    minted: Arc<Mutex<Vec<String>>>,
    // Declared last: removed after `Drop` has killed the servers writing into it.
    dir: TempDir,
}

impl Cluster {
    /// Starts, initialises, unseals and configures a three-voter cluster
    /// led by node 0.
    pub fn start() -> Cluster {
        Cluster::start_led_by(0)
    }

    /// Like [`Cluster::start`], initialised on (and so first led by) node `first`.
    pub fn start_led_by(first: usize) -> Cluster {
        let dir = TempDir::new("bao-ha");
        let tls = dir.path().join("tls");
        fs::create_dir(&tls).expect("create tls dir");
        let mut names = vec![SERVER_NAME.to_owned(), "localhost".to_owned()];
        names.extend((0..NODES).map(|i| node_ip(i).to_string()));
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (ca_file, cert, key) = write_tls_material_for(&tls, &names);
        let nodes = (0..NODES)
            .map(|i| Node {
                ip: node_ip(i),
                dir: dir.path().join(format!("node{i}")),
                child: None,
            })
            .collect();
        let mut cluster = Cluster {
            port: 0,
            first,
            nodes,
            root_token: String::new(),
            unseal_key: String::new(),
            ca_file,
            issuer: Issuer::generate(),
            minted: Arc::default(),
            dir,
        };
        for attempt in 1..=PORT_ATTEMPTS {
            cluster.port = free_port_pair_on_all();
            cluster.write_configs(&cert, &key);
            for i in 0..NODES {
                cluster.spawn(i);
            }
            if cluster.wait_listening().is_ok() {
                break;
            }
            let collided =
                (0..NODES).any(|i| cluster.log_text(i).contains("address already in use"));
            cluster.kill_all();
            if !collided || attempt == PORT_ATTEMPTS {
                cluster.fail("nodes did not start listening");
            }
        }
        cluster.form();
        configure(
            &|args| cluster.bao_ok(args),
            cluster.dir.path(),
            &cluster.issuer,
        );
        cluster
    }

    /// The API port every node listens on (at its own address).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.<i+1>`.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        self.nodes[i].ip
    }

    /// `https://127.0.0.<i+1>:PORT`.
    pub fn addr(&self, i: usize) -> String {
        format!("https://{}:{}", self.nodes[i].ip, self.port)
    }

    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// A private directory removed with the cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `bao` CLI command aimed at node `i` as root, environment cleared.
    pub fn command_on(&self, i: usize) -> Command {
        // Empty until operator init has produced the root token.
        let token = Some(self.root_token.as_str()).filter(|t| !t.is_empty());
        bao_command(self.dir.path(), &self.addr(i), &self.ca_file, token)
    }

    /// Runs the CLI as root on node `i`.
    pub fn bao_on(&self, i: usize, args: &[&str]) -> Output {
        self.command_on(i).args(args).output().expect("run bao CLI")
    }

    /// Runs the CLI as root on the current leader; panics with stderr on failure.
    pub fn bao_ok(&self, args: &[&str]) -> String {
        let leader = self.leader();
        let out = self.bao_on(leader, args);
        if !out.status.success() {
            self.fail(&format!(
                "`bao {}` on node {leader} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        String::from_utf8(out.stdout).expect("bao prints UTF-8")
    }

    /// `bao status` of node `i`, or `None` if it is down or does not answer.
    /// (`sys/seal-status` and `sys/leader` are reads every node serves itself.)
    pub fn status(&self, i: usize) -> Option<Value> {
        self.nodes[i].child.as_ref()?;
        let sock = SocketAddr::from((self.nodes[i].ip, self.port));
        TcpStream::connect_timeout(&sock, Duration::from_millis(200)).ok()?;
        let out = self
            .command_on(i)
            .args(["status", "-format=json"])
            .output()
            .ok()?;
        serde_json::from_slice(&out.stdout).ok()
    }

    /// The running node that is unsealed and active, if exactly one says so.
    pub fn current_leader(&self) -> Option<usize> {
        let active: Vec<usize> = (0..NODES)
            .filter(|&i| self.status(i).is_some_and(|s| is_active(&s)))
            .collect();
        (active.len() == 1).then(|| active[0])
    }

    /// Waits for the active node.
    pub fn leader(&self) -> usize {
        self.wait_until(ELECTION_TIMEOUT, "a leader", || self.current_leader())
    }

    /// Waits for an active node other than `old` (after `old` died).
    pub fn new_leader(&self, old: usize) -> usize {
        self.wait_until(ELECTION_TIMEOUT, "a new leader", || {
            self.current_leader().filter(|&l| l != old)
        })
    }

    /// The running, unsealed nodes that are not the leader.
    pub fn standbys(&self) -> Vec<usize> {
        let leader = self.leader();
        (0..NODES)
            .filter(|&i| i != leader)
            .filter(|&i| self.status(i).is_some_and(|s| s["sealed"] == false))
            .collect()
    }

    /// `kill -9` node `i` and reap it: its addresses refuse connections at once.
    pub fn kill(&mut self, i: usize) {
        let mut child = self.nodes[i]
            .child
            .take()
            .expect("kill: node is not running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Freezes node `i` (SIGSTOP): its kernel still accepts connections, but
    /// nothing answers, as a hung host looks from outside.
    pub fn pause(&self, i: usize) {
        self.signal(i, Signal::SIGSTOP);
    }

    /// Thaws a [`Cluster::pause`]d node.
    pub fn resume(&self, i: usize) {
        self.signal(i, Signal::SIGCONT);
    }

    /// Restarts a killed node with its data and unseals it; it rejoins as a
    /// standby.
    pub fn restart(&mut self, i: usize) {
        assert!(
            self.nodes[i].child.is_none(),
            "restart: node {i} is running"
        );
        self.spawn(i);
        self.wait_until(ELECTION_TIMEOUT, "the restarted node to listen", || {
            self.status(i).map(|_| ())
        });
        self.unseal(i);
    }

    /// Node `i`'s audit log (raw values, one JSON object a line).
    pub fn audit_log(&self, i: usize) -> PathBuf {
        self.nodes[i].dir.join(AUDIT_LOG)
    }

    /// The audited request entries of node `i` so far.
    pub fn audited_requests(&self, i: usize) -> Vec<Value> {
        let text = fs::read_to_string(self.audit_log(i))
            .unwrap_or_else(|e| self.fail(&format!("cannot read node {i}'s audit log: {e}")));
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["type"] == "request")
            .collect()
    }

    /// How many audited requests to exactly `path` node `i` served.
    pub fn audited_count(&self, i: usize, path: &str) -> usize {
        self.audited_requests(i)
            .iter()
            .filter(|v| v["request"]["path"] == path)
            .count()
    }

    /// The same count over every node.
    pub fn audited_total(&self, path: &str) -> usize {
        (0..NODES).map(|i| self.audited_count(i, path)).sum()
    }

    /// Server output of node `i` (all restarts).
    pub fn log_text(&self, i: usize) -> String {
        String::from_utf8_lossy(&fs::read(self.nodes[i].log()).unwrap_or_default()).into_owned()
    }

    /// Sets the JWT role's token TTLs (e.g. short leases that must be
    /// renewed during a test).
    pub fn set_token_ttl(&self, ttl: &str, max_ttl: &str) {
        self.bao_ok(&[
            "write",
            &format!(
                "{}/role/{}",
                super::openbao::JWT_MOUNT,
                super::openbao::ROLE
            ),
            "role_type=jwt",
            &format!("token_ttl={ttl}"),
            &format!("token_max_ttl={max_ttl}"),
        ]);
    }

    fn write_configs(&self, cert: &Path, key: &Path) {
        for (i, node) in self.nodes.iter().enumerate() {
            // A failed attempt may have left raft files for another port.
            let _ = fs::remove_dir_all(&node.dir);
            let data = node.dir.join("raft");
            fs::create_dir_all(&data).expect("create raft dir");
            fs::set_permissions(&node.dir, Permissions::from_mode(0o700)).expect("chmod node dir");
            let joins: String = (0..NODES)
                .filter(|&j| j != i)
                .map(|j| {
                    format!(
                        "  retry_join {{\n    leader_api_addr = \"{addr}\"\n    leader_ca_cert_file = \"{ca}\"\n    leader_tls_servername = \"{SERVER_NAME}\"\n  }}\n",
                        addr = self.addr(j),
                        ca = self.ca_file.display(),
                    )
                })
                .collect();
            let hcl = format!(
                r#"storage "raft" {{
  path = "{data}"
  node_id = "node{i}"
  performance_multiplier = 1
{joins}}}
listener "tcp" {{
  address = "{ip}:{port}"
  cluster_address = "{ip}:{cluster}"
  tls_cert_file = "{cert}"
  tls_key_file = "{key}"
}}
api_addr = "https://{ip}:{port}"
cluster_addr = "https://{ip}:{cluster}"
ui = false
{audit}"#,
                data = data.display(),
                ip = node.ip,
                port = self.port,
                cluster = self.port + 1,
                cert = cert.display(),
                key = key.display(),
                audit = AUDIT_HCL,
            );
            fs::write(node.config(), hcl).expect("write bao.hcl");
        }
    }

    fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log())
            .expect("open bao.log");
        let stderr = log.try_clone().expect("clone log handle");
        let child = Command::new(bao_binary())
            .arg("server")
            .arg(format!("-config={}", node.config().display()))
            .env_clear()
            .env("HOME", &node.dir)
            .current_dir(&node.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .expect("spawn bao server");
        node.child = Some(child);
    }

    /// Every node answers `bao status`; `Err` if one exited first.
    fn wait_listening(&mut self) -> Result<(), ()> {
        let deadline = Instant::now() + FORMATION_TIMEOUT;
        for i in 0..NODES {
            loop {
                let child = self.nodes[i].child.as_mut().expect("spawned");
                if child.try_wait().expect("poll bao").is_some() {
                    self.nodes[i].child = None;
                    return Err(());
                }
                if self.status(i).is_some() {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(());
                }
                sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// Init the first node, unseal all, wait for three voters and a known leader.
    fn form(&mut self) {
        let first = self.first;
        match operator_init(self.command_on(first)) {
            Ok((unseal_key, root_token)) => {
                self.unseal_key = unseal_key;
                self.root_token = root_token;
            }
            Err(message) => self.fail(&message),
        }
        self.unseal(first);
        self.wait_until(FORMATION_TIMEOUT, "the first node to become active", || {
            self.status(first).filter(is_active).map(|_| ())
        });
        // Autopilot promotes a joined node to voter after it has been healthy
        // for the stabilization time (10 s by default).
        let _ = self.bao_on(
            first,
            &[
                "operator",
                "raft",
                "autopilot",
                "set-config",
                "-server-stabilization-time=2s",
            ],
        );
        for i in (0..NODES).filter(|&i| i != first) {
            self.unseal(i);
        }
        self.wait_until(FORMATION_TIMEOUT, "three raft voters", || {
            let out = self.bao_on(first, &["operator", "raft", "list-peers", "-format=json"]);
            let peers: Value = serde_json::from_slice(&out.stdout).ok()?;
            let servers = peers["data"]["config"]["servers"].as_array()?;
            let voters = servers.iter().filter(|s| s["voter"] == true).count();
            (voters == NODES).then_some(())
        });
        self.wait_until(
            FORMATION_TIMEOUT,
            "every standby to know the leader",
            || {
                (0..NODES)
                    .filter(|&i| i != first)
                    .all(|i| {
                        self.status(i).is_some_and(|s| {
                            s["sealed"] == false
                                && s["leader_address"].as_str().is_some_and(|a| !a.is_empty())
                        })
                    })
                    .then_some(())
            },
        );
    }

    /// Unseals node `i`, retrying while a joining node is not ready for it.
    fn unseal(&self, i: usize) {
        self.wait_until(FORMATION_TIMEOUT, "the node to unseal", || {
            let status = self.status(i)?;
            if status["sealed"] == false {
                return Some(());
            }
            let _ = self
                .command_on(i)
                .args(["operator", "unseal", &self.unseal_key])
                .output();
            None
        });
    }

    fn wait_until<T>(&self, limit: Duration, what: &str, mut done: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = done() {
                return v;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("no {what} within {limit:?}"));
            }
            sleep(Duration::from_millis(200));
        }
    }

    fn signal(&self, i: usize, sig: Signal) {
        let child = self.nodes[i].child.as_ref().expect("node is not running");
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
        kill(pid, sig).unwrap_or_else(|e| panic!("{sig} node {i}: {e}"));
    }

    fn kill_all(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Panics with `msg` and the end of every node's log.
    fn fail(&self, msg: &str) -> ! {
        let mut tails = String::new();
        for i in 0..NODES {
            let log = self.log_text(i);
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            tails.push_str(&format!(
                "\n--- node {i}, last {LOG_TAIL_LINES} log lines ---\n{tail}"
            ));
        }
        panic!("OpenBao cluster on port {}: {msg}{tails}", self.port);
    }
}

impl Backend for Cluster {
    fn write_jwt(&self, path: &Path, claims: &Claims) {
        super::openbao::write_jwt_file(&self.issuer, &self.minted, path, claims);
    }

    fn minted_jwts(&self) -> Arc<Mutex<Vec<String>>> {
        Arc::clone(&self.minted)
    }

    fn audit_logs(&self) -> Vec<PathBuf> {
        (0..NODES).map(|i| self.audit_log(i)).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            if let Some(child) = &node.child {
                // A paused node must also die.
                let pid = Pid::from_raw(child.id() as i32);
                let _ = kill(pid, Signal::SIGCONT);
            }
        }
        self.kill_all();
    }
}

fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, u8::try_from(i + 1).expect("few nodes"))
}

/// Unsealed and active (not a standby).
fn is_active(status: &Value) -> bool {
    status["sealed"] == false && status["is_self"] == true
}

/// A port `p` with `p + 1` also free on every node address. The probes are
/// released before bao binds, so a collision is still possible; callers retry.
fn free_port_pair_on_all() -> u16 {
    'search: loop {
        let probe = TcpListener::bind((node_ip(0), 0)).expect("bind 127.0.0.1:0");
        let port = probe.local_addr().expect("probe address").port();
        if port == u16::MAX {
            continue;
        }
        let mut held = vec![probe];
        for i in 0..NODES {
            for p in [port, port + 1] {
                if i == 0 && p == port {
                    continue;
                }
                match TcpListener::bind((node_ip(i), p)) {
                    Ok(l) => held.push(l),
                    Err(_) => continue 'search,
                }
            }
        }
        return port;
    }
}

/// A listener on a dead node's API address that counts connections: a
/// client following a `Location` that names the dead node would land here.
pub struct Trap {
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Trap {
    /// Listens on node `i`'s API address (which must be dead).
    pub fn on(cluster: &Cluster, i: usize) -> Trap {
        assert!(
            cluster.nodes[i].child.is_none(),
            "trap: node {i} is running"
        );
        let addr = SocketAddr::from((cluster.ip(i), cluster.port));
        // The killed process's socket may linger for a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(addr) {
                Ok(l) => break l,
                Err(e) if Instant::now() < deadline && e.kind() == ErrorKind::AddrInUse => {
                    sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("trap on {addr}: {e}"),
            }
        };
        listener.set_nonblocking(true).expect("nonblocking trap");
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, stop) = (Arc::clone(&accepted), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok(_) => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Trap {
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Trap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
