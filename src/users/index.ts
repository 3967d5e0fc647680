// Public surface of the user server: the HotPocket 0.6 client protocol over WebSocket, so the
// unmodified hotpocket-js-client 0.5.x works against hp-node. Module map:
//   nodeApi.ts   the interface the node implements        server.ts   listening, limits, event fan-out
//   session.ts   one connection: handshake, rate limits   requests.ts authenticated requests
//   handshake.ts challenge messages                      messages.ts parse/build protocol messages
//   inputs.ts    signed input containers                  codec.ts    JSON/BSON wire encoding
//   fields.ts    typed field readers                      limits.ts   bounds and close codes
//   outputHash.ts HotPocket output hash / tree / collapse tls.ts      self-signed certificate
// Deliberate differences from hpcore (all invisible to a well-behaved official client):
//   - input signatures are verified on receipt (bad_sig at once) instead of at consensus;
//   - a duplicate user key, a full server, per-host/pending limits, timeouts and rate limits close
//     the socket with a code and reason instead of leaving the session in limbo;
//   - text frames and JSON numbers beyond 2^53-1 are refused (bad_msg_format); server_challenge
//     must be printable ASCII and not start with "hp-node/" (it is signed with the node key);
//   - contract data that looks like JSON but does not parse is sent as a JSON string, not raw;
//   - every bad message gets a contract_input_status rejection (hpcore is silent for some);
//   - node-side admission refusals (nonce_expired, ...) do not count as bad messages.
export * from './nodeApi';
export { UserServer, type UserServerOptions } from './server';
export { DEFAULT_LIMITS, CloseCode, type UserServerLimits } from './limits';
export { generateTlsCertificate, type TlsCertificate } from './tls';
export { userOutputHash, buildMerkleTree, buildOutputTree, collapseForUser, collapsedTreeRoot, OUTPUT_TREE_FANOUT, type HashTreeNode } from './outputHash';
export type { LogFn } from './requests';
