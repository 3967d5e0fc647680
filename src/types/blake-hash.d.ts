// @napi-rs/blake-hash's Linux x64 binary package (its typings live in the umbrella package).
declare module '@napi-rs/blake-hash-linux-x64-gnu' {
  export function blake3(input: string | Uint8Array): Buffer;
  export class Blake3Hasher {
    static newKeyed(key: Buffer): Blake3Hasher;
    update(input: string | Buffer): this;
    digestBuffer(): Buffer;
  }
}
