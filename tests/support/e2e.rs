//! Driving the real `zapis` binary end to end: a process handle and a scripted Telegram user
//! who presses buttons by what they say.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use zapis_fakes::chat::*;

pub struct Service {
    child: Child,
}

impl Service {
    pub fn start(config: &Path) -> Service {
        let child = Command::new(env!("CARGO_BIN_EXE_zapis"))
            .args(["run", "--config"])
            .arg(config)
            .env(
                "RUST_LOG",
                std::env::var("ZAPIS_E2E_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("ZAPIS_TELEGRAM__TOKEN")
            .stdin(Stdio::null())
            .spawn()
            .expect("zapis run starts");
        Service { child }
    }

    /// [`Service::start`] with the service's log (stderr, at `warn`) written to `log`.
    pub fn start_logging_to(config: &Path, log: &Path) -> Service {
        Service::start_logging_at(config, log, "warn")
    }

    /// [`Service::start_logging_to`] with the log filter given (`RUST_LOG`).
    pub fn start_logging_at(config: &Path, log: &Path, filter: &str) -> Service {
        Service::start_with_env(config, log, filter, &[])
    }

    /// [`Service::start_logging_at`] with environment overrides (`ZAPIS_HTTP__LISTEN`, …).
    pub fn start_with_env(
        config: &Path,
        log: &Path,
        filter: &str,
        env: &[(&str, &str)],
    ) -> Service {
        let file = std::fs::File::create(log).expect("the log file");
        let child = Command::new(env!("CARGO_BIN_EXE_zapis"))
            .args(["run", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .env("RUST_LOG", filter)
            .env_remove("ZAPIS_TELEGRAM__TOKEN")
            .stdin(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("zapis run starts");
        Service { child }
    }

    /// Sends the service a signal (`HUP`, …) the way `kill -s` does.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name}");
    }

    /// Stops the service the way a supervisor does (SIGTERM) and waits for it to exit.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        for _ in 0..200 {
            if let Some(exit) = self.child.try_wait().expect("wait on zapis") {
                assert!(exit.success(), "zapis run exited with {exit}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("zapis run did not stop within 10 s of SIGTERM");
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
