//! A worker joining its manager by itself (`worker --join MANAGER:PORT`): registers with
//! `POST /v1/nodes` and keeps doing so, so that it is known again after either side restarts.
//! Failures are retried with a back-off (1 s doubling to 30 s); once registered it registers
//! again every `REJOIN_EVERY` (a manager that forgot it, e.g. one with a memory store that
//! restarted, learns it at the next one; a manager that knows it changes nothing).
//!
//! Holds no worker state: the name and the address to advertise are given.

use super::client;
use crate::auth::Token;
use crate::logfmt::q;
use crate::manager::LinkError;
use crossbeam_channel::Receiver;
use log::{info, warn};
use serde::de::IgnoredAny;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

pub const REJOIN_EVERY: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long one registration may take, connecting included.
const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// The address to advertise when none is given and the worker listens on one address only (a
/// specific `--bind`): that one, where alone it can be reached. None when it listens on every
/// address (0.0.0.0 or ::), for `default_advertise` to choose.
pub fn bound_advertise(bound: SocketAddr) -> Option<String> {
    (!bound.ip().is_unspecified()).then(|| bound.to_string())
}

/// The address to advertise when none is given and the worker listens on every address: the local address of a connection to the
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

/// One registration: `POST /v1/nodes`, through the clients' one call (and its one reading of
/// failures).
fn register(
    agent: &ureq::Agent,
    url: &str,
    authorization: Option<&str>,
    name: &str,
    address: &str,
) -> Result<(), LinkError> {
    let body = serde_json::json!({ "name": name, "address": address }).to_string();
    // the answer is the node as the manager now has it: only that it accepted matters here
    client::call::<IgnoredAny>(agent, "POST", url, Some(body.as_bytes()), CALL_DEADLINE, authorization).map(|_| ())
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
    let agent = client::agent(CALL_DEADLINE);
    let authorization = token.as_ref().map(Token::header_value);
    let url = format!("http://{manager}/v1/nodes");
    let mut backoff = Duration::from_secs(1);
    let mut failing: Option<String> = None;
    loop {
        let outcome = advertise.clone().map_or_else(|| default_advertise(&manager, own_port), Ok).and_then(|address| {
            register(&agent, &url, authorization.as_deref(), &name, &address)
                .map(|()| address)
                .map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A manager that answers one request with `answer` and hands back what it was sent.
    fn one_answer(answer: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/nodes", listener.local_addr().unwrap());
        let served = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut piece = [0u8; 4096];
            // the head and the body (a small JSON object, after the blank line)
            while !String::from_utf8_lossy(&got).trim_end().ends_with('}') {
                let n = conn.read(&mut piece).unwrap();
                assert!(n > 0, "closed before the body");
                got.extend_from_slice(&piece[..n]);
            }
            conn.write_all(answer.as_bytes()).unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        (url, served)
    }

    #[test]
    fn a_specific_bind_address_is_advertised_and_an_unspecified_one_is_left_to_the_connection() {
        let at = |s: &str| bound_advertise(s.parse().unwrap());
        assert_eq!(at("10.213.0.12:7070"), Some("10.213.0.12:7070".to_string()));
        assert_eq!(at("[fd00::12]:7070"), Some("[fd00::12]:7070".to_string()));
        assert_eq!(at("127.0.0.1:7070"), Some("127.0.0.1:7070".to_string()));
        assert_eq!(at("0.0.0.0:7070"), None);
        assert_eq!(at("[::]:7070"), None);
    }

    #[test]
    fn a_registration_sends_the_token_and_reads_a_refusal_as_every_client_does() {
        let agent = client::agent(CALL_DEADLINE);
        let (url, served) = one_answer(
            "HTTP/1.1 409 Conflict\r\nContent-Type: application/json\r\nContent-Length: 26\r\n\r\n{\"error\":\"w1 is up there\"}",
        );
        let refused = register(&agent, &url, Some("Bearer t0ken"), "w1", "10.0.0.2:7070");
        assert_eq!(refused, Err(LinkError::Refused { status: 409, message: "w1 is up there".into() }));
        let request = served.join().unwrap();
        assert!(request.starts_with("POST /v1/nodes HTTP/1.1\r\n"), "{request}");
        assert!(request.to_ascii_lowercase().contains("authorization: bearer t0ken\r\n"), "{request}");
        assert!(request.ends_with(r#"{"address":"10.0.0.2:7070","name":"w1"}"#), "{request}");

        let (url, served) = one_answer("HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{\"name\":\"w1\"}");
        assert_eq!(register(&agent, &url, None, "w1", "10.0.0.2:7070"), Ok(()));
        assert!(!served.join().unwrap().to_ascii_lowercase().contains("authorization"));
    }
}
