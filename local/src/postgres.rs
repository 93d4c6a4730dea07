use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::error::{bail, Context};
use crate::Result;
use tempfile::TempDir;

use super::free_port;

/// A temporary Postgres cluster on 127.0.0.1, removed on drop.
pub struct TempPostgres {
    dir: TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
    /// Extra server settings (`-c …`), kept for [`TempPostgres::resume`].
    settings: String,
}

const INSTALL_HINT: &str = "no PostgreSQL server binaries (initdb, pg_ctl) found: install them \
     (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@15) or set \
     DATABASE_URL to an existing database";

fn find_bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN_DIR") {
        return Some(PathBuf::from(dir));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").is_file() && p.join("pg_ctl").is_file())
    });
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|p| p.join("initdb").is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl TempPostgres {
    /// initdb + pg_ctl start on a free port. Postgres refuses to run as root, so as root it runs
    /// as the `postgres` system user.
    pub fn start() -> Result<Self> {
        Self::start_inner(false)
    }

    /// [`TempPostgres::start`] with TLS on (a self-signed certificate made with the `openssl`
    /// command), for testing `sslmode=require` URLs.
    pub fn start_with_tls() -> Result<Self> {
        Self::start_inner(true)
    }

    fn start_inner(tls: bool) -> Result<Self> {
        let bin = find_bin_dir().context(INSTALL_HINT)?;
        let as_postgres_user = is_root();
        let dir = tempfile::Builder::new()
            .prefix("clerk-sync-pg-")
            .tempdir()?;
        if as_postgres_user {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path()))
            .context("as root, the cluster must belong to the `postgres` user")?;
        }
        let data = dir.path().join("data");
        let mut pg = TempPostgres {
            dir,
            bin,
            port: 0,
            as_postgres_user,
            settings: String::new(),
        };
        run(pg
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data))
        .context("initdb failed")?;
        if tls {
            pg.self_signed_certificate(&data)?;
            pg.settings = " -c ssl=on".to_owned();
        }
        pg.start_on_a_free_port(&data)?;
        Ok(pg)
    }

    /// A certificate for 127.0.0.1 in the data directory (`server.crt`, `server.key`).
    fn self_signed_certificate(&self, data: &std::path::Path) -> Result<()> {
        let mut openssl = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "openssl"]);
            c
        } else {
            Command::new("openssl")
        };
        run(openssl
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(data.join("server.key"))
            .arg("-out")
            .arg(data.join("server.crt")))
        .context("making a certificate needs the `openssl` command")
    }

    /// A port found free can be taken before the server binds it: five tries.
    fn start_on_a_free_port(&mut self, data: &std::path::Path) -> Result<()> {
        let mut last_error = None;
        for _ in 0..5 {
            let port = free_port()?;
            let options = format!(
                "-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=500{}",
                self.settings
            );
            let log = self.dir.path().join("postgres.log");
            let started = run(self
                .command("pg_ctl")
                .args(["-w", "-t", "30", "-D"])
                .arg(data)
                .arg("-l")
                .arg(&log)
                .args(["-o", &options, "start"]));
            match started {
                Ok(()) => {
                    self.port = port;
                    return Ok(());
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error
            .unwrap_or_else(|| crate::Error::Failed("could not start postgres".to_owned())))
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// A URL for the `postgres` database as superuser.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the server again on the same port after [`TempPostgres::stop`].
    pub fn resume(&self) -> Result<()> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=500{}",
            self.port, self.settings
        );
        let log = self.dir.path().join("postgres.log");
        run(self
            .command("pg_ctl")
            .args(["-w", "-t", "30", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "start"]))
    }

    /// Stops the server (fast shutdown); used by fault tests to simulate an outage.
    pub fn stop(&self) -> Result<()> {
        run(self
            .command("pg_ctl")
            .args(["-w", "-m", "fast", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop"))
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn run(command: &mut Command) -> Result<()> {
    let started = Instant::now();
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{:?} failed after {:?}: {}",
            command.get_program(),
            started.elapsed(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
