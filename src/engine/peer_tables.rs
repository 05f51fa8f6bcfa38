//! What the engine derives from its peers' config once, at start (and at a reload): the
//! conversion factor of every (incoming, outgoing) asset pair, and each child's ILDCP answer.

use super::rate::{Decimal, Rate};
use super::{PeerConfig, PeerId};
use crate::wire::oer::{var_octets_len, Writer};
use crate::wire::FulfillRepr;
use std::sync::Arc;

/// Conversion factors for every (incoming, outgoing) peer pair, by asset.
#[derive(Debug, Clone)]
pub(super) struct Rates {
    /// The asset index of each peer.
    peer_asset: Vec<u16>,
    assets: usize,
    /// `assets × assets`; `None` where no rate is known (T00).
    matrix: Vec<Option<Rate>>,
}

impl Rates {
    pub(super) fn new(
        peers: &[PeerConfig],
        prices: &[(String, Decimal)],
        spread: Decimal,
    ) -> Rates {
        let mut assets: Vec<(&str, u8)> = Vec::new();
        let peer_asset = peers
            .iter()
            .map(|p| {
                let key = (p.asset_code.as_str(), p.asset_scale);
                let index = assets.iter().position(|&a| a == key).unwrap_or_else(|| {
                    assets.push(key);
                    assets.len() - 1
                });
                index as u16
            })
            .collect();
        let price = |code: &str| prices.iter().find(|(c, _)| c == code).map(|(_, p)| *p);
        let mut matrix = Vec::with_capacity(assets.len() * assets.len());
        for &(code_in, scale_in) in &assets {
            for &(code_out, scale_out) in &assets {
                let rate = if code_in == code_out {
                    // Same asset: prices cancel; the spread and scales still apply.
                    Rate::new(Decimal::ONE, scale_in, Decimal::ONE, scale_out, spread).ok()
                } else {
                    match (price(code_in), price(code_out)) {
                        (Some(pin), Some(pout)) => {
                            Rate::new(pin, scale_in, pout, scale_out, spread).ok()
                        }
                        _ => None,
                    }
                };
                matrix.push(rate);
            }
        }
        Rates {
            peer_asset,
            assets: assets.len(),
            matrix,
        }
    }

    #[inline]
    pub(super) fn get(&self, from: PeerId, to: PeerId) -> Option<Rate> {
        let i = usize::from(self.peer_asset[from.index()]);
        let j = usize::from(self.peer_asset[to.index()]);
        self.matrix[i * self.assets + j]
    }
}

/// The ILDCP response (RFC 31) for a child at `<own>.<segment>`: Fulfill(32 zero bytes,
/// var-octet address, UInt8 scale, var-octet code). Made once per child at start.
/// Per peer: its ILDCP answer, or `None` for one that is not a child.
pub(super) fn peer_config_replies(own: &[u8], peers: &[PeerConfig]) -> Vec<Option<Arc<[u8]>>> {
    peers
        .iter()
        .map(|p| p.ildcp_segment.as_deref().map(|s| ildcp_reply(own, s, p)))
        .collect()
}

/// A child's ILDCP answer.
fn ildcp_reply(own: &[u8], segment: &str, peer: &PeerConfig) -> Arc<[u8]> {
    let address_len = own.len() + 1 + segment.len();
    let mut data =
        vec![0u8; var_octets_len(address_len) + 1 + var_octets_len(peer.asset_code.len())];
    let mut w = Writer::new(&mut data);
    w.length(address_len);
    w.bytes(own);
    w.u8(b'.');
    w.bytes(segment.as_bytes());
    w.u8(peer.asset_scale);
    w.var_octets(peer.asset_code.as_bytes());
    let repr = FulfillRepr {
        fulfillment: &[0; 32],
        data: &data,
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out);
    out.into()
}
