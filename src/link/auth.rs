//! Peer authentication for incoming BTP connections (RFC 23 "Authentication").
//!
//! [`PeerAuth`] is built once from the config and then only read. It answers one question per
//! connection: which peer do this username, listener path and token belong to?
//!
//! # Rule
//!
//! 1. `auth_username` present and non-empty: it must name a configured peer, and the token must
//!    be one of that peer's tokens.
//! 2. Otherwise, the WebSocket path named an account (`/accounts/{name}/ilp/btp`, non-empty):
//!    the same, with that name.
//! 3. Otherwise the token alone identifies the peer. The config keeps tokens unique across
//!    peers; should two peers still share a token, it identifies nobody.
//!
//! RFC 23 no longer defines `auth_username` (the JS client still sends it; interledger-rs
//! ignores it and takes the account from the path); this module puts the username first.
//! Either way the token must belong to the peer returned, so the order only matters when a
//! client names two different accounts, and then the one it names inside BTP wins.
//!
//! A peer may have several tokens at once, so a token can be rotated without a cut-over: add
//! the new one, move the client, remove the old one.
//!
//! # With a client certificate
//!
//! A TLS link whose client certificate stands for a peer ([`crate::link::tls`]) is that
//! peer's: [`PeerAuth::authenticate_with_cert`] accepts it with no token (an empty one), or
//! with one of the peer's tokens; a name or a token of another peer is refused. A peer known
//! by a certificate ([`PeerAuth::require_certs`]) must show it: its tokens alone, without the
//! certificate, authenticate nobody.
//!
//! # Timing
//!
//! Tokens are compared with [`constant_time_eq`], and every token of every candidate peer is
//! compared (no early exit on a match), so the time taken depends on the configured token
//! lengths and the candidate set, never on how much of a guess was right. Peer names are not
//! secret and are looked up in a hash map.
//!
//! # Non-goals
//!
//! No hashing of stored tokens, no rate limiting of failed attempts (the session counts
//! them; the driver decides).

use std::collections::HashMap;
use std::fmt;

use crate::id::PeerId;

/// Compares two byte strings in time that depends only on their lengths.
///
/// Unequal lengths return `false` at once (the lengths are not treated as secret); equal
/// lengths are compared over every byte, OR-ing the differences together, with no exit on the
/// first differing byte.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        // black_box keeps the optimiser from turning the fold into an early-exit compare.
        diff |= core::hint::black_box(x ^ y);
    }
    core::hint::black_box(diff) == 0
}

/// One configured peer: its id, its name and the tokens it may present.
struct Entry {
    peer: PeerId,
    tokens: Vec<Box<[u8]>>,
    /// Known by a client certificate: a token alone is not enough.
    cert_required: bool,
}

/// The configured peers' names and tokens, for authenticating incoming BTP connections.
pub struct PeerAuth {
    entries: Vec<Entry>,
    by_name: HashMap<Box<[u8]>, usize>,
}

impl fmt::Debug for PeerAuth {
    // Never prints a token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerAuth")
            .field("peers", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl PeerAuth {
    /// Builds the table from `(peer, name, tokens)` triples, as the validated config lists
    /// them. If a name appears twice the later entry wins the name lookup (the config rejects
    /// duplicate names before this point).
    pub fn new(peers: &[(PeerId, &str, &[String])]) -> Self {
        let mut entries = Vec::with_capacity(peers.len());
        let mut by_name = HashMap::with_capacity(peers.len());
        for &(peer, name, tokens) in peers {
            by_name.insert(Box::from(name.as_bytes()), entries.len());
            entries.push(Entry {
                peer,
                tokens: tokens.iter().map(|t| Box::from(t.as_bytes())).collect(),
                cert_required: false,
            });
        }
        PeerAuth { entries, by_name }
    }

    /// These peers are known by their client certificates (`client_cert_sha256`,
    /// `client_cert_name`): they must show them, a token alone does not authenticate them.
    pub fn require_certs(&mut self, peers: impl IntoIterator<Item = PeerId>) {
        for peer in peers {
            for entry in self.entries.iter_mut().filter(|e| e.peer == peer) {
                entry.cert_required = true;
            }
        }
    }

    /// How many peers are configured.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no peer is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The peer that `token` authenticates, given the `auth_username` entry (if the client
    /// sent one) and the account named by the WebSocket path (if any). See the module docs
    /// for the rule. `None` means: refuse the connection.
    pub fn authenticate(
        &self,
        username: Option<&[u8]>,
        path_account: Option<&str>,
        token: &[u8],
    ) -> Option<PeerId> {
        let name = match (username, path_account) {
            (Some(user), _) if !user.is_empty() => Some(user),
            (_, Some(account)) if !account.is_empty() => Some(account.as_bytes()),
            _ => None,
        };
        let peer = match name {
            Some(name) => {
                let entry = &self.entries[*self.by_name.get(name)?];
                holds(entry, token).then_some(entry.peer)
            }
            None => self.by_token(token),
        }?;
        let cert_required = self
            .entries
            .iter()
            .any(|e| e.peer == peer && e.cert_required);
        (!cert_required).then_some(peer)
    }

    /// Like [`authenticate`](Self::authenticate), on a link whose client certificate stands
    /// for `cert` (when `Some`): the name, if given, must be `cert`'s, and the token either
    /// empty or one of `cert`'s. See the module docs.
    pub fn authenticate_with_cert(
        &self,
        username: Option<&[u8]>,
        path_account: Option<&str>,
        token: &[u8],
        cert: Option<PeerId>,
    ) -> Option<PeerId> {
        let Some(peer) = cert else {
            return self.authenticate(username, path_account, token);
        };
        let name = match (username, path_account) {
            (Some(user), _) if !user.is_empty() => Some(user),
            (_, Some(account)) if !account.is_empty() => Some(account.as_bytes()),
            _ => None,
        };
        if let Some(name) = name {
            let named = self.by_name.get(name).map(|&i| self.entries[i].peer);
            if named != Some(peer) {
                return None;
            }
        }
        if token.is_empty() {
            return Some(peer);
        }
        let entry = self.entries.iter().find(|e| e.peer == peer)?;
        holds(entry, token).then_some(peer)
    }

    /// The one peer holding `token`; compares against every token of every peer.
    fn by_token(&self, token: &[u8]) -> Option<PeerId> {
        let mut found = None;
        let mut matches = 0usize;
        for entry in &self.entries {
            if holds(entry, token) {
                found = Some(entry.peer);
                matches += 1;
            }
        }
        // Two peers sharing a token is a config error; such a token identifies nobody.
        if matches == 1 {
            found
        } else {
            None
        }
    }
}

/// Whether `token` is one of `entry`'s tokens; compares against all of them.
fn holds(entry: &Entry, token: &[u8]) -> bool {
    let mut ok = false;
    for candidate in &entry.tokens {
        ok |= constant_time_eq(candidate, token);
    }
    ok
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn a_certificate_stands_for_its_peer_with_or_without_a_token() {
        let auth = table();
        let alice = Some(PeerId(0));
        assert_eq!(auth.authenticate_with_cert(None, None, b"", alice), alice);
        assert_eq!(
            auth.authenticate_with_cert(Some(b"alice"), None, b"alice-token", alice),
            alice
        );
        assert_eq!(
            auth.authenticate_with_cert(None, Some("alice"), b"", alice),
            alice
        );
        // Another peer's name or token, or a wrong token: refused.
        assert_eq!(
            auth.authenticate_with_cert(Some(b"bob"), None, b"", alice),
            None
        );
        assert_eq!(
            auth.authenticate_with_cert(None, None, b"bob-new", alice),
            None
        );
        assert_eq!(
            auth.authenticate_with_cert(None, None, b"alice-tokeN", alice),
            None
        );
        assert_eq!(
            auth.authenticate_with_cert(Some(b"nobody"), None, b"", alice),
            None
        );
        // No certificate: tokens as before, and an empty token is nobody's.
        assert_eq!(auth.authenticate_with_cert(None, None, b"", None), None);
        assert_eq!(
            auth.authenticate_with_cert(None, None, b"bob-old", None),
            Some(PeerId(1))
        );
        // A peer known by its certificate alone (no tokens).
        assert_eq!(
            auth.authenticate_with_cert(None, None, b"", Some(PeerId(2))),
            Some(PeerId(2))
        );
    }

    fn table() -> PeerAuth {
        let alice = ["alice-token".to_string()];
        let bob = ["bob-old".to_string(), "bob-new".to_string()];
        let carol: Vec<String> = Vec::new();
        PeerAuth::new(&[
            (PeerId(0), "alice", &alice[..]),
            (PeerId(1), "bob", &bob[..]),
            (PeerId(2), "carol", &carol[..]),
        ])
    }

    #[test]
    fn constant_time_eq_basics() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"Secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn username_names_the_peer() {
        let auth = table();
        assert_eq!(
            auth.authenticate(Some(b"alice"), None, b"alice-token"),
            Some(PeerId(0))
        );
        // The username wins over the path.
        assert_eq!(
            auth.authenticate(Some(b"alice"), Some("bob"), b"alice-token"),
            Some(PeerId(0))
        );
        assert_eq!(
            auth.authenticate(Some(b"alice"), Some("bob"), b"bob-new"),
            None
        );
    }

    #[test]
    fn path_names_the_peer() {
        let auth = table();
        assert_eq!(
            auth.authenticate(None, Some("bob"), b"bob-old"),
            Some(PeerId(1))
        );
        assert_eq!(auth.authenticate(None, Some("bob"), b"alice-token"), None);
    }

    #[test]
    fn token_alone() {
        let auth = table();
        assert_eq!(auth.authenticate(None, None, b"bob-new"), Some(PeerId(1)));
        assert_eq!(
            auth.authenticate(None, None, b"alice-token"),
            Some(PeerId(0))
        );
        assert_eq!(auth.authenticate(None, None, b"nobody"), None);
        assert_eq!(auth.authenticate(None, None, b""), None);
    }

    #[test]
    fn empty_username_falls_through() {
        let auth = table();
        // Empty username: the path decides.
        assert_eq!(
            auth.authenticate(Some(b""), Some("alice"), b"alice-token"),
            Some(PeerId(0))
        );
        // Empty username and empty path: the token decides.
        assert_eq!(
            auth.authenticate(Some(b""), Some(""), b"bob-old"),
            Some(PeerId(1))
        );
    }

    #[test]
    fn wrong_token() {
        let auth = table();
        assert_eq!(
            auth.authenticate(Some(b"alice"), None, b"alice-tokem"),
            None
        );
        assert_eq!(
            auth.authenticate(Some(b"alice"), None, b"alice-token "),
            None
        );
        assert_eq!(auth.authenticate(Some(b"alice"), None, b""), None);
        // A peer with no tokens can never authenticate.
        assert_eq!(auth.authenticate(Some(b"carol"), None, b""), None);
    }

    #[test]
    fn unknown_user() {
        let auth = table();
        assert_eq!(
            auth.authenticate(Some(b"mallory"), None, b"alice-token"),
            None
        );
        assert_eq!(
            auth.authenticate(None, Some("mallory"), b"alice-token"),
            None
        );
        assert_eq!(
            auth.authenticate(Some(&[0xff, 0xfe]), None, b"alice-token"),
            None
        );
    }

    #[test]
    fn rotation_accepts_both_tokens() {
        let auth = table();
        for token in [&b"bob-old"[..], b"bob-new"] {
            assert_eq!(
                auth.authenticate(Some(b"bob"), None, token),
                Some(PeerId(1))
            );
            assert_eq!(auth.authenticate(None, Some("bob"), token), Some(PeerId(1)));
            assert_eq!(auth.authenticate(None, None, token), Some(PeerId(1)));
        }
    }

    #[test]
    fn shared_token_identifies_nobody() {
        let shared = ["same".to_string()];
        let auth = PeerAuth::new(&[(PeerId(0), "a", &shared[..]), (PeerId(1), "b", &shared[..])]);
        assert_eq!(auth.authenticate(None, None, b"same"), None);
        assert_eq!(
            auth.authenticate(Some(b"b"), None, b"same"),
            Some(PeerId(1))
        );
    }

    #[test]
    fn debug_hides_tokens() {
        let text = format!("{:?}", table());
        assert!(!text.contains("token"), "{text}");
        assert!(!text.contains("bob-old"), "{text}");
    }
}
