//! Will records through the whole store: ops recorded into the journal, committed to redb,
//! read back by recovery at the next open (docs/storage.md "Wills").

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use musqratt_codec::{Properties, QoS, Will};
use musqratt_core::persist::{Journal as _, Op};
use musqratt_store::engine::{Change, Engine, Table};
use musqratt_store::redb_engine::RedbEngine;
use musqratt_store::{open, Opened};

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("musqratt-store-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn reopen(dir: &std::path::Path) -> Opened {
    open(dir, musqratt_store::Options::default(), Box::new(|_| {})).expect("store opens")
}

fn will(payload: &str, delay: Option<u32>) -> Box<Will> {
    Box::new(Will {
        topic: "status/dev".into(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Properties {
            will_delay_interval: delay,
            content_type: Some("text/plain".into()),
            ..Properties::default()
        },
    })
}

fn put(client: &str, payload: &str, delay: u32, fires_at: Option<Instant>) -> Op {
    Op::WillPut {
        client: Arc::from(client),
        will: will(payload, Some(delay)),
        delay,
        fires_at,
    }
}

#[test]
fn wills_are_recovered_with_their_delay_and_deleted_ones_are_not() {
    let dir = scratch("wills");
    let opened = reopen(&dir);
    assert_eq!(opened.report.wills, 0);
    let j = &opened.store.journal;
    let now = Instant::now();
    j.record(put("online", "open connection", 7, None));
    j.record(put(
        "pending",
        "pending",
        0,
        Some(now + Duration::from_secs(60)),
    ));
    j.record(put("overdue", "overdue", 0, Some(now)));
    j.record(put("gone", "deleted", 0, None));
    j.record(Op::WillDelete {
        client: Arc::from("gone"),
    });
    // Rewritten whole: the last put is what stays.
    j.record(put("replaced", "old", 5, None));
    j.record(put(
        "replaced",
        "new",
        0,
        Some(now + Duration::from_secs(30)),
    ));
    j.close();
    drop(opened);

    let opened = reopen(&dir);
    assert_eq!(opened.report.wills, 4);
    assert_eq!(opened.report.damaged, 0);
    let mut wills: Vec<_> = opened
        .restored
        .wills
        .iter()
        .map(|w| {
            (
                w.client.to_string(),
                String::from_utf8_lossy(&w.will.payload).into_owned(),
                w.fires_in,
            )
        })
        .collect();
    wills.sort();
    let names: Vec<_> = wills
        .iter()
        .map(|(c, p, _)| (c.as_str(), p.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("online", "open connection"),
            ("overdue", "overdue"),
            ("pending", "pending"),
            ("replaced", "new"),
        ]
    );
    // The open connection's will: its delay, from this start.
    assert_eq!(wills[0].2, Duration::from_secs(7));
    assert_eq!(wills[1].2, Duration::ZERO);
    // A pending will: what is left of its deadline (wall clock: less than it was, not zero).
    assert!(wills[2].2 <= Duration::from_secs(60) && wills[2].2 > Duration::from_secs(30));
    assert!(wills[3].2 <= Duration::from_secs(30) && !wills[3].2.is_zero());
    let w = &opened.restored.wills[0].will;
    assert_eq!(w.topic, "status/dev");
    assert_eq!(w.qos, QoS::AtLeastOnce);
    assert!(w.retain);
    assert_eq!(w.properties.content_type.as_deref(), Some("text/plain"));
    drop(opened);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_will_record_is_skipped_and_deleted() {
    let dir = scratch("wills-damaged");
    let opened = reopen(&dir);
    opened.store.journal.record(put("good", "kept", 3, None));
    opened.store.journal.close();
    drop(opened);
    {
        let mut engine = RedbEngine::open(
            &dir.join(musqratt_store::STORE_FILE),
            musqratt_store::redb_engine::CACHE_BYTES,
        )
        .expect("engine");
        let damaged = [
            // Not a PUBLISH after the header.
            Change::Put(Table::Wills, b"bad".to_vec(), vec![1; 20]),
            // An unknown format byte.
            Change::Put(Table::Wills, b"future".to_vec(), vec![9; 40]),
            // A client id that is not UTF-8.
            Change::Put(Table::Wills, vec![0xff, 0xfe], vec![1; 20]),
        ];
        engine.commit(&damaged, true).expect("commit");
    }

    let opened = reopen(&dir);
    assert_eq!(opened.report.damaged, 3);
    assert_eq!(opened.report.wills, 1);
    assert_eq!(&*opened.restored.wills[0].client, "good");
    drop(opened);
    // Deleted at the first open: the next one finds only the good will.
    let opened = reopen(&dir);
    assert_eq!(opened.report.damaged, 0);
    assert_eq!(opened.report.wills, 1);
    drop(opened);
    let _ = std::fs::remove_dir_all(&dir);
}
