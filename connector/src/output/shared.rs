//! Clients shared by every module instance that names the same `connections.json` entry
//! (`docs/reference/module-contract.md` §2.2 rule 3): one pooled client per connection name plus a hash of its
//! settings. The registry holds only weak references, so a client is closed when the last
//! instance using it is dropped, never earlier (the original's MySQL module closed a shared pool
//! in one instance's teardown).

use std::any::Any;
use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Weak};

use serde_json::{Map, Value};

use super::OutputError;

type AnyClient = dyn Any + Send + Sync;

/// The registry of shared clients; one per connector process.
#[derive(Default)]
pub struct SharedClients {
    clients: tokio::sync::Mutex<HashMap<String, Weak<AnyClient>>>,
}

impl std::fmt::Debug for SharedClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedClients").finish_non_exhaustive()
    }
}

/// The key of a shared client: the module kind, the connection name and a hash of the
/// connection's settings (so an entry changed by a reload gets a new client).
pub fn client_key(module: &str, connection: &str, settings: &Map<String, Value>) -> String {
    let mut h = DefaultHasher::new();
    // serde_json maps are ordered (BTreeMap without `preserve_order`), so equal settings hash
    // equally.
    Value::Object(settings.clone()).to_string().hash(&mut h);
    format!("{module}/{connection}/{:016x}", h.finish())
}

impl SharedClients {
    /// A new, empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The live client under `key`, or a new one made by `connect`. Concurrent callers for the
    /// same key get the same client; `connect` runs at most once at a time. A `T` that does not
    /// match the stored client's type is an error (two modules misusing one key).
    pub async fn get_or_connect<T, F, Fut>(
        &self,
        key: &str,
        connect: F,
    ) -> Result<Arc<T>, OutputError>
    where
        T: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, OutputError>>,
    {
        let mut clients = self.clients.lock().await;
        if let Some(existing) = clients.get(key).and_then(Weak::upgrade) {
            return existing.downcast::<T>().map_err(|_| {
                OutputError::permanent(
                    super::ErrorCategory::Other,
                    format!("shared client '{key}' has another type"),
                )
            });
        }
        let client = Arc::new(connect().await?);
        let erased: Arc<AnyClient> = client.clone();
        clients.insert(key.to_owned(), Arc::downgrade(&erased));
        clients.retain(|_, weak| weak.strong_count() > 0);
        Ok(client)
    }

    /// Number of clients still alive (for tests and metrics).
    pub async fn live(&self) -> usize {
        self.clients
            .lock()
            .await
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn one_client_per_key_until_the_last_user_drops_it() {
        let shared = SharedClients::new();
        let connects = AtomicUsize::new(0);
        let connect = || async {
            connects.fetch_add(1, Ordering::SeqCst);
            Ok::<_, OutputError>(String::from("client"))
        };
        let a = shared.get_or_connect("k", connect).await.expect("first");
        let b = shared.get_or_connect("k", connect).await.expect("second");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(connects.load(Ordering::SeqCst), 1);
        drop(a);
        assert_eq!(shared.live().await, 1, "still used by b");
        drop(b);
        assert_eq!(shared.live().await, 0);
        let _c = shared.get_or_connect("k", connect).await.expect("third");
        assert_eq!(
            connects.load(Ordering::SeqCst),
            2,
            "reconnects after the last drop"
        );
    }

    #[tokio::test]
    async fn a_type_mismatch_is_an_error_not_a_panic() {
        let shared = SharedClients::new();
        let _a = shared
            .get_or_connect("k", || async { Ok::<_, OutputError>(1u32) })
            .await
            .expect("u32");
        let b = shared
            .get_or_connect("k", || async { Ok::<_, OutputError>(String::new()) })
            .await;
        assert!(b.is_err());
    }

    #[test]
    fn the_key_changes_with_the_settings() {
        let mut m = Map::new();
        m.insert("host".into(), Value::from("a"));
        let k1 = client_key("redis", "main", &m);
        m.insert("host".into(), Value::from("b"));
        assert_ne!(k1, client_key("redis", "main", &m));
    }
}
