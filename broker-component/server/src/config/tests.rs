//! Config errors must carry the file, the line and the key.

use super::*;

fn err(src: &str) -> String {
    Settings::parse("musqratt.toml", src)
        .unwrap_err()
        .to_string()
}

#[test]
fn empty_file_gives_defaults() {
    assert_eq!(Settings::parse("f", "").unwrap(), Settings::default());
}

#[test]
fn full_file_parses() {
    let s = Settings::parse(
        "f",
        r#"
[[listener]]
bind = "127.0.0.1:1884"
protocol = "mqtt"

[[listener]]
bind = "[::1]:1885"
protocol = "websocket"

[storage]
dir = "data"
in_memory = true

[auth]
allow_anonymous = true

[network]
stack = "kernel"

[hold]
enabled = false
max_messages_per_topic = 10
max_total_mb = 2

[session]
default_expiry_secs = 60
max_keepalive_secs = 30

[message]
default_expiry_secs = 5

[limits]
max_packet_size = 1024
max_connections = 100
max_inflight = 8
max_queued_messages = 0
max_memory_mb = 0
max_topic_levels = 300

[workers]
scheduling = "batch"
"#,
    )
    .unwrap();
    assert_eq!(s.listeners.len(), 2);
    assert_eq!(s.listeners[0].bind.port(), 1884);
    assert!(!s.listeners[0].websocket);
    assert_eq!(s.listeners[1].bind.port(), 1885);
    assert!(s.listeners[1].websocket);
    assert!(s.in_memory && !s.broker.hold_enabled);
    assert_eq!(s.broker.hold_max_messages_per_topic, 10);
    assert_eq!(s.broker.hold_max_total_bytes, 2 << 20);
    assert_eq!(s.broker.max_topic_levels, 300);
    assert_eq!(s.broker.max_keepalive_secs, 30);
    assert_eq!(s.broker.max_inflight, 8);
    assert_eq!(s.max_connections, 100);
    assert_eq!(s.broker.max_queued_messages, usize::MAX, "0 = unlimited");
    assert_eq!(s.broker.max_packet_size, 1024);
    assert_eq!(s.broker.message_default_expiry_secs, 5);
    assert_eq!(s.scheduling, crate::sched::Scheduling::Batch);
}

#[test]
fn bad_integer_names_line_key_and_expectation() {
    let e = err("[limits]\nmax_connections = 5\n\n\n\n\nmax_inflight = \"abc\"\n");
    assert_eq!(
        e,
        "musqratt.toml:7: key 'limits.max_inflight': expected an integer 1..=65535, found \"abc\""
    );
}

#[test]
fn out_of_range_integer() {
    let e = err("[limits]\nmax_inflight = 0\n");
    assert!(
        e.starts_with("musqratt.toml:2: key 'limits.max_inflight'"),
        "{e}"
    );
    assert!(e.contains("found 0"), "{e}");
}

#[test]
fn unknown_key_is_an_error() {
    let e = err("[hold]\nenabled = true\nmax_per_topic = 3\n");
    assert!(
        e.starts_with("musqratt.toml:3: key 'hold.max_per_topic': unknown key"),
        "{e}"
    );
    assert!(e.contains("max_messages_per_topic"), "{e}");
}

#[test]
fn unknown_table_is_an_error() {
    let e = err("\n[holdd]\nenabled = true\n");
    assert!(
        e.starts_with("musqratt.toml:2: key 'holdd': unknown key"),
        "{e}"
    );
}

#[test]
fn wrong_type_bool() {
    let e = err("[storage]\nin_memory = \"yes\"\n");
    assert_eq!(
        e,
        "musqratt.toml:2: key 'storage.in_memory': expected true or false, found \"yes\""
    );
}

#[test]
fn bad_bind_address() {
    let e = err("[[listener]]\nbind = \"localhost\"\n");
    assert!(
        e.starts_with("musqratt.toml:2: key 'listener.bind': expected an address"),
        "{e}"
    );
}

#[test]
fn listener_without_bind() {
    let e = err("[[listener]]\nprotocol = \"mqtt\"\n");
    assert!(e.contains("key 'listener.bind': missing"), "{e}");
}

#[test]
fn unknown_listener_protocol_names_line_and_key() {
    let e = err("[[listener]]\nbind = \"127.0.0.1:1\"\nprotocol = \"ws\"\n");
    assert!(
        e.starts_with(
            "musqratt.toml:3: key 'listener.protocol': expected \"mqtt\" or \"websocket\""
        ),
        "{e}"
    );
}

#[test]
fn memory_and_disk_budgets() {
    let s = Settings::parse(
        "f",
        "[limits]\nmax_memory_mb = 64\n[storage]\nmax_disk_mb = 100\n",
    )
    .unwrap();
    assert_eq!((s.max_memory_mb, s.max_disk_mb), (64, 100));
    let e = err("[limits]\nmax_memory_mb = 8\n");
    assert!(
        e.starts_with("musqratt.toml:2: key 'limits.max_memory_mb': "),
        "{e}"
    );
}

#[test]
fn syntax_error_has_a_line() {
    let e = err("[limits]\nmax_inflight = = 3\n");
    assert!(e.starts_with("musqratt.toml:2: invalid TOML"), "{e}");
}

#[test]
fn section_must_be_a_table() {
    let e = err("hold = 3\n");
    assert_eq!(e, "musqratt.toml:1: key 'hold': expected a table, found 3");
}

#[test]
fn bad_scheduling_names_line_key_and_choices() {
    let e = err("[workers]\n\nscheduling = \"fifo\"\n");
    assert_eq!(
        e,
        "musqratt.toml:3: key 'workers.scheduling': expected \"adaptive\", \"normal\" or \"batch\", found \"fifo\""
    );
    assert_eq!(
        Settings::default().scheduling,
        crate::sched::Scheduling::Adaptive
    );
}

#[test]
fn max_publisher_pause_ms_parses_and_is_bounded() {
    assert_eq!(
        Settings::default().broker.max_publisher_pause,
        std::time::Duration::from_millis(50),
        "documented default"
    );
    let s = Settings::parse("f", "[limits]\nmax_publisher_pause_ms = 5\n").unwrap();
    assert_eq!(
        s.broker.max_publisher_pause,
        std::time::Duration::from_millis(5)
    );
    let s = Settings::parse("f", "[limits]\nmax_publisher_pause_ms = 0\n").unwrap();
    assert!(s.broker.max_publisher_pause.is_zero(), "0 = never pause");
    let e = err("[limits]\n\nmax_publisher_pause_ms = 60001\n");
    assert!(
        e.starts_with("musqratt.toml:3: key 'limits.max_publisher_pause_ms'"),
        "{e}"
    );
    assert!(e.contains("0..=60000") && e.contains("found 60001"), "{e}");
    let e = err("[limits]\nmax_publisher_pause_ms = \"fast\"\n");
    assert!(
        e.starts_with("musqratt.toml:2: key 'limits.max_publisher_pause_ms'"),
        "{e}"
    );
}

#[test]
fn hardening_limits_have_their_defaults_and_ranges() {
    let d = Settings::default().broker;
    assert_eq!(d.max_topic_levels, 128);
    assert_eq!(d.hold_max_total_bytes, 64 << 20);
    assert_eq!(
        err("[limits]\nmax_topic_levels = 0\n"),
        "musqratt.toml:2: key 'limits.max_topic_levels': expected an integer 1..=65535, found 0"
    );
    assert_eq!(
        err("[hold]\n\nmax_total_mb = -1\n"),
        "musqratt.toml:3: key 'hold.max_total_mb': expected an integer 1..=1048576, found -1"
    );
    assert_eq!(
        err("[hold]\nmax_total_mb = \"64\"\n"),
        "musqratt.toml:2: key 'hold.max_total_mb': expected an integer 1..=1048576, found \"64\""
    );
}

#[test]
fn pre_connect_and_packet_timeout_limits() {
    let s = Settings::parse(
        "f",
        "[limits]\nconnect_timeout_secs = 3\nmax_connect_size = 4096\npacket_timeout_secs = 0\n",
    )
    .unwrap();
    assert_eq!(s.broker.connect_timeout, std::time::Duration::from_secs(3));
    assert_eq!(s.broker.max_connect_size, 4096);
    assert_eq!(s.broker.packet_timeout, std::time::Duration::ZERO);
    let d = Settings::default();
    assert_eq!(d.broker.connect_timeout, std::time::Duration::from_secs(10));
    assert_eq!(d.broker.max_connect_size, 1024 * 1024);
    assert_eq!(d.broker.packet_timeout, std::time::Duration::from_secs(60));
}

#[test]
fn pre_connect_limits_out_of_range_name_line_and_key() {
    for (src, key, range) in [
        (
            "[limits]\n\nconnect_timeout_secs = 0\n",
            "limits.connect_timeout_secs",
            "1..=86400",
        ),
        (
            "[limits]\n\nmax_connect_size = 15\n",
            "limits.max_connect_size",
            "16..=268435455",
        ),
        (
            "[limits]\n\npacket_timeout_secs = -1\n",
            "limits.packet_timeout_secs",
            "0..=86400",
        ),
    ] {
        let e = err(src);
        assert!(
            e.starts_with(&format!(
                "musqratt.toml:3: key '{key}': expected an integer {range}"
            )),
            "{e}"
        );
    }
}

#[test]
fn outbound_alias_limits() {
    let d = Settings::default().broker;
    assert_eq!(
        (d.max_outbound_aliases, d.max_outbound_alias_bytes),
        (16, 8192)
    );
    let s = Settings::parse(
        "f",
        "[limits]\nmax_outbound_aliases = 0\nmax_outbound_alias_bytes = 100000\n",
    )
    .unwrap();
    assert_eq!(s.broker.max_outbound_aliases, 0);
    assert_eq!(s.broker.max_outbound_alias_bytes, 100_000);
    let e = err("[limits]\n\nmax_outbound_aliases = 65536\n");
    assert_eq!(
        e,
        "musqratt.toml:3: key 'limits.max_outbound_aliases': expected an integer 0..=65535, found 65536"
    );
    let e = err("[limits]\nmax_outbound_alias_bytes = -1\n");
    assert!(
        e.starts_with(
            "musqratt.toml:2: key 'limits.max_outbound_alias_bytes': expected an integer"
        ),
        "{e}"
    );
}

#[test]
fn subscription_and_retained_limits() {
    let d = Settings::default().broker;
    assert_eq!(d.max_subscriptions_per_client, 100_000);
    assert_eq!(d.max_retained_bytes, 64 << 20);
    let s = Settings::parse(
        "f",
        "[limits]\nmax_subscriptions_per_client = 3\nmax_retained_mb = 2\n",
    )
    .unwrap();
    assert_eq!(s.broker.max_subscriptions_per_client, 3);
    assert_eq!(s.broker.max_retained_bytes, 2 << 20);
    let s = Settings::parse("f", "[limits]\nmax_subscriptions_per_client = 0\n").unwrap();
    assert_eq!(
        s.broker.max_subscriptions_per_client,
        usize::MAX,
        "0 = unlimited"
    );
    assert_eq!(
        err("[limits]\n\nmax_subscriptions_per_client = -1\n"),
        "musqratt.toml:3: key 'limits.max_subscriptions_per_client': expected an integer 0..=4294967295, found -1"
    );
    assert_eq!(
        err("[limits]\nmax_retained_mb = 0\n"),
        "musqratt.toml:2: key 'limits.max_retained_mb': expected an integer 1..=1048576, found 0"
    );
    assert_eq!(
        err("[limits]\nmax_retained_mb = \"64\"\n"),
        "musqratt.toml:2: key 'limits.max_retained_mb': expected an integer 1..=1048576, found \"64\""
    );
}

#[test]
fn queued_bytes_limit() {
    assert_eq!(Settings::default().broker.max_queued_bytes, usize::MAX);
    let s = Settings::parse("f", "[limits]\nmax_queued_mb = 3\n").unwrap();
    assert_eq!(s.broker.max_queued_bytes, 3 << 20);
    let s = Settings::parse("f", "[limits]\nmax_queued_mb = 0\n").unwrap();
    assert_eq!(s.broker.max_queued_bytes, usize::MAX, "0 = unlimited");
    assert_eq!(
        err("[limits]\nmax_queued_mb = 1048577\n"),
        "musqratt.toml:2: key 'limits.max_queued_mb': expected an integer 0..=1048576, found 1048577"
    );
}

#[test]
fn auth_section() {
    let s = Settings::parse(
        "f",
        "[auth]\nallow_anonymous = false\npassword_file = \"/etc/musqratt/passwd\"\n",
    )
    .unwrap();
    assert!(!s.broker.allow_anonymous);
    assert_eq!(s.password_file, Some(PathBuf::from("/etc/musqratt/passwd")));
    // The default: anonymous clients allowed, no password file.
    let d = Settings::default();
    assert!(d.broker.allow_anonymous && d.password_file.is_none());
    let s = Settings::parse("f", "[auth]\npassword_file = \"pw\"\n").unwrap();
    assert!(s.broker.allow_anonymous);
}

#[test]
fn auth_errors_name_line_and_key() {
    let e = err("[auth]\n\nallow_anonymous = false\n");
    assert_eq!(
        e,
        "musqratt.toml:3: key 'auth.allow_anonymous': false needs auth.password_file or a TLS \
         listener with use_identity_as_username (otherwise no client can get in)"
    );
    let e = err("[auth]\npassword_file = 3\n");
    assert_eq!(
        e,
        "musqratt.toml:2: key 'auth.password_file': expected a string, found 3"
    );
    let e = err("[auth]\npassword_file = \"\"\n");
    assert!(
        e.starts_with("musqratt.toml:2: key 'auth.password_file': "),
        "{e}"
    );
    let e = err("[auth]\n\nacl_file = \"\"\n");
    assert!(
        e.starts_with("musqratt.toml:3: key 'auth.acl_file': "),
        "{e}"
    );
    let e = err("[auth]\nacl_file = []\n");
    assert!(
        e.starts_with("musqratt.toml:2: key 'auth.acl_file': "),
        "{e}"
    );
    let s = Settings::parse("f", "[auth]\nacl_file = \"/etc/musqratt/acl\"\n").unwrap();
    assert_eq!(s.acl_file, Some(PathBuf::from("/etc/musqratt/acl")));
    let e = err("[auth]\nallow_anonymous = \"no\"\n");
    assert!(
        e.starts_with("musqratt.toml:2: key 'auth.allow_anonymous': "),
        "{e}"
    );
}

#[test]
fn relative_password_file_is_taken_from_the_config_directory() {
    let dir = std::env::temp_dir().join(format!("musqratt-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("musqratt.toml");
    std::fs::write(&conf, "[auth]\npassword_file = \"sub/passwd\"\n").unwrap();
    let s = Settings::load(&conf).unwrap();
    assert_eq!(s.password_file, Some(dir.join("sub/passwd")));
    std::fs::write(&conf, "[auth]\npassword_file = \"/abs/passwd\"\n").unwrap();
    let s = Settings::load(&conf).unwrap();
    assert_eq!(s.password_file, Some(PathBuf::from("/abs/passwd")));
    std::fs::write(&conf, "[auth]\nacl_file = \"acl\"\n").unwrap();
    let s = Settings::load(&conf).unwrap();
    assert_eq!(s.acl_file, Some(dir.join("acl")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_listener_settings() {
    let s = Settings::parse(
        "musqratt.toml",
        "[[listener]]\nbind = \"127.0.0.1:8883\"\n\
         tls = { cert = \"chain.pem\", key = \"key.pem\", client_ca = \"ca.pem\" }\n\
         [[listener]]\nbind = \"127.0.0.1:1883\"\n",
    )
    .unwrap();
    let tls = s.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.cert, std::path::Path::new("chain.pem"));
    assert_eq!(
        tls.client_ca.as_deref(),
        Some(std::path::Path::new("ca.pem"))
    );
    // A CA given: certificates are required unless said otherwise.
    assert!(tls.require_certificate && !tls.use_identity_as_username);
    assert_eq!(tls.origin, "musqratt.toml:3");
    assert!(s.listeners[1].tls.is_none());
    let s = Settings::parse(
        "musqratt.toml",
        "[auth]\nallow_anonymous = false\n[[listener]]\nbind = \"127.0.0.1:8883\"\n\
         tls = { cert = \"c\", key = \"k\", client_ca = \"ca\", require_certificate = false, \
         use_identity_as_username = true }\n",
    )
    .unwrap();
    let tls = s.listeners[0].tls.as_ref().unwrap();
    // allow_anonymous = false without a password file: the certificate names the client.
    assert!(!tls.require_certificate && tls.use_identity_as_username);
    assert!(!s.broker.allow_anonymous);
}

#[test]
fn tls_errors_name_line_and_key() {
    for (src, key, msg) in [
        (
            "tls = { key = \"k\" }",
            "listener.tls.cert",
            "missing (a TLS listener needs cert and key)",
        ),
        (
            "tls = { cert = \"c\" }",
            "listener.tls.key",
            "missing (a TLS listener needs cert and key)",
        ),
        (
            "tls = { cert = \"\", key = \"k\" }",
            "listener.tls.cert",
            "expected a path, found \"\"",
        ),
        (
            "tls = { cert = 1, key = \"k\" }",
            "listener.tls.cert",
            "expected a string, found 1",
        ),
        (
            "tls = \"yes\"",
            "listener.tls",
            "expected a table, found \"yes\"",
        ),
        (
            "tls = { cert = \"c\", key = \"k\", require_certificate = true }",
            "listener.tls.require_certificate",
            "true needs listener.tls.client_ca (the CA client certificates are checked against)",
        ),
        (
            "tls = { cert = \"c\", key = \"k\", use_identity_as_username = true }",
            "listener.tls.use_identity_as_username",
            "true needs listener.tls.client_ca (no client certificate, no identity)",
        ),
        (
            "tls = { cert = \"c\", key = \"k\", ciphers = \"x\" }",
            "listener.tls.ciphers",
            "unknown key (expected one of: cert, key, client_ca, require_certificate, \
             use_identity_as_username)",
        ),
    ] {
        let e = err(&format!("[[listener]]\nbind = \"127.0.0.1:1\"\n{src}\n"));
        assert_eq!(e, format!("musqratt.toml:3: key '{key}': {msg}"));
    }
}
