// RFC 6962 / RFC 9162 Merkle inclusion proofs, verified in the page with
// WebCrypto's SHA-256: the dashboard does not take the server's word that an
// entry is in the signed log.

async function sha256(...parts) {
  const len = parts.reduce((n, p) => n + p.length, 0);
  const buf = new Uint8Array(len);
  let at = 0;
  for (const p of parts) { buf.set(p, at); at += p.length; }
  return new Uint8Array(await crypto.subtle.digest('SHA-256', buf));
}

// leafHash is HASH(0x00 || leaf).
export function leafHash(leaf) { return sha256(Uint8Array.of(0), leaf); }

// nodeHash is HASH(0x01 || left || right).
export function nodeHash(left, right) { return sha256(Uint8Array.of(1), left, right); }

const odd = (n) => n % 2 === 1;
const half = (n) => Math.floor(n / 2);

// rootFromInclusionProof computes the root of a tree of size from the leaf
// at index and its audit path (RFC 9162 section 2.1.3.2).
export async function rootFromInclusionProof(index, size, leafHashValue, proof) {
  if (!(index < size)) throw new Error(`entry ${index} is not in a tree of ${size} entries`);
  let fn = index;
  let sn = size - 1;
  let r = leafHashValue;
  for (const p of proof) {
    if (sn === 0) throw new Error('the proof is longer than the tree is deep');
    if (odd(fn) || fn === sn) {
      r = await nodeHash(p, r);
      if (!odd(fn)) {
        while (!odd(fn) && fn !== 0) { fn = half(fn); sn = half(sn); }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) throw new Error('the proof is shorter than the tree is deep');
  return r;
}

// verifyInclusion checks that leaf is entry index of the tree (size, root).
export async function verifyInclusion(leaf, index, size, proof, root) {
  const got = await rootFromInclusionProof(index, size, await leafHash(leaf), proof);
  if (got.length !== root.length || got.some((b, i) => b !== root[i])) {
    throw new Error('the proof leads to another root than the signed tree head\'s');
  }
}
