//! Zero-copy forwarding of large proxied response bodies with splice(2) (Linux).
//!
//! A copying proxy reads every body byte from the server's socket into its memory and writes
//! it out again: two copies, which for 1 MiB bodies are most of the hub's CPU time
//! (docs/benchmarks.md). splice(2) moves the bytes socket → pipe → socket inside the kernel
//! instead, as HAProxy does.
//!
//! hyper keeps all the HTTP: it parses the server's response head and writes the browser's.
//! Only the body is moved, and only for a response the proxy chooses (`proxy.rs`: a GET
//! without a body, answered with `Content-Length` of at least [`MIN_BODY`] bytes, not 1xx, 204
//! or 304). For such a response the proxy takes the server's socket back from hyper's client
//! connection ([`SocketStream`], with the bytes hyper had already read), arms the browser
//! connection's [`SpliceSlot`] with a [`Job`], and answers with a [`SpliceBody`]: those bytes, then
//! placeholder bytes for the rest. Placeholder bytes are slices of one static buffer; hyper's
//! queued write strategy (forced on with `writev(true)` in `accept.rs`) hands body buffers to
//! the connection's `poll_write_vectored` without copying them, so [`BrowserIo`] recognises
//! them by address and writes the same number of body bytes from the server's socket in their
//! place. Placeholder bytes themselves are never written: without an armed job they are an
//! error, which closes the browser connection.
//!
//! When the whole body has been moved, the server's socket is at a message boundary again and
//! goes back to the slot ([`SpliceSlot::reclaim`]), so the next request on the browser connection
//! reuses it (HTTP/1.1 keep-alive, RFC 9112 §9.3). If the server closes early, the browser
//! connection is closed, as when a copied body breaks off: the browser sees a body shorter
//! than its `Content-Length` (RFC 9112 §6.3).

use hub_core::Recover;
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use hub_core::{Endpoint, ServerToken};

/// Smallest response body, in bytes, that is spliced rather than copied. Below it, the two
/// extra system calls per pipe round and the hand-over of the server's socket cost more than
/// the copies they save.
pub const MIN_BODY: u64 = 128 * 1024;

/// Length in bytes of [`PLACEHOLDER`]; a [`SpliceBody`] yields placeholder frames of at most
/// this size.
const PLACEHOLDER_LEN: usize = 256 * 1024;

/// The placeholder bytes. Only their address matters: [`BrowserIo`] writes body bytes from
/// the server's socket wherever hyper asks it to write a slice of this buffer.
static PLACEHOLDER: [u8; PLACEHOLDER_LEN] = [0; PLACEHOLDER_LEN];

/// Pipe capacity asked for with `F_SETPIPE_SZ`, in bytes (the kernel's default is 64 KiB;
/// fewer, larger rounds cost fewer system calls). If the kernel refuses, the default stays.
const PIPE_SIZE: usize = 256 * 1024;

/// Whether `b` is a non-empty slice of [`PLACEHOLDER`].
fn is_placeholder(b: &[u8]) -> bool {
    let start = PLACEHOLDER.as_ptr() as usize;
    let p = b.as_ptr() as usize;
    !b.is_empty() && p >= start && p < start + PLACEHOLDER_LEN
}

/// A stream socket, TCP or Unix: a connection to a user's server as the proxy's plain
/// requests use it, or a browser connection (TCP, or the hub's own Unix socket behind a
/// reverse proxy).
#[derive(Debug)]
pub enum SocketStream {
    /// A TCP connection (TCP_NODELAY set).
    Tcp(TcpStream),
    /// A Unix-socket connection.
    Unix(UnixStream),
    /// A TLS connection to a server on another machine (`crate::tls`). Its bytes are
    /// encrypted, so it is never spliced: the proxy copies its bodies.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl SocketStream {
    /// Moves up to `len` bytes from this socket into the pipe `pipe_w`, waiting for the socket
    /// to be readable. `Ok(0)` means the server closed the connection. The pipe must have room
    /// for `len` bytes (the caller only fills an empty pipe), so `EAGAIN` is the socket's.
    fn poll_splice_into(&self, cx: &mut Context<'_>, pipe_w: RawFd, len: usize) -> Poll<io::Result<usize>> {
        loop {
            let r = match self {
                SocketStream::Tcp(s) => {
                    ready!(s.poll_read_ready(cx))?;
                    s.try_io(Interest::READABLE, || splice(s.as_raw_fd(), pipe_w, len))
                }
                SocketStream::Unix(s) => {
                    ready!(s.poll_read_ready(cx))?;
                    s.try_io(Interest::READABLE, || splice(s.as_raw_fd(), pipe_w, len))
                }
                SocketStream::Tls(_) => Err(io::Error::from(io::ErrorKind::Unsupported)),
            };
            match r {
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => continue,
                r => return Poll::Ready(r),
            }
        }
    }
}

impl SocketStream {
    /// Moves up to `len` bytes from the pipe `pipe_r` into this socket, waiting for the socket
    /// to be writable. The pipe holds at least `len` bytes, so `EAGAIN` is the socket's.
    fn poll_splice_from(&self, cx: &mut Context<'_>, pipe_r: RawFd, len: usize) -> Poll<io::Result<usize>> {
        loop {
            let r = match self {
                SocketStream::Tcp(s) => {
                    ready!(s.poll_write_ready(cx))?;
                    s.try_io(Interest::WRITABLE, || splice(pipe_r, s.as_raw_fd(), len))
                }
                SocketStream::Unix(s) => {
                    ready!(s.poll_write_ready(cx))?;
                    s.try_io(Interest::WRITABLE, || splice(pipe_r, s.as_raw_fd(), len))
                }
                SocketStream::Tls(_) => Err(io::Error::from(io::ErrorKind::Unsupported)),
            };
            match r {
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    /// Whether the connection is open with nothing unread: a `recv(MSG_PEEK | MSG_DONTWAIT)`
    /// that would block. A server that closed it (an idle timeout, `Connection: close`) or
    /// sent bytes nobody asked for makes it unusable for a next request.
    fn is_reusable(&self) -> bool {
        let fd = match self {
            SocketStream::Tcp(s) => s.as_raw_fd(),
            SocketStream::Unix(s) => s.as_raw_fd(),
            // Never spliced, so never given back.
            SocketStream::Tls(_) => return false,
        };
        let mut byte = 0u8;
        // SAFETY: recv into one live byte on a socket descriptor we hold; MSG_PEEK leaves
        // the socket's data as it was.
        let n = unsafe { libc::recv(fd, (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
        n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
    }
}

impl AsyncRead for SocketStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SocketStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            SocketStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            SocketStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for SocketStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SocketStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            SocketStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            SocketStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            SocketStream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            SocketStream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            SocketStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SocketStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            SocketStream::Unix(s) => Pin::new(s).poll_flush(cx),
            SocketStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            SocketStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            SocketStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            SocketStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One response body being moved from a server's socket to the browser's.
pub struct Job {
    /// Where the body comes from; positioned at the first body byte not yet read.
    upstream: SocketStream,
    /// The server the socket belongs to, and its token: the socket is reused only for the
    /// same pair.
    endpoint: Endpoint,
    token: ServerToken,
    /// Body bytes still in the server's socket.
    unread: u64,
    /// Body bytes not yet written to the browser (`unwritten - unread` are in the pipe).
    unwritten: u64,
    /// Whether the socket may serve another request once the body is through (not after a
    /// `Connection: close` response).
    reuse: bool,
}

impl Job {
    /// A job for the `len` body bytes still to be read from `upstream`; with `reuse`, the
    /// socket is given back to the slot afterwards.
    pub fn new(upstream: SocketStream, endpoint: Endpoint, token: ServerToken, len: u64, reuse: bool) -> Self {
        Job { upstream, endpoint, token, unread: len, unwritten: len, reuse }
    }
}

/// A server connection handed back after its response body was moved whole.
struct Returned {
    upstream: SocketStream,
    endpoint: Endpoint,
    token: ServerToken,
}

/// What the proxy and a browser connection's [`BrowserIo`] share: the armed [`Job`], if any,
/// and the server connection it gave back. One per browser connection.
#[derive(Default)]
pub struct SpliceSlot {
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    job: Option<Job>,
    returned: Option<Returned>,
}

impl SpliceSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().recover()
    }

    /// Whether no body is being moved: responses on a browser connection are written one at
    /// a time, so a new job may be armed.
    pub fn is_idle(&self) -> bool {
        self.lock().job.is_none()
    }

    /// Arms `job` for the response about to be written. A job still armed (which the one-at-a
    /// -time order of HTTP/1.1 responses rules out) is dropped, closing its socket.
    pub fn arm(&self, job: Job) {
        self.lock().job = Some(job);
    }

    /// Keeps `upstream`, at a message boundary, for the next request to `endpoint` with
    /// `token`.
    pub fn give_back(&self, upstream: SocketStream, endpoint: Endpoint, token: ServerToken) {
        self.lock().returned = Some(Returned { upstream, endpoint, token });
    }

    /// The server connection given back after a moved body, if it is to `endpoint` with
    /// `token` and still usable ([`SocketStream::is_reusable`]); any other is closed.
    pub fn reclaim(&self, endpoint: &Endpoint, token: &ServerToken) -> Option<SocketStream> {
        let r = self.lock().returned.take()?;
        (r.endpoint == *endpoint && r.token.as_str() == token.as_str() && r.upstream.is_reusable())
            .then_some(r.upstream)
    }
}

/// A response body of `prefix` (bytes the proxy already holds) followed by `placeholder`
/// bytes that the browser connection's [`BrowserIo`] fills from the armed [`Job`].
/// Its size is exact, so hyper frames it with the response's `Content-Length`.
pub struct SpliceBody {
    prefix: VecDeque<Bytes>,
    placeholder: u64,
}

impl SpliceBody {
    /// `prefix`, then `placeholder` bytes moved by the armed job (0: the prefix is the body).
    pub fn new(prefix: VecDeque<Bytes>, placeholder: u64) -> Self {
        SpliceBody { prefix, placeholder }
    }
}

impl hyper::body::Body for SpliceBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Some(b) = this.prefix.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        if this.placeholder == 0 {
            return Poll::Ready(None);
        }
        let n = this.placeholder.min(PLACEHOLDER_LEN as u64);
        this.placeholder -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&PLACEHOLDER[..n as usize])))))
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && self.placeholder == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.prefix.iter().map(|b| b.len() as u64).sum::<u64>() + self.placeholder)
    }
}

/// A pipe for splice(2): both ends non-blocking and close-on-exec.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    /// Capacity in bytes (`F_GETPIPE_SZ`).
    size: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two descriptors into the array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created and are owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a pipe descriptor we own; F_SETPIPE_SZ / F_GETPIPE_SZ take an int.
        let size = unsafe {
            libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE as libc::c_int);
            libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        // 4096: one page, the smallest capacity a pipe can have.
        Ok(Pipe { read, write, size: usize::try_from(size).unwrap_or(4096).max(4096) })
    }
}

/// splice(2) without offsets, non-blocking; `SPLICE_F_MOVE` lets the kernel move pages
/// rather than copy them where it can.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain system call on descriptors the caller holds; null offsets mean "the
    // file's own position", which for pipes and sockets is the only option.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// A browser connection: the stream hyper's server connection reads and writes, which moves
/// a spliced body in place of its placeholder bytes (see the module docs).
pub struct BrowserIo {
    tcp: SocketStream,
    slot: Arc<SpliceSlot>,
    /// Made on the connection's first spliced body, then kept (two descriptors).
    pipe: Option<Pipe>,
}

impl BrowserIo {
    /// Wraps `tcp`; `slot` is the one given to the connection's proxy service.
    pub fn new(tcp: SocketStream, slot: Arc<SpliceSlot>) -> Self {
        BrowserIo { tcp, slot, pipe: None }
    }

    /// Writes up to `want` bytes of the armed job's body to the browser in place of that many
    /// placeholder bytes. Returns how many were written.
    fn poll_splice(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<io::Result<usize>> {
        let mut state = self.slot.lock();
        let Some(job) = state.job.as_mut().filter(|j| j.unwritten > 0) else {
            return Poll::Ready(Err(io::Error::other("placeholder body bytes with no spliced body armed")));
        };
        let pipe = match &mut self.pipe {
            Some(p) => p,
            empty => empty.insert(Pipe::new()?),
        };
        if job.unwritten == job.unread {
            // The pipe is empty: fill it. (Only an empty pipe is filled, so a full pipe
            // cannot be mistaken for a socket with nothing to read.)
            let len = job.unread.min(pipe.size as u64) as usize;
            let n = ready!(job.upstream.poll_splice_into(cx, pipe.write.as_raw_fd(), len))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed its connection before the end of the response body",
                )));
            }
            job.unread -= n as u64;
        }
        let len = (job.unwritten - job.unread).min(want as u64) as usize;
        let n = ready!(self.tcp.poll_splice_from(cx, pipe.read.as_raw_fd(), len))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        job.unwritten -= n as u64;
        if job.unwritten == 0
            && let Some(done) = state.job.take()
            && done.reuse
        {
            state.returned = Some(Returned { upstream: done.upstream, endpoint: done.endpoint, token: done.token });
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncRead for BrowserIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for BrowserIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    /// Writes the leading ordinary slices with writev(2), or, if `bufs` starts with
    /// placeholder bytes, splices that many body bytes instead ([`Self::poll_splice`]).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let bufs = match bufs.iter().position(|b| !b.is_empty()) {
            Some(first) => &bufs[first..],
            None => return Poll::Ready(Ok(0)),
        };
        if is_placeholder(&bufs[0]) {
            return this.poll_splice(cx, bufs[0].len());
        }
        let ordinary = bufs.iter().take_while(|b| !is_placeholder(b)).count();
        Pin::new(&mut this.tcp).poll_write_vectored(cx, &bufs[..ordinary])
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioIo;
    use tokio::io::AsyncWriteExt;

    /// Bytes that differ at every offset (a counter mixed per position), so a body moved out
    /// of order, shifted, or replaced by placeholder zeros cannot compare equal.
    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i as u8)).collect()
    }

    /// How a test response's body reaches the hub side: over a Unix-socket pair or loopback
    /// TCP, whole or cut short.
    #[derive(Clone, Copy)]
    enum Source {
        Unix,
        Tcp,
        UnixCutShort,
    }

    /// A connected pair: the end the job reads (as an [`SocketStream`]) and the end the "server"
    /// writes.
    async fn pair(source: Source) -> (SocketStream, Box<dyn tokio::io::AsyncWrite + Send + Unpin>) {
        match source {
            Source::Unix | Source::UnixCutShort => {
                let (a, b) = UnixStream::pair().expect("socketpair");
                (SocketStream::Unix(a), Box::new(b))
            }
            Source::Tcp => {
                let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let a = TcpStream::connect(l.local_addr().expect("addr")).await.expect("connect");
                let (b, _) = l.accept().await.expect("accept");
                (SocketStream::Tcp(a), Box::new(b))
            }
        }
    }

    /// Serves one browser connection with hyper over [`BrowserIo`], as `accept.rs` does. Each
    /// request `GET /<len>` is answered with `len` bytes of [`pattern`]: the first 1000 from
    /// memory (as the proxy's prefix), the rest spliced from a socket that a task fills (and,
    /// for `Source::UnixCutShort`, closes halfway). Returns the hub's address and the slot.
    async fn serve_one(source: Source) -> (std::net::SocketAddr, Arc<SpliceSlot>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let slot = Arc::new(SpliceSlot::default());
        let (service_slot, io_slot) = (slot.clone(), slot.clone());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let slot = service_slot.clone();
                async move {
                    let len: usize = req.uri().path()[1..].parse().expect("length in the path");
                    let data = pattern(len);
                    let (upstream, mut server) = pair(source).await;
                    let rest = data[1000..].to_vec();
                    let rest_len = rest.len() as u64;
                    tokio::spawn(async move {
                        let send = if matches!(source, Source::UnixCutShort) { &rest[..rest.len() / 2] } else { &rest };
                        let _ = server.write_all(send).await;
                        // Kept open after a whole body (a kept-alive server connection);
                        // closed after a cut-short one.
                        if matches!(source, Source::UnixCutShort) {
                            drop(server);
                        } else {
                            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                        }
                    });
                    let token = ServerToken::new("t").expect("token");
                    slot.arm(Job::new(upstream, Endpoint::Tcp(1), token, rest_len, true));
                    let body = SpliceBody::new(VecDeque::from([Bytes::copy_from_slice(&data[..1000])]), rest_len);
                    let resp = hyper::Response::builder()
                        .header("content-length", len.to_string())
                        .body(body)
                        .expect("response");
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.writev(true);
            let _ =
                builder.serve_connection(TokioIo::new(BrowserIo::new(SocketStream::Tcp(tcp), io_slot)), service).await;
        });
        (addr, slot)
    }

    async fn client(addr: std::net::SocketAddr) -> hyper::client::conn::http1::SendRequest<String> {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.expect("handshake");
        tokio::spawn(conn);
        sender
    }

    async fn get(sender: &mut hyper::client::conn::http1::SendRequest<String>, len: usize) -> hyper::Result<Bytes> {
        sender.ready().await?;
        let req = hyper::Request::get(format!("/{len}")).header("host", "x").body(String::new()).expect("req");
        let resp = sender.send_request(req).await?;
        assert_eq!(resp.headers()["content-length"], len.to_string().as_str());
        Ok(resp.into_body().collect().await?.to_bytes())
    }

    /// Spliced bodies arrive whole and in order, several on one kept-alive browser
    /// connection, from a Unix socket and from loopback TCP, at sizes around the placeholder
    /// and pipe sizes; after each, the server socket is given back for reuse.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spliced_bodies_arrive_whole_and_the_socket_comes_back() {
        for source in [Source::Unix, Source::Tcp] {
            let (addr, slot) = serve_one(source).await;
            let mut sender = client(addr).await;
            for len in [1001, 200_000, PLACEHOLDER_LEN + 1000, 3 * 1024 * 1024 + 7, 1001 + PIPE_SIZE] {
                let body = get(&mut sender, len).await.expect("a whole body");
                assert!(body.as_ref() == pattern(len).as_slice(), "{len} bytes arrived intact");
                assert!(slot.is_idle(), "the job is done");
                let token = ServerToken::new("t").expect("token");
                assert!(slot.reclaim(&Endpoint::Tcp(1), &token).is_some(), "the server socket came back");
                assert!(slot.reclaim(&Endpoint::Tcp(1), &token).is_none(), "once");
            }
        }
    }

    /// A server that closes before the end of its body: the browser connection is closed
    /// (the client sees an error, not a short body passed as whole, and not a hang), and no
    /// socket is given back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_body_cut_short_closes_the_browser_connection() {
        let (addr, slot) = serve_one(Source::UnixCutShort).await;
        let mut sender = client(addr).await;
        let got = tokio::time::timeout(std::time::Duration::from_secs(20), get(&mut sender, 1024 * 1024)).await;
        assert!(matches!(got, Ok(Err(_))), "a cut-short body is an error for the client");
        let token = ServerToken::new("t").expect("token");
        assert!(slot.reclaim(&Endpoint::Tcp(1), &token).is_none(), "a broken server socket is not reused");
    }

    /// Placeholder bytes are never written as they are: without an armed job the write fails.
    #[tokio::test]
    async fn placeholder_bytes_without_a_job_are_an_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let _peer = TcpStream::connect(l.local_addr().expect("addr")).await.expect("connect");
        let (tcp, _) = l.accept().await.expect("accept");
        let mut io = BrowserIo::new(SocketStream::Tcp(tcp), Arc::new(SpliceSlot::default()));
        let err = io.write(&PLACEHOLDER[..10]).await.expect_err("refused");
        assert!(err.to_string().contains("no spliced body armed"), "{err}");
        assert_eq!(io.write(b"ordinary").await.expect("ordinary bytes are written"), 8);
    }

    #[test]
    fn a_reclaimed_socket_is_for_the_same_server_and_token_only() {
        let slot = SpliceSlot::default();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let _guard = rt.enter();
        // An upstream socket and its server's end, kept open unless dropped.
        let up = || {
            let (a, b) = std::os::unix::net::UnixStream::pair().expect("pair");
            a.set_nonblocking(true).expect("nonblocking");
            (SocketStream::Unix(UnixStream::from_std(a).expect("tokio")), b)
        };
        let (t, other) = (ServerToken::new("t").expect("token"), ServerToken::new("u").expect("token"));
        let (u, _server1) = up();
        slot.give_back(u, Endpoint::Tcp(1), t.clone());
        assert!(slot.reclaim(&Endpoint::Tcp(2), &t).is_none(), "another server's endpoint");
        assert!(slot.reclaim(&Endpoint::Tcp(1), &t).is_none(), "and then it is gone (closed)");
        let (u, _server2) = up();
        slot.give_back(u, Endpoint::Tcp(1), t.clone());
        assert!(slot.reclaim(&Endpoint::Tcp(1), &other).is_none(), "another token (a restarted server)");
        let (u, server3) = up();
        drop(server3);
        slot.give_back(u, Endpoint::Tcp(1), t.clone());
        assert!(slot.reclaim(&Endpoint::Tcp(1), &t).is_none(), "its server closed it");
        let (u, mut server4) = up();
        std::io::Write::write_all(&mut server4, b"x").expect("write");
        slot.give_back(u, Endpoint::Tcp(1), t.clone());
        assert!(slot.reclaim(&Endpoint::Tcp(1), &t).is_none(), "its server sent bytes nobody asked for");
        let (u, _server5) = up();
        slot.give_back(u, Endpoint::Tcp(1), t.clone());
        assert!(slot.reclaim(&Endpoint::Tcp(1), &t).is_some(), "the same server and token, still open");
    }
}
