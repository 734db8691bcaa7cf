// An SSF 1.0 receiver for Herald's transmitter tests, written against the
// specifications, not against Herald: every Security Event Token it gets,
// pushed (RFC 8935) or polled (RFC 8936), is verified with panva's jose
// (its version pinned in package.json and package-lock.json) on the key
// of the transmitter's jwks_uri, read from its
// /.well-known/ssf-configuration, and checked against SSF 1.0 and the
// CAEP interoperability profile. It records each SET and each rule it
// breaks; the tests read them back and expect no broken rule.
//
// It is configured from the JSON file named by the first argument:
//
//   port                port on 127.0.0.1 (0: any free one)
//   issuer              the transmitter's issuer URL
//   audience            the aud every SET must carry (the stream's)
//   push_authorization  the Authorization header every push must carry
//
// It prints "ssf-receiver ready url=<its URL>" once it serves, and serves:
//
//   POST /push     the push endpoint (RFC 8935): 202 for a SET that passes
//                  every check, else 400 with an RFC 8935 error
//   POST /poll     {endpoint, token, maxEvents, returnImmediately, ack,
//                  setErrs}: one RFC 8936 poll request of the transmitter's
//                  endpoint with the bearer token; answers {status, sets:
//                  {jti: record}, moreAvailable, error}
//   POST /verify   {endpoint, token, stream_id, state}: asks the
//                  transmitter's verification endpoint for a verification
//                  event carrying state; answers {status, body}
//   POST /answer   {status, count}: answer the next count pushes with
//                  status (an RFC 8935 error body with it) instead of
//                  checking them, as a receiver that is down or refuses
//   GET  /received {sets: [record...], violations: [text...], attempts:
//                  [{status, token}...]}: every SET received, in order,
//                  every rule broken, and every push with the status it
//                  was answered (the token as sent); with txn=X
//                  or state=S it first waits (at most wait_ms, default
//                  20000) until a SET with that txn claim, or a
//                  verification event with that state, has arrived
//
// A record is {via, jti, token, header, claims, type, event, violations}.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));

const SESSION_REVOKED = 'https://schemas.openid.net/secevent/caep/event-type/session-revoked';
const VERIFICATION = 'https://schemas.openid.net/secevent/ssf/event-type/verification';
const STREAM_UPDATED = 'https://schemas.openid.net/secevent/ssf/event-type/stream-updated';
const INITIATING_ENTITIES = ['admin', 'user', 'policy', 'system'];
// Simple subject identifier formats and their members (RFC 9493).
const SIMPLE_FORMATS = { iss_sub: ['iss', 'sub'], opaque: ['id'], email: ['email'] };
// Members of a complex subject (SSF 1.0 section 3.2).
const COMPLEX_MEMBERS = ['user', 'device', 'session', 'application', 'tenant', 'org_unit', 'group'];

const received = []; // every record, in order
const attempts = []; // every push: {status, token}
let planned = { status: 0, count: 0 }; // the answer of the next pushes, set by POST /answer
const violations = []; // every broken rule, as text
const requestedStates = new Set(); // states this receiver asked verification events for
let transmitter; // {config, jwks}: the transmitter's metadata, read on first use
let waiters = []; // {match, resolve}: GET /received requests waiting for a SET

// record keeps rec and wakes the requests waiting for a SET like it.
function record(rec) {
  received.push(rec);
  for (const text of rec.violations) violations.push(`${rec.via} SET ${rec.jti || '(no jti)'}: ${text}`);
  waiters = waiters.filter((w) => {
    if (!w.match(rec)) return true;
    w.resolve();
    return false;
  });
}

// arrived resolves once a SET matching match has been received, or after ms.
function arrived(match, ms) {
  if (received.some(match)) return Promise.resolve();
  return new Promise((resolve) => {
    const w = { match, resolve };
    waiters.push(w);
    setTimeout(() => { waiters = waiters.filter((x) => x !== w); resolve(); }, ms);
  });
}

// metadata reads the transmitter's SSF configuration and makes its key set.
async function metadata() {
  if (transmitter) return transmitter;
  const url = new URL('/.well-known/ssf-configuration', cfg.issuer);
  const resp = await fetch(url, { redirect: 'error' });
  if (resp.status !== 200) throw new Error(`GET ${url}: ${resp.status}`);
  const config = await resp.json();
  if (config.issuer !== cfg.issuer) throw new Error(`ssf-configuration issuer ${config.issuer}, want ${cfg.issuer}`);
  if (typeof config.jwks_uri !== 'string') throw new Error('ssf-configuration has no jwks_uri');
  transmitter = { config, jwks: createRemoteJWKSet(new URL(config.jwks_uri), { cooldownDuration: 0 }) };
  return transmitter;
}

// keyBits returns the size of the transmitter's RSA key kid, from its
// published key set (fetched again for each SET: the tests are short).
async function keyBits(kid) {
  const { config } = await metadata();
  const resp = await fetch(config.jwks_uri, { redirect: 'error' });
  const set = await resp.json();
  const jwk = (set.keys ?? []).find((k) => k.kid === kid);
  if (!jwk) return { err: `kid ${kid} is not in the jwks_uri key set` };
  if (jwk.kty !== 'RSA' || typeof jwk.n !== 'string') return { err: `key ${kid} is ${jwk.kty}, not RSA` };
  const n = Buffer.from(jwk.n, 'base64url');
  let bits = n.length * 8;
  for (let b = n[0]; b < 0x80 && bits > 0; b <<= 1) bits--;
  return { bits };
}

const isObject = (v) => typeof v === 'object' && v !== null && !Array.isArray(v);
const nonEmptyString = (v) => typeof v === 'string' && v.length > 0;

// checkSimple reports what is wrong with simple subject identifier s.
function checkSimple(s, where, out) {
  if (!isObject(s)) return out.push(`${where} is not an object`);
  const members = SIMPLE_FORMATS[s.format];
  if (!members) return out.push(`${where} has format ${JSON.stringify(s.format)}, want one of ${Object.keys(SIMPLE_FORMATS)}`);
  for (const m of members) if (!nonEmptyString(s[m])) out.push(`${where} (${s.format}) lacks ${m}`);
  for (const m of Object.keys(s)) if (m !== 'format' && !members.includes(m)) out.push(`${where} (${s.format}) has unknown member ${m}`);
}

// checkSubject reports what is wrong with the SET's sub_id for event type.
function checkSubject(subID, type, out) {
  if (!isObject(subID)) return out.push('sub_id is missing');
  const control = type === VERIFICATION || type === STREAM_UPDATED;
  switch (subID.format) {
    case 'complex': {
      const members = Object.keys(subID).filter((m) => m !== 'format');
      if (members.length === 0) out.push('complex sub_id has no member');
      for (const m of members) {
        if (!COMPLEX_MEMBERS.includes(m)) out.push(`complex sub_id has unknown member ${m}`);
        else checkSimple(subID[m], `sub_id.${m}`, out);
      }
      break;
    }
    case 'opaque':
      // The CAEP interoperability profile: opaque only for verification
      // (and SSF 1.0 section 8.1.5's stream-updated).
      if (!control) out.push(`opaque sub_id on a ${type} event`);
      checkSimple(subID, 'sub_id', out);
      break;
    case 'iss_sub':
      checkSimple(subID, 'sub_id', out);
      break;
    default:
      out.push(`sub_id format ${JSON.stringify(subID.format)}, want iss_sub, opaque or complex`);
  }
}

// checkEvent reports what is wrong with the event's members.
function checkEvent(type, event, out) {
  if (!isObject(event)) return out.push(`event ${type} is not an object`);
  switch (type) {
    case SESSION_REVOKED: {
      const ra = event.reason_admin;
      const texts = isObject(ra) ? Object.values(ra) : [ra];
      if (texts.length === 0 || !texts.every(nonEmptyString)) out.push(`session-revoked reason_admin ${JSON.stringify(ra)}: want a non-empty value`);
      if (!Number.isInteger(event.event_timestamp) || event.event_timestamp <= 0) out.push(`session-revoked event_timestamp ${JSON.stringify(event.event_timestamp)}: want a NumericDate`);
      if (event.initiating_entity !== undefined && !INITIATING_ENTITIES.includes(event.initiating_entity)) out.push(`initiating_entity ${JSON.stringify(event.initiating_entity)}`);
      break;
    }
    case VERIFICATION:
      if (event.state !== undefined && !requestedStates.has(event.state)) out.push(`verification state ${JSON.stringify(event.state)} was never asked for`);
      break;
    case STREAM_UPDATED:
      if (!['enabled', 'paused', 'disabled'].includes(event.status)) out.push(`stream-updated status ${JSON.stringify(event.status)}`);
      break;
    default:
      out.push(`event type ${type} is not one Herald transmits`);
  }
}

// check verifies one compact SET and returns its record, whose violations
// are also added to the receiver's.
async function check(token, via) {
  const v = [];
  const rec = { via, jti: '', token, header: null, claims: null, type: '', event: null, violations: v };
  try {
    rec.header = decodeProtectedHeader(token);
    rec.claims = decodeJwt(token);
  } catch (err) {
    v.push(`not a JWT: ${err.message}`);
  }
  try {
    const { jwks } = await metadata();
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer: cfg.issuer, audience: cfg.audience, algorithms: ['RS256'], typ: 'secevent+jwt',
    });
    rec.claims = payload;
    if (protectedHeader.typ !== 'secevent+jwt') v.push(`typ ${protectedHeader.typ}, want secevent+jwt`);
    const { bits, err } = await keyBits(protectedHeader.kid);
    if (err) v.push(err);
    else if (bits < 2048) v.push(`the signing key has ${bits} bits, want at least 2048`);
  } catch (err) {
    v.push(`jose refuses the SET: ${err.code ?? ''} ${err.message}`);
  }
  const c = rec.claims ?? {};
  rec.jti = typeof c.jti === 'string' ? c.jti : '';
  for (const claim of ['iss', 'jti', 'txn']) if (!nonEmptyString(c[claim])) v.push(`${claim} is missing`);
  if (c.aud === undefined) v.push('aud is missing');
  if (!Number.isInteger(c.iat)) v.push('iat is missing');
  if (c.sub !== undefined) v.push('a sub claim (SSF 1.0 section 4.1.4: sub_id only)');
  if (c.exp !== undefined) v.push('an exp claim (SSF 1.0 section 4.1.5)');
  const types = isObject(c.events) ? Object.keys(c.events) : [];
  if (types.length !== 1) v.push(`events holds ${types.length} events, want exactly one`);
  else {
    rec.type = types[0];
    rec.event = c.events[rec.type];
    checkSubject(c.sub_id, rec.type, v);
    checkEvent(rec.type, rec.event, v);
  }
  return rec;
}

const readBody = (req, limit = 1 << 20) => new Promise((resolve, reject) => {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > limit) { reject(new Error('body too large')); req.destroy(); return; }
    chunks.push(c);
  });
  req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
  req.on('error', reject);
});

const send = (res, status, body) => {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(body === undefined ? '' : JSON.stringify(body));
};

// push is the RFC 8935 endpoint.
async function push(req, res) {
  const body = await readBody(req);
  if (req.headers.authorization !== cfg.push_authorization) {
    violations.push('a push without the stream\'s authorization_header');
    return send(res, 401, { err: 'authentication_failed', description: 'wrong Authorization' });
  }
  if ((req.headers['content-type'] ?? '').split(';')[0].trim() !== 'application/secevent+jwt') {
    violations.push(`a push with Content-Type ${req.headers['content-type']}`);
    return send(res, 400, { err: 'invalid_request', description: 'want application/secevent+jwt' });
  }
  const token = body.trim();
  if (planned.count > 0) {
    planned.count--;
    attempts.push({ status: planned.status, token });
    return send(res, planned.status, { err: planned.status === 401 ? 'authentication_failed' : 'unavailable', description: 'as the test asked' });
  }
  const rec = await check(token, 'push');
  record(rec);
  const status = rec.violations.length > 0 ? 400 : 202;
  attempts.push({ status, token });
  if (status !== 202) return send(res, status, { err: 'invalid_request', description: rec.violations.join('; ') });
  send(res, 202);
}

// post sends a JSON request with the bearer token to the transmitter.
async function post(endpoint, token, body) {
  const resp = await fetch(endpoint, {
    method: 'POST', redirect: 'error', body: JSON.stringify(body),
    headers: { 'Content-Type': 'application/json', Accept: 'application/json', Authorization: `Bearer ${token}` },
  });
  return { status: resp.status, text: await resp.text() };
}

// poll makes one RFC 8936 request and checks every SET it returns.
async function poll(req, res) {
  const p = JSON.parse(await readBody(req));
  const request = {};
  for (const m of ['maxEvents', 'returnImmediately', 'ack', 'setErrs']) if (p[m] !== undefined) request[m] = p[m];
  const { status, text } = await post(p.endpoint, p.token, request);
  if (status !== 200) return send(res, 200, { status, error: text });
  let answer;
  try {
    answer = JSON.parse(text);
  } catch (err) {
    violations.push(`poll answer is not JSON: ${text.slice(0, 200)}`);
    return send(res, 200, { status, error: text });
  }
  if (!isObject(answer.sets)) violations.push(`poll answer without a sets object: ${text.slice(0, 200)}`);
  if (answer.moreAvailable !== undefined && typeof answer.moreAvailable !== 'boolean') violations.push('poll moreAvailable is not a boolean');
  const sets = {};
  for (const [jti, token] of Object.entries(answer.sets ?? {})) {
    const rec = await check(token, 'poll');
    if (rec.jti !== jti) rec.violations.push(`the poll answer keys it as ${jti}`);
    record(rec);
    sets[jti] = rec;
  }
  send(res, 200, { status, sets, moreAvailable: answer.moreAvailable ?? false });
}

// verify asks the transmitter for a verification event carrying state.
async function verify(req, res) {
  const p = JSON.parse(await readBody(req));
  if (p.state !== undefined) requestedStates.add(p.state);
  const body = { stream_id: p.stream_id };
  if (p.state !== undefined) body.state = p.state;
  const { status, text } = await post(p.endpoint, p.token, body);
  send(res, 200, { status, body: text });
}

// list answers GET /received, once what it waits for has arrived.
async function list(req, res) {
  const q = new URL(req.url, 'http://receiver').searchParams;
  const ms = Number(q.get('wait_ms') ?? 20000);
  if (q.has('txn')) await arrived((r) => r.claims?.txn === q.get('txn'), ms);
  if (q.has('state')) await arrived((r) => r.type === VERIFICATION && r.event?.state === q.get('state'), ms);
  send(res, 200, { sets: received, violations, attempts });
}

const server = createServer(async (req, res) => {
  try {
    const path = new URL(req.url, 'http://receiver').pathname;
    if (req.method === 'POST' && path === '/push') return await push(req, res);
    if (req.method === 'POST' && path === '/poll') return await poll(req, res);
    if (req.method === 'POST' && path === '/verify') return await verify(req, res);
    if (req.method === 'POST' && path === '/answer') {
      const p = JSON.parse(await readBody(req));
      planned = { status: p.status, count: p.count };
      return send(res, 200, planned);
    }
    if (req.method === 'GET' && path === '/received') return await list(req, res);
    send(res, 404, { error: 'not_found' });
  } catch (err) {
    console.error(`ssf-receiver: ${req.method} ${req.url}: ${err.stack}`);
    if (!res.headersSent) send(res, 500, { error: 'server_error', error_description: err.message });
  }
});

server.listen(cfg.port ?? 0, '127.0.0.1', () => {
  console.log(`ssf-receiver ready url=http://127.0.0.1:${server.address().port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
