//! The problems found while reading settings: errors that stop a load and warnings that are only
//! reported, each as `source: path: message`.

/// Every error and warning found while loading, each as `source: path: message`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems {
    /// Problems that stop the load.
    pub errors: Vec<String>,
    /// Problems that are only reported.
    pub warnings: Vec<String>,
}

impl Problems {
    pub(crate) fn error(&mut self, text: String) {
        self.errors.push(text);
    }

    pub(crate) fn warn(&mut self, text: String) {
        self.warnings.push(text);
    }

    /// True when there is no error (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}
