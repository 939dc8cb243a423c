//! Protocol upgrades (WebSocket and other HTTP/1.1 `Upgrade`s): once the upstream answers
//! 101, the two upgraded connections are joined and bytes copied both ways until either
//! side closes.

use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// Joins the client's and the upstream's upgraded connections in a background task.
/// `slot` (the connection's permit) is held until the tunnel closes, so tunnels count
/// under `server.max_connections` and in `authgate_open_connections`, and graceful
/// shutdown waits for them (up to the grace).
pub fn tunnel(client: OnUpgrade, upstream: OnUpgrade, slot: Arc<super::ConnSlot>) {
    tokio::spawn(async move {
        let _slot = slot;
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => tracing::debug!(bytes_up = up, bytes_down = down, "tunnel closed"),
            Err(e) => tracing::debug!(error = %e, "tunnel ended with an error"),
        }
    });
}
