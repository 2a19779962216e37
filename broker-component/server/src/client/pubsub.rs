//! `musqratt pub` and `musqratt sub`: one-shot clients with mosquitto_pub/mosquitto_sub's flags
//! and exit codes (0 success; 1 usage or connection failure; the CONNACK code when the broker
//! refuses the connection; 27 when `sub -W` times out).

use std::io::{BufRead, Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use musqratt_codec::topic::{validate_topic_filter, validate_topic_name};
use musqratt_codec::{ProtocolVersion, QoS};

use super::session::{io_text, Client, ClientError, Event, Options, Sink};
use super::topic_error;
use crate::cli::{BrokerArgs, ClientArgs, PubArgs, SubArgs};

/// mosquitto_sub's exit status when `-W` expires.
const EXIT_TIMED_OUT: u8 = 27;

fn fail(code: u8, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(code)
}

fn options(b: &BrokerArgs, c: &ClientArgs, kind: &str) -> Result<Options, String> {
    let id =
        c.id.clone()
            .unwrap_or_else(|| format!("musqratt-{kind}-{}", std::process::id()));
    let mut o = Options::new(&b.host, b.port, b.version, &id);
    o.keep_alive = c.keep_alive;
    o.username = c.username.clone();
    o.password = c.password.clone().map(String::into_bytes);
    o.tls = b.tls_files().config()?;
    Ok(o)
}

fn qos(q: u8) -> QoS {
    QoS::from_u8(q).unwrap_or(QoS::AtMostOnce)
}

fn connect(opts: &Options, sink: Sink) -> Result<Client, ExitCode> {
    Client::connect(opts, sink).map_err(|e| fail(e.exit_code(), e))
}

pub fn publish(a: &PubArgs) -> ExitCode {
    if let Err(e) = validate_topic_name(&a.topic) {
        return fail(
            1,
            format!("invalid topic '{}': {}", a.topic, topic_error(e)),
        );
    }
    if a.broker.version == ProtocolVersion::V311
        && (a.expiry.is_some() || a.session_expiry.is_some())
    {
        return fail(1, "-e and -x need MQTT 5 (-V 5)");
    }
    let mut opts = match options(&a.broker, &a.client, "pub") {
        Ok(o) => o,
        Err(e) => return fail(1, e),
    };
    opts.session_expiry = a.session_expiry;
    // The single payload is read before connecting, so a bad file costs no connection.
    let single = if let Some(m) = &a.message {
        Some(Bytes::from(m.clone()))
    } else if let Some(f) = &a.file {
        match std::fs::read(f) {
            Ok(b) => Some(Bytes::from(b)),
            Err(e) => return fail(1, format!("cannot read {}: {}", f.display(), io_text(&e))),
        }
    } else if a.null {
        Some(Bytes::new())
    } else if a.stdin {
        let mut b = Vec::new();
        if let Err(e) = std::io::stdin().read_to_end(&mut b) {
            return fail(1, format!("cannot read stdin: {}", io_text(&e)));
        }
        Some(Bytes::from(b))
    } else {
        None // -l
    };
    let closed = Arc::new(Mutex1::default());
    let c2 = Arc::clone(&closed);
    let client = match connect(
        &opts,
        Arc::new(move |e| {
            if let Event::Closed(why) = e {
                c2.set(why);
            }
        }),
    ) {
        Ok(c) => c,
        Err(code) => return code,
    };
    debug_connected(a.client.debug, &client);
    let send = |payload: Bytes| -> Result<(), String> {
        let code = client
            .publish(&a.topic, payload, qos(a.client.qos), a.retain, a.expiry)
            .map_err(|e| e.to_string())?;
        if code.is_error() {
            return Err(format!("publish refused: {code}"));
        }
        Ok(())
    };
    let result = match single {
        Some(p) => send(p),
        None => {
            let mut r = Ok(());
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(l) if l.is_empty() => {}
                    Ok(l) => {
                        r = send(Bytes::from(l));
                        if r.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        r = Err(format!("cannot read stdin: {}", io_text(&e)));
                        break;
                    }
                }
            }
            r
        }
    };
    let result = result.and_then(|()| client.disconnect(None).map_err(|e| e.to_string()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(1, closed.get().unwrap_or(e)),
    }
}

fn debug_connected(debug: bool, client: &Client) {
    if debug {
        let ack = client.connack();
        eprintln!(
            "connected {} (CONNACK {}, session present: {})",
            client.client_id(),
            ack.reason_code.name(),
            if ack.session_present { "yes" } else { "no" }
        );
    }
}

/// A once-set text shared with the reader thread.
#[derive(Default)]
struct Mutex1(std::sync::Mutex<Option<String>>);

impl Mutex1 {
    fn set(&self, s: String) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.get_or_insert(s);
    }
    fn get(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the reader thread tells `sub`'s main loop.
enum SubEvent {
    CountReached,
    Closed(String),
}

pub fn subscribe(a: &SubArgs) -> ExitCode {
    for t in &a.topics {
        if let Err(e) = validate_topic_filter(t) {
            return fail(1, format!("invalid topic filter '{t}': {}", topic_error(e)));
        }
    }
    if a.broker.version == ProtocolVersion::V311 && a.session_expiry.is_some() {
        return fail(1, "-e/-x (session expiry) needs MQTT 5 (-V 5)");
    }
    let mut opts = match options(&a.broker, &a.client, "sub") {
        Ok(o) => o,
        Err(e) => return fail(1, e),
    };
    opts.clean_start = !a.persistent;
    opts.session_expiry = match (a.session_expiry, a.persistent) {
        (Some(x), _) => Some(x),
        (None, true) => Some(u32::MAX), // never expires, as mosquitto_sub -c
        (None, false) => None,
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&stop));
    }
    let (tx, rx) = mpsc::channel();
    let seen = Arc::new(AtomicU64::new(0));
    let limit = a.count;
    let verbose = a.verbose;
    let sink: Sink = Arc::new(move |e| match e {
        Event::Message(m) => {
            let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
            if limit.is_some_and(|c| n > c) {
                return;
            }
            let mut line = Vec::with_capacity(m.topic.len() + m.payload.len() + 2);
            if verbose {
                line.extend_from_slice(m.topic.as_bytes());
                line.push(b' ');
            }
            line.extend_from_slice(&m.payload);
            line.push(b'\n');
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&line).and_then(|()| out.flush());
            if limit == Some(n) {
                let _ = tx.send(SubEvent::CountReached);
            }
        }
        Event::Closed(why) => {
            let _ = tx.send(SubEvent::Closed(why));
        }
    });
    let client = match connect(&opts, sink) {
        Ok(c) => c,
        Err(code) => return code,
    };
    debug_connected(a.client.debug, &client);
    let deadline = a.timeout.map(|s| Instant::now() + Duration::from_secs(s));
    let filters: Vec<_> = a
        .topics
        .iter()
        .map(|t| (t.clone(), qos(a.client.qos)))
        .collect();
    let codes = match client.subscribe(&filters) {
        Ok(c) => c,
        Err(e) => return fail(1, e),
    };
    let mut denied = 0;
    for (t, code) in a.topics.iter().zip(&codes) {
        if code.is_error() {
            denied += 1;
            eprintln!("error: subscription to {t} refused: {code}");
        } else if a.client.debug {
            eprintln!("subscribed {t} (granted QoS {})", code.0);
        }
    }
    if denied == codes.len() {
        let _ = client.disconnect(None);
        return fail(1, "all subscription requests were denied");
    }
    loop {
        let wait = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::from_millis(200),
        };
        if stop.load(Ordering::SeqCst) {
            let _ = client.disconnect(None);
            return ExitCode::SUCCESS;
        }
        if wait.is_zero() {
            let _ = client.disconnect(None);
            return fail(EXIT_TIMED_OUT, "timed out");
        }
        match rx.recv_timeout(wait.min(Duration::from_millis(200))) {
            Ok(SubEvent::CountReached) => {
                return match client.disconnect(None) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => fail(1, e),
                }
            }
            Ok(SubEvent::Closed(why)) => return fail(1, ClientError::Closed(why)),
            Err(_) => {}
        }
    }
}
