//! A real nginx in front of services, configured from `deploy/nginx.conf` with test
//! upstreams and a free port. Also compiled into `server/tests/scale.rs` (by path), so it
//! uses only what both crates have. `NGINX` names the binary (default `nginx`, then
//! `/usr/sbin/nginx`).

use std::path::{Path, PathBuf};

pub struct Nginx {
    pub url: String,
    dir: tempfile::TempDir,
    child: Option<std::process::Child>,
}

fn binary() -> String {
    std::env::var("NGINX").unwrap_or_else(|_| {
        let on_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join("nginx").is_file()))
            .unwrap_or(false);
        if on_path { "nginx" } else { "/usr/sbin/nginx" }.to_string()
    })
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

impl Nginx {
    /// Starts nginx with `deploy/nginx.conf`, each upstream (`users`, `beers`, …) pointing at
    /// the given `host:port` addresses.
    pub async fn start(upstreams: &[(&str, Vec<String>)]) -> Nginx {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let conf =
            std::fs::read_to_string(deploy_dir().join("nginx.conf")).expect("deploy/nginx.conf");
        assert!(
            conf.contains("listen 5000;"),
            "deploy/nginx.conf listens on 5000"
        );
        let conf = conf
            .replace("listen 5000;", &format!("listen 127.0.0.1:{port};"))
            .replace(
                "access_log /dev/stdout taproom;",
                "access_log access.log taproom;",
            );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        // The web client's files, where deploy/nginx.conf looks for them (as deploy/web).
        std::os::unix::fs::symlink(deploy_dir().join("../web/dist"), dir.path().join("web"))
            .unwrap();
        let mut blocks = String::new();
        for (name, addrs) in upstreams {
            let servers: String = addrs
                .iter()
                .map(|a| format!(" server {a} max_fails=1 fail_timeout=5s;"))
                .collect();
            blocks.push_str(&format!("upstream {name} {{{servers} }}\n"));
        }
        // Services the test did not start still need an upstream for nginx to start:
        // one that refuses connections (port 1), as a service that is down would.
        let deployed = std::fs::read_to_string(deploy_dir().join("upstreams.conf"))
            .expect("deploy/upstreams.conf");
        for name in deployed
            .lines()
            .filter_map(|l| l.strip_prefix("upstream "))
            .filter_map(|l| l.split_whitespace().next())
        {
            if !upstreams.iter().any(|(given, _)| *given == name) {
                blocks.push_str(&format!(
                    "upstream {name} {{ server 127.0.0.1:1 max_fails=1 fail_timeout=5s; }}\n"
                ));
            }
        }
        std::fs::write(dir.path().join("upstreams.conf"), blocks).unwrap();
        let prefix = dir.path().display().to_string();
        let child = std::process::Command::new(binary())
            .args(["-p", &prefix, "-c", &format!("{prefix}/nginx.conf"), "-g"])
            .arg(format!(
                "daemon off; pid {prefix}/nginx.pid; error_log {prefix}/error.log warn;"
            ))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nginx (install it, or set NGINX): {e}"));
        let mut nginx = Nginx {
            url: format!("http://127.0.0.1:{port}"),
            dir,
            child: Some(child),
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return nginx;
            }
            if let Some(Ok(Some(status))) = nginx.child.as_mut().map(|c| c.try_wait()) {
                panic!("nginx exited with {status}: {}", nginx.error_log());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("nginx did not start: {}", nginx.error_log());
    }

    /// nginx's error log so far (for failure messages).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// nginx's access log so far: one line per request, with its request id and upstream.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    /// Asks the master to stop (SIGTERM: it stops its workers first), and kills it only
    /// if it has not within a few seconds. A plain kill of the master would leave its
    /// worker processes running after the test.
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = libc::pid_t::try_from(child.id()) {
            // SAFETY: kill only sends a signal, to our own child, which has not been
            // waited for, so its pid is not reused.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        for _ in 0..50 {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
