//! An instance's handle on the client it shares with other instances of the same connection
//! (`docs/reference/module-contract.md` §2.2 rule 3).

use std::future::Future;
use std::sync::Arc;

use super::OutputError;

/// An instance's handle on its shared client: taken on first use (`setup`, or `process` after a
/// failed `setup`), dropped in `teardown` so the shared client closes once its last user is
/// gone (`docs/reference/module-contract.md` §2.2 rule 3).
pub(crate) struct ClientSlot<T>(std::sync::Mutex<Option<Arc<T>>>);

impl<T> Default for ClientSlot<T> {
    fn default() -> Self {
        ClientSlot(std::sync::Mutex::new(None))
    }
}

impl<T> std::fmt::Debug for ClientSlot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSlot")
    }
}

impl<T> ClientSlot<T> {
    fn current(&self) -> Option<Arc<T>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The held client, or the one `connect` gives (which is then held).
    pub(crate) async fn get_or<F>(&self, connect: F) -> Result<Arc<T>, OutputError>
    where
        F: Future<Output = Result<Arc<T>, OutputError>>,
    {
        if let Some(c) = self.current() {
            return Ok(c);
        }
        let c = connect.await?;
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Ok(slot.get_or_insert(c).clone())
    }

    /// Hands the client over (for a teardown that must drop it off the async workers).
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))] // only `kafka` needs it
    pub(crate) fn take(&self) -> Option<Arc<T>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Lets go of the client.
    pub(crate) fn release(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}
