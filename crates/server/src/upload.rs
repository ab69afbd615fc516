//! File outputs with `--upload-url`: each file is `PUT` to the upload URL under a name unique within
//! its prediction, in output order, retried on transient failures; the output is the URL the server
//! answers with (`Location` without its query string), else the URL it was put to.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use reqwest::Url;

use crate::outbound::{error_chain, is_transient, Backoff, HttpClient};

/// Timeout of one upload request.
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// Retries of one upload: 0.2, 0.4, 0.8, 1.6 s (5 attempts).
pub const UPLOAD_BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(100),
    max_exponent: 10,
    retries: 4,
};

/// Why a file output could not be uploaded. The prediction fails with this message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UploadError {
    #[error("upload of output file to {url} failed: HTTP {status}")]
    Refused { url: String, status: u16 },
    #[error("upload of output file to {url} failed after {attempts} attempts: {last}")]
    GaveUp {
        url: String,
        attempts: u32,
        last: String,
    },
    #[error("upload of output file to {url} failed: {reason}")]
    Client { url: String, reason: String },
}

/// Parses `--upload-url`: an absolute http or https URL.
pub fn parse_upload_url(value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|e| format!("{value:?} is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{value:?} is not an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{value:?} has no host"));
    }
    Ok(url)
}

/// The names a prediction's uploads used, so a second `out.png` becomes `out-1.png`.
#[derive(Debug, Default)]
pub struct UniqueNames(HashSet<String>);

impl UniqueNames {
    /// A name for `path` not used before in this prediction, keeping its file name when possible.
    pub fn claim(&mut self, path: &Path) -> String {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "output".into());
        let (stem, ext) = match name.rfind('.') {
            Some(i) if i > 0 => (name[..i].to_string(), name[i..].to_string()),
            _ => (name.clone(), String::new()),
        };
        let mut candidate = name;
        let mut n = 1;
        while self.0.contains(&candidate) {
            candidate = format!("{stem}-{n}{ext}");
            n += 1;
        }
        self.0.insert(candidate.clone());
        candidate
    }
}

/// The URL a file named `name` is put to: the upload URL with `name` as its last path segment.
pub fn target_url(base: &Url, name: &str) -> Url {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().push(name);
    }
    url
}

/// The output URL from an upload response: `Location` (resolved against the request URL), else the
/// URL the file ended up at, without query string or fragment.
pub fn result_url(put_url: &Url, final_url: &Url, location: Option<&str>) -> Url {
    let mut url = location
        .and_then(|loc| put_url.join(loc).ok())
        .unwrap_or_else(|| final_url.clone());
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// Uploads file outputs to `--upload-url`.
#[derive(Debug, Clone)]
pub struct Uploader {
    pub client: HttpClient,
    pub base: Url,
    pub backoff: Backoff,
}

impl Uploader {
    pub fn new(client: HttpClient, base: Url) -> Self {
        Self {
            client,
            base,
            backoff: UPLOAD_BACKOFF,
        }
    }

    /// Uploads `bytes`, the contents of output file `path` of prediction `prediction_id` (read by
    /// [`crate::output_file`]), and returns its URL.
    pub async fn upload(
        &self,
        prediction_id: &str,
        path: &Path,
        bytes: Vec<u8>,
        mime_type: Option<&str>,
        names: &mut UniqueNames,
    ) -> Result<String, UploadError> {
        let bytes = bytes::Bytes::from(bytes);
        let url = target_url(&self.base, &names.claim(path));
        let client = self.client.get().map_err(|e| UploadError::Client {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let mime = mime_type.unwrap_or("application/octet-stream");
        let mut retry = 0;
        loop {
            let outcome = client
                .put(url.clone())
                .timeout(UPLOAD_TIMEOUT)
                .header("content-type", mime)
                .body(bytes.clone())
                .send()
                .await;
            let last = match outcome {
                Ok(response) if response.status().is_success() => {
                    let location = response
                        .headers()
                        .get("location")
                        .and_then(|v| v.to_str().ok());
                    return Ok(result_url(&url, response.url(), location).to_string());
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    if !is_transient(status) {
                        return Err(UploadError::Refused {
                            url: url.to_string(),
                            status,
                        });
                    }
                    format!("HTTP {status}")
                }
                Err(e) => error_chain(&e),
            };
            if retry >= self.backoff.retries {
                return Err(UploadError::GaveUp {
                    url: url.to_string(),
                    attempts: retry + 1,
                    last,
                });
            }
            retry += 1;
            let delay = self.backoff.delay(retry);
            tracing::warn!(prediction_id, %url, error = %last, retry_in = ?delay, "output upload failed; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_names_get_a_suffix_and_keep_their_extension() {
        let mut names = UniqueNames::default();
        assert_eq!(names.claim(Path::new("/a/out.png")), "out.png");
        assert_eq!(names.claim(Path::new("/b/out.png")), "out-1.png");
        assert_eq!(names.claim(Path::new("/c/out.png")), "out-2.png");
        assert_eq!(names.claim(Path::new("/d/out-1.png")), "out-1-1.png");
        assert_eq!(names.claim(Path::new("/e/README")), "README");
        assert_eq!(names.claim(Path::new("/f/README")), "README-1");
        assert_eq!(names.claim(Path::new("/g/.hidden")), ".hidden");
        assert_eq!(names.claim(Path::new("/h/.hidden")), ".hidden-1");
        assert_eq!(names.claim(Path::new("/")), "output");
    }

    #[test]
    fn the_target_is_the_upload_url_plus_the_name() {
        let with_slash = Url::parse("http://h:1/upload/").expect("url");
        let without = Url::parse("http://h:1/upload").expect("url");
        assert_eq!(
            target_url(&with_slash, "out.png").as_str(),
            "http://h:1/upload/out.png"
        );
        assert_eq!(
            target_url(&without, "out.png").as_str(),
            "http://h:1/upload/out.png"
        );
        assert_eq!(
            target_url(&with_slash, "a b?.txt").as_str(),
            "http://h:1/upload/a%20b%3F.txt"
        );
    }

    #[test]
    fn the_result_is_the_location_without_its_query() {
        let put = Url::parse("http://h/upload/out.png").expect("url");
        assert_eq!(
            result_url(&put, &put, Some("http://cdn/stored/out.png?sig=abc")).as_str(),
            "http://cdn/stored/out.png"
        );
        assert_eq!(
            result_url(&put, &put, Some("/stored/out.png?x=1#f")).as_str(),
            "http://h/stored/out.png"
        );
        let moved = Url::parse("http://h/final/out.png?token=1").expect("url");
        assert_eq!(
            result_url(&put, &moved, None).as_str(),
            "http://h/final/out.png"
        );
    }

    #[test]
    fn upload_urls_are_checked() {
        assert!(parse_upload_url("http://localhost:5000/upload/").is_ok());
        for bad in ["nope", "ftp://h/x", "/relative"] {
            let e = parse_upload_url(bad).expect_err(bad);
            assert!(e.contains(bad), "{e}");
        }
    }
}
