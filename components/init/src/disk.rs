//! The data disk's decision table: mount it, create a filesystem first, or stop. Pure: tested
//! on the host; `sys.rs` performs the steps.
//!
//! The rule that matters: init only ever formats a disk that is blank (its first bytes all
//! zero). A disk with anything on it that does not mount as our filesystem is left untouched
//! and the appliance stops, because formatting it would destroy someone's data.

/// How many leading bytes must be zero for a disk to count as blank: 1 MiB covers partition
/// tables (MBR, GPT), LVM labels and the superblocks of the common filesystems (btrfs at 64 KiB).
pub const BLANK_PROBE_BYTES: usize = 1 << 20;

/// The device name (`vda2`) of a block device's uevent text if it is the GPT partition named
/// `label` (`PARTNAME=label`).
pub fn partition_named(uevent: &str, label: &str) -> Option<String> {
    let field = |k: &str| {
        uevent
            .lines()
            .find_map(|l| l.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
    };
    (field("PARTNAME") == Some(label)).then(|| field("DEVNAME").map(str::to_string))?
}

/// What the first mount attempt said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOutcome {
    Mounted,
    /// The errno of the failure.
    Failed(i32),
}

/// What init does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Done: the disk is mounted.
    Ready,
    /// The disk is blank: run mkfs, then mount again (a second failure is final).
    CreateFilesystem,
    /// Stop the appliance with this reason (completes "init: data disk <dev>: …").
    Fail(String),
}

/// Decides after the first mount attempt. `head_is_zero` is only asked for when it matters
/// (`None` = the device's head could not be read).
pub fn after_first_mount(
    outcome: MountOutcome,
    fstype: &str,
    head_is_zero: impl FnOnce() -> Option<bool>,
) -> Step {
    match outcome {
        MountOutcome::Mounted => Step::Ready,
        // EINVAL is what mount(2) says when the device holds no valid `fstype` superblock.
        MountOutcome::Failed(nix::libc::EINVAL) => match head_is_zero() {
            Some(true) => Step::CreateFilesystem,
            Some(false) => Step::Fail(format!(
                "not {fstype} and not blank; refusing to format a disk that holds data"
            )),
            None => Step::Fail("cannot read its first bytes to check it is blank".into()),
        },
        MountOutcome::Failed(errno) => Step::Fail(format!(
            "mount as {fstype}: {}",
            nix::errno::Errno::from_raw(errno).desc()
        )),
    }
}

/// Decides after the mount that follows mkfs.
pub fn after_mkfs_mount(outcome: MountOutcome, fstype: &str) -> Step {
    match outcome {
        MountOutcome::Mounted => Step::Ready,
        MountOutcome::Failed(errno) => Step::Fail(format!(
            "mount as {fstype} after creating the filesystem: {}",
            nix::errno::Errno::from_raw(errno).desc()
        )),
    }
}

/// True when every byte is zero (an empty read counts as not blank: a zero-size device
/// cannot hold a filesystem either, and mkfs would fail on it with a worse message).
pub fn is_blank(head: &[u8]) -> bool {
    !head.is_empty() && head.iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::libc::{EBUSY, EINVAL, ENODEV, ENOENT};

    #[test]
    fn mounted_is_ready_without_reading_the_disk() {
        let step = after_first_mount(MountOutcome::Mounted, "ext4", || {
            panic!("must not probe a mounted disk")
        });
        assert_eq!(step, Step::Ready);
    }

    #[test]
    fn blank_disk_gets_a_filesystem() {
        assert_eq!(
            after_first_mount(MountOutcome::Failed(EINVAL), "ext4", || Some(true)),
            Step::CreateFilesystem
        );
    }

    #[test]
    fn a_disk_with_data_is_never_formatted() {
        let Step::Fail(why) =
            after_first_mount(MountOutcome::Failed(EINVAL), "ext4", || Some(false))
        else {
            panic!("must fail")
        };
        assert!(why.contains("refusing to format"), "{why}");
        assert!(matches!(
            after_first_mount(MountOutcome::Failed(EINVAL), "ext4", || None),
            Step::Fail(_)
        ));
    }

    #[test]
    fn other_mount_errors_stop_without_probing() {
        for errno in [ENOENT, ENODEV, EBUSY] {
            let step = after_first_mount(MountOutcome::Failed(errno), "ext4", || {
                panic!("must not probe on errno {errno}")
            });
            let Step::Fail(why) = step else {
                panic!("must fail")
            };
            assert!(why.starts_with("mount as ext4: "), "{why}");
        }
    }

    #[test]
    fn second_mount_failure_is_final() {
        assert_eq!(after_mkfs_mount(MountOutcome::Mounted, "ext4"), Step::Ready);
        assert!(matches!(
            after_mkfs_mount(MountOutcome::Failed(EINVAL), "ext4"),
            Step::Fail(_)
        ));
    }

    #[test]
    fn blank_means_all_zero_and_not_empty() {
        assert!(is_blank(&[0; 4096]));
        let mut head = vec![0u8; 4096];
        head[1080] = 0x53; // ext4's magic lives at 1024 + 56
        assert!(!is_blank(&head));
        assert!(!is_blank(&[]));
    }

    #[test]
    fn partitions_are_found_by_their_gpt_name() {
        let uevent = "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nDISKSEQ=1\nPARTN=2\nPARTNAME=musqratt-data\n";
        assert_eq!(
            partition_named(uevent, "musqratt-data"),
            Some("vda2".into())
        );
        assert_eq!(partition_named(uevent, "musqratt"), None);
        assert_eq!(
            partition_named("DEVNAME=vda\nDEVTYPE=disk\n", "musqratt-data"),
            None
        );
    }
}
