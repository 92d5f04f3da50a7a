// A software WebAuthn authenticator: an ES256 key pair made with Web Crypto, attestation "none",
// and the authenticator data and client data built by hand (WebAuthn L2 §6.1, §5.8.1). Plain
// JavaScript on Web Crypto, so the tests (in workerd, test/webauthn-authenticator.ts) and the
// benchmark (in Node, bench/run.mjs) drive passkeys with the same code.

/** base64url without padding, of a string (UTF-8) or bytes. */
export function b64u(input) {
  const bytes = typeof input === "string" ? new TextEncoder().encode(input) : input;
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function head(major, n) {
  if (n < 24) return [(major << 5) | n];
  if (n < 256) return [(major << 5) | 24, n];
  if (n < 65536) return [(major << 5) | 25, n >> 8, n & 255];
  return [(major << 5) | 26, (n >>> 24) & 255, (n >> 16) & 255, (n >> 8) & 255, n & 255];
}

/** A minimal CBOR encoder (RFC 8949): what attestation objects and COSE keys use. */
export function cbor(v) {
  const out = [];
  const put = (x) => {
    if (typeof x === "number") out.push(...(x >= 0 ? head(0, x) : head(1, -1 - x)));
    else if (typeof x === "string") {
      const b = new TextEncoder().encode(x);
      out.push(...head(3, b.length), ...b);
    } else if (x instanceof Uint8Array) out.push(...head(2, x.length), ...x);
    else if (Array.isArray(x)) {
      out.push(...head(4, x.length));
      x.forEach(put);
    } else {
      const entries = x instanceof Map ? [...x.entries()] : Object.entries(x);
      out.push(...head(5, entries.length));
      for (const [k, val] of entries) {
        put(k);
        put(val);
      }
    }
  };
  put(v);
  return new Uint8Array(out);
}

const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) {
    out.set(p, i);
    i += p.length;
  }
  return out;
};
const sha256 = async (b) => new Uint8Array(await crypto.subtle.digest("SHA-256", b));
const fromB64u = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));

/** An ECDSA signature from Web Crypto (r‖s) in the DER form WebAuthn uses. */
function der(raw) {
  const int = (b) => {
    let i = 0;
    while (i < b.length - 1 && b[i] === 0) i++;
    let v = b.slice(i);
    if (v[0] & 0x80) v = concat(new Uint8Array([0]), v);
    return concat(new Uint8Array([2, v.length]), v);
  };
  const body = concat(int(raw.slice(0, 32)), int(raw.slice(32)));
  return concat(new Uint8Array([0x30, body.length]), body);
}

const FLAG = { UP: 0x01, UV: 0x04, BE: 0x08, BS: 0x10, AT: 0x40 };

const newPair = () => crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);

/** One credential (a passkey) held by the software authenticator. */
export class SoftPasskey {
  credentialId = crypto.getRandomValues(new Uint8Array(32));
  counter = 0;
  userHandle = undefined;
  #keys;

  constructor(keys, rpId, origin) {
    this.#keys = keys;
    this.rpId = rpId;
    this.origin = origin;
  }

  static async create(rpId = "registry.test", origin = "https://registry.test") {
    return new SoftPasskey(await newPair(), rpId, origin);
  }

  static async otherKey() {
    return (await newPair()).privateKey;
  }

  get id() {
    return b64u(this.credentialId);
  }

  async #authData(o, attested, counter) {
    const flags = FLAG.UP | (o.userVerified === false ? 0 : FLAG.UV) | (attested ? FLAG.AT : 0);
    const count = new Uint8Array([(counter >>> 24) & 255, (counter >> 16) & 255, (counter >> 8) & 255, counter & 255]);
    const rpIdHash = await sha256(new TextEncoder().encode(o.rpId ?? this.rpId));
    return concat(rpIdHash, new Uint8Array([flags]), count, attested ?? new Uint8Array());
  }

  #clientData(type, challenge, o) {
    return new TextEncoder().encode(
      JSON.stringify({
        type: o.type ?? type,
        challenge: o.challenge ?? challenge,
        origin: o.origin ?? this.origin,
        crossOrigin: false,
      }),
    );
  }

  /** navigator.credentials.create() on these creation options, as a RegistrationResponseJSON. */
  async register(options, o = {}) {
    this.userHandle = options.user.id;
    const jwk = await crypto.subtle.exportKey("jwk", this.#keys.publicKey);
    const cose = cbor(
      new Map([
        [1, 2],
        [3, -7],
        [-1, 1],
        [-2, fromB64u(jwk.x)],
        [-3, fromB64u(jwk.y)],
      ]),
    );
    const idLen = new Uint8Array([this.credentialId.length >> 8, this.credentialId.length & 255]);
    const attested = concat(new Uint8Array(16), idLen, this.credentialId, cose);
    const authData = await this.#authData(o, attested, this.counter);
    const attestationObject = cbor({ fmt: "none", attStmt: {}, authData });
    return {
      id: this.id,
      rawId: this.id,
      type: "public-key",
      response: {
        clientDataJSON: b64u(this.#clientData("webauthn.create", options.challenge, o)),
        attestationObject: b64u(attestationObject),
        transports: ["internal"],
      },
      clientExtensionResults: {},
    };
  }

  /** navigator.credentials.get() on these request options, as an AuthenticationResponseJSON. */
  async assert(options, o = {}) {
    const counter = o.counter ?? ++this.counter;
    const authData = await this.#authData(o, null, counter);
    const clientDataJSON = this.#clientData("webauthn.get", options.challenge, o);
    const signed = concat(authData, await sha256(clientDataJSON));
    const key = o.signWith ?? this.#keys.privateKey;
    const raw = new Uint8Array(await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, signed));
    return {
      id: this.id,
      rawId: this.id,
      type: "public-key",
      response: {
        clientDataJSON: b64u(clientDataJSON),
        authenticatorData: b64u(authData),
        signature: b64u(der(raw)),
        userHandle: o.userHandle ?? this.userHandle,
      },
      clientExtensionResults: {},
    };
  }
}
