// Self-signed TLS certificate for the user port (HotPocket's `new` runs `openssl req` for the same).
// ECDSA P-256: generated in milliseconds, accepted by Node and browsers. Clients are expected to skip
// CA validation (hotpocket-js-client connects with rejectUnauthorized:false) and authenticate the node
// by its Ed25519 key through the server challenge instead.
import { generate } from 'selfsigned';

export interface TlsCertificate {
  cert: string; // PEM
  key: string; // PEM (PKCS#8, unencrypted)
}

export async function generateTlsCertificate(commonName: string, opts: { validDays?: number; now?: Date } = {}): Promise<TlsCertificate> {
  if (!commonName) throw new Error('TLS certificate common name must be non-empty');
  const notBeforeDate = opts.now ?? new Date();
  const notAfterDate = new Date(notBeforeDate.getTime() + (opts.validDays ?? 3650) * 86_400_000);
  const pems = await generate([{ name: 'commonName', value: commonName }], { keyType: 'ec', curve: 'P-256', algorithm: 'sha256', notBeforeDate, notAfterDate });
  return { cert: pems.cert, key: pems.private };
}
