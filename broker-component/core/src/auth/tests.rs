//! The password file parser and verifier: entries written by Debian's `mosquitto_passwd` (2.0),
//! malformed lines, bounds.

use super::*;

/// `mosquitto_passwd -c -b pw alice s3cret` (PBKDF2-SHA512, the default).
const ALICE: &str = "alice:$7$101$8tredUPrImtqAwuM$F2VGEM6/QptbNPqT1WlLsEsLMgeEuAluXPjwvCj6j3q+cMaMvwP+fta6c0JgdgAn0n/RNFAypdbyp9nBOqMAig==";
/// `mosquitto_passwd -H sha512 -b pw erin 'pa:ss wörd'` (Mosquitto 1.x's SHA-512).
const ERIN: &str = "erin:$6$bTkg5mY3s7ApZK35$vJ8zpZbhb+RyNF4mxcRXGNPAb24RJ8hBRqvZZ6hq7/6lEBAMJNMpr5U14GhuOMfiZipTgmQ+Y56BSAmTbtfUig==";

fn err(src: &str) -> PasswordFileError {
    PasswordFile::parse(src).expect_err("should be refused")
}

#[test]
fn mosquitto_passwd_entries_verify() {
    let f = PasswordFile::parse(&format!("{ALICE}\n{ERIN}\n")).unwrap();
    assert_eq!(f.len(), 2);
    assert!(f.check("alice", b"s3cret"));
    assert!(!f.check("alice", b"s3cret "));
    assert!(!f.check("alice", b""));
    assert!(f.check("erin", "pa:ss wörd".as_bytes()));
    assert!(!f.check("erin", b"pa:ss"));
    assert!(!f.check("mallory", b"s3cret"));
    assert!(!f.check("Alice", b"s3cret"));
}

#[test]
fn written_entries_verify_and_parse_as_mosquitto_writes_them() {
    let line = entry_line("frank", b"tr0ub4dor", &[7; SALT_LEN]);
    assert!(line.starts_with("frank:$7$101$BwcHBwcHBwcHBwcH$"), "{line}");
    let f = PasswordFile::parse(&line).unwrap();
    assert!(f.check("frank", b"tr0ub4dor"));
    assert!(!f.check("frank", b"tr0ub4dor!"));
}

#[test]
fn comments_blank_lines_and_crlf() {
    let src = format!("# users\n\n   \r\n{ALICE}\r\n{ERIN}");
    let f = PasswordFile::parse(&src).unwrap();
    assert!(f.check("alice", b"s3cret"));
    assert!(f.check("erin", "pa:ss wörd".as_bytes()));
}

#[test]
fn unpadded_base64_is_accepted() {
    let f = PasswordFile::parse(ALICE.trim_end_matches('=')).unwrap();
    assert!(f.check("alice", b"s3cret"));
}

#[test]
fn malformed_lines_name_their_line() {
    let cases: &[(&str, usize, &str)] = &[
        ("alice", 1, "expected USER:HASH"),
        (":$6$AAAA$AAAA", 1, "empty user name"),
        ("# c\nbob:plain", 2, "plain-text passwords are refused"),
        ("bob:$5$abc$def", 1, "not a $6$ or $7$"),
        ("bob:$7$101$AAAA", 1, "expected $7$ITERATIONS$SALT$HASH"),
        (
            "bob:$7$101$AAAA$BBBB$CCCC",
            1,
            "expected $7$ITERATIONS$SALT$HASH",
        ),
        ("bob:$6$AAAA", 1, "expected $6$SALT$HASH"),
        ("bob:$6$AAAA$BB$CC", 1, "expected $6$SALT$HASH"),
        ("bob:$7$x$AAAA$BBBB", 1, "iteration count \"x\""),
        ("bob:$7$0$AAAA$BBBB", 1, "iteration count \"0\""),
        ("bob:$7$-5$AAAA$BBBB", 1, "iteration count"),
        ("bob:$6$!!!!$BBBB", 1, "the salt is not base64"),
        ("bob:$6$$BBBB", 1, "the salt is not base64"),
        ("bob:$6$AAAA$BBBB", 1, "the hash is not base64 of 64 bytes"),
    ];
    for (src, line, want) in cases {
        let e = err(src);
        assert_eq!(e.line, *line, "{src}: {e}");
        assert!(e.message.contains(want), "{src}: {e}");
    }
    // After good lines, the bad one is named.
    let e = err(&format!("{ALICE}\n{ERIN}\n\nnobody\n"));
    assert_eq!(e.line, 4);
    assert_eq!(e.to_string(), "line 4: expected USER:HASH");
}

#[test]
fn errors_never_quote_the_hash() {
    let hash_part = &ALICE["alice:$7$101$".len()..];
    let e = err(&format!("alice:$7$99999999${hash_part}"));
    assert!(!e.message.contains("8tredUPrImtqAwuM"), "{e}");
    let e = err(&format!("{ALICE}\n{ALICE}"));
    assert_eq!(e.line, 2);
    assert!(e.message.contains("already defined on line 1"), "{e}");
    assert!(!e.message.contains("F2VGEM6"), "{e}");
    assert!(!format!("{:?}", PasswordFile::parse(ALICE).unwrap()).contains("F2VGEM6"));
}

#[test]
fn iteration_count_is_bounded() {
    let tail = &ALICE["alice:$7$101".len()..];
    let at_max = format!("alice:$7${MAX_ITERATIONS}{tail}");
    assert!(PasswordFile::parse(&at_max).is_ok());
    for n in [
        u64::from(MAX_ITERATIONS) + 1,
        10_000_001,
        u64::from(u32::MAX),
        u64::MAX,
    ] {
        let e = err(&format!("# big\nalice:$7${n}{tail}"));
        assert_eq!(e.line, 2);
        assert!(e.message.contains("is not in 1..=1000000"), "{e}");
    }
}

#[test]
fn line_length_and_user_name_are_bounded() {
    let long = format!("{}{}", "u".repeat(MAX_LINE_BYTES), &ALICE[5..]);
    let e = err(&format!("{ALICE}\n{long}"));
    assert_eq!(e.line, 2);
    assert!(e.message.contains("line longer than"), "{e}");
    let long_user = format!("{}{}", "u".repeat(65_536), &ALICE[5..]);
    assert!(err(&long_user)
        .message
        .contains("user name longer than 65535"));
    let max_user = format!("{}{}", "u".repeat(65_535), &ALICE[5..]);
    assert!(PasswordFile::parse(&max_user).is_ok());
}

#[test]
fn user_count_is_bounded() {
    let tail = &ERIN["erin".len()..];
    let mut src = String::new();
    for i in 0..=MAX_USERS {
        src.push_str(&format!("u{i}{tail}\n"));
    }
    let e = err(&src);
    assert_eq!(e.line, MAX_USERS + 1);
    assert!(e.message.contains("more than 1000000 users"), "{e}");
}

#[test]
fn verdicts() {
    let auth = Auth::default();
    // No table: only allow_anonymous decides.
    assert_eq!(auth.check(true, None, None), Verdict::Allowed);
    assert_eq!(auth.check(true, Some("x"), Some(b"y")), Verdict::Allowed);
    assert_eq!(auth.check(false, None, None), Verdict::NotAuthorized);
    assert_eq!(auth.check(false, Some("x"), None), Verdict::NotAuthorized);
    auth.set_passwords(Some(Arc::new(PasswordFile::parse(ALICE).unwrap())));
    assert_eq!(auth.check(false, None, None), Verdict::NotAuthorized);
    assert_eq!(
        auth.check(false, None, Some(b"s3cret")),
        Verdict::NotAuthorized
    );
    assert_eq!(auth.check(true, None, None), Verdict::Allowed);
    for anon in [true, false] {
        let ok = auth.check(anon, Some("alice"), Some(b"s3cret"));
        assert_eq!(ok, Verdict::Allowed);
        let bad = Verdict::BadUserNameOrPassword;
        assert_eq!(auth.check(anon, Some("alice"), Some(b"nope")), bad);
        assert_eq!(auth.check(anon, Some("alice"), None), bad);
        assert_eq!(auth.check(anon, Some("bob"), Some(b"s3cret")), bad);
    }
    // A reload swaps the whole table.
    auth.set_passwords(Some(Arc::new(PasswordFile::parse(ERIN).unwrap())));
    let erin = auth.check(false, Some("erin"), Some("pa:ss wörd".as_bytes()));
    assert_eq!(erin, Verdict::Allowed);
    let alice = auth.check(false, Some("alice"), Some(b"s3cret"));
    assert_eq!(alice, Verdict::BadUserNameOrPassword);
}
