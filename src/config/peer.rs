//! Validated peers: one `[[peers]]` entry at a time, then what must be unique among them.
//!
//! [`check_peer`] runs one named check per concern, in the order of the keys in the file
//! (name, tokens, relation, asset, amounts, the outgoing transport, reachability); each error
//! names its key as `peers[i].key`. [`check_peers`] adds the checks across entries: names and
//! auth tokens are unique. Secrets are held as [`Secret`] and never quoted in a message.

use core::fmt;
use std::collections::HashMap;

use super::error::peer_key;
use super::raw::RawPeer;
use super::url::{parse_btp_url, parse_http_url, BtpUrl};
use super::ConfigError;
use crate::engine::rate::Rate;
use crate::engine::PeerId;
use crate::limits::PEERS_MAX;
use crate::wire::{check_address, ADDRESS_LEN_MAX};

/// A secret from the config (a BTP auth token). `Debug` does not print it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub(super) fn new(secret: String) -> Secret {
        Secret(secret)
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret's bytes (as BTP carries them).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Our business relation with a peer: who is upstream of whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Relation {
    /// Downstream of us: gets addresses under ours.
    Child,
    /// A sibling.
    Peer,
    /// Upstream of us.
    Parent,
}

impl Relation {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Child => "child",
            Relation::Peer => "peer",
            Relation::Parent => "parent",
        }
    }
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How we dial a peer: set by `btp_url`, `outgoing_token` and `outgoing_username`.
#[derive(Debug, Clone)]
pub struct Dial {
    /// Where.
    pub url: BtpUrl,
    /// The `auth_token` we present.
    pub token: Secret,
    /// The `auth_username` we present (empty by default).
    pub username: String,
    /// `btp_dial = "per_core"` (the default): every core dials its own connection, so
    /// traffic to the peer never crosses cores. `"single"`: only the peer's home core dials
    /// and the other cores hand their Prepares over; for BTP servers that keep one
    /// connection per account and drop the older ones (ilp-plugin-btp, ilp-plugin-mini-accounts).
    pub per_core: bool,
}

/// One `[[peers]]` entry, checked.
///
/// A peer whose `asset_code` has no entry in `[rates]` is allowed, but only same-asset
/// forwarding works for it: a Prepare between it and a peer of another asset code is rejected
/// (T00), because there is no rate. [`Config::warnings`](super::Config::warnings) lists such
/// peers.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its index in every per-peer table.
    pub id: PeerId,
    /// Its name: the BTP `auth_username` it presents, and the last segment of its address.
    pub name: String,
    /// Its ILP address, `<ilp_address>.<name>`.
    pub address: String,
    /// Tokens it may present when it dials in (several, for rotation). A peer that presents
    /// an empty username is identified by its token, so no two peers share one. Empty only
    /// for a peer we dial and that never dials us.
    pub auth_tokens: Vec<Secret>,
    /// Our relation.
    pub relation: Relation,
    /// Its asset code (as in `[rates]`, case-sensitive).
    pub asset_code: String,
    /// Amounts on its links are in units of 10^-scale (`0..=`[`Rate::SCALE_MAX`]).
    pub asset_scale: u8,
    /// How much it may owe us: incoming holds plus posted balance.
    pub max_balance: u64,
    /// The largest amount one Prepare from it may carry (`u64::MAX` by default).
    pub max_packet_amount: u64,
    /// Prepares per second it may send, all cores together (RFC 18); over it is T05. `None`:
    /// `limits.peer_packets_per_second` (0 there: no limit).
    pub max_packets_per_second: Option<u64>,
    /// Amount per second (in its units) its Prepares may carry, all cores together; over it
    /// is T04. `None`: `limits.peer_amount_per_second` (0 there: no limit).
    pub max_amount_per_second: Option<u64>,
    /// How we reach it ourselves, if we do.
    pub outgoing: Outgoing,
    /// We send it our routes (CCP) when it asks; by default to children and peers.
    pub send_routes: bool,
    /// We take its routes (CCP); by default from parents and peers.
    pub receive_routes: bool,
    /// Removed by a reload: it keeps its slot (its id, balance and counters) until the router
    /// stops, drained, with no tokens, routes or group (see [`Config::keep_ids_of`]).
    ///
    /// [`Config::keep_ids_of`]: super::Config::keep_ids_of
    pub removed: bool,
    /// Its `max_balance` holds across every router of `[cluster_state]` together
    /// (`shared_limit`), not on this router alone.
    pub shared_limit: bool,
}

impl Peer {
    /// How we dial it over BTP, when we do (`btp_url`).
    pub fn dial(&self) -> Option<&Dial> {
        match &self.outgoing {
            Outgoing::Btp(dial) => Some(dial),
            Outgoing::None | Outgoing::Http(_) => None,
        }
    }

    /// How we send it its Prepares over HTTP, when we do (`http_url`).
    pub fn http(&self) -> Option<&HttpDial> {
        match &self.outgoing {
            Outgoing::Http(http) => Some(http),
            Outgoing::None | Outgoing::Btp(_) => None,
        }
    }
}

/// How we reach a peer ourselves: one transport at most, since `btp_url` and `http_url`
/// exclude each other.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// We never dial it: it dials in (with one of its `auth_tokens`).
    None,
    /// We dial it over BTP (`btp_url`).
    Btp(Dial),
    /// We POST it its Prepares over HTTP (`http_url`).
    Http(HttpDial),
}

/// How we send a peer its Prepares over HTTP (RFC 35): POST to `url`, `Bearer <token>`.
#[derive(Debug, Clone)]
pub struct HttpDial {
    /// Where: host, port and the path, sent verbatim.
    pub url: BtpUrl,
    /// The token after `Bearer ` (verbatim: it may contain `:`).
    pub token: Secret,
}

/// How a peer uses TLS client certificates, as far as its other keys care.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CertUse {
    /// Its certificate stands for it on our listeners (`client_cert_sha256`,
    /// `client_cert_name`): it needs no token.
    pub(super) identifies: bool,
    /// We present a client certificate when we dial it (`client_cert_file`): we need no
    /// `outgoing_token`.
    pub(super) presents: bool,
}

// ---------------------------------------------------------------------------------------------
// All peers
// ---------------------------------------------------------------------------------------------

/// Checks every `[[peers]]` entry, then that names and auth tokens are unique. Returns the
/// peers in file order (the `i`-th has id `i`) and their ids by name.
pub(super) fn check_peers(
    raw: Vec<RawPeer>,
    ilp_address: &str,
    listening: bool,
    certs: &[CertUse],
) -> Result<(Vec<Peer>, HashMap<String, PeerId>), ConfigError> {
    if raw.len() > PEERS_MAX {
        return Err(ConfigError::invalid(
            "peers",
            format!("{} peers, at most {PEERS_MAX}", raw.len()),
        ));
    }
    let mut peers = Vec::with_capacity(raw.len());
    let mut peer_ids: HashMap<String, PeerId> = HashMap::with_capacity(raw.len());
    // Token -> (peer index, token index), to find tokens shared between peers.
    let mut tokens: HashMap<String, (usize, usize)> = HashMap::new();
    for (i, raw_peer) in raw.into_iter().enumerate() {
        let id = PeerId(u16::try_from(i).expect("peer count checked"));
        let cert = certs.get(i).copied().unwrap_or_default();
        let peer = check_peer(i, id, raw_peer, ilp_address, listening, cert)?;
        check_name_unique(i, &peer, &peer_ids)?;
        check_tokens_unique(i, &peer, &peers, &mut tokens)?;
        peer_ids.insert(peer.name.clone(), id);
        peers.push(peer);
    }
    Ok((peers, peer_ids))
}

/// `peers[i].name` is no earlier peer's name.
fn check_name_unique(
    i: usize,
    peer: &Peer,
    peer_ids: &HashMap<String, PeerId>,
) -> Result<(), ConfigError> {
    match peer_ids.get(&peer.name) {
        None => Ok(()),
        Some(&first) => Err(ConfigError::invalid(
            peer_key(i, "name"),
            format!(
                "{:?} is already the name of peers[{}]; names must be unique",
                peer.name,
                first.index()
            ),
        )),
    }
}

/// No token of `peers[i]` appears twice, in it or in an earlier peer; records its tokens in
/// `tokens` (token -> peer index, token index).
fn check_tokens_unique(
    i: usize,
    peer: &Peer,
    peers: &[Peer],
    tokens: &mut HashMap<String, (usize, usize)>,
) -> Result<(), ConfigError> {
    for (j, token) in peer.auth_tokens.iter().enumerate() {
        if let Some(&(other, other_j)) = tokens.get(token.expose()) {
            let message = if other == i {
                format!("the same token as peers[{i}].auth_tokens[{other_j}]")
            } else {
                format!(
                    "the same token as peers[{other}].auth_tokens[{other_j}]: peers {:?} and \
                     {:?} share a token, but a peer that presents an empty username is \
                     identified by its token, so each token must belong to one peer",
                    peers.get(other).map_or("", |p: &Peer| p.name.as_str()),
                    peer.name
                )
            };
            return Err(ConfigError::invalid(
                format!("peers[{i}].auth_tokens[{j}]"),
                message,
            ));
        }
        tokens.insert(token.expose().to_owned(), (i, j));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// One peer
// ---------------------------------------------------------------------------------------------

/// Checks one `[[peers]]` entry on its own (uniqueness is [`check_peers`]'s).
fn check_peer(
    i: usize,
    id: PeerId,
    mut raw: RawPeer,
    ilp_address: &str,
    listening: bool,
    cert: CertUse,
) -> Result<Peer, ConfigError> {
    let address = check_name(i, &raw.name, ilp_address)?;
    let auth_tokens = check_auth_tokens(i, std::mem::take(&mut raw.auth_tokens))?;
    let relation = check_relation(i, &raw.relation)?;
    check_asset_code(i, &raw.asset_code)?;
    let asset_scale = check_asset_scale(i, raw.asset_scale)?;
    let amounts = check_amounts(i, &raw)?;
    let outgoing = check_outgoing(i, &raw, cert.presents)?;
    check_reachable(
        i,
        &raw.name,
        &outgoing,
        &auth_tokens,
        listening,
        cert.identifies,
    )?;
    Ok(Peer {
        id,
        name: raw.name,
        address,
        auth_tokens,
        relation,
        asset_code: raw.asset_code,
        asset_scale,
        max_balance: amounts.max_balance,
        max_packet_amount: amounts.max_packet_amount,
        max_packets_per_second: amounts.max_packets_per_second,
        max_amount_per_second: amounts.max_amount_per_second,
        outgoing,
        send_routes: raw.send_routes.unwrap_or(relation != Relation::Parent),
        receive_routes: raw.receive_routes.unwrap_or(relation != Relation::Child),
        removed: false,
        shared_limit: raw.shared_limit,
    })
}

/// `peers[i].name`: a valid last segment of an address; returns the peer's address.
fn check_name(i: usize, name: &str, ilp_address: &str) -> Result<String, ConfigError> {
    if name.is_empty() {
        return Err(ConfigError::invalid(
            peer_key(i, "name"),
            "empty; a peer needs a name of A-Z a-z 0-9 _ ~ - (it is the BTP username it \
             presents and the last segment of its ILP address)",
        ));
    }
    if let Some((at, ch)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '~' | '-')))
    {
        return Err(ConfigError::invalid(
            peer_key(i, "name"),
            format!(
                "{name:?} has {ch:?} at byte {at}; a name may only hold A-Z a-z 0-9 _ ~ - \
                 (it becomes the last segment of the ILP address {ilp_address}.<name>)"
            ),
        ));
    }
    let address = format!("{ilp_address}.{name}");
    if check_address(address.as_bytes()).is_err() {
        return Err(ConfigError::invalid(
            peer_key(i, "name"),
            format!(
                "{name:?} makes the peer's address {} bytes long, over the maximum \
                 {ADDRESS_LEN_MAX}",
                address.len()
            ),
        ));
    }
    Ok(address)
}

/// `peers[i].auth_tokens`: none empty.
fn check_auth_tokens(i: usize, tokens: Vec<String>) -> Result<Vec<Secret>, ConfigError> {
    let mut auth_tokens = Vec::with_capacity(tokens.len());
    for (j, token) in tokens.into_iter().enumerate() {
        if token.is_empty() {
            return Err(ConfigError::invalid(
                format!("peers[{i}].auth_tokens[{j}]"),
                "empty token; remove it or write the token",
            ));
        }
        auth_tokens.push(Secret(token));
    }
    Ok(auth_tokens)
}

/// `peers[i].relation`: `child`, `peer` or `parent`.
fn check_relation(i: usize, relation: &str) -> Result<Relation, ConfigError> {
    match relation {
        "child" => Ok(Relation::Child),
        "peer" => Ok(Relation::Peer),
        "parent" => Ok(Relation::Parent),
        other => Err(ConfigError::invalid(
            peer_key(i, "relation"),
            format!("{other:?} is not one of \"child\", \"peer\", \"parent\""),
        )),
    }
}

/// `peers[i].asset_code`: not empty, no surrounding whitespace.
fn check_asset_code(i: usize, asset_code: &str) -> Result<(), ConfigError> {
    if asset_code.is_empty() {
        return Err(ConfigError::invalid(
            peer_key(i, "asset_code"),
            "empty; write the asset's code as in [rates], e.g. \"USD\"",
        ));
    }
    if asset_code.trim() != asset_code {
        return Err(ConfigError::invalid(
            peer_key(i, "asset_code"),
            format!("{asset_code:?} has leading or trailing whitespace"),
        ));
    }
    Ok(())
}

/// `peers[i].asset_scale`: at most [`Rate::SCALE_MAX`].
fn check_asset_scale(i: usize, asset_scale: u64) -> Result<u8, ConfigError> {
    match u8::try_from(asset_scale) {
        Ok(scale) if scale <= Rate::SCALE_MAX => Ok(scale),
        _ => Err(ConfigError::invalid(
            peer_key(i, "asset_scale"),
            format!("{asset_scale} is over the maximum {}", Rate::SCALE_MAX),
        )),
    }
}

/// A peer's amounts and rates, checked.
struct Amounts {
    max_balance: u64,
    max_packet_amount: u64,
    max_packets_per_second: Option<u64>,
    max_amount_per_second: Option<u64>,
}

/// `peers[i].max_balance`, `max_packet_amount` and the per-second rates: amounts fit `u64`,
/// and a rate, when set, is not 0.
fn check_amounts(i: usize, raw: &RawPeer) -> Result<Amounts, ConfigError> {
    let key = |field: &str| peer_key(i, field);
    let max_balance = parse_amount(&key("max_balance"), &raw.max_balance)?;
    let max_packet_amount = match &raw.max_packet_amount {
        None => u64::MAX,
        Some(text) => parse_amount(&key("max_packet_amount"), text)?,
    };
    let max_amount_per_second = match &raw.max_amount_per_second {
        None => None,
        Some(text) => Some(parse_amount(&key("max_amount_per_second"), text)?),
    };
    let max_packets_per_second = raw.max_packets_per_second;
    if max_packets_per_second == Some(0) || max_amount_per_second == Some(0) {
        let which = if max_packets_per_second == Some(0) {
            "max_packets_per_second"
        } else {
            "max_amount_per_second"
        };
        return Err(ConfigError::invalid(
            key(which),
            "0 would refuse every Prepare; leave the key out for no limit",
        ));
    }
    Ok(Amounts {
        max_balance,
        max_packet_amount,
        max_packets_per_second,
        max_amount_per_second,
    })
}

/// `peers[i].btp_url` or `http_url` (not both) and the keys that go with them:
/// `outgoing_token`, and for BTP `outgoing_username` and `btp_dial`.
fn check_outgoing(i: usize, raw: &RawPeer, cert: bool) -> Result<Outgoing, ConfigError> {
    match (raw.btp_url.as_deref(), raw.http_url.as_deref()) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            peer_key(i, "http_url"),
            "set together with btp_url: a peer we dial has one transport",
        )),
        (None, None) => {
            let message = format!(
                "set, but neither peers[{i}].btp_url nor peers[{i}].http_url is: it is only \
                 used when we dial the peer"
            );
            let unused = [
                ("outgoing_token", raw.outgoing_token.is_some()),
                ("outgoing_username", raw.outgoing_username.is_some()),
                ("btp_dial", raw.btp_dial.is_some()),
            ];
            check_unset(i, &unused, &message)?;
            Ok(Outgoing::None)
        }
        (None, Some(url)) => check_http_dial(i, raw, url, cert).map(Outgoing::Http),
        (Some(url), None) => check_btp_dial(i, raw, url, cert).map(Outgoing::Btp),
    }
}

/// The first of `fields` (name, whether set) that is set is an error with `message`.
fn check_unset(i: usize, fields: &[(&str, bool)], message: &str) -> Result<(), ConfigError> {
    match fields.iter().find(|&&(_, set)| set) {
        None => Ok(()),
        Some(&(field, _)) => Err(ConfigError::invalid(peer_key(i, field), message)),
    }
}

/// `peers[i].http_url` (the text `url`) with its `outgoing_token`.
fn check_http_dial(
    i: usize,
    raw: &RawPeer,
    url: &str,
    cert: bool,
) -> Result<HttpDial, ConfigError> {
    let unused = [
        ("outgoing_username", raw.outgoing_username.is_some()),
        ("btp_dial", raw.btp_dial.is_some()),
    ];
    check_unset(i, &unused, "only used with btp_url, not http_url")?;
    let url = parse_http_url(&peer_key(i, "http_url"), url)?;
    Ok(HttpDial {
        url,
        token: check_outgoing_token(i, raw, "http_url", cert)?,
    })
}

/// `peers[i].btp_url` (the text `url`) with its `outgoing_token`, `outgoing_username` and
/// `btp_dial`.
fn check_btp_dial(i: usize, raw: &RawPeer, url: &str, cert: bool) -> Result<Dial, ConfigError> {
    let url = parse_btp_url(&peer_key(i, "btp_url"), url)?;
    let token = check_outgoing_token(i, raw, "btp_url", cert)?;
    let per_core = match raw.btp_dial.as_deref() {
        None | Some("per_core") => true,
        Some("single") => false,
        Some(other) => {
            return Err(ConfigError::invalid(
                peer_key(i, "btp_dial"),
                format!("{other:?}: use \"per_core\" or \"single\""),
            ))
        }
    };
    Ok(Dial {
        url,
        token,
        username: raw.outgoing_username.clone().unwrap_or_default(),
        per_core,
    })
}

/// `peers[i].outgoing_token`: required and not empty with `url_key`, unless we present a
/// client certificate (`cert`).
fn check_outgoing_token(
    i: usize,
    raw: &RawPeer,
    url_key: &str,
    cert: bool,
) -> Result<Secret, ConfigError> {
    match &raw.outgoing_token {
        // Our client certificate stands for us: an empty token goes with it.
        None if cert => Ok(Secret(String::new())),
        None => Err(ConfigError::invalid(
            peer_key(i, "outgoing_token"),
            format!(
                "required with {url_key}: the token we present to {:?}",
                raw.name
            ),
        )),
        Some(token) if token.is_empty() => Err(ConfigError::invalid(
            peer_key(i, "outgoing_token"),
            "empty token",
        )),
        Some(token) => Ok(Secret(token.clone())),
    }
}

/// A peer we do not dial must be able to dial in: it has an auth token
/// (`peers[i].auth_tokens`) and we listen (else `peers[i].btp_url` is missing).
fn check_reachable(
    i: usize,
    name: &str,
    outgoing: &Outgoing,
    auth_tokens: &[Secret],
    listening: bool,
    by_cert: bool,
) -> Result<(), ConfigError> {
    if !matches!(outgoing, Outgoing::None) {
        return Ok(());
    }
    if auth_tokens.is_empty() && !by_cert {
        return Err(ConfigError::invalid(
            peer_key(i, "auth_tokens"),
            format!(
                "no token, so {name:?} could never authenticate: give at least one, set \
                 btp_url for a peer that we dial, or client_cert_sha256 / client_cert_name \
                 for a peer known by its TLS client certificate"
            ),
        ));
    }
    if !listening {
        return Err(ConfigError::invalid(
            peer_key(i, "btp_url"),
            format!(
                "not set, and listen.btp is not set either, so {name:?} could never connect: \
                 set listen.btp for peers to dial in, or btp_url to dial it"
            ),
        ));
    }
    Ok(())
}

/// An amount: a string of decimal digits that fits `u64`.
fn parse_amount(key: &str, text: &str) -> Result<u64, ConfigError> {
    const HELP: &str = "write a whole number of the peer's units as a string of digits only \
                        (no sign, spaces, separators, point or exponent), e.g. \"1000000\"";
    if text.is_empty() {
        return Err(ConfigError::invalid(key, format!("empty; {HELP}")));
    }
    if let Some((at, ch)) = text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        return Err(ConfigError::invalid(
            key,
            format!("{text:?} is not a whole number ({ch:?} at byte {at}); {HELP}"),
        ));
    }
    text.parse::<u64>()
        .map_err(|_| ConfigError::invalid(key, format!("{text} is over the maximum {}", u64::MAX)))
}
