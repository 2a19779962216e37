use super::*;

fn anon(client_id: &str) -> Subject<'_> {
    Subject {
        client_id,
        username: None,
    }
}

fn user<'a>(client_id: &'a str, name: &'a str) -> Subject<'a> {
    Subject {
        client_id,
        username: Some(name),
    }
}

fn table(src: &str) -> AclTable {
    AclTable::parse(src).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn nothing_granted_is_denied() {
    let t = table("");
    assert!(!t.check(anon("c"), "a", Want::Read));
    assert!(!t.check(user("c", "u"), "a", Want::Write));
}

#[test]
fn rules_before_the_first_user_line_are_for_anonymous_clients() {
    let t = table("# comment\n\ntopic read public/#\nuser alice\ntopic alice/#\n");
    assert!(t.check(anon("c"), "public/x", Want::Read));
    assert!(t.check(anon("c"), "public", Want::Read));
    assert!(!t.check(anon("c"), "public/x", Want::Write));
    assert!(!t.check(user("c", "alice"), "public/x", Want::Read));
    assert!(t.check(user("c", "alice"), "alice/x/y", Want::Write));
    assert!(t.check(user("c", "alice"), "alice/x/y", Want::Read));
    assert!(!t.check(anon("c"), "alice/x", Want::Read));
    assert!(!t.check(user("c", "bob"), "alice/x", Want::Read));
}

#[test]
fn access_words() {
    let t = table("topic read r\ntopic write w\ntopic readwrite rw\ntopic deny d\n");
    let c = anon("c");
    assert!(t.check(c, "r", Want::Read) && !t.check(c, "r", Want::Write));
    assert!(!t.check(c, "w", Want::Read) && t.check(c, "w", Want::Write));
    assert!(t.check(c, "rw", Want::Read) && t.check(c, "rw", Want::Write));
    assert!(!t.check(c, "d", Want::Read) && !t.check(c, "d", Want::Write));
}

#[test]
fn deny_overrides_grants_in_any_order() {
    for src in [
        "topic deny a/secret/#\ntopic readwrite a/#\n",
        "topic readwrite a/#\ntopic deny a/secret/#\n",
        "topic readwrite a/#\npattern deny a/secret/#\n",
    ] {
        let t = table(src);
        let c = anon("c");
        assert!(t.check(c, "a/open", Want::Read), "{src}");
        assert!(!t.check(c, "a/secret/x", Want::Read), "{src}");
        assert!(!t.check(c, "a/secret", Want::Write), "{src}");
        assert!(!t.check(c, "a/secret/#", Want::Subscribe), "{src}");
        // `a/#` is granted: its deliveries under a/secret are checked one by one.
        assert!(t.check(c, "a/#", Want::Subscribe), "{src}");
    }
}

#[test]
fn patterns_substitute_client_id_and_user_name() {
    let t = table("user bob\ntopic read x\npattern devices/%c/#\npattern read users/%u/in\n");
    assert!(t.check(anon("d1"), "devices/d1/status", Want::Write));
    assert!(!t.check(anon("d1"), "devices/d2/status", Want::Write));
    assert!(t.check(user("d2", "bob"), "devices/d2", Want::Read));
    assert!(t.check(user("d2", "bob"), "users/bob/in", Want::Read));
    assert!(!t.check(user("d2", "bob"), "users/bob/in", Want::Write));
    assert!(!t.check(user("d2", "bob"), "users/eve/in", Want::Read));
    // `%u` is not for anonymous clients.
    assert!(!t.check(anon("d1"), "users//in", Want::Read));
    // Within a level, with text around it.
    let t = table("pattern read a/x-%c-%u.y\n");
    assert!(t.check(user("c1", "u1"), "a/x-c1-u1.y", Want::Read));
    assert!(!t.check(user("c1", "u1"), "a/x-c1-u2.y", Want::Read));
    assert!(!t.check(user("c1", "u1"), "a/x-c1-u1.yz", Want::Read));
}

#[test]
fn identities_with_wildcards_or_separators_are_not_substituted() {
    let t = table("pattern read devices/%c\n");
    assert!(!t.check(anon("a/b"), "devices/a/b", Want::Read));
    assert!(!t.check(anon("+"), "devices/+", Want::Read));
    // A deny pattern the identity cannot be matched against denies everything.
    let t = table("topic read #\npattern deny private/%c/#\n");
    assert!(t.check(anon("ok"), "x", Want::Read));
    assert!(!t.check(anon("ok"), "private/ok/x", Want::Read));
    assert!(!t.check(anon("#"), "x", Want::Read));
}

#[test]
fn topic_lines_do_not_substitute() {
    let t = table("topic read a/%c\n");
    assert!(!t.check(anon("me"), "a/me", Want::Read));
    assert!(t.check(anon("me"), "a/%c", Want::Read));
}

#[test]
fn wildcards_do_not_match_dollar_topics() {
    let t = table("topic read #\ntopic read +/x\n");
    assert!(t.check(anon("c"), "a/b", Want::Read));
    assert!(!t.check(anon("c"), "$SYS/broker/uptime", Want::Read));
    assert!(!t.check(anon("c"), "$SYS/x", Want::Read));
    assert!(!t.check(anon("c"), "$SYS/#", Want::Subscribe));
    let t = table("topic read $SYS/#\n");
    assert!(t.check(anon("c"), "$SYS/broker/uptime", Want::Read));
    assert!(t.check(anon("c"), "$SYS/#", Want::Subscribe));
}

#[test]
fn subscribe_is_granted_if_anything_readable_may_match_and_nothing_denies_it_all() {
    let t = table("topic read a/+/c\ntopic read b/#\ntopic read exact\ntopic deny b/secret/#\n");
    let c = anon("c");
    for (filter, granted) in [
        ("a/+/c", true),
        ("a/x/c", true),
        ("a/#", true),
        ("a/+/#", true),
        ("a/x/d", false),
        ("a/x", false),
        ("a/x/c/d", false),
        ("b", true),
        ("b/+", true),
        ("+", true),
        ("#", true),
        ("exact/#", true),
        ("x/y", false),
        ("b/secret/#", false),
        ("b/secret/x", false),
        ("b/secret", false),
        ("b/secret/+/y", false),
    ] {
        assert_eq!(t.check(c, filter, Want::Subscribe), granted, "{filter}");
    }
    // `$` topics: a wildcard on either side does not reach them.
    let t = table("topic read $SYS/broker/#\n");
    assert!(!t.check(c, "#", Want::Subscribe));
    assert!(!t.check(c, "+/broker/x", Want::Subscribe));
    assert!(t.check(c, "$SYS/#", Want::Subscribe));
    assert!(t.check(c, "$SYS/+/x", Want::Subscribe));
    let t = table("topic read #\n");
    assert!(!t.check(c, "$SYS/#", Want::Subscribe));
    // Patterns take part, substituted.
    let t = table("pattern read dev/%c/#\n");
    assert!(t.check(anon("d1"), "dev/+/x", Want::Subscribe));
    assert!(t.check(anon("d1"), "dev/d1/x", Want::Subscribe));
    assert!(!t.check(anon("d1"), "dev/d2/x", Want::Subscribe));
}

#[test]
fn a_user_named_twice_has_both_sets_of_rules() {
    let t = table("user u\ntopic read a\nuser v\ntopic read b\nuser u\ntopic read c\n");
    assert!(t.check(user("x", "u"), "a", Want::Read));
    assert!(t.check(user("x", "u"), "c", Want::Read));
    assert!(!t.check(user("x", "u"), "b", Want::Read));
    assert_eq!(t.rule_count(), 3);
}

#[test]
fn bad_lines_name_the_line() {
    for (src, line, what) in [
        ("topic read a\nfrobnicate x\n", 2, "unknown keyword"),
        ("\n\nuser\n", 3, "without a user name"),
        ("topic read\n", 1, "without a topic filter"),
        ("topic\n", 1, "no topic filter"),
        ("topic read a/#/b\n", 1, "not a valid topic filter"),
        ("# ok\npattern write a+/b\n", 2, "not a valid topic filter"),
    ] {
        let e = AclTable::parse(src).expect_err(src);
        assert_eq!(e.line, line, "{src}: {e}");
        assert!(e.message.contains(what), "{src}: {e}");
    }
    let long = format!("topic read {}\n", "a".repeat(MAX_LINE_BYTES));
    let e = AclTable::parse(&long).expect_err("long line");
    assert!(e.message.contains("longer than"), "{e}");
    let deep = format!("topic read {}\n", "a/".repeat(MAX_RULE_LEVELS) + "a");
    let e = AclTable::parse(&deep).expect_err("deep filter");
    assert!(e.message.contains("levels"), "{e}");
}

#[test]
fn a_filter_may_contain_spaces_after_an_access_word() {
    let t = table("topic read a b/c\n");
    assert!(t.check(anon("c"), "a b/c", Want::Read));
    // CRLF line ends and indentation are accepted.
    let t = table("  user u\r\n\ttopic write x\r\n");
    assert!(t.check(user("c", "u"), "x", Want::Write));
}

#[test]
fn the_table_is_swapped_whole() {
    let acl = Acl::new(Arc::new(table("topic read a\n")));
    let before = acl.table();
    acl.set_table(Arc::new(table("topic read b\n")));
    assert!(before.check(anon("c"), "a", Want::Read));
    assert!(!acl.table().check(anon("c"), "a", Want::Read));
    assert!(acl.table().check(anon("c"), "b", Want::Read));
}
