// Peer network: mutually authenticated WebSocket links between nodes carrying signed, deduplicated,
// rate-limited and relayed messages. See network.ts for the API and wire.ts for the frame format.
export { PeerNetwork } from './network';
export type { BroadcastOptions, BroadcastResult, PeerCounters, PeerEvent, PeerMessage, PeerRequest, PeerNetworkOptions, PeerNetworkStats, SendOptions } from './network';
export { DEFAULT_PEER_LIMITS, PeerCloseCode, resolvePeerLimits } from './limits';
export type { PeerLimits } from './limits';
export { MESSAGE_CONTEXTS, PROTOCOL_VERSION } from './wire';
export type { MessageContext } from './wire';
export { signedPayload, verifyEnvelope } from './envelope';
export { parsePeerAddress } from './dialTarget';
