//! Route table (being written).
