//! Helpers every module builder uses to read its [`ModuleSettings`]: typed readers over
//! `module-config` and the connection entry that record problems with their paths, the
//! webhook-level fallbacks of the original (`topic`, `queue_name`, `destination`, `redis`), and
//! the outbound-policy check of URLs (`docs/reference/module-contract.md` §2.3).

use serde_json::Value;

use super::ModuleSettings;
use crate::outbound;
use crate::settings::Problems;
use crate::settings::Reader;

impl<'a> ModuleSettings<'a> {
    /// A reader over the merged `module-config`; paths read
    /// `webhooks.json: orders.module-config.<key>`. Call `finish(problems, false)` at the end
    /// so unknown keys become warnings.
    pub(crate) fn config_reader(&self) -> Reader<'a> {
        Reader::detached(self.module_config, format!("{}.module-config", self.path))
    }

    /// A reader over the named `connections.json` entry, when there is one; paths read
    /// `connections.json: <name>.<key>`.
    pub(crate) fn connection_reader(&self) -> Option<Reader<'a>> {
        let map = self.connection?;
        let name = self.connection_name.unwrap_or("connection");
        Some(Reader::detached(map, format!("connections.json: {name}")))
    }

    /// A webhook-level fallback of the original format (`topic`, `queue_name`, `destination`,
    /// `redis`); for chain items, the item's own legacy keys (§5.2 rule 5).
    pub fn fallback(&self, key: &str) -> Option<&'a Value> {
        self.webhook.get(key).filter(|v| !v.is_null())
    }

    /// Records an error about `key` of this entry (`webhooks.json: orders.<key>: message`).
    pub(crate) fn error(&self, problems: &mut Problems, key: &str, message: impl AsRef<str>) {
        problems.error(format!("{}.{key}: {}", self.path, message.as_ref()));
    }

    /// Records a warning about `key` of this entry.
    pub fn warn(&self, problems: &mut Problems, key: &str, message: impl AsRef<str>) {
        problems.warn(format!("{}.{key}: {}", self.path, message.as_ref()));
    }

    /// Checks `url` (read from `key` of module-config) against the outbound policy, with the
    /// hosts in `allowed_hosts` exempt. `schemes` lists the allowed schemes (`["http",
    /// "https"]`). Records the problem and returns false when refused.
    pub fn check_url(
        &self,
        problems: &mut Problems,
        key: &str,
        url: &str,
        schemes: &[&str],
        allowed_hosts: &[String],
    ) -> bool {
        let path = format!("module-config.{key}");
        let scheme_ok = url
            .split_once("://")
            .is_some_and(|(s, _)| schemes.iter().any(|x| x.eq_ignore_ascii_case(s)));
        if !scheme_ok {
            let list = schemes
                .iter()
                .map(|s| format!("{s}://"))
                .collect::<Vec<_>>()
                .join(" or ");
            self.error(problems, &path, format!("must start with {list}"));
            return false;
        }
        match outbound::check_allowing(url, self.outbound_strict, allowed_hosts) {
            None => true,
            Some(why) => {
                self.error(problems, &path, why);
                false
            }
        }
    }
}

/// `out`, unless errors were recorded since the count was `before`: a module with any load
/// error is not built.
pub(crate) fn unless_errors<T>(p: &Problems, before: usize, out: Option<T>) -> Option<T> {
    if p.errors.len() > before { None } else { out }
}
