//! The writer half of every connection, router and load generator alike: whatever was queued
//! goes out in one write per wake-up, until the connection is finished.

use futures_lite::io::AsyncWriteExt;
use futures_lite::AsyncWrite;
use glommio::channels::local_channel::LocalReceiver;

/// Writes what `take` hands over (it swaps the queued bytes into the given, empty buffer and
/// says whether the connection is finished), waiting on `wake` when nothing is queued. Ends
/// when the connection is finished and drained, `wake` closes, or a write fails.
pub async fn write_queued<W: AsyncWrite + Unpin>(
    writer: &mut W,
    wake: &LocalReceiver<()>,
    mut take: impl FnMut(&mut Vec<u8>) -> bool,
) {
    let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let finished = take(&mut batch);
        if !batch.is_empty() {
            if writer.write_all(&batch).await.is_err() {
                return;
            }
            batch.clear();
            continue;
        }
        if finished || wake.recv().await.is_none() {
            return;
        }
    }
}
