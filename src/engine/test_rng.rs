//! The seeded random stream of the engine's unit tests (the multi-core ledger and limiter
//! runs, the route table's sweep against a naive lookup): fixed, so a failing seed
//! reproduces, and small enough that no crate is needed.

/// xorshift64 (shifts 13, 7, 17). The state must not be 0: a zero state stays 0.
#[derive(Debug)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// The next number of the stream.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (by remainder: the slight bias does not matter here).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An index in `0..n`; the same draw as [`below`](Self::below).
    pub(crate) fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// One of `items`.
    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }
}
