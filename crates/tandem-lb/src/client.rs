//! A minimal HTTP/1.1 client for the controller's admin listener (plain HTTP on a local or
//! management address), used by `tandem lb status` and `tandem lb resume`.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Time the admin listener gets to answer: it answers from memory, so a slow answer means the
/// controller is stuck or unreachable.
pub const ADMIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Bytes of an admin answer read at most (a status of 16 backends is a few KiB).
const ADMIN_ANSWER_BYTES_MAX: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the traffic controller's admin listener at {addr}: {message}")]
    Unreachable { addr: SocketAddr, message: String },
    #[error("the admin listener at {addr} answered something that is not HTTP")]
    NotHttp { addr: SocketAddr },
}

/// Sends `METHOD path` and returns the status code and the body.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> Result<(u16, String), ClientError> {
    let unreachable = |message: String| ClientError::Unreachable { addr, message };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        let mut answer = Vec::new();
        stream
            .take(ADMIN_ANSWER_BYTES_MAX)
            .read_to_end(&mut answer)
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        Ok(answer)
    };
    let answer = tokio::time::timeout(ADMIN_REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            unreachable(format!(
                "no answer within {} s",
                ADMIN_REQUEST_TIMEOUT.as_secs()
            ))
        })??;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or(ClientError::NotHttp { addr })?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or(ClientError::NotHttp { addr })?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok((code, body))
}

/// Joins a chunked body (axum chunks bodies of unknown length).
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || after.len() < size {
            break;
        }
        out.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            super::dechunk("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"),
            "Wikipedia"
        );
    }
}
