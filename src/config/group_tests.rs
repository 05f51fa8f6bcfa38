//! `[[groups]]` and routes to groups: the shape of the example parses, and every
//! error names its key.

use super::*;
use crate::engine::group::Policy;
use crate::engine::GroupId;

fn backend(name: &str, code: &str, scale: u8) -> String {
    format!(
        "[[peers]]\nname = \"{name}\"\nauth_tokens = [\"{name}-secret\"]\nrelation = \"peer\"\n\
         asset_code = \"{code}\"\nasset_scale = {scale}\nmax_balance = \"1000\"\n"
    )
}

/// Three USD backends, `extra` (more tables) and then `group` (the `[[groups]]` body) and a
/// route to it.
fn config(group: &str, route: &str) -> String {
    format!(
        "ilp_address = \"g.router\"\n[listen]\nbtp = \"127.0.0.1:7768\"\n{}{}{}{}\
         [[groups]]\n{group}\n[[routes]]\nprefix = \"g.cluster\"\n{route}\n",
        backend("b1", "USD", 9),
        backend("b2", "USD", 9),
        backend("b3", "USD", 9),
        backend("eur", "EUR", 9),
    )
}

const GROUP: &str = "name = \"cluster\"\npeers = [\"b1\", \"b2\", \"b3\"]";

#[track_caller]
fn refused(text: &str, key: &str, part: &str) {
    let message = Config::from_toml_str(text)
        .expect_err("must be refused")
        .to_string();
    assert!(message.contains(key), "{message:?} should name {key:?}");
    assert!(message.contains(part), "{message:?} should say {part:?}");
}

#[test]
fn the_documented_shape_parses() {
    let text = config(
        "name = \"cluster\"\npeers = [\"b1\", \"b2\", \"b3\"]\npolicy = \"hash\"\n\
         hash_segments = 0\nweights = [1, 1, 2]",
        "group = \"cluster\"",
    );
    let config = Config::from_toml_str(&text).unwrap();
    let group = &config.groups()[0];
    assert_eq!(group.name, "cluster");
    assert_eq!(group.peers, vec![PeerId(0), PeerId(1), PeerId(2)]);
    assert_eq!(group.weights, vec![1, 1, 2]);
    assert_eq!(group.policy, Policy::Hash { hash_segments: 0 });
    let table = config.route_table();
    assert_eq!(table.lookup(b"g.cluster.x"), Some(Hop::Group(GroupId(0))));
    let engine = config.engine_config(CoreId(0), 2);
    assert_eq!(engine.groups.len(), 1);
    assert_eq!(engine.groups[0].backends[2].name, "b3");
    assert_eq!(engine.groups[0].backends[2].weight, 2);
}

#[test]
fn defaults_and_least_in_flight() {
    let text = config(
        &format!("{GROUP}\npolicy = \"least_in_flight\"\nbackend_in_flight_max = 5"),
        "group = \"cluster\"",
    );
    let config = Config::from_toml_str(&text).unwrap();
    let group = &config.groups()[0];
    assert_eq!(group.policy, Policy::LeastInFlight);
    assert_eq!(group.weights, vec![1, 1, 1]);
    assert_eq!(group.outlier, crate::engine::OutlierConfig::default());
    // Five over two cores: three each (rounded up).
    assert_eq!(
        config.engine_config(CoreId(1), 2).groups[0].backend_in_flight_max,
        3
    );
}

#[test]
fn group_errors_name_their_key() {
    let route = "group = \"cluster\"";
    refused(
        &config("name = \"cluster\"\npeers = [\"b1\", \"zed\"]", route),
        "groups[0].peers",
        "no peer is named \"zed\"",
    );
    refused(
        &config("name = \"cluster\"\npeers = []", route),
        "groups[0].peers",
        "empty",
    );
    refused(
        &config("name = \"cluster\"\npeers = [\"b1\", \"b1\"]", route),
        "groups[0].peers",
        "twice",
    );
    refused(
        &config("name = \"cluster\"\npeers = [\"b1\", \"eur\"]", route),
        "groups[0].peers",
        "one asset code and scale",
    );
    refused(
        &config(&format!("{GROUP}\nweights = [1, 2]"), route),
        "groups[0].weights",
        "2 weights for 3 peers",
    );
    refused(
        &config(&format!("{GROUP}\nweights = [1, 0, 1]"), route),
        "groups[0].weights",
        "1 to 1000",
    );
    refused(
        &config(&format!("{GROUP}\npolicy = \"random\""), route),
        "groups[0].policy",
        "\"hash\" or \"least_in_flight\"",
    );
    refused(
        &config(
            &format!("{GROUP}\npolicy = \"least_in_flight\"\nhash_segments = 1"),
            route,
        ),
        "groups[0].hash_segments",
        "only for policy",
    );
    refused(
        &config(&format!("{GROUP}\noutlier_window = 33"), route),
        "groups[0].outlier_window",
        "at most 32",
    );
    refused(
        &config(&format!("{GROUP}\nmax_ejection_percent = 101"), route),
        "groups[0].max_ejection_percent",
        "percentage",
    );
    refused(
        &config(
            &format!("{GROUP}\nejection_base_ms = 10\nejection_max_ms = 5"),
            route,
        ),
        "groups[0].ejection_max_ms",
        "from ejection_base_ms",
    );
    refused(
        &config(&format!("{GROUP}\nfavourite = 1"), route),
        "favourite",
        "unknown field",
    );
    let two = format!("{GROUP}\n[[groups]]\nname = \"cluster\"\npeers = [\"eur\"]");
    refused(&config(&two, route), "groups[1].name", "earlier group");
    let shared = format!("{GROUP}\n[[groups]]\nname = \"other\"\npeers = [\"b2\"]");
    refused(
        &config(&shared, route),
        "groups[1].peers",
        "already in groups[0]",
    );
}

#[test]
fn a_route_leads_to_one_peer_or_one_group() {
    refused(
        &config(GROUP, "group = \"cluster\"\npeer = \"b1\""),
        "routes[0]",
        "both peer and group",
    );
    refused(&config(GROUP, ""), "routes[0]", "neither peer nor group");
    refused(
        &config(GROUP, "group = \"clutser\""),
        "routes[0].group",
        "no group is named \"clutser\"; the groups are cluster",
    );
}
