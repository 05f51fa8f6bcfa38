//! Amount conversion between assets (being written).
