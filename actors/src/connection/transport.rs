//! The byte stream to one broker. Today a plain TCP stream; TLS and the SASL handshake
//! (KIP-43, KIP-152) extend this type, its `connect` and its halves, not the connection's
//! in-flight queue or coalescer, which never see the stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A connected stream to a broker.
#[derive(Debug)]
pub(crate) enum Transport {
    /// Plaintext TCP (`security.protocol=PLAINTEXT`).
    Plain(TcpStream),
}

impl Transport {
    /// Connects to `address` (`host:port`) within `timeout` (Java's
    /// `socket.connection.setup.timeout.ms`).
    pub(crate) async fn connect(address: &str, timeout: Duration) -> io::Result<Transport> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        // Requests are written whole; Nagle would only hold the last segment back.
        let _ = stream.set_nodelay(true);
        Ok(Transport::Plain(stream))
    }

    /// Splits the stream for a reader task and a writer task.
    pub(crate) fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Transport::Plain(stream) => {
                let (read, write) = stream.into_split();
                (ReadHalf::Plain(read), WriteHalf::Plain(write))
            }
        }
    }
}

/// The reading half of a [`Transport`].
#[derive(Debug)]
pub(crate) enum ReadHalf {
    /// Plaintext TCP.
    Plain(OwnedReadHalf),
}

/// The writing half of a [`Transport`].
#[derive(Debug)]
pub(crate) enum WriteHalf {
    /// Plaintext TCP.
    Plain(OwnedWriteHalf),
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Plain(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    #[tokio::test]
    async fn plain_halves_carry_bytes_both_ways() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (transport, accepted) = tokio::join!(
            Transport::connect(&address, Duration::from_secs(5)),
            listener.accept()
        );
        let (mut broker, _) = accepted.unwrap();
        let (mut read, mut write) = transport.unwrap().into_split();
        write.write_all(b"request").await.unwrap();
        let mut got = [0u8; 7];
        broker.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"request");
        broker.write_all(b"response").await.unwrap();
        let mut got = [0u8; 8];
        read.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"response");
        // Our FIN reaches the broker as the end of its stream.
        write.shutdown().await.unwrap();
        assert_eq!(broker.read(&mut got).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_refused_connect_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        assert!(Transport::connect(&address, Duration::from_secs(5))
            .await
            .is_err());
    }
}
