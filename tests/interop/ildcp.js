'use strict'
// ILDCP (RFC 31) against our router with the JS client library (ilp-protocol-ildcp 2.2, what
// ilp-connector uses to learn its address from a parent): a child connected over BTP asks
// `peer.config` and gets `<router address>.<its name>`, its asset code and scale; a peer that
// is not a child is refused (F00), as ilp-connector refuses it.
//
//   ILP_ROUTER_BIN=target/debug/ilp-router node ildcp.js
//
// Exit 0 and a last line "PASS ..." on success.

const L = require('./lib')
const ILDCP = require('ilp-protocol-ildcp')

async function main () {
  const port = await L.freePort()
  const config = `
ilp_address = "g.router"
[listen]
btp = "127.0.0.1:${port}"
[[peers]]
name = "kid"
auth_tokens = ["kid-secret"]
relation = "child"
asset_code = "XRP"
asset_scale = 6
max_balance = "1000"
[[peers]]
name = "pal"
auth_tokens = ["pal-secret"]
relation = "peer"
asset_code = "USD"
asset_scale = 9
max_balance = "1000"
[rates]
USD = "1"
XRP = "0.5"
`
  const router = await L.startRouter({ config, btpPort: port })
  const kid = L.btpClient(`btp+ws://kid:kid-secret@127.0.0.1:${port}`)
  const pal = L.btpClient(`btp+ws://pal:pal-secret@127.0.0.1:${port}`)
  let summary
  try {
    await kid.connect()
    const info = await ILDCP.fetch(kid.sendData.bind(kid))
    if (info.clientAddress !== 'g.router.kid' || info.assetScale !== 6 || info.assetCode !== 'XRP') {
      throw new Error(`the child was told ${JSON.stringify(info)}`)
    }
    await pal.connect()
    let refused = null
    try {
      await ILDCP.fetch(pal.sendData.bind(pal))
    } catch (err) {
      refused = err.message
    }
    // The library reports the Reject's message (our F00's), not its code.
    if (!refused || !refused.includes('children only')) {
      throw new Error(`a peer that is not a child was not refused: ${refused}`)
    }
    summary = `PASS ildcp: child told ${info.clientAddress} ${info.assetCode}/${info.assetScale}; non-child refused (${refused})`
  } finally {
    await kid.disconnect().catch(() => {})
    await pal.disconnect().catch(() => {})
    await router.stop()
  }
  // Last, after the router's own last lines.
  console.log(summary)
}

main().catch(err => {
  console.error('FAIL ildcp:', err.stack || err)
  process.exit(1)
})
