//! Real path validation of an issued chain with rustls-webpki, as a TLS client would do it.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// Parses every `CERTIFICATE` block of a PEM file into DER, in order.
pub fn pem_certs(pem_text: &[u8]) -> Result<Vec<Vec<u8>>> {
    let blocks = pem::parse_many(pem_text).context("parsing PEM")?;
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect();
    if certs.is_empty() {
        bail!("no CERTIFICATE block in PEM");
    }
    Ok(certs)
}

/// Verifies `fullchain_pem` (leaf first, then intermediates) against each of `roots` (DER) at
/// time `at`, for server authentication and for every name in `dns_names`.
///
/// Returns the index in `roots` of the root that anchored the chain, or an error listing why each
/// root failed.
pub fn verify_chain(
    fullchain_pem: &[u8],
    roots: &[Vec<u8>],
    dns_names: &[&str],
    at: SystemTime,
) -> Result<usize> {
    let certs = pem_certs(fullchain_pem)?;
    let leaf = CertificateDer::from(certs[0].clone());
    let intermediates: Vec<CertificateDer<'_>> = certs[1..]
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let ee = webpki::EndEntityCert::try_from(&leaf).map_err(|e| anyhow!("leaf certificate: {e:?}"))?;
    let since_epoch = at.duration_since(UNIX_EPOCH).context("time before 1970")?;
    let time = UnixTime::since_unix_epoch(since_epoch);

    for name in dns_names {
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|e| anyhow!("{name:?} is not a valid name: {e}"))?;
        ee.verify_is_valid_for_subject_name(&server_name)
            .map_err(|e| anyhow!("leaf is not valid for {name:?}: {e:?}"))?;
    }

    let mut failures = Vec::new();
    for (index, root) in roots.iter().enumerate() {
        let root_der = CertificateDer::from(root.as_slice());
        let anchor = match webpki::anchor_from_trusted_cert(&root_der) {
            Ok(a) => a,
            Err(e) => {
                failures.push(format!("root {index}: not a usable trust anchor: {e:?}"));
                continue;
            }
        };
        match ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &[anchor],
            &intermediates,
            time,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        ) {
            Ok(_) => return Ok(index),
            Err(e) => failures.push(format!("root {index}: {e:?}")),
        }
    }
    if roots.is_empty() {
        bail!("no roots to verify against");
    }
    bail!(
        "chain of {} certificate(s) does not verify against any of {} root(s): {}",
        certs.len(),
        roots.len(),
        failures.join("; ")
    )
}
