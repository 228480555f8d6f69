//! The `/metrics` endpoint: a small HTTP/1.1 server on the daemon's tokio
//! runtime. Each scrape is handed to the daemon's main loop as a
//! [`Scrape`] (the loop gathers the [`super::Snapshot`] the way `ctl stats`
//! does) and answered with its text. Requests are hostile input: the head
//! is read within [`HEAD_LIMIT`] bytes and [`IO_TIMEOUT`], at most
//! [`MAX_CONNECTIONS`] are served at once, and anything but `GET /metrics`
//! (or `/`) gets a 404/405.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Longest request head read.
pub const HEAD_LIMIT: usize = 8192;
/// Time to read a request and to write the answer.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once (more wait in the listen backlog).
pub const MAX_CONNECTIONS: usize = 16;

/// A scrape waiting for its text.
pub struct Scrape(oneshot::Sender<String>);

impl Scrape {
    pub fn reply(self, text: String) {
        let _ = self.0.send(text);
    }
}

/// The listening endpoint; scrapes arrive through [`MetricsServer::next`].
pub struct MetricsServer {
    rx: mpsc::Receiver<Scrape>,
    local: SocketAddr,
}

impl MetricsServer {
    /// Listens on `addr` (must run inside a tokio runtime).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<MetricsServer> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(MAX_CONNECTIONS);
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, _) = match listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(IO_TIMEOUT, serve(stream, tx)).await;
                    drop(permit);
                });
            }
        });
        Ok(MetricsServer { rx, local })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The next scrape to answer.
    pub async fn next(&mut self) -> Option<Scrape> {
        self.rx.recv().await
    }
}

/// The request line's method and path, once the head is complete.
fn request_line(head: &[u8]) -> Option<(&str, &str)> {
    let end =
        memchr::memmem::find(head, b"\r\n\r\n").or_else(|| memchr::memmem::find(head, b"\n\n"))?;
    let head = std::str::from_utf8(head.get(..end)?).ok()?;
    let mut parts = head.lines().next()?.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    Some((method, target.split('?').next().unwrap_or(target)))
}

async fn serve(mut stream: TcpStream, tx: mpsc::Sender<Scrape>) {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let (method, path) = loop {
        if let Some((m, p)) = request_line(&head) {
            break (m.to_string(), p.to_string());
        }
        if head.len() >= HEAD_LIMIT {
            let _ = respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
            return;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(buf.get(..n).unwrap_or_default()),
        }
    };
    if method != "GET" && method != "HEAD" {
        let _ = respond(&mut stream, "405 Method Not Allowed", "text/plain", "").await;
        return;
    }
    if path != "/metrics" && path != "/" {
        let _ = respond(&mut stream, "404 Not Found", "text/plain", "try /metrics\n").await;
        return;
    }
    let (reply, text) = oneshot::channel();
    if tx.send(Scrape(reply)).await.is_err() {
        let _ = respond(&mut stream, "503 Service Unavailable", "text/plain", "").await;
        return;
    }
    match text.await {
        Ok(body) => {
            let body = if method == "HEAD" {
                String::new()
            } else {
                body
            };
            let _ = respond(&mut stream, "200 OK", super::CONTENT_TYPE, &body).await;
        }
        Err(_) => {
            let _ = respond(&mut stream, "503 Service Unavailable", "text/plain", "").await;
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            request_line(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(request_line(b"GET /metrics HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(request_line(b"\xff\xfe\r\n\r\n"), None);
        assert_eq!(request_line(b"\r\n\r\n"), None);
    }

    #[test]
    fn serves_scrapes_and_refuses_the_rest() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut server = MetricsServer::bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            let addr = server.local_addr();
            tokio::spawn(async move {
                while let Some(s) = server.next().await {
                    s.reply("smtp_monitor_x_total 1\n".into());
                }
            });
            let get = |req: &'static [u8]| async move {
                let mut c = TcpStream::connect(addr).await.unwrap();
                c.write_all(req).await.unwrap();
                let mut out = String::new();
                c.read_to_string(&mut out).await.unwrap();
                out
            };
            let ok = get(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
            assert!(
                ok.starts_with("HTTP/1.1 200 OK\r\n") && ok.ends_with("smtp_monitor_x_total 1\n"),
                "{ok}"
            );
            assert!(get(b"GET /nope HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 404"));
            assert!(get(b"POST /metrics HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 405"));
            let big: &'static [u8] = Box::leak(vec![b'a'; HEAD_LIMIT + 10].into_boxed_slice());
            assert!(get(big).await.starts_with("HTTP/1.1 431"));
        });
    }
}
