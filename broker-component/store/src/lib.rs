//! Durable broker state. Durability is its own issue; this crate reserves the seam.
