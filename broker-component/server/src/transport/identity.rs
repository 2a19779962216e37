//! The client certificate's subject CN, for `use_identity_as_username`.
//!
//! A small DER walk over the already-verified certificate (rustls's verifier checked its
//! signature and chain): Certificate → tbsCertificate → skip version, serial, signature,
//! issuer, validity → subject, the first `2.5.4.3` (commonName) attribute, as Mosquitto takes
//! it. Every length is checked against what is left (`split`); nothing indexes.

/// commonName, 2.5.4.3.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const VERSION: u8 = 0xa0;

/// The subject's first CN, if the certificate has one that is a valid MQTT string (UTF-8,
/// no U+0000, at most 65,535 bytes).
pub fn common_name(der: &[u8]) -> Option<String> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = tlv(rest)?.2;
    }
    for _field in ["serialNumber", "signature", "issuer", "validity"] {
        rest = tlv(rest)?.2;
    }
    let (mut rdns, _) = expect(rest, SEQUENCE)?;
    while !rdns.is_empty() {
        let (set, next) = expect(rdns, SET)?;
        rdns = next;
        let mut atvs = set;
        while !atvs.is_empty() {
            let (atv, next) = expect(atvs, SEQUENCE)?;
            atvs = next;
            let (oid, value) = expect(atv, OID)?;
            if oid == OID_CN {
                let (tag, contents, _) = tlv(value)?;
                return string(tag, contents)
                    .filter(|s| !s.contains('\0') && s.len() <= usize::from(u16::MAX));
            }
        }
    }
    None
}

/// A DirectoryString's text.
fn string(tag: u8, contents: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, TeletexString (taken as UTF-8, as OpenSSL
        // prints it for ASCII).
        0x0c | 0x13 | 0x16 | 0x14 => String::from_utf8(contents.to_vec()).ok(),
        // BMPString: UTF-16 big-endian.
        0x1e => {
            let chunks = contents.chunks_exact(2);
            if !chunks.remainder().is_empty() {
                return None;
            }
            let units: Vec<u16> = chunks
                .map(|c| c.iter().fold(0u16, |a, &b| (a << 8) | u16::from(b)))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// One element with tag `tag`: its contents and what follows it.
fn expect(data: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, contents, rest) = tlv(data)?;
    (t == tag).then_some((contents, rest))
}

/// One DER element: tag, contents, what follows.
fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, rest) = split(rest, n)?;
        let len = bytes.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, rest)
    };
    let (contents, rest) = split(rest, len)?;
    Some((tag, contents, rest))
}

/// `data` cut at `n`, if it is that long.
fn split(data: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (n <= data.len()).then(|| data.split_at(n))
}

#[cfg(test)]
mod tests {
    use super::common_name;

    fn cert(names: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (t, v) in names {
            params.distinguished_name.push(t.clone(), *v);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn takes_the_subject_cn() {
        let der = cert(&[
            (rcgen::DnType::OrganizationName, "Acme"),
            (rcgen::DnType::CommonName, "sensor-17"),
        ]);
        assert_eq!(common_name(&der).as_deref(), Some("sensor-17"));
        let der = cert(&[(rcgen::DnType::CommonName, "zürich ü")]);
        assert_eq!(common_name(&der).as_deref(), Some("zürich ü"));
    }

    #[test]
    fn no_cn_or_bad_der_is_none() {
        let der = cert(&[(rcgen::DnType::OrganizationName, "Acme")]);
        assert_eq!(common_name(&der), None);
        let der = cert(&[(rcgen::DnType::CommonName, "a")]);
        // Every truncation is refused without a panic.
        for n in 0..der.len() {
            assert_eq!(common_name(&der[..n]), None, "truncated at {n}");
        }
        assert_eq!(common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
