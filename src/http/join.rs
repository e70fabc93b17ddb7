//! A worker joining its manager by itself (`worker --join MANAGER:PORT`): registers with
//! `POST /v1/nodes` and keeps doing so, so that it is known again after either side restarts.
//! Failures are retried with a back-off (1 s doubling to 30 s); once registered it registers
//! again every `REJOIN_EVERY` (a manager that forgot it, e.g. one with a memory store that
//! restarted, learns it at the next one; a manager that knows it changes nothing).
//!
//! Holds no worker state: the name and the address to advertise are given.

use crate::auth::Token;
use crate::logfmt::q;
use crossbeam_channel::Receiver;
use log::{info, warn};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

pub const REJOIN_EVERY: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The address to advertise when none is given: the local address of a connection to the
/// manager (the interface the manager is reached through) with the worker's own port.
pub fn default_advertise(manager: &str, own_port: u16) -> Result<String, String> {
    let addr: SocketAddr = manager
        .to_socket_addrs()
        .map_err(|e| format!("{manager}: {e}"))?
        .next()
        .ok_or_else(|| format!("{manager}: no address"))?;
    let conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("{manager}: {e}"))?;
    let local = conn.local_addr().map_err(|e| e.to_string())?;
    Ok(SocketAddr::new(local.ip(), own_port).to_string())
}

/// Registers until `stop` says so (or is dropped).
pub fn join_loop(
    manager: String,
    name: String,
    advertise: Option<String>,
    own_port: u16,
    token: Option<Token>,
    stop: Receiver<()>,
) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let url = format!("http://{manager}/v1/nodes");
    let mut backoff = Duration::from_secs(1);
    let mut failing: Option<String> = None;
    loop {
        let outcome = advertise.clone().map_or_else(|| default_advertise(&manager, own_port), Ok).and_then(|address| {
            let body = serde_json::json!({ "name": name, "address": address }).to_string();
            let mut req = agent.post(&url).header("Content-Type", "application/json");
            if let Some(t) = &token {
                req = req.header("Authorization", t.header_value());
            }
            let mut resp = req.send(body.as_bytes()).map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let text = resp.body_mut().with_config().limit(64 * 1024).read_to_string().unwrap_or_default();
            if status == 200 {
                Ok(address)
            } else {
                Err(format!("HTTP {status}: {}", text.trim()))
            }
        });
        let wait = match outcome {
            Ok(address) => {
                if failing.take().is_some() || backoff > Duration::ZERO {
                    info!("joined the manager manager={} name={} address={}", q(&manager), q(&name), q(&address));
                }
                backoff = Duration::ZERO;
                REJOIN_EVERY
            }
            Err(why) => {
                // said when it starts failing and when the reason changes, not at every retry
                if failing.as_deref() != Some(why.as_str()) {
                    warn!("cannot join the manager manager={} error={}", q(&manager), q(&why));
                    failing = Some(why);
                }
                backoff = (backoff * 2).clamp(Duration::from_secs(1), BACKOFF_MAX);
                backoff
            }
        };
        match stop.recv_timeout(wait) {
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
    }
}
