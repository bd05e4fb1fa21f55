//! Throwaway host users and groups, for tests that must run something as a
//! non-root user (the test suite itself runs as root).
//!
//! Created with the real `groupadd`/`useradd` under names unique to this
//! process (`bkp-test-<pid>-<tag>`), looked up through NSS like any other
//! account, and deleted again when the [`Accounts`] value is dropped, users
//! before groups, even when the test fails.

use nix::unistd::{Group, User};
use std::process::Command;
use std::thread::sleep;
use std::time::Duration;

/// `useradd`/`groupadd` fail when another process holds the passwd lock.
const LOCK_RETRIES: usize = 10;

/// The accounts one test created.
pub struct Accounts {
    prefix: String,
    users: Vec<String>,
    groups: Vec<String>,
}

/// A created user: name, uid and primary gid.
#[derive(Debug, Clone)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

fn run_with_retries(program: &str, args: &[&str]) {
    let mut last = String::new();
    for _ in 0..LOCK_RETRIES {
        let out = Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} (install the passwd package): {e}"));
        if out.status.success() {
            return;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        sleep(Duration::from_millis(200));
    }
    panic!("{program} {args:?} failed: {last}");
}

impl Accounts {
    pub fn new() -> Accounts {
        Accounts {
            prefix: format!("bkp-test-{}", std::process::id()),
            users: Vec::new(),
            groups: Vec::new(),
        }
    }

    fn name(&self, tag: &str) -> String {
        let name = format!("{}-{tag}", self.prefix);
        assert!(name.len() <= 32, "account name too long: {name}");
        name
    }

    /// A system group; returns its name and gid.
    pub fn group(&mut self, tag: &str) -> (String, u32) {
        let name = self.name(tag);
        run_with_retries("groupadd", &["--system", &name]);
        self.groups.push(name.clone());
        let gid = Group::from_name(&name)
            .expect("getgrnam")
            .expect("group just created")
            .gid
            .as_raw();
        (name, gid)
    }

    /// A system user with a primary group of its own name, member of
    /// `supplementary` (group names), no home and no login shell.
    pub fn user(&mut self, tag: &str, supplementary: &[&str]) -> Account {
        let name = self.name(tag);
        let groups = supplementary.join(",");
        let mut args = vec![
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
        ];
        if !groups.is_empty() {
            args.extend(["--groups", groups.as_str()]);
        }
        args.push(&name);
        run_with_retries("useradd", &args);
        self.users.push(name.clone());
        // `--user-group` made a group of the same name; delete it too.
        self.groups.push(name.clone());
        let user = User::from_name(&name)
            .expect("getpwnam")
            .expect("user just created");
        Account {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }
    }
}

impl Drop for Accounts {
    /// Best effort, so a failing test still reports its own failure.
    fn drop(&mut self) {
        for user in self.users.iter().rev() {
            let _ = Command::new("userdel").arg(user).output();
        }
        for group in self.groups.iter().rev() {
            // userdel may already have removed a user's own group.
            if Group::from_name(group).ok().flatten().is_some() {
                let _ = Command::new("groupdel").arg(group).output();
            }
        }
    }
}
