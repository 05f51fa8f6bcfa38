'use strict'
// The JS reference connector set up as ilp-loadgen's router, for the side-by-side benchmark:
//
//   taskset -c 0 node js-connector-for-loadgen.js [--port 7770]
//   ilp-loadgen --router ws://127.0.0.1:7770 --sender alice:alice-secret \
//     --sink bob:bob-secret --destination test.js.users.bob ...
//
// One child account `users` is an ilp-plugin-mini-accounts BTP server on --port: each BTP
// client is a sub-account named by its auth_username (its token is bound on first use), so
// alice is test.js.users.alice and bob test.js.users.bob. A Prepare from alice goes into the
// connector through `users`, is routed, converted (one-to-one, spread 0), and leaves through
// `users` again to bob. Rate limit, throughput limit and deduplication are off, and no balance
// limit is set, so nothing but the connector's own speed limits the load. Prints
// "READY <destination>" once it listens; stops on SIGTERM or SIGINT.

const L = require('./lib')

async function main () {
  let port = 7770
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i += 2) {
    if (argv[i] === '--port') port = Number(argv[i + 1])
    else throw new Error(`unknown argument ${argv[i]}`)
  }
  const connector = await L.startJsConnector({
    ilpAddress: 'test.js',
    accounts: {
      users: {
        relation: 'child',
        assetCode: 'USD',
        assetScale: 9,
        plugin: 'ilp-plugin-mini-accounts',
        options: { port }
      }
    }
  })
  const destination = 'test.js.users.bob'
  console.log(`READY ${destination} (BTP on ws://127.0.0.1:${port}, pid ${process.pid})`)
  const stop = async () => {
    await connector.shutdown().catch(() => {})
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}

main().catch(err => {
  console.error(err)
  process.exit(1)
})
