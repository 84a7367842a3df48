//! A progress bar on standard error for bulk replays and purges: redrawn in place on a
//! terminal, silent otherwise (scripts read the final line on standard output).

use std::io::Write;

/// Width of the bar in characters.
const WIDTH: usize = 30;

/// One running bar.
#[derive(Debug)]
pub struct Progress {
    label: &'static str,
    total: u64,
    done: u64,
    shown: bool,
}

impl Progress {
    /// A bar for `total` items (a best estimate; the bar never passes its end), drawn only
    /// when `shown`.
    pub fn new(label: &'static str, total: u64, shown: bool) -> Progress {
        let bar = Progress {
            label,
            total,
            done: 0,
            shown,
        };
        bar.draw();
        bar
    }

    /// Adds `n` finished items.
    pub fn advance(&mut self, n: u64) {
        self.done += n;
        self.total = self.total.max(self.done);
        self.draw();
    }

    /// Items finished.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// The bar's text: `[#####-----] 500/1000 replayed`.
    pub fn line(&self) -> String {
        let filled = match self.total {
            0 => WIDTH,
            t => (self.done.min(t) as usize * WIDTH) / t as usize,
        };
        format!(
            "[{}{}] {}/{} {}",
            "#".repeat(filled),
            "-".repeat(WIDTH - filled),
            self.done,
            self.total,
            self.label
        )
    }

    fn draw(&self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{}", self.line());
            let _ = err.flush();
        }
    }

    /// Ends the bar's line.
    pub fn finish(self) {
        if self.shown {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_fills_in_proportion_and_grows_past_a_low_estimate() {
        let mut p = Progress::new("replayed", 4, false);
        p.advance(1);
        assert_eq!(
            p.line(),
            format!("[{}{}] 1/4 replayed", "#".repeat(7), "-".repeat(23))
        );
        p.advance(5);
        assert_eq!(p.line(), format!("[{}] 6/6 replayed", "#".repeat(30)));
    }
}
