//! A minimal SMTP server on loopback that records what it is sent and can refuse recipients,
//! to test the SMTP transport against a real SMTP conversation.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Clone, Default)]
pub struct SmtpSink {
    pub addr: Option<SocketAddr>,
    received: Arc<Mutex<Vec<String>>>,
    /// Answers to give to the next RCPT commands (e.g. "550 5.1.1 no such user"), then 250.
    rcpt_replies: Arc<Mutex<VecDeque<String>>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("sink binds");
        let sink = Self {
            addr: Some(listener.local_addr().expect("address")),
            ..Self::default()
        };
        let shared = sink.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let sink = shared.clone();
                tokio::spawn(async move { sink.converse(stream).await });
            }
        });
        sink
    }

    pub fn port(&self) -> u16 {
        self.addr.map_or(0, |a| a.port())
    }

    /// The next RCPT gets `reply` instead of 250.
    pub fn refuse_next_recipient(&self, reply: &str) {
        self.rcpt_replies
            .lock()
            .expect("replies")
            .push_back(reply.to_string());
    }

    pub fn received(&self) -> Vec<String> {
        self.received.lock().expect("received").clone()
    }

    async fn converse(&self, stream: tokio::net::TcpStream) {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        if write.write_all(b"220 sink ESMTP\r\n").await.is_err() {
            return;
        }
        while let Ok(Some(line)) = lines.next_line().await {
            let verb = line
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            let answer = match verb.as_str() {
                "EHLO" | "HELO" => "250-sink\r\n250 8BITMIME".to_string(),
                "RCPT" => self
                    .rcpt_replies
                    .lock()
                    .expect("replies")
                    .pop_front()
                    .unwrap_or_else(|| "250 OK".into()),
                "DATA" => {
                    if write.write_all(b"354 end with .\r\n").await.is_err() {
                        return;
                    }
                    let mut data = String::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        if line == "." {
                            break;
                        }
                        data.push_str(&line);
                        data.push('\n');
                    }
                    self.received.lock().expect("received").push(data);
                    "250 queued".to_string()
                }
                "QUIT" => {
                    let _ = write.write_all(b"221 bye\r\n").await;
                    return;
                }
                _ => "250 OK".to_string(),
            };
            if write
                .write_all(format!("{answer}\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    }
}
