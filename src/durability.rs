//! How hard SQLite works to keep a commit: a setting `config` parses (`--durability`)
//! and `store` applies. A leaf of its own, imports nothing of ours, so that `config`
//! need not import `store` (config depends on leaves only, STYLE) nor `store` import
//! `config`.

/// How hard SQLite works to keep a commit through a power cut (a process crash loses
/// nothing at either setting in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=NORMAL`: a power cut may undo the last commits since the WAL was
    /// last synced; the database stays consistent.
    Normal,
    /// `synchronous=FULL`: every commit is synced before it is answered.
    Full,
}
