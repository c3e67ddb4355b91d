//! A minimum rate for request bodies.
//!
//! hyper's `header_read_timeout` bounds how long a client may take to send a request head, but
//! nothing bounds the body: a client that trickles a body byte by byte holds its connection,
//! and whatever a handler has buffered of it, for as long as it likes. [`MinRate`] wraps every
//! request body (`serve_state` in `lib.rs`): after a grace period (the header timeout), the
//! body must keep arriving at `[hub] body_min_rate` bytes per second on average, counted from
//! the start of the body; one that falls behind ends with [`TooSlow`], the handler or the proxy
//! answers with an error, and hyper closes the connection (its body was not read to the end).
//! This is nginx's `client_body_timeout` idea, as a rate rather than a gap between reads, so
//! that one byte every few seconds cannot hold a connection either.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// A request body that arrived slower than `[hub] body_min_rate`.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body arrived slower than {rate} bytes per second (hub.body_min_rate) after {grace_s} s; the connection is closed"
)]
pub struct TooSlow {
    rate: u64,
    grace_s: u64,
}

/// `B` with a deadline for each byte: the `n`-th byte must arrive by
/// `start + grace + n / rate` (see the module documentation).
pub struct MinRate<B> {
    inner: B,
    start: Instant,
    grace: Duration,
    rate: u64,
    received: u64,
    /// Made when the body first has to wait, then moved with each frame.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> MinRate<B> {
    /// Wraps `inner`, starting the clock now; `rate` in bytes per second (at least 1).
    pub fn new(inner: B, grace: Duration, rate: u64) -> Self {
        MinRate { inner, start: Instant::now(), grace, rate: rate.max(1), received: 0, deadline: None }
    }

    fn due(&self) -> Instant {
        self.start + self.grace + Duration::from_secs_f64(self.received as f64 / self.rate as f64)
    }
}

impl<B> Body for MinRate<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.received += d.len() as u64;
                    let due = this.due();
                    if let Some(sleep) = this.deadline.as_mut() {
                        sleep.as_mut().reset(due);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let due = this.due();
                let sleep = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        Poll::Ready(Some(Err(Box::new(TooSlow { rate: this.rate, grace_s: this.grace.as_secs() }))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body fed by hand through a channel: the test decides when each byte arrives.
    fn channel_body()
    -> (tokio::sync::mpsc::Sender<Bytes>, impl Body<Data = Bytes, Error = std::convert::Infallible> + Unpin) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let stream = tokio_stream_from(rx);
        (tx, http_body_util::StreamBody::new(stream))
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, std::convert::Infallible>> + Unpin {
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))))
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_body_is_cut_off_and_a_steady_one_is_not() {
        // 10 bytes per second after 2 s of grace. The trickler sends 1 byte per second.
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            loop {
                if tx.send(Bytes::from_static(b"x")).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        let started = Instant::now();
        let err = MinRate::new(body, Duration::from_secs(2), 10).collect().await.expect_err("cut off");
        assert!(err.to_string().contains("slower than 10 bytes per second"), "{err}");
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(2) && took <= Duration::from_secs(4), "{took:?}");

        // A body that keeps up (20 bytes per second) and ends is delivered whole.
        let (tx, body) = channel_body();
        tokio::spawn(async move {
            for _ in 0..40 {
                let _ = tx.send(Bytes::from_static(b"y")).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let got = MinRate::new(body, Duration::from_secs(2), 10).collect().await.expect("whole body").to_bytes();
        assert_eq!(got.len(), 40);
    }
}
