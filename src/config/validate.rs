//! From the file's shape to a [`Config`]: every check of meaning, in the order of the keys.
//!
//! [`Config::validate`] calls one named check per table or key (our address, the spread, the
//! timing, `[limits]`, `[listen]`, `[[peers]]`, `[[routes]]` and `default_route`, `[rates]`,
//! `[state]`) and stops at the first failure, which names its key. Nothing is built into the
//! [`Config`] before every check has passed.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use super::error::toml_key;
use super::group::{check_groups, Group};
use super::limits::check_limits;
use super::peer::{check_peers, CertUse};
use super::raw::{RawAdmin, RawConfig, RawListen, RawRoute, RawState};
use super::tls::{check_tls, PeerTls};
use super::{
    AdminConfig, Config, ConfigError, Limits, Listen, Peer, Route, Secret, StateConfig,
    ADMIN_LISTEN_DEFAULT, MSYNC_INTERVAL_MS_DEFAULT,
};
use crate::engine::rate::{Decimal, Rate};
use crate::engine::route::{Hop, RouteError, RouteTable};
use crate::engine::{GroupId, PeerId};
use crate::limits::MAX_HOLD_TIME_MS_MAX;
use crate::wire::check_address;

/// How an ILP address is written, for error messages.
const ADDRESS_HELP: &str = "write a scheme (g, test, private, example, local, …) and one or \
     more segments of A-Z a-z 0-9 _ ~ -, separated by dots, at most 1023 bytes, e.g. \"g.router\"";

impl Config {
    /// Checks every value of `raw`; see the module docs.
    pub(super) fn validate(raw: RawConfig) -> Result<Config, ConfigError> {
        let ilp_address = check_ilp_address(raw.ilp_address)?;
        let spread = check_spread(raw.spread.as_deref())?;
        let (min_message_window_ms, max_hold_time_ms) =
            check_timing(raw.min_message_window_ms, raw.max_hold_time_ms)?;
        let limits = Limits::from_raw(raw.limits)?;
        check_limits(&limits, min_message_window_ms)?;
        let listen = check_listen(raw.listen)?;
        let listening_tls = listen.btp_tls.is_some() || listen.http_tls.is_some();
        let listening = listen.btp.is_some() || listen.http.is_some() || listening_tls;
        let mut raw_peers = raw.peers;
        let peer_tls: Vec<PeerTls> = raw_peers.iter_mut().map(PeerTls::take).collect();
        let certs: Vec<CertUse> = peer_tls.iter().map(PeerTls::cert_use).collect();
        let (peers, peer_ids) = check_peers(raw_peers, &ilp_address, listening, &certs)?;
        if peers.len() > limits.peers_max {
            return Err(ConfigError::invalid(
                "limits.peers_max",
                format!(
                    "{} peers are configured, over limits.peers_max ({})",
                    peers.len(),
                    limits.peers_max
                ),
            ));
        }
        let (groups, group_ids) = check_groups(raw.groups, &peers, &peer_ids)?;
        let routes = check_routes(raw.routes, &peers, &peer_ids, &groups, &group_ids)?;
        let default_route = match raw.default_route {
            None => None,
            Some(name) => Some(peer_named(&peers, &peer_ids, "default_route", &name)?),
        };
        let route_table = RouteTable::build(
            ilp_address.as_bytes(),
            routes.iter().map(|r| (r.prefix.as_bytes(), r.hop)),
            default_route,
        )
        .map_err(|e| route_error(e, &routes))?;
        let rates = check_prices(raw.rates)?;
        check_rates(&peers, &rates, spread)?;
        let state = check_state(raw.state)?;
        let admin = raw.admin.map(check_admin).transpose()?;
        let tls = check_tls(raw.tls, &peer_tls, &peers, listening_tls)?;
        let cluster_state = raw
            .cluster_state
            .map(super::cluster::check_cluster_state)
            .transpose()?;
        if cluster_state.is_none() {
            if let Some(i) = peers.iter().position(|p| p.shared_limit) {
                return Err(ConfigError::invalid(
                    format!("peers[{i}].shared_limit"),
                    "true, but there is no [cluster_state]: a limit is shared with other \
                     routers through the etcd cluster it names",
                ));
            }
        }
        Ok(Config {
            ilp_address,
            spread,
            default_route,
            min_message_window_ms,
            max_hold_time_ms,
            listen,
            peers,
            peer_ids,
            groups,
            routes,
            route_table,
            rates,
            limits,
            state,
            admin,
            tls,
            cluster_state,
        })
    }
}

/// `[admin]`: a listener (loopback by default), and a token (or a file holding it), required
/// when the listener is not on loopback.
fn check_admin(raw: RawAdmin) -> Result<AdminConfig, ConfigError> {
    let listen = listen_address("admin.listen", raw.listen)?
        .unwrap_or_else(|| ADMIN_LISTEN_DEFAULT.parse().expect("a valid address"));
    let token = match (raw.token, raw.token_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                "admin.token_file",
                "set together with admin.token; give one of them",
            ))
        }
        (Some(token), None) => Some(token),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::invalid(
                    "admin.token_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            Some(text.trim_end_matches(['\n', '\r']).to_owned())
        }
        (None, None) => None,
    };
    if token.as_deref() == Some("") {
        return Err(ConfigError::invalid(
            "admin.token",
            "empty; give a long random token, or leave it out on a loopback listener",
        ));
    }
    if token.is_none() && !listen.ip().is_loopback() {
        return Err(ConfigError::invalid(
            "admin.listen",
            format!(
                "{listen} is not a loopback address and no admin.token (or admin.token_file) \
                 is set; the admin API changes balances and drains peers, so it needs a token \
                 anywhere but on loopback"
            ),
        ));
    }
    let metrics_token = raw.metrics_token.unwrap_or(false);
    if metrics_token && token.is_none() {
        return Err(ConfigError::invalid(
            "admin.metrics_token",
            "true, but no admin.token is set",
        ));
    }
    Ok(AdminConfig {
        listen,
        token: token.map(Secret::new),
        metrics_token,
    })
}

/// `ilp_address`: a valid ILP address (left out only when a parent tells us ours; see
/// [`Config::parent_to_ask`]).
fn check_ilp_address(ilp_address: Option<String>) -> Result<String, ConfigError> {
    let Some(ilp_address) = ilp_address else {
        return Err(ConfigError::invalid(
            "ilp_address",
            "missing: set it, or give a peer with relation = \"parent\" a btp_url and an \
             outgoing_token, and the router asks that parent for its address (ILDCP) at start",
        ));
    };
    if check_address(ilp_address.as_bytes()).is_err() {
        return Err(ConfigError::invalid(
            "ilp_address",
            format!("{ilp_address:?} is not a valid ILP address: {ADDRESS_HELP}"),
        ));
    }
    Ok(ilp_address)
}

/// `spread`: a decimal in `[0, 1)`, `"0"` when not set.
fn check_spread(text: Option<&str>) -> Result<Decimal, ConfigError> {
    let text = text.unwrap_or("0");
    let spread = Decimal::parse(text).map_err(|e| {
        ConfigError::invalid("spread", format!("{text:?} is not a decimal number: {e}"))
    })?;
    // 10^fraction_digits fits u128: fraction_digits <= 38.
    if spread.mantissa() >= 10u128.pow(u32::from(spread.fraction_digits())) {
        return Err(ConfigError::invalid(
            "spread",
            format!(
                "{spread} is not below 1: it is the fraction kept on each conversion, \
                 in [0, 1) (e.g. \"0.002\" keeps 0.2 %)"
            ),
        ));
    }
    Ok(spread)
}

/// `min_message_window_ms` (at least 1, default 1000) and `max_hold_time_ms` (at most a day,
/// default 30000): the window fits in the hold.
fn check_timing(window: Option<u64>, hold: Option<u64>) -> Result<(u64, u64), ConfigError> {
    let min_message_window_ms = window.unwrap_or(1000);
    let max_hold_time_ms = hold.unwrap_or(30_000);
    if min_message_window_ms == 0 {
        return Err(ConfigError::invalid(
            "min_message_window_ms",
            "0 is below the minimum 1",
        ));
    }
    if max_hold_time_ms > MAX_HOLD_TIME_MS_MAX {
        return Err(ConfigError::invalid(
            "max_hold_time_ms",
            format!("{max_hold_time_ms} is over the maximum {MAX_HOLD_TIME_MS_MAX} (one day)"),
        ));
    }
    if min_message_window_ms > max_hold_time_ms {
        return Err(ConfigError::invalid(
            "min_message_window_ms",
            format!(
                "{min_message_window_ms} is over max_hold_time_ms ({max_hold_time_ms}): \
                 no Prepare could ever be forwarded"
            ),
        ));
    }
    Ok((min_message_window_ms, max_hold_time_ms))
}

/// `listen.btp`, `listen.http`, `listen.btp_tls` and `listen.http_tls`: socket addresses, no
/// two the same.
fn check_listen(raw: RawListen) -> Result<Listen, ConfigError> {
    let listen = Listen {
        btp: listen_address("listen.btp", raw.btp)?,
        http: listen_address("listen.http", raw.http)?,
        btp_tls: listen_address("listen.btp_tls", raw.btp_tls)?,
        http_tls: listen_address("listen.http_tls", raw.http_tls)?,
    };
    let all = [
        ("listen.btp", listen.btp),
        ("listen.http", listen.http),
        ("listen.btp_tls", listen.btp_tls),
        ("listen.http_tls", listen.http_tls),
    ];
    for (i, (key, address)) in all.iter().enumerate() {
        let Some(address) = address else { continue };
        if let Some((other, _)) = all[..i].iter().find(|(_, a)| a.as_ref() == Some(address)) {
            return Err(ConfigError::invalid(
                *key,
                format!("the same address as {other}"),
            ));
        }
    }
    Ok(listen)
}

/// The listener address `key`, if set: an IP address and port, nothing resolved.
fn listen_address(key: &str, text: Option<String>) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(text) = text else {
        return Ok(None);
    };
    text.parse::<SocketAddr>().map(Some).map_err(|_| {
        ConfigError::invalid(
            key,
            format!(
                "{text:?} is not an IP address and port, e.g. \"127.0.0.1:7768\" or \
                 \"[::]:7768\" (host names are not resolved)"
            ),
        )
    })
}

/// The id of the peer `name`, given at `key`.
fn peer_named(
    peers: &[Peer],
    peer_ids: &HashMap<String, PeerId>,
    key: &str,
    name: &str,
) -> Result<PeerId, ConfigError> {
    peer_ids.get(name).copied().ok_or_else(|| {
        let known: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
        let known = if known.is_empty() {
            "there are no peers".to_owned()
        } else {
            format!("the peers are {}", known.join(", "))
        };
        ConfigError::invalid(key, format!("no peer is named {name:?}; {known}"))
    })
}

/// `[[routes]]` in file order (each names a `peer` or a `group`, not both), then one implicit
/// route per peer to its own address, unless a configured route has exactly that prefix.
fn check_routes(
    raw: Vec<RawRoute>,
    peers: &[Peer],
    peer_ids: &HashMap<String, PeerId>,
    groups: &[Group],
    group_ids: &HashMap<String, GroupId>,
) -> Result<Vec<Route>, ConfigError> {
    let mut routes = Vec::with_capacity(raw.len() + peers.len());
    for (k, route) in raw.into_iter().enumerate() {
        let hop = match (route.peer, route.group) {
            (Some(peer), None) => Hop::Peer(peer_named(
                peers,
                peer_ids,
                &format!("routes[{k}].peer"),
                &peer,
            )?),
            (None, Some(group)) => Hop::Group(group_ids.get(&group).copied().ok_or_else(|| {
                let known: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
                let known = match known.is_empty() {
                    true => "there are no [[groups]]".to_owned(),
                    false => format!("the groups are {}", known.join(", ")),
                };
                ConfigError::invalid(
                    format!("routes[{k}].group"),
                    format!("no group is named {group:?}; {known}"),
                )
            })?),
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    format!("routes[{k}]"),
                    "has both peer and group; a route leads to one peer or one group",
                ))
            }
            (None, None) => {
                return Err(ConfigError::invalid(
                    format!("routes[{k}]"),
                    "has neither peer nor group; name where the route leads",
                ))
            }
        };
        routes.push(Route {
            prefix: route.prefix,
            hop,
            implicit: false,
        });
    }
    let explicit = routes.len();
    for peer in peers {
        if !routes[..explicit].iter().any(|r| r.prefix == peer.address) {
            routes.push(Route {
                prefix: peer.address.clone(),
                hop: Hop::Peer(peer.id),
                implicit: true,
            });
        }
    }
    Ok(routes)
}

/// Maps a route table error to the key of the route at fault.
pub(super) fn route_error(error: RouteError, routes: &[Route]) -> ConfigError {
    // The index of a route in `routes`, as the key that made it.
    let explicit = routes.iter().take_while(|r| !r.implicit).count();
    let key = |index: usize| {
        if index < explicit {
            format!("routes[{index}].prefix")
        } else {
            match routes[index].hop {
                Hop::Peer(peer) => format!("peers[{}].name", peer.index()),
                Hop::Group(group) => format!("groups[{}].name", group.index()),
            }
        }
    };
    match error {
        RouteError::InvalidOwnAddress { address } => ConfigError::invalid(
            "ilp_address",
            format!(
                "\"{}\" is not a valid ILP address: {ADDRESS_HELP}",
                address.escape_ascii()
            ),
        ),
        RouteError::InvalidPrefix { index, prefix } => ConfigError::invalid(
            key(index),
            format!(
                "\"{}\" is neither an ILP address nor a bare scheme (g, test, private, \
                 example, local, …): {ADDRESS_HELP}",
                prefix.escape_ascii()
            ),
        ),
        RouteError::DuplicatePrefix {
            first,
            second,
            prefix,
        } => ConfigError::invalid(
            key(second),
            format!(
                "\"{}\" is also the prefix of {}; each prefix may have one route",
                prefix.escape_ascii(),
                key(first).strip_suffix(".prefix").unwrap_or(&key(first))
            ),
        ),
        RouteError::TooManyRoutes { max } => {
            ConfigError::invalid("routes", format!("more than {max} routes"))
        }
    }
}

/// `[rates]`: each price a decimal above 0. Sorted by asset code.
fn check_prices(raw: BTreeMap<String, String>) -> Result<Vec<(String, Decimal)>, ConfigError> {
    let mut rates = Vec::with_capacity(raw.len());
    for (code, text) in raw {
        let price = check_price(&code, &text)?;
        rates.push((code, price));
    }
    Ok(rates)
}

/// `rates.<code>`: a decimal above 0.
fn check_price(code: &str, text: &str) -> Result<Decimal, ConfigError> {
    let key = format!("rates.{}", toml_key(code));
    let price = Decimal::parse(text).map_err(|e| {
        ConfigError::invalid(&key, format!("{text:?} is not a decimal number: {e}"))
    })?;
    if price.is_zero() {
        return Err(ConfigError::invalid(
            key,
            format!(
                "zero; a price is the value of one whole {code} in a common unit and must be \
                 above 0 (leave the asset out to forward it only to peers of the same asset)"
            ),
        ));
    }
    Ok(price)
}

/// `[state]`: `dir`, when set, is not empty; `msync_interval_ms` defaults to
/// [`MSYNC_INTERVAL_MS_DEFAULT`].
fn check_state(raw: RawState) -> Result<StateConfig, ConfigError> {
    let state = StateConfig {
        dir: raw.dir,
        msync_interval_ms: raw.msync_interval_ms.unwrap_or(MSYNC_INTERVAL_MS_DEFAULT),
    };
    if state.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
        return Err(ConfigError::invalid(
            "state.dir",
            "empty; name a directory, or leave [state] out to keep balances in memory",
        ));
    }
    Ok(state)
}

/// Checks that every pair of peer assets the engine may convert between has an exact rate.
fn check_rates(
    peers: &[Peer],
    rates: &[(String, Decimal)],
    spread: Decimal,
) -> Result<(), ConfigError> {
    let price = |code: &str| rates.iter().find(|(c, _)| c == code).map(|&(_, p)| p);
    // Distinct (code, scale), with the first peer that has it.
    let mut assets: Vec<(&str, u8, usize)> = Vec::new();
    for (i, p) in peers.iter().enumerate() {
        if !assets
            .iter()
            .any(|&(c, s, _)| c == p.asset_code && s == p.asset_scale)
        {
            assets.push((&p.asset_code, p.asset_scale, i));
        }
    }
    for &(code_in, scale_in, peer_in) in &assets {
        for &(code_out, scale_out, peer_out) in &assets {
            let (price_in, price_out, key) = if code_in == code_out {
                (Decimal::ONE, Decimal::ONE, "spread".to_owned())
            } else {
                match (price(code_in), price(code_out)) {
                    (Some(a), Some(b)) => (a, b, format!("rates.{}", toml_key(code_in))),
                    _ => continue,
                }
            };
            if let Err(e) = Rate::new(price_in, scale_in, price_out, scale_out, spread) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "no exact rate from {code_in} at scale {scale_in} (peers[{peer_in}]) \
                         to {code_out} at scale {scale_out} (peers[{peer_out}]) with spread \
                         {spread}: {e}"
                    ),
                ));
            }
        }
    }
    Ok(())
}
