//! Primitive encodings of §1.5: integers, variable byte integers, UTF-8 strings, binary data.
