//! The byte stream to one broker: plain TCP, or TLS over it (`security.protocol` SSL and
//! SASL_SSL, through [`Tls`]). The SASL exchange (KIP-43, KIP-152) is ordinary requests on
//! this stream, driven by the connection actor; the in-flight queue and the coalescer never
//! see the stream.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use crate::tls::Tls;

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// TCP failed or timed out: worth retrying.
    #[error("connect failed: {0}")]
    Io(io::Error),
    /// The TLS handshake failed on a certificate or an alert: retrying will not help
    /// (Java's `SslAuthenticationException`).
    #[error("TLS handshake failed: {0}")]
    Tls(String),
}

/// The TLS reason inside an I/O error of a TLS stream (a certificate refused by either side,
/// an alert), if that is what it is.
pub(crate) fn tls_failure(e: &io::Error) -> Option<String> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map(|tls| tls.to_string())
}

/// The host of `host:port` (brackets of an IPv6 literal removed): the name a broker's
/// certificate must carry.
pub(crate) fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// How a connection's socket is made: the buffer sizes (`send.buffer.bytes`,
/// `receive.buffer.bytes`; `None` leaves the operating system's, which Linux then tunes to
/// the link, and which a size set here turns off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SocketOptions {
    pub(crate) send_buffer: Option<u32>,
    pub(crate) receive_buffer: Option<u32>,
}

fn timed_out() -> ConnectError {
    ConnectError::Io(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
}

/// Connects to one of `addrs` before `deadline`, trying them in turn from `attempt` (modulo
/// their number), as Java's `use_all_dns_ips`: an address that refuses passes to the next at
/// once; one that does not answer takes the rest of the attempt, and the next attempt starts
/// after it, so an unreachable address cannot hold every attempt.
async fn connect_any(
    addrs: &[SocketAddr],
    attempt: usize,
    deadline: Instant,
    options: SocketOptions,
) -> Result<TcpStream, ConnectError> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the name has no address");
    for i in 0..addrs.len() {
        let addr = addrs[(attempt + i) % addrs.len()];
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(ConnectError::Io)?;
        // Before connecting: the receive buffer sets the window scale offered in the SYN.
        if let Some(n) = options.send_buffer {
            socket.set_send_buffer_size(n).map_err(ConnectError::Io)?;
        }
        if let Some(n) = options.receive_buffer {
            socket.set_recv_buffer_size(n).map_err(ConnectError::Io)?;
        }
        match tokio::time::timeout_at(deadline, socket.connect(addr)).await {
            Err(_) => return Err(timed_out()),
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = e,
        }
    }
    Err(ConnectError::Io(last))
}

/// A connected stream to a broker.
#[derive(Debug)]
pub(crate) enum Transport {
    /// Plaintext TCP (`security.protocol` PLAINTEXT and SASL_PLAINTEXT).
    Plain(TcpStream),
    /// TLS over TCP (SSL and SASL_SSL).
    Tls(Box<TlsStream<TcpStream>>),
}

impl Transport {
    /// Connects to `address` (`host:port`) within `timeout` (this attempt's share of Java's
    /// `socket.connection.setup.timeout.ms`): name resolution, TCP and the TLS handshake
    /// together. The name's addresses are tried from the `attempt`-th on (see
    /// `connect_any`). With `tls`, the broker's certificate must name the host of `address`.
    pub(crate) async fn connect(
        address: &str,
        timeout: Duration,
        tls: Option<Tls>,
        options: SocketOptions,
        attempt: usize,
    ) -> Result<Transport, ConnectError> {
        let deadline = Instant::now() + timeout;
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout_at(deadline, tokio::net::lookup_host(address))
                .await
                .map_err(|_| timed_out())?
                .map_err(ConnectError::Io)?
                .collect();
        let stream = connect_any(&addrs, attempt, deadline, options).await?;
        // Requests are written whole; Nagle would only hold the last segment back.
        let _ = stream.set_nodelay(true);
        let Some(tls) = tls else {
            return Ok(Transport::Plain(stream));
        };
        match tokio::time::timeout_at(deadline, tls.connect(host_of(address), stream)).await {
            Err(_) => Err(timed_out()),
            Ok(Ok(stream)) => Ok(Transport::Tls(Box::new(stream))),
            Ok(Err(e)) => Err(match tls_failure(&e) {
                Some(reason) => ConnectError::Tls(reason),
                None if e.kind() == io::ErrorKind::InvalidInput => ConnectError::Tls(e.to_string()),
                None => ConnectError::Io(e),
            }),
        }
    }

    /// Splits the stream for a reader task and a writer task.
    pub(crate) fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Transport::Plain(stream) => {
                let (read, write) = stream.into_split();
                (ReadHalf::Plain(read), WriteHalf::Plain(write))
            }
            Transport::Tls(stream) => {
                let (read, write) = tokio::io::split(*stream);
                (ReadHalf::Tls(read), WriteHalf::Tls(write))
            }
        }
    }
}

/// The reading half of a [`Transport`].
#[derive(Debug)]
pub(crate) enum ReadHalf {
    /// Plaintext TCP.
    Plain(OwnedReadHalf),
    /// TLS.
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

/// The writing half of a [`Transport`].
#[derive(Debug)]
pub(crate) enum WriteHalf {
    /// Plaintext TCP.
    Plain(OwnedWriteHalf),
    /// TLS.
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Plain(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Tls(r) => Pin::new(r).poll_read(cx, buf),
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
            WriteHalf::Tls(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    /// Passed on, with [`is_write_vectored`](Self::is_write_vectored): without them
    /// `write_all_buf` writes a frame piece by piece (2N+2 pieces for a Produce request of
    /// N batches), a system call each, its 4-byte size often a TCP segment of its own, and
    /// under TLS a record of its own each.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            WriteHalf::Tls(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteHalf::Plain(w) => w.is_write_vectored(),
            WriteHalf::Tls(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Tls(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Plain(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Tls(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A plain transport connected to a listener on loopback, and the broker's end.
    async fn plain_pair() -> (Transport, tokio::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (transport, accepted) = tokio::join!(
            Transport::connect(
                &address,
                Duration::from_secs(5),
                None,
                SocketOptions::default(),
                0
            ),
            listener.accept()
        );
        (transport.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn plain_halves_carry_bytes_both_ways() {
        let (transport, mut broker) = plain_pair().await;
        let (mut read, mut write) = transport.into_split();
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

    /// A frame's pieces go to the socket together: the writing half takes vectored writes,
    /// so `write_all_buf` hands it every piece at once.
    #[tokio::test]
    async fn a_frame_goes_out_in_vectored_writes() {
        use bytes::Bytes;

        use crate::connection::frame::Frame;

        let (transport, mut broker) = plain_pair().await;
        let (_read, mut write) = transport.into_split();
        assert!(write.is_write_vectored());
        let pieces = ["size", "header", "batch one", "", "batch two", "tail"];
        let mut frame = Frame::new(pieces.iter().map(|p| Bytes::from_static(p.as_bytes())));
        write.write_all_buf(&mut frame).await.unwrap();
        let mut got = vec![0u8; pieces.concat().len()];
        broker.read_exact(&mut got).await.unwrap();
        assert_eq!(got, pieces.concat().as_bytes());
    }

    #[tokio::test]
    async fn a_refused_connect_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        assert!(Transport::connect(
            &address,
            Duration::from_secs(5),
            None,
            SocketOptions::default(),
            0
        )
        .await
        .is_err());
    }

    /// `send.buffer.bytes` and `receive.buffer.bytes` reach the socket (Linux reports twice
    /// the size set, for its bookkeeping); unset, the system's sizes stay.
    #[tokio::test]
    async fn buffer_sizes_are_set_on_the_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let sizes = |t: &Transport| {
            let Transport::Plain(stream) = t else {
                unreachable!("plain TCP")
            };
            let socket = socket2::SockRef::from(stream);
            (
                socket.send_buffer_size().unwrap(),
                socket.recv_buffer_size().unwrap(),
            )
        };
        let set = SocketOptions {
            send_buffer: Some(50_000),
            receive_buffer: Some(4_096),
        };
        let connect =
            |options| Transport::connect(&address, Duration::from_secs(5), None, options, 0);
        let (t, _accepted) = tokio::join!(connect(set), listener.accept());
        let (send, receive) = sizes(&t.unwrap());
        assert!((50_000..=100_000).contains(&send), "SO_SNDBUF {send}");
        assert!((4_096..=8_192).contains(&receive), "SO_RCVBUF {receive}");
        let (t, _accepted) = tokio::join!(connect(SocketOptions::default()), listener.accept());
        let (send_default, receive_default) = sizes(&t.unwrap());
        assert!(
            send_default != send && receive_default != receive,
            "the system's: {send_default}, {receive_default}"
        );
    }

    /// Each attempt starts at the next of a name's addresses, and an address that refuses
    /// passes to the next one within the attempt.
    #[tokio::test]
    async fn addresses_are_tried_in_turn_from_the_attempts_own() {
        let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let second = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused_addr = refused.local_addr().unwrap();
        drop(refused);
        let addrs = [first.local_addr().unwrap(), second.local_addr().unwrap()];
        let deadline = Instant::now() + Duration::from_secs(5);
        let options = SocketOptions::default();
        for (attempt, listener) in [(0, &first), (1, &second), (2, &first)] {
            let stream = connect_any(&addrs, attempt, deadline, options)
                .await
                .unwrap();
            let (_, from) = listener.accept().await.unwrap();
            assert_eq!(from, stream.local_addr().unwrap(), "attempt {attempt}");
        }
        let stream = connect_any(&[refused_addr, addrs[1]], 0, deadline, options)
            .await
            .unwrap();
        let (_, from) = second.accept().await.unwrap();
        assert_eq!(from, stream.local_addr().unwrap());
        assert!(connect_any(&[refused_addr], 0, deadline, options)
            .await
            .is_err());
    }

    #[test]
    fn the_certificate_name_is_the_host_of_the_address() {
        assert_eq!(host_of("broker-1.example.com:9093"), "broker-1.example.com");
        assert_eq!(host_of("127.0.0.1:9093"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9093"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }
}
