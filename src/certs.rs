//! Self-signed development certificates (`authgate certs generate`, and the first start
//! with `tls.self_signed_if_missing = true`). Made with rcgen; the key file is written
//! with mode 0600.

use std::io::Write;
use std::path::Path;

/// Names a development certificate is valid for by default.
pub const DEV_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why a certificate could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0:?} already exists (use --force to overwrite)")]
    Exists(std::path::PathBuf),
    #[error("cannot write {path:?}: {source}")]
    Write {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot generate the certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Generates a self-signed certificate for `names` into `cert` and `key` (PEM).
/// Refuses to overwrite either file unless `force`.
pub fn generate(cert: &Path, key: &Path, names: &[String], force: bool) -> Result<(), CertError> {
    if !force {
        for p in [cert, key] {
            if p.exists() {
                return Err(CertError::Exists(p.to_owned()));
            }
        }
    }
    let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
    write(key, certified.signing_key.serialize_pem().as_bytes(), true)?;
    write(cert, certified.cert.pem().as_bytes(), false)?;
    Ok(())
}

fn write(path: &Path, data: &[u8], private: bool) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(data).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_overwrites_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("sub/k.pem"));
        let names = vec!["localhost".to_string()];
        generate(&c, &k, &names, false).unwrap();
        let first = std::fs::read(&c).unwrap();
        assert!(matches!(
            generate(&c, &k, &names, false),
            Err(CertError::Exists(_))
        ));
        assert_eq!(std::fs::read(&c).unwrap(), first);
        generate(&c, &k, &names, true).unwrap();
        assert_ne!(std::fs::read(&c).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&k).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
