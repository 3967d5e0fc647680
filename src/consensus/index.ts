// Consensus: a deterministic core (core.ts) the node shell feeds with events and whose actions it
// performs; the wire encoding of its messages (proposalCodec.ts); the threshold arithmetic
// (quorum.ts). Protocol, invariants and fault arithmetic: docs/CONSENSUS.md.
export { ConsensusCore } from './core';
export type { ConsensusStats } from './core';
export * from './types';
export { checkThreshold, maxEquivocators, maxSilent, quorumSize, stageNeed } from './quorum';
export { RoundClock } from './roundClock';
export { resultEquals, valueDigest, valueHeader, valueProblem } from './value';
export {
  decodeAttestation, decodePersistedLock, decodeProposalBody, decodeSignedProposal, encodeAttestation, encodePersistedLock, encodeProposalBody, encodeSignedProposal,
  prevoteOf, proposalId, proposalProblem, ProposalCodecError,
} from './proposalCodec';
