// Signs the CAEP 1.0 and RISC 1.0 example SETs and a back-channel logout
// token with the npm jose library, for signals' interoperability test
// (interop_test.go). Usage: node jose_sign.mjs <iat>, run from a folder
// where jose is installed. Prints {"keys": [JWK...], "tokens": [...]}:
// one fresh key per algorithm, each token signed with one of them.
import * as jose from 'jose';

const iat = Number(process.argv[2]);
if (!Number.isInteger(iat)) {
  throw new Error('usage: node jose_sign.mjs <iat>');
}

const caep = 'https://schemas.openid.net/secevent/caep/event-type/';
const risc = 'https://schemas.openid.net/secevent/risc/event-type/';

// The examples of CAEP 1.0 section 3 and RISC 1.0 section 2 (RISC gives
// none for account-purged and sessions-revoked: theirs follow its
// account-disabled one), with iat replaced so that they are fresh.
const sets = {
  'session-revoked-opaque': {
    iss: 'https://idp.example.com/123456789/',
    jti: '24c63fb56e5a2d77a6b512616ca9fa24',
    aud: 'https://sp.example.com/caep',
    txn: '8675309',
    sub_id: { format: 'opaque', id: 'dMTlD|1600802906337.16|16008.16' },
    events: { [caep + 'session-revoked']: { event_timestamp: 1615304991 } },
  },
  'session-revoked-complex': {
    iss: 'https://idp.example.com/123456789/',
    jti: '24c63fb56e5a2d77a6b512616ca9fa25',
    aud: 'https://sp.example.com/caep',
    txn: '8675309',
    sub_id: {
      format: 'complex',
      session: { format: 'opaque', id: 'dMTlD|1600802906337.16|16008.16' },
      user: { format: 'iss_sub', iss: 'https://idp.example.com/123456789/', sub: '99beb27c-c1c2-4955-882a-e0dc4996fcbc' },
      tenant: { format: 'opaque', id: '123456789' },
    },
    events: {
      [caep + 'session-revoked']: {
        initiating_entity: 'policy',
        reason_admin: { en: 'Landspeed Policy Violation: C076E82F' },
        reason_user: { en: 'Access attempt from multiple regions.', 'es-410': 'Intento de acceso desde varias regiones.' },
        event_timestamp: 1615304991,
      },
    },
  },
  'token-claims-change': {
    iss: 'https://idp.example.com/987654321/',
    jti: '9afce1e4e642b165fcaacdd0e7aa4903',
    aud: 'https://sp.example2.net/caep',
    txn: '8675309',
    sub_id: { format: 'jwt_id', iss: 'https://idp.example.com/987654321/', jti: 'f61t6e20zdo3px56gepu8rzlsp4c1dpc0fx7' },
    events: { [caep + 'token-claims-change']: { event_timestamp: 1615304991, claims: { role: 'ro-admin' } } },
  },
  'credential-change': {
    iss: 'https://idp.example.com/3456789/',
    jti: '07efd930f0977e4fcc1149a733ce7f78',
    aud: 'https://sp.example2.net/caep',
    txn: '8675309',
    sub_id: { format: 'iss_sub', iss: 'https://idp.example.com/3456789/', sub: 'jane.smith@example.com' },
    events: {
      [caep + 'credential-change']: {
        credential_type: 'fido2-roaming',
        change_type: 'create',
        fido2_aaguid: 'accced6a-63f5-490a-9eea-e59bc1896cfc',
        friendly_name: "Jane's USB authenticator",
        initiating_entity: 'user',
        reason_admin: { en: 'User self-enrollment' },
        event_timestamp: 1615304991,
      },
    },
  },
  'account-disabled': {
    iss: 'https://idp.example.com/',
    jti: '756E69717565206964656E746966696572',
    aud: '636C69656E745F6964',
    sub_id: { format: 'iss_sub', iss: 'https://idp.example.com/', sub: '7375626A656374' },
    events: { [risc + 'account-disabled']: { reason: 'hijacking' } },
  },
  'account-purged': {
    iss: 'https://idp.example.com/',
    jti: '756E69717565206964656E746966696573',
    aud: '636C69656E745F6964',
    sub_id: { format: 'iss_sub', iss: 'https://idp.example.com/', sub: '7375626A656374' },
    events: { [risc + 'account-purged']: {} },
  },
  'credential-compromise': {
    iss: 'https://idp.example.com/3456790/',
    jti: '756E69717565206964656E746966696574',
    aud: 'https://sp.example2.net/caep',
    sub_id: { format: 'iss_sub', iss: 'https://idp.example.com/3456790/', sub: 'joe.smith@example.com' },
    events: { [risc + 'credential-compromise']: { credential_type: 'password' } },
  },
  'sessions-revoked': {
    iss: 'https://idp.example.com/',
    jti: '756E69717565206964656E746966696575',
    aud: '636C69656E745F6964',
    sub_id: { format: 'email', email: 'foo@example.com' },
    events: { [risc + 'sessions-revoked']: {} },
  },
};

// The example of Back-Channel Logout 1.0 section 2.4.
const logout = {
  iss: 'https://server.example.com',
  sub: '248289761001',
  aud: 's6BhdRkqt3',
  jti: 'bWJq',
  sid: '08a5019c-17e1-4977-8f42-65a12843ea02',
  events: { 'http://schemas.openid.net/event/backchannel-logout': {} },
};

const algs = ['RS256', 'PS256', 'ES256', 'EdDSA'];
const keys = [];
const priv = {};
for (const alg of algs) {
  const pair = await jose.generateKeyPair(alg, { extractable: true });
  const jwk = await jose.exportJWK(pair.publicKey);
  keys.push({ ...jwk, kid: 'jose-' + alg, alg, use: 'sig' });
  priv[alg] = pair.privateKey;
}

async function sign(claims, alg, typ) {
  return new jose.SignJWT({ ...claims, iat })
    .setProtectedHeader({ alg, kid: 'jose-' + alg, typ })
    .sign(priv[alg]);
}

const tokens = [];
let i = 0;
for (const [name, claims] of Object.entries(sets)) {
  const alg = algs[i++ % algs.length];
  tokens.push({ name, format: 'set', alg, token: await sign(claims, alg, 'secevent+jwt') });
}
for (const alg of algs) {
  tokens.push({ name: 'logout', format: 'logout', alg, token: await sign(logout, alg, 'logout+jwt') });
}
process.stdout.write(JSON.stringify({ keys, tokens }));
