// Herald dashboard. Plain JavaScript, no dependencies, no build step.
//
// The admin credential lives in sessionStorage (this tab only) and goes to
// the issuer's API as a bearer token; it is never put in a URL or a cookie.
// EventSource cannot send an Authorization header, so the event stream is
// read with fetch() and parsed here (see readSSE). All data from the API is
// written as text (textContent), never as HTML: the page's CSP enforces
// Trusted Types, which leaves no HTML sink to write to anyway.
'use strict';

(() => {
  const TOKEN_KEY = 'herald.adminToken';
  const FEED_MAX = 200; // events kept in the feed
  const SEEN_MAX = 2000; // event ids remembered to drop duplicates
  const RPM_MINUTES = 30;
  const FLEET_EVERY_MS = 2000;
  const RETRY_MIN_MS = 1000;
  const RETRY_MAX_MS = 15000;
  // On sign-in the feed starts this many events back on each stream.
  const BACKLOG_REVOCATIONS = 50;
  const BACKLOG_AUDIT = 150;

  const KIND_HINTS = {
    token: 'The token\'s jti.',
    session: 'The session id (sid): every token of the session; refresh stops.',
    subject: 'The subject (sub): its tokens issued up to now.',
    client: 'The client_id: its tokens issued up to now.',
    tenant: 'The tenant: its tokens issued up to now.',
    key: 'The key id (kid): every token it signed. A signing key is replaced first.',
    all: 'No value: every token issued up to now, and the signing key is rotated.',
  };

  const $ = (id) => document.getElementById(id);

  // state is the signed-in session: its token and an AbortController that
  // stops its requests and loops. Loops hold their own reference and stop
  // once state is another (signed out, or signed in again).
  let state = null;

  // ---- helpers -------------------------------------------------------

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null && v !== false) e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function plural(n, word) {
    return `${n} ${word}${n === 1 ? '' : 's'}`;
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  function pad(n) { return String(n).padStart(2, '0'); }

  function fmtTime(d) {
    const now = new Date();
    const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    if (d.toDateString() === now.toDateString()) return hms;
    return `${d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' })} ${hms.slice(0, 5)}`;
  }

  function fmtAge(ms) {
    if (ms < 0) ms = 0;
    if (ms < 10000) return `${(ms / 1000).toFixed(1)}s ago`;
    if (ms < 120000) return `${Math.round(ms / 1000)}s ago`;
    if (ms < 7200000) return `${Math.round(ms / 60000)}m ago`;
    return `${Math.round(ms / 3600000)}h ago`;
  }

  // APIError is a failed API call: status 0 when the issuer was unreachable.
  class APIError extends Error {
    constructor(status, code, description) {
      let msg;
      if (status === 0) msg = `The issuer is unreachable (${description}).`;
      else if (status === 401) msg = 'The issuer did not accept the credential (401 unauthorized).';
      else if (status === 403) msg = `This credential is not allowed to do that (403): ${description || code}.`;
      else msg = `${status} ${code || 'error'}: ${description || 'the request failed'}`;
      super(msg);
      this.status = status;
      this.code = code;
    }
  }

  async function errorOf(res) {
    let body = null;
    try { body = await res.json(); } catch (_) { /* not JSON */ }
    return new APIError(res.status, body && body.error, body && body.error_description);
  }

  async function request(st, method, path, { body, headers } = {}) {
    const h = Object.assign({ Authorization: `Bearer ${st.token}` }, headers);
    const init = { method, headers: h, cache: 'no-store', credentials: 'omit', signal: st.abort.signal };
    if (body !== undefined) {
      h['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      if (st.abort.signal.aborted) throw e;
      throw new APIError(0, 'network', e.message);
    }
    if (!res.ok) throw await errorOf(res);
    return res;
  }

  async function api(st, method, path, body) {
    const res = await request(st, method, path, { body, headers: { Accept: 'application/json' } });
    return res.json();
  }

  // failed handles an error of a background call: a credential that stops
  // working (revoked, rotated) signs the page out; true means handled.
  function failed(st, err) {
    if (st !== state || st.abort.signal.aborted) return true;
    if (err instanceof APIError && err.status === 401) {
      signOut('The issuer no longer accepts this credential (401). Sign in again.');
      return true;
    }
    return false;
  }

  function showError(id, msg) {
    const e = $(id);
    e.textContent = msg || '';
    e.hidden = !msg;
  }

  // ---- Server-Sent Events over fetch ---------------------------------

  // readSSE reads an event stream (WHATWG HTML, "Server-sent events",
  // parsing an event stream) from body until it ends, calling onEvent with
  // {id, type, data} for each event and onComment for comment lines.
  async function readSSE(body, onEvent, onComment) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    let data = [];
    let type = '';
    let lastId = '';
    let first = true;

    const line = (l) => {
      if (l === '') {
        if (data.length > 0) onEvent({ id: lastId, type: type || 'message', data: data.join('\n') });
        data = [];
        type = '';
        return;
      }
      if (l[0] === ':') {
        onComment(l.slice(1).replace(/^ /, ''));
        return;
      }
      const i = l.indexOf(':');
      const field = i < 0 ? l : l.slice(0, i);
      let value = i < 0 ? '' : l.slice(i + 1);
      if (value[0] === ' ') value = value.slice(1);
      if (field === 'data') data.push(value);
      else if (field === 'event') type = value;
      else if (field === 'id' && !value.includes('\0')) lastId = value;
      // retry and unknown fields: ignored; reconnecting is ours to pace.
    };

    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      if (first && buf.length > 0) {
        if (buf[0] === '\uFEFF') buf = buf.slice(1);
        first = false;
      }
      for (;;) {
        const m = /\r\n|\r|\n/.exec(buf);
        if (!m) break;
        // A CR at the end of what has arrived may be the first half of CRLF.
        if (m[0] === '\r' && m.index === buf.length - 1) break;
        line(buf.slice(0, m.index));
        buf = buf.slice(m.index + m[0].length);
      }
    }
  }

  // backlogPosition returns a Last-Event-ID a little before the heads of
  // both streams, so the feed opens with recent history. The issuer's
  // stream starts with a comment naming its position ("herald events from
  // <herald>.<audit>"); with follow=false and from=now it ends right there.
  async function backlogPosition(st) {
    const res = await request(st, 'GET', '/v1/events?from=now&follow=false', { headers: { Accept: 'text/event-stream' } });
    let pos = '';
    await readSSE(res.body, () => {}, (c) => {
      const m = /^herald events from (\d+)\.(\d+)$/.exec(c);
      if (m && !pos) {
        const h = Math.max(Number(m[1]) - BACKLOG_REVOCATIONS, 0);
        const a = Math.max(Number(m[2]) - BACKLOG_AUDIT, 0);
        pos = `${h}.${a}`;
      }
    });
    return pos;
  }

  function setStreamStatus(st, status) {
    if (st !== state) return;
    const p = $('stream-status');
    p.className = `pill ${status}`;
    p.textContent = { live: 'live', connecting: 'connecting…', down: 'offline' }[status];
  }

  // runStream follows GET /v1/events until sign-out, reconnecting with
  // Last-Event-ID so that nothing is missed and nothing repeated.
  async function runStream(st) {
    let lastId = '';
    try {
      lastId = await backlogPosition(st);
    } catch (e) {
      if (failed(st, e)) return;
      // No backlog then: start from now.
    }
    let delay = RETRY_MIN_MS;
    while (st === state) {
      setStreamStatus(st, 'connecting');
      try {
        const headers = { Accept: 'text/event-stream' };
        let path = '/v1/events';
        if (lastId) headers['Last-Event-ID'] = lastId;
        else path += '?from=now';
        const res = await request(st, 'GET', path, { headers });
        setStreamStatus(st, 'live');
        showError('feed-error', '');
        delay = RETRY_MIN_MS;
        await readSSE(res.body, (ev) => {
          if (st !== state) return;
          lastId = ev.id || lastId;
          onEvent(ev);
        }, () => {});
        if (st !== state) return;
        showError('feed-error', 'The event stream ended; reconnecting…');
      } catch (e) {
        if (failed(st, e)) return;
        showError('feed-error', `Event stream interrupted: ${e.message} Reconnecting…`);
      }
      setStreamStatus(st, 'down');
      await sleep(delay, st.abort.signal);
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  // ---- live feed -----------------------------------------------------

  const seen = new Set();

  function onEvent(ev) {
    let e;
    try { e = JSON.parse(ev.data); } catch (_) { return; }
    if (!e || typeof e !== 'object' || !e.id) return;
    if (seen.has(e.id)) return;
    seen.add(e.id);
    if (seen.size > SEEN_MAX) seen.delete(seen.values().next().value);
    if (e.type === 'revocation' && e.revocation) {
      const r = e.revocation;
      addRevocations(e.id, r.at || e.time, Array.isArray(r.values) ? r.values.length : 1);
    }
    addFeedItem(e);
  }

  function who(sub, tenant, client) {
    let s = String(sub || '?');
    if (tenant) s += ` @ ${tenant}`;
    if (client) s += ` via ${client}`;
    return s;
  }

  function summary(e) {
    const r = e.revocation, s = e.session, t = e.token, k = e.key, a = e.admin, g = e.signal;
    if (r) {
      let what;
      if (r.kind === 'all') what = 'every token issued so far';
      else if (Array.isArray(r.values)) what = `${plural(r.values.length, r.kind)} (bulk)`;
      else what = `${r.kind} ${r.value}`;
      if (r.iss) what += ` of ${r.iss}`;
      return r.reason ? `${what} — ${r.reason}` : what;
    }
    if (g) {
      let out = `${g.format} from ${g.iss}`;
      out += g.outcome === 'revoked' ? `: revoked ${g.kind} ${g.value || ''}` : ': recorded';
      if (g.note) out += ` — ${g.note}`;
      if (g.sender) out += ` (via ${g.sender})`;
      return out;
    }
    if (t) return `jti ${t.jti} for ${who(t.sub, t.tenant, t.client_id)}`;
    if (s) {
      const base = `session ${s.sid} of ${who(s.sub, s.tenant, s.client_id)}`;
      return s.reason ? `${base} — ${s.reason}` : base;
    }
    if (k) return `key ${k.kid} (${k.alg})`;
    if (a) {
      const parts = [a.action];
      if (a.kind && a.value) parts.push(`${a.kind} ${a.value}`);
      else if (a.kind) parts.push(a.kind);
      else if (a.value) parts.push(a.value);
      if (a.count) parts.push(plural(a.count, 'value'));
      if (a.iss) parts.push(`of ${a.iss}`);
      let out = parts.join(' ');
      if (a.reason) out += ` — ${a.reason}`;
      if (a.source) out += ` (from ${a.source})`;
      return out;
    }
    return '';
  }

  function typeGroup(type) {
    if (type === 'revocation') return 'revocation';
    return String(type).split('.')[0];
  }

  function matchesFilter(type, filter) {
    if (!filter) return true;
    return filter.endsWith('.') ? type.startsWith(filter) : type === filter;
  }

  function addFeedItem(e) {
    const feed = $('feed');
    const type = String(e.type || 'unknown');
    const when = new Date(e.time);
    const valid = !isNaN(when.getTime());
    const ts = valid ? when.getTime() : 0;
    const li = el('li', {
      class: `t-${typeGroup(type)} fresh`,
      'data-type': type,
      'data-id': e.id,
      'data-ts': ts,
      'data-kind': e.revocation ? e.revocation.kind : undefined,
      'data-value': e.revocation ? e.revocation.value : undefined,
    },
    el('time', { datetime: valid ? when.toISOString() : undefined, title: valid ? when.toString() : undefined },
      valid ? fmtTime(when) : ''),
    el('span', { class: 'type' }, type),
    el('span', { class: 'actor', title: e.actor || '' }, e.actor || ''),
    el('span', { class: 'summary' }, summary(e)));
    if (!matchesFilter(type, $('feed-filter').value)) li.classList.add('filtered');
    // Newest on top; the backlog of two streams arrives interleaved, so
    // place each event by its time.
    let before = feed.firstElementChild;
    while (before && Number(before.dataset.ts) > ts) before = before.nextElementSibling;
    feed.insertBefore(li, before);
    while (feed.children.length > FEED_MAX) feed.lastElementChild.remove();
    $('feed-empty').hidden = feed.children.length > 0;
  }

  function applyFilter() {
    const f = $('feed-filter').value;
    for (const li of $('feed').children) li.classList.toggle('filtered', !matchesFilter(li.dataset.type, f));
  }

  // ---- revocations per minute ----------------------------------------

  // rpm holds revocation events of the last RPM_MINUTES by event id (the
  // history and the feed may both bring one): {t: ms, n: values}.
  const rpm = new Map();

  function addRevocations(id, at, n) {
    const t = Date.parse(at);
    if (!id || isNaN(t) || rpm.has(id)) return;
    rpm.set(id, { t, n: Math.max(n, 1) });
    drawRPM();
  }

  async function loadRPMHistory(st) {
    try {
      const data = await api(st, 'GET', `/v1/revocations?since=${RPM_MINUTES}m&limit=10000`);
      if (st !== state) return;
      for (const r of data.revocations || []) addRevocations(r.id, r.at, r.count || 1);
      drawRPM();
    } catch (e) {
      if (failed(st, e)) return;
      $('rpm-hint').textContent = `History unavailable: ${e.message}`;
    }
  }

  function drawRPM() {
    const nowMin = Math.floor(Date.now() / 60000);
    const buckets = new Array(RPM_MINUTES).fill(0);
    for (const [id, r] of rpm) {
      const age = nowMin - Math.floor(r.t / 60000);
      if (age >= RPM_MINUTES) { rpm.delete(id); continue; }
      buckets[RPM_MINUTES - 1 - Math.max(age, 0)] += r.n; // clock skew: count as now
    }
    const total = buckets.reduce((a, b) => a + b, 0);
    const peak = Math.max(...buckets);
    $('rpm-total').textContent = total;
    $('rpm-now').textContent = buckets[RPM_MINUTES - 1];
    $('rpm-peak').textContent = peak;

    const W = 320, H = 112, top = 14, base = 94, left = 2, slot = (W - left * 2) / RPM_MINUTES;
    const scale = peak > 0 ? (base - top) / peak : 0;
    const chart = svg('svg', {
      viewBox: `0 0 ${W} ${H}`, role: 'img',
      'aria-label': `Revocations per minute over the last ${RPM_MINUTES} minutes: ${total} in all, ${peak} at the peak.`,
    });
    chart.append(svg('line', { class: 'grid', x1: 0, x2: W, y1: base + 0.5, y2: base + 0.5 }));
    chart.append(svg('line', { class: 'grid', x1: 0, x2: W, y1: top + 0.5, y2: top + 0.5 }));
    chart.append(svg('text', { class: 'axis', x: W - 2, y: top - 4, 'text-anchor': 'end' }, `${peak} / min`));
    buckets.forEach((n, i) => {
      const h = n * scale;
      const min = new Date((nowMin - (RPM_MINUTES - 1 - i)) * 60000);
      const bar = svg('rect', {
        class: i === RPM_MINUTES - 1 ? 'bar now' : 'bar',
        x: (left + i * slot + 1).toFixed(2), width: (slot - 2).toFixed(2),
        y: (base - h).toFixed(2), height: h.toFixed(2), rx: 1,
      });
      bar.append(svg('title', {}, `${pad(min.getHours())}:${pad(min.getMinutes())} — ${plural(n, 'revocation')}`));
      chart.append(bar);
    });
    chart.append(svg('text', { class: 'axis', x: left, y: H - 4 }, `−${RPM_MINUTES} min`));
    chart.append(svg('text', { class: 'axis', x: W / 2, y: H - 4, 'text-anchor': 'middle' }, `−${RPM_MINUTES / 2} min`));
    chart.append(svg('text', { class: 'axis', x: W - left, y: H - 4, 'text-anchor': 'end' }, 'now'));
    $('rpm').replaceChildren(chart);
  }

  // ---- fleet ---------------------------------------------------------

  // verifierState is the one-word state `herald status --fleet` shows.
  function verifierState(v) {
    if (!v.live) return 'silent';
    if (v.stale) return 'stale';
    if (!v.ready) return 'catching-up';
    return 'ready';
  }

  // SKEW_WARNING_MS is bus.SkewWarning: beyond it a clock is flagged.
  const SKEW_WARNING_MS = 5000;

  // skewed reports whether a verifier's clock is off this issuer's by more than SKEW_WARNING_MS.
  function skewed(v) {
    return typeof v.clock_skew_ms === 'number' && Math.abs(v.clock_skew_ms) > SKEW_WARNING_MS;
  }

  // fmtSkew shows a clock skew in seconds with its sign, or a dash when unknown.
  function fmtSkew(ms) {
    if (typeof ms !== 'number') return '–';
    const s = ms / 1000;
    return `${s > 0 ? '+' : ''}${s.toFixed(Math.abs(s) < 10 ? 1 : 0)} s`;
  }

  function renderFleet(st, f) {
    if (st !== state) return;
    const list = (f.verifiers || []).slice().sort((a, b) => String(a.id).localeCompare(String(b.id)));
    const rows = list.map((v) => {
      const s = verifierState(v);
      const flags = `live: ${v.live ? 'yes' : 'no'}, ready: ${v.ready ? 'yes' : 'no'}, stale: ${v.stale ? 'yes' : 'no'}`;
      return el('tr', {
        'data-verifier': v.id, 'data-state': s, 'data-lag': v.lag,
        'data-live': String(!!v.live), 'data-ready': String(!!v.ready), 'data-stale': String(!!v.stale),
      },
      el('td', { class: 'mono', title: v.url || undefined }, v.id),
      el('td', {}, v.host || ''),
      el('td', { class: 'n' }, v.applied_seq),
      el('td', { class: v.lag > 0 ? 'n lag-high' : 'n' }, v.lag),
      el('td', {}, el('span', { class: `badge ${s}`, title: flags, 'aria-label': `${s} (${flags})` }, s)),
      el('td', { class: 'n' }, fmtAge(v.age_ms)),
      el('td', { class: skewed(v) ? 'n lag-high' : 'n', 'data-skew-ms': v.clock_skew_ms ?? '' }, fmtSkew(v.clock_skew_ms)));
    });
    if (rows.length === 0) {
      rows.push(el('tr', {}, el('td', { class: 'empty', colspan: 7 }, 'No verifier has reported yet.')));
    }
    $('fleet-body').replaceChildren(...rows);
    const ready = list.filter((v) => verifierState(v) === 'ready').length;
    const lagging = list.filter((v) => v.lag > 0).length;
    let sum = `${plural(list.length, 'verifier')} · ${ready} ready`;
    if (lagging) sum += ` · ${lagging} behind`;
    const skew = list.filter(skewed).length;
    if (skew) sum += ` · ${skew} with clock skew over ${SKEW_WARNING_MS / 1000} s`;
    sum += ` · stream head ${f.stream_head}`;
    $('fleet-summary').textContent = sum;
    renderTrusted(f.trusted_issuers || []);
  }

  // renderTrusted shows each trusted external issuer: its keys, when they
  // were fetched, and the last error while its provider is unreachable.
  function renderTrusted(list) {
    $('trusted').hidden = list.length === 0;
    $('trusted-body').replaceChildren(...list.map((t) => {
      const failing = !!t.last_error;
      const state = failing ? `failing since ${t.error_since || '?'}: ${t.last_error}` : (t.last_refresh ? 'ok' : 'not fetched yet');
      return el('tr', { 'data-issuer': t.issuer, 'data-failing': String(failing) },
        el('td', { class: 'mono' }, t.issuer),
        el('td', { class: 'n' }, t.keys),
        el('td', {}, t.last_refresh || '–'),
        el('td', { class: failing ? 'lag-high' : '' }, state));
    }));
  }

  // SSF_METHODS names the SSF delivery methods.
  const SSF_METHODS = { 'urn:ietf:rfc:8935': 'push', 'urn:ietf:rfc:8936': 'poll' };

  // SSF_STATUS_BADGE is the badge class of each SSF stream status.
  const SSF_STATUS_BADGE = { enabled: 'ready', paused: 'catching-up', disabled: 'silent' };

  // ago shows how long ago an RFC 3339 time was, or a dash for none.
  function ago(t) {
    return t ? fmtAge(Date.now() - Date.parse(t)) : '–';
  }

  // renderSSF shows each stream receivers created on the SSF transmitter:
  // its receiver, delivery method, status, lag and last delivery or error.
  // The table stays hidden while there is none, or the transmitter is off.
  function renderSSF(st, list) {
    if (st !== state) return;
    $('ssf').hidden = list.length === 0;
    $('ssf-body').replaceChildren(...list.map((s) => {
      const status = s.reason ? `${s.status}: ${s.reason}` : s.status;
      const err = s.last_error ? `${s.last_error} (${ago(s.last_error_at)})` : '–';
      return el('tr', { 'data-stream': s.stream_id, 'data-status': s.status, 'data-lag': s.lag },
        el('td', { class: 'mono', title: s.endpoint_url || undefined }, s.stream_id),
        el('td', { class: 'mono' }, s.receiver),
        el('td', {}, SSF_METHODS[s.method] || s.method),
        el('td', {}, el('span', { class: `badge ${SSF_STATUS_BADGE[s.status] || 'silent'}`, title: status }, status)),
        el('td', { class: s.lag > 0 ? 'n lag-high' : 'n' }, s.lag),
        el('td', {}, ago(s.last_delivered)),
        el('td', { class: s.last_error ? 'lag-high' : '' }, s.gap ? `${err}; ${s.gap}` : err));
    }));
  }

  // pollSSF reads the SSF streams once; 404 means the transmitter is off.
  async function pollSSF(st) {
    try {
      renderSSF(st, await api(st, 'GET', '/v1/ssf/streams'));
    } catch (e) {
      if (failed(st, e)) return;
      if (!(e instanceof APIError && e.status === 404)) throw e;
      renderSSF(st, []);
    }
  }

  async function pollFleet(st) {
    while (st === state) {
      try {
        renderFleet(st, await api(st, 'GET', '/v1/verifiers'));
        await pollSSF(st);
        showError('fleet-error', '');
      } catch (e) {
        if (failed(st, e)) return;
        showError('fleet-error', `Fleet unavailable: ${e.message}`);
      }
      await sleep(FLEET_EVERY_MS, st.abort.signal);
    }
  }

  // ---- revoke form ---------------------------------------------------

  // pending is the request the confirmation step would send: made from the
  // form when its dry run answered; any edit of the form drops it.
  let pending = null;

  function readForm() {
    const req = { kind: $('kind').value };
    if (req.kind !== 'all') req.value = $('value').value.trim();
    const reason = $('reason').value.trim();
    if (reason) req.reason = reason;
    const iss = $('iss').value.trim();
    if (iss) req.iss = iss;
    return req;
  }

  function clearPending() {
    pending = null;
    $('confirm-panel').hidden = true;
  }

  function showResult(ok, title, fields) {
    const r = $('result');
    r.className = `result ${ok ? 'ok' : 'fail'}`;
    const children = [el('strong', {}, title)];
    if (fields) {
      const dl = el('dl');
      for (const [k, v] of fields) {
        if (v !== undefined && v !== null && v !== '') dl.append(el('dt', {}, k), el('dd', {}, v));
      }
      children.push(dl);
    }
    r.replaceChildren(...children);
    r.hidden = false;
  }

  function onKindChange() {
    const kind = $('kind').value;
    const v = $('value');
    v.disabled = kind === 'all';
    v.required = kind !== 'all';
    if (kind === 'all') v.value = '';
    $('value-hint').textContent = KIND_HINTS[kind] || '';
    clearPending();
  }

  function describe(req) {
    const what = req.kind === 'all' ? 'every token issued up to now' : `${req.kind} ${req.value}`;
    return req.iss ? `${what} of issuer ${req.iss}` : what;
  }

  async function onReview(ev) {
    ev.preventDefault();
    const st = state;
    if (!st) return;
    clearPending();
    $('result').hidden = true;
    const req = readForm();
    if (req.kind !== 'all' && !req.value) {
      showResult(false, `Enter the value to revoke. ${KIND_HINTS[req.kind]}`);
      $('value').focus();
      return;
    }
    const btn = $('revoke');
    btn.disabled = true;
    try {
      const br = await api(st, 'POST', '/v1/revocations?dry_run=true', req);
      if (st !== state) return;
      let text = `Revoking ${describe(req)} cuts off ${plural(br.sessions, 'live session')}`
        + ` of ${plural(br.subjects, 'subject')} and ${plural(br.clients, 'client')}.`;
      if (req.kind === 'all' && !req.iss) text += ' The signing key is rotated in the same step.';
      $('blast').textContent = text;
      $('blast-note').textContent = br.note || '';
      $('blast-note').hidden = !br.note;
      pending = req;
      $('confirm-panel').hidden = false;
      $('confirm').disabled = false;
      $('confirm').focus();
    } catch (e) {
      if (failed(st, e)) return;
      showResult(false, `Dry run failed. ${e.message}`);
    } finally {
      btn.disabled = false;
    }
  }

  async function onConfirm() {
    const st = state;
    const req = pending;
    if (!st || !req) return;
    $('confirm').disabled = true;
    try {
      const res = await api(st, 'POST', '/v1/revocations', req);
      if (st !== state) return;
      clearPending();
      showResult(true, `Revoked ${describe(req)}.`, [
        ['id', res.id], ['seq', res.seq], ['at', res.at], ['signing key now', res.rotated_to],
      ]);
      $('value').value = '';
      $('reason').value = '';
    } catch (e) {
      if (failed(st, e)) return;
      clearPending();
      showResult(false, `Revocation failed. ${e.message}`);
    }
  }

  // ---- sign in and out -----------------------------------------------

  function resetView() {
    clearPending();
    seen.clear();
    rpm.clear();
    $('feed').replaceChildren();
    $('feed-empty').hidden = false;
    $('fleet-body').replaceChildren();
    $('fleet-summary').textContent = '';
    $('result').hidden = true;
    showError('feed-error', '');
    showError('fleet-error', '');
    drawRPM();
  }

  async function signIn(token) {
    if (state) signOut();
    const st = { token, abort: new AbortController(), timer: 0 };
    state = st;
    showError('signin-error', '');
    $('signin').disabled = true;
    let fleet;
    try {
      fleet = await api(st, 'GET', '/v1/verifiers');
    } catch (e) {
      if (state === st) {
        state = null;
        sessionStorage.removeItem(TOKEN_KEY);
        showError('signin-error', e.message);
        $('token').focus();
      }
      return;
    } finally {
      $('signin').disabled = false;
    }
    if (state !== st) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $('token').value = '';
    resetView();
    $('signin-panel').hidden = true;
    $('app').hidden = false;
    $('session').hidden = false;
    renderFleet(st, fleet);
    st.timer = setInterval(drawRPM, 10000); // roll the minutes
    loadRPMHistory(st);
    runStream(st);
    sleep(FLEET_EVERY_MS, st.abort.signal).then(() => pollFleet(st));
  }

  function signOut(message) {
    const st = state;
    state = null;
    if (st) {
      st.abort.abort();
      clearInterval(st.timer);
    }
    sessionStorage.removeItem(TOKEN_KEY);
    resetView();
    $('app').hidden = true;
    $('session').hidden = true;
    $('signin-panel').hidden = false;
    showError('signin-error', message || '');
    $('token').focus();
  }

  function init() {
    $('signin-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const token = $('token').value.trim();
      if (!token) {
        showError('signin-error', 'Paste an admin credential first.');
        return;
      }
      signIn(token);
    });
    $('signout').addEventListener('click', () => signOut());
    $('kind').addEventListener('change', onKindChange);
    $('value').addEventListener('input', clearPending);
    $('reason').addEventListener('input', clearPending);
    $('iss').addEventListener('input', clearPending);
    $('revoke-form').addEventListener('submit', onReview);
    $('confirm').addEventListener('click', onConfirm);
    $('cancel').addEventListener('click', () => { clearPending(); $('revoke').focus(); });
    $('feed-filter').addEventListener('change', applyFilter);
    onKindChange();
    drawRPM();
    const saved = sessionStorage.getItem(TOKEN_KEY);
    if (saved) signIn(saved);
    else $('token').focus();
  }

  init();
})();
