//! The ACPI power button (QEMU's `system_powerdown`) as a stop request. Pure: tested on the
//! host; `sys.rs` opens the event devices.
//!
//! Why this exists: the kernel does not signal init for the ACPI power button. Its `button`
//! driver only reports KEY_POWER on an input device; on a full system acpid or logind reads it
//! and starts a shutdown. Here init reads /dev/input/event* itself (needs the `button` and
//! `evdev` drivers, built in or listed in /etc/modules-load) and treats the key press like
//! SIGTERM. Without those drivers there is no event device and only signals stop the broker.

/// Size of `struct input_event` on 64-bit Linux: a timeval (16), type (u16), code (u16),
/// value (i32).
pub const EVENT_SIZE: usize = 24;

const EV_KEY: u16 = 0x01;
const KEY_POWER: u16 = 116;

/// True if these events (whole records, as read(2) returns them) include a power-key press.
pub fn power_key_pressed(buf: &[u8]) -> bool {
    buf.chunks_exact(EVENT_SIZE).any(|ev| {
        let kind = u16::from_ne_bytes([ev[16], ev[17]]);
        let code = u16::from_ne_bytes([ev[18], ev[19]]);
        let value = i32::from_ne_bytes([ev[20], ev[21], ev[22], ev[23]]);
        kind == EV_KEY && code == KEY_POWER && value == 1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u16, code: u16, value: i32) -> Vec<u8> {
        let mut e = vec![0u8; 16];
        e.extend_from_slice(&kind.to_ne_bytes());
        e.extend_from_slice(&code.to_ne_bytes());
        e.extend_from_slice(&value.to_ne_bytes());
        e
    }

    #[test]
    fn press_is_seen_release_and_other_keys_are_not() {
        let press = event(EV_KEY, KEY_POWER, 1);
        let release = event(EV_KEY, KEY_POWER, 0);
        let sync = event(0, 0, 0);
        let other = event(EV_KEY, 30, 1);
        assert!(power_key_pressed(&press));
        assert!(!power_key_pressed(&release));
        assert!(!power_key_pressed(&[other.clone(), sync.clone()].concat()));
        assert!(power_key_pressed(&[sync, other, press].concat()));
        assert!(!power_key_pressed(&[0u8; 10]));
    }
}
