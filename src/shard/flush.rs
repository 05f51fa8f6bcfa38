//! The writer half of every connection, router and load generator alike: whatever was queued
//! goes out in one write per wake-up, until the connection is finished.
//!
//! A write that makes no progress for the deadline given to [`write_queued_within`] ends the
//! writer ([`WriteEnd::TimedOut`]): a peer that stops reading cannot hold a connection, its
//! queue and its task forever. The deadline restarts with every write that moves bytes, so a
//! slow reader that keeps reading is never cut off.

use futures_lite::io::AsyncWriteExt;
use futures_lite::AsyncWrite;
use glommio::channels::local_channel::LocalReceiver;
use std::time::Duration;

/// Why [`write_queued_within`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteEnd {
    /// `take` said the connection is finished and everything it handed over was written.
    Finished,
    /// The wake channel closed.
    Unwoken,
    /// A write failed (the peer reset the connection, or the socket was shut down).
    Failed,
    /// A write made no progress for the whole deadline.
    TimedOut,
}

/// Writes what `take` hands over (it swaps the queued bytes into the given, empty buffer and
/// says whether the connection is finished), waiting on `wake` when nothing is queued. Ends
/// when the connection is finished and drained, `wake` closes, or a write fails. No deadline:
/// see [`write_queued_within`].
pub async fn write_queued<W: AsyncWrite + Unpin>(
    writer: &mut W,
    wake: &LocalReceiver<()>,
    take: impl FnMut(&mut Vec<u8>) -> bool,
) {
    let _ = write_queued_within(writer, wake, None, take).await;
}

/// As [`write_queued`], and a single write that makes no progress for `deadline` ends it with
/// [`WriteEnd::TimedOut`]. The caller then shuts the socket down; the write left pending is
/// abandoned with it. `take` is called again after each batch is fully written, so the bytes
/// it handed over last are on the wire (in the kernel) when it runs.
pub(crate) async fn write_queued_within<W: AsyncWrite + Unpin>(
    writer: &mut W,
    wake: &LocalReceiver<()>,
    deadline: Option<Duration>,
    mut take: impl FnMut(&mut Vec<u8>) -> bool,
) -> WriteEnd {
    // Swapped with the link's queue at each take: both grow to what the traffic needs.
    let mut batch: Vec<u8> = Vec::new();
    loop {
        let finished = take(&mut batch);
        if !batch.is_empty() {
            let mut written = 0;
            // Bounded: every pass moves at least one byte or returns.
            while written < batch.len() {
                match write_some(writer, &batch[written..], deadline).await {
                    Some(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                        // The socket's own write timeout (see `conn::limit_socket`).
                        return WriteEnd::TimedOut;
                    }
                    Some(Ok(0)) | Some(Err(_)) => return WriteEnd::Failed,
                    Some(Ok(n)) => written += n,
                    None => return WriteEnd::TimedOut,
                }
            }
            batch.clear();
            continue;
        }
        if finished {
            return WriteEnd::Finished;
        }
        if wake.recv().await.is_none() {
            return WriteEnd::Unwoken;
        }
    }
}

/// One write; `None` when it made no progress within `deadline`. The timer is armed only when
/// the write does not complete at once (the common case costs no timer).
async fn write_some<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    deadline: Option<Duration>,
) -> Option<std::io::Result<usize>> {
    let mut write = writer.write(bytes);
    if let Some(done) = futures_lite::future::poll_once(&mut write).await {
        return Some(done);
    }
    match deadline {
        None => Some(write.await),
        Some(deadline) => {
            futures_lite::future::or(async { Some(write.await) }, async {
                glommio::timer::sleep(deadline).await;
                None
            })
            .await
        }
    }
}
